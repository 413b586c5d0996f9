"""Rendering kernels of the simulated source: spectra, periodic noise textures, compositing.

Private to :mod:`pipeline.sources.simulated`. The public wrappers here check shapes and allocate
outputs; the ``_k_*`` numba kernels only loop. Reflectance math is float32 throughout.

Spectra are typical L2A bottom-of-atmosphere reflectances (unitless, 0-1) in the band order of
:data:`pipeline.scene.ALL_BANDS` (B02 B03 B04 B05 B06 B07 B08 B8A B11 B12), after published
library spectra (USGS splib07 / ECOSTRESS) convolved to Sentinel-2 and typical values seen over
North African desert airfields and Mediterranean ports.
"""

from __future__ import annotations

import functools
import hashlib
import math

import numpy as np
from numba import njit, prange
from scipy import ndimage
from rasterio import features as rio_features
from affine import Affine

from ..grid import Grid
from ..scene import ALL_BANDS

__all__ = ["SPECTRA", "MATERIALS", "material_code", "spectrum", "stable_hash", "texture_bank", "tex_field", "compose", "coverage", "render_date"]

# fmt: off
SPECTRA: dict[str, tuple[float, ...]] = {
    #                 B02    B03    B04    B05    B06    B07    B08    B8A    B11    B12
    "sand":          (0.215, 0.300, 0.400, 0.440, 0.460, 0.478, 0.495, 0.512, 0.585, 0.520),
    "rock":          (0.125, 0.170, 0.235, 0.268, 0.285, 0.300, 0.312, 0.328, 0.392, 0.352),
    "wadi":          (0.190, 0.255, 0.330, 0.362, 0.380, 0.395, 0.408, 0.422, 0.470, 0.420),
    "coastal_soil":  (0.110, 0.150, 0.205, 0.235, 0.255, 0.270, 0.285, 0.300, 0.360, 0.300),
    "vegetation":    (0.035, 0.068, 0.045, 0.120, 0.290, 0.360, 0.395, 0.415, 0.230, 0.120),
    "asphalt_fresh": (0.046, 0.050, 0.054, 0.057, 0.059, 0.061, 0.063, 0.065, 0.071, 0.068),
    "asphalt_aged":  (0.120, 0.138, 0.156, 0.166, 0.173, 0.179, 0.185, 0.190, 0.212, 0.198),
    "asphalt_old":   (0.150, 0.176, 0.200, 0.212, 0.220, 0.226, 0.232, 0.238, 0.262, 0.244),
    "road":          (0.105, 0.122, 0.140, 0.150, 0.157, 0.162, 0.168, 0.173, 0.195, 0.182),
    "rubber":        (0.080, 0.088, 0.096, 0.100, 0.104, 0.107, 0.110, 0.113, 0.125, 0.118),
    "concrete":      (0.245, 0.275, 0.300, 0.310, 0.318, 0.325, 0.332, 0.340, 0.362, 0.330),
    "concrete_old":  (0.200, 0.232, 0.262, 0.276, 0.286, 0.294, 0.302, 0.312, 0.345, 0.318),
    "paint":         (0.420, 0.430, 0.435, 0.436, 0.436, 0.436, 0.437, 0.438, 0.380, 0.330),
    "roof_white":    (0.480, 0.500, 0.508, 0.510, 0.505, 0.500, 0.498, 0.496, 0.420, 0.355),
    "roof_metal":    (0.300, 0.318, 0.328, 0.330, 0.330, 0.330, 0.330, 0.330, 0.268, 0.228),
    "roof_concrete": (0.260, 0.290, 0.318, 0.330, 0.338, 0.344, 0.350, 0.356, 0.362, 0.322),
    "roof_rust":     (0.110, 0.135, 0.215, 0.255, 0.278, 0.295, 0.308, 0.320, 0.338, 0.300),
    "roof_dark":     (0.075, 0.085, 0.095, 0.100, 0.106, 0.110, 0.115, 0.118, 0.128, 0.118),
    "roof_green":    (0.070, 0.110, 0.090, 0.100, 0.110, 0.118, 0.125, 0.130, 0.120, 0.100),
    "roof_blue":     (0.160, 0.150, 0.110, 0.105, 0.105, 0.106, 0.108, 0.110, 0.100, 0.085),
    "shelter":       (0.205, 0.250, 0.310, 0.340, 0.356, 0.368, 0.380, 0.392, 0.430, 0.388),
    "compacted":     (0.250, 0.325, 0.415, 0.445, 0.462, 0.476, 0.490, 0.505, 0.548, 0.486),
    "graded":        (0.238, 0.310, 0.392, 0.420, 0.438, 0.452, 0.465, 0.480, 0.530, 0.470),
    "compound":      (0.232, 0.292, 0.360, 0.388, 0.405, 0.420, 0.432, 0.446, 0.500, 0.452),
    "disturbed":     (0.150, 0.215, 0.320, 0.372, 0.402, 0.426, 0.446, 0.470, 0.625, 0.585),
    "berm":          (0.120, 0.178, 0.272, 0.322, 0.350, 0.372, 0.392, 0.414, 0.570, 0.540),
    "fill":          (0.230, 0.290, 0.355, 0.380, 0.395, 0.405, 0.415, 0.425, 0.470, 0.430),
    "urban":         (0.195, 0.225, 0.258, 0.272, 0.282, 0.290, 0.298, 0.306, 0.330, 0.298),
    "park":          (0.040, 0.072, 0.052, 0.125, 0.280, 0.345, 0.378, 0.396, 0.240, 0.128),
    "water_deep":    (0.052, 0.038, 0.017, 0.011, 0.007, 0.006, 0.005, 0.004, 0.002, 0.001),
    "water_shallow": (0.078, 0.088, 0.048, 0.030, 0.016, 0.012, 0.010, 0.009, 0.004, 0.002),
    "water_harbour": (0.058, 0.052, 0.028, 0.020, 0.011, 0.009, 0.008, 0.007, 0.003, 0.002),
    "water_coastal": (0.062, 0.060, 0.030, 0.020, 0.011, 0.009, 0.007, 0.006, 0.003, 0.001),
    "beach":         (0.290, 0.350, 0.420, 0.448, 0.466, 0.480, 0.492, 0.505, 0.540, 0.470),
    "breakwater":    (0.190, 0.212, 0.232, 0.242, 0.250, 0.256, 0.262, 0.268, 0.282, 0.254),
    "tank":          (0.560, 0.575, 0.580, 0.580, 0.578, 0.575, 0.572, 0.570, 0.470, 0.400),
    "container":     (0.210, 0.190, 0.240, 0.250, 0.255, 0.258, 0.262, 0.266, 0.240, 0.205),
    "aircraft":      (0.560, 0.575, 0.580, 0.580, 0.578, 0.576, 0.574, 0.572, 0.440, 0.360),
    "aircraft_grey": (0.250, 0.262, 0.268, 0.270, 0.270, 0.270, 0.270, 0.270, 0.220, 0.190),
    "ship_hull":     (0.060, 0.062, 0.064, 0.066, 0.068, 0.070, 0.072, 0.073, 0.060, 0.050),
    "ship_deck":     (0.300, 0.295, 0.280, 0.282, 0.285, 0.288, 0.290, 0.292, 0.250, 0.210),
    "cloud":         (0.620, 0.615, 0.610, 0.612, 0.612, 0.610, 0.605, 0.600, 0.420, 0.280),
    "cirrus":        (0.110, 0.106, 0.102, 0.100, 0.098, 0.096, 0.094, 0.092, 0.070, 0.050),
}
# fmt: on
MATERIALS: tuple[str, ...] = ("natural",) + tuple(k for k in SPECTRA if k not in ("cloud", "cirrus"))
"""Material codes of the label raster: 0 is the natural terrain, 1.. index :data:`SPECTRA`."""

