"""The fused pixel kernels against slow numpy oracles, over uint16 (with offsets) and float32 input."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import PipelineError, UsageError
from pipeline.kernels import INDICES, cva, cva_direction, index, index_deltas, log_ratio, zscore_cva

import _kernel_oracle as oracle
from _kernel_oracle import BANDS6, make_pair

CASES = [
    pytest.param(np.uint16, (0, 0), id="uint16"),
    pytest.param(np.uint16, (0, 1000), id="uint16-offset-after"),
    pytest.param(np.uint16, (1000, 1000), id="uint16-offset-both"),
    pytest.param(np.float32, (0, 0), id="float32"),
]


def close(got, want, *, rtol=2e-5, atol=2e-6):
    """Same values to float32 tolerance and the same NaN pattern."""
    assert got.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True)


@pytest.mark.parametrize("dtype, offsets", CASES)
def test_cva_matches_oracle_with_planted_nodata(dtype, offsets):
    b, a, nodata = make_pair(dtype, offsets=offsets)
    got = cva(b, a, offsets=offsets)
    close(got, oracle.cva(b, a, offsets))
    assert np.isnan(got[nodata]).all() and not np.isnan(got[~nodata]).any()


@pytest.mark.parametrize("dtype, offsets", CASES)
def test_cva_band_subset_equals_cva_of_the_subset(dtype, offsets):
    """bands=[...] reads only those bands: same values as the CVA of a copied subset, and no data in
    a left-out band does not count."""
    b, a, _ = make_pair(dtype, offsets=offsets)
    sel = [0, 2, 5]
    got = cva(b, a, offsets=offsets, bands=sel)
    close(got, oracle.cva(b[sel], a[sel], offsets))
    with pytest.raises(UsageError, match="indices"):
        cva(b, a, offsets=offsets, bands=[0, 6])


def test_cva_offset_cancels_harmonisation_step():
    """The same reflectance delivered with and without the +1000 offset gives zero change."""
    b, _, _ = make_pair(np.uint16, offsets=(0, 0))
    nodata = (b == 0).any(axis=0)
    assert nodata.any()
    a = np.where(b > 0, b + 1000, 0).astype(np.uint16)
    got = cva(b, a, offsets=(0, 1000))
    assert np.nanmax(got) == 0.0
    assert np.isnan(got[nodata]).all()
    naive = cva(b, a)  # forgetting the offset: 0.1 reflectance in every band
    np.testing.assert_allclose(naive[~nodata], 0.1 * np.sqrt(6), rtol=1e-5)


def test_cva_mixed_dtypes_and_out():
    b16, a16, _ = make_pair(np.uint16, offsets=(1000, 0))
    af = np.where(a16 == 0, np.nan, a16 / 10000.0).astype(np.float32)
    out = np.full(b16.shape[1:], -1.0, np.float32)
    got = cva(b16, af, offsets=(1000, 0), out=out)
    assert got is out
    close(got, oracle.cva(b16, a16, (1000, 0)))


@pytest.mark.parametrize("dtype, offsets", CASES)
def test_cva_direction_matches_oracle(dtype, offsets):
    b, a, _ = make_pair(dtype, offsets=offsets, seed=3)
    got = cva_direction(b, a, bands=BANDS6, offsets=offsets)
    want = oracle.cva_direction(b, a, offsets)
    assert set(got) == set(want)
    close(got["magnitude"], want["magnitude"])
    close(got["brightness_cosine"], want["brightness_cosine"], atol=1e-5)
    close(got["angle"], want["angle"], rtol=1e-4, atol=2e-3)
    np.testing.assert_array_equal(got["dominant_band"], want["dominant_band"])


def test_cva_direction_planted_brighter_and_darker():
    """Planted: left half uniformly brighter by 0.05 in every band, right half darker by 0.03."""
    b = np.full((4, 4, 6), 0.2, np.float32)
    a = b.copy()
    a[:, :, :3] += 0.05
    a[:, :, 3:] -= 0.03
    d = cva_direction(b, a)
    np.testing.assert_allclose(d["brightness_cosine"][:, :3], 1.0, atol=1e-5)
    np.testing.assert_allclose(d["brightness_cosine"][:, 3:], -1.0, atol=1e-5)
    np.testing.assert_allclose(d["angle"][:, 3:], 180.0, atol=0.5)
    np.testing.assert_allclose(d["magnitude"][:, :3], 0.05 * 2, rtol=1e-4)


@pytest.mark.parametrize("dtype, offsets", CASES)
@pytest.mark.parametrize("name", INDICES)
def test_index_matches_oracle(dtype, offsets, name):
    b, _, nodata = make_pair(dtype, offsets=offsets, seed=5)
    got = index(b, name, bands=BANDS6, offset=offsets[0])
    want = oracle.index(b, name, BANDS6, offsets[0])
    close(got, want, rtol=1e-4, atol=1e-5)


def test_index_zero_denominator_is_nan_and_band_order_free():
    """Planted: pixel (0, 0) has B08 = B04 = 0 reflectance (DN == offset), so NDVI is 0/0."""
    b, _, _ = make_pair(np.uint16, offsets=(1000, 0), seed=6)
    b[3, 0, 0] = 1000
    b[2, 0, 0] = 1000
    assert np.isnan(index(b, "ndvi", bands=BANDS6, offset=1000)[0, 0])
    perm = [5, 2, 0, 4, 1, 3]
    bands_p = tuple(BANDS6[k] for k in perm)
    for name in INDICES:
        np.testing.assert_array_equal(
            index(b[perm], name, bands=bands_p, offset=1000), index(b, name, bands=BANDS6, offset=1000)
        )


@pytest.mark.parametrize("dtype, offsets", CASES)
def test_index_deltas_match_oracle(dtype, offsets):
    b, a, _ = make_pair(dtype, offsets=offsets, seed=7)
    got = index_deltas(b, a, bands=BANDS6, offsets=offsets)
    assert tuple(got) == INDICES
    for name in INDICES:
        want = oracle.index(a, name, BANDS6, offsets[1]) - oracle.index(b, name, BANDS6, offsets[0])
        close(got[name], want, rtol=1e-4, atol=1e-5)


def test_index_deltas_subset_and_missing_band():
    b, a, _ = make_pair(np.uint16, B=4, seed=8)
    bands = ("B02", "B03", "B04", "B08")
    got = index_deltas(b, a, bands=bands, names=("ndvi", "brightness"))
    assert tuple(got) == ("ndvi", "brightness")
    one = index_deltas(b, a, bands=bands, names=["ndvi"])
    np.testing.assert_array_equal(one["ndvi"], got["ndvi"])
    out = np.full((2,) + b.shape[1:], -9.0, np.float32)
    pre = index_deltas(b, a, bands=bands, names=("ndvi", "brightness"), out=out)
    assert np.shares_memory(pre["ndvi"], out) and np.shares_memory(pre["brightness"], out)
    np.testing.assert_array_equal(out[1], got["brightness"])
    with pytest.raises(UsageError, match="out"):
        index_deltas(b, a, bands=bands, names=("ndvi",), out=out)
    with pytest.raises(UsageError, match="B11"):
        index_deltas(b, a, bands=bands, names=("ndbi",))
    with pytest.raises(ValueError, match="ndvi, ndbi, bsi, dbi, mndwi, brightness"):
        index_deltas(b, a, bands=bands, names=("evi",))


@pytest.mark.parametrize("dtype, offsets", CASES)
def test_log_ratio_matches_oracle(dtype, offsets):
    b, a, _ = make_pair(dtype, offsets=offsets, seed=9, lo=1, hi=4000)
    close(log_ratio(b, a, offsets=offsets), oracle.log_ratio(b, a, offsets), rtol=1e-4, atol=1e-5)
    sel = ("B04", "B11")
    got = log_ratio(b, a, bands=BANDS6, use=sel, offsets=offsets)
    close(got, oracle.log_ratio(b, a, offsets, sel=[2, 4]), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_zscore_cva_matches_oracle_with_mask(dtype):
    b, a, _ = make_pair(dtype, seed=11)
    close(zscore_cva(b, a), oracle.zscore_cva(b, a), rtol=1e-4, atol=1e-4)
    mask = np.zeros(b.shape[1:], bool)
    mask[5:30, 10:40] = True
    close(zscore_cva(b, a, mask=mask), oracle.zscore_cva(b, a, mask), rtol=1e-4, atol=1e-4)


def test_zscore_cva_is_offset_invariant():
    b, a, _ = make_pair(np.uint16, seed=12)
    a2 = np.where(a > 0, a + 1000, 0).astype(np.uint16)
    np.testing.assert_allclose(zscore_cva(b, a2), zscore_cva(b, a), rtol=1e-4, atol=1e-4)


def test_dask_input_gives_the_same_values():
    da = pytest.importorskip("dask.array", reason="dask is an optional extra (pip install 's2watch[dask]')")
    b, a, _ = make_pair(np.uint16, offsets=(0, 1000), seed=13, H=40, W=50)
    bd = da.from_array(b, chunks=(2, 16, 21))
    ad = da.from_array(a, chunks=(3, 13, 50))
    np.testing.assert_array_equal(cva(bd, ad, offsets=(0, 1000)).compute(), cva(b, a, offsets=(0, 1000)))
    np.testing.assert_array_equal(index(bd, "bsi", bands=BANDS6).compute(), index(b, "bsi", bands=BANDS6))
    dd = index_deltas(bd, a, bands=BANDS6, offsets=(0, 1000))
    dn = index_deltas(b, a, bands=BANDS6, offsets=(0, 1000))
    for k in dn:
        np.testing.assert_array_equal(dd[k].compute(), dn[k])
    np.testing.assert_allclose(zscore_cva(bd, ad).compute(), zscore_cva(b, a), rtol=1e-5, atol=1e-5)


def test_bad_input_raises_clear_errors():
    b, a, _ = make_pair(np.uint16)
    with pytest.raises(UsageError, match="same"):
        cva(b, a[:, :-1])
    with pytest.raises(UsageError, match="dtype int32"):
        cva(b.astype(np.int32), a)
    with pytest.raises(UsageError, match="float32 reflectance"):
        cva(b.astype(np.float32), a.astype(np.float32), offsets=(1000, 0))
    with pytest.raises(UsageError, match="offsets"):
        cva(b, a, offsets=1000)
    with pytest.raises(UsageError, match=r"\(B, H, W\)"):
        cva(b[0], a[0])
    with pytest.raises(UsageError, match="out"):
        cva(b, a, out=np.empty(b.shape[1:], np.float64))
    with pytest.raises(UsageError, match="bands="):
        index(b, "ndvi", bands=None)
    assert issubclass(UsageError, PipelineError)
