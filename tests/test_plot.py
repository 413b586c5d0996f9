"""Plot helpers on planted arrays: stretch values, shared limits, outline positions and colours.

Figures are built without pyplot, so nothing here depends on the display backend; each test also
renders its figure to PNG to catch drawing errors that only show at draw time.
"""

from __future__ import annotations

import io
from datetime import date, timedelta

import numpy as np
import pytest
from matplotlib.figure import Figure
from shapely.geometry import box

from pipeline.errors import UsageError
from pipeline.grid import Grid
from pipeline.objects.model import CLASS_COLOURS, ChangeObject
from pipeline.plot import (
    COMBOS,
    class_colour,
    composite_limits,
    plot_profile,
    plot_series,
    rgb,
    show_clear,
    show_magnitude,
    show_objects,
    show_outline,
    show_pair,
)
from pipeline.timeseries import FeatureSeries, RunwayProfile, Step

BANDS = ("B02", "B03", "B04", "B08", "B8A", "B11", "B12")


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=40)
    data = buf.getvalue()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return data


def _image(values: dict[str, float], shape=(4, 5)) -> np.ndarray:
    """A (B, H, W) float32 image, each band constant at ``values[band]`` (0.0 when not given)."""
    return np.stack([np.full(shape, values.get(b, 0.0), np.float32) for b in BANDS])


def test_rgb_channels_and_explicit_limits():
    img = _image({"B04": 0.25, "B03": 0.1, "B02": 0.5, "B12": 0.4, "B8A": 0.2})
    img[:, 0, 0] = np.nan
    lims = (np.zeros(3, np.float32), np.full(3, 0.5, np.float32))
    out = rgb(img, BANDS, limits=lims)
    assert out.shape == (4, 5, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[1, 1], [0.5, 0.2, 1.0])  # R=B04, G=B03, B=B02
    np.testing.assert_allclose(out[0, 0], [0, 0, 0])  # no data -> nodata colour
    sw = rgb(img, BANDS, combo="swir", limits=lims, nodata=(1.0, 0.0, 1.0))
    np.testing.assert_allclose(sw[1, 1], [0.8, 0.4, 0.5])  # R=B12, G=B8A, B=B04
    np.testing.assert_allclose(sw[0, 0], [1, 0, 1])
    tup = rgb(img, BANDS, combo=("B12", "B12", "B02"), limits=lims)
    np.testing.assert_allclose(tup[1, 1], [0.8, 0.8, 1.0])


def test_rgb_percentile_stretch_matches_numpy_percentiles():
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 0.6, size=(len(BANDS), 30, 30)).astype(np.float32)
    out = rgb(img, BANDS, combo="true", percentiles=(5, 95))
    tc = [img[BANDS.index(b)] for b in ("B04", "B03", "B02")]
    lo = min(np.percentile(c, 5) for c in tc)  # one pair of limits for the three bands
    hi = max(np.percentile(c, 95) for c in tc)
    for k, c in enumerate(tc):
        np.testing.assert_allclose(out[..., k], np.clip((c - lo) / (hi - lo), 0, 1), atol=1e-5)
    assert (out[..., 0] == 0).mean() == pytest.approx(0.05, abs=0.02)


def test_true_colour_keeps_the_hue_of_desert_sand():
    """Sand is redder than it is blue (B04 0.40 > B03 0.33 > B02 0.25): the composite must stay
    tan, not be stretched grey band by band."""
    rng = np.random.default_rng(1)
    base = {"B02": 0.25, "B03": 0.33, "B04": 0.40}
    img = np.stack([np.full((20, 20), base.get(b, 0.3), np.float32) + rng.normal(0, 0.02, (20, 20)).astype(np.float32)
                    for b in BANDS])
    out = rgb(img, BANDS, combo="true")
    r, g, b = (out[..., k].mean() for k in range(3))
    assert r > g + 0.1 > b + 0.2


def test_rgb_errors():
    img = _image({})
    with pytest.raises(ValueError, match="unknown combo 'ndvi'; use one of true, swir"):
        rgb(img, BANDS, combo="ndvi")
    with pytest.raises(UsageError, match="combo 'swir' needs bands B12, B8A"):
        rgb(img[:3], BANDS[:3], combo="swir")
    with pytest.raises(UsageError, match="must be float reflectance"):
        rgb(img.astype(np.uint16), BANDS)
    with pytest.raises(UsageError, match="image has 7"):
        rgb(img, BANDS[:3])
    with pytest.raises(UsageError, match=r"\(B, H, W\)"):
        rgb(img[0], BANDS)
    assert set(COMBOS) == {"true", "swir"}


