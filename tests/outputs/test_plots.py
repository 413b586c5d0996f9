"""Report pictures: stretch, PNG encoding, and the accepted shapes of monitoring series/history."""

from __future__ import annotations

import io
from datetime import date

import numpy as np
import pytest
from PIL import Image

from pipeline.outputs.plots import normalise_history, normalise_series, picture_bytes, png_bytes, stretch_limits, timeline_png, to_uint8


def test_stretch_limits_are_joint_percentiles_ignoring_nan():
    a = np.stack([np.arange(100, dtype=np.float32).reshape(10, 10)] * 3) / 100
    b = a + 1.0
    b[:, 0, 0] = np.nan
    lo, hi = stretch_limits(a, b, pct=(0, 100))
    np.testing.assert_allclose(lo, 0.0)
    np.testing.assert_allclose(hi, 1.99, rtol=1e-6)
    flat_lo, flat_hi = stretch_limits(np.full((3, 4, 4), 0.2, np.float32))
    assert (flat_hi > flat_lo).all()
    nan_lo, nan_hi = stretch_limits(np.full((3, 2, 2), np.nan, np.float32))
    assert (nan_lo, nan_hi) == (pytest.approx([0, 0, 0]), pytest.approx([0.3, 0.3, 0.3]))


def test_to_uint8_linear_with_transparent_nodata():
    s = np.array([[[0.0, 0.05, 0.1, np.nan]]] * 3, dtype=np.float32)  # (3, 1, 4)
    img = to_uint8(s, np.zeros(3, np.float32), np.full(3, 0.1, np.float32))
    assert img.shape == (1, 4, 4) and img.dtype == np.uint8
    assert img[0, :3, 0].tolist() == [0, 128, 255]  # round(0.5 * 255)
    assert img[0, :, 3].tolist() == [255, 255, 255, 0]


def test_png_bytes_round_trip_and_determinism():
    img = np.random.default_rng(3).integers(0, 256, (7, 9, 4), dtype=np.uint8)
    data = png_bytes(img)
    assert data == png_bytes(img.copy())
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), img)


@pytest.mark.parametrize(
    "series",
    [
        {"m": {"2024-01-02": 1.0, "2024-01-01": 0.5}},
        {"m": [("2024-01-01", 0.5), ("2024-01-02", 1.0)]},
        {"m": [{"date": "2024-01-01", "value": 0.5}, {"date": "2024-01-02", "value": 1.0}]},
        {"m": {"dates": ["2024-01-01", "2024-01-02"], "values": [0.5, 1.0]}},
        {"m": {"2024-01-01": 0.5, "2024-01-02": 1.0, "2024-01-03": float("nan")}},
    ],
)
def test_series_forms(series):
    out, skipped = normalise_series(series)
    assert out == {"m": [(date(2024, 1, 1), 0.5), (date(2024, 1, 2), 1.0)]} and skipped == []


def test_series_grouping_and_bad_entries():
    out, skipped = normalise_series({"runway 14/32": {"dnbr": {"2024-01-01": 0.1}}, "bad": {"2024-13-45": 1.0}, "x": 3})
    assert out == {"runway 14/32: dnbr": [(date(2024, 1, 1), 0.1)]}
    assert len(skipped) == 2 and skipped[0].startswith("bad") and skipped[1].startswith("x")


def test_history_forms():
    recs = [{"date": "2024-02-01", "confidence": 0.9}, {"date": "2024-01-01", "confidence": 0.5}]
    direct = normalise_history({"o1": recs})
    assert [r["date"] for r in direct["o1"]] == ["2024-01-01", "2024-02-01"]
    assert normalise_history({"objects": {"o1": recs}}) == direct
    assert normalise_history({"objects": recs[:1]}) == {"objects": [{"date": "2024-02-01", "confidence": 0.9}]}  # an object named "objects"
    assert normalise_history(None) == {}


def test_timeline_png_only_when_there_is_something_to_plot():
    assert timeline_png({}, {}) is None
    png = timeline_png({}, {"o1": [{"date": "2024-01-01", "confidence": 0.5}, {"date": "2024-02-01", "confidence": 0.7}]})
    assert png.startswith(b"\x89PNG") and png == timeline_png({}, {"o1": [{"date": "2024-01-01", "confidence": 0.5}, {"date": "2024-02-01", "confidence": 0.7}]})


def test_picture_bytes_jpeg_when_opaque_png_when_transparent():
    """Opaque chips go out as JPEG (much smaller, close to the pixels); a chip with no-data pixels
    keeps its transparency as PNG."""
    import io

    from PIL import Image

    from scipy import ndimage

    rng = np.random.default_rng(0)  # imagery-like: texture correlated over a few pixels
    rgb = np.clip(ndimage.gaussian_filter(rng.normal(120, 60, (64, 64, 3)), (1.5, 1.5, 0)), 0, 255).astype(np.uint8)
    opaque = np.dstack([rgb, np.full((64, 64), 255, np.uint8)])
    data, mime = picture_bytes(opaque)
    assert mime == "image/jpeg" and data.startswith(b"\xff\xd8") and data == picture_bytes(opaque.copy())[0]
    back = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=float)
    assert np.abs(back - rgb).mean() < 2.0 and len(data) < len(png_bytes(opaque)) / 2
    holed = opaque.copy()
    holed[:5, :5, 3] = 0
    data, mime = picture_bytes(holed)
    assert mime == "image/png"
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), holed)  # lossless, alpha kept
