"""classify_region on hand-written property dicts, feature_context on the planted site."""

from __future__ import annotations

import json

import numpy as np
import pytest
from shapely.geometry import LineString, box

from objects_planted import CX, CY, RUNWAY_AZ, burn, on_axis, rotated_rect
from pipeline.objects.classify import CLASSIFIERS, ClassifyThresholds, classify_region
from pipeline.objects.context import RegionContext, angle_difference, feature_axis_deg, feature_context

SAND = {"B02": 0.20, "B03": 0.28, "B04": 0.36, "B08": 0.40, "B11": 0.52, "B12": 0.45}
ROOF = {"B02": 0.45, "B03": 0.47, "B04": 0.48, "B08": 0.50, "B11": 0.46, "B12": 0.40}


def props(before=None, after=None, **kw):
    """A compact 8 x 12 px rectangle with no change, overridden by ``kw``."""
    p = {
        "area_m2": 9600.0,
        "elongation": 1.5,
        "orientation_deg": 90.0,
        "rectangularity": 1.0,
        "solidity": 1.0,
        "mean_magnitude": 3.0,
    }
    for name, spec in (("before", before), ("after", after)):
        for b, v in (spec or {}).items():
            p[f"{name}_{b}"] = v
    p.update({f"d_{k}" if not k.startswith(("d_", "before_", "after_")) and k not in p else k: v for k, v in kw.items()})
    return p


RUNWAY = RegionContext(feature="runway 09/27", role="runway", surface="asphalt", inside_fraction=0.9, touches=True, feature_axis_deg=90.0, paved_fraction=0.9)


def test_runway_darkening_inside_runway():
    cls, conf, ev = classify_region(props(brightness=-0.08, elongation=6.0), RUNWAY)
    assert cls == "runway_repair" and ev["rule"] == "runway_repair.darkening"
    assert 0.5 <= conf <= 1.0
    assert ev["context"]["feature"] == "runway 09/27"
    assert ev["measurements"]["d_brightness"] == pytest.approx(-0.08)
    json.dumps(ev)


def test_runway_change_below_brightness_threshold_is_not_repair():
    cls, _, _ = classify_region(props(brightness=-0.01), RUNWAY)
    assert cls != "runway_repair"


def test_touching_runway_needs_alignment():
    beside = RegionContext(feature="runway 09/27", role="runway", inside_fraction=0.0, touches=True, feature_axis_deg=90.0)
    aligned = classify_region(props(brightness=-0.06, elongation=5.0, orientation_deg=100.0), beside)
    across = classify_region(props(brightness=-0.06, elongation=5.0, orientation_deg=0.0), beside)
    stubby = classify_region(props(brightness=-0.06, elongation=1.2, orientation_deg=90.0), beside)
    assert aligned[0] == "runway_repair"
    assert across[0] != "runway_repair" and stubby[0] != "runway_repair"
    # the tolerance is a parameter
    strict = classify_region(props(brightness=-0.06, elongation=5.0, orientation_deg=100.0), beside, thresholds=ClassifyThresholds(angle_tol_deg=5))
    assert strict[0] != "runway_repair"


def test_new_structure_needs_built_up_signature():
    """Brightening compact rectangle: with sand -> roof spectra it is a new structure; with the
    same brightening but NDBI-only evidence (the desert trap) it is not."""
    cls, conf, ev = classify_region(props(SAND, ROOF, brightness=0.1, dbi=0.05))
    assert cls == "new_structure" and conf >= 0.6
    cls2, _, _ = classify_region(props(SAND, {k: v * 1.2 for k, v in SAND.items()}, brightness=0.07, ndbi=0.1, bsi=0.05))
    assert cls2 != "new_structure"


def test_new_structure_needs_compact_shape():
    cls, _, _ = classify_region(props(SAND, ROOF, brightness=0.1, dbi=0.05, rectangularity=0.4, solidity=0.5))
    assert cls != "new_structure"


