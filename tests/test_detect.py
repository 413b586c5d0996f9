"""The detect orchestration: planted stacks (tiny local stand-ins) and the simulated archive."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import numpy as np
import pytest
from scipy import ndimage
from shapely.geometry import box

from pipeline.aoi import AOI
from pipeline.detect import DetectParams, aoi_mask, detect, detect_stacks
from pipeline.errors import NoDataError, UsageError
from pipeline.objects.model import NODATA_CODE
from pipeline.scene import SCL, Acquisition, SceneStack

BANDS = ("B02", "B03", "B04", "B08", "B8A", "B11", "B12")
SAND = np.array([0.16, 0.23, 0.31, 0.36, 0.38, 0.46, 0.40], np.float32)
ROOF = np.array([0.26, 0.29, 0.318, 0.35, 0.356, 0.362, 0.322], np.float32)  # concrete roof
AIRCRAFT = np.array([0.45, 0.46, 0.47, 0.48, 0.48, 0.40, 0.33], np.float32)
DARK_VEHICLE = np.array([0.075, 0.085, 0.095, 0.115, 0.118, 0.128, 0.118], np.float32)


def _aoi() -> AOI:
    """A 0.8 km square in the Libyan desert (UTM 34N)."""
    return AOI(id="planted", name="planted", kind="airbase", geometry=box(21.830, 21.690, 21.8377, 21.6972))


def _ground(grid, seed=0):
    """Sand with a smooth texture (gives co-registration something to lock on) and a dark strip."""
    rng = np.random.default_rng(seed)
    H, W = grid.shape
    def field(scale):
        f = ndimage.gaussian_filter(rng.normal(0, 1, (H, W)), 3.0)
        return (f / f.std() * scale).astype(np.float32)

    common = field(0.03)
    img = np.stack([s * (1 + common + field(0.01)) for s in SAND])  # bands differ a little
    img[:, 40:44, 10:-10] *= 0.4  # a 'runway'
    return img


def _stack(grid, dates, *, building=None, transient=None, offset_from=None, cloud=None, seed=0, transient_spectrum=AIRCRAFT):
    """Planted stack: the same ground on every date plus small noise; ``building`` (rows, cols)
    on every date, ``transient`` {date index: (rows, cols)}, a DN offset of 1000 from
    ``offset_from``, ``cloud`` {date index: (rows, cols)} marked in SCL as high cloud."""
    rng = np.random.default_rng(seed + dates[0].toordinal())  # noise differs between windows
    base = _ground(grid, seed)
    T = len(dates)
    H, W = grid.shape
    data = np.zeros((T, len(BANDS), H, W), np.uint16)
    scl = np.full((T, H, W), SCL.NOT_VEGETATED, np.uint8)
    acqs = []
    for t, d in enumerate(dates):
        img = base + rng.normal(0, 0.002, base.shape).astype(np.float32)
        if building is not None:
            img[:, building[0], building[1]] = ROOF[:, None, None]
        if transient and t in transient:
            r, c = transient[t]
            img[:, r, c] = transient_spectrum[:, None, None]
        if cloud and t in cloud:
            r, c = cloud[t]
            img[:, r, c] = 0.6
            scl[t, r, c] = SCL.CLOUD_HIGH
        off = 1000 if offset_from and d >= offset_from else 0
        data[t] = np.clip(np.round(img * 10000) + off, 1, 65535).astype(np.uint16)
        acqs.append(
            Acquisition(
                f"S2_{d:%Y%m%d}",
                datetime(d.year, d.month, d.day, 9, 30, tzinfo=timezone.utc),
                processing_baseline="04.00" if off else "03.01",
                offset=off,
                source="planted",
            )
        )
    return SceneStack(grid, BANDS, data, np.ones((T, H, W), bool), scl, tuple(acqs))


def _dates(start: date, n: int, step: int = 5):
    return [start + timedelta(days=step * i) for i in range(n)]


BUILDING = (slice(60, 68), slice(55, 65))


def test_planted_building_found_and_transient_dropped_by_persistence():
    """Planted: a bright 80 x 100 m roof on all 4 after dates; an 'aircraft' on the after date 1 only;
    a cloud (SCL) on before date 2. Expected: one object over the roof, nothing at the aircraft."""
    aoi = _aoi()
    grid = aoi.grid()
    b = _stack(grid, _dates(date(2024, 3, 1), 4), cloud={2: (slice(20, 40), slice(20, 40))})
    a = _stack(grid, _dates(date(2025, 5, 1), 4), building=BUILDING, transient={1: (slice(20, 28), slice(70, 80))}, seed=0)
    res = detect_stacks(aoi, b, a, params=DetectParams(), source_name="planted")
    assert len(res.objects) == 1, [(o.cls, o.area_m2) for o in res.objects]
    obj = res.objects[0]
    x, y = grid.xy(64, 60)
    assert obj.geometry.buffer(5).contains(__import__("shapely").geometry.Point(x, y))
    assert 0.5 * 8000 <= obj.area_m2 <= 1.5 * 8000
    assert obj.cls == "new_structure"
    assert ((res.class_map[20:28, 70:80] == 0) | (res.class_map[20:28, 70:80] == NODATA_CODE)).all()
    assert res.parameters["persistence"]["applied"] is True
    assert res.parameters["persistence"]["after_clear_acquisitions"] == 4
    # result contract
    inside = aoi_mask(aoi, grid)
    assert (res.class_map[~inside] == NODATA_CODE).all()
    assert res.before_composite.shape == (len(BANDS), *grid.shape) and res.before_composite.dtype == np.float32
    for band in ("B02", "B03", "B04", "B8A", "B11", "B12"):
        assert band in res.composite_bands
    assert len(res.acquisitions) == 8 and all(r.used for r in res.acquisitions)
    assert {"masks", "coregister", "composite", "normalise", "kernels", "persistence", "objects"} <= set(res.timings)
    assert res.before == "2024-03-01/2024-03-16" and res.source == "planted"


def test_prepared_reference_gives_the_same_result_for_every_after_window():
    """A monitoring run prepares its before window once: each detection against the prepared
    reference equals the one that prepares it itself, however many after windows use it."""
    from pipeline.detect import prepare_reference

    aoi = _aoi()
    grid = aoi.grid()
    b = _stack(grid, _dates(date(2024, 3, 1), 4), cloud={2: (slice(20, 40), slice(20, 40))})
    afters = [
        _stack(grid, _dates(date(2025, 5, 1), 3), building=BUILDING, seed=1),
        _stack(grid, _dates(date(2025, 6, 1), 1), seed=2),
    ]
    ref = prepare_reference(aoi, b, params=DetectParams())
    for a in afters + afters[:1]:
        want = detect_stacks(aoi, b, a)
        got = detect_stacks(aoi, b, a, reference=ref)
        np.testing.assert_array_equal(got.class_map, want.class_map)
        np.testing.assert_array_equal(got.magnitude, want.magnitude)
        np.testing.assert_array_equal(got.before_composite, want.before_composite)
        assert [o.geometry.wkt for o in got.objects] == [o.geometry.wkt for o in want.objects]
        assert got.acquisitions == want.acquisitions
        assert got.parameters == want.parameters
    with pytest.raises(UsageError, match="prepared for another"):
        detect_stacks(aoi, b, afters[0], params=DetectParams(min_persistence=3), reference=ref)
    # detached (no before stack or reflectance: what tiles keep on disk), through pickle
    import pickle

    slim = pickle.loads(pickle.dumps(ref.detached()))
    assert slim.stack is None and slim.window.refl is None
    for a in afters:
        wins = ((b.dates[0], b.dates[-1]), (a.dates[0], a.dates[-1]))
        want = detect_stacks(aoi, b, a)
        got = detect_stacks(aoi, None, a, windows=wins, reference=slim)
        np.testing.assert_array_equal(got.class_map, want.class_map)
        np.testing.assert_array_equal(got.after_composite, want.after_composite)
        assert [o.geometry.wkt for o in got.objects] == [o.geometry.wkt for o in want.objects]
        assert got.acquisitions == want.acquisitions and got.parameters == want.parameters
    with pytest.raises(UsageError, match="detached reference"):
        detect_stacks(aoi, None, afters[0])
    with pytest.raises(UsageError, match="prepared for another"):
        detect_stacks(aoi, b, afters[0], reference=slim)


def test_one_date_change_in_short_after_window_is_not_reported():
    """Planted: after window of 2 dates; a dark vehicle park on one of them shows in the 2-date
    median. Persistence (2 dates) drops it; with persistence off it is an object."""
    aoi = _aoi()
    grid = aoi.grid()
    b = _stack(grid, _dates(date(2024, 3, 1), 4))
    a = _stack(grid, _dates(date(2025, 5, 1), 2), transient={0: (slice(24, 34), slice(60, 72))}, transient_spectrum=DARK_VEHICLE)
    res = detect_stacks(aoi, b, a)
    assert res.objects == ()
    off = detect_stacks(aoi, b, a, params=DetectParams(min_persistence=0))
    assert len(off.objects) == 1


def test_single_after_acquisition_falls_back_to_composite_and_says_so():
    aoi = _aoi()
    grid = aoi.grid()
    b = _stack(grid, _dates(date(2024, 3, 1), 3))
    a = _stack(grid, _dates(date(2025, 5, 1), 1), building=BUILDING)
    res = detect_stacks(aoi, b, a)
    p = res.parameters["persistence"]
    assert p["applied"] is False and "fell back" in p["note"] and p["after_clear_acquisitions"] == 1
    assert len(res.objects) == 1


def test_offset_pair_across_2022_baseline_gives_no_objects():
    """Planted: identical ground before and after 2022-01-25; the after data carry +1000 DN."""
    aoi = _aoi()
    grid = aoi.grid()
    dates = _dates(date(2021, 11, 1), 12, step=10)
    s = _stack(grid, dates, offset_from=date(2022, 1, 25))
    b = s.between(date(2021, 11, 1), date(2022, 1, 24))
    a = s.between(date(2022, 1, 25), date(2022, 6, 1))
    assert {x.offset for x in a.acquisitions} == {1000} and {x.offset for x in b.acquisitions} == {0}
    res = detect_stacks(aoi, b, a)
    assert res.objects == ()
    assert all("-1000" in r.offset_handling for r in res.acquisitions if r.window == "after")
    # without harmonisation the offset is a 0.1 reflectance jump in every band: the floor would flag it
    assert res.parameters["normalisation"]["offset"] == pytest.approx([0.0] * len(BANDS), abs=0.01)


def test_cloudy_window_raises_nodata_naming_window_and_reasons():
    aoi = _aoi()
    grid = aoi.grid()
    H, W = grid.shape
    b = _stack(grid, _dates(date(2024, 3, 1), 3))
    a = _stack(grid, _dates(date(2025, 5, 1), 2), cloud={0: (slice(0, H), slice(0, W)), 1: (slice(0, H), slice(0, W))})
    with pytest.raises(NoDataError, match=r"after window 2025-05-01/2025-05-06.*2 found.*cloudy"):
        detect_stacks(aoi, b, a)


def test_detect_with_empty_search_raises_nodata():
    class Empty:
        name = "empty"

        def search(self, aoi, start, end, *, max_cloud=None):
            return []

    with pytest.raises(NoDataError, match="before window 2024-01-01/2024-02-01: 0 found"):
        detect(_aoi(), Empty(), before=(date(2024, 1, 1), date(2024, 2, 1)), after=(date(2024, 3, 1), date(2024, 4, 1)))


def test_params_validation_lists_valid_names():
    with pytest.raises(UsageError, match="cva, zscore_cva, irmad_chi2"):
        DetectParams(magnitude="magic")
    with pytest.raises(UsageError, match="robust, otsu"):
        DetectParams(threshold="magic")
    with pytest.raises(UsageError, match="magnitude_bands 'swir': use one of all, no_nir, visible"):
        DetectParams(magnitude_bands="swir")
    with pytest.raises(UsageError, match="keeps none of bands"):
        DetectParams(bands=("B08", "B8A"), coreg_band="B08", magnitude_bands="no_nir")
    with pytest.raises(UsageError, match="context 'texture': use one of none, phenology, multiscale"):
        DetectParams(context="texture")
    with pytest.raises(UsageError, match="needs bands B04 and B08"):
        DetectParams(bands=("B02", "B03", "B04"), coreg_band="B04", context="phenology")
    with pytest.raises(UsageError, match="context_ndvi"):
        DetectParams(context_ndvi=1.5)
    with pytest.raises(UsageError, match="nochange_min_fraction"):
        DetectParams(nochange_min_fraction=-0.1)
    with pytest.raises(UsageError, match="window starts after"):
        detect(_aoi(), None, before=(date(2024, 2, 1), date(2024, 1, 1)), after=(date(2024, 3, 1), date(2024, 4, 1)))


# ------------------------------------------------------------------------------------------------
# the simulated archive (pipeline.sources.simulated): clouds, haze, misregistration, transients,
# the 2022 offset, as the simulator renders them; a 10-day revisit keeps the test fast


def _sim():
    from pipeline.sources.simulated import SimulatedSource

    return SimulatedSource(seed=0, revisit_days=10)


def test_simulated_port_changes_found_without_false_objects():
    from pipeline.aoi import load_aoi

    src = _sim()
    aoi = load_aoi("tartus-naval-facility")
    res = detect(aoi, src, before=(date(2024, 6, 1), date(2024, 8, 31)), after=(date(2025, 6, 1), date(2025, 8, 31)))
    poly = aoi.to_crs(aoi.geometry)
    truth = [e for e in src.truth(aoi, grid=res.grid) if e.geometry.intersection(poly).area >= 0.5 * e.geometry.area]
    assert truth, "the simulator scripts changes in this AOI"
    for e in truth:
        assert any(o.geometry.intersects(e.geometry) for o in res.objects), f"missed {e.cls}: {e.description}"
    for o in res.objects:
        assert any(o.geometry.intersects(e.geometry) for e in src.truth(aoi, grid=res.grid)), f"false object {o.cls}"
    recs = {r.date: r for r in res.acquisitions}
    assert all(r.offset == 1000 and "-1000" in r.offset_handling for r in recs.values())
    assert all(r.shift_px is not None for r in recs.values() if r.used)
    assert all(r.reason for r in recs.values() if not r.used)


def test_simulated_nochange_pair_across_2022_offset_gives_no_objects():
    from pipeline.aoi import load_aoi

    src = _sim()
    aoi = load_aoi("tartus-naval-facility")
    res = detect(aoi, src, before=(date(2021, 11, 1), date(2022, 1, 24)), after=(date(2022, 1, 25), date(2022, 4, 30)))
    assert {r.offset for r in res.acquisitions if r.window == "before"} == {0}
    assert {r.offset for r in res.acquisitions if r.window == "after"} == {1000}
    assert res.objects == (), [(o.cls, o.area_m2) for o in res.objects]
    assert (res.class_map[aoi_mask(aoi, res.grid)] != NODATA_CODE).mean() > 0.95


@pytest.mark.parametrize(
    "kw",
    [
        dict(threshold="chi2"),
        dict(threshold="otsu"),
        dict(magnitude="zscore_cva"),
        dict(magnitude="irmad_chi2", threshold="chi2"),
        dict(magnitude_bands="all"),
        dict(magnitude="zscore_cva", magnitude_bands="all"),
        dict(magnitude="zscore_cva", magnitude_bands="visible"),
        dict(magnitude="irmad_chi2", threshold="chi2", magnitude_bands="no_nir"),
        dict(magnitude="zscore_cva", context="phenology"),
        dict(magnitude="zscore_cva", context="multiscale"),
    ],
)
def test_other_magnitudes_and_thresholds_find_the_planted_building(kw):
    aoi = _aoi()
    grid = aoi.grid()
    b = _stack(grid, _dates(date(2024, 3, 1), 3))
    a = _stack(grid, _dates(date(2025, 5, 1), 3), building=BUILDING)
    res = detect_stacks(aoi, b, a, params=DetectParams(**kw))
    assert len(res.objects) == 1 and res.objects[0].cls == "new_structure"
    assert res.parameters["threshold"] == kw.get("threshold", "robust")


def test_given_stack_is_split_into_windows_and_misregistered_dates_are_shifted_or_dropped():
    """Planted: one stack over both windows; after date 1 is shifted by (0.6, -0.4) px (recovered and
    recorded); after date 2 shows an unrelated scene (no correlation peak: dropped, with the reason)."""
    aoi = _aoi()
    grid = aoi.grid()
    b = _stack(grid, _dates(date(2024, 3, 1), 3))
    a = _stack(grid, _dates(date(2025, 5, 1), 4), building=BUILDING)
    data = a.data.copy()
    for i in range(data.shape[1]):
        shifted = np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(data[1, i].astype(np.float64)), (0.6, -0.4))).real
        data[1, i] = np.clip(np.round(shifted), 1, 65535).astype(np.uint16)
    data[2] = np.roll(_stack(grid, [date(2025, 5, 11)], seed=5).data[0], (37, 23), axis=(-2, -1))  # another place
    a = SceneStack(grid, a.bands, data, a.valid, a.scl, a.acquisitions)
    both = SceneStack.concat([b, a])

    class Named:
        name = "planted"

    res = detect(aoi, Named(), before=(date(2024, 1, 1), date(2024, 12, 31)), after=(date(2025, 1, 1), date(2025, 12, 31)), stack=both)
    recs = {r.date: r for r in res.acquisitions}
    dy, dx = recs["2025-05-06"].shift_px
    assert abs(dy + 0.6) < 0.1 and abs(dx - 0.4) < 0.1
    assert not recs["2025-05-11"].used and "co-registration" in recs["2025-05-11"].reason
    assert res.parameters["acquisitions_used"] == {"before": 3, "after": 3}
    assert len(res.objects) == 1 and res.objects[0].cls == "new_structure"
    assert res.before == "2024-01-01/2024-12-31"


def test_bench_accuracy_scoring_matches_objects_to_truth(project_root):
    """benchmarks/bench_accuracy.py scoring on planted geometries: a split event counts once, an
    object elsewhere is false, an event outside the AOI polygon is not counted."""
    import importlib.util
    from types import SimpleNamespace as NS

    from pipeline.objects.model import ChangeObject

    spec = importlib.util.spec_from_file_location("bench_accuracy", project_root / "benchmarks" / "bench_accuracy.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    aoi_poly = box(0, 0, 1000, 1000)
    truth = [
        NS(cls="new_structure", geometry=box(100, 100, 200, 200), description="roof"),
        NS(cls="runway_repair", geometry=box(400, 0, 430, 600), description="runway"),
        NS(cls="earthworks", geometry=box(1500, 0, 1600, 100), description="outside the AOI"),
    ]

    def obj(cls, geom):
        return ChangeObject(id=cls, geometry=geom, cls=cls, confidence=0.9, area_m2=geom.area, feature=None, before="", after="")

    objects = [
        obj("new_structure", box(110, 110, 210, 210)),
        obj("runway_repair", box(400, 0, 430, 350)),  # the larger part decides the class
        obj("surface_change", box(400, 360, 430, 600)),  # the rest of the runway, another class
        obj("new_structure", box(700, 700, 750, 750)),  # nothing there
    ]
    sc = bench.score_objects(objects, truth, aoi_poly)
    assert dict(sc["events"]) == {"new_structure": 1, "runway_repair": 1}
    assert dict(sc["found"]) == {"new_structure": 1, "runway_repair": 1}
    assert sum(sc["class_ok"].values()) == 2
    assert sc["objects"]["new_structure"] == 2 and sc["objects_true"]["new_structure"] == 1
    assert sc["objects_true"]["surface_change"] == 1
    assert len(sc["false_objects"]) == 1


# ------------------------------------------------------------------------------------------------
# context cues: a field greening up between seasons is not a change; a new roof is

FIELD = (slice(18, 32), slice(18, 34))
CROP_SPRING = np.array([0.04, 0.07, 0.05, 0.30, 0.32, 0.18, 0.09], np.float32)  # NDVI 0.71
CROP_SUMMER = np.array([0.04, 0.07, 0.05, 0.46, 0.48, 0.18, 0.09], np.float32)  # NDVI 0.80: NIR only


def _paint(stack: SceneStack, region, spectrum) -> SceneStack:
    """Set ``region`` (rows, cols) of every date of ``stack`` to ``spectrum`` (reflectance, no DN offset)."""
    assert all(a.offset == 0 for a in stack.acquisitions)
    stack.data[:, :, region[0], region[1]] = np.round(spectrum * 10000).astype(np.uint16)[None, :, None, None]
    return stack


def _seasonal_pair():
    aoi = _aoi()
    grid = aoi.grid()
    b = _paint(_stack(grid, _dates(date(2024, 3, 1), 3)), FIELD, CROP_SPRING)
    a = _paint(_stack(grid, _dates(date(2025, 7, 1), 3), building=BUILDING), FIELD, CROP_SUMMER)
    return aoi, b, a


def _field_flagged(res) -> float:
    cm = res.class_map[FIELD]
    return float(((cm > 0) & (cm != NODATA_CODE)).mean())


def _building_found(res) -> bool:
    cm = res.class_map[BUILDING]
    return ((cm > 0) & (cm != NODATA_CODE)).mean() > 0.5 and any(o.cls == "new_structure" for o in res.objects)


def test_nir_only_green_up_is_a_change_with_all_bands_but_not_without_nir():
    """Planted: a crop field whose NIR rises by 0.16 (visible and SWIR unchanged) and a new roof.
    z-CVA over all bands flags the field; over visible + SWIR (``no_nir``) only the roof."""
    aoi, b, a = _seasonal_pair()
    all_bands = detect_stacks(aoi, b, a, params=DetectParams(magnitude="zscore_cva", magnitude_bands="all"))
    assert _field_flagged(all_bands) > 0.5, "the fixture must plant a change the all-band magnitude sees"
    assert _building_found(all_bands)
    no_nir = detect_stacks(aoi, b, a, params=DetectParams(magnitude="zscore_cva", magnitude_bands="no_nir"))
    assert _field_flagged(no_nir) == 0.0
    assert _building_found(no_nir)
    assert no_nir.parameters["magnitude_bands"] == "no_nir"
    # the defaults (reflectance CVA, no NIR) ignore the green-up; with all bands CVA flags it
    default = detect_stacks(aoi, b, a)
    assert _field_flagged(default) == 0.0 and _building_found(default)
    assert _field_flagged(detect_stacks(aoi, b, a, params=DetectParams(magnitude_bands="all"))) > 0.5


def test_phenology_context_drops_pixels_vegetated_on_both_dates_only():
    """Same pair, all bands in the magnitude: ``phenology`` drops the field (NDVI > 0.5 on both dates), keeps the roof (sand before);
    with the NDVI bar above the summer crop's 0.80 the field is a change again."""
    aoi, b, a = _seasonal_pair()
    kw = dict(magnitude="zscore_cva", magnitude_bands="all", context="phenology")
    res = detect_stacks(aoi, b, a, params=DetectParams(**kw))
    assert _field_flagged(res) == 0.0
    assert _building_found(res)
    high = detect_stacks(aoi, b, a, params=DetectParams(**kw, context_ndvi=0.9))
    assert _field_flagged(high) > 0.5


