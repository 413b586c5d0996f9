"""Clear-sky masks: SCL classes, spectral cloud/haze/shadow tests, clear fractions over the AOI.

Two sources of evidence, combined by :func:`mask_stack`:

* the L2A scene classification (SCL): no data, defective, cloud shadow, medium/high cloud and
  cirrus (``SCL.MASKED``), dilated by a few pixels because SCL misses thin cloud edges;
* spectral tests on harmonised reflectance, for L1C data (no SCL) and for what SCL misses:

  - cloud: bright in blue (``B02``), white in the visible (``B02/B04`` near 1) and low
    ``B11/B8A`` (bright desert sand and concrete have ``B11 > B8A``, clouds do not);
  - haze / thin cirrus: blue excess over the window's clear median that SWIR does not share;
  - shadow: dark in NIR and SWIR relative to the window's clear median.

  Haze and shadow need the window's clear median, so they are tested relative to the median of
  the observations that passed the SCL and cloud tests of the *same* window: a persistent
  change (new dark asphalt) is part of that median and is not masked as shadow.

Masks are True where an observation is *clear* (usable).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy import ndimage

from ..scene import SCL

log = logging.getLogger(__name__)

__all__ = [
    "MaskParams",
    "MaskResult",
    "MASK_METHODS",
    "scl_mask",
    "spectral_cloud_mask",
    "haze_shadow_mask",
    "surface_guard",
    "dilate",
    "mask_stack",
]


@dataclass(frozen=True)
class MaskParams:
    """Thresholds of the clear-sky masks.

    Attributes
    ----------
    dilate_px : int
        Radius in 10 m pixels by which masked (cloudy/shadow) pixels are grown. Default 3.
    scl_classes : tuple of int
        SCL codes treated as not clear. Default ``SCL.MASKED`` (0, 1, 3, 8, 9, 10).
    cloud_blue : float
        Minimum ``B02`` reflectance (0-1) of a cloud. Default 0.2.
    cloud_whiteness : float
        Minimum ``B02/B04`` ratio of a cloud (white in the visible). Default 0.8.
    cloud_swir_ratio : float
        Maximum ``B11/B8A`` ratio of a cloud. Default 1.0.
    cloud_excess : float
        In windows of 3 or more acquisitions a cloud must also exceed the window's median ``B02``
        by this much (reflectance): a new bright roof, present on most dates, is the median and
        is not masked. Default 0.06.
    cloud_blue_alone : float
        In windows of fewer than 3 acquisitions (no median), the ``B02`` a cloud must exceed
        instead. Default 0.3.
    surface_max_px : int
        Single-date guard (windows of fewer than 3 acquisitions, see :func:`surface_guard`): the
        largest cloud-like body, in 10 m pixels (8-connected pixels passing the cloud test with
        ``cloud_blue``), that can be a bright man-made surface and is kept clear. Default 200
        (2 ha: a large warehouse is ~1 ha with its mixed edge pixels; a cumulus is larger).
        0 turns the guard off.
    surface_clearance_px : int
        Such a body is kept only when no larger body (a cloud) lies within this distance, in
        10 m pixels: cloud fields shed small fragments near their main body. Default 100 (1 km).
    surface_edge_ratio : float
        Such a body is kept only when its edge is sharp: the median ``B02`` of the ring 2-3
        pixels outside it is at most this fraction of the median ``B02`` of its core (its pixels
        above ``cloud_blue_alone``): clouds fade out over hundreds of metres, a roof ends
        within a pixel. Default 0.6.
    haze_blue_excess : float
        Minimum ``B02`` excess over the clear median (reflectance) for haze. Default 0.04.
    haze_swir_share : float
        Haze when the ``B11`` excess is below this fraction of the ``B02`` excess. Default 0.5.
    shadow_ratio : float
        Shadow where both ``B8A`` and ``B11`` fall below this fraction of their clear median.
        Default 0.65.
    shadow_min_ref : float
        Median ``B8A`` reflectance below which the shadow test is skipped (water is dark
        anyway). Default 0.05.
    """

    dilate_px: int = 3
    scl_classes: tuple[int, ...] = SCL.MASKED
    cloud_blue: float = 0.2
    cloud_whiteness: float = 0.8
    cloud_swir_ratio: float = 1.0
    cloud_excess: float = 0.06
    cloud_blue_alone: float = 0.3
    surface_max_px: int = 200
    surface_clearance_px: int = 100
    surface_edge_ratio: float = 0.6
    haze_blue_excess: float = 0.04
    haze_swir_share: float = 0.5
    shadow_ratio: float = 0.65
    shadow_min_ref: float = 0.05


@dataclass(frozen=True, eq=False)
class MaskResult:
    """Clear masks of a stack.

    Attributes
    ----------
    clear : (T, H, W) bool
        True where the observation is clear and has data.
    valid_fraction : (T,) float64
        Fraction of the AOI polygon with data (0-1).
    cloud_fraction : (T,) float64
        Fraction of the AOI pixels with data that are masked as cloud/haze/shadow (0-1).
    clear_fraction : (T,) float64
        Fraction of the AOI polygon that is clear (0-1).
    method : str
        The method used (``scl``, ``spectral`` or ``scl+spectral``).
    """

    clear: np.ndarray
    valid_fraction: np.ndarray
    cloud_fraction: np.ndarray
    clear_fraction: np.ndarray
    method: str


def _disk(radius: int) -> np.ndarray:
    r = int(radius)
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    return (x * x + y * y) <= r * r + r  # a round-ish disk


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Grow True pixels of ``mask`` ((H, W) or (T, H, W) bool) by a disk of ``radius`` pixels."""
    mask = np.asarray(mask, dtype=bool)
    if radius <= 0 or not mask.any():
        return mask.copy()
    from ..kernels.morphology import binary_dilation

    se = _disk(radius)
    if mask.ndim == 2:
        return binary_dilation(mask, se)
    return np.stack([binary_dilation(m, se) if m.any() else m.copy() for m in mask])