def test_new_structure_needs_bare_ground_before():
    green = {**SAND, "B04": 0.05, "B08": 0.40}  # NDVI 0.78 before: a field, not bare ground
    cls, _, _ = classify_region(props(green, ROOF, brightness=0.1, dbi=0.05, ndvi=-0.05))
    assert cls != "new_structure"


def test_vegetation_and_water_dominance():
    assert classify_region(props(ndvi=0.25))[0] == "vegetation"
    assert classify_region(props(ndvi=-0.2, bsi=0.05))[2]["rule"] == "vegetation.loss"
    assert classify_region(props(mndwi=0.5, ndvi=-0.05))[0] == "water"
    # a modest MNDWI rise on a darkening surface with no water before or after is not water
    dark = {"B02": 0.08, "B03": 0.09, "B04": 0.10, "B08": 0.12, "B11": 0.14, "B12": 0.12}
    cls, _, _ = classify_region(props({k: v * 2 for k, v in dark.items()}, dark, mndwi=0.16, brightness=-0.08))
    assert cls != "water"


def test_earthworks_and_other():
    assert classify_region(props(bsi=0.1, rectangularity=0.5, solidity=0.6))[0] == "earthworks"
    cls, conf, ev = classify_region(props())
    assert cls == "other" and ev["rule"] == "other.unexplained"


def test_surface_change_on_apron():
    apron = RegionContext(feature="apron A", role="apron", inside_fraction=1.0, touches=True, paved_fraction=1.0)
    cls, _, ev = classify_region(props(brightness=0.05), apron)
    assert cls == "surface_change" and ev["context"]["feature"] == "apron A"


def test_confidence_grows_with_evidence():
    weak = classify_region(props(brightness=-0.035, elongation=6.0), RUNWAY)[1]
    strong = classify_region(props(brightness=-0.12, elongation=6.0), RUNWAY)[1]
    assert strong > weak


def test_named_strategies_and_callables():
    assert "rules" in CLASSIFIERS
    with pytest.raises(ValueError, match="rules"):
        classify_region(props(), method="deep-learning")

    def always_water(p, ctx, *, thresholds=None):
        return "water", 0.4, {"rule": "custom"}

    assert classify_region(props(), method=always_water) == ("water", 0.4, {"rule": "custom"})

    def bad(p, ctx, *, thresholds=None):
        return "aircraft", 1.0, {}

    with pytest.raises(ValueError, match="aircraft"):
        classify_region(props(), method=bad)


def test_angles():
    assert angle_difference(5, 175) == pytest.approx(10)
    assert angle_difference(0, 90) == pytest.approx(90)
    assert feature_axis_deg(rotated_rect(0, 0, 1000, 40, 30)) == pytest.approx(30)
    assert feature_axis_deg(rotated_rect(0, 0, 1000, 40, 150)) == pytest.approx(150)
    assert feature_axis_deg(LineString([(0, 0), (10, 0)])) == pytest.approx(90)
    assert feature_axis_deg(LineString([(0, 0), (0, -10)])) == pytest.approx(0)


