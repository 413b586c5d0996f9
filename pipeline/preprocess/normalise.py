"""Relative radiometric normalisation of the after composite onto the before composite.

IR-MAD (:func:`pipeline.kernels.irmad.irmad`) finds pixels that did not change: it is invariant to
affine radiometric differences (gain, offset, haze), so its no-change probability is a fair
selector even when the two dates differ radiometrically. On those pixels an orthogonal (total
least squares) regression per band gives ``before ~ gain * after + offset`` (Canty and Nielsen
2008, RSE 112): orthogonal because both dates carry noise, where ordinary least squares would
bias the gain towards 0.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from ..errors import DataError

log = logging.getLogger(__name__)

IRMAD_SAMPLE = 100_000
"""IR-MAD statistics use at most this many random pixels (the transform covers every judged pixel).
The 2B x 2B weighted covariance needs no more: on a 2300^2 tile of the whole-tile bench pair,
100 000 instead of 200 000 moved the normalised reflectance by at most 6e-5 at 0.3 and cut the
13 iterations from about 200 to 100 ms."""
FIT_SAMPLE = 50_000
"""No-change pixels the orthogonal regression is fitted on at most (an even subsample). The 2 x B
parameters need no more: on a 2300^2 tile of the whole-tile bench pair, 50 000 instead of 100 000
pixels moved the normalised reflectance by at most 5e-5 at a reflectance of 0.3 (sensor noise is
about 5e-3; 100 000 against 500 000 had moved it by 2e-4 on the 4096^2 pair), and the fit, with
its trimming medians, takes about 0.1 s whatever the AOI's size. The persistence test fits one
map per after acquisition: on the demo's 34 that stage went from 4.5 to 2.1 s."""
NOCHANGE_SAMPLE = 500_000
"""Valid pixels IR-MAD judges for the no-change set at most (an even subsample). The fit uses at
most :data:`FIT_SAMPLE` of them, so judging more is waste: on a 2300^2 tile of the whole-tile bench
pair, 500 000 instead of 2 000 000 moved the normalised reflectance by at most 9e-5 at 0.3 (sensor
noise is about 5e-3) and the normalisation from about 500 to 320 ms a tile."""
_ROW = 4096  # the judged subsample is laid out in rows of this many pixels

__all__ = ["Normalisation", "tls_fit", "fit_normalisation", "irmad_nochange", "normalise", "apply_normalisation"]


@dataclass(frozen=True, eq=False)
class Normalisation:
    """Per-band linear map of a target image onto a reference.

    Attributes
    ----------
    gain, offset : (B,) float64
        ``reference ~ gain * target + offset`` (offset in reflectance units).
    nochange : (H, W) bool
        The no-change pixels the fit used.
    n_nochange : int
    residual_sd : (B,) float64
        Standard deviation of ``reference - (gain * target + offset)`` over the no-change pixels,
        reflectance units.
    irmad : object or None
        The IR-MAD result when IR-MAD selected the pixels: its transform (``rho``, ``a``, ``b``,
        means, ``sigma``) holds for the whole image, its ``chi2`` and ``p_nochange`` cover only
        the subsample judged, laid out in rows (apply :func:`pipeline.kernels.irmad.irmad_transform`
        for every pixel).
    """

    gain: np.ndarray
    offset: np.ndarray
    nochange: np.ndarray
    n_nochange: int
    residual_sd: np.ndarray
    irmad: object = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return {
            "gain": [round(float(g), 5) for g in self.gain],
            "offset": [round(float(o), 5) for o in self.offset],
            "n_nochange": int(self.n_nochange),
            "residual_sd": [round(float(r), 5) for r in self.residual_sd],
        }


def tls_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Orthogonal (total least squares) line ``y ~ slope * x + intercept``.

    The slope is that of the major axis of the 2x2 covariance of ``(x, y)``.

    Parameters
    ----------
    x, y : (N,) float
        Finite samples, N >= 2.

    Returns
    -------
    (slope, intercept) : float
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape or x.size < 2:
        raise ValueError(f"tls_fit needs two equal-length samples of at least 2 values, got {x.size} and {y.size}")
    mx, my = x.mean(), y.mean()
    c = np.cov(np.stack([x - mx, y - my]))
    w, v = np.linalg.eigh(c)
    vx, vy = v[:, np.argmax(w)]
    if abs(vx) < 1e-12:
        raise ValueError("tls_fit: vertical major axis (target has no variance)")
    slope = vy / vx
    return float(slope), float(my - slope * mx)


