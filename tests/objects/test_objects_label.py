"""clean_mask, label_regions and region_table on tiny planted masks with hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.draw import disk, polygon

from pipeline.errors import PipelineError
from pipeline.objects.label import clean_mask, label_regions, region_table


def test_clean_mask_removes_slivers_and_speckle_keeps_blocks():
    """Planted on 40 x 40: a 1-px line (20 long), a lone pixel, a 2 x 2 block, a 3 x 3 block and a
    5 x 8 block. Opening radius 1 removes the line, the pixel and the 2 x 2; the 3 x 3 loses its
    four corners (a cross of 5 px, dropped by min_pixels=6); the 5 x 8 keeps all but its corners."""
    m = np.zeros((40, 40), bool)
    m[2, 5:25] = True
    m[10, 10] = True
    m[15:17, 15:17] = True
    m[20:23, 2:5] = True
    m[30:35, 20:28] = True
    out = clean_mask(m, opening_radius_px=1, min_pixels=6)
    expected = np.zeros_like(m)
    expected[30:35, 20:28] = True
    for r, c in ((30, 20), (30, 27), (34, 20), (34, 27)):
        expected[r, c] = False
    assert (out == expected).all()
    assert m.sum() == 20 + 1 + 4 + 9 + 40  # input untouched


def test_clean_mask_without_opening_filters_by_size_only():
    m = np.zeros((10, 10), bool)
    m[0, 0:3] = True  # 3 px
    m[5, 5:9] = True  # 4 px
    m[8, 0] = m[9, 1] = True  # 2 px joined diagonally (8-connected)
    assert clean_mask(m, opening_radius_px=0, min_pixels=4).sum() == 4
    assert clean_mask(m, opening_radius_px=0, min_pixels=2, connectivity=2)[9, 1]
    assert not clean_mask(m, opening_radius_px=0, min_pixels=2, connectivity=1)[9, 1]


def test_clean_mask_closing_joins_fragments_up_to_2r_pixels_apart():
    """Planted on 30 x 40: two 8 x 8 blocks 3 px apart, and a 4 x 4 block in the top-left corner.
    Closing with a disc of radius 2 (5 px across) joins the pair into one region through the
    gap (the disc's rounded ends leave the gap's corners open), adds nothing outside the gap and
    leaves the corner block whole (the image edge is not eroded into); radius 1 cannot span 3 px."""
    m = np.zeros((30, 40), bool)
    m[10:18, 5:13] = True
    m[10:18, 16:24] = True
    m[0:4, 0:4] = True
    gap = np.zeros_like(m)
    gap[10:18, 13:16] = True
    closed = clean_mask(m, opening_radius_px=0, min_pixels=0, closing_radius_px=2)
    assert label_regions(closed)[1] == 2  # the joined pair and the corner block
    added = closed & ~m
    assert added[gap].sum() >= 12 and not added[~gap].any()
    assert added[12:16, 13:16].all()  # the gap between the middle rows, all of it
    # with min_pixels between a block (64 px) and the joined pair (> 128 px), only the pair survives
    kept = clean_mask(m, opening_radius_px=1, min_pixels=100, closing_radius_px=2)
    assert label_regions(kept)[1] == 1 and kept[12:16, 13:16].all() and not kept[0:4, 0:4].any()
    assert not clean_mask(m, opening_radius_px=1, min_pixels=100).any()
    assert (clean_mask(m, opening_radius_px=0, min_pixels=0, closing_radius_px=1) == m).all()
    assert not clean_mask(np.zeros((5, 5), bool), closing_radius_px=2).any()
    with pytest.raises(PipelineError, match="closing_radius_px"):
        clean_mask(m, closing_radius_px=-1)


def test_clean_mask_rejects_bad_input():
    with pytest.raises(PipelineError, match="bool"):
        clean_mask(np.zeros((3, 3), np.uint8))
    with pytest.raises(PipelineError, match="2-D"):
        clean_mask(np.zeros((3, 3, 3), bool))


def test_label_regions_counts_8_connected():
    m = np.zeros((6, 6), bool)
    m[0, 0] = m[1, 1] = True  # diagonal pair
    m[4:6, 4:6] = True
    labels, n = label_regions(m)
    assert n == 2 and labels.dtype == np.int32
    assert labels[0, 0] == labels[1, 1] != labels[4, 4]
    assert label_regions(m, connectivity=1)[1] == 3


def test_region_table_shape_measures():
    """Planted: an axis-aligned 4 x 20 px east-west bar, a 40-px north-south bar 3 px wide, a
    disc of radius 8 and a 10 x 40 px rectangle rotated to azimuth 30 (drawn as a polygon)."""
    labels = np.zeros((120, 120), np.int32)
    labels[5:9, 5:25] = 1  # east-west
    labels[20:60, 5:8] = 2  # north-south
    rr, cc = disk((30, 40), 8.5)
    labels[rr, cc] = 3
    a = math.radians(30)
    cx, cy = 85.0, 80.0  # (col, row)
    ux, uy = math.sin(a), -math.cos(a)  # along: east = +col, north = -row
    vx, vy = math.cos(a), math.sin(a)
    pts = [(cy + s * 20 * uy + t * 5 * vy, cx + s * 20 * ux + t * 5 * vx) for s, t in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
    rr, cc = polygon([p[0] for p in pts], [p[1] for p in pts], labels.shape)
    labels[rr, cc] = 4
    t = region_table(labels, pixel_size_m=10.0)
    assert sorted(t) == [1, 2, 3, 4]
    ew, ns, dsk, rot = t[1], t[2], t[3], t[4]
    assert ew["area_px"] == 80 and ew["area_m2"] == 8000.0
    assert ew["orientation_deg"] == pytest.approx(90.0, abs=0.5)
    assert ns["orientation_deg"] == pytest.approx(0.0, abs=0.5) or ns["orientation_deg"] == pytest.approx(180.0, abs=0.5)
    assert rot["orientation_deg"] == pytest.approx(30.0, abs=3.0)
    assert ew["rectangularity"] == pytest.approx(1.0)
    assert ew["length_m"] == pytest.approx(200.0) and ew["width_m"] == pytest.approx(40.0)
    assert ns["elongation"] > 8
    assert ew["elongation"] == pytest.approx(5.0, rel=0.1)
    assert dsk["elongation"] == pytest.approx(1.0, abs=0.1)
    assert dsk["rectangularity"] == pytest.approx(math.pi / 4, abs=0.06)
    assert rot["rectangularity"] > 0.85
    assert rot["length_m"] == pytest.approx(400, rel=0.08) and rot["width_m"] == pytest.approx(100, rel=0.15)
    assert dsk["centroid_rc"] == pytest.approx([30.0, 40.0], abs=0.01)
    assert ew["bbox"] == [5, 5, 9, 25]


def test_region_table_means_ignore_nan_and_match_numpy():
    """Planted: two regions, deltas of random values with some NaN; oracle: numpy nanmean over
    each region's mask; a region whose values are all NaN gets None."""
    rng = np.random.default_rng(1)
    labels = np.zeros((30, 30), np.int32)
    labels[2:10, 2:12] = 1
    labels[15:25, 15:20] = 2
    labels[27:29, 27:29] = 3
    d = rng.normal(0, 1, (30, 30)).astype(np.float32)
    d[3, 3] = d[16, 16] = np.nan
    d[27:29, 27:29] = np.nan
    mag = np.abs(d)
    before = rng.random((2, 30, 30)).astype(np.float32)
    after = before + 0.1
    t = region_table(labels, mag, {"ndvi": d}, before_img=before, after_img=after, bands=("B04", "B08"))
    for lab in (1, 2):
        m = labels == lab
        assert t[lab]["d_ndvi"] == pytest.approx(float(np.nanmean(d[m].astype(np.float64))), rel=1e-9)
        assert t[lab]["mean_magnitude"] == pytest.approx(float(np.nanmean(mag[m].astype(np.float64))), rel=1e-9)
        assert t[lab]["before_B08"] == pytest.approx(float(before[1][m].mean()), rel=1e-6)
        assert t[lab]["after_B04"] - t[lab]["before_B04"] == pytest.approx(0.1, abs=1e-6)
    assert t[3]["d_ndvi"] is None


