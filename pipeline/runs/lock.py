"""Per-AOI run lock: ``fcntl.flock`` on ``ROOT/<aoi-id>/.lock`` with the holder's pid inside.

The kernel releases a ``flock`` when its process dies (even by SIGKILL), so a lock left by a dead
run is recovered simply by locking again; the pid left in the file only tells us, for the log,
that the previous holder died without unlocking. Locks are per open file description, so two
locks on one AOI conflict even inside one process.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from pathlib import Path

from ..errors import LockHeldError, StateError

log = logging.getLogger(__name__)

__all__ = ["AOILock", "pid_alive"]


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists (signal 0 probe)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class AOILock:
    """Exclusive, non-blocking lock of one AOI's output folder.

    Parameters
    ----------
    path : path
        The lock file, normally ``ROOT/<aoi-id>/.lock`` (folders are created).
    aoi_id : str
        For messages.

    Raises
    ------
    LockHeldError
        From :meth:`acquire` when another live run holds it (message names the pid and file).

    Examples
    --------
    >>> with AOILock(root / "tartus-port" / ".lock", aoi_id="tartus-port"):   # doctest: +SKIP
    ...     process()
    """

    def __init__(self, path: str | os.PathLike, *, aoi_id: str = ""):
        self.path = Path(path)
        self.aoi_id = aoi_id or self.path.parent.name
        self._fd: int | None = None
        self.recovered_from: int | None = None
        """pid of a dead previous holder whose lock was recovered, else None."""

    def acquire(self) -> "AOILock":
        if self._fd is not None:
            raise StateError(f"lock {self.path} is already held by this object")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StateError(f"cannot open lock file {self.path}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                who = f"pid {holder}" if holder else "another process"
                raise LockHeldError(
                    f"AOI {self.aoi_id!r} is being processed by {who} (lock {self.path}); "
                    "wait for it to finish (the lock frees itself when that process ends)"
                ) from exc
            raise StateError(f"cannot lock {self.path}: {exc.strerror or exc}") from exc
        previous = _read_pid(fd)
        if previous and previous != os.getpid() and not pid_alive(previous):
            self.recovered_from = previous
            log.warning("recovered the stale lock of %s left by dead pid %d", self.aoi_id, previous, extra={"aoi": self.aoi_id})
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "AOILock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        raw = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(raw) if raw else None
    except (OSError, ValueError):
        return None
