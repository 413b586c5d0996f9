"""numba loops behind :mod:`.metrics` and :mod:`.irmad` (loops only: no checks, no allocation policy).

Every kernel reads ``uint16`` DN or ``float32`` reflectance directly. The per-input decoding is
``rho = (v - off) * scale`` with ``scale = 1e-4`` for DN and ``1`` for reflectance; a pixel is no data
when ``zero_nd`` is set and ``v == 0`` (DN) or when ``v`` is NaN (reflectance). Work is split over
image rows with ``prange``; each row is processed band by band through small row buffers, so no
full-size float temporaries are ever made. Outputs are preallocated by the caller.

Neighbours and spans are read through slices (``r = row[t:]``, then ``r[j]``), never through an
index with an offset (``row[j + t]``): numba wraps a possibly negative index around, and that check
stops LLVM from vectorising the loop (the dense dilation was 10x slower, ``shift_mask`` 30x).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

FLAGS = dict(parallel=True, fastmath=False, cache=True, nogil=True)
"""numba options of every parallel kernel, defined once."""
SERIAL = dict(parallel=False, fastmath=False, cache=True, nogil=True)
"""numba options of the small serial helpers."""

NAN32 = np.float32(np.nan)
SHIFT_CAP = 8
"""Widest run (+1) of a structuring element row that :func:`binary_dilation_rows` dilates by shifts."""
SPAN = 256
"""Columns per span of the IR-MAD passes: a span's row buffers (13 float64 and 14 float32 rows, 40 KB
for six bands) stay in the core's cache instead of a whole row's (650 KB at 4096 columns)."""


# --------------------------------------------------------------------------------------------
# CVA


@njit(inline="always", **SERIAL)
def _sq_diff(u, v, ob, oa, sb, sa, zb, za):
    """(rho_after - rho_before)^2 of one value pair; NaN for no data (DN 0 of a uint16 input)."""
    fu = (np.float32(u) - ob) * sb
    fv = (np.float32(v) - oa) * sa
    if zb and u == 0:
        fu = NAN32
    if za and v == 0:
        fv = NAN32
    d = fv - fu
    return d * d


@njit(**FLAGS)
def cva(before, after, ob, oa, sb, sa, zb, za, sel, out):
    """CVA over the bands ``sel`` (indices into axis 0), the squares summed in the output row (the
    first band assigns, the others add); no data (DN 0 of a uint16 input, NaN of a float one)
    makes a term NaN, which the sum carries to the result (no flag array: one vectorised pass per
    band)."""
    H = before.shape[1]
    W = before.shape[2]
    K = sel.shape[0]
    for i in prange(H):
        o = out[i]
        rb = before[sel[0], i]
        ra = after[sel[0], i]
        for j in range(W):
            o[j] = _sq_diff(rb[j], ra[j], ob, oa, sb, sa, zb, za)
        for k in range(1, K):
            rb = before[sel[k], i]
            ra = after[sel[k], i]
            for j in range(W):
                o[j] += _sq_diff(rb[j], ra[j], ob, oa, sb, sa, zb, za)
        for j in range(W):
            o[j] = math.sqrt(o[j])


@njit(**FLAGS)
def cva_direction(before, after, ob, oa, sb, sa, zb, za, mag, cos, ang, dom):
    B, H, W = before.shape
    inv_sqrt_b = np.float32(1.0 / math.sqrt(B))
    rad2deg = np.float32(180.0 / math.pi)
    for i in prange(H):
        acc = np.zeros(W, np.float32)
        sm = np.zeros(W, np.float32)
        best = np.full(W, np.float32(-1.0))
        arg = np.zeros(W, np.float32)
        bad = np.zeros(W, np.bool_)
        for b in range(B):
            rb = before[b, i]
            ra = after[b, i]
            for j in range(W):
                u = rb[j]
                v = ra[j]
                d = (np.float32(v) - oa) * sa - (np.float32(u) - ob) * sb
                acc[j] += d * d
                sm[j] += d
                ad = abs(d)
                if ad > best[j]:
                    best[j] = ad
                    arg[j] = b
                bad[j] |= (zb & (u == 0)) | (za & (v == 0)) | (d != d)
        for j in range(W):
            if bad[j]:
                mag[i, j] = NAN32
                cos[i, j] = NAN32
                ang[i, j] = NAN32
                dom[i, j] = NAN32
            else:
                m = math.sqrt(acc[j])
                c = np.float32(0.0)
                if m > 0:
                    c = sm[j] * inv_sqrt_b / m
                    c = min(np.float32(1.0), max(np.float32(-1.0), c))
                mag[i, j] = m
                cos[i, j] = c
                ang[i, j] = math.acos(c) * rad2deg
                dom[i, j] = arg[j]


# --------------------------------------------------------------------------------------------
# spectral indices


@njit(inline="always", **SERIAL)
def _nd(p, q):
    s = p + q
    r = (p - q) / s
    return NAN32 if s == 0 else r


@njit(inline="always", **SERIAL)
def _decode_rows(img, i, need, off, scale, zero_nd, R):
    """R[b] = reflectance of row i of band b (NaN = no data) for the bands flagged in ``need``."""
    B = img.shape[0]
    W = img.shape[2]
    for b in range(B):
        if need[b]:
            row = img[b, i]
            rr = R[b]
            for j in range(W):
                v = row[j]
                f = (np.float32(v) - off) * scale
                rr[j] = NAN32 if (zero_nd & (v == 0)) else f


@njit(inline="always", **SERIAL)
def _index_row(code, R, p0, p1, p2, p3, o):
    """o[j] = index ``code`` (position in INDICES) of decoded rows R (bands in INDEX_BANDS order)."""
    W = o.shape[0]
    a0 = R[p0]
    a1 = R[p1]
    a2 = R[p2]
    a3 = R[p3]
    if code == 2:  # bsi: B11, B04, B08, B02
        for j in range(W):
            o[j] = _nd(a0[j] + a1[j], a2[j] + a3[j])
    elif code == 3:  # dbi: B02, B12, B08, B04
        for j in range(W):
            o[j] = _nd(a0[j], a1[j]) - _nd(a2[j], a3[j])
    elif code == 5:  # brightness: B02, B03, B04
        third = np.float32(1.0 / 3.0)
        for j in range(W):
            o[j] = (a0[j] + a1[j] + a2[j]) * third
    else:  # ndvi (B08, B04), ndbi (B11, B08), mndwi (B03, B11)
        for j in range(W):
            o[j] = _nd(a0[j], a1[j])


@njit(**FLAGS)
def index(img, off, scale, zero_nd, code, p0, p1, p2, p3, out):
    B, H, W = img.shape
    need = np.zeros(B, np.bool_)
    need[p0] = True
    need[p1] = True
    need[p2] = True
    need[p3] = True
    for i in prange(H):
        R = np.empty((B, W), np.float32)
        _decode_rows(img, i, need, off, scale, zero_nd, R)
        _index_row(code, R, p0, p1, p2, p3, out[i])


@njit(**FLAGS)
def index_deltas(before, after, ob, oa, sb, sa, zb, za, codes, pos, out):
    """out[k] = index ``codes[k]`` of ``after`` minus that of ``before``. Rows are decoded once per
    date into buffers allocated once per chunk of rows; each delta is written in one pass."""
    B, H, W = before.shape
    K = codes.shape[0]
    need = np.zeros(B, np.bool_)
    for k in range(K):
        for q in range(4):
            need[pos[k, q]] = True
    nchunk = min(H, 64)
    third = np.float32(1.0 / 3.0)
    for c in prange(nchunk):
        RB = np.empty((B, W), np.float32)
        RA = np.empty((B, W), np.float32)
        for i in range(c * H // nchunk, (c + 1) * H // nchunk):
            _decode_rows(before, i, need, ob, sb, zb, RB)
            _decode_rows(after, i, need, oa, sa, za, RA)
            for k in range(K):
                code = codes[k]
                o = out[k, i]
                a0, a1, a2, a3 = RA[pos[k, 0]], RA[pos[k, 1]], RA[pos[k, 2]], RA[pos[k, 3]]
                b0, b1, b2, b3 = RB[pos[k, 0]], RB[pos[k, 1]], RB[pos[k, 2]], RB[pos[k, 3]]
                if code == 2:  # bsi: B11, B04, B08, B02
                    for j in range(W):
                        o[j] = _nd(a0[j] + a1[j], a2[j] + a3[j]) - _nd(b0[j] + b1[j], b2[j] + b3[j])
                elif code == 3:  # dbi: B02, B12, B08, B04
                    for j in range(W):
                        o[j] = (_nd(a0[j], a1[j]) - _nd(a2[j], a3[j])) - (_nd(b0[j], b1[j]) - _nd(b2[j], b3[j]))
                elif code == 5:  # brightness: B02, B03, B04
                    for j in range(W):
                        o[j] = (a0[j] + a1[j] + a2[j]) * third - (b0[j] + b1[j] + b2[j]) * third
                else:  # ndvi (B08, B04), ndbi (B11, B08), mndwi (B03, B11)
                    for j in range(W):
                        o[j] = _nd(a0[j], a1[j]) - _nd(b0[j], b1[j])


# --------------------------------------------------------------------------------------------
# log ratio


@njit(**FLAGS)
def log_ratio(before, after, ob, oa, sb, sa, zb, za, sel, floor, out):
    B, H, W = before.shape
    n = sel.shape[0]
    fl = np.float32(floor)
    inv_n = np.float32(1.0 / n)
    for i in prange(H):
        acc = np.zeros(W, np.float32)
        bad = np.zeros(W, np.bool_)
        for s in range(n):
            b = sel[s]
            rb = before[b, i]
            ra = after[b, i]
            for j in range(W):
                u = rb[j]
                v = ra[j]
                gu = (np.float32(u) - ob) * sb
                gv = (np.float32(v) - oa) * sa
                bad[j] |= (zb & (u == 0)) | (za & (v == 0)) | (gu != gu) | (gv != gv)
                fu = max(gu, fl)
                fv = max(gv, fl)
                acc[j] += abs(math.log(fv / fu))
        o = out[i]
        for j in range(W):
            o[j] = NAN32 if bad[j] else acc[j] * inv_n


# --------------------------------------------------------------------------------------------
# z-scored CVA


@njit(**FLAGS)
def diff_moments(before, after, ob, oa, sb, sa, zb, za, mask, use_mask, partial):
    """partial[i] = (count, sum d_0..d_{B-1}, sum d_0^2..d_{B-1}^2) over valid pixels of row i."""
    B, H, W = before.shape
    for i in prange(H):
        bad = np.zeros(W, np.bool_)
        for b in range(B):
            rb = before[b, i]
            ra = after[b, i]
            for j in range(W):
                u = rb[j]
                v = ra[j]
                d = (np.float32(v) - oa) * sa - (np.float32(u) - ob) * sb
                bad[j] |= (zb & (u == 0)) | (za & (v == 0)) | (d != d)
        if use_mask:
            m = mask[i]
            for j in range(W):
                bad[j] |= not m[j]
        cnt = 0
        for j in range(W):
            cnt += not bad[j]
        partial[i, 0] = cnt
        for b in range(B):
            rb = before[b, i]
            ra = after[b, i]
            s1 = 0.0
            s2 = 0.0
            for j in range(W):
                if not bad[j]:
                    d = np.float64((np.float32(ra[j]) - oa) * sa - (np.float32(rb[j]) - ob) * sb)
                    s1 += d
                    s2 += d * d
            partial[i, 1 + b] = s1
            partial[i, 1 + B + b] = s2


@njit(**FLAGS)
def zscore_magnitude(before, after, ob, oa, sb, sa, zb, za, mean, inv_std, out):
    B, H, W = before.shape
    for i in prange(H):
        acc = np.zeros(W, np.float32)
        bad = np.zeros(W, np.bool_)
        for b in range(B):
            rb = before[b, i]
            ra = after[b, i]
            mu = mean[b]
            isd = inv_std[b]
            for j in range(W):
                u = rb[j]
                v = ra[j]
                d = (np.float32(v) - oa) * sa - (np.float32(u) - ob) * sb
                z = (d - mu) * isd
                acc[j] += z * z
                bad[j] |= (zb & (u == 0)) | (za & (v == 0)) | (d != d)
        o = out[i]
        for j in range(W):
            o[j] = NAN32 if bad[j] else math.sqrt(acc[j])


# --------------------------------------------------------------------------------------------
# IR-MAD


@njit(inline="always", **SERIAL)
def _chi2_sf_lut(x, lut, inv_step):
    """Chi-square survival function at ``x`` from the piecewise-cubic table built by
    :func:`pipeline.kernels._dispatch.chi2_sf_table` (row i: the cubic in u = sqrt(x) * inv_step - i
    on [i, i + 1); the last row holds the value at the table's end, used beyond it and for NaN)."""
    last = lut.shape[0] - 1.0
    t = math.sqrt(x) * inv_step
    t = t if t < last else last
    t = t if t > 0.0 else 0.0
    i = int(t)
    u = t - i
    v = lut[i, 0] + u * (lut[i, 1] + u * (lut[i, 2] + u * lut[i, 3]))
    return v if v > 0.0 else 0.0


@njit(inline="always", **SERIAL)
def _load_pair_span(before, after, i, c0, n, ob, oa, sb, sa, zb, za, mx, my, X, Y, bad):
    """Columns c0 .. c0 + n of row i into X[b, :n] = rho_before - mean, Y[b, :n] = rho_after - mean
    (float32); bad[:n] = no data in any band of either date."""
    B = before.shape[0]
    for j in range(n):
        bad[j] = False
    for b in range(B):
        rb = before[b, i, c0 : c0 + n]
        ra = after[b, i, c0 : c0 + n]
        cx = np.float32(mx[b])
        cy = np.float32(my[b])
        xr = X[b]
        yr = Y[b]
        for j in range(n):
            u = rb[j]
            v = ra[j]
            fu = (np.float32(u) - ob) * sb
            fv = (np.float32(v) - oa) * sa
            xr[j] = fu - cx
            yr[j] = fv - cy
            bad[j] |= (zb & (u == 0)) | (za & (v == 0)) | (fu != fu) | (fv != fv)


@njit(inline="always", **SERIAL)
def _mad_span(X, Y, a, bm, k, n, mad):
    """mad[j] = MAD_k[j] = a[:, k].X[:, j] - bm[:, k].Y[:, j] for j < n (float32)."""
    B = X.shape[0]
    for j in range(n):
        mad[j] = 0.0
    for b in range(B):
        ak = np.float32(a[b, k])
        bk = np.float32(bm[b, k])
        xr = X[b]
        yr = Y[b]
        for j in range(n):
            mad[j] += ak * xr[j] - bk * yr[j]


@njit(inline="always", **SERIAL)
def _chi2_span(X, Y, a, bm, inv_sigma, n, mad, chi):
    """chi[j] = sum_k (MAD_k[j] / sigma_k)^2 for j < n; mad is a scratch buffer."""
    B = X.shape[0]
    for j in range(n):
        chi[j] = 0.0
    for k in range(B):
        _mad_span(X, Y, a, bm, k, n, mad)
        s = np.float32(inv_sigma[k])
        for j in range(n):
            t = mad[j] * s
            chi[j] += t * t


@njit(fastmath={"reassoc", "contract"}, cache=True, nogil=True)
def _gram_upper(Z, n, G):
    """G[p, q] += sum_j Z[p, j] Z[q, j] over the first ``n`` columns, for q >= p.

    Four rows q at a time share each load of row p; the sums may be reassociated (vector lanes),
    so the last bits depend on the vector width, not on the thread count or the data order.
    """
    R = Z.shape[0]
    for p in range(R):
        zp = Z[p]
        q = p
        while q + 4 <= R:
            z0 = Z[q]
            z1 = Z[q + 1]
            z2 = Z[q + 2]
            z3 = Z[q + 3]
            s0 = s1 = s2 = s3 = 0.0
            for j in range(n):
                v = zp[j]
                s0 += v * z0[j]
                s1 += v * z1[j]
                s2 += v * z2[j]
                s3 += v * z3[j]
            G[p, q] += s0
            G[p, q + 1] += s1
            G[p, q + 2] += s2
            G[p, q + 3] += s3
            q += 4
        while q < R:
            zq = Z[q]
            s0 = 0.0
            for j in range(n):
                s0 += zp[j] * zq[j]
            G[p, q] += s0
            q += 1


@njit(**FLAGS)
def irmad_moments(
    before, after, ob, oa, sb, sa, zb, za, mask, use_mask, mx, my, a, bm, inv_sigma, weighted, sf_lut, sf_inv_step, partial
):
    """Weighted moments over valid pixels, one partial row per image row.

    partial[i] = (sum w, sum w z_p (2B), sum w z_p z_q (2B x 2B, upper triangle filled)) with
    z = (x - mx, y - my); w = the chi-square survival function (table ``sf_lut``, see
    :func:`_chi2_sf_lut`) of chi2 under the current transform when ``weighted`` else 1, and
    0 for no data or outside ``mask``. Each row goes span by span of ``SPAN`` columns.
    """
    B, H, W = before.shape
    P = 2 * B
    for i in prange(H):
        X = np.empty((B, SPAN), np.float32)
        Y = np.empty((B, SPAN), np.float32)
        bad = np.empty(SPAN, np.bool_)
        mad = np.empty(SPAN, np.float32)
        chi = np.empty(SPAN, np.float32)
        # row 0 of Z: the square-root weight; row 1 + p: the weighted centred value p
        Z = np.empty((P + 1, SPAN), np.float64)
        G = np.zeros((P + 1, P + 1), np.float64)
        for c0 in range(0, W, SPAN):
            n = min(SPAN, W - c0)
            _load_pair_span(before, after, i, c0, n, ob, oa, sb, sa, zb, za, mx, my, X, Y, bad)
            if use_mask:
                m = mask[i, c0 : c0 + n]
                for j in range(n):
                    bad[j] |= not m[j]
            z0 = Z[0]
            if weighted:
                _chi2_span(X, Y, a, bm, inv_sigma, n, mad, chi)
                for j in range(n):
                    z0[j] = 0.0 if bad[j] else math.sqrt(_chi2_sf_lut(np.float64(chi[j]), sf_lut, sf_inv_step))
            else:
                for j in range(n):
                    z0[j] = 0.0 if bad[j] else 1.0
            for b in range(B):
                xr = X[b]
                yr = Y[b]
                zx = Z[1 + b]
                zy = Z[1 + B + b]
                for j in range(n):
                    s = z0[j]
                    # no-data values may be NaN: select, do not multiply by 0
                    zx[j] = xr[j] * s if s > 0 else 0.0
                    zy[j] = yr[j] * s if s > 0 else 0.0
            _gram_upper(Z, n, G)
        acc = partial[i]
        acc[0] = G[0, 0]
        for p in range(P):
            acc[1 + p] = G[0, 1 + p]
            for q in range(p, P):
                acc[1 + P + p * P + q] = G[1 + p, 1 + q]


@njit(**FLAGS)
def irmad_transform(
    before, after, ob, oa, sb, sa, zb, za, mx, my, a, bm, inv_sigma, with_p, sf_lut, sf_inv_step, chi2_out, p_out
):
    """One streaming pass: chi-square statistic (and, if ``with_p``, no-change probability) of every pixel."""
    B, H, W = before.shape
    for i in prange(H):
        X = np.empty((B, SPAN), np.float32)
        Y = np.empty((B, SPAN), np.float32)
        bad = np.empty(SPAN, np.bool_)
        mad = np.empty(SPAN, np.float32)
        chi = np.empty(SPAN, np.float32)
        co = chi2_out[i]
        for c0 in range(0, W, SPAN):
            n = min(SPAN, W - c0)
            _load_pair_span(before, after, i, c0, n, ob, oa, sb, sa, zb, za, mx, my, X, Y, bad)
            _chi2_span(X, Y, a, bm, inv_sigma, n, mad, chi)
            cs = co[c0 : c0 + n]
            for j in range(n):
                cs[j] = NAN32 if bad[j] else chi[j]
            if with_p:
                pr = p_out[i, c0 : c0 + n]
                for j in range(n):
                    pr[j] = NAN32 if bad[j] else _chi2_sf_lut(np.float64(chi[j]), sf_lut, sf_inv_step)


@njit(**FLAGS)
def mad_variates(before, after, ob, oa, sb, sa, zb, za, mx, my, a, bm, out):
    B, H, W = before.shape
    for i in prange(H):
        X = np.empty((B, SPAN), np.float32)
        Y = np.empty((B, SPAN), np.float32)
        bad = np.empty(SPAN, np.bool_)
        mad = np.empty(SPAN, np.float32)
        for c0 in range(0, W, SPAN):
            n = min(SPAN, W - c0)
            _load_pair_span(before, after, i, c0, n, ob, oa, sb, sa, zb, za, mx, my, X, Y, bad)
            for k in range(B):
                _mad_span(X, Y, a, bm, k, n, mad)
                o = out[k, i, c0 : c0 + n]
                for j in range(n):
                    o[j] = NAN32 if bad[j] else mad[j]


@njit(**FLAGS)
def gather(img, flat_idx, out):
    """out[b, n] = img[b].flat[flat_idx[n]] (sample gathering; keeps the dtype)."""
    B, H, W = img.shape
    N = flat_idx.shape[0]
    for n in prange(N):
        f = flat_idx[n]
        i = f // W
        j = f - i * W
        for b in range(B):
            out[b, n] = img[b, i, j]


# --------------------------------------------------------------------------------------------
# masks and histograms


@njit(**FLAGS)
def greater_mask(values, t, mask, use_mask, out):
    """out = (values > t) & mask (False for NaN), over a (H, W) float32 array."""
    H, W = values.shape
    for i in prange(H):
        r = values[i]
        o = out[i]
        if use_mask:
            m = mask[i]
            for j in range(W):
                o[j] = (r[j] > t) & m[j]
        else:
            for j in range(W):
                o[j] = r[j] > t


@njit(**FLAGS)
def local_peak_keep(changed, query, values, radius, fraction, out):
    """out = query & (values >= fraction x the largest value of a changed pixel within
    ``radius`` pixels, a square window, or of the pixel itself), over (H, W); only query pixels
    read their window (``query`` is ``changed`` for the halo trim)."""
    H, W = changed.shape
    for i in prange(H):
        i0 = max(0, i - radius)
        i1 = min(H, i + radius + 1)
        for j in range(W):
            if not query[i, j]:
                out[i, j] = False
                continue
            v = values[i, j]
            peak = v
            j0 = max(0, j - radius)
            j1 = min(W, j + radius + 1)
            for ii in range(i0, i1):
                for jj in range(j0, j1):
                    if changed[ii, jj] and values[ii, jj] > peak:
                        peak = values[ii, jj]
            out[i, j] = v >= fraction * peak


@njit(inline="always", **SERIAL)
def _f32_key(b):
    """Order-preserving int64 key of a float32's bits ``b`` (int32 view): the sign-magnitude bits with
    the magnitude flipped for negatives, so finite floats compare as their keys do."""
    x = np.int64(b)
    return x ^ ((x >> 31) & 0x7FFFFFFF)


@njit(**FLAGS)
def finite_minmax(values, mask, use_mask):
    """(min, max, count) of the finite values (inside ``mask``) of a (H, W) float32 array.

    Compared through their bits as integers (:func:`_f32_key`; finite = exponent bits not all
    set): the row loop is branch-free integer min/max, which vectorises, where float min/max
    with NaN tests would not.
    """
    H, W = values.shape
    kmin = np.empty(H, np.int64)
    kmax = np.empty(H, np.int64)
    cnts = np.zeros(H, np.int64)
    big = np.int64(1) << 40
    for i in prange(H):
        r = values[i].view(np.int32)
        lo = big
        hi = -big
        c = 0
        for j in range(W):
            b = r[j]
            ok = (b & 0x7F800000) != 0x7F800000
            if use_mask:
                ok &= mask[i, j]
            k = _f32_key(b)
            lo = min(lo, k if ok else big)
            hi = max(hi, k if ok else -big)
            c += ok
        kmin[i] = lo
        kmax[i] = hi
        cnts[i] = c
    n = cnts.sum()
    if n == 0:
        return np.inf, -np.inf, n
    bits = np.empty(2, np.int32)
    bits[0] = np.int32(_f32_key(kmin.min()))  # the key map is its own inverse on int32 bits
    bits[1] = np.int32(_f32_key(kmax.max()))
    f = bits.view(np.float32)
    return np.float64(f[0]), np.float64(f[1]), n


@njit(**FLAGS)
def histogram(values, mask, use_mask, lo, scale, edges, counts_out):
    """Uniform-bin histogram of the finite values in [edges[0], edges[-1]], bin for bin as
    ``np.histogram``: bin k holds edges[k] <= v < edges[k + 1] (the last bin closed).

    The bin is estimated as ``int((v - lo) x scale)`` (``scale`` = n bins / (hi - lo), in the
    dtype of ``values``), within one bin of the true one, then corrected against ``edges``
    (length n + 1) as numpy's fast path corrects its own estimate, so the counts are numpy's. The
    estimate of a row is computed first in a branch-free loop that vectorises, then corrected and
    counted. Each chunk of rows counts into four interleaved histograms (pixel j into copy j % 4):
    a run of pixels in one bin, the common case of a change statistic, then does not wait on the
    previous increment of the same counter.
    """
    H, W = values.shape
    n = edges.shape[0] - 1
    nchunk = min(H, 64)
    partial = np.zeros((nchunk, 4 * n), np.int64)
    hi = edges[n]
    for c in prange(nchunk):
        r0 = c * H // nchunk
        r1 = (c + 1) * H // nchunk
        part = partial[c]
        est = np.empty(W, np.int32)
        for i in range(r0, r1):
            r = values[i]
            # pass 1, branch-free so that it vectorises: the estimated bin, -1 outside the range
            for j in range(W):
                v = r[j]
                ok = (v >= lo) & (v <= hi)
                if use_mask:
                    ok &= mask[i, j]
                k = min(np.int32((v - lo) * scale) if ok else np.int32(0), n - 1)
                est[j] = k if ok else -1
            # pass 2: correct against the edges and count
            for j in range(W):
                k = est[j]
                if k >= 0:
                    v = r[j]
                    if v < edges[k]:
                        k -= 1
                    elif k != n - 1 and v >= edges[k + 1]:
                        k += 1
                    part[(j & 3) * n + k] += 1
    for c in range(nchunk):
        for q in range(4):
            for k in range(n):
                counts_out[k] += partial[c, q * n + k]


# --------------------------------------------------------------------------------------------
# preprocessing: DN -> reflectance, per-pixel median over time


@njit(**FLAGS)
def reflectance_to_dn(refl, scale, lo, hi, out):
    """out = rint(min(max(refl x scale, lo), hi)) as uint16 over (B, H, W) float (any strides; the
    product in ``refl``'s precision, ``scale`` of its dtype); 0 in every band where any band is
    not finite. One pass over rows, in parallel, with no float temporary."""
    B, H, W = refl.shape
    for i in prange(H):
        bad = np.zeros(W, np.bool_)
        for b in range(B):
            r = refl[b, i]
            for j in range(W):
                bad[j] |= not np.isfinite(r[j])
        for b in range(B):
            r = refl[b, i]
            o = out[b, i]
            for j in range(W):
                if bad[j]:
                    o[j] = 0
                else:
                    x = r[j] * scale
                    if x < lo:
                        x = lo
                    if x > hi:
                        x = hi
                    o[j] = np.uint16(np.rint(x))


@njit(**FLAGS)
def dn_to_reflectance(dn, sel, valid, off, out, counts):
    """out[k] = (dn[sel[k]] - off) * 1e-4 over (B, H, W) uint16; NaN in every band where ``valid``
    is False or any selected band is 0 (no data). ``counts`` (H, 2) int64 receives per row the
    number of values written with data and how many of them are below 0 (DN below the offset)."""
    K = sel.shape[0]
    H = dn.shape[1]
    W = dn.shape[2]
    scale = np.float32(1e-4)
    for i in prange(H):
        bad = np.zeros(W, np.bool_)
        v = valid[i]
        for j in range(W):
            bad[j] = not v[j]
        for k in range(K):
            r = dn[sel[k], i]
            o = out[k, i]
            for j in range(W):
                u = r[j]
                bad[j] |= u == 0
                o[j] = (np.float32(u) - off) * scale
        n_good = 0
        n_below = 0
        for k in range(K):
            o = out[k, i]
            for j in range(W):
                if bad[j]:
                    o[j] = NAN32
                else:
                    n_good += 1
                    n_below += o[j] < 0
        counts[i, 0] = n_good
        counts[i, 1] = n_below


@njit(**FLAGS)
def median_over_time(values, sel, clear, use_clear, pairs, median, count):
    """Per pixel of (T, B, H, W) float32 ``values``, for the bands ``sel`` (indices into axis 1,
    read in place): the median over the dates whose selected bands are all finite (and
    ``clear[t]``, when ``use_clear``), band by band over that one set of dates, into
    ``median[k]`` for ``sel[k]``; for an even count the float32 mean of the two middle values;
    NaN where no date qualifies.

    Rows are processed through (T, W) buffers so every pass over the data is contiguous; one or
    two dates (the common single-scene windows) need no sort. Three or more are sorted by the
    comparator network ``pairs`` ((P, 2) int64, :func:`pipeline.preprocess.composite.sorting_network`)
    applied to whole rows at once: branch-free min/max over W pixels, vectorised, with the dates
    a pixel does not use set to +inf so that its m used values come first, in order."""
    T = values.shape[0]
    H = values.shape[2]
    W = values.shape[3]
    B = sel.shape[0]
    P = pairs.shape[0]
    half = np.float32(0.5)
    inf = np.float32(np.inf)
    for i in prange(H):
        ok = np.empty((T, W), np.bool_)
        n = np.zeros(W, np.int64)
        for t in range(T):
            okt = ok[t]
            if use_clear:
                c = clear[t, i]
                for j in range(W):
                    okt[j] = c[j]
            else:
                for j in range(W):
                    okt[j] = True
            for b in range(B):
                r = values[t, sel[b], i]
                for j in range(W):
                    okt[j] &= r[j] == r[j]
            for j in range(W):
                n[j] += okt[j]
        cnt = count[i]
        for j in range(W):
            cnt[j] = n[j]
        work = np.empty((T, W), np.float32) if T > 2 else np.empty((1, 1), np.float32)
        for b in range(B):
            o = median[b, i]
            if T == 1:
                r = values[0, sel[b], i]
                ok0 = ok[0]
                for j in range(W):
                    o[j] = r[j] if ok0[j] else NAN32
            elif T == 2:
                r0 = values[0, sel[b], i]
                r1 = values[1, sel[b], i]
                ok0 = ok[0]
                ok1 = ok[1]
                for j in range(W):
                    if ok0[j] and ok1[j]:
                        o[j] = half * (r0[j] + r1[j])
                    elif ok0[j]:
                        o[j] = r0[j]
                    elif ok1[j]:
                        o[j] = r1[j]
                    else:
                        o[j] = NAN32
            else:
                for t in range(T):  # this band's row of every date, unused dates as +inf
                    src = values[t, sel[b], i]
                    okt = ok[t]
                    w = work[t]
                    for j in range(W):
                        w[j] = src[j] if okt[j] else inf
                for q in range(P):
                    ra = work[pairs[q, 0]]
                    rb = work[pairs[q, 1]]
                    for j in range(W):
                        x = ra[j]
                        y = rb[j]
                        ra[j] = x if x < y else y
                        rb[j] = y if x < y else x
                for j in range(W):
                    m = n[j]
                    o[j] = NAN32 if m == 0 else half * (work[(m - 1) // 2, j] + work[m // 2, j])


@njit(**FLAGS)
def affine_bands(x, gain, offset, out):
    """out[t, b] = x[t, b] * gain[b] + offset[b] over (T, B, P) float32 (two float32 roundings,
    as numpy's multiply then add)."""
    T, B, P = x.shape
    nchunk = max(1, min(P // 65536, 256))
    for c in prange(nchunk * T * B):
        tb = c // nchunk
        k = c - tb * nchunk
        t = tb // B
        b = tb - t * B
        g = gain[b]
        o = offset[b]
        src = x[t, b]
        dst = out[t, b]
        for p in range(k * P // nchunk, (k + 1) * P // nchunk):
            y = src[p] * g
            dst[p] = y + o


# --------------------------------------------------------------------------------------------
# co-registration: a sub-pixel shift, bilinear


@njit(inline="always", **SERIAL)
def _term_span(H, W, y, iy, ix, q):
    """Term ``q`` of a bilinear shift at output row ``y``: the source row to read (clamped), the
    column offset ``kx`` and the output columns [x0, x1) that read source columns [x0 - kx,
    x1 - kx); an empty span (x0 = x1 = W) when the term falls outside the plane."""
    sy = y - (iy + q // 2)
    kx = ix + q % 2
    x0 = min(max(kx, 0), W)
    x1 = max(min(W + kx, W), 0)
    if sy < 0 or sy >= H or x1 <= x0:
        x0 = W
        x1 = W
    return min(max(sy, 0), H - 1), kx, x0, x1


@njit(inline="always", **SERIAL)
def _shift_row(src, y, iy, ix, w, o):
    H, W = src.shape
    first = True
    for q in range(4):
        wq = w[q]
        if wq == 0.0:
            continue
        ry, kx, x0, x1 = _term_span(H, W, y, iy, ix, q)
        for x in range(x0):
            o[x] = NAN32
        r = src[ry, x0 - kx : x1 - kx]  # the term's span as slices (module docstring)
        os = o[x0:x1]
        if first:
            for x in range(x1 - x0):
                os[x] = r[x] * wq
        else:
            for x in range(x1 - x0):
                os[x] = os[x] + r[x] * wq
        for x in range(x1, W):
            o[x] = NAN32
        first = False


@njit(**FLAGS)
def bilinear_shift(src, iy, ix, w, out):
    """out[y, x] = sum over (k, l) in {iy, iy+1} x {ix, ix+1} of w[2(k-iy) + (l-ix)] *
    src[y - k, x - l] over one (H, W) float32 plane, the terms added in that order in float32;
    a term whose weight ``w`` is 0 is skipped, a term outside the plane or NaN makes the pixel NaN
    (numpy's ``_translate`` + multiply + add, same roundings). Each term is one contiguous pass
    over the row."""
    for y in prange(src.shape[0]):
        _shift_row(src, y, iy, ix, w, out[y])



@njit(**FLAGS)
def shift_mask(src, iy, ix, w, thresh, out):
    """out[y, x] = the bilinear shift of the (H, W) bool mask ``src`` as 0/1 float32 (the terms of
    :func:`bilinear_shift`, added in its order and roundings, outside = NaN) ``> thresh`` (a
    float32), NaN counting as False: ``np.nan_to_num(shifted, nan=0.0) > thresh`` without the
    three float32 planes. One float32 row of scratch per row."""
    H, W = src.shape
    for y in prange(H):
        o = np.empty(W, np.float32)
        first = True
        for q in range(4):
            wq = w[q]
            if wq == 0.0:
                continue
            ry, kx, x0, x1 = _term_span(H, W, y, iy, ix, q)
            for x in range(x0):
                o[x] = NAN32
            r = src[ry, x0 - kx : x1 - kx]  # the term's span as slices (module docstring)
            os = o[x0:x1]
            zero = np.float32(0.0)
            if first:
                for x in range(x1 - x0):
                    os[x] = wq if r[x] else zero
            else:
                for x in range(x1 - x0):
                    os[x] = os[x] + (wq if r[x] else zero)
            for x in range(x1, W):
                o[x] = NAN32
            first = False
        d = out[y]
        if first:  # no term (all weights 0): numpy's sum of nothing is never computed; all False
            for x in range(W):
                d[x] = False
        else:
            for x in range(W):
                d[x] = o[x] > thresh

# --------------------------------------------------------------------------------------------
# clear-sky masks


@njit(**FLAGS)
def any_nan(values, out):
    """out[t, i, j] = any band of values[t, :, i, j] is NaN, over (T, B, H, W) float32."""
    T, B, H, W = values.shape
    for r in prange(T * H):
        t = r // H
        i = r - t * H
        o = out[t, i]
        for j in range(W):
            o[j] = False
        for b in range(B):
            v = values[t, b, i]
            for j in range(W):
                o[j] |= v[j] != v[j]


@njit(**FLAGS)
def spectral_cloud(refl, i02, i04, i8a, i11, blue, white, swir, lo, out):
    """Per pixel of (B, H, W) float32 reflectance: ``b02 > blue and b02 / max(b04, lo) > white and
    b11 / max(b8a, lo) < swir`` in float32, NaN propagating through ``max`` (numpy's
    ``np.maximum``), so a pixel with a NaN band is False."""
    H = refl.shape[1]
    W = refl.shape[2]
    for i in prange(H):
        r02 = refl[i02, i]
        r04 = refl[i04, i]
        r8a = refl[i8a, i]
        r11 = refl[i11, i]
        o = out[i]
        for j in range(W):
            b02 = r02[j]
            d04 = r04[j]
            if d04 < lo:
                d04 = lo
            d8a = r8a[j]
            if d8a < lo:
                d8a = lo
            o[j] = (b02 > blue) and (b02 / d04 > white) and (r11[j] / d8a < swir)


# --------------------------------------------------------------------------------------------
# radiometric normalisation: the pixels IR-MAD judges


@njit(inline="always", **SERIAL)
def _pair_finite(ref, tgt, p):
    for b in range(ref.shape[0]):
        r = ref[b, p]
        t = tgt[b, p]
        if r != r or t != t:
            return False
    return True


@njit(**FLAGS)
def every_kth_valid_pair(ref, tgt, valid, step, out_idx, out_ref, out_tgt):
    """Walk the flat pixels of (B, P) float32 ``ref`` / ``tgt`` where ``valid`` (P,) holds; of every
    ``step``-th such pixel (the 0th, the step-th, ...) keep those finite in every band of both:
    their flat index goes to ``out_idx`` and their values to ``out_ref`` / ``out_tgt`` (B, cap).
    Returns how many were kept (in raster order). In parallel over chunks of the pixels: the
    valid pixels before each chunk, then the kept ones, are counted first, so each chunk knows
    where its count and its output start."""
    B, P = ref.shape
    nchunk = max(1, min(P // 65536, 256))
    vstart = np.zeros(nchunk + 1, np.int64)
    for c in prange(nchunk):
        s = 0
        for p in range(c * P // nchunk, (c + 1) * P // nchunk):
            s += valid[p]
        vstart[c + 1] = s
    for c in range(nchunk):
        vstart[c + 1] += vstart[c]
    # ``left`` counts down the valid pixels to the next k-th one (no division per pixel)
    kstart = np.zeros(nchunk + 1, np.int64)
    for c in prange(nchunk):
        r = vstart[c] % step
        left = 0 if r == 0 else step - r
        k = 0
        for p in range(c * P // nchunk, (c + 1) * P // nchunk):
            if valid[p]:
                if left == 0:
                    left = step
                    if _pair_finite(ref, tgt, p):
                        k += 1
                left -= 1
        kstart[c + 1] = k
    for c in range(nchunk):
        kstart[c + 1] += kstart[c]
    for c in prange(nchunk):
        r = vstart[c] % step
        left = 0 if r == 0 else step - r
        n = kstart[c]
        for p in range(c * P // nchunk, (c + 1) * P // nchunk):
            if valid[p]:
                if left == 0:
                    left = step
                    if _pair_finite(ref, tgt, p):
                        out_idx[n] = p
                        for b in range(B):
                            out_ref[b, n] = ref[b, p]
                            out_tgt[b, n] = tgt[b, p]
                        n += 1
                left -= 1
    return kstart[nchunk]


# --------------------------------------------------------------------------------------------
# morphology of sparse change masks: work proportional to the set pixels, not to the image


@njit(**FLAGS)
def binary_closing_sparse(mask, dy, dx, r, out):
    """``out`` = ``mask`` closed with the structuring element whose offsets are (dy, dx) (symmetric,
    within radius ``r``), as ``scipy.ndimage.binary_closing`` of ``mask`` padded with ``r`` pixels of
    False and cropped back, OR ``mask``: the dilation is scattered from the set pixels into a padded
    buffer (serially), the erosion tested only at pixels the dilation added (in parallel)."""
    H, W = mask.shape
    K = dy.shape[0]
    D = np.zeros((H + 2 * r, W + 2 * r), np.bool_)
    for i in range(H):
        for j in range(W):
            if mask[i, j]:
                for k in range(K):
                    D[i + r + dy[k], j + r + dx[k]] = True
    for i in prange(H):
        for j in range(W):
            if mask[i, j]:
                out[i, j] = True
            elif D[i + r, j + r]:
                ok = True
                for k in range(K):
                    if not D[i + r + dy[k], j + r + dx[k]]:
                        ok = False
                        break
                out[i, j] = ok
            else:
                out[i, j] = False


@njit(inline="always", **SERIAL)
def _find(parent, x):
    """Root of ``x`` (the smallest label of its set), halving the path on the way."""
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


@njit(inline="always", **SERIAL)
def _join(parent, a, b):
    """Union of the sets of labels ``a`` (0: none yet) and ``b``; returns the root, which stays
    the smaller label."""
    rb = _find(parent, b)
    if a == 0:
        return rb
    ra = _find(parent, a)
    if ra < rb:
        parent[rb] = ra
        return ra
    if rb < ra:
        parent[ra] = rb
    return rb


@njit(**SERIAL)
def label_sparse(mask, eight, out):
    """Connected regions of the (H, W) bool ``mask`` into int32 ``out`` (0 background), numbered
    1..n in raster order of their first pixel, as ``scipy.ndimage.label`` numbers them; returns n.

    One raster pass gives each set pixel the label of its already-seen neighbours (west; north;
    with ``eight`` also north-west and north-east), joining their sets in a union-find whose roots
    are the smallest label of each set, i.e. that of the set's first pixel; a second pass writes
    the roots' final numbers. Work is a byte test per pixel and a few steps per set pixel."""
    H, W = mask.shape
    n_set = 0
    for i in range(H):
        for j in range(W):
            if mask[i, j]:
                n_set += 1
    parent = np.empty(n_set + 1, np.int32)
    parent[0] = 0
    nl = 0
    for i in range(H):
        for j in range(W):
            if not mask[i, j]:
                continue
            lab = 0
            if j > 0 and mask[i, j - 1]:
                lab = out[i, j - 1]
            if i > 0:
                if mask[i - 1, j]:
                    lab = _join(parent, lab, out[i - 1, j])
                elif eight:  # north unset: its west and east neighbours may be two regions
                    if j > 0 and mask[i - 1, j - 1]:
                        lab = _join(parent, lab, out[i - 1, j - 1])
                    if j + 1 < W and mask[i - 1, j + 1]:
                        lab = _join(parent, lab, out[i - 1, j + 1])
            if lab == 0:
                nl += 1
                parent[nl] = nl
                lab = nl
            out[i, j] = lab
    final = np.zeros(nl + 1, np.int32)
    n = 0
    for lab in range(1, nl + 1):
        root = _find(parent, lab)
        if root == lab:
            n += 1
            final[lab] = n
        else:
            final[lab] = final[root]
    for i in range(H):
        for j in range(W):
            out[i, j] = final[out[i, j]] if mask[i, j] else 0
    return n


@njit(**SERIAL)
def binary_dilation_sparse(mask, dy, dx, out):
    """``out`` = ``scipy.ndimage.binary_dilation(mask, structure)`` for a symmetric structuring
    element with offsets (dy, dx): scattered from the set pixels only."""
    H, W = mask.shape
    K = dy.shape[0]
    for i in range(H):
        for j in range(W):
            out[i, j] = False
    for i in range(H):
        for j in range(W):
            if mask[i, j]:
                for k in range(K):
                    y = i + dy[k]
                    x = j + dx[k]
                    if 0 <= y < H and 0 <= x < W:
                        out[y, x] = True


@njit(**FLAGS)
def binary_dilation_rows(mask, half, out):
    """``out`` = ``scipy.ndimage.binary_dilation(mask, structure)`` for a structuring element
    whose row ``k`` (offset ``k - R`` from the centre, ``R = len(half) // 2``) is the run of
    columns ``-half[k] .. half[k]`` (``half[k] < 0``: an empty row), e.g. a disc or a diamond;
    ``mask`` and ``out`` are (H, W) uint8 views of bool arrays.

    Work per pixel whatever the density, in parallel over rows: each row's distance to its
    nearest set pixel in the row, capped above the widest run (for a cap up to ``SHIFT_CAP`` the
    minimum over the row shifted by each distance, which vectorises; beyond it two sequential
    passes), then each output row ORs ``distance <= half[k]`` of the rows ``k - R`` away. A dense mask (a cloudy date) costs a
    few passes instead of one scattered write per set pixel and element.
    """
    H, W = mask.shape
    K = half.shape[0]
    R = K // 2
    cap = 1
    for k in range(K):
        cap = max(cap, half[k] + 1)
    dist = np.empty((H, W), np.uint8)
    rowany = np.zeros(H, np.bool_)
    for i in prange(H):
        r = mask[i]
        d = dist[i]
        seen = np.uint8(0)
        for j in range(W):
            seen |= r[j]
        rowany[i] = seen != 0
        if seen == 0:
            continue
        if cap <= SHIFT_CAP:
            # short runs: the minimum over the shifted rows, branch-free (vectorises)
            c8 = np.uint8(cap)
            for j in range(W):
                d[j] = 0 if r[j] else c8
            for t in range(1, cap):
                t8 = np.uint8(t)
                rt = r[t:]
                dt = d[t:]
                for j in range(W - t):
                    d[j] = min(d[j], t8 if rt[j] else c8)
                for j in range(W - t):
                    dt[j] = min(dt[j], t8 if r[j] else c8)
        else:
            last = -(1 << 30)
            for j in range(W):
                if r[j]:
                    last = j
                d[j] = min(j - last, cap)
            last = 1 << 30
            for jj in range(W):
                j = W - 1 - jj
                if r[j]:
                    last = j
                d[j] = min(d[j], min(last - j, cap))
    for i in prange(H):
        o = out[i]
        for j in range(W):
            o[j] = 0
        for k in range(K):
            y = i + k - R
            if y < 0 or y >= H or half[k] < 0 or not rowany[y]:
                continue
            d = dist[y]
            w = np.uint8(half[k])
            for j in range(W):
                o[j] |= d[j] <= w


@njit(**FLAGS)
def lookup_u8(lut, codes, out):
    """out = lut[codes] over a (T, H, W) uint8 array, for a (256,) table; in parallel, one pass."""
    T, H, W = codes.shape
    for r in prange(T * H):
        t = r // H
        i = r - t * H
        c = codes[t, i]
        o = out[t, i]
        for j in range(W):
            o[j] = lut[c[j]]


@njit(**FLAGS)
def label_counts(labels, n):
    """(counts, outside): pixels of each label 0..n of a (H, W) integer label image, in parallel
    chunks of rows with their own counters, and the number of pixels outside 0..n (not counted)."""
    H, W = labels.shape
    nchunk = min(H, 16)
    part = np.zeros((nchunk, n + 1), np.int64)
    bad = np.zeros(nchunk, np.int64)
    for c in prange(nchunk):
        p = part[c]
        for i in range(c * H // nchunk, (c + 1) * H // nchunk):
            r = labels[i]
            for j in range(W):
                v = r[j]
                if v != 0:
                    if 0 < v <= n:
                        p[v] += 1
                    else:
                        bad[c] += 1
    counts = np.zeros(n + 1, np.int64)
    for c in range(nchunk):
        for k in range(1, n + 1):
            counts[k] += part[c, k]
    outside = bad.sum()
    counts[0] = H * W - outside - counts[1:].sum()
    return counts, outside


@njit(**FLAGS)
def relabel_lut(labels, lut):
    """labels[...] = lut[labels] in place over a (H, W) integer image, in parallel rows; pixels
    outside 0..len(lut) - 1 are left and counted (the return value)."""
    H, W = labels.shape
    L = lut.shape[0]
    bad = np.zeros(H, np.int64)
    for i in prange(H):
        r = labels[i]
        for j in range(W):
            v = r[j]
            if 0 <= v < L:
                r[j] = lut[v]
            else:
                bad[i] += 1
    return bad.sum()


@njit(**SERIAL)
def binary_erosion_sparse(mask, dy, dx, out):
    """``out`` = ``scipy.ndimage.binary_erosion(mask, structure)`` (border value 0: outside the
    image counts as unset) for offsets (dy, dx), tested at the set pixels only."""
    H, W = mask.shape
    K = dy.shape[0]
    for i in range(H):
        for j in range(W):
            ok = mask[i, j]
            if ok:
                for k in range(K):
                    y = i + dy[k]
                    x = j + dx[k]
                    if y < 0 or y >= H or x < 0 or x >= W or not mask[y, x]:
                        ok = False
                        break
            out[i, j] = ok


@njit(**SERIAL)
def binary_opening_sparse(mask, dy, dx, out):
    """``out`` = ``scipy.ndimage.binary_opening(mask, structure)`` (border value 0) for a symmetric
    structuring element with offsets (dy, dx): the sparse erosion, then the sparse dilation."""
    eroded = np.empty_like(mask)
    binary_erosion_sparse(mask, dy, dx, eroded)
    binary_dilation_sparse(eroded, dy, dx, out)


# --------------------------------------------------------------------------------------------
# reads: which pixels have data in every band


@njit(**FLAGS)
def dn_valid(dn, valid, zero_invalid):
    """valid[i, j] = every band of (B, H, W) uint16 ``dn`` is > 0 there; with ``zero_invalid`` the
    bands of the other pixels are set to 0 (no data in every band, as a mosaic leaves them)."""
    B, H, W = dn.shape
    for i in prange(H):
        v = valid[i]
        for j in range(W):
            v[j] = True
        for b in range(B):
            r = dn[b, i]
            for j in range(W):
                v[j] &= r[j] > 0
        if zero_invalid:
            for b in range(B):
                r = dn[b, i]
                for j in range(W):
                    if not v[j]:
                        r[j] = 0


# --------------------------------------------------------------------------------------------
# co-registration: Sobel gradients


@njit(inline="always", **SERIAL)
def _reflect(k, n):
    """Index ``k`` of a line of ``n`` reflected at the edges (scipy.ndimage's 'reflect': d c b a | a b c d)."""
    if k < 0:
        return -k - 1
    if k >= n:
        return 2 * n - k - 1
    return k


@njit(**FLAGS)
def sobel_pair(x, gy, gx, t0, t1):
    """``scipy.ndimage.sobel(x, axis=0)`` into ``gy`` and ``sobel(x, axis=1)`` into ``gx`` for an
    (H, W) float32 image, mode 'reflect', with scipy's roundings: each 1-D pass sums in float64
    ([-1, 0, 1] as x[k+1] - x[k-1], [1, 2, 1] as 2 x[k] + (x[k+1] + x[k-1])) and stores float32.
    ``t0`` and ``t1`` are (H, W) float32 scratch for the first passes."""
    H, W = x.shape
    for i in prange(H):
        xd = x[_reflect(i + 1, H)]
        xu = x[_reflect(i - 1, H)]
        r = x[i]
        o0 = t0[i]
        o1 = t1[i]
        for j in range(W):
            o0[j] = np.float32(np.float64(xd[j]) - np.float64(xu[j]))  # d/dy
        # d/dx: the interior as shifted slices (module docstring), the two edge columns reflected
        rr = r[2:]
        rl = r[: max(W - 2, 0)]
        oi = o1[1 : max(W - 1, 1)]
        for j in range(W - 2):
            oi[j] = np.float32(np.float64(rr[j]) - np.float64(rl[j]))
        for j in (0, W - 1):
            o1[j] = np.float32(np.float64(r[_reflect(j + 1, W)]) - np.float64(r[_reflect(j - 1, W)]))
    for i in prange(H):
        u0 = t0[i]
        d1 = t1[_reflect(i + 1, H)]
        u1 = t1[_reflect(i - 1, H)]
        c1 = t1[i]
        oy = gy[i]
        ox = gx[i]
        for j in range(W):
            ox[j] = np.float32(2.0 * np.float64(c1[j]) + (np.float64(d1[j]) + np.float64(u1[j])))
        ur = u0[2:]
        ul = u0[: max(W - 2, 0)]
        uc = u0[1 : max(W - 1, 1)]
        oyi = oy[1 : max(W - 1, 1)]
        for j in range(W - 2):
            oyi[j] = np.float32(2.0 * np.float64(uc[j]) + (np.float64(ur[j]) + np.float64(ul[j])))
        for j in (0, W - 1):
            oy[j] = np.float32(
                2.0 * np.float64(u0[j]) + (np.float64(u0[_reflect(j + 1, W)]) + np.float64(u0[_reflect(j - 1, W)]))
            )
