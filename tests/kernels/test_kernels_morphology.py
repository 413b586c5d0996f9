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
