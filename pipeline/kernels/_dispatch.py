"""The one place that sends an array to a kernel: numpy -> numba kernel, dask -> ``map_blocks``.

Public wrappers in :mod:`.metrics` and :mod:`.irmad` check their arguments and then call
:func:`pair_map`, :func:`single_map` or :func:`zscore_cva`; nothing else knows about dask.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from ..errors import MissingOptionalDependency, UsageError
from . import _numba
from ._checks import check_out, is_dask


def decode_args(before_dtype, after_dtype, offsets) -> tuple:
    """(ob, oa, sb, sa, zb, za): offsets, scales and 'DN 0 is no data' flags of both inputs."""
    ob, oa = offsets
    zb = np.dtype(before_dtype) == np.uint16
    za = np.dtype(after_dtype) == np.uint16
    return (
        np.float32(ob),
        np.float32(oa),
        np.float32(1e-4 if zb else 1.0),
        np.float32(1e-4 if za else 1.0),
        bool(zb),
        bool(za),
    )


SF_STEP = 1.0 / 64.0
"""Node spacing of :func:`chi2_sf_table`, in sqrt(chi2)."""


@functools.lru_cache(maxsize=32)
def chi2_sf_table(k: int) -> tuple[np.ndarray, float]:
    """(table, 1 / step): the chi-square survival function with ``k`` degrees of freedom as cubic
    Hermite pieces in s = sqrt(chi2) between nodes ``SF_STEP`` apart, for the kernels' per-pixel
    lookups (in s the function is smooth at 0 for every k, which it is not in chi2 for odd k).

    Values and slopes at the nodes are scipy's (``special.chdtrc`` and the density); the cubics
    keep within about 1e-9 of it (tested), far below a float32 probability's resolution. The table
    ends where the function falls under 1e-30; its last row is that value, used beyond. (Only
    ``scipy.special``, which the program has loaded anyway: ``scipy.stats`` costs 0.5 s to import.)
    """
    from scipy import special

    if k < 2:
        raise UsageError(f"chi-square table: k must be >= 2, got {k}")
    smax = math.sqrt(float(special.chdtri(k, 1e-30)))
    s = np.arange(0, math.ceil(smax / SF_STEP) + 1) * SF_STEP
    x = s * s
    f = special.chdtrc(k, x)
    # d f / d u with u = s / step: -density(x) * 2 s * step, the density
    # x^(k/2 - 1) e^(-x/2) / (2^(k/2) Gamma(k/2)); 0 at s = 0 for every k >= 2
    h = 0.5 * k
    d = np.zeros_like(s)
    pos = s > 0
    density = np.exp((h - 1.0) * np.log(x[pos]) - 0.5 * x[pos] - h * math.log(2.0) - special.gammaln(h))
    d[pos] = -density * 2.0 * s[pos] * SF_STEP
    f0, f1, d0, d1 = f[:-1], f[1:], d[:-1], d[1:]
    lut = np.zeros((s.size, 4))
    lut[:-1, 0] = f0
    lut[:-1, 1] = d0
    lut[:-1, 2] = 3.0 * (f1 - f0) - 2.0 * d0 - d1
    lut[:-1, 3] = 2.0 * (f0 - f1) + d0 + d1
    lut[-1, 0] = f[-1]
    lut.setflags(write=False)
    return lut, 1.0 / SF_STEP


def _dask():
    try:
        import dask.array as da
    except ImportError as exc:  # pragma: no cover - only without the extra
        raise MissingOptionalDependency("dask input needs dask: pip install 's2watch[dask]'") from exc
    return da


def _pair_numpy(kind, before, after, offsets, params, outs):
    dec = decode_args(before.dtype, after.dtype, offsets)
    if kind == "cva":
        (sel,) = params
        _numba.cva(before, after, *dec, sel, outs[0])
    elif kind == "cva_direction":
        _numba.cva_direction(before, after, *dec, *outs)
    elif kind == "index_deltas":
        codes, pos = params
        _numba.index_deltas(before, after, *dec, codes, pos, outs)
    elif kind == "log_ratio":
        sel, floor = params
        _numba.log_ratio(before, after, *dec, sel, floor, outs[0])
    else:  # pragma: no cover - programming error
        raise AssertionError(kind)


def _align_dask(before, after):
    da = _dask()
    if not is_dask(before):
        before = da.from_array(before, chunks=after.chunks)
    before = before.rechunk({0: -1})
    after = (after if is_dask(after) else da.from_array(after)).rechunk(before.chunks)
    return before, after


def pair_map(kind: str, before, after, offsets, params, *, n_out: int, out=None) -> list:
    """Run pixelwise pair kernel ``kind``; returns ``n_out`` (H, W) float32 arrays."""
    B, H, W = before.shape
    if is_dask(before) or is_dask(after):
        if out is not None:
            raise UsageError("out= is only supported for numpy input; dask input returns a lazy dask array")
        da = _dask()
        before, after = _align_dask(before, after)

        def block(b, a):
            res = np.empty((n_out,) + b.shape[1:], np.float32)
            _pair_numpy(kind, np.ascontiguousarray(b), np.ascontiguousarray(a), offsets, params, res)
            return res

        stacked = da.map_blocks(block, before, after, dtype=np.float32, chunks=((n_out,),) + before.chunks[1:])
        return [stacked[k] for k in range(n_out)]
    if n_out == 1 and kind != "index_deltas":
        o = check_out(out, (H, W))
        _pair_numpy(kind, before, after, offsets, params, [o])
        return [o]
    outs = check_out(out, (n_out, H, W)) if kind == "index_deltas" else np.empty((n_out, H, W), np.float32)
    _pair_numpy(kind, before, after, offsets, params, outs if kind == "index_deltas" else list(outs))
    return list(outs)


def single_map(kind: str, image, offset, params, *, out=None):
    """Run a one-image kernel (``index``); returns (H, W) float32."""
    code, pos = params

    def run(img, o):
        s = np.float32(1e-4 if img.dtype == np.uint16 else 1.0)
        _numba.index(img, np.float32(offset), s, img.dtype == np.uint16, code, *pos, o)
        return o

    if is_dask(image):
        if out is not None:
            raise UsageError("out= is only supported for numpy input; dask input returns a lazy dask array")
        da = _dask()
        image = image.rechunk({0: -1})
        return da.map_blocks(
            lambda b: run(np.ascontiguousarray(b), np.empty(b.shape[1:], np.float32)),
            image,
            dtype=np.float32,
            drop_axis=0,
        )
    return run(image, check_out(out, image.shape[1:]))


def _moments_numpy(before, after, offsets, mask) -> np.ndarray:
    B, H, W = before.shape
    partial = np.zeros((H, 1 + 2 * B), np.float64)
    use_mask = mask is not None
    m = mask if use_mask else np.ones((1, 1), bool)
    _numba.diff_moments(before, after, *decode_args(before.dtype, after.dtype, offsets), m, use_mask, partial)
    return partial.sum(axis=0)


def zscore_cva(before, after, offsets, mask):
    """Two passes: per-band difference moments over valid (masked) pixels, then the z-scored magnitude."""
    B = before.shape[0]
    lazy = is_dask(before) or is_dask(after) or is_dask(mask)
    if lazy:
        da = _dask()
        before, after = _align_dask(before, after)
        if mask is None:
            mask = da.ones(before.shape[1:], dtype=bool, chunks=before.chunks[1:])
        elif not is_dask(mask):
            mask = da.from_array(mask, chunks=before.chunks[1:])
        else:
            mask = mask.rechunk(before.chunks[1:])
        parts = da.map_blocks(
            lambda b, a, m: _moments_numpy(
                np.ascontiguousarray(b), np.ascontiguousarray(a), offsets, np.ascontiguousarray(m[0])
            )[None, None, :],
            before,
            after,
            mask[None],
            dtype=np.float64,
            chunks=((1,), (1,) * len(before.chunks[1]), (1 + 2 * B,) * len(before.chunks[2])),
        )
        mom = np.asarray(parts.compute()).reshape(-1, 1 + 2 * B).sum(axis=0)
    else:
        mom = _moments_numpy(before, after, offsets, mask)
    mean, inv_std = _zscore_params(mom, B)
    dec = decode_args(before.dtype, after.dtype, offsets)

    def magnitude(b, a):
        o = np.empty(b.shape[1:], np.float32)
        _numba.zscore_magnitude(b, a, *dec, mean, inv_std, o)
        return o

    if lazy:
        da = _dask()
        return da.map_blocks(
            lambda b, a: magnitude(np.ascontiguousarray(b), np.ascontiguousarray(a)),
            before,
            after,
            dtype=np.float32,
            drop_axis=0,
        )
    return magnitude(before, after)


def _zscore_params(mom: np.ndarray, B: int) -> tuple[np.ndarray, np.ndarray]:
    n = mom[0]
    if n < 2:
        raise UsageError(
            f"zscore_cva needs at least 2 valid pixels (inside mask, with data in every band of both dates), found {int(n)}"
        )
    mean = mom[1 : 1 + B] / n
    var = np.maximum(mom[1 + B :] / n - mean**2, 0.0) * n / (n - 1)
    std = np.sqrt(var)
    inv = np.where(std > 0, 1.0 / np.where(std > 0, std, 1.0), 0.0)
    return mean.astype(np.float32), inv.astype(np.float32)


def irmad_moments(before, after, mask, mx, my, a, bm, inv_sigma, *, weighted: bool) -> np.ndarray:
    """Summed IR-MAD moment vector (sum w, sum w z, sum w z z^T upper triangle) over all blocks."""
    B = before.shape[0]
    M = 1 + 2 * B + 4 * B * B
    args = (
        np.ascontiguousarray(mx, np.float64),
        np.ascontiguousarray(my, np.float64),
        np.ascontiguousarray(a, np.float64),
        np.ascontiguousarray(bm, np.float64),
        np.ascontiguousarray(inv_sigma, np.float64),
        bool(weighted),
        *chi2_sf_table(B),
    )

    def run(b, a_, m):
        partial = np.zeros((b.shape[1], M), np.float64)
        use = m is not None
        _numba.irmad_moments(
            b, a_, *decode_args(b.dtype, a_.dtype, (0, 0)), m if use else np.ones((1, 1), bool), use, *args, partial
        )
        return partial.sum(axis=0)

    if is_dask(before) or is_dask(after) or is_dask(mask):
        da = _dask()
        before, after = _align_dask(before, after)
        nh, nw = len(before.chunks[1]), len(before.chunks[2])
        chunks = ((1,), (1,) * nh, (M,) * nw)
        if mask is None:
            parts = da.map_blocks(
                lambda b, a_: run(np.ascontiguousarray(b), np.ascontiguousarray(a_), None)[None, None, :],
                before,
                after,
                dtype=np.float64,
                chunks=chunks,
            )
        else:
            mask = (mask if is_dask(mask) else da.from_array(mask)).rechunk(before.chunks[1:])
            parts = da.map_blocks(
                lambda b, a_, m: run(np.ascontiguousarray(b), np.ascontiguousarray(a_), np.ascontiguousarray(m[0]))[
                    None, None, :
                ],
                before,
                after,
                mask[None],
                dtype=np.float64,
                chunks=chunks,
            )
        return np.asarray(parts.compute()).reshape(-1, M).sum(axis=0)
    return run(before, after, mask)


def irmad_transform(before, after, mx, my, a, bm, inv_sigma, *, probability: bool = True):
    """(chi2, p_nochange or None) (H, W) float32 of every pixel; numpy or lazy dask."""
    args = tuple(np.ascontiguousarray(v, np.float64) for v in (mx, my, a, bm, inv_sigma))
    lut = chi2_sf_table(before.shape[0])
    n_out = 2 if probability else 1

    def run(b, a_):
        out = np.empty((n_out,) + b.shape[1:], np.float32)
        p_out = out[1] if probability else out[0, :1, :1]
        _numba.irmad_transform(b, a_, *decode_args(b.dtype, a_.dtype, (0, 0)), *args, probability, *lut, out[0], p_out)
        return out

    if is_dask(before) or is_dask(after):
        da = _dask()
        before, after = _align_dask(before, after)
        stacked = da.map_blocks(
            lambda b, a_: run(np.ascontiguousarray(b), np.ascontiguousarray(a_)),
            before,
            after,
            dtype=np.float32,
            chunks=((n_out,),) + before.chunks[1:],
        )
        return stacked[0], (stacked[1] if probability else None)
    out = run(before, after)
    return out[0], (out[1] if probability else None)
