"""Kernels of the reads, against numpy."""

from __future__ import annotations

import numpy as np


def test_dn_valid_marks_pixels_with_data_in_every_band_and_zeroes_the_rest():
    """The read's validity pass against numpy: valid where every band's DN > 0; with
    ``zero_invalid`` every band of the other pixels becomes 0, without it nothing is written."""
    from pipeline.kernels import _numba as K

    rng = np.random.default_rng(6)
    dn = rng.integers(0, 4, (3, 30, 41)).astype(np.uint16) * rng.integers(1, 5000, (3, 30, 41)).astype(np.uint16)
    want = (dn > 0).all(axis=0)
    assert 0.1 < want.mean() < 0.9
    keep = dn.copy()
    valid = np.empty(want.shape, bool)
    K.dn_valid(keep, valid, False)
    np.testing.assert_array_equal(valid, want)
    np.testing.assert_array_equal(keep, dn)
    K.dn_valid(keep, valid, True)
    np.testing.assert_array_equal(keep, np.where(want, dn, 0))
