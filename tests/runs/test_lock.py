"""Per-AOI lock: exclusive across processes, pid inside, stale locks of dead processes recovered."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from pipeline.errors import LockHeldError
from pipeline.runs.lock import AOILock, pid_alive

HOLD = """
import sys, time
from pipeline.runs.lock import AOILock
lock = AOILock(sys.argv[1], aoi_id="t").acquire()
print("locked", flush=True)
time.sleep(60)
"""


def _holder(path):
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline().strip()
    p.stdout.close()
    assert line == "locked"
    return p


def test_second_lock_in_same_process_is_refused_then_freed(tmp_path):
    path = tmp_path / "t" / ".lock"
    with AOILock(path, aoi_id="t") as lk:
        assert lk.held and path.read_text().strip() == str(os.getpid())
        with pytest.raises(LockHeldError, match=rf"AOI 't' is being processed by pid {os.getpid()}"):
            AOILock(path, aoi_id="t").acquire()
    assert path.read_text() == ""  # released: pid removed
    with AOILock(path, aoi_id="t"):
        pass


def test_lock_held_by_a_live_process_names_its_pid(tmp_path):
    path = tmp_path / ".lock"
    p = _holder(path)
    try:
        with pytest.raises(LockHeldError, match=rf"pid {p.pid} \(lock {path}\)"):
            AOILock(path).acquire()
    finally:
        p.kill()
        p.wait()


def test_stale_lock_of_a_killed_process_is_recovered(tmp_path):
    path = tmp_path / ".lock"
    p = _holder(path)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert not pid_alive(p.pid)
    assert path.read_text().strip() == str(p.pid)  # the dead holder's pid is still in the file
    t0 = time.monotonic()
    lk = AOILock(path).acquire()
    assert time.monotonic() - t0 < 1.0
    assert lk.recovered_from == p.pid
    assert path.read_text().strip() == str(os.getpid())
    lk.release()
