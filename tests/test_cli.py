"""The s2watch command: usage errors exit 2 with a message naming the bad value."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli.options import parse_when
from pipeline.errors import UsageError
from pipeline.sources import get_source

S2W = str(Path(sys.executable).parent / "s2watch")


def _run(*args, cwd=None):
    return subprocess.run([S2W, *args], capture_output=True, text=True, cwd=cwd)


def test_parse_when_accepts_day_and_interval():
    from datetime import date

    assert parse_when("2024-01-05") == (date(2024, 1, 5), date(2024, 1, 5))
    assert parse_when("2024-01-01/2024-02-01") == (date(2024, 1, 1), date(2024, 2, 1))


@pytest.mark.parametrize("bad", ["2024-13-01", "20240101", "2024-02-01/2024-01-01", "a/b/c", ""])
def test_parse_when_rejects_with_the_value(bad):
    with pytest.raises(UsageError) as ei:
        parse_when(bad, what="--before")
    assert "--before" in str(ei.value)


def test_detect_with_bad_date_exits_2_naming_it(tmp_path):
    r = _run("detect", "maaten-al-sarra", "--before", "2024-02-30", "--after", "2025-01-01", "--out", str(tmp_path / "o"))
    assert r.returncode == 2
    assert "2024-02-30" in r.stderr
    assert not (tmp_path / "o").exists()


def test_detect_with_unknown_aoi_exits_2(tmp_path):
    r = _run("detect", "atlantis", "--before", "2024-01-01", "--after", "2025-01-01", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "atlantis" in r.stderr
    assert not (tmp_path / "o").exists()


def test_detect_searches_with_the_max_cloud_asked_for(tmp_path):
    """--max-cloud reaches the search: the scenes above it are neither counted nor read."""
    import json

    from pipeline.cli.main import main

    args = ["detect", "maaten-al-sarra", "--source", "simulated", "--before", "2024-03-01/2024-05-31",
            "--after", "2025-05-01/2025-07-31"]
    counts = {}
    for mc in ("80", "10"):
        out = tmp_path / mc
        assert main([*args, "--max-cloud", mc, "--out", str(out)]) == 0
        m = json.loads((out / "manifest.json").read_text())
        assert m["parameters"]["max_cloud"] == float(mc)
        assert all(a["cloud_cover"] < float(mc) for a in m["acquisitions"])
        counts[mc] = len(m["acquisitions"])
    assert counts["10"] < counts["80"]


def test_unknown_source_lists_valid_ones():
    with pytest.raises(UsageError) as ei:
        get_source("landsat-99")
    msg = str(ei.value)
    assert "landsat-99" in msg and "simulated" in msg and "earth-search" in msg


def test_no_command_prints_help_and_exits_2():
    r = _run()
    assert r.returncode == 2 and "usage" in r.stderr.lower()


def test_version():
    r = _run("--version")
    assert r.returncode == 0 and r.stdout.startswith("s2watch ")


def test_the_program_collects_garbage_less_often_and_main_leaves_it_alone():
    """The ``s2watch`` program raises the collector's thresholds (fewer walks over the libraries'
    objects); :func:`main` called from another program leaves that program's settings."""
    from pipeline.cli.main import PROGRAM_GC_THRESHOLD

    code = (
        "import atexit, gc, sys; from pipeline.cli.main import console_main, main; "
        "main(['aois', 'list']); print('LIB', gc.get_threshold(), file=sys.stderr); "
        "atexit.register(lambda: print('PROG', gc.get_threshold(), file=sys.stderr)); "
        "sys.argv = ['s2watch', 'aois', 'list']; console_main()"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    import gc

    assert f"LIB {gc.get_threshold()}" in r.stderr
    assert f"PROG {PROGRAM_GC_THRESHOLD}" in r.stderr


@pytest.mark.parametrize("env, expected", [(None, "False"), ("1", "True")])
def test_entry_point_stops_numpy_huge_page_marks_unless_asked(env, expected):
    """A real ``s2watch`` process: NumPy no longer marks large arrays MADV_HUGEPAGE (synchronous
    compaction stalls on first touch), unless the user set NUMPY_MADVISE_HUGEPAGE."""
    import os

    code = (
        "import sys, numpy as np; from pipeline.cli.main import main; main(['aois', 'list']); "
        "print('HP', bool(np._core.multiarray._get_madvise_hugepage()), file=sys.stderr)"
    )
    env_vars = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    if env is not None:
        env_vars["NUMPY_MADVISE_HUGEPAGE"] = env
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env_vars, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"HP {expected}" in r.stderr


def test_allocator_setting_is_applied_once_and_can_be_switched_off(monkeypatch):
    """The s2watch entry point keeps freed image-sized blocks for reuse on glibc; S2WATCH_KEEP_MEMORY=0
    leaves the allocator alone."""
    import platform

    import pipeline._alloc as A

    monkeypatch.setattr(A, "_done", False)
    monkeypatch.setenv("S2WATCH_KEEP_MEMORY", "0")
    assert A.keep_freed_memory() is False and A._done is False
    monkeypatch.delenv("S2WATCH_KEEP_MEMORY")
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's; elsewhere the call is a no-op")
    assert A.keep_freed_memory() is True and A._done is True


_ARENA_PROBE = r"""
import re, threading, numpy as np
from pipeline._alloc import keep_freed_memory
keep_freed_memory()
def rss():
    return int(re.search(r"VmRSS:\s+(\d+)", open("/proc/self/status").read()).group(1)) << 10
def blocks():  # what a reading thread leaves behind: many block-sized buffers, touched, then freed
    bufs = [np.ones(1 << 20, np.uint8) for _ in range(200)]
    del bufs
t = threading.Thread(target=blocks); t.start(); t.join()
r0 = rss()
a = np.ones(150 << 20, np.uint8)  # the main thread's next arrays
print("GROWTH", rss() - r0)
"""


def test_memory_freed_by_reading_threads_is_reused_by_the_main_thread():
    """GDAL's reading threads free their decoded blocks when a file closes; with the entry point's
    allocator settings the main thread's next image-sized arrays reuse that memory instead of
    adding to the peak (one malloc arena for all threads)."""
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's; elsewhere the call is a no-op")
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_ARENA_MAX", "S2WATCH_KEEP_MEMORY")}
    r = subprocess.run([sys.executable, "-c", _ARENA_PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    growth = int(r.stdout.split("GROWTH")[1])
    assert growth < 60 << 20, f"the main thread's 150 MiB array grew RSS by {growth >> 20} MiB"