def test_extent_is_trimmed_against_the_local_peak_not_the_region_peak():
    """Planted: the bright roof of the first test and, joined to its east side, a 80 x 160 m lot
    brightened by 8 % (CVA about a third of the roof's). With the peak of the whole connected
    region (``extent_radius_px=0``) the lot falls under 0.4 x the roof's peak and is erased; with
    the local peak (default, 3 pixels) the lot is kept beyond the roof's 3-pixel reach, and the
    roof keeps its planted outline either way."""
    aoi = _aoi()
    grid = aoi.grid()
    b = _stack(grid, _dates(date(2024, 3, 1), 4))
    a = _stack(grid, _dates(date(2025, 5, 1), 4), building=BUILDING)
    lot = (slice(60, 68), slice(65, 81))
    far = (slice(60, 68), slice(69, 80))  # more than 3 pixels from the roof, off the lot's rim
    lit = np.round(a.data[:, :, lot[0], lot[1]].astype(np.float32) * 1.08).astype(np.uint16)
    a.data[:, :, lot[0], lot[1]] = lit

    def flagged(res, where):
        c = res.class_map[where]
        return float(((c > 0) & (c < NODATA_CODE)).mean())

    region = detect_stacks(aoi, b, a, params=DetectParams(extent_radius_px=0))
    local = detect_stacks(aoi, b, a)
    assert DetectParams().extent_radius_px == 3
    assert flagged(region, far) < 0.2, "the fixture must plant a change the region-wide trim erases"
    assert flagged(local, far) > 0.9
    for res in (region, local):
        assert flagged(res, BUILDING) > 0.9
    with pytest.raises(UsageError, match="extent_radius_px"):
        DetectParams(extent_radius_px=-1)


