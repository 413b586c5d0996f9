"""Where a change region lies in its AOI: the feature it touches, on or along, and its axis.

:func:`feature_context` burns each AOI feature (runways, taxiways, aprons, quays, basins) onto
the grid and counts, per region, the pixels inside it and inside its ``touch_m`` buffer; the
result, one :class:`RegionContext` per region, is what the classifier knows about the site.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import shapely
from rasterio import features as rio_features
from shapely.geometry.base import BaseGeometry

from ..aoi import AOI
from ..grid import Grid
from .label import label_sizes

log = logging.getLogger(__name__)

__all__ = ["PAVED_ROLES", "WATER_ROLES", "RUNWAY_ROLES", "RegionContext", "angle_difference", "feature_axis_deg", "feature_context"]

PAVED_ROLES = ("runway", "taxiway", "apron", "hardstand", "quay")
"""Feature roles whose surface is paved."""
WATER_ROLES = ("basin",)
"""Feature roles that are open water."""
RUNWAY_ROLES = ("runway", "taxiway")
"""Feature roles a runway repair can lie on."""


@dataclass(frozen=True)
class RegionContext:
    """Where a region lies relative to the AOI's features of interest.

    Attributes
    ----------
    feature : str or None
        Name of the feature the region touches most (e.g. ``"runway 01L/19R"``), None if none.
    role : str or None
        Role of that feature (``runway``, ``taxiway``, ``apron`` ...).
    surface : str or None
        Its ``surface`` property (``asphalt``, ``concrete`` ...), lower case, if given.
    inside_fraction : float
        Fraction of the region's pixels inside that feature's polygon (0-1).
    touches : bool
        The region lies within the touch distance of the feature.
    feature_axis_deg : float or None
        Azimuth of the feature's long axis, degrees clockwise from grid north in [0, 180).
    paved_fraction : float
        Fraction of the region's pixels inside any paved feature (:data:`PAVED_ROLES`), 0-1.
    water_fraction : float
        Fraction inside any water feature (:data:`WATER_ROLES`), 0-1.
    aoi_kind : str
        The AOI's kind (``airbase``, ``port`` ...).
    """

    feature: str | None = None
    role: str | None = None
    surface: str | None = None
    inside_fraction: float = 0.0
    touches: bool = False
    feature_axis_deg: float | None = None
    paved_fraction: float = 0.0
    water_fraction: float = 0.0
    aoi_kind: str = "site"


def angle_difference(a_deg: float, b_deg: float) -> float:
    """Smallest angle between two axes (undirected lines), degrees in [0, 90]."""
    d = abs(a_deg - b_deg) % 180.0
    return min(d, 180.0 - d)


def feature_axis_deg(geom: BaseGeometry) -> float | None:
    """Azimuth of a feature's long axis, degrees clockwise from grid north in [0, 180).

    Polygons: the long side of their minimum rotated rectangle; lines: first to last vertex.
    None for points and empty or degenerate geometries.
    """
    if geom is None or geom.is_empty:
        return None
    if geom.geom_type in ("LineString", "MultiLineString"):
        lines = list(getattr(geom, "geoms", [geom]))
        line = max(lines, key=lambda g: g.length)
        (x0, y0), (x1, y1) = line.coords[0], line.coords[-1]
        dx, dy = x1 - x0, y1 - y0
    elif geom.geom_type in ("Polygon", "MultiPolygon"):
        rect = shapely.oriented_envelope(geom)
        if rect.geom_type != "Polygon":
            return None
        xy = np.asarray(rect.exterior.coords)[:3]
        s1, s2 = xy[1] - xy[0], xy[2] - xy[1]
        dx, dy = s1 if np.hypot(*s1) >= np.hypot(*s2) else s2
    else:
        return None
    if dx == 0 and dy == 0:
        return None
    return math.degrees(math.atan2(dx, dy)) % 180.0


def _feature_polygon(feature, geom: BaseGeometry, default_width_m: float) -> BaseGeometry:
    """Polygons stay; lines and points become a buffer of the feature's ``width_m`` (or default)."""
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    try:
        width = float(feature.properties.get("width_m") or default_width_m)
    except (TypeError, ValueError):
        width = default_width_m
    return geom.buffer(max(width, 1.0) / 2.0, cap_style="flat" if geom.geom_type != "Point" else "round")


