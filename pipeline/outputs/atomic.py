"""Atomic file writes: a temporary file in the destination folder, then ``os.replace``.

A reader never sees a half-written output: either the old file (or none) or the complete new one.
The temporary file sits in the same folder so that ``os.replace`` is a rename on one file system.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

log = logging.getLogger(__name__)

__all__ = ["atomic_path", "write_bytes", "write_text", "write_json", "sha256_file", "json_dumps"]


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it onto ``path``.

    The caller (or a library such as GDAL) writes the complete file to the yielded path. When the
    block raises, the temporary file is removed and ``path`` is left untouched.

    Parameters
    ----------
    path : path-like
        Final destination. Its folder must exist.

    Yields
    ------
    pathlib.Path
        A not-yet-existing path in the same folder, with the same suffix (drivers look at it).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    tmp_path.unlink()  # drivers such as GDAL want to create the file themselves
    try:
        yield tmp_path
        if not tmp_path.exists():
            raise FileNotFoundError(f"nothing was written to the temporary file for {path}")
        os.replace(tmp_path, path)
    except BaseException:
        for leftover in (tmp_path, Path(str(tmp_path) + ".aux.xml")):
            try:
                leftover.unlink()
            except FileNotFoundError:
                pass
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (flushed and fsync'ed before the rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` with ``\\n`` line ends to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def json_dumps(obj: Any, *, indent: int | None = 2) -> str:
    """Deterministic JSON: sorted keys, no NaN/Infinity (they are not JSON), trailing newline."""
    return json.dumps(obj, indent=indent, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2) -> Path:
    """Write ``obj`` as deterministic JSON (see :func:`json_dumps`) atomically."""
    return write_text(path, json_dumps(obj, indent=indent))


def sha256_file(path: str | os.PathLike, *, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
