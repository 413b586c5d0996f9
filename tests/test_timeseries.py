"""Runway profiles, feature series and step dates on small planted stacks.

The planted scene (see :func:`planted`): a 40 m x 1000 m north-south runway (reflectance 0.15 in
every band) on sand (0.30). From ``REPAIR_DATE`` the stretch 300-600 m from the south end is fresh
asphalt (0.05). The acquisition of ``REPAIR_DATE`` itself has a cloud (SCL 9, reflectance 0.60) over
the whole runway, so the first date that *shows* the repair is the next one. Another date has a
cloud over the northern half only. Every other acquisition carries the +1000 DN offset.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import Polygon, box
from shapely.affinity import rotate

from pipeline.aoi import AOI, AOIFeature
from pipeline.errors import PipelineError, UsageError
from pipeline.grid import reproject_geometry
from pipeline.scene import Acquisition, SceneStack, SCL
from pipeline.timeseries import (
    FeatureSeries,
    RunwayProfile,
    feature_series,
    feature_window,
    find_feature,
    flagged_dates,
    profile_section,
    runway_profile,
    series_values,
)

BANDS = ("B02", "B03", "B04", "B08", "B8A", "B11", "B12")
EPSG = 32634
X0, Y0 = 700_000.0, 2_400_000.0  # runway centre in UTM 34N (near Maaten al-Sarra); edges on pixel edges
T = 24
START = date(2024, 6, 1)
DATES = [START + timedelta(days=5 * i) for i in range(T)]
REPAIR_T = 12
REPAIR_DATE = DATES[REPAIR_T]
HALF_CLOUD_T = 5


def _runway_utm():
    return box(X0 - 20, Y0 - 500, X0 + 20, Y0 + 500)


def _aoi(runway_utm=None, designator="01/19"):
    rw = runway_utm if runway_utm is not None else _runway_utm()
    aoi_utm = rw.buffer(400, join_style="mitre")
    return AOI(
        id="planted",
        name="planted",
        kind="airbase",
        geometry=reproject_geometry(aoi_utm, EPSG, 4326),
        features=(
            AOIFeature(
                role="runway",
                geometry=reproject_geometry(rw, EPSG, 4326),
                name=f"runway {designator}",
                properties={"designator": designator, "width_m": 40},
            ),
        ),
    )


def planted(seed: int = 0):
    """The planted stack described in the module docstring, with the AOI and pixel oracles."""
    rng = np.random.default_rng(seed)
    aoi = _aoi()
    grid = aoi.grid(buffer_m=100)
    H, W = grid.shape
    rr, cc = np.mgrid[0:H, 0:W]
    x, y = grid.xy(rr, cc)
    on_runway = (np.abs(x - X0) < 20) & (np.abs(y - Y0) < 500)
    d_south = y - (Y0 - 500)
    repaired = on_runway & (d_south >= 300) & (d_south < 600)
    data = np.empty((T, len(BANDS), H, W), dtype=np.uint16)
    scl = np.full((T, H, W), SCL.NOT_VEGETATED, dtype=np.uint8)
    acqs = []
    for t, d in enumerate(DATES):
        refl = np.full((H, W), 0.30, dtype=np.float64)
        refl[on_runway] = 0.15
        if t >= REPAIR_T:
            refl[repaired] = 0.05
        refl = refl + rng.normal(0, 0.003, size=(H, W))
        if t == REPAIR_T:
            refl[on_runway] = 0.60
            scl[t][on_runway] = SCL.CLOUD_HIGH
        if t == HALF_CLOUD_T:
            north = on_runway & (d_south >= 500)
            refl[north] = 0.60
            scl[t][north] = SCL.CLOUD_MEDIUM
        offset = 1000 if t % 2 else 0
        data[t] = np.round(refl * 10000 + offset).astype(np.uint16)[None]
        acqs.append(
            Acquisition(id=f"a{t}", time=datetime(d.year, d.month, d.day, 9, 30, tzinfo=timezone.utc), offset=offset)
        )
    stack = SceneStack(grid, BANDS, data, np.ones((T, H, W), bool), scl, tuple(acqs))
    return stack, aoi, on_runway, d_south


def test_profile_bins_and_planted_values():
    stack, aoi, on_runway, d_south = planted()
    prof = runway_profile(stack, aoi, "runway 01/19", bins=10)
    assert isinstance(prof, RunwayProfile)
    assert prof.reflectance.shape == (T, 10, len(BANDS)) and prof.reflectance.dtype == np.float32
    assert prof.clear.shape == (T, 10) and prof.clear_fraction.shape == (T, 10)
    assert prof.dates == tuple(DATES)
    assert prof.length_m == pytest.approx(1000, abs=2) and prof.width_m == pytest.approx(40, abs=2)
    np.testing.assert_allclose(prof.distance_m, np.arange(50, 1000, 100), atol=2)
    # oracle: pixel count per 100 m bin from the y coordinate of pixel centres
    expected_px = np.bincount(np.clip((d_south[on_runway] // 100).astype(int), 0, 9), minlength=10)
    np.testing.assert_array_equal(prof.pixels, expected_px)
    b04 = prof.band("B04")
    repaired_bins = [3, 4, 5]
    other = [l for l in range(10) if l not in repaired_bins]
    # before the repair every bin reads runway concrete; the offset of odd dates is removed
    clear_before = [t for t in range(REPAIR_T) if t != HALF_CLOUD_T]
    np.testing.assert_allclose(b04[clear_before], 0.15, atol=0.003)
    np.testing.assert_allclose(b04[REPAIR_T + 1 :][:, repaired_bins], 0.05, atol=0.003)
    np.testing.assert_allclose(b04[REPAIR_T + 1 :][:, other], 0.15, atol=0.003)
    # the cloudy repair date is not clear anywhere; the half cloud hides the northern bins only
    assert not prof.clear[REPAIR_T].any() and np.isnan(b04[REPAIR_T]).all()
    np.testing.assert_array_equal(prof.clear[HALF_CLOUD_T], [True] * 5 + [False] * 5)
    np.testing.assert_allclose(prof.clear_fraction[HALF_CLOUD_T, 5:], 0.0)
    np.testing.assert_allclose(prof.indices["brightness"][0], 0.15, atol=0.003)
    np.testing.assert_allclose(prof.indices["ndvi"][0], 0.0, atol=0.05)


def test_profile_default_bins_follow_bin_m_and_designator_lookup():
    stack, aoi, *_ = planted()
    prof = runway_profile(stack, aoi, "01/19", bin_m=250)
    assert prof.reflectance.shape[1] == 4
    assert prof.feature == "runway 01/19"


def test_profile_starts_at_lower_designator_threshold():
    """A 15/33 runway (bearing 150 deg): distance 0 is the north-west end, where a marker is planted."""
    rw = rotate(_runway_utm(), -150, origin=(X0, Y0))  # long axis now points to bearing 150 / 330
    aoi = _aoi(rw, designator="15/33")
    grid = aoi.grid(buffer_m=100)
    H, W = grid.shape
    rr, cc = np.mgrid[0:H, 0:W]
    x, y = grid.xy(rr, cc)
    nw_end = np.array([X0, Y0]) + 500 * np.array([-np.sin(np.radians(150)), -np.cos(np.radians(150))])
    assert nw_end[1] > Y0 and nw_end[0] < X0  # really north-west
    marker = np.hypot(x - nw_end[0], y - nw_end[1]) < 60
    refl = np.full((H, W), 0.2)
    refl[marker] = 0.5
    data = np.round(refl * 10000).astype(np.uint16)[None, None].repeat(len(BANDS), axis=1)
    acq = (Acquisition(id="a", time=datetime(2024, 1, 1, tzinfo=timezone.utc)),)
    stack = SceneStack(grid, BANDS, data, np.ones((1, H, W), bool), None, acq)
    prof = runway_profile(stack, aoi, "runway 15/33", bins=10)
    b = prof.band("B02")[0]
    assert b[0] == pytest.approx(0.5, abs=1e-3)
    np.testing.assert_allclose(b[2:], 0.2, atol=1e-3)


def test_flagged_dates_on_profile_finds_section_and_first_clear_date():
    stack, aoi, *_ = planted()
    prof = runway_profile(stack, aoi, "runway 01/19", bins=10)
    steps = flagged_dates(prof, signal="brightness")
    assert len(steps) == 1
    s = steps[0]
    assert s.date == DATES[REPAIR_T + 1]  # the repair date itself was cloudy
    assert s.last_before == DATES[REPAIR_T - 1]
    assert s.delta == pytest.approx(-0.10, abs=0.005)
    assert s.distance_m == pytest.approx((300, 600), abs=2)
    assert s.signal == "brightness"


def test_feature_series_whole_runway_and_polygon():
    stack, aoi, on_runway, d_south = planted()
    fs = feature_series(stack, aoi, "runway 01/19")
    assert isinstance(fs, FeatureSeries)
    assert fs.reflectance.shape == (T, len(BANDS)) and fs.pixels == int(on_runway.sum())
    assert not fs.clear[REPAIR_T] and np.isnan(fs.reflectance[REPAIR_T]).all()
    # half-cloud date: half of the pixels clear, still counts at min_clear 0.5
    assert fs.clear_fraction[HALF_CLOUD_T] == pytest.approx((d_south[on_runway] < 500).mean(), abs=1e-6)
    # 30 % of the runway is repaired: the median of the whole runway stays concrete
    np.testing.assert_allclose(fs.band("B02")[REPAIR_T + 1 :], 0.15, atol=0.003)
    # a polygon inside the repaired stretch steps to asphalt
    inner = box(X0 - 15, Y0 - 500 + 320, X0 + 15, Y0 - 500 + 580)
    fp = feature_series(stack, aoi, inner)
    np.testing.assert_allclose(fp.band("B02")[REPAIR_T + 1 :], 0.05, atol=0.003)
    steps = flagged_dates(fp)
    assert [(s.date, s.last_before) for s in steps] == [(DATES[REPAIR_T + 1], DATES[REPAIR_T - 1])]
    assert steps[0].distance_m is None


def test_masks_change_what_counts_as_clear():
    stack, aoi, *_ = planted()
    inner = box(X0 - 15, Y0 - 500 + 320, X0 + 15, Y0 - 500 + 580)
    unmasked = feature_series(stack, aoi, inner, mask="valid")
    assert unmasked.clear[REPAIR_T] and unmasked.band("B02")[REPAIR_T] == pytest.approx(0.60, abs=0.003)
    # an explicit array: drop the first date everywhere
    m = np.ones((T,) + stack.grid.shape, dtype=bool)
    m[0] = False
    fs = feature_series(stack, aoi, inner, mask=m)
    assert not fs.clear[0] and fs.clear[1]
    fc = feature_series(stack, aoi, inner, mask=lambda s: m)
    np.testing.assert_array_equal(fc.clear, fs.clear)


def test_flagged_dates_no_false_steps_on_noise():
    rng = np.random.default_rng(1)
    flagged = 0
    for _ in range(150):
        y = 0.2 + rng.normal(0, 0.01, size=40).astype(np.float32)
        fs = _series(y)
        flagged += bool(flagged_dates(fs, signal="B02", min_delta=0.0))
    assert flagged <= 2  # at most about 1 % false alarms on pure noise


def test_flagged_dates_ignores_single_outlier_and_finds_two_steps():
    y = np.full(30, 0.2, dtype=np.float32) + np.tile([0.002, -0.002, 0.0], 10).astype(np.float32)
    y[10] = 0.6  # one unmasked cloud
    assert flagged_dates(_series(y), signal="B02") == ()
    y2 = y.copy()
    y2[10] = 0.2
    y2[12:20] -= 0.1  # dark, then back
    steps = flagged_dates(_series(y2), signal="B02", max_steps=2)
    assert [s.date for s in steps] == [DATES[12], DATES[20]]
    assert steps[0].delta == pytest.approx(-0.1, abs=0.005) and steps[1].delta == pytest.approx(0.1, abs=0.005)
    assert len(flagged_dates(_series(y2), signal="B02", max_steps=1)) <= 1


def test_flagged_dates_dark_then_weathering():
    """Fresh asphalt: a drop of 0.12 that weathers back by 0.06 over the following 20 dates."""
    y = np.full(32, 0.22, dtype=np.float32)
    y[12:] = 0.10 + np.linspace(0, 0.06, 20)
    steps = flagged_dates(_series(y), signal="B02")
    assert steps[0].date == DATES[12] and steps[0].delta < -0.08


def test_cloudy_dates_are_skipped_by_flagged_dates():
    y = np.full(20, 0.2, dtype=np.float32)
    y[8:] = 0.1
    clear = np.ones(20, bool)
    clear[8:10] = False  # the step happened under cloud
    steps = flagged_dates(_series(y, clear), signal="B02")
    assert [(s.date, s.last_before) for s in steps] == [(DATES[10], DATES[7])]


def _series(y, clear=None) -> FeatureSeries:
    n = len(y)
    clear = np.ones(n, bool) if clear is None else clear
    refl = np.asarray(y, dtype=np.float32)[:, None]
    return FeatureSeries(
        "s", tuple((DATES + [DATES[-1] + timedelta(days=5 * i) for i in range(1, 40)])[:n]), ("B02",), refl, {},
        np.where(clear, 1.0, 0.0).astype(np.float32), clear, 10,
    )


def test_errors_name_the_problem():
    stack, aoi, *_ = planted()
    with pytest.raises(UsageError, match=r"no feature 'runway 09/27'.*'runway 01/19'"):
        runway_profile(stack, aoi, "runway 09/27")
    with pytest.raises(ValueError, match="unknown mask 'fmask'; use one of scl, scl\\+cloud, cloudmask, valid"):
        runway_profile(stack, aoi, "01/19", mask="fmask")
    with pytest.raises(UsageError, match=r"mask must be a \(T, H, W\)"):
        feature_series(stack, aoi, "01/19", mask=np.ones((2, 2, 2), bool))
    with pytest.raises(ValueError, match="unknown index 'evi'; valid names: ndvi"):
        runway_profile(stack, aoi, "01/19", indices=("evi",))
    with pytest.raises(UsageError, match="index 'ndvi' needs bands B08"):
        runway_profile(stack, aoi, "01/19", bands=("B02", "B03", "B04"), indices=("ndvi",))
    with pytest.raises(UsageError, match="bins must be >= 1"):
        runway_profile(stack, aoi, "01/19", bins=0)
    with pytest.raises(UsageError, match="outside the stack's grid"):
        feature_series(stack, aoi, box(0, 0, 10, 10))
    with pytest.raises(UsageError, match="covers no pixel centre"):
        feature_series(stack, aoi, box(X0 + 1, Y0 + 1, X0 + 3, Y0 + 3))
    prof = runway_profile(stack, aoi, "01/19", bins=4)
    with pytest.raises(ValueError, match=r"unknown signal 'nbr'; use a band \(B02"):
        series_values(prof, "nbr")
    with pytest.raises(PipelineError, match="min_obs"):
        flagged_dates(prof, min_obs=0)


def test_profile_section_reads_one_stretch():
    stack, aoi, *_ = planted()
    prof = runway_profile(stack, aoi, "runway 01/19", bins=10)
    sec = profile_section(prof, 300, 600)
    assert isinstance(sec, FeatureSeries) and sec.feature == "runway 01/19 300-600 m"
    np.testing.assert_allclose(sec.band("B03")[:REPAIR_T], 0.15, atol=0.003)
    np.testing.assert_allclose(sec.band("B03")[REPAIR_T + 1 :], 0.05, atol=0.003)
    assert not sec.clear[REPAIR_T]
    # the half cloud covers bin 5 of the three bins 3-5: two of three clear is enough at 0.5
    assert sec.clear[HALF_CLOUD_T]
    assert not profile_section(prof, 300, 600, min_clear=0.9).clear[HALF_CLOUD_T]
    assert sec.pixels == int(prof.pixels[3:6].sum())
    steps = flagged_dates(sec)
    assert [s.date for s in steps] == [DATES[REPAIR_T + 1]]
    with pytest.raises(UsageError, match="no bin of 'runway 01/19' has its centre in 2000-3000 m"):
        profile_section(prof, 2000, 3000)


def test_cloudmask_strategy_matches_the_masks_of_the_whole_stack():
    """A cloud 5-25 m east of the runway, outside its pixel window: the masks' dilation reaches in."""
    from pipeline.preprocess.cloudmask import mask_stack
    from pipeline.preprocess.harmonise import harmonise

    stack, aoi, on_runway, d_south = planted()
    H, W = stack.grid.shape
    rr, cc = np.mgrid[0:H, 0:W]
    x, y = stack.grid.xy(rr, cc)
    cloud = (x > X0 + 25) & (x < X0 + 45) & (np.abs(y - Y0) < 200)
    t = 3
    stack.data[t][:, cloud] = 6000 + stack.acquisitions[t].offset
    stack.scl[t][cloud] = SCL.CLOUD_HIGH
    full = mask_stack(harmonise(stack).reflectance, stack.bands, scl=stack.scl).clear
    a = feature_series(stack, aoi, "01/19", mask="cloudmask")
    b = feature_series(stack, aoi, "01/19", mask=full)
    np.testing.assert_array_equal(a.clear_fraction, b.clear_fraction)
    assert 0.5 < a.clear_fraction[t] < 1.0  # the dilated cloud reaches part of the runway
    pa = runway_profile(stack, aoi, "01/19", bins=10, mask="cloudmask")
    pb = runway_profile(stack, aoi, "01/19", bins=10, mask=full)
    np.testing.assert_array_equal(pa.clear, pb.clear)
    # scl+cloud: dilated SCL or dilated spectral cloud, computed independently on the whole grid
    from pipeline.preprocess.cloudmask import dilate, scl_mask, spectral_cloud_mask

    refl = harmonise(stack).reflectance
    bad = scl_mask(stack.scl, dilate_px=3) | np.stack([dilate(spectral_cloud_mask(r, stack.bands), 3) for r in refl])
    c = feature_series(stack, aoi, "01/19", mask="scl+cloud")
    d = feature_series(stack, aoi, "01/19", mask=~bad)
    np.testing.assert_array_equal(c.clear_fraction, d.clear_fraction)
    assert c.clear_fraction[t] == a.clear_fraction[t]


