"""Automatic thresholds of a change statistic, chosen by name from :data:`THRESHOLDS`.

``threshold(values, "otsu")`` returns a float ``t``; pixels with ``values > t`` are change.
NaN and infinite values are ignored; ``mask`` restricts the pixels considered; ``sample=N``
estimates the threshold from N random finite values (the histogram methods lose little from
subsampling and a full tile has 120 million pixels).
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np

from ..errors import UsageError
from . import _numba
from ._checks import is_dask

log = logging.getLogger(__name__)

__all__ = [
    "THRESHOLDS",
    "apply_threshold",
    "chi2_threshold",
    "kittler_illingworth",
    "local_peak_keep",
    "otsu",
    "threshold",
]


def _histogram_np(values: np.ndarray, nbins: int) -> tuple[np.ndarray, np.ndarray]:
    """(counts, bin centres) of finite 1-D values exactly as scikit-image builds them."""
    counts, edges = np.histogram(values, bins=int(nbins))
    return counts, (edges[:-1] + edges[1:]) / 2.0


def otsu_from_histogram(counts: np.ndarray, centers: np.ndarray) -> float:
    """Otsu threshold of a histogram (``skimage.filters.threshold_otsu(hist=...)``)."""
    from skimage.filters import threshold_otsu

    return float(threshold_otsu(hist=(counts, centers)))


def kittler_illingworth_from_histogram(counts: np.ndarray, centers: np.ndarray) -> float:
    """Kittler-Illingworth minimum error threshold of a histogram (see :func:`kittler_illingworth`)."""
    centers = centers.astype(np.float64)
    h = counts.astype(np.float64)
    c0 = np.cumsum(h)
    c1 = np.cumsum(h * centers)
    c2 = np.cumsum(h * centers**2)
    n = c0[-1]
    # class 1: bins [0, t], class 2: bins (t, nbins)
    P1 = c0[:-1]
    P2 = n - P1
    with np.errstate(divide="ignore", invalid="ignore"):
        m1 = c1[:-1] / P1
        m2 = (c1[-1] - c1[:-1]) / P2
        v1 = c2[:-1] / P1 - m1**2
        v2 = (c2[-1] - c2[:-1]) / P2 - m2**2
        p1, p2 = P1 / n, P2 / n
        # J = 1 + 2 (p1 ln s1 + p2 ln s2) - 2 (p1 ln p1 + p2 ln p2), with 2 ln s = ln v
        J = 1.0 + (p1 * np.log(v1) + p2 * np.log(v2)) - 2.0 * (p1 * np.log(p1) + p2 * np.log(p2))
    # a class needs a positive variance to be a Gaussian
    ok = (P1 > 0) & (P2 > 0) & (v1 > 0) & (v2 > 0) & np.isfinite(J)
    if not ok.any():
        return float(centers[np.argmax(P1 >= n / 2)])
    t = int(np.flatnonzero(ok)[np.argmin(J[ok])])
    return float(centers[t])


def otsu(values: np.ndarray, *, nbins: int = 256) -> float:
    """Otsu (1979): maximise the between-class variance (``skimage.filters.threshold_otsu``).

    Parameters
    ----------
    values : (N,) float
        Finite values.
    nbins : int
        Histogram bins.
    """
    if values.min() == values.max():
        return float(values.reshape(-1)[0])
    return otsu_from_histogram(*_histogram_np(values, nbins))


def kittler_illingworth(values: np.ndarray, *, nbins: int = 256) -> float:
    """Kittler and Illingworth (1986) minimum error threshold.

    Fits two Gaussians to the histogram split at each candidate bin and minimises the criterion
    ``J(t) = 1 + 2 (P1 ln s1 + P2 ln s2) - 2 (P1 ln P1 + P2 ln P2)``, where ``P``, ``s`` are the
    weight and standard deviation of each class. Returns the centre of the last bin of the lower
    class (the same convention as Otsu in scikit-image: ``values > t`` is the upper class).

    Parameters
    ----------
    values : (N,) float
        Finite values.
    nbins : int
        Histogram bins.
    """
    lo, hi = float(values.min()), float(values.max())
    if lo == hi:
        return lo
    return kittler_illingworth_from_histogram(*_histogram_np(values, nbins))


def chi2_threshold(values: np.ndarray | None = None, *, dof: int | None = None, alpha: float = 0.01) -> float:
    """Chi-square threshold: the value a no-change pixel exceeds with probability ``alpha``.

    ``scipy.stats.chi2.isf(alpha, dof)``; for the IR-MAD statistic ``chi2`` use ``dof = B``.
    The values are not used (the threshold comes from the distribution).
    """
    from scipy.stats import chi2

    if not (isinstance(dof, (int, np.integer)) and dof >= 1):
        raise UsageError(f"chi2 threshold needs dof=<integer >= 1> (the number of bands for IR-MAD), got {dof!r}")
    if not (0.0 < float(alpha) < 1.0):
        raise UsageError(f"alpha must be a probability in (0, 1), got {alpha!r}")
    return float(chi2.isf(float(alpha), int(dof)))


THRESHOLDS: dict[str, Callable[..., float]] = {
    "otsu": otsu,
    "kittler-illingworth": kittler_illingworth,
    "chi2": chi2_threshold,
}
"""Named threshold strategies: ``f(finite_values_1d, **kw) -> float``."""

_FROM_HISTOGRAM = {"otsu": otsu_from_histogram, "kittler-illingworth": kittler_illingworth_from_histogram}


def _finite_values(values, mask, sample: int | None, seed: int) -> np.ndarray:
    if is_dask(values):
        values = values.compute()
        if is_dask(mask):
            mask = mask.compute()
    values = np.asarray(values)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != values.shape or mask.dtype != bool:
            raise UsageError(
                f"mask must be a bool array of the values' shape {values.shape}, got {mask.dtype} {mask.shape}"
            )
    if sample is not None:
        if not (isinstance(sample, (int, np.integer)) and sample >= 1):
            raise UsageError(f"sample must be None or a positive integer, got {sample!r}")
        flat = values.reshape(-1)
        if sample < flat.size:
            rng = np.random.default_rng(seed)
            # draw extra so that invalid pixels do not starve the sample; top up if still short
            idx = rng.integers(0, flat.size, size=int(sample))
            v = flat[idx]
            keep = np.isfinite(v)
            if mask is not None:
                keep &= mask.reshape(-1)[idx]
            out = v[keep]
            if out.size >= max(1, int(sample) // 4):
                return out
    v = values[mask] if mask is not None else values.reshape(-1)
    return v[np.isfinite(v)]


def _fast_histogram(values, mask, nbins: int):
    """Histogram of a (H, W) float32 numpy array in one parallel pass, equal to ``np.histogram`` of
    its finite values. Returns (counts, centers) or (None, constant) or (None, None) if empty."""
    use = mask is not None
    if use and (not isinstance(mask, np.ndarray) or mask.shape != values.shape or mask.dtype != bool):
        raise UsageError(f"mask must be a bool array of the values' shape {values.shape}")
    m = mask if use else np.ones((1, 1), bool)
    lo, hi, n = _numba.finite_minmax(values, m, use)
    if n == 0:
        return None, None
    lo, hi = np.float32(lo), np.float32(hi)
    if lo == hi:
        return None, float(lo)
    edges = np.linspace(lo, hi, int(nbins) + 1, endpoint=True, dtype=np.float32)
    counts = np.zeros(int(nbins), np.int64)
    _numba.histogram(values, m, use, lo, np.float32(nbins) / np.float32(hi - lo), edges, counts)
    return counts, (edges[:-1] + edges[1:]) / 2.0


def threshold(values, method="otsu", *, mask=None, sample: int | None = None, seed: int = 0, **kw) -> float:
    """An automatic threshold of a change statistic.

    Parameters
    ----------
    values : array of float
        The statistic, any shape (e.g. (H, W) float32 CVA magnitude); NaN/inf ignored.
    method : str or callable
        A name in :data:`THRESHOLDS` (``"otsu"``, ``"kittler-illingworth"``, ``"chi2"``) or a callable
        ``f(finite_values_1d, **kw) -> float``.
    mask : bool array of ``values.shape``, optional
        Only these pixels are considered (True = use).
    sample : int, optional
        Estimate from this many random pixels (drawn with ``seed``); ignored by ``chi2``.
    seed : int
    **kw
        Options of the method: ``nbins`` (otsu, kittler-illingworth), ``dof`` and ``alpha`` (chi2).

    Returns
    -------
    float
        ``values > threshold`` is change.

    Raises
    ------
    ValueError
        Unknown method name (the message lists the valid ones).
    UsageError
        No finite values to threshold, bad mask or options.
    """
    if callable(method):
        fn, name = method, getattr(method, "__name__", "callable")
    else:
        if method not in THRESHOLDS:
            raise ValueError(f"unknown threshold method {method!r}; valid names: {', '.join(THRESHOLDS)}")
        fn, name = THRESHOLDS[method], method
    if name == "chi2" and fn is chi2_threshold:
        return chi2_threshold(None, **kw)
    if (
        name in _FROM_HISTOGRAM
        and fn is THRESHOLDS[name]
        and sample is None
        and isinstance(values, np.ndarray)
        and values.dtype == np.float32
        and values.ndim == 2
        and set(kw) <= {"nbins"}
    ):
        nbins = kw.get("nbins", 256)
        if not (isinstance(nbins, (int, np.integer)) and nbins >= 2):
            raise UsageError(f"nbins must be an integer >= 2, got {nbins!r}")
        counts, centers = _fast_histogram(values, mask, nbins)
        if counts is None:
            if centers is None:
                raise UsageError(f"threshold({name!r}): no finite values to threshold (all NaN, or the mask is empty)")
            return centers
        t = _FROM_HISTOGRAM[name](counts, centers)
        log.debug("threshold %s over %d values: %g", name, int(counts.sum()), t)
        return t
    v = _finite_values(values, mask, sample, seed)
    if v.size == 0:
        raise UsageError(f"threshold({name!r}): no finite values to threshold (all NaN, or the mask is empty)")
    try:
        t = float(fn(v, **kw))
    except TypeError as exc:
        raise UsageError(f"threshold({name!r}) got options it does not take: {sorted(kw)}: {exc}") from exc
    log.debug("threshold %s over %d values: %g", name, v.size, t)
    return t


def apply_threshold(values, t: float, *, mask=None, out=None):
    """``(values > t) & mask`` as a bool array (False for NaN).

    One parallel pass for (H, W) float32 numpy input (no temporaries); numpy/dask operators otherwise.

    Parameters
    ----------
    values : (H, W) float32
    t : float
        Threshold (compared in float32 for float32 values).
    mask : (H, W) bool, optional
        Pixels allowed to be change (e.g. valid and inside the AOI).
    out : (H, W) bool, optional
    """
    if is_dask(values) or is_dask(mask):
        return (values > t) if mask is None else (values > t) & mask
    values = np.asarray(values)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != values.shape or mask.dtype != bool:
            raise UsageError(f"mask must be a bool array of shape {values.shape}, got {mask.dtype} {mask.shape}")
    if out is None:
        out = np.empty(values.shape, bool)
    elif not isinstance(out, np.ndarray) or out.shape != values.shape or out.dtype != bool:
        raise UsageError(f"out must be a bool array of shape {values.shape}")
    if values.dtype != np.float32 or values.ndim != 2:
        np.greater(values, t, out=out)
        if mask is not None:
            out &= mask
        return out
    m = mask if mask is not None else np.ones((1, 1), bool)
    _numba.greater_mask(values, np.float32(t), m, mask is not None, out)
    return out


def local_peak_keep(changed, values, fraction: float, *, radius_px: int, query=None, out=None) -> np.ndarray:
    """Changed pixels whose value reaches ``fraction`` x the local peak of the changed pixels.

    A halo trim: a pixel of ``changed`` is kept when ``values`` there is at least ``fraction``
    times the largest ``values`` of a changed pixel within ``radius_px`` pixels (a square
    (2r+1)^2 window clipped at the edges); unchanged pixels are False. With ``query``, the
    pixels of ``query`` are tested instead (changed or not) against the same local peak, or
    their own value when larger: which pixels next to a change would pass its trim.

    Parameters
    ----------
    changed : (H, W) bool
    values : (H, W) float32
        The change statistic; must be finite where ``changed`` or ``query`` (NaN elsewhere is fine).
    fraction : float
        0-1.
    radius_px : int, keyword-only
        Window radius, pixels (>= 0; 0 keeps every changed pixel with ``values >= fraction x values``).
    query : (H, W) bool, keyword-only, optional
        The pixels tested; default ``changed``.
    out : (H, W) bool, optional

    Notes
    -----
    One parallel pass over the rows; only tested pixels read their window, so the cost is about
    (tested pixels) x (2r+1)^2 reads, no temporaries.
    """
    changed = np.asarray(changed)
    values = np.asarray(values)
    if changed.dtype != bool or changed.ndim != 2 or values.shape != changed.shape:
        raise UsageError(f"changed must be a (H, W) bool array and values of its shape; got {changed.dtype} {changed.shape}, {values.shape}")
    if query is None:
        query = changed
    else:
        query = np.asarray(query)
        if query.dtype != bool or query.shape != changed.shape:
            raise UsageError(f"query must be a bool array of shape {changed.shape}; got {query.dtype} {query.shape}")
    if not (isinstance(radius_px, (int, np.integer)) and radius_px >= 0):
        raise UsageError(f"radius_px must be a non-negative int, got {radius_px!r}")
    if out is None:
        out = np.empty(changed.shape, bool)
    elif not isinstance(out, np.ndarray) or out.shape != changed.shape or out.dtype != bool:
        raise UsageError(f"out must be a bool array of shape {changed.shape}")
    vals = values if values.dtype == np.float32 else values.astype(np.float32)
    _numba.local_peak_keep(changed, query, vals, int(radius_px), np.float32(fraction), out)
    return out
