"""Labelled regions to polygons in the grid CRS.

Pixel edges are traced with :func:`rasterio.features.shapes` (exact staircase outlines, 8-connected
like :func:`pipeline.objects.label.label_regions`), the parts of one label are merged, the outline
is simplified with a tolerance in metres and repaired if simplification broke it.
"""

from __future__ import annotations

import logging

import numpy as np
import shapely
from affine import Affine
from rasterio import features
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.geometry.base import BaseGeometry

from ..errors import UsageError
from ..grid import Grid

log = logging.getLogger(__name__)

__all__ = ["polygons", "polygonal"]


def polygonal(geom: BaseGeometry) -> Polygon | MultiPolygon:
    """The polygonal part of a geometry, made valid first (lines and points from repairs dropped)."""
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    parts: list[Polygon] = []
    for g in getattr(geom, "geoms", [geom]):
        if g.geom_type == "Polygon" and not g.is_empty:
            parts.append(g)
        elif g.geom_type == "MultiPolygon":
            parts.extend(p for p in g.geoms if not p.is_empty)
    if not parts:
        return Polygon()
    return parts[0] if len(parts) == 1 else MultiPolygon(parts)


def polygons(
    labels: np.ndarray,
    grid: Grid,
    *,
    simplify_m: float = 5.0,
    connectivity: int = 8,
    bboxes: "dict[int, tuple[int, int, int, int]] | None" = None,
) -> dict[int, Polygon | MultiPolygon]:
    """Outline every labelled region as a valid polygon in the grid CRS.

    Parameters
    ----------
    labels : (H, W) int
        Region labels, 0 background (from :func:`pipeline.objects.label.label_regions`).
    grid : Grid
        The grid ``labels`` lives on; coordinates are in ``grid.epsg`` (UTM metres).
    simplify_m : float, keyword-only
        Douglas-Peucker tolerance in metres (topology preserved); 0 keeps the exact pixel
        staircase, whose area equals the pixel count times the pixel area. Half a pixel (5 m)
        removes the staircase and changes areas by a few percent at most for regions of a few
        pixels and less for larger ones.
    connectivity : {4, 8}, keyword-only
        Pixel connectivity of the traced outlines; 8 matches the default labelling.
    bboxes : dict of int to (min_row, min_col, max_row, max_col), keyword-only, optional
        Each label's bounding box (``max`` exclusive, as :func:`pipeline.objects.label.region_table`
        gives them); default: found here (:func:`scipy.ndimage.find_objects`).

    Returns
    -------
    dict of int to Polygon or MultiPolygon
        One valid, non-empty geometry per label present (a MultiPolygon when a label has
        several parts).

    Notes
    -----
    Cost: GDAL's polygonize over each label's bounding box, so proportional to the regions, not
    to the grid (on the 4096^2 speed benchmark's 61 regions 0.02 s instead of 0.2 s for one pass
    over the grid).
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape != grid.shape:
        raise UsageError(f"labels must have the grid's shape {grid.shape}, got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise UsageError(f"labels must be an integer array, got dtype {labels.dtype}")
    if simplify_m < 0:
        raise UsageError(f"simplify_m must be >= 0 metres, got {simplify_m}")
    if connectivity not in (4, 8):
        raise UsageError(f"connectivity must be 4 or 8, got {connectivity}")
    if labels.size and (labels.max() > np.iinfo(np.int32).max or labels.min() < 0):
        raise UsageError("labels must be in 0..2**31-1")
    parts: dict[int, list[Polygon]] = {}
    if bboxes is None:
        from scipy import ndimage

        bboxes = {
            lab: (sl[0].start, sl[1].start, sl[0].stop, sl[1].stop)
            for lab, sl in enumerate(ndimage.find_objects(labels.astype(np.int32, copy=False)), start=1)
            if sl is not None
        }
    transform = grid.transform
    for lab, (r0, c0, r1, c1) in bboxes.items():
        # each region is traced in its own bounding box: GDAL's polygonize walks the pixels it is
        # given, and a few dozen small boxes are a fraction of the grid
        r0, c0 = max(0, int(r0)), max(0, int(c0))
        on = labels[r0 : int(r1), c0 : int(c1)] == lab
        if not on.any():
            continue
        window = transform @ Affine.translation(c0, r0)
        for geom, _ in features.shapes(on.view(np.uint8), mask=on, transform=window, connectivity=connectivity):
            parts.setdefault(int(lab), []).append(shape(geom))
    out: dict[int, Polygon | MultiPolygon] = {}
    for lab, polys in parts.items():
        g = polys[0] if len(polys) == 1 else shapely.union_all(polys)
        exact = polygonal(g)
        if simplify_m > 0:
            s = polygonal(exact.simplify(simplify_m, preserve_topology=True))
            # a sliver can collapse under simplification: keep the exact outline then
            g = s if not s.is_empty and s.area > 0 else exact
        else:
            g = exact
        out[lab] = g
    return out