def _burn(geom: BaseGeometry, grid: Grid) -> np.ndarray:
    """(H, W) bool of the pixels whose centre lies in ``geom`` (all touched when that is none)."""
    kw = dict(out_shape=grid.shape, transform=grid.transform, fill=0, default_value=1, dtype="uint8")
    m = rio_features.rasterize([geom], all_touched=False, **kw).astype(bool)
    if not m.any():
        m = rio_features.rasterize([geom], all_touched=True, **kw).astype(bool)
    return m


def feature_context(
    labels: np.ndarray,
    grid: Grid,
    aoi: AOI,
    *,
    touch_m: float = 20.0,
    default_width_m: float = 20.0,
) -> dict[int, RegionContext]:
    """For every labelled region, the AOI feature it touches and the share on paved/water features.

    Parameters
    ----------
    labels : (H, W) int
        Region labels on ``grid`` (0 background).
    grid : Grid
    aoi : AOI
        Its features are projected to ``grid.epsg``.
    touch_m : float, keyword-only
        A region within this distance (metres) of a feature touches it.
    default_width_m : float, keyword-only
        Width given to line features without a ``width_m`` property.

    Returns
    -------
    dict of int to RegionContext
        One entry per label present. The feature chosen is the one holding most of the region's
        pixels, else the one whose ``touch_m`` buffer holds most of them.

    Notes
    -----
    Cost: two rasterisations of each feature onto the grid and one ``bincount`` per mask.
    """
    labels = np.asarray(labels)
    n = int(labels.max()) if labels.size else 0
    area = label_sizes(labels, n).astype(np.float64)
    present = [int(i) for i in np.nonzero(area)[0] if i > 0]
    kind = getattr(aoi, "kind", "site")
    if not present:
        return {}
    best_inside = np.zeros(n + 1)
    best_touch = np.zeros(n + 1)
    best_in_idx = np.full(n + 1, -1)
    best_touch_idx = np.full(n + 1, -1)
    paved = np.zeros(grid.shape, bool)
    water = np.zeros(grid.shape, bool)
    feats = []
    for k, (f, geom) in enumerate(aoi.features_in(grid.epsg)):
        poly = _feature_polygon(f, geom, default_width_m)
        if poly.is_empty:
            continue
        inside = _burn(poly, grid)
        touch = _burn(poly.buffer(touch_m), grid) if touch_m > 0 else inside
        if f.role in PAVED_ROLES:
            paved |= inside
        if f.role in WATER_ROLES:
            water |= inside
        cin = np.bincount(labels[inside], minlength=n + 1)[: n + 1]
        ctouch = np.bincount(labels[touch], minlength=n + 1)[: n + 1]
        better = cin > best_inside
        best_inside[better] = cin[better]
        best_in_idx[better] = k
        better = ctouch > best_touch
        best_touch[better] = ctouch[better]
        best_touch_idx[better] = k
        feats.append((k, f, geom))
    by_idx = {k: (f, geom) for k, f, geom in feats}
    paved_c = np.bincount(labels[paved], minlength=n + 1)[: n + 1]
    water_c = np.bincount(labels[water], minlength=n + 1)[: n + 1]
    axes = {k: feature_axis_deg(geom) for k, (f, geom) in by_idx.items()}
    out: dict[int, RegionContext] = {}
    for lab in present:
        k = int(best_in_idx[lab]) if best_inside[lab] > 0 else int(best_touch_idx[lab])
        common = dict(
            paved_fraction=float(paved_c[lab] / area[lab]),
            water_fraction=float(water_c[lab] / area[lab]),
            aoi_kind=kind,
        )
        if k < 0:
            out[lab] = RegionContext(**common)
            continue
        f, _ = by_idx[k]
        inside_frac = float(best_inside[lab] / area[lab]) if int(best_in_idx[lab]) == k else 0.0
        out[lab] = RegionContext(
            feature=f.name,
            role=f.role,
            surface=f.surface,
            inside_fraction=inside_frac,
            touches=True,
            feature_axis_deg=axes.get(k),
            **common,
        )
    return out
