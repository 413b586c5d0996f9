"""changes.geojson: RFC 7946 (lon/lat, right-hand rule, no crs, <= 7 decimals, valid) and the schema."""

from __future__ import annotations

import json
import math

import jsonschema
import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Transformer
from shapely.geometry import shape
from shapely.ops import transform as shp_transform

from pipeline.objects.model import CHANGE_CLASSES, ChangeObject
from pipeline.outputs.geojson import DECIMALS, load_schema, to_lonlat_geometry, write_geojson

from .conftest import EPSG, RUNWAY_PX, px_box


def _signed_area(ring) -> float:
    """Shoelace area: > 0 for counter-clockwise rings in lon/lat (x east, y north)."""
    xs = np.array([p[0] for p in ring], dtype=float)
    ys = np.array([p[1] for p in ring], dtype=float)
    return 0.5 * float(np.sum(xs[:-1] * ys[1:] - xs[1:] * ys[:-1]))


def _rings(geom: dict):
    polys = [geom["coordinates"]] if geom["type"] == "Polygon" else geom["coordinates"]
    for poly in polys:
        yield "exterior", poly[0]
        for hole in poly[1:]:
            yield "hole", hole


def _check_rfc7946_geometry(geom: dict) -> None:
    assert geom["type"] in ("Polygon", "MultiPolygon")
    for kind, ring in _rings(geom):
        assert ring[0] == ring[-1] and len(ring) >= 4
        area = _signed_area(ring)
        assert (area > 0) if kind == "exterior" else (area < 0), f"{kind} ring winds the wrong way"
        for x, y in ring:
            assert -180 <= x <= 180 and -90 <= y <= 90
    assert shape(geom).is_valid


@pytest.fixture(scope="module")
def doc(written):
    return json.loads(written[0]["changes.geojson"].read_text())


@pytest.fixture(scope="module")
def raw_numbers(written):
    """Every coordinate number exactly as written in the file (strings)."""
    d = json.loads(written[0]["changes.geojson"].read_text(), parse_float=lambda s: s)
    out = []
    for f in d["features"]:
        for _, ring in _rings(f["geometry"]):
            for pt in ring:
                out += [str(v) for v in pt]
    return out


def test_top_level_is_plain_rfc7946(doc):
    assert set(doc) == {"type", "features"}  # no crs, no bbox in a foreign projection
    assert doc["type"] == "FeatureCollection"
    assert [f["id"] for f in doc["features"]] == ["obj-hangar", "obj-runway"]
    for f in doc["features"]:
        assert set(f) == {"type", "id", "geometry", "properties"} and f["type"] == "Feature"
        assert "crs" not in f["geometry"]


def test_geometries_follow_right_hand_rule_and_stay_valid(doc):
    for f in doc["features"]:
        _check_rfc7946_geometry(f["geometry"])
    hangar = next(f for f in doc["features"] if f["id"] == "obj-hangar")
    assert len(hangar["geometry"]["coordinates"]) == 2  # exterior + the planted hole


def test_coordinates_have_at_most_seven_decimals(raw_numbers):
    assert raw_numbers
    for s in raw_numbers:
        assert "e" not in s.lower(), s
        frac = s.split(".")[1] if "." in s else ""
        assert len(frac) <= DECIMALS, s


def test_coordinates_are_lonlat_of_the_utm_corners(doc):
    """Independent oracle: pyproj directly on the runway box corners."""
    tr = Transformer.from_crs(EPSG, 4326, always_xy=True)
    box = px_box(*RUNWAY_PX)
    expected = sorted(tuple(round(v, 7) for v in tr.transform(x, y)) for x, y in list(box.exterior.coords)[:-1])
    runway = next(f for f in doc["features"] if f["id"] == "obj-runway")
    got = sorted(tuple(p) for p in runway["geometry"]["coordinates"][0][:-1])
    assert len(got) == 4
    for (gx, gy), (ex, ey) in zip(got, expected):
        assert gx == pytest.approx(ex, abs=2e-7) and gy == pytest.approx(ey, abs=2e-7)
    cx, cy = tr.transform(*box.centroid.coords[0])
    assert runway["properties"]["centroid_lon"] == pytest.approx(cx, abs=1e-6)
    assert runway["properties"]["centroid_lat"] == pytest.approx(cy, abs=1e-6)


