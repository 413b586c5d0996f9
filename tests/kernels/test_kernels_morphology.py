"""Sparse binary morphology against scipy.ndimage on random masks of every density and size."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.morphology import disk

from pipeline.errors import UsageError
from pipeline.kernels.morphology import binary_closing, binary_opening


@pytest.mark.parametrize("radius", [1, 2, 3])
def test_closing_and_opening_equal_scipy(radius):
    rng = np.random.default_rng(radius)
    se = disk(radius).astype(bool)
    for _ in range(25):
        h, w = rng.integers(1, 70, 2)
        mask = rng.random((h, w)) < rng.uniform(0.02, 0.7)
        closed = mask | ndimage.binary_closing(np.pad(mask, radius), structure=se)[radius:-radius, radius:-radius]
        np.testing.assert_array_equal(binary_closing(mask, radius_px=radius), closed)
        np.testing.assert_array_equal(binary_opening(mask, radius_px=radius), ndimage.binary_opening(mask, structure=se))


def test_edges_empty_masks_radius_zero_and_bad_input():
    mask = np.zeros((9, 9), bool)
    mask[0:4, 0:3] = mask[0:4, 5:8] = True  # two blocks on the top edge, 2 pixels apart
    closed = binary_closing(mask, radius_px=2)
    assert closed[mask].all()  # the edge does not erode what touches it
    assert closed[1:3, 3:5].all() and closed.sum() == mask.sum() + 4  # the gap is bridged inside
    line = np.zeros((9, 9), bool)
    line[4, 1:8] = True
    assert not binary_opening(line, radius_px=1).any()  # one-pixel-thin lines vanish
    assert not binary_closing(np.zeros((4, 4), bool), radius_px=2).any()
    np.testing.assert_array_equal(binary_opening(line, radius_px=0), line)
    with pytest.raises(UsageError, match="bool"):
        binary_closing(mask.astype(np.uint8), radius_px=1)
    with pytest.raises(UsageError, match="radius_px"):
        binary_opening(mask, radius_px=-1)



def test_dilation_equals_scipy_for_symmetric_structures():
    from pipeline.kernels.morphology import binary_dilation

    rng = np.random.default_rng(9)
    y, x = np.mgrid[-3:4, -3:4]
    for se in (disk(1).astype(bool), (x * x + y * y) <= 12, np.ones((3, 5), bool)):
        for _ in range(20):
            h, w = rng.integers(1, 60, 2)
            mask = rng.random((h, w)) < rng.uniform(0.0, 0.6)
            np.testing.assert_array_equal(binary_dilation(mask, se), ndimage.binary_dilation(mask, structure=se))
    with pytest.raises(UsageError, match="symmetric"):
        binary_dilation(np.zeros((4, 4), bool), np.array([[1, 1, 0]], bool))


@pytest.mark.parametrize("radius", [1, 3, 6, 9])
def test_dense_and_sparse_dilation_kernels_both_equal_scipy(radius):
    """The row kernel (dense masks; by shifts for runs up to SHIFT_CAP, sequential passes beyond,
    radius 9) and the scatter (sparse ones) give scipy's dilation on the same masks, whichever the
    density would pick: blobs touching every edge, single pixels, full and empty rows, a full mask."""
    from pipeline.kernels import _numba
    from pipeline.kernels.morphology import _offsets, _row_half_widths

    rng = np.random.default_rng(radius)
    se = disk(radius).astype(bool)
    half = _row_half_widths(se)
    assert half is not None and list(half) == [int(row.sum()) // 2 for row in se]
    dy, dx = _offsets(se)
    masks = [rng.random(rng.integers(1, 90, 2)) < rng.uniform(0.0, 0.8) for _ in range(30)]
    masks += [ndimage.binary_dilation(rng.random((64, 97)) < 0.01, iterations=3), np.ones((7, 5), bool), np.zeros((5, 9), bool)]
    edge = np.zeros((20, 20), bool)
    edge[0, 0] = edge[19, 19] = edge[0, 19] = edge[10, :] = True
    masks.append(edge)
    for mask in masks:
        want = ndimage.binary_dilation(mask, structure=se)
        rows, scattered = np.empty_like(mask), np.empty_like(mask)
        _numba.binary_dilation_rows(mask.view(np.uint8), half, rows.view(np.uint8))
        _numba.binary_dilation_sparse(mask, dy, dx, scattered)
        np.testing.assert_array_equal(rows, want)
        np.testing.assert_array_equal(scattered, want)
    # elements whose rows are not centred runs take the scatter
    assert _row_half_widths(np.array([[1, 1, 0], [0, 1, 0], [0, 1, 1]], bool)) is None
    assert _row_half_widths(np.array([[1, 0, 1], [1, 1, 1], [1, 0, 1]], bool)) is None
    assert list(_row_half_widths(np.ones((3, 5), bool))) == [2, 2, 2]


@pytest.mark.parametrize("connectivity", [1, 2])
def test_label_equals_scipy_labels_and_numbering(connectivity):
    """Same labels, numbered alike (raster order of each region's first pixel), on random masks
    of every density, thin shapes that only join late (a U, a spiral, a checkerboard) and edges."""
    from pipeline.kernels.morphology import label

    structure = ndimage.generate_binary_structure(2, connectivity)
    rng = np.random.default_rng(connectivity)
    masks = [rng.random(rng.integers(1, 80, 2)) < rng.uniform(0.0, 0.9) for _ in range(60)]
    u = np.zeros((9, 9), bool)
    u[1:8, 1] = u[1:8, 7] = u[7, 1:8] = True  # two arms meet only at the bottom
    spiral = np.zeros((15, 15), bool)
    r0, r1, c0, c1 = 0, 14, 0, 14
    while r0 <= r1 and c0 <= c1:
        spiral[r0, c0 : c1 + 1] = spiral[r0 : r1 + 1, c1] = True
        spiral[r1, c0 + 2 : c1 + 1] = True
        spiral[r0 + 2 : r1 + 1, c0] = True
        r0, r1, c0, c1 = r0 + 2, r1 - 2, c0 + 2, c1 - 2
    checker = np.indices((31, 33)).sum(axis=0) % 2 == 0
    anti = np.fliplr(np.eye(12, dtype=bool))  # diagonal chain running up to the right
    masks += [u, spiral, checker, anti, np.ones((5, 7), bool), np.zeros((6, 4), bool), np.ones((1, 1), bool)]
    for mask in masks:
        want, n_want = ndimage.label(mask, structure=structure, output=np.int32)
        got, n = label(mask, connectivity=connectivity)
        assert got.dtype == np.int32 and n == n_want
        np.testing.assert_array_equal(got, want)
    assert label(checker, connectivity=connectivity)[1] == (1 if connectivity == 2 else int(checker.sum()))
    with pytest.raises(UsageError, match="connectivity"):
        label(u, connectivity=3)
    with pytest.raises(UsageError, match="bool"):
        label(u.astype(np.uint8))
