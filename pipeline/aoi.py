"""Areas of interest: a polygon around an airbase or port plus its features of interest.

An AOI file is a GeoJSON FeatureCollection in lon/lat (RFC 7946) with exactly one feature whose
``role`` is ``"aoi"`` (Polygon or MultiPolygon, properties ``id``, ``name``, ``kind``) and optional
features of interest with ``role`` in :data:`FEATURE_ROLES` (runways as polygons of their real
width with a ``designator``). A file holding a single Polygon feature or a bare geometry is an AOI
too, its id taken from the file name.

Ids resolve from, in order: extra folders given by the caller, ``S2WATCH_AOI_PATH`` (``:``
separated), and the project's own ``aois/`` folder, wherever the command runs from.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import shapely
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

from .errors import AOIError
from .grid import Grid, reproject_geometry, utm_epsg

log = logging.getLogger(__name__)

__all__ = [
    "AOI",
    "AOIFeature",
    "FEATURE_ROLES",
    "load_aoi",
    "list_aois",
    "validate_aoi_file",
    "aoi_search_path",
    "PROJECT_AOI_DIR",
]

FEATURE_ROLES = ("runway", "taxiway", "apron", "hardstand", "quay", "basin")
"""Roles a feature of interest may have, besides the one ``aoi`` feature."""

PROJECT_AOI_DIR = Path(__file__).resolve().parent.parent / "aois"
DEFAULT_MAX_AREA_KM2 = 2500.0
DEFAULT_BUFFER_M = 200.0
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


@dataclass(frozen=True)
class AOIFeature:
    """A feature of interest inside an AOI.

    Attributes
    ----------
    role : str
        One of :data:`FEATURE_ROLES`.
    geometry : shapely geometry
        Lon/lat (EPSG:4326).
    name : str
        Human label, e.g. ``"runway 01L/19R"``.
    properties : dict
        All properties of the GeoJSON feature (kept, not interpreted).
    """

    role: str
    geometry: BaseGeometry
    name: str
    properties: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def surface(self) -> str | None:
        s = self.properties.get("surface")
        return str(s).lower() if s else None


@dataclass(frozen=True)
class AOI:
    """An area of interest with its features of interest.

    Attributes
    ----------
    id : str
        Stable identifier (file name stem for plain polygons).
    name : str
    kind : str
        Free text; ``airbase``, ``port`` and ``naval_base`` get tailored rules.
    geometry : shapely Polygon or MultiPolygon
        Lon/lat (EPSG:4326).
    features : tuple of AOIFeature
    country, description : str or None
    sources : tuple of str
    path : str or None
        The file it was read from.
    digest : str
        sha256 of the file's canonical JSON, recorded in manifests.
    """

    id: str
    name: str
    kind: str
    geometry: BaseGeometry
    features: tuple[AOIFeature, ...] = ()
    country: str | None = None
    description: str | None = None
    sources: tuple[str, ...] = ()
    path: str | None = None
    digest: str = ""

    @property
    def centroid_lonlat(self) -> tuple[float, float]:
        c = self.geometry.centroid
        return (c.x, c.y)

    @property
    def epsg(self) -> int:
        """UTM zone (EPSG) of the AOI centre."""
        lon, lat = self.centroid_lonlat
        return utm_epsg(lon, lat)

    def to_crs(self, geom: BaseGeometry, epsg: int | None = None) -> BaseGeometry:
        """Project a lon/lat geometry into ``epsg`` (default: the AOI's UTM zone)."""
        return reproject_geometry(geom, 4326, epsg or self.epsg)

    def grid(self, *, res: float = 10.0, buffer_m: float = DEFAULT_BUFFER_M) -> Grid:
        """The processing grid: UTM zone of the centre, ``res`` metre pixels snapped to multiples
        of ``res``, covering the AOI plus ``buffer_m``. Correct across zone edges because the whole
        polygon is projected into the centre's zone."""
        epsg = self.epsg
        g = self.to_crs(self.geometry, epsg)
        # densify so that curved edges in projection are covered
        g = shapely.segmentize(g, 50.0) if not g.is_empty else g
        return Grid.from_bounds(epsg, g.buffer(buffer_m).bounds, res)

    def features_in(self, epsg: int | None = None, roles: Iterable[str] | None = None) -> list[tuple[AOIFeature, BaseGeometry]]:
        """Features of interest with their geometry projected to ``epsg``."""
        roles = set(roles) if roles else None
        out = []
        for f in self.features:
            if roles is None or f.role in roles:
                out.append((f, self.to_crs(f.geometry, epsg)))
        return out

    @property
    def area_km2(self) -> float:
        return self.to_crs(self.geometry).area / 1e6

    def to_geojson(self) -> dict:
        feats = [
            {
                "type": "Feature",
                "properties": {
                    "role": "aoi",
                    "id": self.id,
                    "name": self.name,
                    "kind": self.kind,
                    **({"country": self.country} if self.country else {}),
                    **({"description": self.description} if self.description else {}),
                    **({"sources": list(self.sources)} if self.sources else {}),
                },
                "geometry": mapping(self.geometry),
            }
        ]
        for f in self.features:
            feats.append({"type": "Feature", "properties": {**f.properties, "role": f.role}, "geometry": mapping(f.geometry)})
        return {"type": "FeatureCollection", "features": feats}


# --------------------------------------------------------------------------------------------
# resolution


def aoi_search_path(extra: Iterable[str | os.PathLike] | None = None) -> list[Path]:
    """Folders searched for AOI ids, first match wins."""
    paths: list[Path] = [Path(p) for p in (extra or [])]
    env = os.environ.get("S2WATCH_AOI_PATH", "")
    paths += [Path(p) for p in env.split(os.pathsep) if p]
    paths.append(PROJECT_AOI_DIR)
    return paths


def _resolve(ref: str | os.PathLike, extra=None) -> Path:
    p = Path(ref)
    if p.suffix.lower() in (".geojson", ".json") or p.exists() or os.sep in str(ref):
        if not p.exists():
            raise AOIError(str(ref), "file not found; give an AOI id from `s2watch aois list` or a path to a GeoJSON file")
        return p
    for folder in aoi_search_path(extra):
        for cand in (folder / f"{ref}.geojson", folder / f"{ref}.json"):
            if cand.is_file():
                return cand
    searched = ", ".join(str(f) for f in aoi_search_path(extra))
    raise AOIError(str(ref), f"no AOI with this id in {searched}; run `s2watch aois list` or set S2WATCH_AOI_PATH")


def list_aois(extra=None) -> list[Path]:
    """AOI files on the search path, one per id (first folder wins)."""
    seen: dict[str, Path] = {}
    for folder in aoi_search_path(extra):
        if folder.is_dir():
            for p in sorted(folder.glob("*.geojson")):
                seen.setdefault(p.stem, p)
    return [seen[k] for k in sorted(seen)]


def load_aoi(ref: "str | os.PathLike | AOI", *, extra_paths=None, max_area_km2: float = DEFAULT_MAX_AREA_KM2) -> AOI:
    """Load and validate an AOI from an id or a file path.

    Raises
    ------
    AOIError
        Naming the file, the feature and the reason for every problem found.
    """
    if isinstance(ref, AOI):
        return ref
    path = _resolve(ref, extra_paths)
    aoi, problems = _parse(path, max_area_km2=max_area_km2)
    if problems:
        raise AOIError(str(path), problems)
    assert aoi is not None
    return aoi


def validate_aoi_file(path: str | os.PathLike, *, max_area_km2: float = DEFAULT_MAX_AREA_KM2) -> list[str]:
    """Problems of an AOI file, one line each naming the feature and the reason ([] when valid)."""
    _, problems = _parse(Path(path), max_area_km2=max_area_km2)
    return problems


# --------------------------------------------------------------------------------------------
# parsing and validation


def _coords(geom: dict) -> list[tuple[float, float]]:
    out: list = []

    def walk(c):
        if isinstance(c, (list, tuple)) and c and isinstance(c[0], (int, float)):
            out.append((float(c[0]), float(c[1]) if len(c) > 1 else float("nan")))
        elif isinstance(c, (list, tuple)):
            for x in c:
                walk(x)

    walk(geom.get("coordinates", []))
    return out


def _check_geometry(geom: Any, label: str, allowed: tuple[str, ...]) -> tuple[BaseGeometry | None, list[str]]:
    problems: list[str] = []
    if not isinstance(geom, dict) or "type" not in geom:
        return None, [f"{label}: missing or malformed geometry"]
    if geom["type"] not in allowed:
        return None, [f"{label}: geometry type {geom['type']!r} not allowed here (expected {' or '.join(allowed)})"]
    pts = _coords(geom)
    if not pts:
        return None, [f"{label}: geometry has no coordinates"]
    bad_lat = [p for p in pts if not (-90 <= p[1] <= 90)]
    bad_lon = [p for p in pts if not (-180 <= p[0] <= 180)]
    if any(math.isnan(v) for p in pts for v in p):
        return None, [f"{label}: coordinates must be [lon, lat] pairs of numbers"]
    if bad_lat or bad_lon:
        if bad_lat and all(-90 <= p[0] <= 90 and -180 <= p[1] <= 180 for p in pts):
            problems.append(
                f"{label}: latitude {bad_lat[0][1]} is out of range; lat/lon look swapped "
                f"(GeoJSON wants [longitude, latitude])"
            )
        else:
            p = (bad_lat or bad_lon)[0]
            problems.append(f"{label}: coordinate {list(p)} out of range (lon -180..180, lat -90..90)")
        return None, problems
    if geom["type"] in ("Polygon", "MultiPolygon"):
        polys = [geom["coordinates"]] if geom["type"] == "Polygon" else geom["coordinates"]
        for poly in polys:
            for ring in poly:
                if len(ring) < 4:
                    problems.append(f"{label}: ring has {len(ring)} positions; a closed ring needs at least 4")
                elif list(ring[0])[:2] != list(ring[-1])[:2]:
                    problems.append(f"{label}: ring is not closed (first and last positions differ)")
        if problems:
            return None, problems
    try:
        g = shape(geom)
    except Exception as exc:  # shapely raises several types for malformed input
        return None, [f"{label}: cannot build geometry: {exc}"]
    if g.geom_type in ("Polygon", "MultiPolygon"):
        if not g.is_valid:
            problems.append(f"{label}: invalid polygon ({explain_validity(g)}); fix self-intersecting or overlapping rings")
        if not problems and g.area == 0:
            problems.append(f"{label}: polygon has zero area")
    elif not g.is_valid:
        problems.append(f"{label}: invalid geometry ({explain_validity(g)})")
    return (None if problems else g), problems




def _parse(path: Path, *, max_area_km2: float) -> tuple[AOI | None, list[str]]:
    try:
        raw_text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return None, [f"cannot read file: {exc.strerror or exc}"]
    try:
        doc = json.loads(raw_text)
    except json.JSONDecodeError as exc:
        return None, [f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"]
    digest = hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    stem = path.stem
    problems: list[str] = []
    if not isinstance(doc, dict) or "type" not in doc:
        return None, ["not a GeoJSON object (no 'type' member)"]
    if doc.get("crs") is not None:
        problems.append("'crs' member present: RFC 7946 GeoJSON is always lon/lat WGS84; remove it and reproject")

    # bare geometry or single feature: a plain AOI named after the file
    if doc["type"] in ("Polygon", "MultiPolygon"):
        doc = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"role": "aoi"}, "geometry": doc}]}
    elif doc["type"] == "Feature":
        props = dict(doc.get("properties") or {})
        props.setdefault("role", "aoi")
        doc = {"type": "FeatureCollection", "features": [{**doc, "properties": props}]}
    elif doc["type"] != "FeatureCollection":
        return None, [f"GeoJSON type {doc['type']!r} is not an AOI; expected FeatureCollection, Feature or Polygon"]

    feats = doc.get("features")
    if not isinstance(feats, list) or not feats:
        return None, problems + ["FeatureCollection has no features; add one feature with role 'aoi'"]
    if len(feats) == 1 and (feats[0].get("properties") or {}).get("role") is None:
        feats = [{**feats[0], "properties": {**(feats[0].get("properties") or {}), "role": "aoi"}}]

    aoi_feats = [(i, f) for i, f in enumerate(feats) if (f.get("properties") or {}).get("role") == "aoi"]
    if not aoi_feats:
        problems.append("no feature with role 'aoi'; exactly one is required")
    elif len(aoi_feats) > 1:
        problems.append(
            f"{len(aoi_feats)} features with role 'aoi' (features {', '.join(str(i) for i, _ in aoi_feats)}); exactly one is allowed"
        )

    aoi_geom = None
    aoi_props: dict = {}
    if aoi_feats:
        i, f = aoi_feats[0]
        aoi_props = dict(f.get("properties") or {})
        label = f"feature {i} (role aoi)"
        aoi_geom, ps = _check_geometry(f.get("geometry"), label, ("Polygon", "MultiPolygon"))
        problems += ps
        aid = aoi_props.get("id", stem)
        if not isinstance(aid, str) or not _ID_RE.match(aid):
            problems.append(f"{label}: id {aid!r} must be lower-case letters, digits, '-' or '_'")
        for key in ("name", "kind"):
            if key in aoi_props and not isinstance(aoi_props[key], str):
                problems.append(f"{label}: property {key!r} must be a string")
        if aoi_geom is not None:
            lon, lat = aoi_geom.centroid.x, aoi_geom.centroid.y
            area = reproject_geometry(aoi_geom, 4326, utm_epsg(lon, lat)).area / 1e6
            if area > max_area_km2:
                problems.append(
                    f"{label}: area {area:,.0f} km^2 exceeds the maximum of {max_area_km2:,.0f} km^2; "
                    "draw a tighter polygon or raise the limit (--max-area-km2)"
                )

    features: list[AOIFeature] = []
    for i, f in enumerate(feats):
        props = dict(f.get("properties") or {})
        role = props.get("role")
        if role == "aoi":
            continue
        label = f"feature {i}"
        if role is None:
            problems.append(f"{label}: no 'role' property; use one of aoi, {', '.join(FEATURE_ROLES)}")
            continue
        if role not in FEATURE_ROLES:
            problems.append(f"{label}: unknown role {role!r}; use one of aoi, {', '.join(FEATURE_ROLES)}")
            continue
        label = f"feature {i} (role {role})"
        g, ps = _check_geometry(
            f.get("geometry"), label, ("Polygon", "MultiPolygon", "LineString", "MultiLineString", "Point")
        )
        problems += ps
        if g is None:
            continue
        if aoi_geom is not None and not aoi_geom.buffer(0.01).intersects(g):
            problems.append(f"{label}: lies outside the AOI polygon")
        designator = props.get("designator") or props.get("name")
        name = f"{role} {designator}" if designator else role
        features.append(AOIFeature(role=role, geometry=g, name=name, properties=props))

    if problems:
        return None, problems
    src = aoi_props.get("sources") or ()
    if isinstance(src, str):
        src = (src,)
    aoi = AOI(
        id=aoi_props.get("id", stem),
        name=str(aoi_props.get("name", stem)),
        kind=str(aoi_props.get("kind", "site")),
        geometry=aoi_geom,
        features=tuple(features),
        country=aoi_props.get("country"),
        description=aoi_props.get("description"),
        sources=tuple(str(s) for s in src),
        path=str(path),
        digest=digest,
    )
    return aoi, []
