"""Thresholds on planted bimodal histograms whose optimum is known analytically."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize, stats

from pipeline.errors import UsageError
from pipeline.kernels import THRESHOLDS, apply_threshold, threshold


def mixture(n1, m1, s1, n2, m2, s2, seed=0):
    """Planted: n1 samples of N(m1, s1) and n2 of N(m2, s2), shuffled, as (H, W) float32 with NaN border."""
    rng = np.random.default_rng(seed)
    v = np.concatenate([rng.normal(m1, s1, n1), rng.normal(m2, s2, n2)])
    rng.shuffle(v)
    side = int(np.ceil(np.sqrt(v.size))) + 2
    img = np.full(side * side, np.nan, np.float32)
    img[: v.size] = v
    return img.reshape(side, side)


def bayes_boundary(p1, m1, s1, p2, m2, s2):
    """Where the two weighted densities cross between the means (the minimum-error threshold)."""
    f = lambda t: p1 * stats.norm.pdf(t, m1, s1) - p2 * stats.norm.pdf(t, m2, s2)  # noqa: E731
    return optimize.brentq(f, m1, m2)


def test_otsu_symmetric_mixture_splits_in_the_middle():
    """Overlapping equal classes (means 4 sd apart): by symmetry both criteria peak at the midpoint."""
    img = mixture(100_000, 0.0, 1.0, 100_000, 4.0, 1.0)
    bin_width = (np.nanmax(img) - np.nanmin(img)) / 256
    assert abs(threshold(img, "otsu") - 2.0) < 2 * bin_width


def test_kittler_illingworth_finds_minimum_error_boundary():
    """Unequal weights and spreads: Otsu is biased toward the big class, K-I finds the Bayes boundary."""
    img = mixture(70_000, 0.0, 1.0, 30_000, 8.0, 2.0, seed=1)
    want = bayes_boundary(0.7, 0.0, 1.0, 0.3, 8.0, 2.0)
    bin_width = (np.nanmax(img) - np.nanmin(img)) / 256
    got = threshold(img, "kittler-illingworth")
    assert abs(got - want) < 3 * bin_width, (got, want)
    # Otsu is measurably elsewhere on this mixture (sanity check that the test can tell them apart)
    assert abs(threshold(img, "otsu") - want) > 3 * bin_width


def test_kittler_illingworth_equal_classes():
    img = mixture(100_000, 2.0, 0.5, 100_000, 4.0, 0.5, seed=2)
    assert abs(threshold(img, "kittler-illingworth", nbins=512) - 3.0) < 0.05


def test_mask_and_sample():
    img = mixture(50_000, 0.0, 1.0, 50_000, 10.0, 1.0, seed=3)
    # mask keeps only the low class plus a few high values: the split moves
    mask = np.isfinite(img) & ((img < 5) | (np.arange(img.size).reshape(img.shape) % 50 == 0))
    assert threshold(img, "otsu", mask=mask) != threshold(img, "otsu")
    img = mixture(50_000, 0.0, 1.0, 50_000, 4.0, 1.0, seed=4)
    full = threshold(img, "kittler-illingworth")
    sub = threshold(img, "kittler-illingworth", sample=20_000, seed=4)
    assert abs(sub - full) < 0.15
    assert sub == threshold(img, "kittler-illingworth", sample=20_000, seed=4)


def test_chi2_threshold_is_the_upper_quantile():
    t = threshold(np.zeros((2, 2), np.float32), "chi2", dof=6, alpha=0.01)
    assert t == pytest.approx(stats.chi2.ppf(0.99, 6), rel=1e-12)
    rng = np.random.default_rng(5)
    sample = rng.chisquare(6, 200_000)
    assert abs((sample > t).mean() - 0.01) < 0.002
    with pytest.raises(UsageError, match="dof"):
        threshold(sample, "chi2")


def test_unknown_name_lists_valid_ones_and_callables_work():
    with pytest.raises(ValueError, match="otsu, kittler-illingworth, chi2"):
        threshold(np.ones(4), "kapur")
    assert set(THRESHOLDS) == {"otsu", "kittler-illingworth", "chi2"}
    img = mixture(1000, 0.0, 1.0, 1000, 5.0, 1.0)
    assert threshold(img, lambda v, q=0.5: float(np.quantile(v, q)), q=0.9) == pytest.approx(
        float(np.nanquantile(img, 0.9))
    )


def test_no_finite_values_is_a_clear_error():
    with pytest.raises(UsageError, match="no finite values"):
        threshold(np.full((3, 3), np.nan, np.float32), "otsu")
    with pytest.raises(UsageError, match="mask"):
        threshold(np.ones((3, 3), np.float32), "otsu", mask=np.ones((2, 2), bool))


def test_constant_values():
    assert threshold(np.full((5, 5), 2.5, np.float32), "otsu") == 2.5
    assert threshold(np.full((5, 5), 2.5, np.float32), "kittler-illingworth") == 2.5


def test_apply_threshold_matches_numpy():
    img = mixture(5000, 0.0, 1.0, 5000, 4.0, 1.0, seed=6)
    got = apply_threshold(img, 2.0)
    np.testing.assert_array_equal(got, img > np.float32(2.0))
    assert not got[np.isnan(img)].any()


@pytest.mark.parametrize("method", ["otsu", "kittler-illingworth"])
def test_parallel_histogram_path_equals_plain_numpy_path(method):
    """The one-pass kernel histogram on a (H, W) float32 array with planted NaN/inf gives exactly the
    threshold of the plain path (np.histogram of the finite values; skimage for Otsu)."""
    from skimage.filters import threshold_otsu

    img = mixture(60_000, 0.0, 1.0, 30_000, 3.0, 0.7, seed=7)
    img[3, :40] = np.inf
    img[7, :20] = -np.inf
    finite = img[np.isfinite(img)]
    got = threshold(img, method)
    slow = threshold(img.reshape(-1), method)  # 1-D input takes the plain numpy path
    assert got == slow
    if method == "otsu":
        assert got == float(threshold_otsu(finite))
    mask = np.zeros(img.shape, bool)
    mask[::2] = True
    assert threshold(img, method, mask=mask) == threshold(img.reshape(-1), method, mask=mask.reshape(-1))
    assert threshold(img, method, nbins=64) == threshold(img.reshape(-1), method, nbins=64)


def test_finite_minmax_equals_numpy_on_signs_scales_nan_inf_and_masks():
    """The histogram's range, compared through the floats' bits as integers: numpy's min, max
    and count of the finite values (inside the mask) on negatives, zeros of both signs, tiny
    and huge magnitudes, NaN, +-inf, rows with nothing finite, and empty input."""
    from pipeline.kernels import _numba

    rng = np.random.default_rng(11)
    for t in range(120):
        H, W = (int(x) for x in rng.integers(1, 40, 2))
        v = (rng.standard_normal((H, W)) * rng.choice([1e-30, 1e-3, 1.0, 1e30])).astype(np.float32)
        v[rng.random((H, W)) < 0.1] = np.nan
        v[rng.random((H, W)) < 0.05] = np.inf
        v[rng.random((H, W)) < 0.05] = -np.inf
        v[rng.random((H, W)) < 0.1] = 0.0
        v[0] = np.nan
        if t % 7 == 0:
            v[:] = np.nan
        mask = rng.random((H, W)) < 0.7
        for use in (False, True):
            lo, hi, n = _numba.finite_minmax(v, mask if use else np.ones((1, 1), bool), use)
            f = v[np.isfinite(v) & (mask if use else True)]
            assert n == f.size
            if n:
                assert (lo, hi) == (f.min(), f.max())
            else:
                assert (lo, hi) == (np.inf, -np.inf)


@pytest.mark.parametrize("nbins", [2, 7, 256])
def test_kernel_histogram_counts_equal_numpy_bin_for_bin(nbins):
    """The counts behind the one-pass thresholds are np.histogram's, bin for bin, where the bin
    estimate is most fragile: values exactly on every edge and one float32 step either side of
    it, long runs of one value (the pixel-to-sub-histogram interleave), NaN/inf, and a mask."""
    from pipeline.kernels.thresholds import _fast_histogram

    rng = np.random.default_rng(3)
    lo, hi = np.float32(-0.37), np.float32(5.3)
    edges = np.linspace(lo, hi, nbins + 1, dtype=np.float32)
    near = np.concatenate([edges, np.nextafter(edges, np.float32(-np.inf)), np.nextafter(edges, np.float32(np.inf))])
    near = near[(near >= lo) & (near <= hi)]
    vals = np.concatenate([near, np.repeat(np.float32(0.5), 999), rng.exponential(0.4, 20_000).astype(np.float32) + lo, [lo, hi]])
    vals = np.clip(vals, lo, hi).astype(np.float32)
    rng.shuffle(vals)
    W = 173
    img = np.full(((vals.size + W - 1) // W + 2) * W, np.nan, np.float32)
    img[: vals.size] = vals
    img = img.reshape(-1, W)
    img[-1, :5] = np.inf
    img[-1, 5:9] = -np.inf
    finite = img[np.isfinite(img)]
    counts, centers = _fast_histogram(img, None, nbins)
    want, want_edges = np.histogram(finite, bins=nbins)
    np.testing.assert_array_equal(counts, want)
    np.testing.assert_array_equal(centers, (want_edges[:-1] + want_edges[1:]) / 2.0)
    mask = rng.random(img.shape) < 0.5
    counts, _ = _fast_histogram(img, mask, nbins)
    sel = img[mask & np.isfinite(img)]
    np.testing.assert_array_equal(counts, np.histogram(sel, bins=nbins)[0])


def test_apply_threshold_with_mask():
    img = mixture(5000, 0.0, 1.0, 5000, 4.0, 1.0, seed=8)
    mask = np.zeros(img.shape, bool)
    mask[:, ::3] = True
    np.testing.assert_array_equal(apply_threshold(img, 1.5, mask=mask), (img > np.float32(1.5)) & mask)


@pytest.mark.parametrize("radius", [0, 1, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_local_peak_keep_matches_a_maximum_filter(radius, dtype):
    """Oracle: scipy's maximum filter over the changed values (0 elsewhere; values positive),
    edges clipped; NaN outside ``changed`` is ignored."""
    from scipy import ndimage

    from pipeline.kernels.thresholds import local_peak_keep

    rng = np.random.default_rng(radius)
    values = rng.uniform(0.1, 10.0, (37, 53)).astype(dtype)
    changed = rng.random((37, 53)) < 0.3
    values[~changed & (rng.random((37, 53)) < 0.5)] = np.nan
    filled = np.where(changed, values, 0.0).astype(np.float32)
    peak = ndimage.maximum_filter(filled, size=2 * radius + 1, mode="constant", cval=0.0)
    expected = changed & (filled >= np.float32(0.4) * peak)
    got = local_peak_keep(changed, values, 0.4, radius_px=radius)
    assert got.dtype == bool and np.array_equal(got, expected)
    # a weak pixel 5 pixels from a strong one goes within a radius of 5, stays with a radius of 4
    c = np.zeros((1, 12), bool)
    c[0, [0, 5]] = True
    v = np.zeros((1, 12), np.float32)
    v[0, 0], v[0, 5] = 10.0, 1.0
    assert local_peak_keep(c, v, 0.4, radius_px=4)[0].tolist() == [True] + [False] * 4 + [True] + [False] * 6
    assert local_peak_keep(c, v, 0.4, radius_px=5)[0].tolist() == [True] + [False] * 11
    with pytest.raises(UsageError, match="radius_px"):
        local_peak_keep(c, v, 0.4, radius_px=-1)


@pytest.mark.parametrize("radius", [0, 1, 3])
def test_local_peak_keep_tests_query_pixels_against_the_changed_peak(radius):
    """Oracle: with ``query``, each query pixel (changed or not) is compared with the larger of
    its own value and scipy's maximum filter over the changed values; other pixels are False."""
    from scipy import ndimage

    from pipeline.kernels.thresholds import local_peak_keep

    rng = np.random.default_rng(10 + radius)
    values = rng.uniform(0.1, 10.0, (41, 29)).astype(np.float32)
    changed = rng.random((41, 29)) < 0.2
    query = rng.random((41, 29)) < 0.3
    values[~changed & ~query & (rng.random((41, 29)) < 0.5)] = np.nan
    peak = ndimage.maximum_filter(np.where(changed, values, 0.0).astype(np.float32), size=2 * radius + 1, mode="constant", cval=0.0)
    expected = query & (values >= np.float32(0.4) * np.maximum(peak, values))
    got = local_peak_keep(changed, values, 0.4, radius_px=radius, query=query)
    assert np.array_equal(got, expected)
    assert np.array_equal(local_peak_keep(changed, values, 0.4, radius_px=radius, query=changed),
                          local_peak_keep(changed, values, 0.4, radius_px=radius))
    with pytest.raises(UsageError, match="query"):
        local_peak_keep(changed, values, 0.4, radius_px=radius, query=np.ones((3, 3), bool))
