"""The dask executor: a real ``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1
give the same outputs and state as the serial executor (two small AOIs, short period)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.cli.main import main
from pipeline.errors import MissingOptionalDependency, UsageError
from pipeline.runs.executor import SerialExecutor, get_executor
from pipeline.runs.state import State

AOI = "tartus-naval-facility"
DASK = Path(sys.executable).absolute().parent / "dask"
TINY = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature",
            "properties": {"role": "aoi", "id": "tiny-quay", "name": "Tiny quay", "kind": "port"},
            "geometry": {"type": "Polygon", "coordinates": [[[35.860, 34.905], [35.868, 34.905], [35.868, 34.911], [35.860, 34.911], [35.860, 34.905]]]},
        }
    ],
}
FAST_TOML = """
[monitor]
source = "simulated"
since = 2024-09-01
until = 2024-09-20
reference = [2024-07-01, 2024-08-31]

[thresholds]
normalise = false
coregister = false
"""


def test_unknown_executor_lists_valid_names():
    with pytest.raises(UsageError, match="unknown executor 'spark'; use one of serial, dask"):
        get_executor("spark")
    with pytest.raises(UsageError, match="--scheduler needs --executor dask"):
        get_executor("serial", scheduler="tcp://127.0.0.1:1")


def test_missing_dask_gives_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(MissingOptionalDependency, match=r"pip install 's2watch\[dask\]'"):
        get_executor("dask")


def test_serial_executor_keeps_going_after_a_failed_task():
    def f(x):
        if x == 2:
            raise RuntimeError("boom")
        return x * 10

    out = SerialExecutor().map(f, [1, 2, 3])
    assert out[0] == 10 and isinstance(out[1], RuntimeError) and out[2] == 30


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed: pip install 's2watch[dask]'")
    if not DASK.is_file():
        pytest.skip(f"{DASK} not found: the dask command comes with pip install 's2watch[dask]'")
    logs = tmp_path_factory.mktemp("dask-logs")
    port = _free_port()
    addr = f"tcp://127.0.0.1:{port}"
    procs = []

    def start(name, argv):
        fh = open(logs / f"{name}.log", "w")
        procs.append((subprocess.Popen([str(DASK), *argv], stdout=fh, stderr=subprocess.STDOUT), fh))

    start("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"])
    for i in range(2):
        start(f"worker{i}", ["worker", addr, "--host", "127.0.0.1", "--nworkers", "1", "--nthreads", "1",
                             "--no-dashboard", "--memory-limit", "3GB", "--name", f"w{i}"])
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with distributed.Client(addr, timeout=10) as c:
                    c.wait_for_workers(2, timeout=max(1, deadline - time.monotonic()))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield addr
    finally:
        for p, fh in reversed(procs):
            p.terminate()
        for p, fh in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            fh.close()


@pytest.fixture
def run_files(tmp_path, monkeypatch):
    """A clean environment, the fast configuration and the tiny AOI file: ``(config, aoi path)``."""
    for k in list(os.environ):
        if k.startswith("S2WATCH_"):
            monkeypatch.delenv(k)
    cfg = tmp_path / "c.toml"
    cfg.write_text(FAST_TOML)
    tiny = tmp_path / "tiny-quay.geojson"
    tiny.write_text(json.dumps(TINY))
    return cfg, tiny


def _outputs(root: Path, aoi: str) -> dict:
    out = {}
    for p in sorted((root / aoi).iterdir()):
        if p.is_file() and p.name != ".lock":
            if p.name == "manifest.json":
                m = json.loads(p.read_text())
                for k in ("written_at", "timings"):
                    m.pop(k)
                m["monitoring"].pop("run_id")
                out[p.name] = m
            else:
                out[p.name] = p.read_bytes()
    return out


@pytest.mark.dask
@pytest.mark.network_local
def test_dask_cluster_gives_the_serial_outputs(cluster, run_files, tmp_path, capsys):
    cfg, tiny = run_files
    args = ["--config", str(cfg), "run", AOI, str(tiny)]
    assert main([*args, "--out", str(tmp_path / "serial")]) == 0
    assert main([*args, "--out", str(tmp_path / "dask"), "--executor", "dask", "--scheduler", cluster]) == 0
    out = capsys.readouterr().out
    assert f"{AOI}: ok, 4 new acquisition(s)" in out and "tiny-quay: ok, 4 new acquisition(s)" in out
    for aoi in (AOI, "tiny-quay"):
        a, b = _outputs(tmp_path / "serial", aoi), _outputs(tmp_path / "dask", aoi)
        assert sorted(a) == sorted(b) and "changes.geojson" in a
        assert [n for n in a if a[n] != b[n]] == [], aoi
        with State(tmp_path / "serial" / "state.sqlite") as s1, State(tmp_path / "dask" / "state.sqlite") as s2:
            snap1, snap2 = s1.snapshot(aoi), s2.snapshot(aoi)
            for part in snap1:
                if part == "acquisitions":
                    for x, y in zip(snap1[part], snap2[part]):
                        assert x == y
                assert snap1[part] == snap2[part], part
            pids = {r["pid"] for r in s2.runs(aoi)}
        assert os.getpid() not in pids  # the work ran in the worker processes


@pytest.mark.dask
def test_local_cluster_without_scheduler_and_json_logs_stay_json(tmp_path):
    """``--executor dask`` alone starts (and stops) a LocalCluster; distributed's own log lines
    must not break ``--log-json`` (one JSON object per line, for schedulers)."""
    pytest.importorskip("distributed", reason="dask.distributed is not installed: pip install 's2watch[dask]'")
    cfg = tmp_path / "c.toml"
    cfg.write_text(FAST_TOML)
    tiny = tmp_path / "tiny-quay.geojson"
    tiny.write_text(json.dumps(TINY))
    env = {k: v for k, v in os.environ.items() if not k.startswith("S2WATCH_")}
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli.main", "--log-json", "--config", str(cfg), "run", str(tiny),
         "--executor", "dask", "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    done = [json.loads(x) for x in proc.stdout.splitlines()]  # --log-json: stdout is JSON lines too
    assert [(d["aoi"], d["status"], d["n_new"]) for d in done if d["event"] == "aoi_done"] == [("tiny-quay", "ok", 4)]
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    bad = [x for x in lines if not x.startswith("{")]
    assert bad == [], bad[:5]
    assert all(json.loads(x)["level"] for x in lines)
    assert (tmp_path / "o" / "tiny-quay" / "manifest.json").is_file()


@pytest.mark.dask
@pytest.mark.network_local
def test_tiles_of_one_aoi_on_the_cluster_give_the_serial_outputs(cluster, tmp_path, capsys):
    """``s2watch detect --tile-px`` with ``--executor dask``: the tiles of one AOI run on the two
    workers and every output equals the serial tiled run's (manifest timings aside)."""
    args = ["detect", "maaten-al-sarra", "--source", "simulated", "--before", "2024-03-01/2024-03-31",
            "--after", "2025-05-01/2025-05-31", "--tile-px", "400", "--halo-px", "64"]
    assert main([*args, "--out", str(tmp_path / "serial")]) == 0
    assert main([*args, "--out", str(tmp_path / "dask"), "--executor", "dask", "--scheduler", cluster]) == 0
    files = sorted(p.name for p in (tmp_path / "serial").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "dask").iterdir()) and "change_class.tif" in files
    for name in files:
        a, b = (tmp_path / "serial" / name).read_bytes(), (tmp_path / "dask" / name).read_bytes()
        if name == "manifest.json":
            a, b = json.loads(a), json.loads(b)
            for m in (a, b):
                m.pop("written_at"), m.pop("timings")
        assert a == b, name
    m = json.loads((tmp_path / "dask" / "manifest.json").read_text())
    assert m["parameters"]["tiling"]["n_tiles"] == 6


