"""Co-registration: one global sub-pixel shift per acquisition against a reference.

The shift is estimated by phase correlation (``skimage.registration.phase_cross_correlation``
with upsampling) of gradient-magnitude images (Sobel), so edges of runways, quays and buildings
drive it, not the brightness of the surfaces; masked (cloudy / no data) pixels get zero gradient.
It is applied with ``scipy.ndimage.shift`` (cubic spline). A weak correlation peak (the
normalised correlation of the aligned gradient images below ``min_peak``) or an implausibly large
shift rejects the acquisition.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.registration import phase_cross_correlation

log = logging.getLogger(__name__)

__all__ = ["ShiftEstimate", "gradient_image", "estimate_shift", "apply_shift", "shift_mask"]


@dataclass(frozen=True)
class ShiftEstimate:
    """A global shift of one acquisition.

    Attributes
    ----------
    dy, dx : float
        Shift in pixels (rows, columns) that registers the moving image onto the reference
        (pass to :func:`apply_shift`).
    peak : float
        Normalised correlation (-1..1) of the gradient images after alignment, over pixels
        valid in both; the strength of the match.
    ok : bool
        False when the peak is weak or the shift implausible.
    reason : str
        Why it is not ok (empty when ok).
    """

    dy: float
    dx: float
    peak: float
    ok: bool = True
    reason: str = ""

    @property
    def shift(self) -> tuple[float, float]:
        return (self.dy, self.dx)


def _fill(img: np.ndarray, valid: np.ndarray) -> np.ndarray:
    out = np.array(img, dtype=np.float32, copy=True)
    if valid.all():
        return out
    fillv = float(np.median(out[valid])) if valid.any() else 0.0
    out[~valid] = fillv
    return out


def gradient_image(image: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Sobel gradient magnitude of ``image`` ((H, W) float), zero at and next to invalid pixels.

    Parameters
    ----------
    image : (H, W) float
        One band (or a band mean); NaN counts as invalid.
    valid : (H, W) bool or None
        Extra validity mask.

    Returns
    -------
    (H, W) float32
    """
    image = np.asarray(image, dtype=np.float32)
    ok = np.isfinite(image)
    if valid is not None:
        ok &= valid
    from ..kernels import _numba as K
    from ..kernels.morphology import binary_dilation

    filled = _fill(image, ok)
    gy, gx, t0, t1 = (np.empty_like(filled) for _ in range(4))
    K.sobel_pair(filled, gy, gx, t0, t1)  # scipy.ndimage.sobel along both axes, same values
    g = np.hypot(gy, gx).astype(np.float32, copy=False)
    if not ok.all():  # pixels within 2 (city-block) of an invalid one, as two 3 x 3 cross dilations
        g[binary_dilation(~ok, _DIAMOND_2)] = 0.0
    return g


_DIAMOND_2 = np.add.outer(np.abs(np.arange(-2, 3)), np.abs(np.arange(-2, 3))) <= 2


def _corr(a: np.ndarray, b: np.ndarray, m: np.ndarray) -> float:
    if m.sum() < 16:
        return 0.0
    x = a[m].astype(np.float64)
    y = b[m].astype(np.float64)
    x -= x.mean()
    y -= y.mean()
    d = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / d) if d > 0 else 0.0


