"""The analyst notebooks: committed clean, public API only, and they run top to bottom offline.

Each notebook is executed on a fresh kernel of this Python (a kernelspec written to a temporary
JUPYTER_PATH, so the project's .venv is the kernel whatever else is installed), with its
``parameters`` cell overridden the way papermill does it (a cell inserted after it) and a first
cell that blocks any connection beyond 127.0.0.1 inside the kernel. The outputs are then checked
against the simulated archive's ground truth.
"""

from __future__ import annotations

import ast
import json
import sys
from datetime import date
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat is needed: pip install -e '.[test]'")
nbclient = pytest.importorskip("nbclient", reason="nbclient is needed: pip install -e '.[test]'")

ROOT = Path(__file__).resolve().parent.parent
NB_DIR = ROOT / "notebooks"
NOTEBOOKS = ("investigate_aoi.ipynb", "runway_timeseries.ipynb")
KERNEL = "s2watch-test"

NETWORK_GUARD = '''
import ipaddress as _ip, socket as _socket
def _local(address):
    if isinstance(address, (str, bytes)):
        return True
    try:
        return address[0] in ("localhost", "") or _ip.ip_address(address[0]).is_loopback
    except ValueError:
        return False
_connect = _socket.socket.connect
def _guarded(self, address):
    if self.family in (_socket.AF_INET, _socket.AF_INET6) and not _local(address):
        raise RuntimeError(f"notebook tried to reach {address!r}; notebooks must run offline in tests")
    return _connect(self, address)
_socket.socket.connect = _guarded
'''


def _code(cell) -> str:
    """Cell source without IPython magics and shell escapes (not Python)."""
    return "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_is_clean(name):
    nb = nbformat.read(NB_DIR / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{name} has no code"
    for i, c in enumerate(code):
        assert c.outputs == [], f"{name}: code cell {i} has outputs; strip them before committing"
        assert c.execution_count is None, f"{name}: code cell {i} has an execution count; strip it"
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0] is code[0], f"{name}: the first code cell must be the one tagged 'parameters'"
    assert nb.metadata["kernelspec"]["name"] == "python3"


def _private_uses(source: str) -> list[str]:
    """Private names a cell uses: ``_x`` modules or names imported, ``obj._x`` attributes, and
    names imported from a ``pipeline`` module that are not in its ``__all__``."""
    import importlib

    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            parts = (node.module or "").split(".") + [a.name for a in node.names]
            if (node.module or "").startswith("pipeline") and not any(p.startswith("_") for p in parts):
                public = getattr(importlib.import_module(node.module), "__all__", None)
                if public is not None:
                    found += [f"{node.module}.{a.name}" for a in node.names if a.name not in public]
        elif isinstance(node, ast.Import):
            parts = [p for a in node.names for p in a.name.split(".")]
        elif isinstance(node, ast.Attribute):
            parts = [node.attr]
        else:
            continue
        found += [p for p in parts if p.startswith("_") and not p.startswith("__")]
    return found


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_uses_public_api_only(name):
    nb = nbformat.read(NB_DIR / name, as_version=4)
    bad = [f"cell {i}: {p}" for i, c in enumerate(c for c in nb.cells if c.cell_type == "code") for p in _private_uses(_code(c))]
    assert not bad, f"{name} uses private names: {bad}"


def test_public_api_check_is_not_vacuous():
    cell = nbformat.v4.new_code_cell(
        "%matplotlib inline\n"
        "from pipeline.sources._simlayout import build_layout\n"
        "from pipeline.timeseries import runway_profile, _long_axis\n"
        "from pipeline.detect import detect, log\n"
        "x = stack._cache\n"
        "y = obj.__class__\n"
    )
    assert _private_uses(_code(cell)) == ["_simlayout", "_long_axis", "pipeline.detect.log", "_cache"]


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """A kernelspec named KERNEL running this interpreter, on a private JUPYTER_PATH."""
    pytest.importorskip("ipykernel", reason="ipykernel is needed to run notebooks: pip install -e '.[test]'")
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "s2watch tests",
                "language": "python",
            }
        )
    )
    mp = pytest.MonkeyPatch()
    mp.setenv("JUPYTER_PATH", str(root))
    mp.delenv("MPLBACKEND", raising=False)
    yield root
    mp.undo()


def _run(name: str, params: dict, workdir: Path):
    nb = nbformat.read(NB_DIR / name, as_version=4)
    idx = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    inject = "# parameters injected by tests/test_notebooks.py\n" + "\n".join(f"{k} = {v!r}" for k, v in params.items())
    nb.cells.insert(idx + 1, nbformat.v4.new_code_cell(inject, metadata={"tags": ["injected-parameters"]}))
    nb.cells.insert(0, nbformat.v4.new_code_cell(NETWORK_GUARD))
    client = nbclient.NotebookClient(
        nb, kernel_name=KERNEL, timeout=600, allow_errors=False, resources={"metadata": {"path": str(workdir)}}
    )
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    stderr = [o.text for o in outputs if o.output_type == "stream" and o.name == "stderr"]
    assert not any("Warning" in t or "Error" in t for t in stderr), f"{name} wrote warnings: {stderr}"
    return nb, outputs


def _images(outputs) -> int:
    return sum(1 for o in outputs if o.output_type == "display_data" and "image/png" in o.get("data", {}))