_SPEC_TABLE = np.zeros((len(MATERIALS), len(ALL_BANDS)), dtype=np.float32)
for _i, _m in enumerate(MATERIALS[1:], start=1):
    _SPEC_TABLE[_i] = SPECTRA[_m]
_SPEC_TABLE.setflags(write=False)

WATER_MATERIALS = ("water_deep", "water_shallow", "water_harbour", "water_coastal")


def material_code(name: str) -> int:
    """uint8 code of a material of :data:`SPECTRA` in the label raster."""
    try:
        return MATERIALS.index(name)
    except ValueError:
        raise ValueError(f"unknown material {name!r}; use one of {', '.join(MATERIALS[1:])}") from None


def spectrum(name: str, bands=ALL_BANDS) -> np.ndarray:
    """``(len(bands),)`` float32 reflectance of a material."""
    s = SPECTRA[name]
    return np.array([s[ALL_BANDS.index(b)] for b in bands], dtype=np.float32)


def spec_table(bands) -> np.ndarray:
    """``(n_materials, len(bands))`` float32 table, row 0 (natural) zero."""
    idx = [ALL_BANDS.index(b) for b in bands]
    return np.ascontiguousarray(_SPEC_TABLE[:, idx])


def stable_hash(*parts) -> int:
    """A 63-bit integer hash of ``parts`` that is the same in every process (unlike ``hash``)."""
    h = hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(h, "little") >> 1