def test_region_table_rejects_mismatched_shapes():
    labels = np.zeros((5, 5), np.int32)
    labels[1:3, 1:3] = 1
    with pytest.raises(PipelineError, match="shape"):
        region_table(labels, np.zeros((4, 5), np.float32))
    with pytest.raises(PipelineError, match="bands"):
        region_table(labels, before_img=np.zeros((2, 5, 5), np.float32))
    with pytest.raises(PipelineError, match="integer"):
        region_table(labels.astype(float))


def test_region_table_takes_deltas_of_the_labelled_pixels_only():
    """A callable gives the deltas of the labelled pixels (what detection passes: the deltas
    are never computed over the whole grid); the means equal those of the full layers."""
    rng = np.random.default_rng(5)
    labels = np.zeros((60, 80), np.int32)
    labels[5:15, 5:25] = 1
    labels[30:50, 40:44] = 2
    full = {"ndvi": rng.normal(size=labels.shape).astype(np.float32), "bsi": rng.normal(size=labels.shape).astype(np.float32)}
    full["ndvi"][6, 6] = np.nan
    asked = []

    def at(flat_index):
        asked.append(flat_index.size)
        return {k: v.ravel()[flat_index] for k, v in full.items()}

    dense = region_table(labels, deltas=full)
    lazy = region_table(labels, deltas=at)
    assert asked == [int((labels > 0).sum())]
    for lab in (1, 2):
        for key in ("d_ndvi", "d_bsi"):
            assert lazy[lab][key] == dense[lab][key]
    with pytest.raises(PipelineError, match=r"deltas\['ndvi'\] of the labelled pixels has shape"):
        region_table(labels, deltas=lambda idx: {"ndvi": np.zeros(3, np.float32)})


