"""Per-pixel median composites of the clear observations of a time window.

A median over several clear acquisitions drops clouds the masks missed, aircraft on an apron and
ships in a port (transients present in a minority of dates), and leaves a persistent change in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["Composite", "median_composite"]

DEFAULT_BLOCK_BYTES = 128 * 2**20


@dataclass(frozen=True, eq=False)
class Composite:
    """A composite of one window.

    Attributes
    ----------
    median : (B, H, W) float32
        Per-pixel median reflectance of the clear observations; NaN where there is none.
    count : (H, W) uint16
        Number of clear observations per pixel.
    """

    median: np.ndarray
    count: np.ndarray


def median_composite(
    values: np.ndarray,
    clear: np.ndarray | None = None,
    *,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> Composite:
    """Per-pixel median over time of the clear observations, blockwise over rows.

    Parameters
    ----------
    values : (T, B, H, W) float32
        Reflectance; NaN where no data (such observations are ignored).
    clear : (T, H, W) bool or None
        True where the observation is clear; None = every non-NaN observation.
    block_bytes : int
        Upper bound of the temporary copy per block of rows, bytes.

    Returns
    -------
    Composite
        ``median`` (B, H, W) float32 (for an even count the mean of the two middle values) and
        ``count`` (H, W) uint16.

    Notes
    -----
    Memory: one block copy of ``values`` (at most ``block_bytes``) plus the outputs. An
    observation is used for a pixel only when all its bands are finite, so every band of the
    median comes from the same set of dates.
    """
    values = np.asarray(values)
    if values.ndim != 4:
        raise ValueError(f"values must be (T, B, H, W), got shape {values.shape}")
    T, B, H, W = values.shape
    if clear is not None and clear.shape != (T, H, W):
        raise ValueError(f"clear must have shape {(T, H, W)}, got {clear.shape}")
    median = np.full((B, H, W), np.nan, dtype=np.float32)
    count = np.zeros((H, W), dtype=np.uint16)
    if T == 0:
        return Composite(median, count)
    row_bytes = max(T * B * W * 4, 1)
    rows = int(max(1, min(H, block_bytes // row_bytes)))
    for r0 in range(0, H, rows):
        r1 = min(H, r0 + rows)
        blk = values[:, :, r0:r1].astype(np.float32, copy=True)  # (T, B, h, W)
        ok = ~np.isnan(blk).any(axis=1)
        if clear is not None:
            ok &= clear[:, r0:r1]
        blk[~np.broadcast_to(ok[:, None], blk.shape)] = np.nan
        blk.sort(axis=0)  # NaN sort last
        n = ok.sum(axis=0)  # (h, W)
        lo = np.clip((n - 1) // 2, 0, T - 1)
        hi = np.clip(n // 2, 0, T - 1)
        vlo = np.take_along_axis(blk, np.broadcast_to(lo[None, None], (1, B) + lo.shape), axis=0)[0]
        vhi = np.take_along_axis(blk, np.broadcast_to(hi[None, None], (1, B) + hi.shape), axis=0)[0]
        m = 0.5 * (vlo + vhi)
        m[:, n == 0] = np.nan
        median[:, r0:r1] = m
        count[r0:r1] = n
    return Composite(median, count)