# ---------------------------------------------------------------------------------------------
# textures

TEX_N = 512


@functools.lru_cache(maxsize=8)
def texture_bank(seed: int) -> tuple[np.ndarray, ...]:
    """Periodic fractal (1/f^beta) noise textures, each ``(512, 512)`` float32, zero mean, unit std.

    Index: 0 beta 3.4 (smooth, large), 1 beta 2.6, 2 beta 2.0 (rough), 3 beta 3.0 (clouds),
    4 beta 3.0 (second cloud layer / cirrus), 5 beta 2.8 (masks). Costs about 60 ms once per seed.
    """
    rng = np.random.default_rng(stable_hash("texture-bank", seed))
    fy = np.fft.fftfreq(TEX_N)[:, None]
    fx = np.fft.rfftfreq(TEX_N)[None, :]
    k = np.sqrt(fx * fx + fy * fy)
    k[0, 0] = 1.0
    out = []
    for beta in (3.4, 2.6, 2.0, 3.0, 3.0, 2.8):
        white = rng.standard_normal((TEX_N, TEX_N))
        spec = np.fft.rfft2(white) * k ** (-beta / 2.0)
        spec[0, 0] = 0.0
        t = np.fft.irfft2(spec, s=(TEX_N, TEX_N))
        t = (t - t.mean()) / t.std()
        t = np.ascontiguousarray(t, dtype=np.float32)
        t.setflags(write=False)
        out.append(t)
    return tuple(out)


@functools.lru_cache(maxsize=8)
def texture_quantiles(seed: int, index: int) -> np.ndarray:
    """Quantiles 0, 0.001, ..., 1 of a bank texture (to turn a cover fraction into a threshold)."""
    return np.quantile(texture_bank(seed)[index], np.linspace(0.0, 1.0, 1001)).astype(np.float64)


@njit(inline="always", cache=True, fastmath=True)
def _bilinear_wrap(tex, n, u, v):  # pragma: no cover - numba
    """Bilinear sample of the periodic ``(n, n)`` texture at column ``u``, row ``v``."""
    fu = math.floor(u)
    fv = math.floor(v)
    wu = u - fu
    wv = v - fv
    i0 = int(fu) % n
    j0 = int(fv) % n
    if i0 < 0:
        i0 += n
    if j0 < 0:
        j0 += n
    i1 = (i0 + 1) % n
    j1 = (j0 + 1) % n
    return (tex[j0, i0] * (1.0 - wu) + tex[j0, i1] * wu) * (1.0 - wv) + (tex[j1, i0] * (1.0 - wu) + tex[j1, i1] * wu) * wv