@pytest.mark.parametrize("connectivity", [1, 2])
def test_clean_labels_equal_clean_mask_then_label_regions(connectivity):
    """One labelling serves the size filter and the labels: the same regions, numbered the same
    way, as cleaning and then labelling."""
    from pipeline.objects.label import clean_labels

    rng = np.random.default_rng(11)
    m = rng.random((120, 90)) < 0.35
    m[40:60, 10:50] = True
    labels, n = clean_labels(m, opening_radius_px=1, min_pixels=5, connectivity=connectivity)
    ref, n_ref = label_regions(clean_mask(m, opening_radius_px=1, min_pixels=5, connectivity=connectivity), connectivity=connectivity)
    assert n == n_ref > 1 and labels.dtype == np.int32
    np.testing.assert_array_equal(labels, ref)
    # the size filter against a slow oracle: every region of the opened mask counted one by one
    from scipy import ndimage
    from skimage import morphology

    opened = ndimage.binary_opening(m, structure=morphology.disk(1).astype(bool))
    lab, k = ndimage.label(opened, ndimage.generate_binary_structure(2, connectivity))
    oracle = np.isin(lab, [i for i in range(1, k + 1) if (lab == i).sum() >= 5])
    np.testing.assert_array_equal(labels > 0, oracle)


@pytest.mark.parametrize("rows", [1, 7, 256])
def test_label_sizes_and_relabel_equal_the_whole_image_forms(rows):
    """The banded forms (no int64 copy of the label image, no second label image) give what
    ``np.bincount(labels.ravel())`` and ``lut[labels]`` give, whatever the band height."""
    from pipeline.objects.label import label_sizes, relabel

    rng = np.random.default_rng(5)
    labels = rng.integers(0, 40, size=(53, 31)).astype(np.int32)
    np.testing.assert_array_equal(label_sizes(labels, 45, rows=rows), np.bincount(labels.ravel(), minlength=46))
    lut = rng.permutation(46).astype(np.int32)
    want = lut[labels]
    assert relabel(labels, lut, rows=rows) is labels
    np.testing.assert_array_equal(labels, want)


def test_label_kernels_and_banded_forms_agree_and_reject_labels_outside_the_table():
    """int32 images take the parallel kernels, others the banded numpy forms: the same counts and
    relabelled images (label 0 relabelled too when the table says so); a label outside the table
    raises as numpy's indexing does, and labels above ``n`` are not silently dropped from the sizes."""
    from pipeline.objects.label import label_sizes, relabel

    rng = np.random.default_rng(11)
    base = rng.integers(0, 300, size=(257, 129))
    base[rng.random(base.shape) < 0.6] = 0
    lut = rng.permutation(301).astype(np.int32)  # lut[0] is not 0
    want_sizes = np.bincount(base.ravel(), minlength=301)
    for dtype in (np.int32, np.int64):
        labels = base.astype(dtype)
        np.testing.assert_array_equal(label_sizes(labels, 300), want_sizes)
        np.testing.assert_array_equal(relabel(labels, lut.astype(dtype)), lut[base])
    short = np.arange(200, dtype=np.int32)
    with pytest.raises(IndexError):
        relabel(base.astype(np.int32), short)
    with pytest.raises(ValueError):  # a count for label 299 has nowhere to go in 0..199
        label_sizes(base.astype(np.int32), 199)
