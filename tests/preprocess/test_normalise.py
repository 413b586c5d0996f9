"""Radiometric normalisation recovers a planted gain/offset on IR-MAD no-change pixels."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import DataError
from pipeline.preprocess.normalise import apply_normalisation, fit_normalisation, normalise, tls_fit


def test_tls_recovers_slope_where_ols_is_biased():
    """Planted: y = 1.5 x + 0.02 with equal noise on x and y; OLS would underestimate the slope."""
    rng = np.random.default_rng(0)
    t = rng.uniform(0.0, 0.4, 20000)
    x = t + rng.normal(0, 0.03, t.size)
    y = 1.5 * t + 0.02 + rng.normal(0, 0.03, t.size)
    slope, icpt = tls_fit(x, y)
    ols = np.polyfit(x, y, 1)[0]
    assert abs(slope - 1.5) < 0.05 and abs(icpt - 0.02) < 0.01
    assert ols < 1.45  # the bias TLS avoids


def _pair(seed=0):
    """Planted: 6 correlated bands of 64x64; after = (before - offset) / gain per band, small noise,
    and a changed 16x16 square (after += 0.25 in all bands)."""
    rng = np.random.default_rng(seed)
    H = W = 64
    base = rng.uniform(0.05, 0.4, (H, W))
    before = np.stack([base * (0.8 + 0.1 * b) + rng.normal(0, 0.02, (H, W)) for b in range(6)]).astype(np.float32)
    gain = np.array([1.1, 0.9, 1.2, 1.05, 0.95, 1.3])
    offset = np.array([0.02, -0.01, 0.03, 0.0, 0.01, -0.02])
    after = ((before - offset[:, None, None]) / gain[:, None, None] + rng.normal(0, 0.003, before.shape)).astype(np.float32)
    after[:, 20:36, 20:36] += 0.25
    return before, after, gain, offset


def test_normalise_recovers_planted_gain_offset_with_irmad():
    before, after, gain, offset = _pair()
    norm = normalise(before, after, p_min=0.9)
    np.testing.assert_allclose(norm.gain, gain, atol=0.03)
    np.testing.assert_allclose(norm.offset, offset, atol=0.01)
    # the changed square is not used as no-change
    assert norm.nochange[22:34, 22:34].mean() < 0.05
    mapped = apply_normalisation(after, norm)
    stable = np.ones((64, 64), bool)
    stable[18:38, 18:38] = False
    assert np.abs(mapped - before)[:, stable].mean() < 0.01


def test_fit_needs_enough_nochange_pixels():
    before, after, *_ = _pair(1)
    with pytest.raises(DataError, match="no-change pixels"):
        fit_normalisation(before, after, np.zeros((64, 64), bool))


def test_fit_on_a_subsample_recovers_the_planted_map(monkeypatch):
    """Planted: after = (before - 0.01) / 1.08 plus noise on 40 000 pixels; thinned to 5 000 the
    fit still recovers gain 1.08 and offset 0.01, and marks only the pixels it used."""
    import importlib

    N = importlib.import_module("pipeline.preprocess.normalise")

    rng = np.random.default_rng(11)
    ref = rng.uniform(0.05, 0.4, (2, 200, 200)).astype(np.float32)
    tgt = ((ref - 0.01) / 1.08 + rng.normal(0, 0.002, ref.shape)).astype(np.float32)
    monkeypatch.setattr(N, "FIT_SAMPLE", 5000)
    norm = N.fit_normalisation(ref, tgt, np.ones((200, 200), bool))
    np.testing.assert_allclose(norm.gain, 1.08, atol=0.01)
    np.testing.assert_allclose(norm.offset, 0.01, atol=0.002)
    assert 4000 <= norm.n_nochange <= 5000 and int(norm.nochange.sum()) == norm.n_nochange


@pytest.mark.parametrize("shape", [(3, 17, 29), (2, 3, 17, 29)])
def test_apply_normalisation_equals_numpy_per_band(shape):
    from pipeline.preprocess.normalise import Normalisation

    rng = np.random.default_rng(4)
    x = rng.random(shape).astype(np.float32)
    x[..., 3, 4] = np.nan
    norm = Normalisation(np.array([1.1, 0.9, 1.02]), np.array([0.01, -0.02, 0.0]), np.zeros((17, 29), bool), 0, np.zeros(3))
    got = apply_normalisation(x, norm)
    want = x * norm.gain.astype(np.float32).reshape(-1, 1, 1) + norm.offset.astype(np.float32).reshape(-1, 1, 1)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.float32 and np.isnan(got[..., 3, 4]).all()
    same = apply_normalisation(x, norm, out=x)  # in place
    assert same is x
    np.testing.assert_array_equal(x, want)


def test_min_fraction_floors_the_nochange_set():
    """Planted pair: IR-MAD's p > 0.9 passes only a few dozen of the 4096 pixels here; with
    ``min_fraction=0.5`` the fit uses the most stable half (still without the changed square,
    removed by the probability ranking and the fit's trimming) and recovers the planted map."""
    before, after, gain, offset = _pair()
    plain = normalise(before, after, p_min=0.9)
    floored = normalise(before, after, p_min=0.9, min_fraction=0.5)
    assert plain.n_nochange < 0.1 * 64 * 64
    assert floored.n_nochange >= 0.45 * 64 * 64
    assert floored.nochange[20:36, 20:36].mean() < 0.05
    np.testing.assert_allclose(floored.gain, gain, atol=0.03)
    np.testing.assert_allclose(floored.offset, offset, atol=0.01)
    with pytest.raises(ValueError, match="min_fraction"):
        normalise(before, after, min_fraction=1.5)


@pytest.mark.parametrize("shape, nan_rows", [((40, 37), 3), ((300, 290), 0), ((700, 600), 5)])
def test_judged_pixels_equal_the_numpy_selection(shape, nan_rows, monkeypatch):
    """The pixels IR-MAD judges: every k-th valid pixel in raster order with data in both
    composites, laid out in whole rows; checked against the plain numpy selection."""
    import importlib

    N = importlib.import_module("pipeline.preprocess.normalise")  # the package re-exports a function of that name

    monkeypatch.setattr(N, "NOCHANGE_SAMPLE", 50_000)  # so that the larger grids are thinned
    rng = np.random.default_rng(4)
    B = 3
    ref = rng.random((B,) + shape).astype(np.float32)
    tgt = rng.random((B,) + shape).astype(np.float32)
    ref[1, :nan_rows] = np.nan
    tgt[2, :, :2] = np.nan
    valid = rng.random(shape) > 0.2
    idx, rs, ts = N._judged_pixels(ref, tgt, valid)
    want = np.flatnonzero(valid)
    if want.size > N.NOCHANGE_SAMPLE:
        want = want[:: -(-want.size // N.NOCHANGE_SAMPLE)]
    r2, t2 = ref.reshape(B, -1)[:, want], tgt.reshape(B, -1)[:, want]
    keep = np.isfinite(r2).all(axis=0) & np.isfinite(t2).all(axis=0)
    want = want[keep]
    if want.size >= 2 * N._ROW:
        want = want[: (want.size // N._ROW) * N._ROW]
        assert rs.shape[1:] == (want.size // N._ROW, N._ROW)
    np.testing.assert_array_equal(idx, want)
    np.testing.assert_array_equal(rs.reshape(B, -1), ref.reshape(B, -1)[:, want])
    np.testing.assert_array_equal(ts.reshape(B, -1), tgt.reshape(B, -1)[:, want])


def test_fit_on_given_values_equals_the_fit_on_gathered_pixels(monkeypatch):
    """normalise hands the fit the judged values it already holds: the same gains, offsets and
    used pixels as gathering those candidates from the composites (also when thinned)."""
    import importlib

    N = importlib.import_module("pipeline.preprocess.normalise")
    monkeypatch.setattr(N, "FIT_SAMPLE", 3000)
    rng = np.random.default_rng(7)
    B, shape = 4, (120, 110)
    tgt = rng.random((B,) + shape).astype(np.float32)
    ref = (1.1 * tgt + 0.02 + rng.normal(0, 0.01, tgt.shape)).astype(np.float32)
    ref[:, :10, :10] += 0.3  # changed: trimmed
    cand = np.flatnonzero(rng.random(shape) > 0.3)
    values = (tgt.reshape(B, -1)[:, cand], ref.reshape(B, -1)[:, cand])
    a = N._fit(ref, tgt, cand, finite=True)
    b = N._fit(ref, tgt, cand, finite=True, values=values)
    np.testing.assert_array_equal(a.gain, b.gain)
    np.testing.assert_array_equal(a.offset, b.offset)
    np.testing.assert_array_equal(a.nochange, b.nochange)
    assert a.n_nochange == b.n_nochange < cand.size
    np.testing.assert_allclose(a.gain, 1.1, rtol=0.02)  # reference ~ gain * target + offset
