"""Speed benchmarks of the change kernels (``make bench``).

Everything printed is measured in this one run:

1. kernels: each hot kernel (CVA, index deltas, IR-MAD statistics pass, IR-MAD transform, Otsu
   threshold, change mask) against a plain-numpy version of the same maths (same results checked),
   and against this machine's memory bandwidth (bytes the kernel must move / time, relative to a
   large ``np.copyto``);
2. scaling: time per megapixel of the in-memory detection step at three image sizes;
3. end to end: a 10980 x 10980 10-band uint16 tile pair read blockwise from local COGs (written once
   into bench-output/), with peak memory and the time to merely decode the same inputs;
4. optional: Orfeo ToolBox ``otbcli_MultivariateAlterationDetector`` on a 4096 x 4096 six-band pair
   (installed with apt-get when missing): canonical correlations and times.

Usage::

    .venv/bin/python benchmarks/bench_speed.py            # full (about 10-20 minutes on 2 cores)
    .venv/bin/python benchmarks/bench_speed.py --quick    # small sizes, CI smoke (well under a minute)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from pipeline.kernels import (  # noqa: E402
    apply_threshold,
    cva,
    index_deltas,
    irmad,
    irmad_transform,
    mad_variates,
    threshold,
)
from pipeline.kernels import _dispatch  # noqa: E402
from pipeline.kernels.thresholds import chi2_threshold  # noqa: E402

TARGET_SPEEDUP = 5.0
TARGET_ROOFLINE = 0.60
TARGET_E2E_RSS = 3 << 30
TARGET_E2E_DECODE_RATIO = 3.0
TARGET_FLAT = 0.30


def say(msg: str = "") -> None:
    print(msg, flush=True)


def mark(ok: bool) -> str:
    return "ok  " if ok else "MISS"


# ------------------------------------------------------------------------------------------------
# 1. kernels


def bench_kernels(N: int, bw: float, repeat: int) -> list[dict]:
    B = 6
    say(f"\n== 1. kernels on a {N}x{N} {B}-band uint16 pair (numpy baseline = same maths, plain numpy) ==")
    before, after = C.synthetic_pair(B, N, N, seed=1)
    npx = N * N
    rows = []
    rbw = C.read_bandwidth(before, after)
    say(f"  practical ceiling: a parallel numba pass that only reads the pair moves {rbw / 1e9:.2f} GB/s "
        f"= {100 * rbw / bw:.1f}% of copy")

    def row(name, t_k, t_np, nbytes, diff, tol):
        r = {
            "kernel": name,
            "read_ceiling_GBps": rbw / 1e9,
            "time_s": t_k,
            "numpy_s": t_np,
            "speedup": t_np / t_k,
            "bytes": nbytes,
            "GBps": nbytes / t_k / 1e9,
            "roofline": nbytes / t_k / bw,
            "max_abs_diff": diff,
            "same": diff <= tol,
        }
        rows.append(r)
        say(
            f"  {name:<22} {t_k * 1e3:9.1f} ms  numpy {t_np * 1e3:9.1f} ms  x{r['speedup']:6.1f} "
            f"[{mark(r['speedup'] >= TARGET_SPEEDUP)}]  {r['GBps']:6.2f} GB/s = {100 * r['roofline']:5.1f}% of copy "
            f"[{mark(r['roofline'] >= TARGET_ROOFLINE)}] ({100 * nbytes / t_k / rbw:5.1f}% of read ceiling)  "
            f"max|diff| {diff:.2e} [{mark(r['same'])}]"
        )
        return r

    np_rep = 1
    # CVA
    out = np.empty((N, N), np.float32)
    t_k = C.best_time(lambda: cva(before, after, out=out), repeat=repeat)
    t_np = C.best_time(lambda: C.np_cva(before, after), repeat=np_rep)
    diff = C.max_abs_diff(cva(before, after), C.np_cva(before, after))
    row("cva", t_k, t_np, npx * (2 * B * 2 + 4), diff, 1e-5)
    cva_vals = cva(before, after)

    # index deltas (all six indices)
    dout = np.empty((6, N, N), np.float32)
    t_k = C.best_time(lambda: index_deltas(before, after, bands=C.BANDS6, out=dout), repeat=repeat)
    t_np = C.best_time(lambda: C.np_index_deltas(before, after, C.BANDS6), repeat=np_rep)
    got = index_deltas(before, after, bands=C.BANDS6)
    want = C.np_index_deltas(before, after, C.BANDS6)
    diff = max(C.max_abs_diff(got[k], want[k]) for k in got)
    row("index_deltas (6)", t_k, t_np, npx * (2 * B * 2 + 6 * 4), diff, 1e-4)
    del got, want, dout

    # IR-MAD: one weighted statistics pass over every pixel, then the transform
    r = irmad(before, after, max_iter=3, sample=min(npx, 1 << 20), tol=1e-12)
    inv_sigma = 1.0 / r.sigma

    def k_stats():
        return _dispatch.irmad_moments(
            before, after, None, r.mean_before, r.mean_after, r.a, r.b, inv_sigma, weighted=True
        )

    t_k = C.best_time(k_stats, repeat=repeat)
    t_np = C.best_time(lambda: C.np_irmad_moments(before, after, r), repeat=np_rep)
    mom = k_stats()
    P = 2 * B
    sw = mom[0]
    mz = mom[1 : 1 + P] / sw
    S = mom[1 + P :].reshape(P, P)
    S = np.triu(S) + np.triu(S, 1).T
    cov_k = S / sw - np.outer(mz, mz)
    sw_np, mean_np, cov_np = C.np_irmad_moments(before, after, r)
    diff = float(np.max(np.abs(cov_k - cov_np)) / np.max(np.abs(cov_np)))
    row("irmad statistics pass", t_k, t_np, npx * (2 * B * 2), diff, 1e-4)

    out2 = np.empty((2, N, N), np.float32)
    t_k = C.best_time(lambda: irmad_transform(before, after, r, out=out2), repeat=repeat)
    t_np = C.best_time(lambda: C.np_irmad_transform(before, after, r), repeat=np_rep)
    chi_k, _ = irmad_transform(before, after, r)
    chi_np, _ = C.np_irmad_transform(before, after, r)
    diff = C.max_abs_diff(chi_k, chi_np) / float(np.nanmax(chi_np))
    row("irmad transform", t_k, t_np, npx * (2 * B * 2 + 2 * 4), diff, 1e-4)
    del chi_k, chi_np, out2

    # threshold: Otsu of the CVA magnitude (one parallel histogram pass vs skimage on the finite values)
    t_k = C.best_time(lambda: threshold(cva_vals, "otsu"), repeat=repeat)
    t_np = C.best_time(lambda: C.np_otsu(cva_vals), repeat=np_rep)
    t_cva = threshold(cva_vals, "otsu")
    diff = abs(t_cva - C.np_otsu(cva_vals))
    row("otsu threshold", t_k, t_np, npx * 4, diff, 0.0)

    # the same threshold estimated from a 1/16 random sample (not the same result: reported apart)
    n16 = max(npx // 16, 1024)
    t_s = C.best_time(lambda: threshold(cva_vals, "otsu", sample=n16, seed=0), repeat=repeat)
    t_sample = threshold(cva_vals, "otsu", sample=n16, seed=0)
    rel = abs(t_sample - t_cva) / abs(t_cva)
    say(f"  {'otsu, 1/16 sample':<22} {t_s * 1e3:9.1f} ms  numpy {t_np * 1e3:9.1f} ms  x{t_np / t_s:6.1f}         "
        f"(approximate: threshold differs from the exact one by {100 * rel:.2f}%)")
    rows.append({"kernel": "otsu threshold, 1/16 sample (approximate)", "time_s": t_s, "numpy_s": t_np,
                 "speedup": t_np / t_s, "relative_threshold_difference": rel, "same": True, "approximate": True})

    # change mask: (cva > t) & valid
    valid = np.isfinite(cva_vals)
    mask_out = np.empty((N, N), bool)
    t_k = C.best_time(lambda: apply_threshold(cva_vals, t_cva, mask=valid, out=mask_out), repeat=repeat)
    t_np = C.best_time(lambda: C.np_change_mask(cva_vals, t_cva, valid), repeat=max(np_rep, 2))
    diff = float(np.count_nonzero(apply_threshold(cva_vals, t_cva, mask=valid) != C.np_change_mask(cva_vals, t_cva, valid)))
    row("change mask", t_k, t_np, npx * (4 + 1 + 1), diff, 0.0)
    del mask_out, valid

    # clear mask of one date, as mask_stack makes it for an L2A date: no data (any band NaN), SCL
    # classes, the spectral cloud test, dilated by 3 px (the pipeline's kernels vs numpy + scipy)
    refl, scl, names = C.synthetic_clear_mask_inputs(before, seed=5)
    t_k = C.best_time(lambda: clear_mask(refl, scl, names), repeat=repeat)
    t_np = C.best_time(lambda: C.np_clear_mask(refl, scl, names), repeat=np_rep)
    got, want = clear_mask(refl, scl, names), C.np_clear_mask(refl, scl, names)
    diff = float(np.count_nonzero(got != want))
    say(f"  (clear mask: {100 * (1 - got.mean()):.1f}% of the pixels masked)")
    row("clear mask (SCL+cloud)", t_k, t_np, npx * (B * 4 + 1 + 1), diff, 0.0)
    del refl, scl, got, want
    return rows


def clear_mask(refl, scl, names):
    """The pipeline's clear mask of one date: ``pipeline.preprocess.cloudmask`` pieces as
    ``mask_stack`` chains them (``any_nan``, ``scl_in``, ``spectral_cloud_mask``,
    ``dilate``)."""
    from pipeline.kernels import _numba as K
    from pipeline.preprocess.cloudmask import MaskParams, dilate, scl_in, spectral_cloud_mask

    p = MaskParams()
    ok = np.empty((1,) + refl.shape[1:], bool)
    K.any_nan(refl[None], ok)
    bad = scl_in(scl, p.scl_classes)
    bad |= spectral_cloud_mask(refl, names, params=p)
    bad = dilate(bad, p.dilate_px)
    np.logical_or(bad, ok[0], out=bad)
    return np.logical_not(bad, out=bad)


# ------------------------------------------------------------------------------------------------
# 2. scaling


def detect_step(before, after) -> np.ndarray:
    """The in-memory detection step whose cost per megapixel is reported."""
    npx = before.shape[1] * before.shape[2]
    c = cva(before, after)
    index_deltas(before, after, bands=C.BANDS6, names=("ndvi", "ndbi", "bsi", "mndwi"))
    r = irmad(before, after, sample=max(npx // 64, 4096), max_iter=8, tol=1e-12)
    t = threshold(c, "otsu")
    change = apply_threshold(c, t)
    change |= apply_threshold(r.chi2, chi2_threshold(dof=before.shape[0], alpha=0.01))
    return change


def bench_scaling(sizes: list[int], repeat: int) -> list[dict]:
    say("\n== 2. time per megapixel of the detection step (cva + 4 index deltas + IR-MAD on a 1/64 sample, "
        "8 iterations + transform + Otsu + masks), 6 bands; best of the calls after two untimed ones ==")
    rows = []
    for n in sizes:
        before, after = C.synthetic_pair(6, n, n, seed=2)
        # two untimed calls: the first touches of the step's memory (page faults, a one-time cost
        # of a process, which at 11k^2 spill into the second call) are not per-pixel work
        t = C.best_time(lambda: detect_step(before, after), repeat=repeat, warmup=2)
        mpx = n * n / 1e6
        rows.append({"size": n, "time_s": t, "s_per_mpx": t / mpx})
        say(f"  {n:>6}^2  {t:8.3f} s   {1e3 * t / mpx:7.2f} ms/Mpx")
        del before, after
    per = [r["s_per_mpx"] for r in rows]
    spread = max(per) / min(per) - 1
    say(f"  spread of ms/Mpx: {100 * spread:.1f}% [{mark(spread <= TARGET_FLAT)}] (target <= {100 * TARGET_FLAT:.0f}%)")
    return rows


# ------------------------------------------------------------------------------------------------
# 3. end to end from COGs


def write_tile_cogs(n: int, bands: int, folder: Path) -> tuple[Path, Path]:
    """Write the synthetic tile pair as DEFLATE COGs once (reused while size and bands match)."""
    import rasterio
    from rasterio.shutil import copy as rio_copy
    from rasterio.transform import from_origin

    folder.mkdir(parents=True, exist_ok=True)
    paths = (folder / f"tile_{n}_{bands}b_before.tif", folder / f"tile_{n}_{bands}b_after.tif")
    if all(p.exists() for p in paths):
        return paths
    say(f"  writing the {n}x{n} {bands}-band COG pair once into {folder} ...")
    t0 = time.perf_counter()
    profile = dict(
        driver="GTiff", width=n, height=n, count=bands, dtype="uint16", crs="EPSG:32633",
        transform=from_origin(600000, 3500040, 10, 10), tiled=True, blockxsize=512, blockysize=512,
        compress="NONE", nodata=0,
    )
    for date, path in enumerate(paths):
        rng = np.random.default_rng(10 + date)
        tmp = path.with_suffix(".tmp.tif")
        with rasterio.open(tmp, "w", **profile) as dst:
            for r0 in range(0, n, 1024):
                h = min(1024, n - r0)
                strip = C.synthetic_strip(rng, bands, h, n, date=date, row0=r0)
                dst.write(strip, window=rasterio.windows.Window(0, r0, n, h))
        part = path.with_suffix(".part.tif")
        rio_copy(tmp, part, driver="COG", compress="DEFLATE", predictor="2", blocksize=512,
                 overviews="NONE", num_threads="ALL_CPUS", bigtiff="IF_SAFER")
        os.replace(part, path)
        tmp.unlink()
    say(f"  written in {time.perf_counter() - t0:.0f} s ({sum(p.stat().st_size for p in paths) / 2**30:.2f} GiB)")
    return paths


def warm_up(bands: int) -> float:
    """Load the compiled kernels of this process (numba cache) on a tiny pair; returns seconds.

    A one-time cost per process (about a second), reported apart from the timed work."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    b = rng.integers(1, 4000, (bands, 64, 64), dtype=np.uint16)
    a = rng.integers(1, 4000, (bands, 64, 64), dtype=np.uint16)
    c = cva(b, a)
    names = C.BANDS10 if bands == 10 else C.BANDS6
    index_deltas(b, a, bands=names, names=("ndvi", "ndbi", "bsi", "mndwi"))
    r = irmad(b, a, max_iter=2)
    irmad_transform(b, a, r, probability=False)
    mad_variates(b, a, r)
    apply_threshold(c, threshold(c, "otsu"), mask=np.isfinite(c))
    return time.perf_counter() - t0