def test_profile_steps_need_min_bins():
    """One bin darkens on its own: no step by default, one with ``min_bins=1``."""
    T_, L = 20, 6
    refl = np.full((T_, L, 1), 0.2, np.float32)
    refl[10:, 2, 0] = 0.1
    clear = np.ones((T_, L), bool)
    prof = RunwayProfile(
        "r", tuple(DATES[:T_]), np.arange(50, 600, 100.0), ("B02",), refl, {}, clear, clear.astype(np.float32),
        600.0, 30.0, np.full(L, 30),
    )
    assert flagged_dates(prof, signal="B02") == ()
    (s,) = flagged_dates(prof, signal="B02", min_bins=1)
    assert s.distance_m == pytest.approx((200, 300)) and s.date == DATES[10]
    refl[10:, 3, 0] = 0.1
    (s,) = flagged_dates(prof, signal="B02")
    assert s.distance_m == pytest.approx((200, 400))


def test_find_feature_window_and_along():
    stack, aoi, on_runway, d_south = planted()
    f, geom = find_feature(aoi, "RUNWAY 01/19")
    assert f.name == "runway 01/19" and geom.bounds == pytest.approx((X0 - 20, Y0 - 500, X0 + 20, Y0 + 500), abs=0.5)
    g = feature_window(aoi, "01/19", margin_m=100, grid=stack.grid)
    assert g.epsg == stack.grid.epsg and g.res == 10.0
    assert g.bounds == pytest.approx((X0 - 120, Y0 - 600, X0 + 120, Y0 + 600), abs=10)
    # reading the window gives the same profile as the full grid
    win = stack.grid.to_window(g.bounds)
    sub = SceneStack(
        g, stack.bands, stack.data[:, :, win.row_off : win.row_off + g.height, win.col_off : win.col_off + g.width],
        stack.valid[:, win.row_off : win.row_off + g.height, win.col_off : win.col_off + g.width],
        stack.scl[:, win.row_off : win.row_off + g.height, win.col_off : win.col_off + g.width], stack.acquisitions,
    )
    full = runway_profile(stack, aoi, "01/19", bins=10)
    part = runway_profile(sub, aoi, "01/19", bins=10)
    np.testing.assert_array_equal(full.reflectance, part.reflectance)
    assert full.origin == pytest.approx((X0, Y0 - 500), abs=0.5) and full.direction == pytest.approx((0, 1), abs=1e-6)
    assert full.along(box(X0 - 10, Y0 - 200, X0 + 10, Y0 + 100)) == pytest.approx((300, 600), abs=0.5)
    assert full.along(box(X0 - 10, Y0 + 400, X0 + 10, Y0 + 900)) == pytest.approx((900, 1000), abs=0.5)
    with pytest.raises(UsageError, match="no feature 'taxiway A'"):
        feature_window(aoi, "taxiway A")


