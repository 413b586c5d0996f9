"""Keep freed large arrays in the process for reuse (glibc ``mallopt``).

A detection allocates and frees many image-sized arrays (hundreds of MB each on a large AOI).
glibc serves every block above 32 MiB with a fresh ``mmap`` and returns it to the kernel on free,
so each new array pays its page faults again: on virtual machines, where a first touch of memory
can cost as much as the arithmetic done on it, that was a quarter of the run time of ``s2watch
detect`` on a 4096 x 4096 AOI. With ``M_MMAP_MAX = 0`` and a large ``M_TRIM_THRESHOLD`` large blocks
come from the heap and stay there when freed, so the next array reuses pages already mapped. The
peak memory is unchanged (what is freed is reused, not added to); the process simply keeps its
peak until it exits, which suits a command-line run.

Freed memory is only reused by threads of the same malloc arena, and glibc gives each new thread
its own: the memory GDAL's reading threads freed (its block cache, flushed when a file closes)
stayed in their arenas, out of reach of the main thread's next arrays. So the threads share one
arena (``M_ARENA_MAX = 1``, unless ``MALLOC_ARENA_MAX`` is set): peak RSS of ``s2watch detect`` on
the 4096 x 4096 bench pair 2.26 -> 2.00 GB, same run time (three alternating runs each).

Called by the ``s2watch`` entry point only (a library user's process is left alone). Set
``S2WATCH_KEEP_MEMORY=0`` to leave the allocator at its defaults. A no-op off glibc.

The entry point also stops NumPy from asking for transparent huge pages on its large arrays
(:func:`no_hugepage_stalls`), unless ``NUMPY_MADVISE_HUGEPAGE`` is set.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_done = False


def keep_freed_memory() -> bool:
    """Apply the settings once; True when glibc accepted them."""
    global _done
    if _done:
        return True
    if os.environ.get("S2WATCH_KEEP_MEMORY", "1").strip().lower() in ("0", "no", "false", "off"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to tune
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    if ok and "MALLOC_ARENA_MAX" not in os.environ:
        ok = bool(mallopt(_M_ARENA_MAX, 1))
    _done = ok
    log.debug("allocator: keep freed memory for reuse: %s", "on" if ok else "refused")
    return ok


def no_hugepage_stalls() -> bool:
    """Stop NumPy marking its large arrays ``MADV_HUGEPAGE``, unless ``NUMPY_MADVISE_HUGEPAGE``
    is set (then NumPy's own reading of it stands). True when switched off here.

    With the kernel's transparent huge pages in ``madvise`` mode (Debian's and Ubuntu's default)
    and its ``defrag`` setting ``madvise`` or ``defer+madvise``, the first touch of a marked region
    while no huge page is free makes the kernel compact memory synchronously; after the inputs have
    filled the page cache that is the usual case, and the mark stays on heap memory that later
    arrays reuse (numpy issue 31590). Measured on this project's VM, ``s2watch detect`` on the
    4096 x 4096 bench pair: 7.4-8.6 s with the mark, 6.5-7.6 s without (three runs each,
    alternating; system time 2.8-4.5 s against 1.7-2.2 s).
    """
    if "NUMPY_MADVISE_HUGEPAGE" in os.environ:
        return False
    import numpy as np

    multiarray = getattr(getattr(np, "_core", None), "multiarray", None) or np.core.multiarray
    setter = getattr(multiarray, "_set_madvise_hugepage", None)
    if setter is None:  # pragma: no cover - every NumPy we support has it
        return False
    setter(False)
    log.debug("numpy: no MADV_HUGEPAGE on large arrays")
    return True
