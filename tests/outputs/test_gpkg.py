"""changes.gpkg: objects in the UTM CRS, DateTime fields, QGIS layer_styles, changes.qml."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import xml.etree.ElementTree as ET

import numpy as np
import pyogrio
import pytest
import shapely

from pipeline.errors import ConfigError, OutputError
from pipeline.objects.model import CHANGE_CLASSES, CLASS_COLOURS, ChangeObject
from pipeline.outputs.gpkg import stamp_for, write_gpkg

from .conftest import EPSG, need_tool


@pytest.fixture(scope="module")
def gpkg(written):
    return written[0]["changes.gpkg"]


def test_layer_crs_fields_and_geometries(gpkg, result):
    info = pyogrio.read_info(gpkg, layer="changes")
    assert info["crs"] == f"EPSG:{EPSG}"
    assert info["geometry_type"] == "MultiPolygon"
    assert info["features"] == 2
    dtypes = dict(zip(info["fields"], info["dtypes"]))
    assert dtypes["detected_at"].startswith("datetime64") and dtypes["first_seen"].startswith("datetime64")
    meta, fids, geoms, fields = pyogrio.raw.read(gpkg, layer="changes")
    cols = dict(zip(meta["fields"], fields))
    assert list(cols["id"]) == ["obj-hangar", "obj-runway"]
    by_id = {o.id: o for o in result.objects}
    for i, oid in enumerate(cols["id"]):
        g = shapely.from_wkb(geoms[i])
        assert g.equals(shapely.MultiPolygon([by_id[oid].geometry]))  # UTM coordinates as given, no reprojection
        assert cols["class"][i] == by_id[oid].cls
    # detected_at: first_seen when known, else the end of the after window
    assert cols["detected_at"][0] == np.datetime64("2024-03-10")
    assert cols["detected_at"][1] == np.datetime64("2024-06-15")
    assert np.isnat(cols["first_seen"][1])
    assert json.loads(cols["evidence"][1])["bad"] is None


def test_layer_styles_row_is_qgis_default(gpkg):
    meta, _, _, fields = pyogrio.raw.read(gpkg, layer="layer_styles")
    row = {k: v[0] for k, v in zip(meta["fields"], fields)}
    assert row["f_table_name"] == "changes" and row["f_geometry_column"] == "geom"
    assert bool(row["useAsDefault"]) is True
    root = ET.fromstring(row["styleQML"].split("\n", 1)[1])  # skip the DOCTYPE line
    _check_qml(root)
    sld = ET.fromstring(row["styleSLD"])
    assert sld.tag.endswith("StyledLayerDescriptor")


def _check_qml(root) -> None:
    renderer = root.find("renderer-v2")
    assert renderer.get("type") == "categorizedSymbol" and renderer.get("attr") == "class"
    cats = {c.get("value"): c.get("symbol") for c in renderer.find("categories")}
    assert set(cats) == set(CHANGE_CLASSES)
    symbols = {s.get("name"): s for s in renderer.find("symbols")}
    for cls, sym in cats.items():
        opts = {o.get("name"): o.get("value") for o in symbols[sym].iter("Option") if o.get("name")}
        r, g, b, a = CLASS_COLOURS[cls]
        assert opts["outline_color"] == f"{r},{g},{b},{a}"
        assert opts["color"].startswith(f"{r},{g},{b},")
    temporal = root.find("temporal")
    assert temporal.get("enabled") == "1" and temporal.get("startField") == "detected_at"


def test_qml_file_next_to_gpkg(written):
    qml = written[0]["changes.qml"]
    assert qml.parent == written[0]["changes.gpkg"].parent
    _check_qml(ET.fromstring(qml.read_text().split("\n", 1)[1]))


def test_timestamps_are_pinned(gpkg):
    with sqlite3.connect(f"file:{gpkg}?mode=ro", uri=True) as con:
        stamps = {r[0] for r in con.execute("select last_change from gpkg_contents")}
        update = con.execute("select update_time from layer_styles").fetchone()[0]
    assert stamps == {"2024-06-15T00:00:00.000Z"}
    assert update.startswith("2024-06-15T00:00:00")


def test_source_date_epoch_overrides_stamp(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert stamp_for("2024-01-01/2024-02-01") == "2023-11-14T22:13:20.000Z"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "soon")
    with pytest.raises(ConfigError, match="SOURCE_DATE_EPOCH"):
        stamp_for("2024-01-01")


def test_bad_dates_and_geometries_are_named(tmp_path):
    box = shapely.box(560000, 3229000, 560100, 3229100)
    bad = ChangeObject("o1", box, "other", 0.5, 1e4, None, "2024-01-01", "2024-02-01", first_seen="last week")
    with pytest.raises(OutputError, match="o1.*first_seen.*last week"):
        write_gpkg([bad], tmp_path / "c.gpkg", aoi_id="x", epsg=EPSG, after="2024-02-01")
    assert list(tmp_path.iterdir()) == []


def test_empty_layer_is_written(tmp_path):
    path = write_gpkg([], tmp_path / "c.gpkg", aoi_id="x", epsg=EPSG, after="2024-02-01")[0]
    info = pyogrio.read_info(path, layer="changes")
    assert info["features"] == 0 and info["crs"] == f"EPSG:{EPSG}"


@pytest.mark.needs_gdal
def test_ogrinfo_reads_layers_and_style(gpkg):
    ogrinfo = need_tool("ogrinfo", "gdal-bin")
    out = subprocess.run([ogrinfo, "-ro", "-so", str(gpkg), "changes"], capture_output=True, text=True, check=True).stdout
    assert "Feature Count: 2" in out
    assert "detected_at: DateTime" in out
    assert "32633" in out
    sql = subprocess.run(
        [ogrinfo, "-ro", str(gpkg), "-sql", "SELECT f_table_name, styleName, useAsDefault FROM layer_styles"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "f_table_name (String) = changes" in sql
    assert "useAsDefault (Integer(Boolean)) = 1" in sql
    feats = subprocess.run([ogrinfo, "-ro", "-al", str(gpkg), "changes"], capture_output=True, text=True, check=True).stdout
    assert "class (String) = runway_repair" in feats and "detected_at (DateTime) = 2024/06/15" in feats
