"""Per-pixel median composites of the clear observations of a time window.

A median over several clear acquisitions drops clouds the masks missed, aircraft on an apron and
ships in a port (transients present in a minority of dates), and leaves a persistent change in.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["Composite", "median_composite", "sorting_network"]

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
    values: np.ndarray, clear: np.ndarray | None = None, *, overwrite: bool = False, bands=None
) -> Composite:
    """Per-pixel median over time of the clear observations.

    Parameters
    ----------
    values : (T, B, H, W) float32
        Reflectance; NaN where no data (such observations are ignored).
    clear : (T, H, W) bool or None
        True where the observation is clear; None = every non-NaN observation.
    overwrite : bool
        With a single date (T = 1) and every band, the median is written over ``values[0]`` and
        is a view of it (no copy); ``values`` must then be a float32 C-contiguous array.
    bands : sequence of int or None
        Indices (axis 1) of the bands composited, read in place (no copy of them); default all.

    Returns
    -------
    Composite
        ``median`` (len(bands), H, W) float32 (for an even count the mean of the two middle
        values) and ``count`` (H, W) uint16.

    Notes
    -----
    One parallel numba pass over the rows (:func:`pipeline.kernels._numba.median_over_time`; three
    or more dates are sorted by :func:`sorting_network` across whole rows); memory: the outputs
    and a (T, W) buffer per thread (one or two dates need no sort). An observation is used for a
    pixel only when all its composited bands are finite, so every band of the median comes from
    the same set of dates.
    """
    from ..kernels import _numba as K

    values = np.asarray(values)
    if values.ndim != 4:
        raise ValueError(f"values must be (T, B, H, W), got shape {values.shape}")
    T, B, H, W = values.shape
    sel = np.arange(B, dtype=np.int64) if bands is None else np.asarray(bands, dtype=np.int64).reshape(-1)
    if sel.size == 0 or sel.min() < 0 or sel.max() >= B:
        raise ValueError(f"bands must be indices 0..{B - 1} of axis 1, got {list(sel)}")
    if clear is not None and clear.shape != (T, H, W):
        raise ValueError(f"clear must have shape {(T, H, W)}, got {clear.shape}")
    count = np.zeros((H, W), dtype=np.uint16)
    if T == 0:
        return Composite(np.full((sel.size, H, W), np.nan, dtype=np.float32), count)
    values = np.ascontiguousarray(values, dtype=np.float32)
    # one date: the median is that date with NaN where it does not count, computed in place when
    # allowed (the kernel reads each value before it writes it)
    in_place = T == 1 and overwrite and bands is None
    median = values[0] if in_place else np.empty((sel.size, H, W), dtype=np.float32)
    use_clear = clear is not None
    clear_arr = np.ascontiguousarray(clear, dtype=bool) if use_clear else np.ones((1, 1, 1), bool)
    K.median_over_time(values, sel, clear_arr, use_clear, sorting_network(T), median, count)
    return Composite(median, count)


@functools.lru_cache(maxsize=None)
def sorting_network(n: int) -> np.ndarray:
    """Batcher's odd-even merge sort for ``n`` values, as (P, 2) int64 comparator pairs (a < b:
    the smaller value goes to a), in the order they apply.

    The network of the next power of two, without the comparators that reach past ``n`` (the
    missing slots would hold +inf, which such a comparator never moves). Branch-free: applied to
    whole rows of pixels at once it vectorises, where a per-pixel selection branches on every
    comparison. 262 comparators for 35 dates.
    """
    size = 1
    while size < n:
        size *= 2
    pairs = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    a, b = i + j, i + j + k
                    if a // (2 * p) == b // (2 * p) and b < n:
                        pairs.append((a, b))
            k //= 2
        p *= 2
    out = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    out.setflags(write=False)
    return out