def test_stretch_rectangle_round_trips_with_along():
    stack, aoi, *_ = planted()
    prof = runway_profile(stack, aoi, "01/19", bins=10)
    rect = prof.stretch(300, 600)
    assert rect.bounds == pytest.approx((X0 - 20, Y0 - 200, X0 + 20, Y0 + 100), abs=0.5)
    assert prof.along(rect) == pytest.approx((300, 600), abs=1e-6)
    fs = feature_series(stack, aoi, rect)
    np.testing.assert_allclose(fs.band("B02")[REPAIR_T + 1 :], 0.05, atol=0.003)
    with pytest.raises(UsageError, match="empty"):
        prof.stretch(1200, 1500)


def test_stat_mean_moves_with_part_of_a_feature():
    """A polygon one third concrete, two thirds repaired: the median reads asphalt, the mean the mix."""
    stack, aoi, *_ = planted()
    part = box(X0 - 20, Y0 - 500 + 200, X0 + 20, Y0 - 500 + 500)
    med = feature_series(stack, aoi, part)
    mean = feature_series(stack, aoi, part, stat="mean")
    np.testing.assert_allclose(med.band("B04")[REPAIR_T + 1 :], 0.05, atol=0.003)
    np.testing.assert_allclose(mean.band("B04")[REPAIR_T + 1 :], 0.15 / 3 + 0.05 * 2 / 3, atol=0.003)
    np.testing.assert_allclose(mean.band("B04")[:REPAIR_T], 0.15, atol=0.003)
    mx = feature_series(stack, aoi, part, stat=lambda v, axis: np.nanmax(v, axis=axis))
    assert np.nanmin(mx.band("B04")[:REPAIR_T]) > 0.15
    prof = runway_profile(stack, aoi, "01/19", bins=10, stat="mean")
    np.testing.assert_allclose(prof.band("B04")[REPAIR_T + 1 :, 3:6], 0.05, atol=0.003)
    with pytest.raises(ValueError, match="unknown stat 'mode'; use one of median, mean"):
        feature_series(stack, aoi, part, stat="mode")