@njit(parallel=True, cache=True, fastmath=True)
def _k_sample_tex(tex, a, b, c, d, e, f, out):  # pragma: no cover - numba
    n = tex.shape[0]
    H, W = out.shape
    for r in prange(H):
        for col in range(W):
            out[r, col] = _bilinear_wrap(tex, n, a * col + b * r + c, d * col + e * r + f)


@njit(cache=True, fastmath=True)
def _k_sample_tex_serial(tex, a, b, c, d, e, f, out):  # pragma: no cover - numba
    n = tex.shape[0]
    H, W = out.shape
    for r in range(H):
        for col in range(W):
            out[r, col] = _bilinear_wrap(tex, n, a * col + b * r + c, d * col + e * r + f)


def tex_field(
    tex: np.ndarray,
    grid: Grid,
    *,
    scale_m: float,
    angle: float = 0.0,
    aniso: float = 1.0,
    offset: tuple[float, float] = (0.0, 0.0),
    shift_m: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Sample a periodic texture at the pixel centres of ``grid`` (world coordinates, metres).

    Parameters
    ----------
    tex : (N, N) float32
    scale_m : float
        Metres per texture cell along the first axis (``aniso`` times that along the second).
    angle : float
        Rotation of the texture, radians.
    offset : (float, float)
        Texture-cell offset (decorrelates fields that share a texture).
    shift_m : (float, float)
        ``(dx, dy)`` metres added to the world coordinates (e.g. a cloud shadow displacement).

    Returns
    -------
    (H, W) float32
    """
    t = grid.transform
    res = t.a
    x0 = t.c + 0.5 * res + shift_m[0]
    y0 = t.f - 0.5 * res + shift_m[1]
    ca, sa = math.cos(angle), math.sin(angle)
    L, La = scale_m, scale_m * aniso
    a = ca * res / L
    b = -sa * res / L
    c = (ca * x0 + sa * y0) / L + offset[0]
    d = -sa * res / La
    e = -ca * res / La
    f = (-sa * x0 + ca * y0) / La + offset[1]
    out = np.empty(grid.shape, dtype=np.float32)
    kernel = _k_sample_tex if out.size > 50_000 else _k_sample_tex_serial  # threads cost more than tiny grids
    kernel(tex, a, b, c, d, e, f, out)
    return out


# ---------------------------------------------------------------------------------------------
# geometry rasterisation


def rasterize_labels(shapes, grid: Grid, ss: int) -> np.ndarray:
    """Paint ``(geometry, code)`` pairs in order (later wins) on ``grid`` refined ``ss`` times.

    Returns
    -------
    (H * ss, W * ss) uint8
    """
    t = grid.transform
    fine = Affine(t.a / ss, 0.0, t.c, 0.0, t.e / ss, t.f)
    shape = (grid.height * ss, grid.width * ss)
    shapes = [(g, int(v)) for g, v in shapes if g is not None and not g.is_empty]
    if not shapes:
        return np.zeros(shape, dtype=np.uint8)
    return rio_features.rasterize(shapes, out_shape=shape, transform=fine, fill=0, dtype="uint8")


SENSOR_BLUR_PX = 0.45
"""Gaussian sigma (pixels) of the sensor's point spread: S2 edges are soft, not box-filtered."""


def coverage(geom, grid: Grid, *, ss: int = 4, blur: float = SENSOR_BLUR_PX) -> tuple[int, int, np.ndarray] | None:
    """Fractional cover of ``geom`` on the pixels of ``grid`` within its bounding window,
    blurred by the sensor's point spread (``blur`` pixels; 0 for none).

    Returns
    -------
    (row0, col0, frac) with frac ``(h, w)`` float32 in [0, 1], or None when it misses the grid.
    """
    if geom is None or geom.is_empty:
        return None
    win = grid.to_window(geom.bounds)
    r0 = max(0, int(win.row_off) - 2)
    c0 = max(0, int(win.col_off) - 2)
    r1 = min(grid.height, int(win.row_off + win.height) + 2)
    c1 = min(grid.width, int(win.col_off + win.width) + 2)
    if r1 <= r0 or c1 <= c0:
        return None
    sub = grid.window(r0, c0, r1 - r0, c1 - c0)
    lab = rasterize_labels([(geom, 1)], sub, ss)
    h, w = r1 - r0, c1 - c0
    frac = lab.reshape(h, ss, w, ss).mean(axis=(1, 3), dtype=np.float32)
    if blur > 0:
        frac = ndimage.gaussian_filter(frac, blur, mode="constant", truncate=3.0)
    if not frac.any():
        return None
    return r0, c0, frac


@njit(parallel=True, cache=True)
def _k_compose(labels, ss, natural, nat_vfrac, spec, mod, out, vfrac_out, water_out, water_code_lo, water_code_hi):  # pragma: no cover
    B, H, W = out.shape
    inv = 1.0 / (ss * ss)
    for r in prange(H):
        acc = np.zeros(B, dtype=np.float32)
        for c in range(W):
            for b in range(B):
                acc[b] = 0.0
            nn = 0
            nw = 0
            for i in range(ss):
                for j in range(ss):
                    lab = labels[r * ss + i, c * ss + j]
                    if lab == 0:
                        nn += 1
                    else:
                        if lab >= water_code_lo and lab <= water_code_hi:
                            nw += 1
                        for b in range(B):
                            acc[b] += spec[lab, b]
            fn = nn * inv
            m = mod[r, c]
            for b in range(B):
                out[b, r, c] = acc[b] * inv * m + fn * natural[b, r, c]
            vfrac_out[r, c] = fn * nat_vfrac[r, c]
            water_out[r, c] = nw * inv


def compose(labels: np.ndarray, ss: int, natural: np.ndarray, nat_vfrac: np.ndarray, bands, mod: np.ndarray):
    """Mix man-made materials (label raster) with the natural terrain into pixel reflectance.

    Parameters
    ----------
    labels : (>= H*ss, >= W*ss) uint8
        Material codes (:data:`MATERIALS`) on a grid ``ss`` times finer than the output.
    natural : (B, H, W) float32
        Reflectance of the natural terrain.
    nat_vfrac : (H, W) float32
        Vegetation fraction of the natural terrain, 0-1.
    mod : (H, W) float32
        Multiplicative brightness texture of man-made surfaces (about 1).

    Returns
    -------
    refl : (B, H, W) float32
    vfrac : (H, W) float32
        Vegetation fraction after man-made cover.
    water : (H, W) float32
        Water fraction, 0-1.
    """
    B, H, W = natural.shape
    if labels.shape[0] < H * ss or labels.shape[1] < W * ss:
        raise ValueError(f"labels {labels.shape} too small for {(H, W)} x {ss}")
    out = np.empty((B, H, W), dtype=np.float32)
    vf = np.empty((H, W), dtype=np.float32)
    wf = np.empty((H, W), dtype=np.float32)
    codes = [material_code(m) for m in WATER_MATERIALS]
    _k_compose(labels, ss, natural, nat_vfrac, spec_table(bands), mod, out, vf, wf, min(codes), max(codes))
    for b in range(B):  # sensor point spread
        ndimage.gaussian_filter(out[b], SENSOR_BLUR_PX, output=out[b], mode="nearest", truncate=3.0)
    return out, vf, wf


# ---------------------------------------------------------------------------------------------
# per-date rendering


@njit(parallel=True, cache=True, fastmath=True)
def _k_render(
    g10, g20, src, is20, dy, dx, alpha20, cirrus20, shadow20,
    gain, haze, cloud_refl, cirrus_refl, shadow_k, sigma, nstart, offset, out,
):  # pragma: no cover - numba
    nb, H, W = out.shape
    h20, w20 = alpha20.shape
    H10 = g10.shape[1]
    W10 = g10.shape[2]
    foff = np.float32(offset) + np.float32(0.5)
    M32 = np.uint64(0xFFFFFFFF)
    # column lookups shared by all rows: cloud fields (20 m, unshifted), 20 m ground (shifted)
    cx0 = np.empty(W, np.int64)
    cx1 = np.empty(W, np.int64)
    cwx = np.empty(W, np.float32)
    bx0 = np.empty(W, np.int64)
    bx1 = np.empty(W, np.int64)
    bwx = np.empty(W, np.float32)
    for c in range(W):
        xc = min(max((c + 0.5) * 0.5 - 0.5, 0.0), w20 - 1.0)
        cx0[c] = int(xc)
        cx1[c] = min(cx0[c] + 1, w20 - 1)
        cwx[c] = xc - cx0[c]
        x20 = min(max((c + 0.5 + dx) * 0.5 - 0.5, 0.0), w20 - 1.0)
        bx0[c] = int(x20)
        bx1[c] = min(bx0[c] + 1, w20 - 1)
        bwx[c] = x20 - bx0[c]
    # 10 m ground: a global shift has one weight for every interior column
    ix = int(math.floor(dx))
    wx10 = np.float32(dx - ix)
    c_lo = min(max(0, -ix), W)
    c_hi = max(min(W, W10 - 1 - ix), c_lo)
    for r in prange(H):
        yc = min(max((r + 0.5) * 0.5 - 0.5, 0.0), h20 - 1.0)
        yc0 = int(yc)
        yc1 = min(yc0 + 1, h20 - 1)
        wyc = np.float32(yc - yc0)
        y10 = min(max(r + dy, 0.0), H10 - 1.0)
        y10a = int(y10)
        y10b = min(y10a + 1, H10 - 1)
        wy10 = np.float32(y10 - y10a)
        y20 = min(max((r + 0.5 + dy) * 0.5 - 0.5, 0.0), h20 - 1.0)
        y20a = int(y20)
        y20b = min(y20a + 1, h20 - 1)
        wy20 = np.float32(y20 - y20a)
        al = np.empty(W, np.float32)
        ci = np.empty(W, np.float32)
        sh = np.empty(W, np.float32)
        a_row = np.empty(w20, np.float32)
        c_row = np.empty(w20, np.float32)
        s_row = np.empty(w20, np.float32)
        for x in range(w20):
            a_row[x] = alpha20[yc0, x] * (1 - wyc) + alpha20[yc1, x] * wyc
            c_row[x] = cirrus20[yc0, x] * (1 - wyc) + cirrus20[yc1, x] * wyc
            s_row[x] = shadow20[yc0, x] * (1 - wyc) + shadow20[yc1, x] * wyc
        for c in range(W):
            a0 = cx0[c]
            a1 = cx1[c]
            w = cwx[c]
            al[c] = a_row[a0] * (1 - w) + a_row[a1] * w
            ci[c] = c_row[a0] * (1 - w) + c_row[a1] * w
            sh[c] = s_row[a0] * (1 - w) + s_row[a1] * w
        g = np.empty(W, np.float32)
        v10 = np.empty(W10, np.float32)
        v20 = np.empty(w20, np.float32)
        for j in range(nb):
            k = src[j]
            if is20[j]:
                for x in range(w20):
                    v20[x] = g20[k, y20a, x] * (1 - wy20) + g20[k, y20b, x] * wy20
                for c in range(W):
                    g[c] = v20[bx0[c]] * (1 - bwx[c]) + v20[bx1[c]] * bwx[c]
            else:
                for x in range(W10):
                    v10[x] = g10[k, y10a, x] * (1 - wy10) + g10[k, y10b, x] * wy10
                # shifted slices, not v10[c + ix] (see pipeline.kernels._numba: vectorises)
                va = v10[c_lo + ix : c_hi + ix]
                vb = v10[c_lo + ix + 1 : c_hi + ix + 1]
                gs = g[c_lo:c_hi]
                for c in range(c_hi - c_lo):
                    gs[c] = va[c] * (1 - wx10) + vb[c] * wx10
                for c in range(0, c_lo):
                    g[c] = v10[0]
                for c in range(c_hi, W):
                    g[c] = v10[min(max(c + ix, 0), W10 - 1)]
            gj = gain[j]
            hj = haze[j]
            crj = cloud_refl[j]
            cij = cirrus_refl[j]
            skj = shadow_k[j]
            sj = sigma[j] * np.float32(2.449490 / 65536.0)
            key = np.uint64(nstart[j]) & M32
            base = np.uint64(r * W)
            for c in range(W):
                a = al[c]
                v = gj * g[c] * (np.float32(1.0) - skj * sh[c]) + hj
                v = v * (np.float32(1.0) - a) + crj * (np.float32(0.78) + np.float32(0.22) * a) * a + cij * ci[c]
                # sensor noise: 32-bit integer hash of (date/band seed, pixel) -> triangular, unit variance
                hsh = ((base + np.uint64(c)) ^ key) & M32
                hsh ^= hsh >> np.uint64(16)
                hsh = (hsh * np.uint64(0x7FEB352D)) & M32
                hsh ^= hsh >> np.uint64(15)
                hsh = (hsh * np.uint64(0x846CA68B)) & M32
                hsh ^= hsh >> np.uint64(16)
                u1 = np.float32(hsh & np.uint64(0xFFFF))
                u2 = np.float32((hsh >> np.uint64(16)) & np.uint64(0xFFFF))
                v = v + sj * (u1 + u2 - np.float32(65535.0))
                dn = v * np.float32(10000.0) + foff
                dn = min(max(dn, np.float32(1.0)), np.float32(65535.0))
                out[j, r, c] = np.uint16(dn)


def render_date(g10, g20, src, is20, shift, alpha20, cirrus20, shadow20, gain, haze, cloud_refl, cirrus_refl,
                shadow_k, sigma, nstart, offset, out):
    """Render one acquisition into ``out`` ``(nb, H, W)`` uint16 DN.

    For output band ``j`` and 10 m pixel ``(r, c)``::

        g  = ground reflectance, bilinear at (r + dy, c + dx) on the 10 m grid, or at
             ((r + .5 + dy) / 2 - .5, (c + .5 + dx) / 2 - .5) on the 20 m grid (edge-clamped)
        a, ci, sh = cloud opacity, cirrus, shadow: bilinear from the 20 m grid, unshifted
        v  = gain * g * (1 - shadow_k * sh) + haze            # drift, shadow, path radiance
        v  = v * (1 - a) + cloud_refl * (0.78 + 0.22 a) * a + cirrus_refl * ci
        v += sigma * n,  n ~ triangular, unit variance, hashed from (nstart[j], pixel)
        DN = clip(round(v * 10000) + offset, 1, 65535)

    Parameters
    ----------
    g10 : (4, H10, W10) float32
        Ground reflectance of the 10 m bands; ``g20`` : (6, h, w) float32 of the 20 m bands.
    src, is20 : (nb,) int, bool
        Index of each output band in ``g10`` or ``g20``.
    shift : (float, float)
        ``(dy, dx)`` misregistration in 10 m pixels.
    alpha20, cirrus20, shadow20 : (h, w) float32
        Cloud fields on the 20 m grid, 0-1.
    gain, haze, cloud_refl, cirrus_refl, shadow_k, sigma : (nb,) float32
    nstart : (nb,) int
        Noise keys (any 32-bit value; different keys give unrelated noise).
    offset : int
        DN offset (1000 for processing baseline 04.00).
    out : (nb, H, W) uint16
        Written in place. Cost: about 2 ns of CPU per output value.
    """
    _k_render(
        g10, g20, np.asarray(src, np.int64), np.asarray(is20, np.bool_), float(shift[0]), float(shift[1]),
        alpha20, cirrus20, shadow20,
        np.asarray(gain, np.float32), np.asarray(haze, np.float32), np.asarray(cloud_refl, np.float32),
        np.asarray(cirrus_refl, np.float32), np.asarray(shadow_k, np.float32), np.asarray(sigma, np.float32),
        np.asarray(nstart, np.int64), int(offset), out,
    )