def test_threshold_sample_is_every_pixel_on_small_grids_and_faithful_on_large_ones():
    """The robust threshold of a large grid comes from an even subsample whose median and MAD
    are those of all its pixels; grids up to THRESHOLD_SAMPLE pixels use every valid pixel."""
    from pipeline.detect import THRESHOLD_SAMPLE, _threshold, _threshold_sample

    rng = np.random.default_rng(2)
    small = rng.gamma(2.0, 0.01, (300, 200)).astype(np.float32)
    valid = np.ones(small.shape, bool)
    valid[:10] = False
    small[50, 50] = np.nan
    np.testing.assert_array_equal(np.sort(_threshold_sample(small, valid)), np.sort(small[valid & np.isfinite(small)]))
    big = rng.gamma(2.0, 0.01, (2100, 2000)).astype(np.float32)
    ok = np.ones(big.shape, bool)
    ok[:, :300] = False
    sample = _threshold_sample(big, ok)
    assert sample.size <= THRESHOLD_SAMPLE and sample.size > THRESHOLD_SAMPLE // 3
    full = _threshold(big[ok], "robust", dof=5, chi2_p=0.001, robust_k=6.0)
    assert _threshold(sample, "robust", dof=5, chi2_p=0.001, robust_k=6.0) == pytest.approx(full, rel=5e-3)


