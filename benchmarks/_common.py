"""Shared helpers of the speed benchmarks: timing, memory bandwidth, peak RSS, synthetic data and
the plain-numpy versions of the kernels' maths (written as a user would, with full-size temporaries).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench-output"
BANDS6 = ("B02", "B03", "B04", "B08", "B11", "B12")
BANDS10 = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")


# ------------------------------------------------------------------------------------------------
# timing and machine


def best_time(fn, *, repeat: int = 3, warmup: int = 1) -> float:
    """Best wall time of ``repeat`` calls after ``warmup`` calls, seconds."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _page_aligned(nbytes: int) -> np.ndarray:
    """An uninitialised float64 buffer of ``nbytes`` starting on a 4096-byte boundary."""
    raw = np.empty(nbytes + 4096, np.uint8)
    off = (-raw.ctypes.data) % 4096
    return raw[off : off + nbytes].view(np.float64)


def copy_bandwidth(nbytes: int = 512 << 20, repeat: int = 5) -> float:
    """Memory bandwidth of a large ``np.copyto`` (bytes read + bytes written per second).

    Both buffers start on a page boundary. Left to the allocator, two large arrays can land 16
    bytes apart modulo 4096 (under the program's settings, ``pipeline._alloc``, they come from the
    heap one after the other); then each store shares its low twelve address bits with a load a
    few elements later, which the CPU treats as a dependency (4K aliasing): on 2026-12-06 that
    made the copy 8.7 GB/s against 29 GB/s aligned, the reference depending on heap layout.
    """
    src = _page_aligned(nbytes)
    src.fill(1.0)
    dst = _page_aligned(nbytes)
    t = best_time(lambda: np.copyto(dst, src), repeat=repeat)
    return 2 * src.nbytes / t


def read_bandwidth(before: np.ndarray, after: np.ndarray) -> float:
    """Bytes/s of the simplest parallel numba pass that reads a (B, H, W) pair once (per-pixel sum
    of every band into a float32 plane): the practical ceiling of a kernel that must read the pair."""
    from numba import njit, prange

    @njit(parallel=True, cache=False)
    def readsum(b, a, out):
        B, H, W = b.shape
        for i in prange(H):
            acc = np.zeros(W, np.float32)
            for k in range(B):
                rb = b[k, i]
                ra = a[k, i]
                for j in range(W):
                    acc[j] += np.float32(rb[j]) + np.float32(ra[j])
            o = out[i]
            for j in range(W):
                o[j] = acc[j]

    out = np.empty(before.shape[1:], np.float32)
    t = best_time(lambda: readsum(before, after, out), repeat=5)
    return (before.nbytes + after.nbytes + out.nbytes) / t


def _vmhwm(pid: int | str = "self") -> int | None:
    """Peak RSS (VmHWM) of a live process from /proc, bytes; None where unavailable.

    Unlike ``ru_maxrss`` it belongs to the current program image: a child started by fork + exec
    does not inherit its parent's peak.
    """
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from /proc/<pid>/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        q = todo.pop()
        out.append(q)
        try:
            for task in os.listdir(f"/proc/{q}/task"):
                with open(f"/proc/{q}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def peak_rss_self() -> int:
    """Peak resident set size of this program image, bytes."""
    v = _vmhwm()
    return v if v is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_child_peak(args: list[str], poll: float = 0.05) -> tuple[float, int, int, str]:
    """Run a command, sampling its VmHWM while it runs: (wall s, peak RSS bytes, returncode, output)."""
    import tempfile

    with tempfile.TemporaryFile("w+") as log:
        t0 = time.perf_counter()
        p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, text=True)
        peak = 0
        while p.poll() is None:
            for pid in _tree(p.pid):  # wrapper scripts start the real program as a child
                v = _vmhwm(pid)
                if v:
                    peak = max(peak, v)
            time.sleep(poll)
        wall = time.perf_counter() - t0
        log.seek(0)
        return wall, peak, p.returncode, log.read()


def machine_info() -> dict:
    import numba

    return {
        "cpus": os.cpu_count(),
        "numba_threads": numba.config.NUMBA_NUM_THREADS,
        "numba_threading_layer": os.environ.get("NUMBA_THREADING_LAYER", "default"),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE"),
        "load_average": os.getloadavg(),
    }