def scl_mask(scl: np.ndarray, *, classes: Sequence[int] = SCL.MASKED, dilate_px: int = 3) -> np.ndarray:
    """Pixels the SCL marks as not clear, dilated.

    Parameters
    ----------
    scl : (H, W) or (T, H, W) uint8
        Scene classification codes.
    classes : sequence of int
        Codes that are not clear.
    dilate_px : int
        Dilation radius in pixels.

    Returns
    -------
    (H, W) or (T, H, W) bool
        True where masked (NOT clear).
    """
    return dilate(scl_in(scl, classes), dilate_px)  # scl_in checks the shape


def _band_index(bands: Sequence[str], name: str) -> int:
    try:
        return list(bands).index(name)
    except ValueError:
        raise ValueError(f"spectral masks need band {name!r}; bands given: {', '.join(bands)}") from None


def _band(refl: np.ndarray, bands: Sequence[str], name: str) -> np.ndarray:
    return refl[_band_index(bands, name)]


def spectral_cloud_mask(refl: np.ndarray, bands: Sequence[str], *, params: MaskParams | None = None) -> np.ndarray:
    """Bright, white, low-SWIR pixels: clouds (works without SCL).

    Parameters
    ----------
    refl : (B, H, W) float32
        Harmonised reflectance (0-1), NaN where no data.
    bands : sequence of str
        Band names of axis 0; needs ``B02``, ``B04``, ``B8A``, ``B11``.

    Returns
    -------
    (H, W) bool
        True where cloud (not dilated).
    """
    from ..kernels import _numba as K

    p = params or MaskParams()
    idx = [_band_index(bands, n) for n in ("B02", "B04", "B8A", "B11")]
    refl = np.ascontiguousarray(refl, dtype=np.float32)
    out = np.empty(refl.shape[1:], dtype=bool)
    f32 = np.float32
    # one parallel pass (:func:`pipeline.kernels._numba.spectral_cloud`), float32 as numpy would
    # compute it: white = B02 / max(B04, 1e-4), swir = B11 / max(B8A, 1e-4)
    K.spectral_cloud(refl, *idx, f32(p.cloud_blue), f32(p.cloud_whiteness), f32(p.cloud_swir_ratio), f32(1e-4), out)
    return out