def test_feature_context_on_planted_site(site, grid, runway_utm):
    """Planted regions: 1 inside the runway, 2 inside apron A, 3 on taxiway T1 (a line feature),
    4 in open desert, 5 just beside the runway edge (within 20 m, outside the polygon)."""
    masks = [
        burn(rotated_rect(*on_axis(0), 300, 30, RUNWAY_AZ), grid) & burn(runway_utm, grid),
        burn(box(CX - 800, CY - 50, CX - 700, CY + 10), grid),
        burn(box(CX - 100, CY - 905, CX + 100, CY - 895), grid),
        burn(box(CX + 700, CY + 900, CX + 800, CY + 960), grid),
        burn(rotated_rect(*np.add(on_axis(400), (36 * 0.866, -36 * 0.5)), 200, 20, RUNWAY_AZ), grid) & ~burn(runway_utm, grid),
    ]
    labels = np.zeros(grid.shape, np.int32)
    for i, m in enumerate(masks, 1):
        assert m.any()
        labels[m] = i
    ctx = feature_context(labels, grid, site, touch_m=20)
    assert ctx[1].feature == "runway 03/21" and ctx[1].inside_fraction > 0.95 and ctx[1].role == "runway"
    assert ctx[1].feature_axis_deg == pytest.approx(RUNWAY_AZ, abs=0.5)
    assert ctx[1].surface == "asphalt"
    assert ctx[2].feature == "apron A" and ctx[2].paved_fraction == pytest.approx(1.0)
    assert ctx[3].feature == "taxiway T1" and ctx[3].feature_axis_deg == pytest.approx(90, abs=0.5)
    assert ctx[4].feature is None and ctx[4].paved_fraction == 0 and not ctx[4].touches
    assert ctx[5].feature == "runway 03/21" and ctx[5].inside_fraction == 0.0 and ctx[5].touches
    assert all(c.aoi_kind == "airbase" for c in ctx.values())
    assert feature_context(np.zeros(grid.shape, np.int32), grid, site) == {}


def test_runway_surface_agreement_raises_confidence():
    """Darkening on an asphalt runway (fresh asphalt) is more credible than on a concrete one."""
    asphalt = RUNWAY
    concrete = RegionContext(**{**RUNWAY.__dict__, "surface": "concrete"})
    p = props(brightness=-0.05, elongation=6.0)
    a = classify_region(p, asphalt)
    c = classify_region(p, concrete)
    assert a[0] == c[0] == "runway_repair"
    assert a[1] > c[1]
    assert a[2]["context"]["surface"] == "asphalt"


SEA = {"B02": 0.06, "B03": 0.05, "B04": 0.03, "B08": 0.02, "B11": 0.01, "B12": 0.01}
CONCRETE = {"B02": 0.28, "B03": 0.30, "B04": 0.31, "B08": 0.33, "B11": 0.34, "B12": 0.30}
FILL = {"B02": 0.17, "B03": 0.23, "B04": 0.29, "B08": 0.33, "B11": 0.45, "B12": 0.42}


def test_water_replaced_by_land_is_quay_or_reclamation():
    """Sea before; after a rectangular concrete surface (a new quay) or bare fill (land
    reclamation): classified by what replaced the water, not as water."""
    quay = classify_region(props(SEA, CONCRETE, mndwi=-0.8, brightness=0.25, ndvi=0.4, dbi=-1.2))
    assert quay[0] == "new_structure" and quay[2]["rule"] == "new_structure.on_water"
    fill = classify_region(props(SEA, FILL, mndwi=-0.9, brightness=0.2, ndvi=0.5, bsi=0.35, rectangularity=0.7, solidity=0.9))
    assert fill[0] == "earthworks" and fill[2]["rule"] == "earthworks.reclamation"
    # a ragged concrete-looking patch is fill too, and flooding stays water
    ragged = classify_region(props(SEA, CONCRETE, mndwi=-0.8, brightness=0.25, rectangularity=0.4, solidity=0.6))
    assert ragged[0] == "earthworks"
    assert classify_region(props(FILL, SEA, mndwi=0.9, brightness=-0.2))[2]["rule"] == "water.appeared"


def test_water_filled_by_a_thin_quay_even_when_ndvi_moves_more():
    """Sea has a negative NDVI, so a concrete quay raises NDVI (+0.43) more than it lowers MNDWI
    (-0.35): the water-to-land transition still decides, and a 30 m wide staircase shape
    (rectangularity 0.6) is a quay, not an unexplained change."""
    p = props(SEA, CONCRETE, mndwi=-0.35, ndvi=0.43, brightness=0.17, dbi=-0.86,
              rectangularity=0.59, solidity=0.83, elongation=2.0)
    p["width_m"] = 31.0
    cls, _, ev = classify_region(p)
    assert cls == "new_structure" and ev["rule"] == "new_structure.on_water"


