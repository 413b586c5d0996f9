"""Planted fixtures for the output writers: a small UTM grid near Al-Jufra with two change objects.

Grid: EPSG:32633, 10 m pixels, 440 x 390 px (big enough for one COG overview level), origin
(560000, 3230000). Planted:

* ``class_map``: 0 (no change) everywhere, 255 (no data) in rows 0-9, code 1 (runway_repair) in
  rows 100-109 x cols 150-179 (object ``obj-runway``), code 2 (new_structure) in the ring
  rows 250-269 x cols 300-319 minus rows 255-264 x cols 305-314 (object ``obj-hangar``, a polygon
  with a hole).
* ``magnitude``: ``row * 0.01 + col * 0.001`` (float32), NaN in rows 0-9.
* composites: bands B02 B03 B04 B8A B11 B12, smooth gradients; the after composite is brighter by
  0.2 over the hangar; NaN in rows 0-9 of both.
"""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from affine import Affine

from pipeline.aoi import AOI, AOIFeature
from pipeline.grid import Grid, reproject_geometry
from pipeline.objects.model import ChangeObject
from pipeline.result import AcquisitionRecord, DetectionResult

EPSG = 32633
GRID = Grid(EPSG, Affine(10.0, 0.0, 560000.0, 0.0, -10.0, 3230000.0), 440, 390)
BANDS = ("B02", "B03", "B04", "B8A", "B11", "B12")
RUNWAY_PX = (100, 110, 150, 180)  # rows r0:r1, cols c0:c1
HANGAR_PX = (250, 270, 300, 320)
HANGAR_HOLE_PX = (255, 265, 305, 315)


def px_box(r0: int, r1: int, c0: int, c1: int):
    """CRS polygon covering pixel rows r0:r1 and cols c0:c1 of GRID."""
    t = GRID.transform
    x0, y0 = t * (c0, r1)
    x1, y1 = t * (c1, r0)
    return shapely.box(x0, y0, x1, y1)


def _lonlat(geom):
    return reproject_geometry(geom, EPSG, 4326)


def make_result(*, name: str = "Test Air Base", feature_name: str = "runway 14/32", evidence_note: str = "rule r1", objects=None, series=None) -> DetectionResult:
    """A DetectionResult with the planted content described in the module docstring."""
    aoi_poly = _lonlat(px_box(20, 370, 20, 420))
    runway = _lonlat(px_box(95, 115, 60, 400))
    aoi = AOI(
        id="test-base",
        name=name,
        kind="airbase",
        geometry=aoi_poly,
        features=(AOIFeature("runway", runway, feature_name, {"designator": "14/32", "surface": "concrete"}),),
        country="LY",
        description="Planted test AOI",
        digest="d" * 64,
    )
    h, w = GRID.shape
    cm = np.zeros((h, w), np.uint8)
    cm[:10] = 255
    r0, r1, c0, c1 = RUNWAY_PX
    cm[r0:r1, c0:c1] = 1
    r0, r1, c0, c1 = HANGAR_PX
    cm[r0:r1, c0:c1] = 2
    r0, r1, c0, c1 = HANGAR_HOLE_PX
    cm[r0:r1, c0:c1] = 0
    rows, cols = np.mgrid[0:h, 0:w]
    mag = (rows * 0.01 + cols * 0.001).astype(np.float32)
    mag[:10] = np.nan
    base = np.stack([0.05 + 0.02 * b + 0.1 * rows / h + 0.05 * cols / w for b in range(len(BANDS))]).astype(np.float32)
    before = base.copy()
    after = base.copy()
    r0, r1, c0, c1 = HANGAR_PX
    after[:, r0:r1, c0:c1] += 0.2
    before[:, :10] = np.nan
    after[:, :10] = np.nan
    hangar = px_box(*HANGAR_PX).difference(px_box(*HANGAR_HOLE_PX))
    if objects is None:
        objects = (
            ChangeObject(
                "obj-runway", px_box(*RUNWAY_PX), "runway_repair", 0.91, 3000.0, feature_name,
                "2024-01-01/2024-02-15", "2024-05-01/2024-06-15",
                {"rule": evidence_note, "d_nbr": 0.31, "d_bsi": np.float32(-0.12), "elongation": 3.0, "bad": float("nan")},
            ),
            ChangeObject(
                "obj-hangar", hangar, "new_structure", 0.62, hangar.area, None,
                "2024-01-01/2024-02-15", "2024-05-01/2024-06-15",
                {"rule": "bright compact", "d_brightness": 0.2, "track": {"runs_seen": 3, "first_seen": "2024-03-10"}}, status="confirmed", first_seen="2024-03-10", last_seen="2024-06-14",
            ),
        )  # fmt: skip
    acqs = (
        AcquisitionRecord("S2A_MSIL2A_20240110", "2024-01-10", "before", "Sentinel-2A", "05.10", 1000, "metadata", 3.0, 0.01, 0.99, (0.1, -0.2)),
        AcquisitionRecord("S2B_MSIL2A_20240520", "2024-05-20", "after", "Sentinel-2B", "05.10", 1000, "metadata", 12.0, 0.4, 0.6, None, False, "cloudy"),
        AcquisitionRecord("S2A_MSIL2A_20240601", "2024-06-01", "after", "Sentinel-2A", "05.10", 1000, "metadata", 1.0, 0.0, 1.0, (0.0, 0.0)),
    )
    return DetectionResult(
        aoi=aoi,
        grid=GRID,
        source="simulated",
        before="2024-01-01/2024-02-15",
        after="2024-05-01/2024-06-15",
        class_map=cm,
        magnitude=mag,
        objects=tuple(objects),
        composite_bands=BANDS,
        before_composite=before,
        after_composite=after,
        acquisitions=acqs,
        parameters={"method": "cva", "threshold": "otsu", "min_area_m2": 200.0, "seed": 0},
        timings={"read": 1.5, "detect": 0.25},
        series=series if series is not None else {},
    )


