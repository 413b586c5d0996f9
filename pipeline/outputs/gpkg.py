"""``changes.gpkg``: the change objects in the AOI's UTM CRS, styled for QGIS.

Layer ``changes`` (MultiPolygon, grid CRS) carries the same properties as ``changes.geojson``
plus DateTime fields ``detected_at``, ``first_seen`` and ``last_seen`` for QGIS's temporal
controller. The class styling is stored the way QGIS stores it, as the default row of a
``layer_styles`` table (QML and SLD), and the same QML is written as ``changes.qml``.

Determinism: a GeoPackage records modification times (``gpkg_contents.last_change`` and
``layer_styles.update_time``). Both are set to :func:`stamp_for` - ``SOURCE_DATE_EPOCH`` when that
environment variable is set, otherwise midnight UTC of the end of the ``after`` window - so
the same inputs give the same bytes.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np
import pyogrio
import shapely
from pyogrio.raw import write as ogr_write

from ..errors import ConfigError, OutputError
from ..objects.model import ChangeObject
from .atomic import atomic_path, write_text
from .geojson import feature_properties
from .style import TIME_FIELD, qml, sld

log = logging.getLogger(__name__)

__all__ = ["write_gpkg", "stamp_for", "window_end", "LAYER", "STYLE_NAME"]

LAYER = "changes"
STYLE_NAME = "s2watch classes"


def window_end(window: str, *, what: str = "window") -> np.datetime64:
    """End of an ISO date or ``start/end`` interval as ``datetime64[ms]`` (midnight UTC).

    Raises
    ------
    OutputError
        When ``window`` is not an ISO date or interval.
    """
    text = str(window).split("/")[-1].strip()
    try:
        return np.datetime64(datetime.fromisoformat(text[:10]).date(), "ms")
    except ValueError as exc:
        raise OutputError(f"{what} {window!r} is not an ISO date or start/end interval (YYYY-MM-DD[/YYYY-MM-DD])") from exc


def _maybe_date(value: str | None, *, what: str) -> np.datetime64:
    return np.datetime64("NaT", "ms") if not value else window_end(value, what=what)


def stamp_for(after: str) -> str:
    """Timestamp written into GeoPackage bookkeeping: ``SOURCE_DATE_EPOCH`` or end of ``after``."""
    sde = os.environ.get("SOURCE_DATE_EPOCH")
    if sde:
        try:
            dt = datetime.fromtimestamp(int(sde), tz=timezone.utc)
        except ValueError as exc:
            raise ConfigError(f"SOURCE_DATE_EPOCH={sde!r} is not an integer number of seconds") from exc
    else:
        dt = window_end(after, what="after window").astype(datetime).replace(tzinfo=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _columns(objects: Sequence[ChangeObject], aoi_id: str, epsg: int) -> tuple[list[str], list[np.ndarray]]:
    """The GeoJSON properties of each object (``geojson.feature_properties``), with the dates as
    DateTime fields for QGIS's temporal controller and the evidence as a JSON string."""
    rows = []
    for o in objects:
        props = feature_properties(o, aoi_id=aoi_id, epsg=epsg)
        first = _maybe_date(o.first_seen, what=f"object {o.id}: first_seen")
        detected = first if not np.isnat(first) else window_end(o.after, what=f"object {o.id}: after")
        rows.append(
            {
                **props,
                TIME_FIELD: detected,
                "first_seen": first,
                "last_seen": _maybe_date(o.last_seen, what=f"object {o.id}: last_seen"),
                "evidence": json.dumps(props["evidence"], sort_keys=True, allow_nan=False),
            }
        )
    kinds = {
        "id": object, "aoi": object, "class": object, "class_code": np.int32, "confidence": np.float64,
        "area_m2": np.float64, "before": object, "after": object, "feature": object, "status": object,
        TIME_FIELD: "datetime64[ms]", "first_seen": "datetime64[ms]", "last_seen": "datetime64[ms]",
        "evidence": object, "centroid_lon": np.float64, "centroid_lat": np.float64,
    }  # fmt: skip
    names = list(kinds)
    return names, [np.array([r[n] for r in rows], dtype=kinds[n]) for n in names]


def write_gpkg(
    objects: Sequence[ChangeObject],
    path: str | os.PathLike,
    *,
    aoi_id: str,
    epsg: int,
    after: str,
    qml_path: str | os.PathLike | None = None,
) -> list[Path]:
    """Write ``changes.gpkg`` (and ``changes.qml`` when ``qml_path`` is given) atomically.

    Parameters
    ----------
    objects : sequence of ChangeObject
        Geometries in the grid CRS ``epsg``; written sorted by id.
    path : path-like
        Destination ``.gpkg``.
    aoi_id : str
    epsg : int
        CRS of the geometries and of the layer.
    after : str
        The after window, used for the bookkeeping timestamp (see :func:`stamp_for`).

    Returns
    -------
    list of pathlib.Path
        The GeoPackage and, if requested, the QML file.
    """
    path = Path(path)
    objects = sorted(objects, key=lambda o: str(o.id))
    names, data = _columns(objects, aoi_id, epsg)
    geoms = np.array([shapely.to_wkb(_multi(o.geometry)) for o in objects], dtype=object)
    stamp = stamp_for(after)
    style_qml = qml()
    style_row = {
        "f_table_catalog": "",
        "f_table_schema": "",
        "f_table_name": LAYER,
        "f_geometry_column": "geom",
        "styleName": STYLE_NAME,
        "styleQML": style_qml,
        "styleSLD": sld(layer=LAYER),
        "useAsDefault": True,
        "description": "s2watch change classes (colours of CLASS_COLOURS)",
        "owner": "",
        "ui": "",
        "update_time": np.datetime64(stamp[:-1], "ms"),
    }
    style_names = list(style_row)
    style_data = [
        np.array([v], dtype=bool if isinstance(v, bool) else ("datetime64[ms]" if isinstance(v, np.datetime64) else object))
        for v in style_row.values()
    ]
    previous = pyogrio.get_gdal_config_option("OGR_CURRENT_DATE")
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": stamp})
    try:
        with atomic_path(path) as tmp:
            ogr_write(
                tmp, geoms if len(objects) else np.array([], dtype=object), data, names,
                crs=f"EPSG:{epsg}", geometry_type="MultiPolygon", driver="GPKG", layer=LAYER,
                dataset_options={"VERSION": "1.2"}, layer_options={"SPATIAL_INDEX": "YES"},
            )  # fmt: skip
            ogr_write(
                tmp, None, style_data, style_names, driver="GPKG", layer="layer_styles", append=True,
                layer_options={"FID": "id"},
            )  # fmt: skip
    except pyogrio.errors.DataSourceError as exc:
        raise OutputError(f"cannot write GeoPackage {path}: {exc}") from exc
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": previous})
    out = [path]
    if qml_path is not None:
        out.append(write_text(qml_path, style_qml))
    return out


def _multi(geom):
    if geom.geom_type == "Polygon":
        return shapely.MultiPolygon([geom])
    if geom.geom_type == "MultiPolygon":
        return geom
    raise OutputError(f"change object geometry must be a Polygon or MultiPolygon, got {geom.geom_type}")