def test_bright_roof_is_neither_water_nor_vegetation_loss():
    """Sand -> bright roof also raises MNDWI (+0.33) and lowers NDVI (-0.13), as measured on the
    simulated archive; neither makes it water (the roof is bright in the NIR) nor vegetation
    loss (sand was never vegetated)."""
    cls, _, ev = classify_region(props(SAND, ROOF, brightness=0.18, mndwi=0.33, ndvi=-0.13, bsi=-0.13, dbi=0.55))
    assert cls == "new_structure", ev
    # a field replaced by bright sand is no vegetation change (replaced_vegetation, the default);
    # the NDVI-only rule called it one
    field = {**SAND, "B04": 0.06, "B08": 0.40}
    assert classify_region(props(field, SAND, ndvi=-0.5, brightness=0.15))[2]["rule"] == "other.vegetation_replaced"
    ndvi_only = ClassifyThresholds(replaced_vegetation=False)
    assert classify_region(props(field, SAND, ndvi=-0.5, brightness=0.15), thresholds=ndvi_only)[2]["rule"] == "vegetation.loss"


def test_dark_built_up_patch_is_new_structure_but_shadow_is_not():
    """Bare soil -> a dark roof or fresh paving: darker, DBI up, SWIR/visible down to a built-up
    level (measured like this on OSCD construction sites). A uniform darkening (shadow-like, no
    signature change) stays unexplained."""
    soil = {"B02": 0.10, "B03": 0.13, "B04": 0.16, "B08": 0.22, "B11": 0.22, "B12": 0.18}
    roof = {"B02": 0.07, "B03": 0.08, "B04": 0.085, "B08": 0.10, "B11": 0.09, "B12": 0.08}
    cls, _, ev = classify_region(props(soil, roof, brightness=-0.05, dbi=0.2, bsi=-0.04))
    assert (cls, ev["rule"]) == ("new_structure", "new_structure.dark_builtup")
    shade = {k: v * 0.7 for k, v in soil.items()}
    assert classify_region(props(soil, shade, brightness=-0.04))[0] == "other"


def test_water_both_dates():
    """Region means: a river turning turbid (B08 up to 0.16) is water on both dates; a shaded
    winter street that becomes a sunlit one (MNDWI > 0 on both dates, but B11 0.06 -> 0.15) is
    not; nor is water filled with land, nor a region without bands."""
    from pipeline.objects.classify import water_both_dates

    def props(before, after):
        bands = ("B02", "B03", "B04", "B08", "B11", "B12")
        return {**{f"before_{b}": v for b, v in zip(bands, before)}, **{f"after_{b}": v for b, v in zip(bands, after)}}

    river = props((0.107, 0.102, 0.084, 0.039, 0.020, 0.016), (0.162, 0.185, 0.218, 0.158, 0.036, 0.027))
    street = props((0.139, 0.102, 0.084, 0.070, 0.062, 0.052), (0.197, 0.181, 0.156, 0.148, 0.147, 0.140))
    filled = props((0.06, 0.07, 0.05, 0.03, 0.01, 0.01), (0.20, 0.28, 0.36, 0.40, 0.52, 0.45))
    assert water_both_dates(river)
    assert not water_both_dates(street)
    assert not water_both_dates(filled)
    assert not water_both_dates({"area_m2": 100.0})
    # the threshold is the one named
    assert not water_both_dates(river, ClassifyThresholds(water_swir_max=0.03))


