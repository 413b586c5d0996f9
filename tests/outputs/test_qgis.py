"""QGIS itself reads the outputs: class names and colours of the raster, the GeoPackage's default style.

QGIS's Python bindings live in Debian's python3-qgis for the system interpreter, not in the
virtualenv, so the check runs ``/usr/bin/python3`` in a subprocess (headless, offscreen Qt) and
skips, saying so, when the bindings are missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap

import pytest

from pipeline.objects.model import CHANGE_CLASSES, CLASS_COLOURS
from pipeline.outputs.style import class_label, hex_colour

SCRIPT = textwrap.dedent(
    """
    import json, os, shutil, sys
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from qgis.core import QgsApplication, QgsRasterLayer, QgsVectorLayer
    QgsApplication.setPrefixPath("/usr", True)
    app = QgsApplication([], False)
    app.initQgis()
    out, bare = sys.argv[1], sys.argv[2]
    res = {}
    r = QgsRasterLayer(os.path.join(out, "change_class.tif"), "classes")
    res["raster"] = [r.isValid(), r.renderer().type(),
                     [[c.value, c.label, c.color.name(), c.color.alpha()] for c in r.renderer().classes()][:9]]
    for f in ("change_class.tif", "change_class.tif.aux.xml", "changes.gpkg"):
        shutil.copy(os.path.join(out, f), bare)
    r2 = QgsRasterLayer(os.path.join(bare, "change_class.tif"), "classes")
    res["raster_bare"] = [c.label for c in r2.renderer().classes()][:9]
    v = QgsVectorLayer(os.path.join(bare, "changes.gpkg") + "|layername=changes", "changes", "ogr")
    ren = v.renderer()
    res["vector"] = [v.isValid(), ren.type(), ren.classAttribute() if ren.type() == "categorizedSymbol" else None,
                     [[c.value(), c.label(), c.symbol().color().name()] for c in ren.categories()]
                     if ren.type() == "categorizedSymbol" else []]
    v.loadNamedStyle(os.path.join(out, "changes.qml"))
    tp = v.temporalProperties()
    res["temporal"] = [tp.isActive(), tp.startField()]
    res["fields"] = {f.name(): f.typeName() for f in v.fields()}
    print("RESULT " + json.dumps(res))
    app.exitQgis()
    """
)


@pytest.fixture(scope="module")
def qgis_view(written, tmp_path_factory):
    py = shutil.which("python3", path="/usr/bin:/bin")
    if py is None or subprocess.run([py, "-c", "import qgis.core"], capture_output=True).returncode != 0:
        pytest.skip("QGIS Python bindings not found: install Debian package python3-qgis (apt-get install -y python3-qgis)")
    bare = tmp_path_factory.mktemp("bare")
    proc = subprocess.run([py, "-c", SCRIPT, str(written[1]), str(bare)], capture_output=True, text=True, timeout=180)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line is not None, proc.stderr[-3000:]
    return json.loads(line[len("RESULT ") :])


def test_qgis_shows_class_names_and_colours_of_the_raster(qgis_view):
    valid, renderer, classes = qgis_view["raster"]
    assert valid and renderer == "paletted"
    expected = [[0.0, "no change", "#000000", 0]] + [[float(i + 1), class_label(c), hex_colour(c), 255] for i, c in enumerate(CHANGE_CLASSES)]
    assert classes == expected


def test_qgis_uses_gdal_category_names_without_the_qml(qgis_view):
    assert qgis_view["raster_bare"] == ["no_change", *CHANGE_CLASSES]


def test_qgis_loads_gpkg_default_style_from_layer_styles(qgis_view):
    valid, renderer, attr, cats = qgis_view["vector"]
    assert valid and renderer == "categorizedSymbol" and attr == "class"
    assert cats == [[c, class_label(c), "#%02x%02x%02x" % CLASS_COLOURS[c][:3]] for c in CHANGE_CLASSES]


def test_qgis_temporal_controller_on_detected_at(qgis_view):
    assert qgis_view["temporal"] == [True, "detected_at"]
    assert qgis_view["fields"]["detected_at"] == "DateTime"