def write_json(path: Path, data: dict) -> None:
    """Atomic JSON write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=float))
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------------
# synthetic data


def synthetic_strip(rng, B: int, h: int, w: int, *, date: int, row0: int = 0, block: int = 64) -> np.ndarray:
    """(B, h, w) uint16 DN: blocky spatial structure plus noise; ``date`` 1 adds a per-band gain and
    offset (radiometric change) and, in rows/cols where (row // 1024 + col // 1024) % 7 == 3, a real
    change of +1500 DN in the visible bands. A 3-pixel column band at the left edge is no data (0)."""
    coarse = np.random.default_rng(1000 + row0 // block).integers(800, 3500, size=(B, -(-h // block) + 1, -(-w // block)))
    base = np.repeat(np.repeat(coarse, block, axis=1), block, axis=2)[:, :h, :w].astype(np.float32)
    img = base + rng.normal(0, 60, size=(B, h, w)).astype(np.float32)
    if date == 1:
        gain = np.linspace(0.9, 1.15, B, dtype=np.float32)[:, None, None]
        img = img * gain + 120
        rows = (np.arange(row0, row0 + h) // 1024)[:, None]
        cols = (np.arange(w) // 1024)[None, :]
        change = ((rows + cols) % 7 == 3) & ((np.arange(w) % 1024) < 300)[None, :] & (
            (np.arange(row0, row0 + h) % 1024) < 200
        )[:, None]
        img[: min(3, B)] += 1500 * change
    out = np.clip(img, 1, 65535).astype(np.uint16)
    out[:, :, :3] = 0
    return out


def synthetic_pair(B: int, H: int, W: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A (B, H, W) uint16 pair built strip by strip (see :func:`synthetic_strip`)."""
    rng = np.random.default_rng(seed)
    before = np.empty((B, H, W), np.uint16)
    after = np.empty((B, H, W), np.uint16)
    step = 1024
    for r in range(0, H, step):
        h = min(step, H - r)
        before[:, r : r + h] = synthetic_strip(rng, B, h, W, date=0, row0=r)
        after[:, r : r + h] = synthetic_strip(rng, B, h, W, date=1, row0=r)
    return before, after


# ------------------------------------------------------------------------------------------------
# plain numpy versions of the same maths


def np_refl(img: np.ndarray, offset: float = 0) -> np.ndarray:
    r = (img.astype(np.float32) - np.float32(offset)) * np.float32(1e-4)
    r[img == 0] = np.nan
    return r


def np_cva(before, after, offsets=(0, 0)):
    d = np_refl(after, offsets[1]) - np_refl(before, offsets[0])
    return np.sqrt((d * d).sum(axis=0))


def _nd(p, q):
    s = p + q
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (p - q) / s
    out[s == 0] = np.nan
    return out


def np_indices(img, bands, offset=0):
    r = np_refl(img, offset)
    g = {b: r[k] for k, b in enumerate(bands)}
    ndvi = _nd(g["B08"], g["B04"])
    return {
        "ndvi": ndvi,
        "ndbi": _nd(g["B11"], g["B08"]),
        "bsi": _nd(g["B11"] + g["B04"], g["B08"] + g["B02"]),
        "dbi": _nd(g["B02"], g["B12"]) - ndvi,
        "mndwi": _nd(g["B03"], g["B11"]),
        "brightness": (g["B02"] + g["B03"] + g["B04"]) / np.float32(3),
    }


def np_index_deltas(before, after, bands, offsets=(0, 0)):
    ib = np_indices(before, bands, offsets[0])
    ia = np_indices(after, bands, offsets[1])
    return {k: ia[k] - ib[k] for k in ib}


def np_irmad_moments(before, after, result=None):
    """One IR-MAD statistics pass in numpy: weights from ``result`` (None = 1), weighted means and
    the joint covariance. Returns (sum w, means (2B,), covariance (2B, 2B))."""
    from scipy import stats

    B = before.shape[0]
    X = np_refl(before).reshape(B, -1)
    Y = np_refl(after).reshape(B, -1)
    ok = ~(np.isnan(X).any(axis=0) | np.isnan(Y).any(axis=0))
    X = X[:, ok].astype(np.float64)
    Y = Y[:, ok].astype(np.float64)
    if result is None:
        w = np.ones(X.shape[1])
    else:
        mad = result.a.T @ (X - result.mean_before[:, None]) - result.b.T @ (Y - result.mean_after[:, None])
        chi = ((mad / result.sigma[:, None]) ** 2).sum(axis=0)
        w = stats.chi2.sf(chi, B)
    Z = np.vstack([X, Y])
    mean = (Z * w).sum(axis=1) / w.sum()
    Zc = Z - mean[:, None]
    cov = (Zc * w) @ Zc.T / w.sum()
    return w.sum(), mean, cov


def np_irmad_transform(before, after, result):
    from scipy import stats

    B, H, W = before.shape
    X = np_refl(before).reshape(B, -1)
    Y = np_refl(after).reshape(B, -1)
    mad = result.a.T.astype(np.float32) @ (X - result.mean_before[:, None].astype(np.float32)) - result.b.T.astype(
        np.float32
    ) @ (Y - result.mean_after[:, None].astype(np.float32))
    chi = ((mad / result.sigma[:, None].astype(np.float32)) ** 2).sum(axis=0)
    p = stats.chi2.sf(chi, B).astype(np.float32)
    return chi.reshape(H, W), p.reshape(H, W)


def synthetic_clear_mask_inputs(img: np.ndarray, seed: int = 0):
    """Reflectance (B, H, W) float32 of ``img`` (``np_refl``; bands named B02 B03 B04 B8A B11 B12,
    the NIR standing in for B8A), with NaN strips, bright white low-SWIR cloud rectangles on about
    2 % of the grid, and an SCL layer (uint8) of vegetation and bare soil with cloud, cirrus and
    shadow rectangles on about 3 %."""
    rng = np.random.default_rng(seed)
    B, H, W = img.shape
    refl = np_refl(img)
    names = ("B02", "B03", "B04", "B8A", "B11", "B12")[:B]
    scl = np.where(rng.random((H, W)) < 0.5, 4, 5).astype(np.uint8)

    def rects(frac):
        area, out = 0, []
        while area < frac * H * W:
            h, w = rng.integers(4, max(5, H // 40), 2)
            y, x = rng.integers(0, H - h), rng.integers(0, W - w)
            out.append((slice(y, y + h), slice(x, x + w)))
            area += h * w
        return out

    for sl in rects(0.03):
        scl[sl] = rng.choice([3, 8, 9, 10])
    for sl in rects(0.02):
        refl[0][sl], refl[2][sl] = 0.45, 0.42
        if B > 4:
            refl[3][sl], refl[4][sl] = 0.5, 0.3
    for sl in rects(0.002):
        refl[rng.integers(0, B)][sl] = np.nan
    return refl, scl, names


def np_clear_mask(refl, scl, names):
    """``clear_mask`` of bench_speed in plain numpy and scipy (np.isin, float32 expressions with
    temporaries, ``scipy.ndimage.binary_dilation`` with the same disk)."""
    from scipy import ndimage

    from pipeline.preprocess.cloudmask import MaskParams
    from pipeline.preprocess.cloudmask import _disk

    p = MaskParams()
    g = {n: refl[k] for k, n in enumerate(names)}
    f32 = np.float32
    nodata = np.isnan(refl).any(axis=0)
    bad = np.isin(scl, list(p.scl_classes))
    with np.errstate(invalid="ignore", divide="ignore"):
        white = g["B02"] / np.maximum(g["B04"], f32(1e-4))
        swir = g["B11"] / np.maximum(g["B8A"], f32(1e-4))
        bad |= (g["B02"] > f32(p.cloud_blue)) & (white > f32(p.cloud_whiteness)) & (swir < f32(p.cloud_swir_ratio))
    bad = ndimage.binary_dilation(bad, structure=_disk(p.dilate_px))
    return ~nodata & ~bad


def np_otsu(values):
    from skimage.filters import threshold_otsu

    return float(threshold_otsu(values[np.isfinite(values)]))


def np_change_mask(values, t, mask):
    return (values > np.float32(t)) & mask


def max_abs_diff(a, b) -> float:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if not np.array_equal(np.isnan(a), np.isnan(b)):
        return float("inf")
    d = np.abs(a - b)
    return float(np.nanmax(d)) if d.size else 0.0


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.2f} {unit}" if unit != "B" else f"{n:.0f} B"
        n /= 1024
    return f"{n:.2f} GiB"


def env_python() -> str:
    return sys.executable
