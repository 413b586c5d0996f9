"""CI smoke test of ``benchmarks/bench_speed.py --quick``: it runs, and every fast kernel gives the
same results as its plain-numpy version. No timing is asserted (the CPU is shared)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_quick_benchmark_runs_and_kernels_match_numpy(project_root, tmp_path):
    script = project_root / "benchmarks" / "bench_speed.py"
    p = subprocess.run(
        [sys.executable, str(script), "--quick", "--no-otb", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    for section in ("1. kernels", "2. time per megapixel", "3. end to end"):
        assert section in p.stdout
    res = json.loads((tmp_path / "bench_speed_quick.json").read_text())
    names = [k["kernel"] for k in res["kernels"]]
    assert names == [
        "cva",
        "index_deltas (6)",
        "irmad statistics pass",
        "irmad transform",
        "otsu threshold",
        "otsu threshold, 1/16 sample (approximate)",
        "change mask",
        "clear mask (SCL+cloud)",
    ]
    for k in res["kernels"]:
        assert k["same"], k
        assert k["time_s"] > 0 and k["numpy_s"] > 0
        if k.get("approximate"):
            assert k["relative_threshold_difference"] < 0.05
    e2e = res["e2e"]["detect"]
    assert e2e["pixels"] == 512 * 512
    assert 0 < e2e["changed_pixels"] < e2e["pixels"]
    assert (tmp_path / "e2e_change.tif").exists()
    assert [r["size"] for r in res["scaling"]] == [128, 256, 512]
