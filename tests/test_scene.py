"""The scene stack: shapes, harmonised reflectance, selection by time."""

from datetime import date, datetime, timezone

import numpy as np
import pytest

from pipeline.grid import Grid
from pipeline.scene import Acquisition, SceneStack


def _stack(offsets=(0, 1000)):
    """Two 3x4 acquisitions of bands B04, B08: the same 0.2 / 0.3 reflectance, the second with the
    baseline 04.00 offset of +1000 DN and one no-data pixel at (0, 0)."""
    g = Grid.from_bounds(32634, (500000, 2400000, 500040, 2400030))
    T, B, (H, W) = 2, 2, g.shape
    data = np.empty((T, B, H, W), np.uint16)
    for t, off in enumerate(offsets):
        data[t, 0] = 2000 + off
        data[t, 1] = 3000 + off
    data[1, :, 0, 0] = 0
    valid = np.ones((T, H, W), bool)
    acq = tuple(
        Acquisition(id=f"a{t}", time=datetime(2021 + t * 2, 1, 1, 10, tzinfo=timezone.utc), offset=off,
                    processing_baseline="04.00" if off else "02.09")
        for t, off in enumerate(offsets)
    )
    return SceneStack(g, ("B04", "B08"), data, valid, None, acq)


def test_reflectance_removes_the_offset_and_marks_nodata():
    s = _stack()
    r0, r1 = s.reflectance(0), s.reflectance(1)
    assert r0.dtype == np.float32 and r0.shape == (2, 3, 4)
    np.testing.assert_allclose(r0[:, 1, 1], [0.2, 0.3], rtol=1e-6)
    np.testing.assert_allclose(r1[:, 1, 1], [0.2, 0.3], rtol=1e-6)
    assert np.isnan(r1[:, 0, 0]).all() and not np.isnan(r0[:, 0, 0]).any()


def test_shape_and_dtype_are_checked():
    s = _stack()
    with pytest.raises(ValueError, match="uint16"):
        SceneStack(s.grid, s.bands, s.data.astype(np.float32), s.valid, None, s.acquisitions)
    with pytest.raises(ValueError, match="valid"):
        SceneStack(s.grid, s.bands, s.data, s.valid[:, :2], None, s.acquisitions)


def test_between_and_concat_keep_time_order():
    s = _stack()
    assert [a.id for a in s.between(date(2022, 1, 1), date(2024, 1, 1)).acquisitions] == ["a1"]
    joined = SceneStack.concat([s.select([1]), s.select([0])])
    assert [a.id for a in joined.acquisitions] == ["a0", "a1"]
    np.testing.assert_array_equal(joined.data, s.data)


def test_unknown_band_is_named():
    with pytest.raises(KeyError, match="B12"):
        _stack().band_index("B12")
