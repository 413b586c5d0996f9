"""Smoke run of benchmarks/bench_pipeline.py --quick: the script runs the real CLI and monitoring
paths and its printed/recorded figures are consistent. No timing assertions."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
OTB_APP = "otbcli_MultivariateAlterationDetector"


def _canonical_correlations(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Independent oracle: canonical correlations of two (B, H, W) images from the covariance
    blocks (rho^2 = eigenvalues of Sxx^-1 Sxy Syy^-1 Syx), largest first."""
    B = before.shape[0]
    X = before.reshape(B, -1).astype(np.float64)
    Y = after.reshape(B, -1).astype(np.float64)
    S = np.cov(np.vstack([X, Y]))
    sxx, syy, sxy = S[:B, :B], S[B:, B:], S[:B, B:]
    m = np.linalg.solve(sxx, sxy) @ np.linalg.solve(syy, sxy.T)
    ev = np.clip(np.sort(np.linalg.eigvals(m).real)[::-1], 0, 1)
    return np.sqrt(ev)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    cmd = [sys.executable, str(BENCH / "bench_pipeline.py"), "--quick", "--out", str(out)]
    if shutil.which(OTB_APP) is None:
        cmd.append("--no-otb")  # never apt-get from a test; the OTB assertions below skip and say why
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return out, json.loads((out / "bench_pipeline_quick.json").read_text()), p.stdout


def test_detect_runs_the_cli_and_finds_the_planted_changes(quick_run):
    out, res, stdout = quick_run
    d = res["detect"]
    assert "detect_error" not in d, d.get("detect_error")
    assert d["aoi"]["grid_shape"] == [512, 512]
    assert "s2watch" in d["detect_cmd"][3] and d["detect_cmd"][4] == "detect"
    detect_out = Path(d["detect_out"])
    manifest = json.loads((detect_out / "manifest.json").read_text())
    assert manifest["timings"] == d["timings"]
    assert d["objects"]["count"] == manifest["objects"]["count"] >= 1
    # every planted rectangle (concrete / asphalt / water on other cover) is flagged, little else
    assert d["planted_detected"]["found"] >= len(d["rects"]) - 1
    assert d["planted_detected"]["false_frac"] < 0.05
    assert d["detect_s"] > 0 and d["detect_rss"] > 50 << 20
    assert f"s2watch detect: {d['detect_s']:.2f} s wall" in stdout


def test_our_rho_matches_an_independent_oracle(quick_run):
    sys.path.insert(0, str(BENCH))
    import bench_pipeline as P

    _, res, _ = quick_run
    before, after, _, rects = P.synthetic_scene_pair(512, seed=7)
    assert [list(r) for r in rects] == res["detect"]["rects"]
    want = _canonical_correlations(before[:6], after[:6])
    assert np.max(np.abs(np.array(res["detect"]["rho_ours"]) - want)) < 1e-4


def test_otb_comparison_is_consistent(quick_run):
    if shutil.which(OTB_APP) is None:
        pytest.skip(f"{OTB_APP} not found: install the Debian package otb-bin to run the OTB comparison")
    _, res, stdout = quick_run
    d = res["detect"]
    assert len(d["rho_otb"]) == len(d["rho_ours"]) == 6
    assert d["max_rho_diff"] == pytest.approx(np.max(np.abs(np.subtract(d["rho_otb"], d["rho_ours"]))))
    assert d["max_rho_diff"] <= 1e-3
    assert d["otb_over_detect"] == pytest.approx(d["otb_s"] / d["detect_s"])
    assert d["faster"] == (d["detect_s"] < d["otb_s"])
    assert f"ratio OTB / s2watch detect = {d['otb_over_detect']:.2f}" in stdout
    if not d["faster"]:
        assert "SLOWER than OTB" in stdout


def test_monitoring_series(quick_run):
    out, res, stdout = quick_run
    m = res["monitor"]
    aoi = json.loads(Path(out / "pipeline_quick" / "monitor_aoi_3km.geojson").read_text())
    assert aoi["features"][0]["properties"]["role"] == "aoi"
    assert m["first"]["status"] == "ok"
    assert m["first"]["n_new"] == 5 and m["first"]["n_used"] + m["first"]["n_skipped"] == 5
    assert m["rerun"]["status"] == "no_new_data" and m["rerun"]["n_new"] == 0
    assert m["per_acq_wall_s"] == pytest.approx(m["first"]["wall_s"] / 5)
    assert m["per_acq_cpu_s"] == pytest.approx(m["first"]["cpu_s"] / 5)
    assert m["rerun"]["wall_s"] < m["first"]["wall_s"]
    assert m["first_rss"] > 50 << 20
    assert m["reference"][1] < m["since"] <= m["until"]
    assert f"per acquisition: {m['per_acq_wall_s']:.3f} s wall" in stdout
