"""Pixel change metrics between two co-registered images: CVA, spectral indices, log ratio, z-scored CVA.

Dtype policy (stated once, see :mod:`pipeline.scene`): inputs are either ``uint16`` DN, where
reflectance = (DN - offset) / 10000 and DN 0 is no data, or ``float32`` reflectance, where NaN is no
data. Offsets are per date, ``offsets=(before_offset, after_offset)`` in DN, and apply to uint16 input
only. All outputs are ``float32`` with NaN wherever any input band of the pixel is no data.

Every public function checks shapes and dtypes, allocates the output and dispatches: a numpy array
goes to a fused numba kernel (:mod:`._numba`) that reads the uint16 data directly in row strips
without full-size float temporaries; a dask array goes to the same kernel through ``map_blocks``
(:mod:`._dispatch`).
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from ..errors import UsageError
from . import _dispatch
from ._checks import band_position, check_image, check_mask, check_offset, check_offsets, check_pair

log = logging.getLogger(__name__)

__all__ = [
    "INDICES",
    "INDEX_BANDS",
    "cva",
    "cva_direction",
    "index",
    "index_deltas",
    "log_ratio",
    "zscore_cva",
]

INDICES = ("ndvi", "ndbi", "bsi", "dbi", "mndwi", "brightness")
"""Names of the spectral indices :func:`index` computes."""

INDEX_BANDS: dict[str, tuple[str, ...]] = {
    "ndvi": ("B08", "B04"),
    "ndbi": ("B11", "B08"),
    "bsi": ("B11", "B04", "B08", "B02"),
    "dbi": ("B02", "B12", "B08", "B04"),
    "mndwi": ("B03", "B11"),
    "brightness": ("B02", "B03", "B04"),
}
"""Sentinel-2 bands each index reads, in the order the kernels take them.

Formulas (reflectance :math:`\\rho`):

- ``ndvi``  = (B08 - B04) / (B08 + B04)
- ``ndbi``  = (B11 - B08) / (B11 + B08)  (Zha et al. 2003)
- ``bsi``   = ((B11 + B04) - (B08 + B02)) / ((B11 + B04) + (B08 + B02))  (Rikimaru et al. 2002)
- ``dbi``   = (B02 - B12) / (B02 + B12) - ndvi: the Dry Built-up Index of Rasul et al. (2018) with
  SWIR-2 (B12) standing in for the thermal band Sentinel-2 does not have
- ``mndwi`` = (B03 - B11) / (B03 + B11)  (Xu 2006)
- ``brightness`` = (B02 + B03 + B04) / 3, mean visible reflectance

