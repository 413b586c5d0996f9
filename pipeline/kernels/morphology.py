"""Binary morphology of sparse change masks, with disc structuring elements.

A change mask sets a few percent of the grid. :func:`binary_closing` and :func:`binary_opening`
give exactly what ``scipy.ndimage`` gives for a disc (:func:`skimage.morphology.disk`), but work in
proportion to the set pixels (:mod:`._numba`): a dilation is scattered from the set pixels, an
erosion tested only where it can change something. On a 4096 x 4096 mask with 12 % set: closing
(radius 2) 0.13 s against 0.42 s, opening (radius 1) 0.03 s against 0.18 s. :func:`label` gives
``scipy.ndimage.label``'s labels with a union-find over the set pixels.
"""

from __future__ import annotations

import numpy as np

from ..errors import UsageError
from . import _numba

__all__ = ["binary_closing", "binary_opening", "binary_dilation", "label"]


def _disc_offsets(radius_px: int) -> tuple[np.ndarray, np.ndarray]:
    from skimage.morphology import disk

    return _offsets(disk(int(radius_px)).astype(bool))


def _offsets(structure: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row and column offsets of the set elements of an odd-sized, symmetric structuring element."""
    se = np.asarray(structure, dtype=bool)
    if se.ndim != 2 or se.shape[0] % 2 == 0 or se.shape[1] % 2 == 0 or not (se == se[::-1, ::-1]).all():
        raise UsageError(f"structure must be a 2-D bool array of odd sides, symmetric about its centre; got shape {se.shape}")
    off = np.argwhere(se) - np.array([se.shape[0] // 2, se.shape[1] // 2])
    return np.ascontiguousarray(off[:, 0], np.int64), np.ascontiguousarray(off[:, 1], np.int64)


def _check(mask, radius_px) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.ndim != 2:
        raise UsageError(f"mask must be a (H, W) bool array, got {mask.dtype} {mask.shape}")
    if not (isinstance(radius_px, (int, np.integer)) and radius_px >= 0):
        raise UsageError(f"radius_px must be a non-negative int, got {radius_px!r}")
    return np.ascontiguousarray(mask)


def binary_closing(mask: np.ndarray, *, radius_px: int) -> np.ndarray:
    """``mask`` OR its closing (dilation, then erosion) with a disc of ``radius_px`` pixels.

    Parameters
    ----------
    mask : (H, W) bool
    radius_px : int, keyword-only
        0 returns a copy.

    Returns
    -------
    (H, W) bool, new
        As ``mask | scipy.ndimage.binary_closing(np.pad(mask, r), disk(r))[r:-r, r:-r]``: the
        image is padded with ``r`` unset pixels, so its edge erodes like any unset pixel.

    Notes
    -----
    Memory: the output and one padded bool buffer.
    """
    mask = _check(mask, radius_px)
    out = np.empty_like(mask)
    if radius_px == 0 or not mask.any():
        out[...] = mask
        return out
    dy, dx = _disc_offsets(radius_px)
    _numba.binary_closing_sparse(mask, dy, dx, int(radius_px), out)
    return out


def binary_opening(mask: np.ndarray, *, radius_px: int) -> np.ndarray:
    """``scipy.ndimage.binary_opening(mask, structure=disk(radius_px))`` (outside the image
    counts as unset), in work proportional to the set pixels. 0 returns a copy."""
    mask = _check(mask, radius_px)
    out = np.empty_like(mask)
    if radius_px == 0:
        out[...] = mask
        return out
    dy, dx = _disc_offsets(radius_px)
    _numba.binary_opening_sparse(mask, dy, dx, out)
    return out


def _row_half_widths(structure: np.ndarray) -> np.ndarray | None:
    """Per row of a structuring element, the half-width of its run of set columns centred on the
    middle column (-1 for an empty row); None unless every row is such a run (a disc, a diamond,
    a rectangle of odd width)."""
    se = np.asarray(structure, dtype=bool)
    c = se.shape[1] // 2
    half = np.full(se.shape[0], -1, np.int64)
    for k, row in enumerate(se):
        cols = np.flatnonzero(row)
        if cols.size == 0:
            continue
        w = c - int(cols[0])
        if int(cols[-1]) != c + w or cols.size != 2 * w + 1 or w > 250:
            return None
        half[k] = w
    return half


DENSE_DILATION = 0.5
"""A dilation runs per row (:func:`._numba.binary_dilation_rows`, a few passes over the grid)
instead of scattering from the set pixels when set pixels x structure elements exceed this many
per grid pixel (measured on a 4096^2 mask with a radius-3 disc: equal cost near 1.2 % set; at
17 % set 50 ms against 120 ms)."""


def binary_dilation(mask: np.ndarray, structure: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.binary_dilation(mask, structure)`` for a symmetric structuring element
    (odd sides). A sparse mask (a few percent set) is scattered from its set pixels, so it costs
    that few percent; a dense one (a cloudy date) runs row by row in parallel when each row of the
    element is a centred run (:data:`DENSE_DILATION`). A new (H, W) bool array."""
    mask = _check(mask, 0)
    dy, dx = _offsets(structure)
    out = np.empty_like(mask)
    half = _row_half_widths(structure)
    if half is not None and np.count_nonzero(mask) * dy.size > DENSE_DILATION * mask.size:
        _numba.binary_dilation_rows(mask.view(np.uint8), half, out.view(np.uint8))
    else:
        _numba.binary_dilation_sparse(mask, dy, dx, out)
    return out


def label(mask: np.ndarray, *, connectivity: int = 2) -> tuple[np.ndarray, int]:
    """The connected regions of a (H, W) bool mask: ``scipy.ndimage.label(mask, structure=
    generate_binary_structure(2, connectivity), output=np.int32)``, same labels, numbered 1..n in
    raster order of their first pixel.

    One pass over the mask and a union-find over its set pixels (:func:`._numba.label_sparse`),
    serial: on the 4096^2 change mask of the speed benchmark, 10x faster than scipy's.

    Parameters
    ----------
    mask : (H, W) bool
    connectivity : {1, 2}, keyword-only
        1: edge neighbours join; 2 (default): diagonal neighbours too.

    Returns
    -------
    labels : (H, W) int32
    n : int
    """
    mask = _check(mask, 0)
    if connectivity not in (1, 2):
        raise UsageError(f"connectivity must be 1 or 2, got {connectivity!r}")
    out = np.empty(mask.shape, np.int32)
    n = _numba.label_sparse(np.ascontiguousarray(mask), connectivity == 2, out)
    return out, int(n)
