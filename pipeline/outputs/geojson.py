"""``changes.geojson``: the change objects as strict RFC 7946 GeoJSON.

* coordinates in WGS84 longitude/latitude (reprojected from the grid CRS), no ``crs`` member;
* polygons follow the right-hand rule (exterior rings counter-clockwise, holes clockwise);
* coordinates rounded to :data:`DECIMALS` decimals (about 1 cm) and the geometry is still valid
  after rounding: it is snapped with ``shapely.set_precision`` first and checked again;
* properties follow ``changes.schema.json`` (shipped beside this module).

Features are sorted by object id and keys are sorted, so the same objects give the same bytes.
"""

from __future__ import annotations

import json
import logging
import math
import os
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import shapely
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry

from ..errors import OutputError
from ..grid import reproject_geometry
from ..objects.model import CLASS_CODES, ChangeObject
from .atomic import write_text

log = logging.getLogger(__name__)

__all__ = ["DECIMALS", "to_lonlat_geometry", "feature_properties", "feature_collection", "write_geojson", "load_schema", "jsonable"]

DECIMALS = 7
"""Decimals kept in GeoJSON coordinates (1e-7 degree is about 1 cm)."""


def load_schema() -> dict:
    """The JSON Schema (draft 2020-12) of a ``changes.geojson`` feature's ``properties``."""
    text = resources.files("pipeline.outputs").joinpath("changes.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars/arrays turned into Python types and non-finite floats into ``None``.

    JSON has no NaN or Infinity; writing them would give files other tools reject.
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _round_coords(obj: Any, ndigits: int) -> Any:
    if isinstance(obj, (list, tuple)):
        if obj and isinstance(obj[0], (int, float)):
            return [round(float(v), ndigits) + 0.0 for v in obj]
        return [_round_coords(v, ndigits) for v in obj]
    return obj


def _orient_ccw(geom: BaseGeometry) -> BaseGeometry:
    """Exterior rings counter-clockwise, holes clockwise (``shapely.orient_polygons`` needs 2.1)."""
    if hasattr(shapely, "orient_polygons"):
        return shapely.orient_polygons(geom, exterior_cw=False)
    from shapely.geometry import MultiPolygon
    from shapely.geometry.polygon import orient

    if geom.geom_type == "MultiPolygon":
        return MultiPolygon([orient(p, sign=1.0) for p in geom.geoms])
    return orient(geom, sign=1.0)


def to_lonlat_geometry(geom: BaseGeometry, epsg: int, *, decimals: int = DECIMALS) -> dict:
    """A grid-CRS polygon as an RFC 7946 geometry dict: lon/lat, CCW exteriors, rounded, valid.

    Raises
    ------
    OutputError
        When the geometry is empty or collapses to nothing at ``decimals`` precision.
    """
    ll = reproject_geometry(geom, epsg, 4326)
    if not ll.is_valid:
        ll = shapely.make_valid(ll)
    ll = shapely.set_precision(ll, 10.0 ** -decimals)
    if ll.geom_type == "GeometryCollection":
        ll = shapely.union_all([g for g in ll.geoms if g.geom_type in ("Polygon", "MultiPolygon")])
    if ll.is_empty:
        raise OutputError(f"geometry collapses to nothing at {decimals} decimals: {geom.wkt[:120]}")
    ll = _orient_ccw(ll)
    gj = mapping(ll)
    gj = {"type": gj["type"], "coordinates": _round_coords(gj["coordinates"], decimals)}
    back = shape(gj)
    if not back.is_valid:  # rounding of already-snapped values can only move by 1 ulp; check anyway
        raise OutputError(f"geometry became invalid after rounding to {decimals} decimals: {shapely.is_valid_reason(back)}")
    return gj


def feature_properties(obj: ChangeObject, *, aoi_id: str, epsg: int) -> dict:
    """Properties of one change object as written to GeoJSON (see ``changes.schema.json``)."""
    c = reproject_geometry(obj.geometry.representative_point() if obj.geometry.is_empty else obj.geometry.centroid, epsg, 4326)
    return {
        "id": str(obj.id),
        "aoi": aoi_id,
        "class": obj.cls,
        "class_code": CLASS_CODES[obj.cls],
        "confidence": round(float(obj.confidence), 4),
        "area_m2": round(float(obj.area_m2), 1),
        "before": obj.before,
        "after": obj.after,
        "feature": obj.feature,
        "status": obj.status,
        "first_seen": obj.first_seen,
        "last_seen": obj.last_seen,
        "evidence": jsonable(dict(obj.evidence)),
        "centroid_lon": round(c.x, 6),
        "centroid_lat": round(c.y, 6),
    }


def feature_collection(objects: Sequence[ChangeObject], *, aoi_id: str, epsg: int) -> dict:
    """The FeatureCollection of ``objects`` (sorted by id)."""
    feats = []
    for obj in sorted(objects, key=lambda o: str(o.id)):
        feats.append(
            {
                "type": "Feature",
                "id": str(obj.id),
                "geometry": to_lonlat_geometry(obj.geometry, epsg),
                "properties": feature_properties(obj, aoi_id=aoi_id, epsg=epsg),
            }
        )
    return {"type": "FeatureCollection", "features": feats}


def write_geojson(objects: Sequence[ChangeObject], path: str | os.PathLike, *, aoi_id: str, epsg: int) -> Path:
    """Write ``changes.geojson`` atomically; returns the path."""
    fc = feature_collection(objects, aoi_id=aoi_id, epsg=epsg)
    lines = [json.dumps(f, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False) for f in fc["features"]]
    text = '{"type":"FeatureCollection","features":[\n' + ",\n".join(lines) + "\n]}\n"
    return write_text(Path(path), text)
