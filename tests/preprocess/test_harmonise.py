"""Harmonisation removes the per-acquisition DN offset decided by metadata."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from pipeline.errors import DataError
from pipeline.grid import Grid
from pipeline.preprocess.harmonise import harmonise, offset_handling
from pipeline.scene import Acquisition, SceneStack


def _stack(offsets, baselines):
    """Planted: the same reflectance (0.1234 in B02, 0.3 in B04) delivered with the given DN offsets;
    pixel (0, 0) of the second acquisition has no data."""
    grid = Grid.from_bounds(32634, (500000, 2400000, 500040, 2400030))
    H, W = grid.shape
    T = len(offsets)
    data = np.empty((T, 2, H, W), np.uint16)
    acq = []
    for t, (off, pb) in enumerate(zip(offsets, baselines)):
        data[t, 0] = 1234 + off
        data[t, 1] = 3000 + off
        acq.append(Acquisition(f"a{t}", datetime(2022, 1, 10 + 10 * t, tzinfo=timezone.utc), processing_baseline=pb, offset=off))
    valid = np.ones((T, H, W), bool)
    if T > 1:
        valid[1, 0, 0] = False
    return SceneStack(grid, ("B02", "B04"), data, valid, None, tuple(acq))


def test_offset_removed_per_acquisition_from_metadata():
    s = _stack([0, 1000], ["03.01", "04.00"])
    h = harmonise(s)
    assert h.reflectance.dtype == np.float32 and h.reflectance.shape == (2, 2, 3, 4)
    np.testing.assert_allclose(h.reflectance[0, 0], 0.1234, rtol=1e-6)
    np.testing.assert_allclose(h.reflectance[1, 0][np.isfinite(h.reflectance[1, 0])], 0.1234, rtol=1e-6)
    np.testing.assert_allclose(h.reflectance[:, 1, 2, 3], 0.3, rtol=1e-6)
    assert np.isnan(h.reflectance[1, :, 0, 0]).all()
    assert h.offsets == (0, 1000)
    assert "04.00" in h.handling[1] and "-1000" in h.handling[1]
    assert "no offset" in h.handling[0]


def test_band_subset_and_missing_band():
    s = _stack([0], ["05.09"])
    assert harmonise(s, bands=["B04"]).reflectance.shape == (1, 1, 3, 4)
    with pytest.raises(DataError, match="B11"):
        harmonise(s, bands=["B04", "B11"])


def test_suspect_offset_is_reported():
    """Planted: metadata claims an offset of 5000 DN, above every delivered DN (1234, 3000)."""
    s = _stack([0], [""])
    bad = Acquisition("x", s.acquisitions[0].time, processing_baseline="04.00", offset=5000)
    s2 = SceneStack(s.grid, s.bands, s.data, s.valid, None, (bad,))
    h = harmonise(s2)
    assert "suspect" in h.handling[0]


def test_negative_offset_rejected():
    a = Acquisition("neg", datetime(2024, 1, 1, tzinfo=timezone.utc), offset=-5)
    with pytest.raises(DataError, match="neg"):
        offset_handling(a)


def test_matches_numpy_oracle_with_zero_dn_and_band_order():
    """A DN of 0 in any selected band is no data in every band; bands come out in the asked order."""
    rng = np.random.default_rng(5)
    grid = Grid.from_bounds(32634, (500000, 2400000, 500330, 2400170))
    H, W = grid.shape
    data = rng.integers(1000, 9000, (1, 3, H, W)).astype(np.uint16)
    data[0, 2, 4, 5] = 0  # B08 has no data here
    valid = rng.random((1, H, W)) > 0.1
    acq = (Acquisition("r", datetime(2023, 5, 1, tzinfo=timezone.utc), processing_baseline="05.09", offset=1000),)
    s = SceneStack(grid, ("B02", "B04", "B08"), data, valid, None, acq)
    h = harmonise(s, bands=["B08", "B02"])
    want = (data[0, [2, 0]].astype(np.float32) - np.float32(1000)) * np.float32(1e-4)
    nod = ~valid[0] | (data[0, [2, 0]] == 0).any(axis=0)
    want[:, nod] = np.nan
    np.testing.assert_array_equal(h.reflectance[0], want)
    assert np.isnan(h.reflectance[0, :, 4, 5]).all()


def test_suspect_share_is_counted_over_every_value_with_data():
    """Planted: offset 2000; B02 (1234) is below it everywhere, B04 (3000) above: half the values
    are below, which is not 'most'. With B04 also below on 3 pixels and a row of 4 pixels without
    data (not counted): 8 pixels, 16 values, 11 below, 69 %."""
    s = _stack([0], [""])
    acq = Acquisition("y", s.acquisitions[0].time, processing_baseline="04.00", offset=2000)
    data = s.data.copy()
    valid = s.valid.copy()
    assert "suspect" not in harmonise(SceneStack(s.grid, s.bands, data, valid, None, (acq,))).handling[0]
    data[0, 1, 0, :3] = 1500
    valid[0, 2, :] = False
    h = harmonise(SceneStack(s.grid, s.bands, data, valid, None, (acq,)))
    assert "suspect: 69% of DN below the offset" in h.handling[0]