def fit_normalisation(
    reference: np.ndarray,
    target: np.ndarray,
    nochange: np.ndarray,
    *,
    min_pixels: int = 50,
    trim_sigma: float = 3.0,
    trim_iter: int = 2,
) -> Normalisation:
    """TLS fit per band of ``reference`` on ``target`` over the ``nochange`` pixels.

    The fit is repeated ``trim_iter`` times without the pixels whose residual in any band
    exceeds ``trim_sigma`` robust standard deviations (changed pixels IR-MAD let through).
    More than :data:`FIT_SAMPLE` candidate pixels are thinned to an even subsample (every k-th
    in raster order); ``Normalisation.nochange`` marks the pixels the final fit used.

    Parameters
    ----------
    reference, target : (B, H, W) float32
        Reflectance, NaN where no data.
    nochange : (H, W) bool
        Pixels taken as unchanged.
    min_pixels : int
        Fewer usable no-change pixels raise :class:`DataError`.
    """
    reference = np.asarray(reference, dtype=np.float32)
    target = np.asarray(target, dtype=np.float32)
    if reference.shape != target.shape or reference.ndim != 3:
        raise ValueError(f"reference and target must be (B, H, W) of one shape, got {reference.shape}, {target.shape}")
    m = np.asarray(nochange, dtype=bool)
    if m.shape != reference.shape[1:]:
        raise ValueError(f"nochange must be {reference.shape[1:]}, got {m.shape}")
    return _fit(reference, target, np.flatnonzero(m), min_pixels=min_pixels, trim_sigma=trim_sigma, trim_iter=trim_iter)


