"""polygons(): valid outlines in the grid CRS whose areas match the pixel counts."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from pipeline.errors import PipelineError
from pipeline.grid import Grid
from pipeline.objects.label import label_regions
from pipeline.objects.vectorise import polygonal, polygons

GRID = Grid(32634, Affine(10.0, 0.0, 430000.0, 0.0, -10.0, 3551000.0), 24, 20)


def test_rectangle_outline_is_exact_in_grid_crs():
    """Planted: label 7 on rows 2-4, cols 3-8 (3 x 6 px); its outline is the box of those pixel
    edges in UTM: x 430030..430090, y 3550950..3550980."""
    labels = np.zeros(GRID.shape, np.int32)
    labels[2:5, 3:9] = 7
    polys = polygons(labels, GRID, simplify_m=5.0)
    assert list(polys) == [7]
    g = polys[7]
    assert g.is_valid and g.geom_type == "Polygon"
    assert g.bounds == pytest.approx((430030.0, 3550950.0, 430090.0, 3550980.0))
    assert g.area == pytest.approx(18 * 100.0)


def test_two_parts_of_one_label_give_a_multipolygon():
    labels = np.zeros(GRID.shape, np.int32)
    labels[1:3, 1:3] = 2
    labels[10:12, 10:14] = 2
    g = polygons(labels, GRID, simplify_m=0)[2]
    assert g.geom_type == "MultiPolygon" and len(g.geoms) == 2 and g.area == pytest.approx(12 * 100.0)


def test_diagonal_pixels_joined_by_8_connectivity_stay_valid():
    """Planted: a checkerboard-like staircase of pixels touching only at corners (one label, as
    8-connected labelling gives); the traced outline is repaired into a valid geometry."""
    labels = np.zeros(GRID.shape, np.int32)
    for i in range(6):
        labels[2 + i, 2 + i] = 1
    labels[2:4, 2:4] = 1
    g = polygons(labels, GRID, simplify_m=0)[1]
    assert g.is_valid
    assert g.area == pytest.approx(int((labels == 1).sum()) * 100.0)


@settings(max_examples=40, deadline=None)
@given(arrays(bool, (20, 24), elements=st.booleans()), st.sampled_from([0.0, 5.0, 10.0]))
def test_random_masks_give_valid_polygons_with_matching_area(mask, simplify):
    labels, n = label_regions(mask)
    polys = polygons(labels, GRID, simplify_m=simplify)
    assert sorted(polys) == list(range(1, n + 1))
    x0, y0, x1, y1 = GRID.bounds
    for lab, g in polys.items():
        assert g.is_valid and not g.is_empty and g.geom_type in ("Polygon", "MultiPolygon")
        gx0, gy0, gx1, gy1 = g.bounds
        assert x0 - 1e-6 <= gx0 and gx1 <= x1 + 1e-6 and y0 - 1e-6 <= gy0 and gy1 <= y1 + 1e-6
        if simplify == 0:
            assert g.area == pytest.approx(int((labels == lab).sum()) * 100.0)
    if simplify == 0 and n:
        # the outlines tile exactly the changed pixels: pixel centres inside <=> changed
        rr, cc = np.mgrid[0 : GRID.height, 0 : GRID.width]
        xs, ys = GRID.xy(rr.ravel(), cc.ravel())
        union = shapely.union_all(list(polys.values()))
        assert (shapely.contains_xy(union, xs, ys) == mask.ravel()).all()


def test_polygonal_drops_lines_from_repairs():
    bowtie = shapely.Polygon([(0, 0), (2, 2), (2, 0), (0, 2)])
    g = polygonal(bowtie)
    assert g.is_valid and g.geom_type in ("Polygon", "MultiPolygon") and g.area == pytest.approx(2.0)
    mixed = shapely.GeometryCollection([shapely.box(0, 0, 1, 1), shapely.LineString([(5, 5), (6, 6)])])
    assert polygonal(mixed).equals(shapely.box(0, 0, 1, 1))


def test_bad_input():
    with pytest.raises(PipelineError, match="shape"):
        polygons(np.zeros((3, 3), np.int32), GRID)
    with pytest.raises(PipelineError, match="integer"):
        polygons(np.zeros(GRID.shape, float), GRID)
    with pytest.raises(PipelineError, match="simplify_m"):
        polygons(np.zeros(GRID.shape, np.int32), GRID, simplify_m=-1)


@pytest.mark.parametrize("connectivity", [4, 8])
def test_outlines_traced_per_region_equal_one_pass_over_the_grid(connectivity):
    """Each region is polygonised in its bounding box: the same exact outlines as GDAL's
    polygonize over the whole grid, with or without the boxes given."""
    from rasterio import features
    from shapely import union_all
    from shapely.geometry import shape

    from scipy import ndimage

    from pipeline.objects.label import region_table

    grid = Grid(32634, Affine(10.0, 0.0, 430005.0, 0.0, -10.0, 3551003.0), 150, 130)
    rng = np.random.default_rng(connectivity)
    mask = ndimage.binary_dilation(rng.random(grid.shape) < 0.01, iterations=2) & (rng.random(grid.shape) < 0.8)
    labels, n = label_regions(mask, connectivity=1 if connectivity == 4 else 2)
    assert n > 20
    whole = {}
    for geom, value in features.shapes(labels, mask=labels > 0, transform=grid.transform, connectivity=connectivity):
        whole.setdefault(int(value), []).append(shape(geom))
    boxes = {lab: tuple(t["bbox"]) for lab, t in region_table(labels).items()}
    for given in (None, boxes):
        got = polygons(labels, grid, simplify_m=0, connectivity=connectivity, bboxes=given)
        assert sorted(got) == list(range(1, n + 1))
        for lab, parts in whole.items():
            want = polygonal(parts[0] if len(parts) == 1 else union_all(parts))
            assert got[lab].normalize().equals_exact(want.normalize(), 0.0), lab