def test_show_pair_uses_one_stretch_for_both():
    rng = np.random.default_rng(1)
    before = rng.uniform(0.05, 0.15, size=(len(BANDS), 20, 20)).astype(np.float32)
    after = before + np.float32(0.2)  # everything brighter after
    fig = show_pair(before, after, BANDS, combo="swir", titles=("2024", "2025"))
    axes = [ax for ax in fig.axes if ax.images]
    assert len(axes) == 2
    b_img, a_img = (np.asarray(ax.images[0].get_array()) for ax in axes)
    assert b_img.mean() < 0.3 and a_img.mean() > 0.7  # separate stretches would both be ~0.5
    lo, hi = composite_limits(before, after, bands=BANDS, combo="swir")
    np.testing.assert_allclose(b_img, rgb(before, BANDS, combo="swir", limits=(lo, hi)))
    assert axes[0].get_title() == "2024 (swir)" and axes[1].get_title() == "2025 (swir)"
    _png(fig)
    fig2 = Figure()
    ax1, ax2 = fig2.subplots(1, 2)
    assert show_pair(before, after, BANDS, axes=(ax1, ax2)) is fig2 and ax2.images
    with pytest.raises(UsageError, match="two axes"):
        show_pair(before, after, BANDS, axes=(ax1,))


def _grid():
    return Grid.from_bounds(32634, (700_000, 2_400_000, 700_200, 2_400_100), 10.0)  # 20 x 10 px


def _obj(geom, cls="new_structure", oid="o1"):
    return ChangeObject(oid, geom, cls, 0.9, geom.area, None, "2024-03-01/2024-08-31", "2025-05-01/2025-10-31")