@pytest.fixture(scope="module")
def result() -> DetectionResult:
    return make_result()


@pytest.fixture(scope="module")
def written(result, tmp_path_factory):
    """``write_outputs(result, tmp, rgb=True)`` once per test module: (paths, out_dir)."""
    from pipeline.outputs import write_outputs

    out = tmp_path_factory.mktemp("out")
    paths = write_outputs(result, out, rgb=True, extra_manifest={"run_id": "test-run"})
    return paths, out


# ---------------------------------------------------------------------------------------------
# external tools (Debian gdal-bin, chromium): tests skip, saying so, when they are missing


def need_tool(name: str, package: str) -> str:
    """Path of a command-line tool or a skip naming the Debian package that brings it."""
    import shutil

    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not found: install Debian package {package} (apt-get install -y {package}); .ci/run installs it")
    return path


def chromium_path() -> str:
    import shutil

    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no headless browser: install Debian package chromium (apt-get install -y chromium); .ci/run installs it")


def run_browser(url: str, tmp_path, *, mode: str, extra: tuple[str, ...] = ()) -> dict:
    """Open ``url`` in headless chromium with networking disabled.

    ``mode`` is ``"dom"`` (returns the DOM after scripts ran) or ``"screenshot"``. Always returns
    ``console`` (console messages from chromium's log), ``requests`` (http/https URLs the page
    itself asked for, from the net log; chromium's own background requests are excluded) and
    ``dom`` / ``png``.
    """
    import json
    import subprocess

    exe = chromium_path()
    ud = tmp_path / f"profile-{mode}"
    netlog = tmp_path / f"net-{mode}.json"
    shot = tmp_path / f"shot-{mode}.png"
    args = [
        exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={ud}", "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
        f"--log-net-log={netlog}", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=3000",
        "--window-size=1280,1800", *extra,
    ]  # fmt: skip
    args += ["--dump-dom"] if mode == "dom" else [f"--screenshot={shot}"]
    proc = subprocess.run([*args, url], capture_output=True, text=True, timeout=120)
    out: dict = {"returncode": proc.returncode, "stderr": proc.stderr}
    out["console"] = [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln]
    out["dom"] = proc.stdout if mode == "dom" else None
    out["png"] = shot if mode == "screenshot" and shot.exists() else None
    requests = []
    if netlog.exists():
        text = netlog.read_text(errors="replace").rstrip().rstrip(",")
        if not text.endswith("}"):
            text += "]}"
        log = json.loads(text)
        types = {v: k for k, v in log["constants"]["logEventTypes"].items()}
        for ev in log.get("events", []):
            p = ev.get("params") or {}
            if types.get(ev["type"]) == "URL_REQUEST_START_JOB" and str(p.get("url", "")).startswith(("http://", "https://")):
                if p.get("initiator") != "not an origin":  # chromium's own background fetches
                    requests.append(p["url"])
    out["requests"] = requests
    return out