def surface_guard(
    refl: np.ndarray, bands: Sequence[str], *, params: MaskParams | None = None, cloud: np.ndarray | None = None
) -> np.ndarray:
    """Small, sharp-edged, isolated bright bodies: man-made surfaces (roofs), not clouds.

    Without a window median (fewer than 3 acquisitions) a new bright roof passes the spectral
    cloud test. A body of the cloud test (8-connected pixels of :func:`spectral_cloud_mask`) is
    taken as a surface when all of these hold:

    * it covers at most ``surface_max_px`` pixels (a large warehouse is ~1 ha, a cumulus more);
    * no body larger than that lies within ``surface_clearance_px`` (fragments of a cloud field
      sit next to its main body);
    * its edge is sharp: the median ``B02`` 2-3 pixels outside it is at most
      ``surface_edge_ratio`` times the median ``B02`` of its core (pixels above
      ``cloud_blue_alone``): cloud edges fade out.

    Parameters
    ----------
    refl : (B, H, W) float32
        One observation, harmonised reflectance (0-1), NaN where no data.
    bands : sequence of str
        Band names of axis 0; needs ``B02``, ``B04``, ``B8A``, ``B11``.
    cloud : (H, W) bool, optional, keyword-only
        :func:`spectral_cloud_mask` of ``refl`` with ``params``, when already computed.

    Returns
    -------
    (H, W) bool
        True on the bodies taken as surfaces.

    Notes
    -----
    Cost: one labelling of the cloud-test pixels, a block-max and a dilation on a 10x coarser
    grid for the clearance (which then reaches 100-130 % of ``surface_clearance_px``:
    conservative), and a small crop per candidate body. Used by :func:`mask_stack` only for
    windows of fewer than 3 acquisitions (with more, the window median tells roofs from clouds).
    """
    p = params or MaskParams()
    loose = spectral_cloud_mask(refl, bands, params=p) if cloud is None else cloud
    keep = np.zeros(loose.shape, dtype=bool)
    if p.surface_max_px <= 0 or not loose.any():
        return keep
    lab, n = ndimage.label(loose, structure=np.ones((3, 3), dtype=bool))
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    sizes[0] = 0
    small = sizes <= p.surface_max_px
    small[0] = False
    big = sizes[lab] > p.surface_max_px
    if big.any():
        # clearance on a 10x coarser grid: a coarse cell is "near" when a big body lies within
        # the clearance of any of its pixels
        f = 10
        H, W = big.shape
        pad = np.zeros((-(-H // f) * f, -(-W // f) * f), dtype=bool)
        pad[:H, :W] = big
        coarse = pad.reshape(pad.shape[0] // f, f, pad.shape[1] // f, f).any(axis=(1, 3))
        coarse = dilate(coarse, -(-p.surface_clearance_px // f) + 1)
        near = np.repeat(np.repeat(coarse, f, axis=0), f, axis=1)[:H, :W]
        small &= np.bincount(lab[near], minlength=n + 1) == 0
    b02 = _band(refl, bands, "B02")
    inner_se = np.ones((3, 3), dtype=bool)
    outer_se = _disk(3)
    for i, sl in enumerate(ndimage.find_objects(lab), start=1):
        if sl is None or not small[i]:
            continue
        sl = tuple(slice(max(s.start - 4, 0), s.stop + 4) for s in sl)
        body = lab[sl] == i
        ring = ndimage.binary_dilation(body, structure=outer_se) & ~ndimage.binary_dilation(body, structure=inner_se)
        crop = b02[sl]
        ring &= ~loose[sl] & np.isfinite(crop)
        if not ring.any():
            continue
        core = body & (crop > p.cloud_blue_alone)  # the bright core (the whole body if none)
        core = core if core.any() else body
        if np.median(crop[ring]) <= p.surface_edge_ratio * np.median(crop[core]):
            keep[sl] |= body
    return keep


def haze_shadow_mask(
    refl: np.ndarray, bands: Sequence[str], reference: np.ndarray, *, params: MaskParams | None = None
) -> np.ndarray:
    """Haze (blue excess not shared by SWIR) and shadow (dark NIR and SWIR) relative to a clear median.

    Parameters
    ----------
    refl : (B, H, W) float32
        One observation, harmonised reflectance, NaN where no data.
    bands : sequence of str
        Needs ``B02``, ``B8A``, ``B11``.
    reference : (B, H, W) float32
        The window's clear median (same bands); NaN where unknown (then nothing is flagged).

    Returns
    -------
    (H, W) bool
        True where haze or shadow (not dilated).
    """
    p = params or MaskParams()
    b02, b8a, b11 = (_band(refl, bands, n) for n in ("B02", "B8A", "B11"))
    r02, r8a, r11 = (_band(reference, bands, n) for n in ("B02", "B8A", "B11"))
    with np.errstate(invalid="ignore"):
        d02 = b02 - r02
        d11 = b11 - r11
        haze = (d02 > p.haze_blue_excess) & (d11 < p.haze_swir_share * d02)
        shadow = (r8a > p.shadow_min_ref) & (b8a < p.shadow_ratio * r8a) & (b11 < p.shadow_ratio * r11)
    return haze | shadow


_REF_BANDS = ("B02", "B8A", "B11")


def _reference(refl, bands, ok):
    """Median over time (where ``ok``) of the bands the relative tests need, read in place, as a
    (B, H, W) array over all ``bands`` (NaN for the bands not needed)."""
    from .composite import median_composite

    idx = [list(bands).index(b) for b in _REF_BANDS]
    ref = np.full(refl.shape[1:], np.nan, dtype=np.float32)
    ref[idx] = median_composite(refl, ok, bands=idx).median
    return ref


def _class_lut(classes) -> np.ndarray:
    """(256,) bool lookup table, True at the given SCL codes (indexing a uint8 SCL with it is many
    times faster than ``np.isin``)."""
    lut = np.zeros(256, dtype=bool)
    lut[np.asarray(list(classes), dtype=np.int64)] = True
    return lut


def scl_in(scl: np.ndarray, classes) -> np.ndarray:
    """``np.isin(scl, classes)`` for a (H, W) or (T, H, W) SCL layer: a lookup table in one
    parallel pass (:func:`pipeline.kernels._numba.lookup_u8`; numpy's ``lut[scl]`` took 22 ms on
    4096^2 pixels, this 2-3 ms)."""
    from ..kernels import _numba as K

    scl = np.asarray(scl)
    if scl.ndim not in (2, 3):
        raise ValueError(f"scl must be (H, W) or (T, H, W), got shape {scl.shape}")
    codes = np.ascontiguousarray(scl, dtype=np.uint8)
    out = np.empty(codes.shape, bool)
    if not codes.size:
        return out
    K.lookup_u8(_class_lut(classes), codes.reshape((-1,) + codes.shape[-2:]), out.reshape((-1,) + codes.shape[-2:]))
    return out


def _scl_only(stack_scl, refl, bands, data_ok, p, *, n_dates: int | None = None):
    if stack_scl is None:
        raise ValueError("mask method 'scl' needs an SCL layer; this stack has none (L1C?): use 'spectral' or 'auto'")
    return data_ok & ~scl_mask(stack_scl, classes=p.scl_classes, dilate_px=p.dilate_px)


def _spectral(stack_scl, refl, bands, data_ok, p, *, use_scl: bool = False, n_dates: int | None = None):
    # dates left out by mask_stack's ``use`` have no data: they count neither in the window's
    # median nor in the number of dates that decides whether there is one
    T = refl.shape[0]
    n = T if n_dates is None else n_dates
    bad = np.zeros(data_ok.shape, dtype=bool)
    if use_scl:
        bad |= scl_in(stack_scl, p.scl_classes)
    cand = np.stack([spectral_cloud_mask(refl[t], bands, params=p) for t in range(T)]) if T else bad.copy()
    if n >= 3:
        # a cloud is also brighter than the window's median; a new bright roof present on most
        # dates IS the median and is kept
        ref = _reference(refl, bands, data_ok & ~bad)
        b02 = list(bands).index("B02")
        with np.errstate(invalid="ignore"):
            excess = refl[:, b02] - ref[b02][None]
            cand &= ~(excess <= p.cloud_excess)  # NaN reference: keep the candidate
    else:
        b02 = list(bands).index("B02")
        loose = cand.copy()  # the plain cloud test, which the guard's bodies are made of
        with np.errstate(invalid="ignore"):
            cand &= refl[:, b02] > p.cloud_blue_alone
        # no median to tell a new bright roof from a cloud: keep small, sharp-edged, isolated
        # bodies (surface_guard)
        for t in range(T):
            if cand[t].any():
                cand[t] &= ~surface_guard(refl[t], bands, params=p, cloud=loose[t])
    bad |= cand
    first = data_ok & ~dilate(bad, p.dilate_px)
    if n >= 3:
        ref = _reference(refl, bands, first)
        for t in range(T):
            bad[t] |= haze_shadow_mask(refl[t], bands, ref, params=p)
    return data_ok & ~dilate(bad, p.dilate_px)


MASK_METHODS: dict[str, Callable] = {
    "scl": _scl_only,
    "spectral": _spectral,
    "scl+spectral": lambda scl, refl, bands, ok, p, n_dates=None: _spectral(scl, refl, bands, ok, p, use_scl=True, n_dates=n_dates),
}
"""Named mask strategies ``(scl, refl, bands, data_ok, params, n_dates=None) -> clear``: ``n_dates``
is how many of the dates take part (``mask_stack``'s ``use``; default all); ``auto`` picks
``scl+spectral`` with an SCL layer, else ``spectral``."""


def mask_stack(
    refl: np.ndarray,
    bands: Sequence[str],
    *,
    scl: np.ndarray | None = None,
    aoi_mask: np.ndarray | None = None,
    method: str = "auto",
    params: MaskParams | None = None,
    use: np.ndarray | None = None,
) -> MaskResult:
    """Clear masks and per-acquisition clear fractions over the AOI polygon.

    Parameters
    ----------
    refl : (T, B, H, W) float32
        Harmonised reflectance (0-1), NaN where no data (see :func:`harmonise.harmonise`).
    bands : sequence of str
        Band names of axis 1.
    scl : (T, H, W) uint8 or None
        SCL layer (None for L1C).
    aoi_mask : (H, W) bool or None
        True inside the AOI polygon; fractions are over these pixels (all pixels when None).
    method : str
        One of :data:`MASK_METHODS` or ``"auto"``.
    use : (T,) bool or None
        The acquisitions to mask (default all). The others come out not clear and take no part in
        the window's tests (its median, the number of dates that decides which tests apply): the
        masks of the used ones are those of ``refl[use]``, without copying it out.

    Returns
    -------
    MaskResult

    Notes
    -----
    Memory: a few (T, H, W) bool arrays plus one (B, H, W) float32 median.
    """
    p = params or MaskParams()
    refl = np.asarray(refl)
    if refl.ndim != 4 or refl.shape[1] != len(bands):
        raise ValueError(f"refl must be (T, {len(bands)}, H, W) for bands {tuple(bands)}, got {refl.shape}")
    T, _, H, W = refl.shape
    if method == "auto":
        method = "scl+spectral" if scl is not None else "spectral"
    if method not in MASK_METHODS:
        raise ValueError(f"unknown mask method {method!r}; use one of auto, {', '.join(MASK_METHODS)}")
    if scl is not None and scl.shape != (T, H, W):
        raise ValueError(f"scl must have shape {(T, H, W)}, got {scl.shape}")
    from ..kernels import _numba as K

    data_ok = np.empty((T, H, W), dtype=bool)
    K.any_nan(np.ascontiguousarray(refl, dtype=np.float32), data_ok)  # one pass, no (T, B, H, W) temporary
    np.logical_not(data_ok, out=data_ok)
    n_dates = T
    if use is not None:
        use = np.asarray(use, dtype=bool)
        if use.shape != (T,):
            raise ValueError(f"use must be a ({T},) bool array, got shape {use.shape}")
        data_ok[~use] = False
        n_dates = int(use.sum())
    clear = MASK_METHODS[method](scl, refl, bands, data_ok, p, n_dates=n_dates)
    inside = np.ones((H, W), dtype=bool) if aoi_mask is None else np.asarray(aoi_mask, dtype=bool)
    n_in = max(int(inside.sum()), 1)
    valid_n = (data_ok & inside).sum(axis=(1, 2)).astype(np.float64)
    clear_n = (clear & inside).sum(axis=(1, 2)).astype(np.float64)
    valid_fraction = valid_n / n_in
    clear_fraction = clear_n / n_in
    with np.errstate(invalid="ignore", divide="ignore"):
        cloud_fraction = np.where(valid_n > 0, 1.0 - clear_n / np.maximum(valid_n, 1), 1.0)
    log.debug("masks (%s): clear fractions %s", method, np.round(clear_fraction, 3).tolist())
    return MaskResult(clear, valid_fraction, cloud_fraction, clear_fraction, method)