def test_show_objects_outlines_in_pixel_coordinates_with_class_colours():
    g = _grid()
    x0, y1 = g.transform.c, g.transform.f
    # pixels rows 2..5, cols 3..7 inclusive
    sq = box(x0 + 30, y1 - 60, x0 + 80, y1 - 20)
    ring = box(x0 + 110, y1 - 90, x0 + 190, y1 - 10).difference(box(x0 + 130, y1 - 70, x0 + 170, y1 - 30))
    objs = [_obj(sq, "runway_repair", "a"), _obj(ring, "earthworks", "b")]
    fig = Figure()
    ax = fig.subplots()
    ax.imshow(np.zeros(g.shape))
    lims = ax.get_xlim(), ax.get_ylim()
    show_objects(ax, objs, g)
    lines = ax.get_lines()
    assert len(lines) == 3  # one ring, then exterior + hole
    xs, ys = lines[0].get_xdata(), lines[0].get_ydata()
    assert (min(xs), max(xs), min(ys), max(ys)) == pytest.approx((2.5, 7.5, 1.5, 5.5))
    assert lines[0].get_color() == pytest.approx(tuple(c / 255 for c in CLASS_COLOURS["runway_repair"]))
    assert lines[1].get_color() == pytest.approx(class_colour("earthworks"))
    assert (ax.get_xlim(), ax.get_ylim()) == lims  # the image's view is kept
    assert [t.get_text() for t in ax.texts] == ["0", "1"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["runway repair", "earthworks"]
    _png(fig)
    ax2 = Figure().subplots()
    show_objects(ax2, objs[:1], g, coords="crs", labels=False, legend=False)
    assert min(ax2.get_lines()[0].get_xdata()) == pytest.approx(x0 + 30)
    assert ax2.get_legend() is None and not ax2.texts
    with pytest.raises(ValueError, match="unknown coords 'lonlat'"):
        show_objects(ax2, objs, g, coords="lonlat")
    with pytest.raises(ValueError, match="unknown change class"):
        class_colour("parking")


DATES = tuple(date(2024, 1, 1) + timedelta(days=10 * i) for i in range(12))


def test_plot_series_marks_cloudy_dates_and_steps():
    clear = np.ones(12, bool)
    clear[[3, 7]] = False
    refl = np.where(np.arange(12) < 6, 0.2, 0.1).astype(np.float32)[:, None]
    refl[~clear] = np.nan
    fs = FeatureSeries("runway 01/19", DATES, ("B02",), refl, {"brightness": refl[:, 0]}, clear.astype(np.float32), clear, 40)
    step = Step(DATES[6], DATES[5], -0.1, 20.0, "brightness")
    ax = plot_series(fs, signals=("brightness", "B02"), steps=[step])
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert len(lines["brightness"].get_xdata()) == 10  # clear dates only
    cloudy = lines["cloudy date"].get_xdata()
    assert [np.datetime64(d, "D") for d in cloudy] == [np.datetime64(DATES[3]), np.datetime64(DATES[7])]
    assert "flagged step" in lines
    assert ax.get_title() == "runway 01/19"
    _png(ax.figure)
    with pytest.raises(ValueError, match="unknown signal 'ndvi'"):
        plot_series(fs, signals=("ndvi",))


def test_plot_profile_masks_cloudy_bins():
    T, L = len(DATES), 5
    clear = np.ones((T, L), bool)
    clear[2, :2] = False
    refl = np.full((T, L, 1), 0.2, np.float32)
    refl[6:, 1:3, 0] = 0.05
    prof = RunwayProfile(
        "runway 01/19", DATES, np.arange(50, 500, 100.0), ("B02",), refl, {"brightness": refl[..., 0]}, clear,
        clear.astype(np.float32), 500.0, 40.0, np.full(L, 20),
    )
    step = Step(DATES[6], DATES[5], -0.15, 30.0, "brightness", (100.0, 300.0))
    ax = plot_profile(prof, signal="brightness", steps=[step])
    mesh = ax.collections[0]
    arr = mesh.get_array()
    assert arr.shape == (L, T)
    assert np.ma.getmaskarray(arr)[:2, 2].all() and not np.ma.getmaskarray(arr)[2:, 2].any()
    assert arr[1, 8] == pytest.approx(0.05)
    rect = ax.patches[0]
    assert (rect.get_y(), rect.get_height()) == (100.0, 200.0)
    _png(ax.figure)
    with pytest.raises(UsageError, match="use plot_series"):
        plot_profile(FeatureSeries("s", DATES, ("B02",), refl[:, 0], {}, np.ones(T, np.float32), np.ones(T, bool), 1), signal="B02")


def test_show_clear_and_magnitude():
    clear = np.ones((30, 6, 8), bool)
    clear[4, :3] = False
    dates = [date(2024, 1, 1) + timedelta(days=5 * t) for t in range(30)]
    fig = show_clear(clear, dates, max_panels=10, ncols=5)
    shown = [ax for ax in fig.axes if ax.get_visible() and ax.images]
    assert len(shown) == 10
    assert shown[0].get_title() == "2024-01-01\n100% clear"
    fig2 = show_clear(clear[:6], dates[:6], fractions=[0.5] * 6)
    assert [ax.get_title().split("\n")[1] for ax in fig2.axes if ax.images][4] == "50% clear"
    _png(fig)
    with pytest.raises(UsageError, match="dates for 30 masks"):
        show_clear(clear, dates[:3])
    mag = np.linspace(0, 1, 48, dtype=np.float32).reshape(6, 8)
    mag[0, 0] = np.nan
    ax = show_magnitude(mag)
    img = ax.images[0]
    assert np.ma.getmaskarray(img.get_array())[0, 0] and img.get_clim()[1] == pytest.approx(np.nanpercentile(mag, 99.5))
    _png(ax.figure)


def test_show_outline_draws_any_polygon_and_keeps_the_view():
    g = _grid()
    x0, y1 = g.transform.c, g.transform.f
    fig = Figure()
    ax = fig.subplots()
    ax.imshow(np.zeros(g.shape))
    lims = ax.get_xlim(), ax.get_ylim()
    show_outline(ax, box(x0 - 500, y1 - 50, x0 + 50, y1 - 10), g, colour="tab:blue", label="truth", linestyle="--")
    (line,) = ax.get_lines()
    assert (min(line.get_xdata()), max(line.get_xdata())) == pytest.approx((-50.5, 4.5))
    assert line.get_label() == "truth" and line.get_linestyle() == "--"
    assert (ax.get_xlim(), ax.get_ylim()) == lims
    _png(fig)


def test_show_clear_colours_masked_grey_and_clear_white():
    clear = np.zeros((1, 2, 2), bool)
    clear[0, 0, 0] = True
    fig = show_clear(clear, [date(2024, 1, 1)])
    img = next(ax for ax in fig.axes if ax.images).images[0]
    rgba = img.to_rgba(img.get_array())
    np.testing.assert_allclose(rgba[0, 0, :3], 1.0)
    np.testing.assert_allclose(rgba[1, 1, :3], 0.45)