def test_properties_match_schema_and_objects(doc, result):
    schema = load_schema()
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    for f in doc["features"]:
        validator.validate(f["properties"])
    by_id = {o.id: o for o in result.objects}
    for f in doc["features"]:
        p, o = f["properties"], by_id[f["id"]]
        assert (p["class"], p["aoi"], p["before"], p["after"], p["feature"], p["status"]) == (
            o.cls, "test-base", o.before, o.after, o.feature, o.status)  # fmt: skip
        assert p["confidence"] == pytest.approx(o.confidence) and p["area_m2"] == pytest.approx(o.area_m2, abs=0.1)
    runway = next(f["properties"] for f in doc["features"] if f["id"] == "obj-runway")
    assert runway["evidence"]["bad"] is None  # NaN is not JSON: written as null
    assert runway["evidence"]["d_bsi"] == pytest.approx(-0.12, abs=1e-6)  # numpy float32 -> number
    hangar = next(f["properties"] for f in doc["features"] if f["id"] == "obj-hangar")
    assert (hangar["first_seen"], hangar["last_seen"], hangar["feature"]) == ("2024-03-10", "2024-06-14", None)


@pytest.mark.parametrize(
    "change,message",
    [({"class": "bogus"}, "bogus"), ({"confidence": 1.5}, "1.5"), ({"first_seen": "yesterday"}, "yesterday"), ({"extra": 1}, "extra")],
)
def test_schema_rejects_bad_properties(doc, change, message):
    props = {**doc["features"][0]["properties"], **change}
    with pytest.raises(jsonschema.ValidationError, match=message):
        jsonschema.Draft202012Validator(load_schema(), format_checker=jsonschema.FormatChecker()).validate(props)


def test_schema_class_enum_is_the_model_vocabulary():
    assert tuple(load_schema()["properties"]["class"]["enum"]) == CHANGE_CLASSES


def test_clockwise_input_is_reoriented(tmp_path):
    cw = shapely.Polygon([(560000, 3229000), (560000, 3229100), (560100, 3229100), (560100, 3229000)])
    assert not cw.exterior.is_ccw
    obj = ChangeObject("cw", cw, "earthworks", 0.5, cw.area, None, "2024-01-01", "2024-02-01")
    path = write_geojson([obj], tmp_path / "c.geojson", aoi_id="x", epsg=EPSG)
    _check_rfc7946_geometry(json.loads(path.read_text())["features"][0]["geometry"])


def test_empty_collection(tmp_path):
    path = write_geojson([], tmp_path / "c.geojson", aoi_id="x", epsg=EPSG)
    assert json.loads(path.read_text()) == {"type": "FeatureCollection", "features": []}


@st.composite
def polygons(draw):
    """Star-shaped polygons (either winding) of 5 m to 2 km radius near the test grid, with optional hole."""
    n = draw(st.integers(3, 12))
    cx = draw(st.floats(560000, 564000))
    cy = draw(st.floats(3226000, 3230000))
    radius = draw(st.floats(5, 2000))
    angles = sorted(draw(st.lists(st.floats(0, 2 * math.pi), min_size=n, max_size=n, unique=True)))
    radii = draw(st.lists(st.floats(0.3, 1.0), min_size=n, max_size=n))
    pts = [(cx + radius * r * math.cos(a), cy + radius * r * math.sin(a)) for a, r in zip(angles, radii)]
    if draw(st.booleans()):
        pts = pts[::-1]
    poly = shapely.make_valid(shapely.Polygon(pts))  # nearly equal angles can give slivers
    if draw(st.booleans()):
        poly = poly.difference(shapely.Point(cx, cy).buffer(radius * 0.1))
    return shapely.make_valid(poly)


@settings(max_examples=60, deadline=None)
@given(polygons())
def test_any_polygon_comes_out_rfc7946(poly):
    if poly.is_empty or poly.area < 1.0 or poly.geom_type not in ("Polygon", "MultiPolygon"):
        return
    gj = to_lonlat_geometry(poly, EPSG)
    _check_rfc7946_geometry(gj)
    for _, ring in _rings(gj):
        for v in (c for pt in ring for c in pt):
            assert round(v, DECIMALS) == v
    # the area survives reprojection and rounding: rounding to 1e-7 degree moves a vertex by at most
    # ~0.8 cm, so the area may change by up to the perimeter x 1 cm (a 1 m^2 sliver by a few %)
    back = shp_transform(Transformer.from_crs(4326, EPSG, always_xy=True).transform, shape(gj))
    assert abs(back.area - poly.area) <= 0.01 * poly.length + 1e-3 * poly.area


def test_orientation_without_shapely_orient_polygons(monkeypatch):
    """shapely < 2.1 has no orient_polygons: the fallback gives the same right-hand rule."""
    monkeypatch.delattr(shapely, "orient_polygons", raising=False)
    ring = [(560000, 3229000), (560000, 3229100), (560100, 3229100), (560100, 3229000)]
    hole = [(560020, 3229020), (560080, 3229020), (560080, 3229080), (560020, 3229080)]  # counter-clockwise
    cw = shapely.Polygon(ring, [hole])
    _check_rfc7946_geometry(to_lonlat_geometry(cw, EPSG))
    _check_rfc7946_geometry(to_lonlat_geometry(shapely.MultiPolygon([cw, shapely.box(561000, 3229000, 561050, 3229050)]), EPSG))
