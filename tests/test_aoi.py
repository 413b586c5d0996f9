"""AOI files: loading, resolution by id, and the validator on broken files."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from pipeline.aoi import FEATURE_ROLES, PROJECT_AOI_DIR, list_aois, load_aoi, validate_aoi_file
from pipeline.errors import AOIError

SITES = [
    "maaten-al-sarra", "al-khadim", "al-jufra", "ghardabiya", "brak-al-shati", "tamanhint", "benina",
    "gamal-abdel-nasser", "khmeimim", "tobruk-port", "benghazi-port", "tartus-port", "tartus-naval-facility",
]

SQUARE = [[21.80, 21.65], [21.86, 21.65], [21.86, 21.73], [21.80, 21.73], [21.80, 21.65]]


def _fc(*features):
    return {"type": "FeatureCollection", "features": list(features)}


def _aoi_feature(coords=SQUARE, **props):
    return {
        "type": "Feature",
        "properties": {"role": "aoi", "id": "test-site", "name": "Test", "kind": "airbase", **props},
        "geometry": {"type": "Polygon", "coordinates": [coords]},
    }


def _write(tmp_path, doc, name="site.geojson"):
    p = tmp_path / name
    p.write_text(json.dumps(doc))
    return p


def test_catalogue_has_every_site_and_each_is_valid():
    ids = {p.stem for p in list_aois()}
    assert set(SITES) <= ids
    for sid in SITES:
        assert validate_aoi_file(PROJECT_AOI_DIR / f"{sid}.geojson") == [], sid
        a = load_aoi(sid)
        assert a.id == sid and a.kind in ("airbase", "port", "naval_base")


def test_catalogue_files_match_the_json_schema():
    schema = json.loads((PROJECT_AOI_DIR / "schema.json").read_text())
    v = jsonschema.Draft202012Validator(schema)
    for sid in SITES:
        errors = list(v.iter_errors(json.loads((PROJECT_AOI_DIR / f"{sid}.geojson").read_text())))
        assert errors == [], (sid, [e.message for e in errors])


def test_runways_are_polygons_of_their_real_width():
    a = load_aoi("maaten-al-sarra")
    runways = {f.name: g for f, g in a.features_in(roles=["runway"])}
    assert set(runways) == {"runway 01L/19R", "runway 01R/19L"}
    rw = runways["runway 01L/19R"]
    # 3390 m between OA ends, 30 m wide
    assert rw.area == pytest.approx(3390 * 30, rel=0.03)
    assert rw.minimum_rotated_rectangle.length == pytest.approx(2 * (3390 + 30), rel=0.03)


def test_id_resolves_from_another_directory(tmp_path):
    env = {**os.environ, "PYTHONPATH": ""}
    out = subprocess.run(
        [sys.executable, "-c", "from pipeline.aoi import load_aoi; print(load_aoi('khmeimim').name)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True,
    )
    assert "Khmeimim" in out.stdout


def test_extra_folder_from_environment_wins(tmp_path, monkeypatch):
    _write(tmp_path, _fc(_aoi_feature(id="benina", name="My Benina")), "benina.geojson")
    monkeypatch.setenv("S2WATCH_AOI_PATH", str(tmp_path))
    assert load_aoi("benina").name == "My Benina"


def test_unknown_id_names_the_search_path():
    with pytest.raises(AOIError, match="no AOI with this id"):
        load_aoi("no-such-site")


def test_bare_polygon_and_single_feature_are_aois(tmp_path):
    p = _write(tmp_path, {"type": "Polygon", "coordinates": [SQUARE]}, "my-field.geojson")
    a = load_aoi(p)
    assert a.id == "my-field" and a.features == ()
    f = {"type": "Feature", "properties": {"name": "X"}, "geometry": {"type": "Polygon", "coordinates": [SQUARE]}}
    a2 = load_aoi(_write(tmp_path, f, "single.geojson"))
    assert a2.id == "single" and a2.name == "X"


@pytest.mark.parametrize(
    "doc, expected",
    [
        # self-intersecting bow-tie ring
        (_fc(_aoi_feature([[21.80, 21.65], [21.86, 21.73], [21.86, 21.65], [21.80, 21.73], [21.80, 21.65]])),
         "invalid polygon"),
        # ring not closed
        (_fc(_aoi_feature([[21.80, 21.65], [21.86, 21.65], [21.86, 21.73], [21.80, 21.73]])), "not closed"),
        # lat/lon swapped: [lat, lon] at a latitude of 121
        (_fc(_aoi_feature([[21.65, 121.80], [21.65, 121.86], [21.73, 121.86], [21.65, 121.80]])), "swapped"),
        # longitude out of range
        (_fc(_aoi_feature([[200.0, 21.65], [201.0, 21.65], [201.0, 21.73], [200.0, 21.65]])), "out of range"),
        # two aoi features
        (_fc(_aoi_feature(), _aoi_feature()), "exactly one is allowed"),
        # no aoi feature
        (_fc({"type": "Feature", "properties": {"role": "runway"},
              "geometry": {"type": "Polygon", "coordinates": [SQUARE]}}), "no feature with role 'aoi'"),
        # unknown role
        (_fc(_aoi_feature(), {"type": "Feature", "properties": {"role": "hangar"},
                              "geometry": {"type": "Point", "coordinates": [21.83, 21.69]}}), "unknown role 'hangar'"),
        # too big: 1 x 1 degree is about 11,500 km^2
        (_fc(_aoi_feature([[21.0, 21.0], [22.0, 21.0], [22.0, 22.0], [21.0, 22.0], [21.0, 21.0]])), "exceeds the maximum"),
        # a crs member (RFC 7946 forbids it)
        ({**_fc(_aoi_feature()), "crs": {"type": "name", "properties": {"name": "EPSG:3857"}}}, "'crs' member"),
        # wrong geometry type for the aoi
        (_fc({"type": "Feature", "properties": {"role": "aoi", "id": "x", "name": "x", "kind": "port"},
              "geometry": {"type": "Point", "coordinates": [21.83, 21.69]}}), "not allowed"),
        # feature outside the AOI
        (_fc(_aoi_feature(), {"type": "Feature", "properties": {"role": "runway", "designator": "09/27"},
                              "geometry": {"type": "LineString", "coordinates": [[30.0, 10.0], [30.1, 10.0]]}}),
         "outside the AOI"),
        # bad id
        (_fc(_aoi_feature(id="Bad Id!")), "must be lower-case"),
    ],
)
def test_validator_rejects_broken_files_with_feature_and_reason(tmp_path, doc, expected):
    p = _write(tmp_path, doc)
    problems = validate_aoi_file(p)
    assert problems, "expected a problem"
    assert any(expected in pr for pr in problems), problems
    assert all(pr.startswith(("feature", "no feature", "'crs'", "FeatureCollection")) or "features" in pr
               for pr in problems)
    with pytest.raises(AOIError) as ei:
        load_aoi(p)
    assert str(p) in str(ei.value)


def test_validator_area_limit_is_configurable(tmp_path):
    p = _write(tmp_path, _fc(_aoi_feature()))  # about 55 km^2
    assert validate_aoi_file(p) == []
    assert any("exceeds" in pr for pr in validate_aoi_file(p, max_area_km2=10))


def test_invalid_json_is_reported_with_position(tmp_path):
    p = tmp_path / "broken.geojson"
    p.write_text('{"type": "FeatureCollection", "features": [')
    problems = validate_aoi_file(p)
    assert problems and "not valid JSON" in problems[0] and "line 1" in problems[0]


def test_roles_cover_the_documented_set():
    assert set(FEATURE_ROLES) == {"runway", "taxiway", "apron", "hardstand", "quay", "basin"}


def test_cli_validate_exit_codes(tmp_path):
    good = _write(tmp_path, _fc(_aoi_feature()), "good.geojson")
    bad = _write(tmp_path, _fc(_aoi_feature(), _aoi_feature()), "bad.geojson")
    s2w = Path(sys.executable).parent / "s2watch"
    ok = subprocess.run([str(s2w), "aois", "validate", str(good)], capture_output=True, text=True)
    assert ok.returncode == 0 and "valid" in ok.stdout
    ko = subprocess.run([str(s2w), "aois", "validate", str(good), str(bad)], capture_output=True, text=True)
    assert ko.returncode == 2
    assert str(bad) in ko.stderr and "exactly one is allowed" in ko.stderr


def test_cli_list_and_show(tmp_path):
    s2w = Path(sys.executable).parent / "s2watch"
    out = subprocess.run([str(s2w), "aois", "list", "--json"], capture_output=True, text=True, cwd=tmp_path, check=True)
    rows = {r["id"]: r for r in json.loads(out.stdout)}
    assert rows["tobruk-port"]["kind"] == "port"
    show = subprocess.run([str(s2w), "aois", "show", "tobruk-port"], capture_output=True, text=True, check=True)
    assert "EPSG:32634" in show.stdout
