"""Crash safety: a run SIGKILLed at named stages, then rerun, ends with the outputs and state of an
uninterrupted run. The kill comes from the test hook ``S2WATCH_TEST_KILL_AT=<stage>[:<n>]``
(pipeline.runs.monitor._kill_point) inside a real subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.runs.state import State

AOI = "tartus-naval-facility"
HERE = Path(__file__).resolve().parent

DRIVER = f"""
import sys
from datetime import date
sys.path.insert(0, {str(HERE)!r})
from planted import PlantedSource
from pipeline.config import Config
from pipeline.runs.monitor import run_monitor
cfg = Config(output_root=sys.argv[1], since=date(2024, 9, 1), until=date(2024, 9, 30),
             reference=(date(2024, 3, 1), date(2024, 8, 31)), thresholds={{"normalise": False, "coregister": False}})
sys.exit(run_monitor([{AOI!r}], cfg, source=PlantedSource()).exit_code())
"""


def _run(root: Path, kill_at: str | None = None) -> int:
    env = {k: v for k, v in os.environ.items() if k != "S2WATCH_TEST_KILL_AT"}
    if kill_at:
        env["S2WATCH_TEST_KILL_AT"] = kill_at
    return subprocess.run([sys.executable, "-c", DRIVER, str(root)], env=env, capture_output=True, text=True, timeout=120).returncode


def published(root: Path) -> dict:
    """Top-level outputs of the AOI: bytes of each file, the manifest without its volatile fields."""
    out = {}
    for p in sorted((root / AOI).iterdir()):
        if p.is_file() and p.name != ".lock":
            if p.name == "manifest.json":
                m = json.loads(p.read_text())
                for k in ("written_at", "timings"):
                    m.pop(k, None)
                m["monitoring"].pop("run_id")
                out[p.name] = m
            else:
                out[p.name] = p.read_bytes()
    assert not [p for p in (root / AOI).glob(".*") if p.name != ".lock"], "temporary files left behind"
    assert not list((root / AOI / "runs").glob(".tmp-*")), "temporary run folder left behind"
    return out


def snapshot(root: Path) -> dict:
    with State(root / "state.sqlite") as st:
        runs = st.runs(AOI)
        return {"state": st.snapshot(AOI), "open_runs": [r for r in runs if r["status"] == "running"]}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("clean")
    assert _run(root) == 0
    return published(root), snapshot(root)


def _compare(root: Path, uninterrupted) -> None:
    outputs, state = uninterrupted
    got = published(root)
    assert sorted(got) == sorted(outputs)
    differ = [name for name in outputs if got[name] != outputs[name]]
    assert differ == [], f"outputs differ from the uninterrupted run: {differ}"
    snap = snapshot(root)
    for part in state["state"]:
        assert snap["state"][part] == state["state"][part], f"state {part} differs"
    assert snap["open_runs"] == []


@pytest.mark.slow
def test_runs_killed_one_after_another_at_every_stage_then_finished(uninterrupted, tmp_path):
    """Each run gets further than the last: inside the 2nd acquisition's transaction (rolled back),
    after two more acquisitions, after writing the run folder, in the middle of publishing, after
    publishing but before the state recorded it; then a clean run finishes the job."""
    stages = ("in-transaction:2", "acquisition:2", "run-folder", "publish:3", "published")
    for stage in stages:
        assert _run(tmp_path, stage) == -signal.SIGKILL, stage
    with State(tmp_path / "state.sqlite") as st:
        assert len(st.acquisitions(AOI, status="used")) == 5  # 1 + 2 + the remaining 2 of 09-03..09-28
    assert _run(tmp_path) == 0
    _compare(tmp_path, uninterrupted)
    with State(tmp_path / "state.sqlite") as st:
        statuses = [r["status"] for r in st.runs(AOI)]
        errors = {r["error"] for r in st.runs(AOI) if r["status"] == "failed"}
    assert statuses == ["failed"] * len(stages) + ["ok"]
    assert errors == {"interrupted (process ended before the run finished)"}