def _executed(addr: str) -> int:
    import distributed

    with distributed.Client(addr, timeout=10) as c:
        return sum(c.run(lambda dask_worker: dask_worker.state.executed_count).values())


@pytest.mark.dask
@pytest.mark.network_local
def test_a_tiled_aoi_shares_its_tiles_across_the_cluster_with_the_serial_outputs(cluster, run_files, tmp_path, capsys):
    """``s2watch run --tile-px N --executor dask``: an AOI detected in tiles is tracked by the
    calling process while its tiles (every tile of every new acquisition) run on the workers;
    a small AOI of the same run is one worker task; outputs and state equal the serial run's."""
    cfg, tiny = run_files
    big = "maaten-al-sarra"
    args = ["--config", str(cfg), "run", big, str(tiny), "--tile-px", "400", "--halo-px", "64"]
    assert main([*args, "--out", str(tmp_path / "serial")]) == 0
    before = _executed(cluster)
    assert main([*args, "--out", str(tmp_path / "dask"), "--executor", "dask", "--scheduler", cluster]) == 0
    out = capsys.readouterr().out
    assert f"{big}: ok, 4 new acquisition(s)" in out and "tiny-quay: ok, 4 new acquisition(s)" in out
    m = json.loads((tmp_path / "dask" / big / "manifest.json").read_text())
    n_tiles = m["parameters"]["tiling"]["n_tiles"]
    assert n_tiles == 6 and "tiling" not in json.loads((tmp_path / "dask" / "tiny-quay" / "manifest.json").read_text())["parameters"]
    # every tile of every used acquisition (and the tiny AOI) ran on the workers
    assert _executed(cluster) - before >= n_tiles * 4 + 1
    for aoi in (big, "tiny-quay"):
        a, b = _outputs(tmp_path / "serial", aoi), _outputs(tmp_path / "dask", aoi)
        assert sorted(a) == sorted(b) and "changes.geojson" in a
        assert [n for n in a if a[n] != b[n]] == [], aoi
        with State(tmp_path / "serial" / "state.sqlite") as s1, State(tmp_path / "dask" / "state.sqlite") as s2:
            assert s1.snapshot(aoi) == s2.snapshot(aoi)
    assert not list((tmp_path / "dask" / big / "runs").glob(".tmp-*"))