A normalised difference whose denominator is exactly 0 is NaN.
"""

_INDEX_CODE = {name: i for i, name in enumerate(INDICES)}


def _index_positions(name: str, bands, n_bands: int) -> tuple[int, int, int, int]:
    if not isinstance(name, str) or name not in INDEX_BANDS:
        raise ValueError(f"unknown index {name!r}; valid names: {', '.join(INDICES)}")
    pos = [band_position(bands, b, needed_by=f"index {name!r}", n_bands=n_bands) for b in INDEX_BANDS[name]]
    pos += [0] * (4 - len(pos))
    return tuple(pos)


def cva(before, after, *, offsets=(0, 0), bands=None, out=None) -> np.ndarray:
    """Change-vector magnitude between two dates.

    Parameters
    ----------
    before, after : (B, H, W) uint16 or float32
        uint16 DN (reflectance x 10000 + offset, 0 = no data) or float32 reflectance (NaN = no data).
        The two may differ in dtype. numpy or dask arrays.
    offsets : (int, int)
        DN offset of ``before`` and of ``after`` (uint16 input only; 0 for float32).
    bands : sequence of int, optional
        Indices (axis 0) of the bands summed over; default all. Only these bands are read, and
        only their no data counts.
    out : (H, W) float32, optional
        Preallocated output (numpy input only).

    Returns
    -------
    (H, W) float32
        :math:`\\sqrt{\\sum_b (\\rho^{after}_b - \\rho^{before}_b)^2}` in reflectance units; NaN where any
        band of either date is no data. A dask array for dask input.

    Notes
    -----
    Memory: the output only (4 bytes/pixel); the kernel streams the inputs row by row. Cost: one
    read of both inputs (2 x B x 2 bytes/pixel for uint16).
    """
    before, after = check_pair(before, after)
    ob, oa = check_offsets(offsets, before, after)
    B = before.shape[0]
    sel = np.arange(B, dtype=np.int64) if bands is None else np.asarray(bands, dtype=np.int64).reshape(-1)
    if sel.size == 0 or sel.min() < 0 or sel.max() >= B:
        raise UsageError(f"bands must be indices 0..{B - 1} of the {B} bands, got {list(np.asarray(bands).tolist())}")
    return _dispatch.pair_map("cva", before, after, (ob, oa), (sel,), n_out=1, out=out)[0]


def cva_direction(before, after, *, bands=None, offsets=(0, 0)) -> dict[str, np.ndarray]:
    """Direction of the change vector relative to the brightness axis (Bovolo and Bruzzone 2007).

    Parameters
    ----------
    before, after : (B, H, W) uint16 or float32
        As for :func:`cva`.
    bands : sequence of str, optional
        Names along axis 0; only checked against ``B`` (used by callers to interpret ``dominant_band``).
    offsets : (int, int)
        DN offsets of the two dates (uint16 only).

    Returns
    -------
    dict of (H, W) arrays
        ``magnitude`` float32: as :func:`cva`.
        ``brightness_cosine`` float32 in [-1, 1]: cosine between the change vector and the all-bands
        axis (1, ..., 1); +1 = uniformly brighter (e.g. a new bright roof), -1 = uniformly darker
        (fresh asphalt, flooding); 0 where the magnitude is 0.
        ``angle`` float32, degrees in [0, 180]: ``arccos(brightness_cosine)``.
        ``dominant_band`` float32: position along axis 0 of the band with the largest absolute change
        (NaN where no data).
        All NaN where any input band is no data.
    """
    before, after = check_pair(before, after)
    ob, oa = check_offsets(offsets, before, after)
    if bands is not None and len(tuple(bands)) != before.shape[0]:
        raise UsageError(f"bands names {len(tuple(bands))} bands but the images have {before.shape[0]}")
    mag, cos, ang, dom = _dispatch.pair_map("cva_direction", before, after, (ob, oa), (), n_out=4)
    return {"magnitude": mag, "brightness_cosine": cos, "angle": ang, "dominant_band": dom}


def index(image, name: str, *, bands: Sequence[str], offset=0, out=None) -> np.ndarray:
    """One spectral index of one image.

    Parameters
    ----------
    image : (B, H, W) uint16 or float32
        uint16 DN (0 = no data) or float32 reflectance (NaN = no data).
    name : str
        One of :data:`INDICES`; formulas in :data:`INDEX_BANDS`.
    bands : sequence of str
        Band names along axis 0, e.g. ``("B02", "B03", "B04", "B08", "B11", "B12")``.
    offset : int
        DN offset of the image (uint16 only).
    out : (H, W) float32, optional

    Returns
    -------
    (H, W) float32
        NaN where a band the index reads is no data or a denominator is 0.

    Raises
    ------
    ValueError
        Unknown index name (lists the valid ones).
    UsageError
        A band the index needs is missing from ``bands``.
    """
    image = check_image(image, "image")
    off = check_offset(offset, image.dtype, "offset")
    pos = _index_positions(name, bands, image.shape[0])
    return _dispatch.single_map("index", image, off, (_INDEX_CODE[name], pos), out=out)


def index_deltas(
    before, after, *, bands: Sequence[str], names: Sequence[str] = INDICES, offsets=(0, 0), out=None
) -> dict:
    """Change of spectral indices, ``index(after) - index(before)``.

    Parameters
    ----------
    before, after : (B, H, W) uint16 or float32
    bands : sequence of str
        Band names along axis 0 (same for both dates).
    names : sequence of str
        Indices to compute (default all of :data:`INDICES`).
    offsets : (int, int)
    out : (len(names), H, W) float32, optional
        Preallocated output (numpy input only); the returned arrays are its planes.

    Returns
    -------
    dict of str -> (H, W) float32
        One delta per name; NaN where either date's index is NaN.

    Notes
    -----
    All requested deltas are computed in one fused pass over the inputs; memory is the outputs only.
    """
    before, after = check_pair(before, after)
    ob, oa = check_offsets(offsets, before, after)
    names = tuple(names)
    if not names:
        raise UsageError("names must list at least one index: " + ", ".join(INDICES))
    codes, positions = [], []
    for n in names:
        positions.append(_index_positions(n, bands, before.shape[0]))
        codes.append(_INDEX_CODE[n])
    arrays = _dispatch.pair_map(
        "index_deltas",
        before,
        after,
        (ob, oa),
        (np.array(codes, np.int64), np.array(positions, np.int64)),
        n_out=len(names),
        out=out,
    )
    return dict(zip(names, arrays))


def log_ratio(before, after, *, bands=None, use=None, offsets=(0, 0), out=None, floor=1e-4) -> np.ndarray:
    """Mean absolute log ratio of reflectance, :math:`\\frac{1}{B'}\\sum_b |\\ln(\\rho^a_b / \\rho^b_b)|`.

    Parameters
    ----------
    before, after : (B, H, W) uint16 or float32
    bands : sequence of str, optional
        Names along axis 0; needed only with ``use``.
    use : sequence of str, optional
        Bands to average over (default all).
    offsets : (int, int)
    out : (H, W) float32, optional
    floor : float
        Reflectance below ``floor`` (default 1e-4, one DN) is raised to it before the log, so dark or
        negative (offset-corrected) reflectance gives a large but finite ratio.

    Returns
    -------
    (H, W) float32
        NaN where any used band is no data.
    """
    before, after = check_pair(before, after)
    ob, oa = check_offsets(offsets, before, after)
    B = before.shape[0]
    if use is None:
        sel = np.arange(B, dtype=np.int64)
    else:
        sel = np.array([band_position(bands, b, needed_by="log_ratio(use=...)", n_bands=B) for b in use], np.int64)
        if sel.size == 0:
            raise UsageError("use must name at least one band")
    if not (float(floor) > 0):
        raise UsageError(f"floor must be a positive reflectance, got {floor!r}")
    return _dispatch.pair_map("log_ratio", before, after, (ob, oa), (sel, float(floor)), n_out=1, out=out)[0]


def zscore_cva(before, after, *, mask=None, offsets=(0, 0)) -> np.ndarray:
    """CVA magnitude of per-band z-scored differences (the reference baseline).

    For each band the difference ``d_b = after_b - before_b`` is standardised with its mean and
    standard deviation over the valid pixels (inside ``mask``), and the magnitude
    :math:`\\sqrt{\\sum_b z_b^2}` is returned. Invariant to per-date offsets and to a common gain.

    Parameters
    ----------
    before, after : (B, H, W) uint16 or float32
    mask : (H, W) bool, optional
        Pixels to compute the statistics on (True = use); the output covers all valid pixels.
    offsets : (int, int)
        Accepted for symmetry; the offsets cancel in the standardisation.

    Returns
    -------
    (H, W) float32
        NaN where no data. A band with zero spread contributes 0.
    """
    before, after = check_pair(before, after)
    ob, oa = check_offsets(offsets, before, after)
    mask = check_mask(mask, before.shape[1:])
    return _dispatch.zscore_cva(before, after, (ob, oa), mask)