def _text(outputs) -> str:
    parts = []
    for o in outputs:
        if o.output_type == "stream":
            parts.append(o.text)
        elif "data" in o:
            parts.append(o.data.get("text/html", "") + o.data.get("text/plain", ""))
    return "\n".join(parts)


@pytest.mark.slow
def test_runway_notebook_flags_the_simulated_resurfacing(kernel_env, tmp_path):
    from pipeline import get_source, load_aoi

    from pipeline.objects.model import ChangeObject
    from pipeline.runs.state import State
    from pipeline.timeseries import find_feature

    out = tmp_path / "out"
    # a monitoring state holding one tracked object covering the runway
    site = load_aoi("maaten-al-sarra")
    _, runway_geom = find_feature(site, "01L/19R")
    tracked = ChangeObject(
        "maaten-al-sarra-planted01", runway_geom, "runway_repair", 0.9, runway_geom.area, "runway 01L/19R",
        "2024-06-01/2024-08-31", "2025-03-01/2025-03-31", status="confirmed", first_seen="2025-03-05", last_seen="2025-05-01",
    )
    with State(tmp_path / "state.sqlite") as state:
        state.save_objects("maaten-al-sarra", [tracked])
    # every scripted change starts in 2024-09-01..2025-04-30: this period brackets it with clear dates
    params = {
        "aoi": "maaten-al-sarra",
        "source": "simulated",
        "runway": "01L/19R",
        "start": "2024-06-01",
        "end": "2025-07-31",
        "out_dir": str(out),
        "state_db": str(tmp_path / "state.sqlite"),
    }
    nb, outputs = _run("runway_timeseries.ipynb", params, tmp_path)
    assert _images(outputs) >= 4  # profiles, section series, indices, before/after
    assert (out / "profile.png").stat().st_size > 10_000 and (out / "before_after.png").is_file()
    steps = json.loads((out / "steps.json").read_text())
    # oracle: the simulated archive's own script for this runway
    (event,) = [e for e in get_source("simulated").truth(site) if e.cls == "runway_repair" and e.feature == "runway 01L/19R"]
    bright = [s for s in steps if s["signal"] == "brightness"]
    assert any(
        date.fromisoformat(str(s["last clear before"])) < event.start <= date.fromisoformat(str(s["first clear after"]))
        and float(s["change"]) < -0.05
        for s in bright
    ), f"no brightness step brackets the repair of {event.start}: {bright}"
    text = _text(outputs)
    assert "dates cloudy over the runway" in text and "resurfaced" in text  # cloudy dates and the truth table
    assert "maaten-al-sarra-planted01" in text and "confirmed" in text and "1 object(s) tracked by monitoring" in text


@pytest.mark.slow
def test_investigate_notebook_on_a_small_aoi_exports_an_object(kernel_env, tmp_path):
    """A 2 x 2 km AOI around the south of Maaten al-Sarra's runways and 3-month windows keep it quick.

    The simulated archive's ground truth is the oracle: the exported object must overlap a scripted
    change of its class.
    """
    src_doc = json.loads((ROOT / "aois" / "maaten-al-sarra.geojson").read_text())
    aoi_feat = src_doc["features"][0]
    aoi_feat["properties"]["id"] = "maaten-al-sarra-south"
    ring = [[21.818, 21.672], [21.838, 21.672], [21.838, 21.690], [21.818, 21.690], [21.818, 21.672]]
    aoi_feat["geometry"] = {"type": "Polygon", "coordinates": [ring]}
    aoi_path = tmp_path / "maaten-al-sarra-south.geojson"
    aoi_path.write_text(json.dumps(src_doc))
    out = tmp_path / "out"
    params = {
        "aoi": str(aoi_path),
        "source": "simulated",
        "before": "2024-06-01/2024-08-31",
        "after": "2025-06-01/2025-08-31",
        "out_dir": str(out),
        "mask_dates": 6,
    }
    nb, outputs = _run("investigate_aoi.ipynb", params, tmp_path)
    assert _images(outputs) >= 6
    text = _text(outputs)
    assert "<table>" in text and "runway_repair" in text
    exported = sorted(out.glob("object-*.geojson"))
    assert len(exported) == 1
    fc = json.loads(exported[0].read_text())
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 1
    feat = fc["features"][0]
    assert feat["properties"]["aoi"] == "maaten-al-sarra-south"
    lon, lat = feat["properties"]["centroid_lon"], feat["properties"]["centroid_lat"]
    assert 21.81 < lon < 21.845 and 21.665 < lat < 21.697  # inside the AOI plus its buffer, in lon/lat
    for png in ("true_colour.png", "swir.png", "objects.png"):
        assert (out / png).stat().st_size > 10_000
    # oracle: the exported (most confident) object is a scripted change of its class
    from shapely.geometry import shape

    from pipeline import get_source, load_aoi
    from pipeline.grid import reproject_geometry

    site = load_aoi(aoi_path)
    geom = reproject_geometry(shape(feat["geometry"]), 4326, site.epsg)
    events = get_source("simulated").truth(site)
    assert any(e.cls == feat["properties"]["class"] and e.geometry.intersects(geom) for e in events), (
        f"exported {feat['properties']['class']} matches no scripted change: {[(e.cls, e.start) for e in events]}"
    )
