"""Harmonisation: remove each acquisition's DN offset (processing baseline 04.00) -> float32 reflectance.

The offset is decided per acquisition from metadata (``Acquisition.offset``, which sources fill from
``s2:processing_baseline``, ``earthsearch:boa_offset_applied`` or Sentinel Hub's harmonisation),
never from the sensing date alone: Collection-1 reprocessing gives old dates the offset too.
A sanity check on the data flags an offset the pixels contradict (most DN below the offset).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import DataError
from ..scene import Acquisition, SceneStack

log = logging.getLogger(__name__)

__all__ = ["Harmonised", "offset_handling", "harmonise"]

SUSPECT_BELOW_OFFSET = 0.5
"""Fraction of valid DN below the recorded offset above which the offset is reported as suspect."""


@dataclass(frozen=True, eq=False)
class Harmonised:
    """Harmonised reflectance of a stack.

    Attributes
    ----------
    reflectance : (T, B, H, W) float32
        ``(DN - offset) / 10000``; NaN where no data (``valid`` false or DN 0 in any band).
    bands : tuple of str
    offsets : tuple of int
        DN offset removed per acquisition.
    handling : tuple of str
        How each offset was decided, e.g. ``"metadata: baseline 04.00 -> -1000"``.
    """

    reflectance: np.ndarray
    bands: tuple[str, ...]
    offsets: tuple[int, ...]
    handling: tuple[str, ...]


def offset_handling(acq: Acquisition) -> tuple[int, str]:
    """The DN offset to remove from ``acq`` and a sentence saying how it was decided."""
    off = int(acq.offset)
    if off < 0:
        raise DataError(f"acquisition {acq.id}: negative DN offset {off} in metadata; the source is misconfigured")
    pb = acq.processing_baseline or "unknown"
    if off:
        return off, f"metadata: baseline {pb}, offset {off} present -> -{off}"
    return 0, f"metadata: baseline {pb}, no offset"


def harmonise(stack: SceneStack, *, bands: Sequence[str] | None = None) -> Harmonised:
    """Float32 reflectance of every acquisition with its DN offset removed.

    Parameters
    ----------
    stack : SceneStack
        ``data`` (T, B, H, W) uint16 DN as delivered.
    bands : sequence of str or None
        Bands to convert (default: all of the stack's).

    Returns
    -------
    Harmonised

    Raises
    ------
    DataError
        A band is missing from the stack or an offset is negative.

    Notes
    -----
    Memory: the output, T x B x H x W x 4 bytes.
    """
    bands = tuple(bands or stack.bands)
    missing = [b for b in bands if b not in stack.bands]
    if missing:
        raise DataError(f"stack lacks band(s) {', '.join(missing)} (has {', '.join(stack.bands)}); read them from the source")
    from ..kernels import _numba as K

    sel = np.array([stack.bands.index(b) for b in bands], dtype=np.int64)
    T = len(stack)
    H, W = stack.grid.shape
    out = np.empty((T, len(bands), H, W), dtype=np.float32)
    counts = np.empty((H, 2), dtype=np.int64)  # per row: values with data, of which below the offset
    offsets, handling = [], []
    for t, acq in enumerate(stack.acquisitions):
        off, how = offset_handling(acq)
        dn = np.ascontiguousarray(stack.data[t], dtype=np.uint16)
        K.dn_to_reflectance(dn, sel, np.ascontiguousarray(stack.valid[t], dtype=bool), np.float32(off), out[t], counts)
        n_good, n_below = (int(c) for c in counts.sum(axis=0))
        if off and n_good and n_below / n_good > SUSPECT_BELOW_OFFSET:  # counted in the conversion pass
            how += f" (suspect: {100 * n_below / n_good:.0f}% of DN below the offset)"
            log.warning("acquisition %s: offset %d recorded but most DN are below it", acq.id, off)
        offsets.append(off)
        handling.append(how)
    return Harmonised(out, bands, tuple(offsets), tuple(handling))
