"""Iteratively reweighted multivariate alteration detection (IR-MAD; Nielsen 2007, IEEE TIP 16(2)).

The MAD variates are differences of canonical variates, ``MAD_k = a_k . (x - mx) - b_k . (y - my)``,
where ``a_k``, ``b_k`` maximise the (weighted) correlation ``rho_k`` between the dates. Each iteration
reweights every pixel with its chi-square no-change probability ``P(chi2_B > sum_k (MAD_k /
sigma_k)^2)``, so that change does not pollute the statistics. The transform is invariant to an
affine radiometric change of either date (gain and offset per band, or any invertible linear mix),
so uint16 DN with or without the +1000 offset give the same MAD variates.

Cost: each iteration is one pass over the statistics pixels (all valid pixels, or a random subsample
of ``sample`` pixels), then one streaming pass over every pixel computes ``chi2`` and
``p_nochange``. Memory: the two (H, W) float32 outputs, plus (B, sample) for a subsample.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..errors import UsageError
from . import _dispatch, _numba
from ._checks import check_mask, check_out, check_pair, is_dask

log = logging.getLogger(__name__)

__all__ = ["IRMADResult", "irmad", "irmad_transform", "mad_variates", "nochange_mask"]


@dataclass(frozen=True, eq=False)
class IRMADResult:
    """Outcome of :func:`irmad`.

    Attributes
    ----------
    rho : (B,) float64
        Canonical correlations, descending (1 = that canonical variate did not change at all).
    a, b : (B, B) float64
        Transform vectors (columns, in ``rho`` order) applied to the centred reflectance of
        ``before`` and ``after``: ``MAD_k = a[:, k] . (x - mean_before) - b[:, k] . (y - mean_after)``.
        Normalised to unit (weighted) variance of the canonical variates.
    sigma : (B,) float64
        Standard deviations of the MAD variates, ``sqrt(2 (1 - rho))`` (their variances are
        ``sigma**2``).
    chi2 : (H, W) float32
        ``sum_k (MAD_k / sigma_k)^2``: chi-square distributed with B degrees of freedom for
        no-change pixels. NaN where no data.
    p_nochange : (H, W) float32
        No-change probability ``P(chi2_B > chi2)`` in [0, 1]; NaN where no data.
    iterations : int
        Statistics passes made.
    converged : bool
        True if the largest change of ``rho`` between the last two iterations was below ``tol``.
    mean_before, mean_after : (B,) float64
        Weighted means of the reflectance of the two dates (DN x 1e-4 for uint16 input).
    n_samples : int
        Valid pixels the statistics were computed on.
    """

    rho: np.ndarray
    a: np.ndarray
    b: np.ndarray
    sigma: np.ndarray
    chi2: np.ndarray
    p_nochange: np.ndarray
    iterations: int
    converged: bool
    mean_before: np.ndarray
    mean_after: np.ndarray
    n_samples: int

    @property
    def n_bands(self) -> int:
        return int(self.rho.shape[0])


def _cca(S: np.ndarray, B: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Canonical correlation from a joint (2B, 2B) covariance: (rho desc, a, b), whitening + SVD.

    numpy's LAPACK only: scipy's threaded triangular solves cost tens of milliseconds per call on
    a busy machine for these tiny matrices.
    """
    S11, S22, S12 = S[:B, :B], S[B:, B:], S[:B, B:]
    try:
        L1 = np.linalg.cholesky(S11)
        L2 = np.linalg.cholesky(S22)
    except np.linalg.LinAlgError as exc:
        raise UsageError(
            "IR-MAD: the band covariance of one date is singular over the statistics pixels (a band is "
            "constant or a copy/linear mix of others there); drop that band or widen the mask"
        ) from exc
    L1i = np.linalg.inv(L1)
    L2i = np.linalg.inv(L2)
    K = L1i @ S12 @ L2i.T
    U, s, Vt = np.linalg.svd(K)
    A = L1i.T @ U
    Bm = L2i.T @ Vt.T
    # sign convention: each canonical variate of `before` correlates positively with the band sum
    sd = np.sqrt(np.diag(S11))
    sgn = np.sign((S11 @ A / sd[:, None]).sum(axis=0))
    sgn[sgn == 0] = 1.0
    return np.clip(s, 0.0, 1.0), A * sgn, Bm * sgn