def _fit(
    reference: np.ndarray,
    target: np.ndarray,
    idx: np.ndarray,
    *,
    min_pixels: int = 50,
    trim_sigma: float = 3.0,
    trim_iter: int = 2,
    finite: bool = False,
    values: tuple[np.ndarray, np.ndarray] | None = None,
) -> Normalisation:
    """:func:`fit_normalisation` on the candidate pixels given by their ascending flat indices
    (``finite``: they are known to have data in every band of both composites). ``values``: the
    (B, idx.size) target and reference values at ``idx`` when the caller has them already (the
    judged subsample), so they are not gathered again from the whole composites."""
    B = reference.shape[0]
    if values is not None and not finite:
        raise ValueError("values are taken only for candidates known to be finite")
    if values is None:  # gathered once (float32) and tested for data in both on the candidates only
        values = (target.reshape(B, -1).take(idx, axis=1), reference.reshape(B, -1).take(idx, axis=1))
        if not finite:
            ok = np.isfinite(values[0]).all(axis=0) & np.isfinite(values[1]).all(axis=0)
            if not ok.all():
                idx, values = idx[ok], (values[0][:, ok], values[1][:, ok])
    n = idx.size
    if n < min_pixels:
        raise DataError(
            f"radiometric normalisation: only {n} no-change pixels with data in both composites "
            f"(need {min_pixels}); the windows overlap too little or changed everywhere"
        )
    step = -(-idx.size // FIT_SAMPLE)  # an even subsample: the fit of B gains and offsets needs no more
    idx = idx[::step]
    n = idx.size
    X = values[0][:, ::step].astype(np.float64)  # (B, n)
    Y = values[1][:, ::step].astype(np.float64)
    keep = np.ones(n, dtype=bool)
    gain = np.ones(B)
    offset = np.zeros(B)
    for _ in range(1 + trim_iter):
        for b in range(B):
            x, y = X[b, keep], Y[b, keep]
            try:
                gain[b], offset[b] = tls_fit(x, y)
            except ValueError:
                gain[b], offset[b] = 1.0, float(np.mean(y) - np.mean(x))
        res = Y - (gain[:, None] * X + offset[:, None])
        kept = res[:, keep]  # a copy: the medians may reorder it
        med = np.median(kept, axis=1, keepdims=True, overwrite_input=True)
        np.subtract(res[:, keep], med, out=kept)
        rsd = 1.4826 * np.median(np.abs(kept, out=kept), axis=1, keepdims=True, overwrite_input=True) + 1e-6
        new_keep = (np.abs(res - med) <= trim_sigma * rsd).all(axis=0)
        if new_keep.sum() < min_pixels or (new_keep == keep).all():
            break
        keep = new_keep
    sd = res[:, keep].std(axis=1)
    used = np.zeros(reference.shape[1:], dtype=bool)
    used.reshape(-1)[idx[keep]] = True
    return Normalisation(gain, offset, used, int(keep.sum()), sd)


def irmad_nochange(reference: np.ndarray, target: np.ndarray, *, valid: np.ndarray | None = None, p_min: float = 0.9, **irmad_options):
    """No-change pixels from IR-MAD: ``p_nochange > p_min``.

    Returns
    -------
    (nochange (H, W) bool, IRMADResult)
    """
    from ..kernels.irmad import irmad

    if valid is not None and "sample" not in irmad_options and int(valid.sum()) > IRMAD_SAMPLE:
        irmad_options["sample"] = IRMAD_SAMPLE  # statistics on a subsample, transform on all
    res = irmad(reference, target, mask=valid, **irmad_options)
    p = np.asarray(res.p_nochange)
    nochange = np.isfinite(p) & (p > p_min)
    if valid is not None:
        nochange &= valid
    return nochange, res


def _judged_pixels(reference: np.ndarray, target: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pixels IR-MAD judges: every k-th ``valid`` pixel in raster order (k = 1 up to
    :data:`NOCHANGE_SAMPLE` of them) with data in every band of both composites, as their flat
    indices and their values laid out ``(B, rows, _ROW)`` (whole rows of ``_ROW`` pixels, so the
    kernels run in parallel over rows; a single row when there are fewer than ``2 _ROW``).

    One parallel numba pass (:func:`pipeline.kernels._numba.every_kth_valid_pair`) instead of the
    flat indices of every valid pixel and two full gathers."""
    from ..kernels import _numba as K

    B = reference.shape[0]
    valid = np.ascontiguousarray(valid, dtype=bool).reshape(-1)
    n_valid = int(np.count_nonzero(valid))
    step = max(1, -(-n_valid // NOCHANGE_SAMPLE))
    cap = -(-n_valid // step)
    idx = np.empty(cap, np.int64)
    rs = np.empty((B, cap), np.float32)
    ts = np.empty((B, cap), np.float32)
    ref2 = np.ascontiguousarray(reference, dtype=np.float32).reshape(B, -1)
    tgt2 = np.ascontiguousarray(target, dtype=np.float32).reshape(B, -1)
    n = int(K.every_kth_valid_pair(ref2, tgt2, valid, step, idx, rs, ts))
    if n >= 2 * _ROW:
        n = (n // _ROW) * _ROW
        shape = (B, -1, _ROW)
    else:
        shape = (B, 1, -1)
    return idx[:n], np.ascontiguousarray(rs[:, :n]).reshape(shape), np.ascontiguousarray(ts[:, :n]).reshape(shape)


def normalise(
    reference: np.ndarray,
    target: np.ndarray,
    *,
    valid: np.ndarray | None = None,
    nochange: np.ndarray | None = None,
    p_min: float = 0.9,
    min_pixels: int = 50,
    min_fraction: float = 0.0,
) -> Normalisation:
    """Fit the map of ``target`` (after) onto ``reference`` (before) on IR-MAD no-change pixels.

    Parameters
    ----------
    reference, target : (B, H, W) float32
        Composites, reflectance, NaN where no data.
    valid : (H, W) bool or None
        Pixels eligible (e.g. inside the AOI with data in both); default all finite pixels.
    nochange : (H, W) bool or None
        Give to skip IR-MAD.
    p_min : float
        IR-MAD no-change probability above which a pixel is taken as unchanged.
    min_fraction : float
        Floor (0-1) on the share of ``valid`` pixels the fit uses: when fewer pass ``p_min``, the
        ``min_fraction`` of them with the highest no-change probability are taken instead. 0
        (default) keeps the plain ``p_min`` test (with the ``min_pixels`` fallback). IR-MAD can
        converge onto a small, spectrally narrow cluster (e.g. water) and call everything else
        changed; a per-band fit on a few dozen such pixels gives absurd gains (measured on a
        real L1C pair: 65 pixels, a B02 gain of 37 and negative gains elsewhere). With most of
        a scene unchanged, the most stable half (0.5) is a safe floor; the fit's own 3-sigma
        trimming removes the changed pixels that slip in.

    Returns
    -------
    Normalisation
        Apply with :func:`apply_normalisation`.
    """
    reference = np.asarray(reference, dtype=np.float32)
    target = np.asarray(target, dtype=np.float32)
    # pixels without data in both are dropped where they are used (the judged subsample, the
    # fit's candidates): testing every pixel of both composites here would cost two image passes
    valid = np.ones(reference.shape[1:], bool) if valid is None else np.asarray(valid, dtype=bool)
    res = None
    if nochange is None:
        if not 0.0 <= min_fraction <= 1.0:
            raise ValueError(f"min_fraction must be in [0, 1], got {min_fraction}")
        # IR-MAD judges an even subsample of the valid pixels (statistics on IRMAD_SAMPLE of
        # them, no-change probabilities for all of them): the fit needs no more
        idx, rs, ts = _judged_pixels(reference, target, valid)
        nc_s, res = irmad_nochange(rs, ts, valid=np.ones(rs.shape[1:], bool), p_min=p_min)
        nc_s = nc_s.reshape(-1)
        n_nc, n_valid = int(nc_s.sum()), idx.size
        if n_nc < min_pixels or n_nc < min_fraction * n_valid:  # fall back to the most stable pixels
            p = np.nan_to_num(np.asarray(res.p_nochange, dtype=np.float64).reshape(-1), nan=-1.0)
            share = 0.1 if n_nc < min_pixels else 0.0
            k = min(n_valid, max(min_pixels, int(max(share, min_fraction) * n_valid)))
            log.info("normalisation: %d IR-MAD no-change pixels (p > %.2f) of %d; fitting on the %d most stable", n_nc, p_min, n_valid, k)
            if k > 0:
                cut = np.partition(p, -k)[-k]
                nc_s = p >= cut
        candidates = idx[nc_s]  # ascending flat indices, valid and with data by construction
        B = reference.shape[0]
        values = (ts.reshape(B, -1)[:, nc_s], rs.reshape(B, -1)[:, nc_s])
        norm = _fit(reference, target, candidates, min_pixels=min_pixels, finite=True, values=values)
    else:
        nochange = np.asarray(nochange, dtype=bool)
        if nochange.shape != reference.shape[1:]:
            raise ValueError(f"nochange must be {reference.shape[1:]}, got {nochange.shape}")
        norm = _fit(reference, target, np.flatnonzero(nochange & valid), min_pixels=min_pixels)
    if res is not None:
        norm = Normalisation(norm.gain, norm.offset, norm.nochange, norm.n_nochange, norm.residual_sd, res)
    log.debug("normalisation: gain %s offset %s on %d pixels", norm.gain.round(4), norm.offset.round(4), norm.n_nochange)
    return norm


def apply_normalisation(target: np.ndarray, norm: Normalisation, *, out: np.ndarray | None = None) -> np.ndarray:
    """``gain * target + offset`` per band: (B, H, W) or (T, B, H, W) float32 (NaN stays NaN).

    ``out`` (same shape, float32, C-contiguous; may be ``target`` itself) receives the result."""
    from ..kernels import _numba as K

    target = np.ascontiguousarray(target, dtype=np.float32)
    if target.ndim not in (3, 4) or target.shape[-3] != len(norm.gain):
        raise ValueError(f"target must be (B, H, W) or (T, B, H, W) with B = {len(norm.gain)}, got {target.shape}")
    B = target.shape[-3]
    x = target.reshape(-1, B, target.shape[-2] * target.shape[-1])
    if out is None:
        out = np.empty_like(target)
    elif out.shape != target.shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous float32 array of shape {target.shape}")
    K.affine_bands(x, norm.gain.astype(np.float32), norm.offset.astype(np.float32), out.reshape(x.shape))
    return out
