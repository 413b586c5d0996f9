"""The monitoring commands end to end: run, status, config show, cron (under cron's bare
environment), alerts to a local webhook, exit codes. Offline: the simulated source, a short
period and a config file with the fast detector settings (no IR-MAD, no co-registration)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipeline.cli.main import main

AOI = "tartus-naval-facility"
S2WATCH = Path(sys.executable).absolute().parent / "s2watch"
SLACK = "https://hooks.slack.com/services/T0AAAA111/B0BBBB222/abcDEF123ghiJKL456mno"

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


@pytest.fixture
def cfg_file(tmp_path):
    p = tmp_path / "conf" / "s2watch.toml"
    p.parent.mkdir()
    p.write_text(FAST_TOML)
    return p


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    for k in list(os.environ):
        if k.startswith("S2WATCH_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config-here"))


class Hook:
    def __init__(self):
        self.bodies = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                outer.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook/TOKEN0123456789abcdef"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.network_local
def test_run_alerts_fail_on_change_then_rerun_and_status(cfg_file, tmp_path, capsys):
    """What the simulated detector finds is its business; the CLI must be consistent with it:
    exit 3 and one webhook post exactly when changes were confirmed, listing those of the GeoJSON.
    (tests/runs/test_monitor.py checks confirmation itself on planted changes.)"""
    hook = Hook()
    root = tmp_path / "out"
    try:
        code = main(["--config", str(cfg_file), "run", AOI, "--out", str(root), "--notify", hook.url, "--fail-on-change"])
    finally:
        hook.close()
    out = capsys.readouterr().out
    assert f"{AOI}: ok, 4 new acquisition(s) (3 used, 1 skipped)" in out
    geo = json.loads((root / AOI / "changes.geojson").read_text())
    confirmed = sorted(f["properties"]["id"] for f in geo["features"] if f["properties"]["status"] in ("confirmed", "persisting"))
    assert code == (3 if confirmed else 0), out
    assert len(hook.bodies) == (1 if confirmed else 0)
    if confirmed:
        assert sorted(c["id"] for c in hook.bodies[0]["changes"]) == confirmed
        assert "alert delivered to 1/1 webhook(s)" in out
    # nothing new: exit 0 even with --fail-on-change (the changes were reported already)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in (root / AOI).iterdir() if p.name != ".lock")
    assert main(["--config", str(cfg_file), "run", AOI, "--out", str(root), "--fail-on-change"]) == 0
    assert "no_new_data" in capsys.readouterr().out
    assert sorted((p.name, p.stat().st_mtime_ns) for p in (root / AOI).iterdir() if p.name != ".lock") == before
    assert main(["status", "--out", str(root), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["aoi"] == AOI and row["last_run_status"] == "no_new_data"
    assert row["last_acquisition"] == "2024-09-16" and row["acquisitions"] == {"used": 3, "skipped": 1}
    assert sorted(c["id"] for c in row["open_changes"]) == confirmed
    assert main(["status", "--out", str(root)]) == 0
    text = capsys.readouterr().out
    assert AOI in text and "no_new_data" in text and "2024-09-16 (used)" in text


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run"], "name at least one AOI or use --all"),
        (["run", AOI, "--all"], "give AOI ids or --all, not both"),
        (["run", AOI, "--since", "2024-13-01"], "--since '2024-13-01' is not a valid date"),
        (["run", AOI, "--scheduler", "tcp://127.0.0.1:1"], "--scheduler needs --executor dask"),
        (["run", AOI, "--confirm-after", "0"], "confirm_after must be >= 1"),
        (["cron", "--every", "1d"], "give --aoi ID (repeatable) or --all"),
        (["cron", "--aoi", AOI, "--every", "7m"], "minutes must divide 60"),
        (["cron", "--aoi", AOI, "--every", "daily"], "use a number and a unit"),
        (["status", "--out", "/nonexistent/s2watch"], "no state database here"),
    ],
)
def test_usage_errors_exit_2_with_a_clear_message(argv, message, capsys, tmp_path):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_bad_config_file_exits_2_naming_file_and_key(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[monitor]\nconfirm_after = 'twice'\n")
    assert main(["--config", str(bad), "run", AOI, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "monitor.confirm_after" in err and "'twice'" in err
    assert not (tmp_path / "state.sqlite").exists()


def test_config_show_masks_secrets_and_honours_precedence(tmp_path, capsys, monkeypatch):
    p = tmp_path / "c.toml"
    p.write_text(
        f'[monitor]\nsource = "earth-search"\n[alerts]\nwebhooks = ["{SLACK}"]\n'
        '[sources.sentinelhub]\nclient_id = "abc"\nclient_secret = "SUPERSECRET42"\n'
    )
    monkeypatch.setenv("S2WATCH_SOURCE", "cdse")
    assert main(["--config", str(p), "config", "show"]) == 0
    out = capsys.readouterr().out
    assert "SUPERSECRET42" not in out and "abcDEF123ghiJKL456mno" not in out
    assert 'source = "cdse"' in out  # environment beats file
    assert "hooks.slack.com/services/****" in out and 'client_secret = "****"' in out
    assert main(["--config", str(p), "config", "show", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["source"] == "cdse"
    assert main(["--config", str(p), "config", "path"]) == 0
    assert capsys.readouterr().out.strip() == str(p)


def test_cron_line_runs_under_a_bare_environment_from_another_directory(cfg_file, tmp_path):
    if not S2WATCH.is_file():
        pytest.skip(f"{S2WATCH} not found: run `make install` to create the console script")
    root = tmp_path / "cron-out"
    line = subprocess.run(
        [str(S2WATCH), "--config", str(cfg_file), "cron", "--aoi", AOI, "--every", "1d", "--out", str(root)],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    fields = line.split(" ", 5)
    assert len(fields) == 6 and fields[2:5] == ["*", "*", "*"]
    assert 0 <= int(fields[0]) < 60 and 0 <= int(fields[1]) < 24
    command = fields[5]
    assert str(S2WATCH) in command and str(cfg_file) in command and "--log-json" in command
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = subprocess.run(["env", "-i", "PATH=/usr/bin:/bin", "sh", "-c", command], cwd=elsewhere, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""  # everything went to the log file
    records = [json.loads(x) for x in (root / "cron.log").read_text().splitlines()]  # every line is JSON
    logs = [r for r in records if "level" in r]
    assert logs and {"time", "level", "logger", "message"} <= set(logs[0])
    assert any(r.get("aoi") == AOI for r in logs)
    done = [r for r in records if r.get("event") == "aoi_done"]
    assert [(r["aoi"], r["status"], r["n_new"]) for r in done] == [(AOI, "ok", 4)]
    assert records[-1]["event"] == "run_done" and records[-1]["exit_code"] == 0
    assert (root / AOI / "manifest.json").is_file()
    assert list(elsewhere.iterdir()) == []


def test_cron_systemd_units_have_absolute_paths(cfg_file):
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli.main", "--config", str(cfg_file), "cron", "--aoi", AOI, "--every", "6h", "--systemd", "--out", "/srv/s2"],
        capture_output=True, text=True, check=True,
    )
    out = proc.stdout
    exec_line = next(x for x in out.splitlines() if x.startswith("ExecStart="))
    argv = shlex.split(exec_line[len("ExecStart="):])
    assert Path(argv[0]).is_absolute() and argv[argv.index("--out") + 1] == "/srv/s2"
    assert argv[argv.index("--config") + 1] == str(cfg_file)
    assert "OnCalendar=*-*-* 00/6:" in out and "Persistent=true" in out and "SuccessExitStatus=3 75" in out


def test_config_show_output_is_a_loadable_config_file(cfg_file, tmp_path, capsys):
    from pipeline.config import load_config

    assert main(["--config", str(cfg_file), "config", "show"]) == 0
    shown = tmp_path / "shown.toml"
    shown.write_text(capsys.readouterr().out)
    a, b = load_config(cfg_file, env={}), load_config(shown, env={})
    assert a.masked() | {"config_path": None} == b.masked() | {"config_path": None}


def test_all_means_the_configured_aois_else_the_catalogue(tmp_path):
    from pipeline.config import Config
    from pipeline.errors import UsageError
    from pipeline.runs.monitor import resolve_aois

    assert resolve_aois(Config(output_root=tmp_path, aois=("b", "a")), all_aois=True) == ["b", "a"]
    every = resolve_aois(Config(output_root=tmp_path), all_aois=True)
    assert AOI in every and "khmeimim" in every and every == sorted(every)
    assert resolve_aois(Config(output_root=tmp_path), ["x", "x", "y"]) == ["x", "y"]
    with pytest.raises(UsageError):
        resolve_aois(Config(output_root=tmp_path))


@pytest.mark.parametrize(
    "table, message",
    [("min_cva = 0.05\nthreshhold = 'otsu'\n", r"\[thresholds\]: unknown key\(s\) threshhold; valid keys: bands, "),
     ("threshold = 'median'\n", r"\[thresholds\]: threshold 'median': use one of .*otsu")],
)
def test_bad_thresholds_are_a_config_error(tmp_path, capsys, table, message):
    import re

    p = tmp_path / "t.toml"
    p.write_text("[thresholds]\n" + table)
    assert main(["--config", str(p), "run", AOI, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and str(p) in err
    assert not (tmp_path / "o").exists()


def test_aoi_locked_by_another_run_exits_75(cfg_file, tmp_path, capsys):
    from pipeline.runs.lock import AOILock

    root = tmp_path / "out"
    with AOILock(root / AOI / ".lock", aoi_id=AOI):
        assert main(["--config", str(cfg_file), "run", AOI, "--out", str(root)]) == 75
    out = capsys.readouterr().out
    assert f"{AOI}: locked: AOI '{AOI}' is being processed by pid {os.getpid()}" in out
    assert not (root / AOI / "manifest.json").exists()
