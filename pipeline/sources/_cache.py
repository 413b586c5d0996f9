"""A small on-disk cache of decoded source responses: one ``.npz`` per request.

The key is a sha256 of a JSON description of the request *without* credentials or signed URLs
(the sentinelhub client's own ``data_folder`` cache stores the bearer token in ``request.json``,
so it is not used). Entries are written to a temporary file in the same folder and moved into
place with ``os.replace``, so a crash never leaves a half-written entry; an unreadable entry is
dropped and fetched again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["ArrayCache", "request_key"]


def request_key(description: Any) -> str:
    """sha256 hex digest of a JSON-serialisable request description (keys sorted)."""
    text = json.dumps(description, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ArrayCache:
    """Arrays by key under ``root`` (created on first write).

    Parameters
    ----------
    root : path or None
        Folder of the cache; None disables caching (every ``get`` misses, ``put`` does nothing).
    """

    def __init__(self, root: "str | os.PathLike | None"):
        self.root = Path(root).expanduser() if root is not None else None
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return f"ArrayCache({str(self.root)!r})"

    def path(self, key: str) -> Path | None:
        if self.root is None:
            return None
        return self.root / key[:2] / f"{key}.npz"

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        """The arrays stored under ``key``, or None (missing or unreadable: the entry is removed)."""
        p = self.path(key)
        if p is None or not p.is_file():
            self.misses += 1
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                out = {k: z[k] for k in z.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            log.warning("cache entry %s unreadable (%s); fetching again", p, exc)
            p.unlink(missing_ok=True)
            self.misses += 1
            return None
        self.hits += 1
        return out

    def put(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        """Store ``arrays`` under ``key`` atomically (temp file + ``os.replace``)."""
        p = self.path(key)
        if p is None:
            return
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=p.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def entries(self) -> list[Path]:
        """Complete entries currently stored (temporary files excluded)."""
        if self.root is None or not self.root.is_dir():
            return []
        return sorted(q for q in self.root.rglob("*.npz") if not q.name.startswith(".tmp-"))