def e2e_worker(before_path: str, after_path: str, mode: str, out_path: str, strip_rows: int) -> dict:
    """Child process: decode only, or the whole blockwise detection. Prints one JSON line."""
    import rasterio
    from concurrent.futures import ThreadPoolExecutor

    t_warm = warm_up(10) if mode != "decode" else 0.0
    with rasterio.Env(GDAL_CACHEMAX=128, GDAL_NUM_THREADS="ALL_CPUS"):
        src_b = rasterio.open(before_path, NUM_THREADS="ALL_CPUS")
        src_a = rasterio.open(after_path, NUM_THREADS="ALL_CPUS")
        H, W, B = src_b.height, src_b.width, src_b.count
        bands = C.BANDS10 if B == 10 else C.BANDS6
        strips = [(r0, min(strip_rows, H - r0)) for r0 in range(0, H, strip_rows)]

        def read(k):
            r0, h = strips[k]
            win = rasterio.windows.Window(0, r0, W, h)
            return src_b.read(window=win), src_a.read(window=win)

        t0 = time.perf_counter()
        if mode == "decode":
            npx = 0
            for k in range(len(strips)):
                b, a = read(k)
                npx += b.shape[1] * b.shape[2]
            res = {"mode": mode, "time_s": time.perf_counter() - t0, "pixels": npx}
        else:
            # statistics: IR-MAD and the CVA threshold from 24 random 256x256 windows
            rng = np.random.default_rng(0)
            win = 256
            picks = rng.choice((H // win) * (W // win), size=min(24, (H // win) * (W // win)), replace=False)
            sb, sa = [], []
            for p in picks:
                r, c = divmod(int(p), W // win)
                w_ = rasterio.windows.Window(c * win, r * win, win, win)
                sb.append(src_b.read(window=w_))
                sa.append(src_a.read(window=w_))
            sb = np.concatenate(sb, axis=2)
            sa = np.concatenate(sa, axis=2)
            stats = irmad(sb, sa, max_iter=30, tol=1e-4, sample=1 << 18)
            t_cva = threshold(cva(sb, sa), "otsu")
            t_chi = chi2_threshold(dof=B, alpha=0.01)
            t_stats = time.perf_counter() - t0
            profile = dict(driver="GTiff", width=W, height=H, count=1, dtype="uint8", crs=src_b.crs,
                           transform=src_b.transform, tiled=True, blockxsize=512, blockysize=512,
                           compress="DEFLATE", nodata=255)
            n_change = 0
            tmp_out = out_path + ".part"
            with rasterio.open(tmp_out, "w", **profile) as dst, ThreadPoolExecutor(1) as ex:
                fut = ex.submit(read, 0)
                for k, (r0, h) in enumerate(strips):
                    b, a = fut.result()
                    if k + 1 < len(strips):
                        fut = ex.submit(read, k + 1)
                    c = cva(b, a)
                    deltas = index_deltas(b, a, bands=bands, names=("ndvi", "ndbi", "bsi", "mndwi"))
                    chi2, _ = irmad_transform(b, a, stats, probability=False)
                    valid = np.isfinite(c)
                    cls = apply_threshold(c, t_cva, mask=valid).view(np.uint8)
                    cls |= apply_threshold(chi2, t_chi).view(np.uint8) << 1
                    cls |= (deltas["ndbi"] > 0.1).view(np.uint8) << 2
                    cls[~valid] = 255
                    n_change += int(np.count_nonzero(cls[valid]))
                    dst.write(cls, 1, window=rasterio.windows.Window(0, r0, W, h))
            os.replace(tmp_out, out_path)
            res = {
                "mode": mode,
                "time_s": time.perf_counter() - t0,
                "stats_s": t_stats,
                "pixels": H * W,
                "changed_pixels": n_change,
                "irmad_rho": stats.rho.tolist(),
                "irmad_iterations": stats.iterations,
                "warm_up_s": t_warm,
            }
        src_b.close()
        src_a.close()
    res["peak_rss"] = C.peak_rss_self()
    print("RESULT " + json.dumps(res), flush=True)
    return res


def bench_e2e(n: int, bands: int, folder: Path, strip_rows: int) -> dict:
    say(f"\n== 3. end to end: {n}x{n} {bands}-band uint16 tile pair from local COGs, blockwise "
        f"({strip_rows}-row strips; CVA + 4 index deltas + IR-MAD from 24 windows + masks -> uint8 COG strips) ==")
    bp, ap = write_tile_cogs(n, bands, folder)
    res = {}
    for mode in ("decode", "detect"):
        args = [sys.executable, __file__, "--e2e-worker", str(bp), str(ap), mode,
                str(folder / "e2e_change.tif"), str(strip_rows)]
        wall, rss, rc, out = C.run_child_peak(args)
        if rc != 0:
            raise RuntimeError(f"e2e worker ({mode}) failed:\n{out[-3000:]}")
        line = [ln for ln in out.splitlines() if ln.startswith("RESULT ")][-1]
        r = json.loads(line[len("RESULT "):])
        r["process_wall_s"] = wall
        r["peak_rss_sampled"] = rss
        res[mode] = r
        say(f"  {mode:<7} {r['time_s']:8.2f} s   peak RSS {C.fmt_bytes(max(rss, r['peak_rss']))}")
    ratio = res["detect"]["time_s"] / res["decode"]["time_s"]
    peak = max(res["detect"]["peak_rss"], res["detect"]["peak_rss_sampled"])
    mpx = res["detect"]["pixels"] / 1e6
    say(f"  detect / decode time: {ratio:.2f} [{mark(ratio <= TARGET_E2E_DECODE_RATIO)}] (target <= {TARGET_E2E_DECODE_RATIO})"
        f"; peak RSS {C.fmt_bytes(peak)} [{mark(peak <= TARGET_E2E_RSS)}] (target <= 3 GiB)"
        f"; {1e3 * res['detect']['time_s'] / mpx:.2f} ms/Mpx; statistics phase {res['detect']['stats_s']:.2f} s"
        f" (kernel load before timing: {res['detect']['warm_up_s']:.2f} s)")
    res["ratio"] = ratio
    res["peak_rss"] = peak
    return res


# ------------------------------------------------------------------------------------------------
# 4. Orfeo ToolBox


OTB_APP = "otbcli_MultivariateAlterationDetector"


def ensure_otb() -> str | None:
    """Return None if the OTB app is available (installing otb-bin if needed), else why not."""
    if shutil.which(OTB_APP):
        return None
    if shutil.which("apt-get") is None:
        return "apt-get not found (not a Debian system); install Orfeo ToolBox by hand to run this section"
    if os.geteuid() != 0:
        return "otb-bin is not installed and this user is not root: run `sudo apt-get install -y otb-bin`"
    say("  installing Debian otb-bin with apt-get (once) ...")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "otb-bin"]):
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if p.returncode != 0:
            return f"`{' '.join(cmd)}` failed ({p.returncode}): {(p.stderr or p.stdout).strip()[-500:]}"
    if shutil.which(OTB_APP) is None:
        return f"otb-bin installed but {OTB_APP} is not on PATH"
    return None


def mad_worker(before_path: str, after_path: str, out_path: str) -> None:
    """Child process: our plain MAD (IR-MAD with one iteration) file to file, like the OTB app."""
    import rasterio

    t_warm = warm_up(6)
    t0 = time.perf_counter()
    with rasterio.open(before_path) as s:
        b = s.read()
        profile = s.profile
    with rasterio.open(after_path) as s:
        a = s.read()
    r = irmad(b, a, max_iter=1)
    mad = mad_variates(b, a, r)
    profile.update(dtype="float32", nodata=None, compress="NONE")
    tmp = out_path + ".part"
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(mad)
    os.replace(tmp, out_path)
    print("RESULT " + json.dumps({"time_s": time.perf_counter() - t0, "rho": r.rho.tolist(), "warm_up_s": t_warm,
                                  "peak_rss": C.peak_rss_self()}), flush=True)


def bench_otb(n: int, folder: Path) -> dict:
    say(f"\n== 4. Orfeo ToolBox plain MAD vs ours on a {n}x{n} 6-band uint16 pair (tiled GeoTIFF in, float32 out) ==")
    why = ensure_otb()
    if why:
        say(f"  skipped: {why}")
        return {"skipped": why}
    import rasterio
    from rasterio.transform import from_origin

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"otb_{n}_before.tif", folder / f"otb_{n}_after.tif"]
    if not all(p.exists() for p in paths):
        b, a = C.synthetic_pair(6, n, n, seed=3)
        b[b == 0] = 1  # OTB has no no-data handling: keep every pixel valid for a like-for-like comparison
        a[a == 0] = 1
        prof = dict(driver="GTiff", width=n, height=n, count=6, dtype="uint16", crs="EPSG:32633",
                    transform=from_origin(600000, 3500040, 10, 10), tiled=True, blockxsize=512, blockysize=512)
        for p, x in zip(paths, (b, a)):
            with rasterio.open(p, "w", **prof) as dst:
                dst.write(x)
    wall_otb, rss_otb, rc, out = C.run_child_peak(
        [OTB_APP, "-in1", str(paths[0]), "-in2", str(paths[1]), "-out", str(folder / "otb_mad.tif"), "-ram", "1024"]
    )
    if rc != 0:
        say(f"  OTB failed ({rc}): {out[-500:]}")
        return {"skipped": f"OTB exited {rc}"}
    m = re.search(r"Rho:\s*([-0-9.eE+ ]+)", out)
    rho_otb = np.sort(np.array([float(x) for x in m.group(1).split()]))[::-1] if m else None
    wall_ours, rss_ours, rc, out2 = C.run_child_peak(
        [sys.executable, __file__, "--mad-worker", str(paths[0]), str(paths[1]), str(folder / "ours_mad.tif")]
    )
    if rc != 0:
        raise RuntimeError(f"our MAD worker failed:\n{out2[-3000:]}")
    ours = json.loads([ln for ln in out2.splitlines() if ln.startswith("RESULT ")][-1][len("RESULT "):])
    rho_ours = np.array(ours["rho"])
    if rho_otb is None:
        say("  could not parse OTB's Rho line; output tail:\n" + out[-800:])
        diff = float("inf")
    else:
        diff = float(np.max(np.abs(rho_otb - rho_ours)))
    say(f"  OTB   {wall_otb:7.2f} s wall, peak RSS {C.fmt_bytes(rss_otb)}, rho {np.array2string(rho_otb, precision=5)}")
    say(f"  ours  {wall_ours:7.2f} s wall (incl. interpreter start and {ours['warm_up_s']:.2f} s kernel load; "
        f"read + MAD + write {ours['time_s']:.2f} s), peak RSS {C.fmt_bytes(rss_ours)}, rho {np.array2string(rho_ours, precision=5)}")
    say(f"  max |rho_otb - rho_ours| = {diff:.2e} [{mark(diff <= 1e-3)}] (target <= 1e-3); "
        f"time ratio OTB/ours = {wall_otb / wall_ours:.2f}")
    return {"otb_s": wall_otb, "ours_s": wall_ours, "otb_rss": rss_otb, "ours_rss": rss_ours,
            "rho_otb": None if rho_otb is None else rho_otb.tolist(), "rho_ours": rho_ours.tolist(), "max_rho_diff": diff}