def test_gaps_are_closed_across_dimly_changed_ground_only():
    """Planted: two 80 x 100 m patches of sand brightened by 12 % (magnitude, visible + SWIR
    CVA, about 0.09), 30 m apart. Over unchanged sand they stay two objects; when the 3-pixel
    strip between them brightened by 5.5 % (all-band CVA about 0.05, under the ``min_cva``
    floor, but a magnitude above ``extent_fraction`` x the patches' peak, so the trim would
    have kept it: one construction site) the closing (default radius 2) joins them into one
    object covering the strip; ``closing_radius_px=0`` leaves them apart."""
    aoi = _aoi()
    grid = aoi.grid()
    west, east, strip = (slice(60, 68), slice(55, 65)), (slice(60, 68), slice(68, 78)), (slice(60, 68), slice(65, 68))
    b = _stack(grid, _dates(date(2024, 3, 1), 4))
    a = _stack(grid, _dates(date(2025, 5, 1), 4))

    def brighten(where, factor):
        a.data[:, :, where[0], where[1]] = np.round(a.data[:, :, where[0], where[1]].astype(np.float32) * factor).astype(np.uint16)

    brighten(west, 1.12)
    brighten(east, 1.12)
    apart = detect_stacks(aoi, b, a)
    assert len(apart.objects) == 2, [o.area_m2 for o in apart.objects]
    brighten(strip, 1.055)
    assert len(detect_stacks(aoi, b, a, params=DetectParams(closing_radius_px=0)).objects) == 2
    joined = detect_stacks(aoi, b, a)
    assert DetectParams().closing_radius_px == 2
    assert len(joined.objects) == 1, [o.area_m2 for o in joined.objects]
    cm = joined.class_map[strip]
    assert ((cm > 0) & (cm < NODATA_CODE)).mean() > 0.5
    with pytest.raises(UsageError, match="closing_radius_px"):
        DetectParams(closing_radius_px=-1)