def estimate_shift(
    reference: np.ndarray,
    moving: np.ndarray,
    *,
    reference_valid: np.ndarray | None = None,
    moving_valid: np.ndarray | None = None,
    upsample: int = 20,
    min_peak: float = 0.3,
    max_shift_px: float = 3.0,
    max_size: int = 512,
) -> ShiftEstimate:
    """Global sub-pixel shift registering ``moving`` onto ``reference``.

    Parameters
    ----------
    reference, moving : (H, W) float
        The same band of two acquisitions (reflectance); NaN where no data.
    reference_valid, moving_valid : (H, W) bool or None
        Clear masks; masked pixels do not contribute edges.
    upsample : int
        Upsampling factor of the correlation peak (precision 1/upsample pixel).
    min_peak : float
        Minimum normalised gradient correlation after alignment.
    max_shift_px : float
        Largest plausible shift, pixels.
    max_size : int
        Images larger than this (pixels per side) are matched on their central
        ``max_size`` x ``max_size`` window; 0 = always the whole image.

    Returns
    -------
    ShiftEstimate

    Notes
    -----
    Cost: a few FFTs of (H, W); memory a few (H, W) complex128 arrays.
    """
    reference = np.asarray(reference, dtype=np.float32)
    moving = np.asarray(moving, dtype=np.float32)
    if reference.shape != moving.shape or reference.ndim != 2:
        raise ValueError(f"reference and moving must be (H, W) of the same shape, got {reference.shape} and {moving.shape}")
    H, W = reference.shape
    if max_size and (H > max_size or W > max_size):  # the central window bounds the cost
        r0, c0 = max(0, (H - max_size) // 2), max(0, (W - max_size) // 2)
        win = (slice(r0, r0 + max_size), slice(c0, c0 + max_size))
        reference, moving = reference[win], moving[win]
        reference_valid = None if reference_valid is None else reference_valid[win]
        moving_valid = None if moving_valid is None else moving_valid[win]
    okr = np.isfinite(reference) if reference_valid is None else np.isfinite(reference) & reference_valid
    okm = np.isfinite(moving) if moving_valid is None else np.isfinite(moving) & moving_valid
    both = okr & okm  # edges count only where both images are clear
    gr = gradient_image(reference, both)
    gm = gradient_image(moving, both)
    if not gr.any() or not gm.any():
        return ShiftEstimate(0.0, 0.0, 0.0, False, "no valid structure to correlate")
    shift, _err, _phase = phase_cross_correlation(gr, gm, upsample_factor=upsample, normalization=None)
    dy, dx = float(shift[0]), float(shift[1])
    if abs(dy) <= max_shift_px and abs(dx) <= max_shift_px and (dy or dx):
        # one refinement: shift the moving image itself and measure the residual
        moved = apply_shift(np.where(okm, moving, np.nan), (dy, dx), min_shift=0.0, order=3)
        g2 = gradient_image(moved, np.isfinite(moved) & okr)
        gr = gradient_image(reference, np.isfinite(moved) & okr)
        if g2.any():
            res = phase_cross_correlation(gr, g2, upsample_factor=upsample, normalization=None)[0]
            if abs(res[0]) < 0.5 and abs(res[1]) < 0.5:
                dy, dx = dy + float(res[0]), dx + float(res[1])
    aligned = np.nan_to_num(_bilinear_shift(gm, dy, dx), nan=0.0)
    okm_aligned = shift_mask(okm, (dy, dx), min_shift=0.0)
    m = ndimage.binary_erosion(okr & okm_aligned, iterations=3)
    peak = _corr(gr, aligned, m)
    if abs(dy) > max_shift_px or abs(dx) > max_shift_px:
        return ShiftEstimate(dy, dx, peak, False, f"implausible shift ({dy:.2f}, {dx:.2f}) px > {max_shift_px} px")
    if peak < min_peak:
        return ShiftEstimate(dy, dx, peak, False, f"weak correlation peak {peak:.2f} < {min_peak}")
    return ShiftEstimate(dy, dx, peak)


def _translate(a: np.ndarray, k: int, l: int, fill=np.nan) -> np.ndarray:
    """``out[..., y, x] = a[..., y - k, x - l]``; ``fill`` where that falls outside."""
    H, W = a.shape[-2:]
    out = np.full(a.shape, fill, dtype=a.dtype)
    ys, yd = (slice(0, H - k), slice(k, H)) if k >= 0 else (slice(-k, H), slice(0, H + k))
    xs, xd = (slice(0, W - l), slice(l, W)) if l >= 0 else (slice(-l, W), slice(0, W + l))
    if abs(k) < H and abs(l) < W:
        out[..., yd, xd] = a[..., ys, xs]
    return out


def _shift_weights(dy: float, dx: float) -> tuple[int, int, np.ndarray]:
    """Integer part (iy, ix) of a shift and the float32 weights of its four bilinear terms, in the
    order (iy, ix), (iy, ix + 1), (iy + 1, ix), (iy + 1, ix + 1); weights <= 1e-6 are set to 0
    (the term is skipped)."""
    iy, ix = int(np.floor(dy)), int(np.floor(dx))
    fy, fx = dy - iy, dx - ix
    w = [wy * wx for wy in (1.0 - fy, fy) for wx in (1.0 - fx, fx)]
    return iy, ix, np.array([v if v > 1e-6 else 0.0 for v in w], dtype=np.float32)


def shift_mask(mask: np.ndarray, shift: tuple[float, float], *, keep: float = 0.99, min_shift: float = 0.02) -> np.ndarray:
    """A bool mask moved by ``shift`` = (dy, dx) pixels as :func:`apply_shift` (bilinear) moves
    images: True where the bilinear shift of the mask as 0/1 exceeds ``keep`` (pixels whose
    neighbourhood was wholly True); False where the shift reaches outside the image. Shifts
    smaller than ``min_shift`` on both axes are not applied (a copy), as in :func:`apply_shift`.

    Equal to ``np.nan_to_num(apply_shift(mask.astype(np.float32), shift, min_shift=min_shift),
    nan=0) > keep`` (tested), in one parallel pass with no float32 plane.
    """
    from ..kernels import _numba as K

    mask = np.ascontiguousarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"shift_mask takes an (H, W) mask, got shape {mask.shape}")
    dy, dx = float(shift[0]), float(shift[1])
    if abs(dy) < min_shift and abs(dx) < min_shift:
        return mask.copy()
    iy, ix, w = _shift_weights(dy, dx)
    out = np.empty(mask.shape, bool)
    K.shift_mask(mask, iy, ix, w, np.float32(keep), out)
    return out


