"""``manifest.json``: what was run, on what, and what came out (with checksums).

Apart from ``written_at`` (UTC time of writing) and ``timings["outputs"]`` (seconds spent writing
the other files) the manifest depends only on its inputs, so two writes of the same result differ
in those two values only.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping

from .. import __version__
from ..errors import UsageError
from ..objects.model import CHANGE_CLASSES
from .atomic import sha256_file, write_json
from .geojson import jsonable

__all__ = ["build_manifest", "check_extra", "write_manifest", "MANIFEST_VERSION", "RESERVED_KEYS", "VOLATILE_KEYS"]

MANIFEST_VERSION = 1
VOLATILE_KEYS = ("written_at", "timings.outputs")
"""Manifest entries (dotted paths) that differ between two writes of the same result."""
RESERVED_KEYS = (
    "manifest_version", "software", "written_at", "aoi", "grid", "source", "before", "after",
    "parameters", "acquisitions", "timings", "objects", "outputs",
)  # fmt: skip
"""Top-level keys the manifest owns; ``extra`` may not reuse them."""


def check_extra(extra: Mapping | None) -> None:
    """Raise :class:`UsageError` when ``extra`` reuses a key of :data:`RESERVED_KEYS`."""
    for key in extra or {}:
        if key in RESERVED_KEYS:
            raise UsageError(f"extra_manifest key {key!r} would overwrite the manifest's own {key!r}; rename it")


def build_manifest(
    result, files: Mapping[str, Path], *, extra: Mapping | None = None, now: datetime | None = None, write_seconds: float | None = None
) -> dict:
    """The manifest as a dict.

    Parameters
    ----------
    result : DetectionResult
    files : mapping of name -> path
        Every output written before the manifest; each gets ``file``, ``bytes`` and ``sha256``.
    extra : mapping, optional
        Extra top-level keys (e.g. run id, command line). Must not reuse a key the manifest owns.
    write_seconds : float, optional
        Time spent writing the outputs, recorded as ``timings["outputs"]``.

    Raises
    ------
    UsageError
        When ``extra`` would overwrite a manifest key.
    """
    aoi = result.aoi
    counts = {c: sum(1 for o in result.objects if o.cls == c) for c in CHANGE_CLASSES}
    doc = {
        "manifest_version": MANIFEST_VERSION,
        "software": {"name": "s2watch", "version": __version__},
        "written_at": (now or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "aoi": {"id": aoi.id, "name": aoi.name, "kind": aoi.kind, "digest": aoi.digest, "path": aoi.path},
        "grid": result.grid.to_dict(),
        "source": result.source,
        "before": result.before,
        "after": result.after,
        "parameters": jsonable(result.parameters),
        "acquisitions": [jsonable(a.to_dict()) for a in result.acquisitions],
        "timings": jsonable({**result.timings, **({"outputs": round(write_seconds, 3)} if write_seconds is not None else {})}),
        "objects": {"count": len(result.objects), "by_class": counts},
        "outputs": {
            name: {"file": Path(p).name, "bytes": os.path.getsize(p), "sha256": sha256_file(p)} for name, p in sorted(files.items())
        },
    }
    check_extra(extra)
    assert set(doc) == set(RESERVED_KEYS)
    for key, value in (extra or {}).items():
        doc[str(key)] = jsonable(value)
    return doc


def write_manifest(
    path: str | os.PathLike, result, files: Mapping[str, Path], *, extra: Mapping | None = None, write_seconds: float | None = None
) -> Path:
    """Build (see :func:`build_manifest`) and write ``manifest.json`` atomically."""
    return write_json(Path(path), build_manifest(result, files, extra=extra, write_seconds=write_seconds))