@settings(max_examples=25, deadline=None)
@given(bearing=st.floats(min_value=3.0, max_value=177.0), flip_digitising=st.booleans())
def test_distance_zero_is_the_lower_designator_threshold(bearing, flip_digitising):
    """Any orientation: a marker at the threshold of runway ``k`` (heading 10 k) lands in bin 0,
    and ``along(stretch(a, b)) == (a, b)``."""
    k = min(max(int(round(bearing / 10.0)), 1), 18)
    u = np.array([np.sin(np.radians(bearing)), np.cos(np.radians(bearing))])
    n = np.array([-u[1], u[0]])
    c = np.array([X0, Y0])
    ends = [c - 300 * u, c + 300 * u]
    if flip_digitising:
        ends = ends[::-1]
    rw = Polygon([tuple(ends[0] - 20 * n), tuple(ends[1] - 20 * n), tuple(ends[1] + 20 * n), tuple(ends[0] + 20 * n)])
    aoi = _aoi(rw, designator=f"{k:02d}/{k + 18:02d}")
    grid = aoi.grid(buffer_m=60)
    H, W = grid.shape
    rr, cc = np.mgrid[0:H, 0:W]
    x, y = grid.xy(rr, cc)
    threshold = c - 300 * u  # aircraft on runway k fly heading ~10 k from here
    refl = np.where(np.hypot(x - threshold[0], y - threshold[1]) < 80, 0.5, 0.2)  # most of bin 0 (0-100 m)
    data = np.round(refl * 10000).astype(np.uint16)[None, None].repeat(len(BANDS), axis=1)
    acq = (Acquisition(id="a", time=datetime(2024, 1, 1, tzinfo=timezone.utc)),)
    stack = SceneStack(grid, BANDS, data, np.ones((1, H, W), bool), None, acq)
    prof = runway_profile(stack, aoi, f"{k + 18:02d}", bins=6)  # either end's designator finds it
    b = prof.band("B02")[0]
    assert b[0] > 0.35 and b[-1] == pytest.approx(0.2, abs=1e-3)
    assert prof.origin == pytest.approx(tuple(threshold), abs=1.0)
    assert prof.along(prof.stretch(120, 480)) == pytest.approx((120, 480), abs=1e-6)
