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

__all__ = ["THRESHOLDS", "threshold", "otsu", "kittler_illingworth", "chi2_threshold", "apply_threshold"]


def otsu(values: np.ndarray, *, nbins: int = 256) -> float:
    """Otsu (1979): maximise the between-class variance (``skimage.filters.threshold_otsu``).

    Parameters
    ----------
    values : (N,) float
        Finite values.
    nbins : int
        Histogram bins.
    """
    from skimage.filters import threshold_otsu

    if values.min() == values.max():
        return float(values[0])
    return float(threshold_otsu(values, nbins=int(nbins)))


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
    counts, edges = np.histogram(values, bins=int(nbins), range=(lo, hi))
    centers = 0.5 * (edges[:-1] + edges[1:])
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
        J = 1.0 + (p1 * np.log(v1) + p2 * np.log(v2)) - 2.0 * (p1 * np.log(p1) + p2 * np.log(p2))
    # 2 ln s = ln v; a class needs a positive variance to be a Gaussian
    ok = (P1 > 0) & (P2 > 0) & (v1 > 0) & (v2 > 0) & np.isfinite(J)
    if not ok.any():
        return float(centers[np.argmax(P1 >= n / 2)])
    t = int(np.flatnonzero(ok)[np.argmin(J[ok])])
    return float(centers[t])


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

_NEEDS_VALUES = {"otsu", "kittler-illingworth"}


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
                return out.astype(np.float64, copy=False)
    v = values[mask] if mask is not None else values.reshape(-1)
    return v[np.isfinite(v)].astype(np.float64, copy=False)


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
    v = _finite_values(values, mask, sample, seed)
    if v.size == 0:
        raise UsageError(f"threshold({name!r}): no finite values to threshold (all NaN, or the mask is empty)")
    try:
        t = float(fn(v, **kw))
    except TypeError as exc:
        raise UsageError(f"threshold({name!r}) got options it does not take: {sorted(kw)}: {exc}") from exc
    log.debug("threshold %s over %d values: %g", name, v.size, t)
    return t


def apply_threshold(values, t: float, *, out=None):
    """``values > t`` as a bool mask (False for NaN), in one parallel pass for (H, W) float32 numpy input."""
    if is_dask(values):
        return values > t
    values = np.asarray(values)
    if values.dtype != np.float32 or values.ndim != 2:
        return np.greater(values, t, out=out)
    if out is None:
        out = np.empty(values.shape, bool)
    elif out.shape != values.shape or out.dtype != bool:
        raise UsageError(f"out must be a bool array of shape {values.shape}")
    _numba.greater_mask(values, np.float32(t), out)
    return out
