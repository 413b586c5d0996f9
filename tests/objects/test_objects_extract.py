"""extract_objects end to end on planted change scenes of the desert airbase fixture.

Each test plants one or a few changes with the spectral behaviour of a real change (mean index
deltas and before/after spectra) and checks the class, the feature, the polygon and the class
map; expectations come from the planting, never from running the code.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import shapely
from shapely.geometry import Point, box
from skimage.draw import ellipse

from objects_planted import CX, CY, RUNWAY_AZ, Scene, burn, on_axis, rc_of, rotated_rect
from pipeline.errors import PipelineError
from pipeline.objects import CLASS_CODES, ObjectParams, extract_objects


def _only(objects, cls=None):
    assert len(objects) == 1, [(o.cls, o.area_m2, o.evidence.get("rule")) for o in objects]
    if cls is not None:
        assert objects[0].cls == cls, objects[0].evidence
    return objects[0]


def test_dark_strip_on_runway_is_runway_repair(scene, site, grid, runway_utm):
    """Planted: a 600 x 40 m strip inside runway 03/21, along its axis, darker by 0.08
    reflectance (fresh asphalt), NDVI unchanged, MNDWI slightly up (dark surfaces do that)."""
    strip = burn(rotated_rect(*on_axis(100), 600, 40, RUNWAY_AZ), grid) & burn(runway_utm, grid)
    scene.plant(strip, brightness=-0.08, mndwi=0.06, bsi=-0.02, dbi=0.01)
    objects, class_map = scene.extract(site)
    obj = _only(objects, "runway_repair")
    assert obj.feature == "runway 03/21"
    assert obj.evidence["rule"] == "runway_repair.darkening"
    assert obj.evidence["measurements"]["angle_to_feature_deg"] <= 10
    assert obj.confidence >= 0.7
    assert obj.status == "detected" and obj.before.startswith("2024-01-01") and obj.after.startswith("2024-06-01")
    # class map: the strip's surviving pixels carry the code, nothing else
    assert set(np.unique(class_map[strip])) <= {CLASS_CODES["runway_repair"], 0}
    assert (class_map == CLASS_CODES["runway_repair"]).sum() >= 0.9 * strip.sum()
    assert (class_map[~strip] == 0).all()
    json.dumps(obj.evidence)  # JSON-able


def test_bright_strip_on_runway_is_new_concrete(scene, site, grid, runway_utm):
    """Planted: the same strip brighter by 0.1 (new concrete)."""
    strip = burn(rotated_rect(*on_axis(-200), 500, 40, RUNWAY_AZ), grid) & burn(runway_utm, grid)
    scene.plant(strip, brightness=0.10, dbi=0.03)
    obj = _only(scene.extract(site)[0], "runway_repair")
    assert obj.evidence["rule"] == "runway_repair.brightening"
    assert obj.feature == "runway 03/21"


def test_aligned_strip_along_runway_edge_is_runway_repair(scene, site, grid, runway_utm):
    """Planted: a 400 x 30 m strip on the shoulder, just outside runway 03/21 (touching it)
    and parallel to it, darkened by 0.06."""
    off = 45 / 2 + 15 + 1  # centre of a 30 m strip beside the edge
    a = math.radians(RUNWAY_AZ)
    cx, cy = CX + off * math.cos(a), CY - off * math.sin(a)
    strip = burn(rotated_rect(cx, cy, 400, 30, RUNWAY_AZ), grid) & ~burn(runway_utm, grid)
    scene.plant(strip, brightness=-0.06)
    obj = _only(scene.extract(site)[0], "runway_repair")
    assert obj.evidence["context"]["feature"] == "runway 03/21"
    assert obj.evidence["measurements"]["inside_fraction"] < 0.5


def test_perpendicular_strip_beside_runway_is_not_runway_repair(scene, site, grid, runway_utm):
    """Planted: a 300 x 40 m strip across the runway's axis that only touches the runway edge,
    darkened by 0.06: not aligned, not inside, so not a runway repair."""
    a = math.radians(RUNWAY_AZ)
    off = 45 / 2 + 150 + 5
    cx, cy = CX + off * math.cos(a), CY - off * math.sin(a)
    strip = burn(rotated_rect(cx, cy, 300, 40, RUNWAY_AZ + 90), grid) & ~burn(runway_utm.buffer(5), grid)
    scene.plant(strip, brightness=-0.06)
    obj = _only(scene.extract(site)[0])
    assert obj.cls != "runway_repair"
    assert obj.feature == "runway 03/21"  # it does touch it


def test_bright_rectangle_on_sand_is_new_structure(scene, site, grid):
    """Planted: a 120 x 80 m rectangle 1 km north-east of the runway, sand before, a bright
    roof after (+0.1 brightness, DBI up, BSI down, SWIR/visible ratio falling from 1.9 to 1.0,
    NDVI falling by 0.13 and MNDWI rising by 0.33 as the sand's faint red edge and high SWIR go)."""
    rect = burn(box(CX + 700, CY + 900, CX + 820, CY + 980), grid)
    scene.plant(rect, brightness=0.10, dbi=0.5, bsi=-0.12, ndbi=0.03, ndvi=-0.13, mndwi=0.33, before=Scene.SAND, after=Scene.ROOF)
    objects, class_map = scene.extract(site)
    obj = _only(objects, "new_structure")
    assert obj.feature is None
    assert obj.evidence["measurements"]["d_swir_vis"] < -0.5
    assert obj.evidence["measurements"]["rectangularity"] > 0.9
    assert (class_map[rect] == CLASS_CODES["new_structure"]).mean() > 0.9


def test_dark_rectangle_back_to_sand_is_removed_structure(scene, site, grid):
    """Planted: the reverse of the new structure: a roof before, sand after."""
    rect = burn(box(CX + 700, CY + 900, CX + 820, CY + 980), grid)
    scene.plant(rect, brightness=-0.10, dbi=-0.08, bsi=0.06, before=Scene.ROOF, after=Scene.SAND)
    obj = _only(scene.extract(site)[0], "removed_structure")
    assert obj.evidence["measurements"]["d_swir_vis"] > 0.5


def test_bright_sand_drift_is_not_new_structure(scene, site, grid):
    """Desert trap: a compact patch that brightens and whose NDBI rises (sand looks built-up),
    but with the sand signature (BSI up, SWIR/visible up): must not be a new structure."""
    rect = burn(box(CX + 700, CY + 900, CX + 820, CY + 980), grid)
    brighter_sand = tuple(v * 1.15 for v in Scene.SAND)
    scene.plant(rect, brightness=0.05, ndbi=0.08, bsi=0.06, dbi=-0.03, before=Scene.SOIL, after=brighter_sand)
    obj = _only(scene.extract(site)[0])
    assert obj.cls != "new_structure"


def test_irregular_soil_patch_is_earthworks(scene, site, grid):
    """Planted: an irregular patch (union of three overlapping discs, 250 m across) 1 km south-east
    of the centre where BSI rises 0.12, SWIR rises and brightness changes by +0.04."""
    blob = shapely.union_all([Point(CX + 900, CY - 500).buffer(90), Point(CX + 1000, CY - 420).buffer(60), Point(CX + 820, CY - 600).buffer(50)])
    patch = burn(blob, grid)
    scene.plant(patch, bsi=0.12, brightness=0.04, dbi=-0.05, before=Scene.SAND, after=tuple(v + d for v, d in zip(Scene.SOIL, (0, 0, 0, 0, 0.06, 0.05))))
    obj = _only(scene.extract(site)[0], "earthworks")
    assert obj.evidence["rule"] == "earthworks.bare_soil"
    assert obj.feature is None


def test_ndvi_blob_is_vegetation(scene, site, grid):
    """Planted: an elliptic blob 200 x 140 m where NDVI rises by 0.5 (sand to an irrigated field)."""
    r0, c0 = rc_of(grid, CX - 900, CY + 900)
    rr, cc = ellipse(r0, c0, 10, 7, shape=grid.shape)
    blob = np.zeros(grid.shape, bool)
    blob[rr, cc] = True
    field = (0.05, 0.09, 0.06, 0.40, 0.22, 0.12)
    scene.plant(blob, ndvi=0.5, brightness=-0.18, bsi=-0.2, before=Scene.SAND, after=field)
    obj = _only(scene.extract(site)[0], "vegetation")
    assert obj.evidence["rule"] == "vegetation.growth"


def test_planting_next_to_a_development_is_landscaping_not_vegetation(scene, site, grid):
    """Planted: a new roof (the structure of the test above) with a strip of new lawn 30 m east of
    it (sand to grass, NDVI +0.5), and a second, like field 600 m away from any development. The
    lawn is ``other.landscaping`` naming the structure and the gap; the far field stays
    ``vegetation``; with ``landscaping_m=None`` both are vegetation."""
    from pipeline.objects import ObjectParams

    roof = burn(box(CX + 700, CY + 900, CX + 820, CY + 980), grid)
    scene.plant(roof, brightness=0.10, dbi=0.5, bsi=-0.12, ndbi=0.03, ndvi=-0.13, mndwi=0.33, before=Scene.SAND, after=Scene.ROOF)
    grass = (0.05, 0.09, 0.06, 0.40, 0.22, 0.12)
    lawn = burn(box(CX + 850, CY + 880, CX + 930, CY + 1000), grid)
    far = burn(box(CX - 900, CY + 850, CX - 800, CY + 950), grid)
    for patch in (lawn, far):
        scene.plant(patch, ndvi=0.5, brightness=-0.18, bsi=-0.2, before=Scene.SAND, after=grass)
    objects, class_map = scene.extract(site)
    by_rule = {o.evidence["rule"]: o for o in objects}
    assert sorted(by_rule) == ["new_structure.bright_compact", "other.landscaping", "vegetation.growth"], sorted(by_rule)
    planted = by_rule["other.landscaping"]
    assert planted.cls == "other" and planted.evidence["development"]["id"] == by_rule["new_structure.bright_compact"].id
    assert 20 <= planted.evidence["measurements"]["development_distance_m"] <= 40  # the 30 m gap, outlines simplified
    assert (class_map[lawn] == CLASS_CODES["other"]).mean() > 0.9
    assert (class_map[far] == CLASS_CODES["vegetation"]).mean() > 0.9
    objects, class_map = scene.extract(site, params=ObjectParams(landscaping_m=None))
    assert sorted(o.cls for o in objects) == ["new_structure", "vegetation", "vegetation"]
    with pytest.raises(PipelineError, match="landscaping_m"):
        ObjectParams(landscaping_m=-1)


def test_water_blob_is_water(scene, site, grid):
    """Planted: a 150 m disc flooded: MNDWI +0.6, spectra from sand to water."""
    patch = burn(Point(CX - 900, CY - 400).buffer(75), grid)
    water = (0.06, 0.07, 0.05, 0.03, 0.01, 0.01)
    scene.plant(patch, mndwi=0.6, brightness=-0.2, ndvi=-0.1, before=Scene.SAND, after=water)
    obj = _only(scene.extract(site)[0], "water")
    assert obj.evidence["rule"] == "water.appeared"


def test_change_on_apron_is_surface_change(scene, site, grid):
    """Planted: a 100 x 60 m patch inside apron A brightened by 0.05 (resurfacing)."""
    patch = burn(box(CX - 800, CY - 50, CX - 700, CY + 10), grid)
    scene.plant(patch, brightness=0.05)
    obj = _only(scene.extract(site)[0], "surface_change")
    assert obj.feature == "apron A"


def test_taxiway_line_feature_gets_repair(scene, site, grid):
    """Planted: a 500 m stretch of taxiway T1 (a LineString with width_m 20) darkened by 0.07,
    planted 30 m wide so that it survives the opening."""
    patch = burn(box(CX - 200, CY - 915, CX + 300, CY - 885), grid)
    scene.plant(patch, brightness=-0.07)
    obj = _only(scene.extract(site)[0], "runway_repair")
    assert obj.feature == "taxiway T1"


def test_speckle_below_min_area_is_removed(scene, site, grid):
    """Planted: 30 isolated pixels, ten 1 x 2 pairs, a 1-pixel-wide 20-pixel line and one
    6 x 6 block; only the block survives (min area 400 m^2, opening radius 1)."""
    rng = np.random.default_rng(3)
    h, w = grid.shape
    speck = np.zeros(grid.shape, bool)
    for r, c in zip(rng.integers(20, h - 20, 30), rng.integers(20, w - 20, 30)):
        speck[r, c] = True
    for r, c in zip(rng.integers(20, h - 20, 10), rng.integers(20, w - 20, 10)):
        speck[r, c : c + 2] = True
    speck[40, 40:60] = True
    block = np.zeros(grid.shape, bool)
    block[200:206, 250:256] = True
    speck[190:216, 240:266] = False  # keep the speckle apart from the block
    scene.plant(speck, brightness=0.1)
    scene.plant(block, brightness=0.1)
    objects, class_map = scene.extract(site)
    assert len(objects) == 1
    r, c = np.nonzero(class_map == class_map[203, 253])
    assert class_map[203, 253] != 0
    assert r.min() >= 200 and r.max() <= 205 and c.min() >= 250 and c.max() <= 255
    assert (class_map[speck & ~block] == 0).all()
    # min_area 0 and no opening keep every planted component
    objects, _ = scene.extract(site, params=ObjectParams(min_area_m2=0, opening_radius_px=0))
    from skimage.measure import label

    assert len(objects) == label(scene.mask, connectivity=2).max()


def test_polygons_valid_in_grid_crs_with_pixel_area(scene, site, grid, runway_utm):
    """Planted: runway strip, new structure and earthworks together; each polygon is valid, in
    the grid CRS (inside the grid bounds, over its own pixels) and its area matches the pixel
    count of its class-map region (exactly without simplification)."""
    strip = burn(rotated_rect(*on_axis(100), 600, 40, RUNWAY_AZ), grid) & burn(runway_utm, grid)
    scene.plant(strip, brightness=-0.08)
    rect = burn(box(CX + 700, CY + 900, CX + 820, CY + 980), grid)
    scene.plant(rect, brightness=0.10, dbi=0.08, bsi=-0.06, before=Scene.SAND, after=Scene.ROOF)
    blob = burn(shapely.union_all([Point(CX + 900, CY - 500).buffer(90), Point(CX + 1000, CY - 420).buffer(60)]), grid)
    scene.plant(blob, bsi=0.12, brightness=0.04)
    gx0, gy0, gx1, gy1 = grid.bounds
    for simplify in (0.0, 5.0):
        objects, class_map = scene.extract(site, params=ObjectParams(simplify_m=simplify))
        assert sorted(o.cls for o in objects) == ["earthworks", "new_structure", "runway_repair"]
        ids = [o.id for o in objects]
        assert len(set(ids)) == 3 and all(i.startswith("test-base-") for i in ids)
        for o in objects:
            json.dumps(o.evidence)
            g = o.geometry
            assert g.is_valid and not g.is_empty and g.geom_type in ("Polygon", "MultiPolygon")
            x0, y0, x1, y1 = g.bounds
            assert gx0 <= x0 and x1 <= gx1 and gy0 <= y0 and y1 <= gy1
            code = CLASS_CODES[o.cls]
            n_px = int((class_map == code).sum())
            assert o.area_m2 == pytest.approx(n_px * 100.0)
            if simplify == 0:
                assert g.area == pytest.approx(n_px * 100.0)
            else:
                assert g.area == pytest.approx(n_px * 100.0, rel=0.08)
            # the polygon covers the centres of its pixels (independent check via grid.xy)
            rr, cc = np.nonzero(class_map == code)
            xs, ys = grid.xy(rr, cc)
            inside = shapely.contains_xy(g, xs, ys).mean()
            assert inside > (0.999 if simplify == 0 else 0.9)


def test_invalid_pixels_are_255_and_ignored(scene, site, grid):
    """Planted: a bright structure half of which lies in a no-data band (valid False)."""
    rect = burn(box(CX + 700, CY + 900, CX + 820, CY + 980), grid)
    scene.plant(rect, brightness=0.10, dbi=0.08, bsi=-0.06, before=Scene.SAND, after=Scene.ROOF)
    r, c = rc_of(grid, CX + 760, CY + 940)
    scene.valid[:, c:] = False
    objects, class_map = scene.extract(site)
    assert (class_map[:, c:] == 255).all()
    assert (class_map[:, :c][~rect[:, :c]] == 0).all()
    obj = _only(objects)
    assert obj.area_m2 <= (rect[:, :c].sum()) * 100


def test_no_change_gives_no_objects(scene, site, grid):
    """Planted: nothing."""
    objects, class_map = scene.extract(site)
    assert objects == []
    assert class_map.dtype == np.uint8 and (class_map == 0).all()


def test_bad_inputs_raise_clear_errors(scene, site, grid):
    with pytest.raises(PipelineError, match="change_mask has shape"):
        extract_objects(scene.mask[:-1], scene.magnitude, scene.deltas, grid, site, before="a", after="b")
    with pytest.raises(PipelineError, match="bool"):
        extract_objects(scene.mask.astype(np.uint8), scene.magnitude, scene.deltas, grid, site, before="a", after="b")
    with pytest.raises(ValueError, match="rules"):
        ObjectParams(classifier="nope")
    with pytest.raises(PipelineError, match="min_area_m2"):
        ObjectParams(min_area_m2=-1)
    with pytest.raises(PipelineError, match="bands"):
        extract_objects(scene.mask, scene.magnitude, scene.deltas, grid, site, before="a", after="b", before_img=scene.before)


def test_missing_deltas_still_classify(scene, site, grid, runway_utm):
    """Only the brightness delta given (no NDVI, BSI ...) and no images: the runway strip is
    still a runway repair, and a bright rectangle without built-up evidence is not a structure."""
    strip = burn(rotated_rect(*on_axis(100), 600, 40, RUNWAY_AZ), grid) & burn(runway_utm, grid)
    scene.plant(strip, brightness=-0.08)
    rect = burn(box(CX + 700, CY + 900, CX + 820, CY + 980), grid)
    scene.plant(rect, brightness=0.10)
    objects, _ = extract_objects(
        scene.mask, scene.magnitude, {"brightness": scene.deltas["brightness"]}, grid, site, before="a", after="b"
    )
    by_feature = {o.feature: o for o in objects}
    assert by_feature["runway 03/21"].cls == "runway_repair"
    assert by_feature[None].cls == "other"


def test_real_aoi_file_runway_names():
    """Planted on the project's Benina AOI (aois/benina.geojson, two parallel runways 220 m
    apart): a 700 m strip in the middle of each runway, one darkened, one brightened. Each object
    names its own runway."""
    from pipeline.aoi import load_aoi

    aoi = load_aoi("benina")
    grid = aoi.grid()
    scene = Scene(grid)
    for (f, geom), sign in zip(aoi.features_in(grid.epsg, roles=("runway",)), (-1, 1)):
        part = geom.intersection(geom.centroid.buffer(350)).buffer(-5)
        assert part.area > 20000  # about 700 m x 35 m
        scene.plant(burn(part, grid), brightness=sign * 0.08)
    objects, _ = scene.extract(aoi)
    got = sorted((o.feature, o.cls, o.evidence["rule"]) for o in objects)
    assert got == [
        ("runway 15L/33R", "runway_repair", "runway_repair.darkening"),
        ("runway 15R/33L", "runway_repair", "runway_repair.brightening"),
    ]


def test_water_colour_change_is_dropped(scene, site, grid):
    """Planted: a 150 m disc of water that turned turbid (MNDWI stays > 0, B08 <= 0.15, B11 <=
    0.05 on both dates; brightness +0.12) and, apart, a 150 m disc flooded (sand -> water).
    With ``drop_water_colour`` only the flood is an object and the turbid disc is no change in
    the class map; without it both are objects."""
    clear_water = (0.06, 0.07, 0.05, 0.03, 0.01, 0.01)
    turbid_water = (0.16, 0.18, 0.21, 0.13, 0.035, 0.03)  # measured on a river reach, OSCD bordeaux
    turbid = burn(Point(CX + 900, CY + 400).buffer(75), grid)
    flood = burn(Point(CX - 900, CY - 400).buffer(75), grid)
    scene.plant(turbid, brightness=0.12, mndwi=0.0, ndvi=0.1, before=clear_water, after=turbid_water)
    scene.plant(flood, mndwi=0.6, brightness=-0.2, ndvi=-0.1, before=Scene.SAND, after=clear_water)
    objects, class_map = scene.extract(site, params=ObjectParams(drop_water_colour=True))
    obj = _only(objects, "water")
    assert obj.evidence["rule"] == "water.appeared"
    assert (class_map[turbid] == 0).all()
    assert (class_map[flood] == CLASS_CODES["water"]).mean() > 0.9
    objects, class_map = scene.extract(site, params=ObjectParams(drop_water_colour=False))
    assert len(objects) == 2
    assert (class_map[turbid] > 0).mean() > 0.9