def test_vegetation_cleared_to_bare_soil_is_earthworks_not_vegetation():
    """A field (NDVI 0.74) scraped to sand (NDVI 0.05) with BSI up is ground work; a field that
    only thins (NDVI 0.74 -> 0.45) stays a vegetation change, and so does growth."""
    field = {**SAND, "B04": 0.06, "B08": 0.40}
    cls, _, ev = classify_region(props(field, SAND, ndvi=-0.69, bsi=0.12, brightness=0.15, rectangularity=0.5, solidity=0.6))
    assert cls == "earthworks" and ev["rule"] == "earthworks.cleared", ev
    thinner = {**SAND, "B04": 0.12, "B08": 0.32}
    assert classify_region(props(field, thinner, ndvi=-0.29, bsi=0.12))[2]["rule"] == "vegetation.loss"
    assert classify_region(props(SAND, field, ndvi=0.69, bsi=-0.12))[2]["rule"] == "vegetation.growth"


def test_vegetation_replaced_by_a_brighter_surface_is_not_a_vegetation_change():
    """A crop (NDVI 0.82) built over with roofs and gardens (NDVI 0.43, visible 0.047 brighter):
    not a vegetation change but vegetation replaced; with BSI up, ground work (earthworks.cleared,
    though the after NDVI is above the bare-soil bar of the ``cleared`` rule); the same NDVI loss
    with a darkening visible stays a vegetation loss, and so does everything with the option off."""
    crop = {"B02": 0.03, "B03": 0.06, "B04": 0.04, "B08": 0.40, "B11": 0.22, "B12": 0.10}
    built = {"B02": 0.08, "B03": 0.09, "B04": 0.10, "B08": 0.25, "B11": 0.20, "B12": 0.15}
    kw = dict(ndvi=-0.39, rectangularity=0.5, solidity=0.6)
    cls, conf, ev = classify_region(props(crop, built, brightness=0.047, **kw))
    assert (cls, ev["rule"]) == ("other", "other.vegetation_replaced"), ev
    assert "vegetation replaced" in ev["reason"] and 0.4 <= conf <= 0.6
    cls, _, ev = classify_region(props(crop, built, brightness=0.047, bsi=0.2, **kw))
    assert ev["rule"] == "earthworks.cleared", ev
    assert classify_region(props(crop, built, brightness=-0.01, **kw))[2]["rule"] == "vegetation.loss"
    off = ClassifyThresholds(replaced_vegetation=False)
    for extra in ({}, {"bsi": 0.2}):
        assert classify_region(props(crop, built, brightness=0.047, **kw, **extra), thresholds=off)[2]["rule"] == "vegetation.loss"


def test_water_side_must_be_dark_in_the_swir():
    """Region means measured on a real OSCD pair (nantes): a lighter surface replaced by a dark
    roof, MNDWI 0.03 and B08 0.13 after (it passes MNDWI > 0 with a dark NIR) but B11 0.11, which
    open water never reaches: a dark built-up surface, not water appearing. Real water
    (B11 0.02) still is; with ``water_swir_dark=False`` the roof is called water again."""
    bands = ("B02", "B03", "B04", "B08", "B11", "B12")
    before = dict(zip(bands, (0.168, 0.163, 0.182, 0.189, 0.218, 0.182)))
    roof = dict(zip(bands, (0.138, 0.118, 0.115, 0.129, 0.110, 0.086)))
    water = dict(zip(bands, (0.09, 0.08, 0.06, 0.04, 0.02, 0.015)))
    kw = dict(brightness=-0.047, ndvi=0.011, mndwi=0.184, bsi=-0.143, dbi=0.272, rectangularity=0.74, solidity=0.906, elongation=1.4)
    cls, _, ev = classify_region(props(before, roof, **kw))
    assert cls != "water" and ev["rule"] == "new_structure.dark_builtup", ev
    assert classify_region(props(before, water, brightness=-0.1, ndvi=-0.3, mndwi=0.8))[2]["rule"] == "water.appeared"
    old = ClassifyThresholds(water_swir_dark=False)
    assert classify_region(props(before, roof, **kw), thresholds=old)[2]["rule"] == "water.appeared"