# ------------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (CI smoke test)")
    ap.add_argument("--otb", dest="otb", action="store_true", default=None, help="run the OTB section (default: full mode only)")
    ap.add_argument("--no-otb", dest="otb", action="store_false", help="skip the OTB section")
    ap.add_argument("--no-e2e", action="store_true", help="skip the end-to-end COG section")
    ap.add_argument("--out", type=Path, default=C.OUT, help="folder for COGs and results (default bench-output/)")
    ap.add_argument("--e2e-worker", nargs=5, help=argparse.SUPPRESS)
    ap.add_argument("--mad-worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    # the memory settings the s2watch program makes at start (pipeline.cli.main): freed image-sized
    # arrays are reused instead of mapped afresh, no transparent-huge-page stalls; numpy's
    # baselines run under the same settings
    from pipeline._alloc import keep_freed_memory, no_hugepage_stalls

    process_settings = {"keep_freed_memory": keep_freed_memory(), "no_hugepage_stalls": no_hugepage_stalls()}
    if args.e2e_worker:
        bp, a_p, mode, outp, rows = args.e2e_worker
        e2e_worker(bp, a_p, mode, outp, int(rows))
        return 0
    if args.mad_worker:
        mad_worker(*args.mad_worker)
        return 0

    quick = args.quick
    run_otb = (not quick) if args.otb is None else args.otb
    info = C.machine_info()
    say(f"s2watch speed benchmark ({'quick' if quick else 'full'}) - {time.strftime('%Y-%m-%d %H:%M:%S')}")
    say("  " + ", ".join(f"{k}={v}" for k, v in info.items()))
    say("  process settings of the s2watch program: " + ", ".join(f"{k}={v}" for k, v in process_settings.items()))
    info["process_settings"] = process_settings
    if info["OPENBLAS_CORETYPE"]:
        say("  note: OPENBLAS_CORETYPE is set; it slows numpy's BLAS (only the numpy IR-MAD baseline uses BLAS)")
    bw = C.copy_bandwidth(128 << 20 if quick else 512 << 20)
    say(f"  memory bandwidth (np.copyto, read + write): {bw / 1e9:.2f} GB/s")

    results = {"mode": "quick" if quick else "full", "machine": info, "copy_bandwidth": bw}
    results["kernels"] = bench_kernels(512 if quick else 4096, bw, repeat=3 if quick else 5)
    results["scaling"] = bench_scaling([128, 256, 512] if quick else [1024, 4096, 10980], repeat=2 if quick else 3)
    if not args.no_e2e:
        results["e2e"] = bench_e2e(512 if quick else 10980, 10, args.out, 128 if quick else 512)
    if run_otb:
        results["otb"] = bench_otb(256 if quick else 4096, args.out)
    bw2 = C.copy_bandwidth(128 << 20 if quick else 512 << 20)
    say(f"\n  memory bandwidth again at the end: {bw2 / 1e9:.2f} GB/s (load average {os.getloadavg()[0]:.1f})")
    results["copy_bandwidth_end"] = bw2
    C.write_json(args.out / ("bench_speed_quick.json" if quick else "bench_speed.json"), results)
    say(f"  results written to {args.out / ('bench_speed_quick.json' if quick else 'bench_speed.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