def test_magnitude_is_handed_over_final_before_the_objects(monkeypatch):
    """``on_magnitude`` gets the result's own magnitude (read-only from then on) and fields, once,
    before the objects are extracted: what lets the CLI write change_magnitude.tif meanwhile."""
    import pipeline.objects as objects

    aoi = _aoi()
    grid = aoi.grid()
    b = _stack(grid, _dates(date(2024, 3, 1), 4))
    a = _stack(grid, _dates(date(2025, 5, 1), 4), building=BUILDING)
    calls, order = [], []
    extract = objects.extract_objects

    def extract_after(*args, **kw):
        order.append("objects")
        return extract(*args, **kw)

    monkeypatch.setattr(objects, "extract_objects", extract_after)

    def on_magnitude(magnitude, **fields):
        order.append("magnitude")
        calls.append((magnitude, magnitude.copy(), fields))

    res = detect_stacks(aoi, b, a, params=DetectParams(), source_name="planted", on_magnitude=on_magnitude)
    assert order == ["magnitude", "objects"] and len(res.objects) == 1
    magnitude, copy, fields = calls[0]
    assert magnitude is res.magnitude and not magnitude.flags.writeable
    np.testing.assert_array_equal(magnitude, copy)  # unchanged after the handover
    assert fields == {"grid": res.grid, "aoi": res.aoi, "source": res.source, "before": res.before, "after": res.after}


