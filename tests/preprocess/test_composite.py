"""Median composites: transients drop out, counts are right, blockwise equals whole."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from pipeline.preprocess.composite import median_composite


def _oracle(values, clear):
    v = values.copy()
    ok = ~np.isnan(v).any(axis=1) & clear
    v[~np.broadcast_to(ok[:, None], v.shape)] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(v, axis=0), ok.sum(axis=0)


def test_transient_in_two_of_seven_dates_drops_out():
    """Planted: ground 0.2 in all bands; a 'ship' 0.6 at (3, 3) on two dates; a 'cloud' 0.9 at (5, 5)
    on one date masked as not clear."""
    T, B, H, W = 7, 3, 8, 8
    v = np.full((T, B, H, W), 0.2, np.float32)
    v[[1, 4], :, 3, 3] = 0.6
    v[2, :, 5, 5] = 0.9
    clear = np.ones((T, H, W), bool)
    clear[2, 5, 5] = False
    c = median_composite(v, clear)
    np.testing.assert_allclose(c.median, 0.2)
    assert c.count[5, 5] == 6 and c.count[0, 0] == 7
    assert c.median.dtype == np.float32 and c.count.dtype == np.uint16


@pytest.mark.parametrize("T", [1, 2, 3, 6, 37, 70])
def test_matches_nanmedian_oracle_with_nan_and_masks(T):
    rng = np.random.default_rng(T)
    B, H, W = 4, 37, 23
    v = rng.random((T, B, H, W)).astype(np.float32)
    v[rng.random((T, B, H, W)) < 0.05] = np.nan
    clear = rng.random((T, H, W)) > 0.3
    clear[:, 0, 0] = False  # a pixel never clear
    ref, n = _oracle(v, clear)
    c = median_composite(v, clear)
    np.testing.assert_allclose(c.median, ref, rtol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(c.count, n)
    assert np.isnan(c.median[:, 0, 0]).all() and c.count[0, 0] == 0
    # without a clear mask every all-finite observation counts
    ref2, n2 = _oracle(v, np.ones((T, H, W), bool))
    c2 = median_composite(v)
    np.testing.assert_allclose(c2.median, ref2, rtol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(c2.count, n2)


def test_shape_errors():
    with pytest.raises(ValueError, match="T, B, H, W"):
        median_composite(np.zeros((3, 4, 4), np.float32))
    with pytest.raises(ValueError, match="clear"):
        median_composite(np.zeros((2, 1, 4, 4), np.float32), np.ones((3, 4, 4), bool))


def test_single_date_overwrite_is_a_view_with_the_same_values():
    rng = np.random.default_rng(9)
    v = rng.random((1, 3, 20, 17)).astype(np.float32)
    v[0, 1, 4, 4] = np.nan  # one band missing: the date does not count there, in any band
    clear = rng.random((1, 20, 17)) > 0.2
    want = median_composite(v.copy(), clear)
    got = median_composite(v, clear, overwrite=True)
    assert np.shares_memory(got.median, v)
    np.testing.assert_array_equal(got.median, want.median)
    np.testing.assert_array_equal(got.count, want.count)
    assert np.isnan(got.median[:, 4, 4]).all()


@pytest.mark.parametrize("T", [1, 2, 5])
def test_band_subset_read_in_place_equals_the_copied_subset(T):
    """``bands=`` composites some bands of the stack without copying them out: the same median
    and counts as compositing ``values[:, bands]`` (only those bands' NaN count), and never in
    place over the stack."""
    rng = np.random.default_rng(T)
    values = rng.random((T, 5, 9, 11)).astype(np.float32)
    values[0, 1, 2, 3] = np.nan  # in a band left out: does not exclude the date
    values[-1, 3, 4, 5] = np.nan  # in a composited band: excludes it
    clear = rng.random((T, 9, 11)) > 0.3
    keep = values.copy()
    got = median_composite(values, clear, bands=[3, 0], overwrite=True)
    want = median_composite(values[:, [3, 0]].copy(), clear)
    np.testing.assert_array_equal(got.median, want.median)
    np.testing.assert_array_equal(got.count, want.count)
    np.testing.assert_array_equal(values, keep)
    with pytest.raises(ValueError, match="bands must be indices"):
        median_composite(values, bands=[5])


def test_sorting_network_sorts_every_order():
    """The pruned Batcher network sorts any n values (checked on random orders and all 0/1
    inputs, which suffice for a comparator network by the 0-1 principle, for small n)."""
    import itertools

    from pipeline.preprocess.composite import sorting_network

    rng = np.random.default_rng(0)
    for n in range(1, 70):
        pairs = sorting_network(n)
        assert (pairs[:, 0] < pairs[:, 1]).all() and (pairs < n).all()
        for _ in range(10):
            x = rng.random(n)
            for a, b in pairs:
                if x[b] < x[a]:
                    x[a], x[b] = x[b], x[a]
            assert (np.diff(x) >= 0).all(), n
    for n in range(1, 11):
        pairs = sorting_network(n)
        for bits in itertools.product((0, 1), repeat=n):
            x = list(bits)
            for a, b in pairs:
                if x[b] < x[a]:
                    x[a], x[b] = x[b], x[a]
            assert x == sorted(x)
