"""Slow, plain-numpy (float64) oracles of every kernel, written from the formulas, not from the kernels.

Also the planted-pair fixture builder shared by the kernel tests.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg, stats

BANDS6 = ("B02", "B03", "B04", "B08", "B11", "B12")


def make_pair(dtype, *, B=6, H=37, W=53, seed=0, offsets=(0, 0), nodata_frac=0.02, lo=1200, hi=5200):
    """A before/after pair with planted no data.

    Planted: DN uniform in [lo, hi) plus the per-date offset (uint16), or the same /10000 as float32
    reflectance; in about ``nodata_frac`` of the pixels one random band of one random date is no data
    (DN 0 for uint16, NaN for float32). Returns (before, after, nodata) with nodata (H, W) bool.
    """
    rng = np.random.default_rng(seed)
    dn = [rng.integers(lo, hi, size=(B, H, W)) for _ in range(2)]
    nodata = rng.random((H, W)) < nodata_frac
    ii, jj = np.nonzero(nodata)
    which = rng.integers(0, 2, ii.size)
    band = rng.integers(0, B, ii.size)
    out = []
    for t in range(2):
        if np.dtype(dtype) == np.uint16:
            img = (dn[t] + offsets[t]).astype(np.uint16)
            sel = which == t
            img[band[sel], ii[sel], jj[sel]] = 0
        else:
            img = (dn[t] / 10000.0).astype(np.float32)
            sel = which == t
            img[band[sel], ii[sel], jj[sel]] = np.nan
        out.append(img)
    return out[0], out[1], nodata


def refl(img, offset=0):
    """float64 reflectance with NaN for no data (DN 0 or NaN)."""
    if img.dtype == np.uint16:
        r = (img.astype(np.float64) - offset) / 10000.0
        r[img == 0] = np.nan
        return r
    return img.astype(np.float64)


def cva(before, after, offsets=(0, 0)):
    d = refl(after, offsets[1]) - refl(before, offsets[0])
    return np.sqrt(np.sum(d**2, axis=0))  # NaN propagates


def cva_direction(before, after, offsets=(0, 0)):
    d = refl(after, offsets[1]) - refl(before, offsets[0])
    B = d.shape[0]
    mag = np.sqrt(np.sum(d**2, axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(mag > 0, d.sum(axis=0) / (np.sqrt(B) * mag), 0.0)
    cos = np.where(np.isnan(mag), np.nan, np.clip(cos, -1, 1))
    ang = np.degrees(np.arccos(cos))
    dom = np.argmax(np.abs(np.nan_to_num(d, nan=0.0)), axis=0).astype(np.float64)
    dom[np.isnan(mag)] = np.nan
    return {"magnitude": mag, "brightness_cosine": cos, "angle": ang, "dominant_band": dom}


def _nd(p, q):
    s = p + q
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(s == 0, np.nan, (p - q) / np.where(s == 0, 1, s))


def index(image, name, bands, offset=0):
    r = refl(image, offset)
    g = {b: r[k] for k, b in enumerate(bands)}
    if name == "ndvi":
        return _nd(g["B08"], g["B04"])
    if name == "ndbi":
        return _nd(g["B11"], g["B08"])
    if name == "bsi":
        return _nd(g["B11"] + g["B04"], g["B08"] + g["B02"])
    if name == "dbi":
        return _nd(g["B02"], g["B12"]) - _nd(g["B08"], g["B04"])
    if name == "mndwi":
        return _nd(g["B03"], g["B11"])
    if name == "brightness":
        return (g["B02"] + g["B03"] + g["B04"]) / 3
    raise KeyError(name)


def log_ratio(before, after, offsets=(0, 0), sel=None, floor=1e-4):
    rb, ra = refl(before, offsets[0]), refl(after, offsets[1])
    if sel is not None:
        rb, ra = rb[list(sel)], ra[list(sel)]
    nan = np.isnan(rb).any(axis=0) | np.isnan(ra).any(axis=0)
    rb = np.maximum(np.nan_to_num(rb, nan=1.0), floor)
    ra = np.maximum(np.nan_to_num(ra, nan=1.0), floor)
    out = np.abs(np.log(ra / rb)).mean(axis=0)
    out[nan] = np.nan
    return out


def zscore_cva(before, after, mask=None):
    d = refl(after) - refl(before)
    valid = ~np.isnan(d).any(axis=0)
    use = valid if mask is None else valid & mask
    z = np.empty_like(d)
    for b in range(d.shape[0]):
        v = d[b][use]
        sd = v.std(ddof=1)
        z[b] = (d[b] - v.mean()) / sd if sd > 0 else 0.0
    out = np.sqrt((z**2).sum(axis=0))
    out[~valid] = np.nan
    return out


def irmad(before, after, *, iterations, mask=None):
    """Independent IR-MAD: weighted covariances with np.cov, canonical correlation as the generalised
    symmetric eigenproblem S12 S22^-1 S21 a = rho^2 S11 a (scipy.linalg.eigh), weights chi2.sf.

    Returns (rho descending, chi2 (H, W), p_nochange (H, W)).
    """
    B = before.shape[0]
    X = refl(before).reshape(B, -1)
    Y = refl(after).reshape(B, -1)
    valid = ~(np.isnan(X).any(axis=0) | np.isnan(Y).any(axis=0))
    use = valid & (mask.reshape(-1) if mask is not None else True)
    Z = np.vstack([X, Y])[:, use]
    w = np.ones(Z.shape[1])
    for _ in range(iterations):
        C = np.cov(Z, aweights=w, bias=True)
        mean = np.average(Z, axis=1, weights=w)
        S11, S22, S12 = C[:B, :B], C[B:, B:], C[:B, B:]
        M = S12 @ np.linalg.solve(S22, S12.T)
        ev, A = linalg.eigh(M, S11)  # ascending rho^2, A^T S11 A = I
        rho = np.sqrt(np.clip(ev, 0, 1))[::-1]
        A = A[:, ::-1]
        Bm = np.linalg.solve(S22, S12.T @ A) / rho  # b = S22^-1 S21 a / rho; unit variance
        sigma2 = 2 * (1 - rho)
        U = A.T @ (Z[:B] - mean[:B, None])
        V = Bm.T @ (Z[B:] - mean[B:, None])
        chi = (((U - V) ** 2) / sigma2[:, None]).sum(axis=0)
        w = stats.chi2.sf(chi, B)
    U = A.T @ (X - mean[:B, None])
    V = Bm.T @ (Y - mean[B:, None])
    chi_all = (((U - V) ** 2) / sigma2[:, None]).sum(axis=0)
    chi_all[~valid] = np.nan
    H, W = before.shape[1:]
    p = stats.chi2.sf(chi_all, B)
    return rho, chi_all.reshape(H, W), p.reshape(H, W)