def test_each_windows_dn_are_freed_once_harmonised(monkeypatch):
    """Reading from a source, a window's DN (B x 2 bytes per pixel and date) are released before
    its masks are computed, so they never live beside the masks' temporaries: the memory a
    long window takes (see pipeline.tiled.peak_memory)."""
    import gc
    import weakref

    import pipeline.detect as D
    from pipeline.sources import get_source

    src = get_source("simulated")
    read = src.read
    alive_at_masks, reads = [], []

    class Source:
        name = "simulated"

        def search(self, *a, **k):
            return src.search(*a, **k)

        def read(self, *a, **k):
            stack = read(*a, **k)
            reads.append(weakref.ref(stack.data))
            return stack

    mask_stack = D.mask_stack

    def spy(*a, **k):
        gc.collect()
        alive_at_masks.append([r() is not None for r in reads])
        return mask_stack(*a, **k)

    monkeypatch.setattr(D, "mask_stack", spy)
    from pipeline.aoi import load_aoi

    res = detect(load_aoi("maaten-al-sarra"), Source(), before=(date(2024, 3, 1), date(2024, 3, 31)),
                 after=(date(2025, 5, 1), date(2025, 5, 31)))
    assert len(reads) == 2 and res.objects
    assert alive_at_masks and all(not any(alive) for alive in alive_at_masks), alive_at_masks