def _sample_pair(before, after, sample: int, seed: int, mask=None):
    """Gather ``sample`` random pixels of both dates as a (B, R, C) pair (padded with no data).

    Pixels outside ``mask`` are drawn but set to no data, so they carry no weight."""
    B, H, W = before.shape
    rng = np.random.default_rng(seed)
    n = H * W
    drawn = np.zeros(n, dtype=bool)  # the sorted distinct draws, as np.unique gives them, in O(n)
    drawn[rng.integers(0, n, size=sample, dtype=np.int64)] = True
    idx = np.flatnonzero(drawn)
    C = 4096
    R = -(-idx.size // C)
    keep = None
    if mask is not None:
        ii, jj = np.divmod(idx, W)
        keep = np.asarray(mask.vindex[ii, jj] if is_dask(mask) else mask[ii, jj])

    def take(img):
        if is_dask(img):
            ii, jj = np.divmod(idx, W)
            vals = np.stack([np.asarray(img[b].vindex[ii, jj]) for b in range(B)])
        else:
            vals = np.empty((B, idx.size), img.dtype)
            _numba.gather(img, idx, vals)
        fill = 0 if img.dtype == np.uint16 else np.nan
        if keep is not None:
            vals[:, ~keep] = fill
        out = np.full((B, R * C), fill, img.dtype)
        out[:, : idx.size] = vals
        return out.reshape(B, R, C)

    return take(before), take(after)


def irmad(before, after, *, mask=None, max_iter: int = 30, tol: float = 1e-3, sample: int | None = None, seed: int = 0):
    """IR-MAD change statistics of a co-registered pair.

    Parameters
    ----------
    before, after : (B, H, W) uint16 or float32
        uint16 DN (0 = no data) or float32 reflectance (NaN = no data); numpy or dask. Offsets do not
        matter (affine invariance). B >= 2.
    mask : (H, W) bool, optional
        Pixels allowed into the statistics (True = use), e.g. clear and inside the AOI. ``chi2`` and
        ``p_nochange`` are computed for every valid pixel regardless.
    max_iter : int
        Maximum statistics passes (1 = plain MAD).
    tol : float
        Convergence: stop when no canonical correlation moves more than ``tol`` (default 1e-3, the
        criterion of Canty's reference implementation, ``iMad.py``). The smallest canonical
        correlations creep for dozens of iterations after the no-change weights have settled: at
        1e-4 a 4096^2 pair and the simulated AOIs ran all 30 iterations.
    sample : int, optional
        Compute the statistics on this many random pixels (drawn with ``seed``) instead of all;
        recommended for full tiles (e.g. 1_000_000). The final transform still covers every pixel.
    seed : int
        Seed of the subsample.

    Returns
    -------
    IRMADResult

    Raises
    ------
    UsageError
        Bad shapes/dtypes, fewer than ``2 B + 1`` valid statistics pixels, or a singular band
        covariance.
    """
    before, after = check_pair(before, after)
    B, H, W = before.shape
    if B < 2:
        raise UsageError(f"IR-MAD needs at least 2 bands, got {B}")
    mask = check_mask(mask, (H, W))
    if not (isinstance(max_iter, (int, np.integer)) and max_iter >= 1):
        raise UsageError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    if not (float(tol) > 0):
        raise UsageError(f"tol must be positive, got {tol!r}")
    if sample is not None and not (isinstance(sample, (int, np.integer)) and sample >= 2 * B + 1):
        raise UsageError(f"sample must be None or an integer >= {2 * B + 1} pixels, got {sample!r}")

    sb, sa = before, after
    smask = mask
    if sample is not None and sample < H * W:
        sb, sa = _sample_pair(before, after, int(sample), seed, mask)
        smask = None

    P = 2 * B
    mx = np.zeros(B)
    my = np.zeros(B)
    A = np.zeros((B, B))
    Bm = np.zeros((B, B))
    inv_sigma = np.zeros(B)
    rho_prev = None
    converged = False
    it = 0
    n_valid = 0
    for it in range(1, int(max_iter) + 1):
        mom = _dispatch.irmad_moments(sb, sa, smask, mx, my, A, Bm, inv_sigma, weighted=it > 1)
        sw = mom[0]
        if it == 1:
            n_valid = int(round(sw))
            if n_valid < P + 1:
                raise UsageError(
                    f"IR-MAD needs at least {P + 1} valid pixels (inside mask, data in all {B} bands of both "
                    f"dates) for its statistics, found {n_valid}"
                )
        if not (sw > 0):
            raise UsageError("IR-MAD: every pixel got zero no-change weight; the dates share nothing")
        mz = mom[1 : 1 + P] / sw
        S = mom[1 + P :].reshape(P, P)
        S = np.triu(S) + np.triu(S, 1).T
        S = S / sw - np.outer(mz, mz)
        mx = mx + mz[:B]
        my = my + mz[B:]
        rho, A, Bm = _cca(S, B)
        inv_sigma = 1.0 / np.sqrt(np.maximum(2.0 * (1.0 - rho), 1e-12))
        if log.isEnabledFor(logging.DEBUG):
            log.debug("IR-MAD iteration %d: rho=%s", it, np.array2string(rho, precision=5))
        if rho_prev is not None and np.max(np.abs(rho - rho_prev)) < tol:
            converged = True
            break
        rho_prev = rho
    if not converged:
        log.info("IR-MAD did not converge in %d iterations (tol=%g)", it, tol)
    chi2, p = _dispatch.irmad_transform(before, after, mx, my, A, Bm, inv_sigma)
    return IRMADResult(
        rho=rho,
        a=A,
        b=Bm,
        sigma=1.0 / inv_sigma,
        chi2=chi2,
        p_nochange=p,
        iterations=it,
        converged=converged,
        mean_before=mx,
        mean_after=my,
        n_samples=n_valid,
    )


def irmad_transform(before, after, result: IRMADResult, *, probability: bool = True, out=None) -> tuple:
    """Apply the transform of ``result`` to a (possibly other) pair: one streaming pass.

    Use it to process a large pair blockwise: :func:`irmad` on a sample (or a few windows), then
    this function on every block.

    Parameters
    ----------
    before, after : (B, H, W) uint16 or float32
        Same bands (and the same DN offsets convention) as the pair ``result`` was computed on.
    result : IRMADResult
    probability : bool
        Also compute ``p_nochange`` (one chi-square survival function per pixel, the costly part
        of the pass). Without it, threshold ``chi2`` directly: ``p_nochange > p`` is
        ``chi2 < chi2_threshold(dof=B, alpha=p)``.
    out : (2, H, W) float32, optional
        Preallocated ``(chi2, p_nochange)`` (plane 1 unused without ``probability``).

    Returns
    -------
    chi2 : (H, W) float32
        As in :class:`IRMADResult`; NaN where no data.
    p_nochange : (H, W) float32 or None
        None when ``probability`` is False.
    """
    before, after = check_pair(before, after)
    if before.shape[0] != result.n_bands:
        raise UsageError(f"result was computed on {result.n_bands} bands, the images have {before.shape[0]}")
    inv_sigma = 1.0 / result.sigma
    if out is not None:
        if is_dask(before) or is_dask(after):
            raise UsageError("out= is only supported for numpy input")
        out = check_out(out, (2,) + tuple(before.shape[1:]))
        dec = _dispatch.decode_args(before.dtype, after.dtype, (0, 0))
        _numba.irmad_transform(
            before, after, *dec, result.mean_before, result.mean_after, result.a, result.b, inv_sigma,
            bool(probability), *_dispatch.chi2_sf_table(before.shape[0]), out[0], out[1],
        )
        return out[0], (out[1] if probability else None)
    return _dispatch.irmad_transform(
        before, after, result.mean_before, result.mean_after, result.a, result.b, inv_sigma, probability=bool(probability)
    )


def mad_variates(before, after, result: IRMADResult, *, out=None) -> np.ndarray:
    """The MAD variates of a pair under the transform of ``result``.

    Parameters
    ----------
    before, after : (B, H, W) uint16 or float32
        The pair (or another pair with the same bands) :func:`irmad` was run on.
    result : IRMADResult
    out : (B, H, W) float32, optional

    Returns
    -------
    (B, H, W) float32
        ``MAD_k`` in ``rho`` order (the last one, lowest correlation, carries most change); NaN where
        no data. Divide by ``result.sigma[k]`` for unit variance.
    """
    before, after = check_pair(before, after)
    if before.shape[0] != result.n_bands:
        raise UsageError(f"result was computed on {result.n_bands} bands, the images have {before.shape[0]}")
    if is_dask(before) or is_dask(after):
        raise UsageError("mad_variates takes numpy arrays; compute the dask arrays first (it writes B full planes)")
    out = check_out(out, before.shape)
    dec = _dispatch.decode_args(before.dtype, after.dtype, (0, 0))
    _numba.mad_variates(before, after, *dec, result.mean_before, result.mean_after, result.a, result.b, out)
    return out


def nochange_mask(result: IRMADResult, *, p: float = 0.95):
    """Pixels whose no-change probability exceeds ``p`` (False where no data).

    These are the invariant pixels for relative radiometric normalisation (Canty and Nielsen 2008).

    Returns
    -------
    (H, W) bool
    """
    if not (0.0 <= float(p) < 1.0):
        raise UsageError(f"p must be a probability in [0, 1), got {p!r}")
    pn = result.p_nochange
    if is_dask(pn):
        return pn > p
    out = np.empty(pn.shape, bool)
    _numba.greater_mask(pn, np.float32(p), np.ones((1, 1), bool), False, out)
    return out