def _bilinear_shift(a: np.ndarray, dy: float, dx: float, out: np.ndarray | None = None) -> np.ndarray:
    """Bilinear ``scipy.ndimage.shift(a, (dy, dx), order=1)`` over the last two axes of float32
    ``a`` (:func:`pipeline.kernels._numba.bilinear_shift`, one parallel pass per plane); NaN (and
    outside) propagates from every neighbour with a non-zero weight. ``out`` may be ``a`` itself
    (then one scratch plane is used)."""
    from ..kernels import _numba as K

    a = np.ascontiguousarray(a, dtype=np.float32)
    iy, ix, w = _shift_weights(dy, dx)
    if out is None:
        out = np.empty_like(a)
    H, W = a.shape[-2:]
    src, dst = a.reshape(-1, H, W), out.reshape(-1, H, W)
    scratch = np.empty((H, W), np.float32) if np.shares_memory(a, out) else None
    for p in range(src.shape[0]):
        if scratch is None:
            K.bilinear_shift(src[p], iy, ix, w, dst[p])
        else:
            K.bilinear_shift(src[p], iy, ix, w, scratch)
            np.copyto(dst[p], scratch)
    return out


def apply_shift(
    image: np.ndarray, shift: tuple[float, float], *, order: int = 1, min_shift: float = 0.02, out: np.ndarray | None = None
) -> np.ndarray:
    """Shift ``image`` by ``shift`` = (dy, dx) pixels; NaN (no data) is shifted along.

    Parameters
    ----------
    image : (H, W) or (B, H, W) float32
        NaN where no data.
    shift : (float, float)
        From :attr:`ShiftEstimate.shift`; content moves by ``+shift`` (``scipy.ndimage.shift``
        convention).
    order : int
        1: bilinear (a parallel numba pass per band; a sub-pixel shift smooths at most like a
        2 x 2 mean); 3: cubic spline (``scipy.ndimage.shift``; keeps edges sharper, several
        times slower).
    min_shift : float
        Shifts smaller than this (pixels, both axes) are not applied (``image`` is copied, or
        left as it is when ``out`` is ``image``).
    out : float32 array of ``image``'s shape or None
        Where to write; may be ``image`` itself (shifted in place).

    Returns
    -------
    Same shape, float32 (``out`` when given); pixels shifted in from outside the image, or
    interpolated from a no-data pixel, are NaN.

    Notes
    -----
    Memory: for ``order=1`` the output (none in place) plus one (H, W) scratch plane in place.
    """
    image = np.asarray(image, dtype=np.float32)
    if out is not None and (out.shape != image.shape or out.dtype != np.float32):
        raise ValueError(f"out must be float32 of shape {image.shape}, got {out.dtype} {out.shape}")
    dy, dx = float(shift[0]), float(shift[1])
    if abs(dy) < min_shift and abs(dx) < min_shift:
        if out is None:
            return image.copy()
        if out is not image:
            np.copyto(out, image)
        return out
    if order == 1:
        return _bilinear_shift(image, dy, dx, out=out)
    planes = image[None] if image.ndim == 2 else image
    res = np.empty_like(planes)
    nan_any = np.isnan(planes).any(axis=0)
    # pixels shifted in from outside the image or from no-data pixels (any band) become NaN
    bad = ndimage.shift(nan_any.astype(np.float32), (dy, dx), order=1, mode="constant", cval=1.0) > 0.01
    for i, band in enumerate(planes):
        res[i] = ndimage.shift(_fill(band, ~nan_any), (dy, dx), order=order, mode="nearest")
        res[i][bad] = np.nan
    res = res[0] if image.ndim == 2 else res
    if out is None:
        return res
    np.copyto(out, res)
    return out
