"""IR-MAD against an independent eigh-based implementation; affine invariance; planted change."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from pipeline.errors import UsageError
from pipeline.kernels import irmad, irmad_transform, mad_variates, nochange_mask
from pipeline.kernels import _dispatch, _numba

import _kernel_oracle as oracle


def correlated_pair(*, B=4, H=60, W=70, seed=0, noise=0.01, change=0.15):
    """Planted scene: B correlated bands (a mix of 3 latent fields) before; after = per-band gain
    and offset of before + Gaussian noise ``noise``; a 12x15 block at rows 20:32, cols 30:45 gains
    ``change`` in the first half of the bands and loses it in the rest (real change). NaN (no data)
    planted at 25 random pixels of before. float32 reflectance.
    """
    rng = np.random.default_rng(seed)
    latent = rng.normal(0, 1, (3, H, W))
    mix = rng.uniform(0.2, 1.0, (B, 3))
    b = 0.25 + 0.05 * np.tensordot(mix, latent, axes=1) + rng.normal(0, 0.01, (B, H, W))
    gain = rng.uniform(0.7, 1.4, B)[:, None, None]
    off = rng.uniform(-0.05, 0.05, B)[:, None, None]
    a = gain * b + off + rng.normal(0, noise, (B, H, W))
    a[: B // 2, 20:32, 30:45] += change
    a[B // 2 :, 20:32, 30:45] -= change
    b = b.astype(np.float32)
    a = a.astype(np.float32)
    flat = rng.choice(H * W, 25, replace=False)
    b[rng.integers(0, B, 25), flat // W, flat % W] = np.nan
    return b, a


@pytest.mark.parametrize("iterations", [1, 6])
def test_irmad_matches_independent_eigh_implementation(iterations):
    b, a = correlated_pair()
    r = irmad(b, a, max_iter=iterations, tol=1e-12)
    assert r.iterations == iterations and not r.converged
    rho, chi, p = oracle.irmad(b, a, iterations=iterations)
    np.testing.assert_allclose(r.rho, rho, atol=2e-5)
    assert np.all(np.diff(r.rho) <= 0)
    np.testing.assert_array_equal(np.isnan(r.chi2), np.isnan(chi))
    np.testing.assert_allclose(r.chi2, chi, rtol=2e-3, atol=2e-3, equal_nan=True)
    np.testing.assert_allclose(r.p_nochange, p, atol=2e-3, equal_nan=True)
    np.testing.assert_allclose(r.sigma, np.sqrt(2 * (1 - rho)), rtol=2e-3)
    assert r.chi2.dtype == np.float32 and r.p_nochange.dtype == np.float32


def test_irmad_with_mask_matches_oracle():
    b, a = correlated_pair(seed=1)
    mask = np.ones(b.shape[1:], bool)
    mask[:, :20] = False
    r = irmad(b, a, mask=mask, max_iter=3, tol=1e-12)
    rho, chi, _ = oracle.irmad(b, a, iterations=3, mask=mask)
    np.testing.assert_allclose(r.rho, rho, atol=2e-5)
    # the transform still covers the unmasked pixels
    assert np.isfinite(r.chi2[:, :20]).mean() > 0.95
    np.testing.assert_allclose(r.chi2, chi, rtol=2e-3, atol=2e-3, equal_nan=True)


def test_pure_affine_change_has_unit_correlation():
    """after = gain * before + offset exactly (plus float32 rounding): every rho is ~1."""
    b, _ = correlated_pair(seed=2)
    gain = np.array([0.8, 1.3, 1.1, 0.6], np.float32)[:, None, None]
    a = (gain * b + 0.03).astype(np.float32)
    r = irmad(b, a, max_iter=1)
    np.testing.assert_allclose(r.rho, 1.0, atol=1e-4)


def test_affine_change_of_one_date_leaves_statistics_unchanged():
    b, a = correlated_pair(seed=3)
    r1 = irmad(b, a, max_iter=8, tol=1e-12)
    M = np.array([[1.2, 0.1, 0, 0], [0, 0.9, 0.05, 0], [0, 0, 1.1, 0], [0.02, 0, 0, 0.8]], np.float64)
    a2 = (np.tensordot(M, a.astype(np.float64), axes=1) + 0.07).astype(np.float32)
    r2 = irmad(b, a2, max_iter=8, tol=1e-12)
    np.testing.assert_allclose(r2.rho, r1.rho, atol=1e-5)
    np.testing.assert_allclose(r2.chi2, r1.chi2, rtol=5e-3, atol=5e-3, equal_nan=True)


def test_uint16_offset_does_not_matter():
    b, a = correlated_pair(seed=4)
    b16 = np.where(np.isnan(b), 0, np.clip(b * 10000, 1, 60000)).astype(np.uint16)
    a16 = np.clip(a * 10000, 1, 60000).astype(np.uint16)
    r1 = irmad(b16, a16, max_iter=5, tol=1e-12)
    r2 = irmad(b16, (a16 + 1000).astype(np.uint16), max_iter=5, tol=1e-12)
    np.testing.assert_allclose(r2.rho, r1.rho, atol=1e-5)
    np.testing.assert_allclose(r2.chi2, r1.chi2, rtol=1e-3, atol=1e-3, equal_nan=True)
    assert np.isnan(r1.chi2[(b16 == 0).any(axis=0)]).all()


def test_planted_change_gets_low_nochange_probability():
    b, a = correlated_pair(seed=5)
    r = irmad(b, a)
    assert r.converged and r.iterations > 1
    block = r.p_nochange[20:32, 30:45]
    assert np.nanmax(block) < 1e-6
    nc = nochange_mask(r, p=0.5)
    assert nc.dtype == bool and not nc[20:32, 30:45].any()
    assert not nc[np.isnan(r.p_nochange)].any()
    np.testing.assert_array_equal(nc, np.nan_to_num(r.p_nochange, nan=0) > np.float32(0.5))
    outside = np.ones(r.chi2.shape, bool)
    outside[20:32, 30:45] = False
    assert nc[outside].mean() > 0.05
    # every changed pixel is more extreme than 99 % of the unchanged ones
    assert np.nanmin(r.chi2[20:32, 30:45]) > np.nanpercentile(r.chi2[outside], 99)


def test_subsample_statistics_close_to_full():
    b, a = correlated_pair(seed=6, H=200, W=220)
    full = irmad(b, a, max_iter=4, tol=1e-12)
    sub = irmad(b, a, max_iter=4, tol=1e-12, sample=20000, seed=1)
    assert sub.n_samples < 20000 and sub.n_samples > 15000
    np.testing.assert_allclose(sub.rho, full.rho, atol=5e-3)
    assert np.isfinite(sub.chi2).sum() == np.isfinite(full.chi2).sum()
    again = irmad(b, a, max_iter=4, tol=1e-12, sample=20000, seed=1)
    np.testing.assert_array_equal(again.chi2, sub.chi2)


def test_mad_variates_reproduce_chi2():
    b, a = correlated_pair(seed=7)
    r = irmad(b, a, max_iter=3, tol=1e-12)
    mad = mad_variates(b, a, r)
    assert mad.shape == b.shape and mad.dtype == np.float32
    chi = ((mad / r.sigma[:, None, None].astype(np.float32)) ** 2).sum(axis=0)
    np.testing.assert_allclose(chi, r.chi2, rtol=1e-4, atol=1e-3, equal_nan=True)
    X = b.reshape(4, -1).astype(np.float64) - r.mean_before[:, None]
    Y = a.reshape(4, -1).astype(np.float64) - r.mean_after[:, None]
    want = (r.a.T @ X - r.b.T @ Y).reshape(b.shape)
    np.testing.assert_allclose(mad, want, rtol=1e-4, atol=1e-4, equal_nan=True)


def test_dask_input_matches_numpy():
    da = pytest.importorskip("dask.array", reason="dask is an optional extra (pip install 's2watch[dask]')")
    b, a = correlated_pair(seed=8)
    r = irmad(b, a, max_iter=4, tol=1e-12)
    rd = irmad(da.from_array(b, chunks=(4, 25, 30)), da.from_array(a, chunks=(2, 31, 70)), max_iter=4, tol=1e-12)
    np.testing.assert_allclose(rd.rho, r.rho, atol=1e-9)
    np.testing.assert_allclose(np.asarray(rd.chi2), r.chi2, rtol=1e-5, equal_nan=True)


@pytest.mark.parametrize("k", [2, 3, 4, 5, 6, 7, 9, 10, 13, 40])
def test_chi2_sf_table_matches_scipy(k):
    """The kernels' piecewise-cubic chi-square survival function: within 1e-9 of scipy from 0 through
    the far tail (odd k included, not smooth in chi2 at 0), 0-ish beyond the table,
    never negative, and NaN in -> a finite value (no data is masked by the caller)."""
    lut, inv_step = _dispatch.chi2_sf_table(k)
    x = np.concatenate([[0.0, 1e-12, 1e-6], np.linspace(0.0, 250.0, 20001), [400.0, 1e4, np.inf]])
    got = np.array([_numba._chi2_sf_lut(float(v), lut, inv_step) for v in x])
    np.testing.assert_allclose(got, stats.chi2.sf(x, k), rtol=0, atol=1e-9)
    assert (got >= 0).all() and got[0] == 1.0
    assert 0.0 <= _numba._chi2_sf_lut(float("nan"), lut, inv_step) < 1e-29
    with pytest.raises(UsageError, match="k must be >= 2"):
        _dispatch.chi2_sf_table(1)


def test_bad_input():
    b, a = correlated_pair()
    with pytest.raises(UsageError, match="at least 2 bands"):
        irmad(b[:1], a[:1])
    with pytest.raises(UsageError, match="at least 9 valid pixels"):
        irmad(b, a, mask=np.zeros(b.shape[1:], bool))
    with pytest.raises(UsageError, match="singular"):
        irmad(np.stack([b[0], b[0] * 2, b[1], b[2]]), a)
    with pytest.raises(UsageError, match="mask"):
        irmad(b, a, mask=np.ones(b.shape[1:], np.uint8))
    with pytest.raises(UsageError, match="p must"):
        nochange_mask(irmad(b, a, max_iter=1), p=1.5)


def test_transform_applies_to_blocks_and_other_pairs():
    """Statistics from one pair, transform applied block by block gives the same chi2 as irmad's own pass."""
    b, a = correlated_pair(seed=9)
    r = irmad(b, a, max_iter=4, tol=1e-12)
    chi_top, p_top = irmad_transform(b[:, :30], a[:, :30], r)
    out = np.empty((2, 30, b.shape[2]), np.float32)
    chi_bot, p_bot = irmad_transform(b[:, 30:], a[:, 30:], r, out=out)
    assert chi_bot.base is out or chi_bot is out[0]
    np.testing.assert_array_equal(np.vstack([chi_top, chi_bot]), r.chi2)
    np.testing.assert_array_equal(np.vstack([p_top, p_bot]), r.p_nochange)
    chi_only, none = irmad_transform(b, a, r, probability=False)
    assert none is None
    np.testing.assert_array_equal(chi_only, r.chi2)
    with pytest.raises(UsageError, match="4 bands"):
        irmad_transform(b[:3], a[:3], r)


def test_subsample_respects_mask():
    """Planted: the left third of `after` is replaced by unrelated noise; masking it out of a
    subsample gives the same statistics as masking it out of the full-data pass."""
    b, a = correlated_pair(seed=10, H=120, W=150)
    rng = np.random.default_rng(0)
    a[:, :, :50] = rng.normal(0.3, 0.05, a[:, :, :50].shape).astype(np.float32)
    mask = np.ones(b.shape[1:], bool)
    mask[:, :50] = False
    full = irmad(b, a, mask=mask, max_iter=3, tol=1e-12)
    sub = irmad(b, a, mask=mask, max_iter=3, tol=1e-12, sample=12000)
    unmasked = irmad(b, a, max_iter=3, tol=1e-12, sample=12000)
    assert sub.n_samples < 12000 * 0.75
    np.testing.assert_allclose(sub.rho, full.rho, atol=5e-3)
    assert np.max(np.abs(unmasked.rho - full.rho)) > 0.05
