"""Pipeline-level benchmarks (issue 8): the whole ``s2watch detect`` command against Orfeo ToolBox's
plain MAD, and a monitoring series of acquisitions.

1. ``s2watch detect`` end to end on an N x N pair (N = 4096: a 41 km square, 1678 km^2; the AOI
   polygon is that square inset by the 200 m processing buffer, 1645 km^2) read from local
   per-band COGs (the six compared bands B02 B03 B04 B08 B11 B12 at 10 m, plus B8A and SCL at 20 m
   because ``s2watch detect`` reads B8A too) through a local STAC catalog built by ``s2watch stac build``,
   timed as a child process (wall time, peak RSS; the median of ``--repeat`` runs, default 5, after an
   untimed warm-up), against ``otbcli_MultivariateAlterationDetector`` (the median of as many runs,
   interleaved with ours round by round) on the same six-band pair (Debian ``otb-bin``; installed on demand by ``ensure_otb``). Target: the whole
   pipeline faster than OTB's MAD alone; canonical correlations of our MAD
   (``pipeline.kernels.irmad`` with one iteration = plain MAD) equal to OTB's to 1e-3.
2. Monitoring: ``run_monitor`` with the simulated source over a 10 x 10 km user AOI, ``since`` /
   ``until`` chosen so that exactly 100 acquisitions are new, reference the 180 days before.
   Time per acquisition (wall and CPU), peak RSS, and the rerun time with nothing new.

3. Scale: ``s2watch detect`` on synthetic per-band COG pairs of 1024^2, 4096^2 and a whole
   10980^2 tile (written band by band), timed as a child process (wall time, peak RSS) against a
   child that merely decodes the same COGs with two threads. Grids above 40 Mpx run tile by tile
   (``pipeline.tiled``). Targets: peak <= 3 GiB, detect <= 3 x decode, ms/Mpx within 30 %.

Usage::

    .venv/bin/python benchmarks/bench_pipeline.py            # full: ~3 min detect, ~3 min monitoring, ~10 min scale
    .venv/bin/python benchmarks/bench_pipeline.py --only detect --acquisitions 20  # one section / fewer
    .venv/bin/python benchmarks/bench_pipeline.py --quick    # 512 px pair; 5 acquisitions on 3 km, 60-day reference

Heavy child processes run under ``nice -n 15``. Results go to
``bench-output/bench_pipeline[_quick][_detect|_monitor].json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
from bench_speed import OTB_APP, ensure_otb, mark, say  # noqa: E402

NICE = ["nice", "-n", "15"]
S2WATCH = str(Path(sys.executable).with_name("s2watch"))
EPSG = 32633
X0, Y1 = 460000.0, 3470000.0  # upper-left corner of the COG grid (UTM 33N, central Libya)
BEFORE = ("20240105T093041", "2024-01-01/2024-01-31")
AFTER = ("20240713T093041", "2024-07-01/2024-07-31")
TILE = "T33RVJ"
TARGET_RHO = 1e-3

# surface spectra, reflectance x 1e4, for B02 B03 B04 B08 B11 B12 (the compared six bands) and B8A
# (``s2watch detect`` also reads B8A: pipeline.detect.DEFAULT_BANDS; written at 20 m like SCL)
BANDS7 = C.BANDS6 + ("B8A",)
SOIL = np.array([1250, 1650, 2050, 2600, 3400, 2950, 2700], np.float32)
VEG = np.array([380, 700, 420, 3300, 1900, 900, 3400], np.float32)
WATER = np.array([700, 600, 350, 200, 90, 60, 150], np.float32)
CONCRETE = np.array([2300, 2450, 2550, 2700, 2900, 2700, 2750], np.float32)
ASPHALT = np.array([650, 700, 750, 850, 950, 900, 880], np.float32)


# ------------------------------------------------------------------------------------------------
# 1. synthetic pair, COGs, catalog, AOI


def _field(rng, n: int, cells: int) -> np.ndarray:
    """(n, n) float32 smooth random field in [0, 1]: a ``cells`` x ``cells`` random grid
    interpolated bilinearly."""
    from scipy.ndimage import zoom

    g = rng.random((cells + 1, cells + 1)).astype(np.float32)
    f = zoom(g, n / cells, order=1, prefilter=False, grid_mode=False)[:n, :n]
    return np.ascontiguousarray(f, np.float32)


def _parcels(rng, n: int, size: int) -> np.ndarray:
    """(n, n) float32 in [0, 1], piecewise constant over cells of ``size`` px (parcel edges)."""
    k = -(-n // size)
    g = rng.random((k, k)).astype(np.float32)
    return np.repeat(np.repeat(g, size, axis=0), size, axis=1)[:n, :n]


def synthetic_scene_pair(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    """A realistic-looking (7, n, n) uint16 DN pair (bands :data:`BANDS7`; every pixel valid).

    DN carry the +1000 offset of processing baseline >= 04.00. Surface: soil with multi-scale brightness texture, vegetated patches, a few water bodies; the
    after date has a per-band affine radiometric difference (gain 0.92..1.12, offset -60..+150 DN),
    independent sensor noise (sigma 35 DN) on both dates, and planted changed rectangles (new
    concrete / asphalt / water) covering ~1.5 % of the area.
    Returns (before, after, vegetation mask (n, n) bool, changed rectangles [(r0, c0, h, w)]).
    """
    rng = np.random.default_rng(seed)
    brightness = 0.45 * _field(rng, n, max(2, n // 512)) + 0.35 * _field(rng, n, max(2, n // 64)) + 0.2 * _field(rng, n, max(2, n // 8))
    veg = np.clip((_field(rng, n, max(2, n // 256)) * 0.7 + _field(rng, n, max(2, n // 32)) * 0.3 - 0.55) * 6, 0, 1)
    water = _field(rng, n, max(2, n // 1024)) > 0.93
    brightness = brightness * (0.8 + 0.4 * _parcels(rng, n, 40))  # field parcels: sharp edges
    soil = SOIL[:, None, None] * (0.65 + 0.7 * brightness)[None]
    scene = soil * (1 - veg)[None] + VEG[:, None, None] * veg[None]
    scene[:, water] = WATER[:, None]
    del soil
    for _ in range(max(2, n // 256)):  # roads, 2 px wide, on both dates
        if rng.random() < 0.5:
            r = int(rng.integers(0, n - 2))
            scene[:, r : r + 2, :] = ASPHALT[:, None, None]
        else:
            c = int(rng.integers(0, n - 2))
            scene[:, :, c : c + 2] = ASPHALT[:, None, None]
    before = scene + rng.normal(0, 35, scene.shape).astype(np.float32)
    gain = np.linspace(0.92, 1.12, 7, dtype=np.float32)[:, None, None]
    offset = np.linspace(-60, 150, 7, dtype=np.float32)[:, None, None]
    after = scene * gain + offset
    rects = []
    kinds = (CONCRETE, ASPHALT, WATER)
    n_rect = max(4, int(0.015 * n * n / (60 * 90)))
    margin = 24  # outside the AOI polygon's 200 m buffer ring, where outputs are no data
    for k in range(n_rect):
        h, w = int(rng.integers(20, 100)), int(rng.integers(30, 150))
        r0, c0 = int(rng.integers(margin, n - h - margin)), int(rng.integers(margin, n - w - margin))
        patch = np.broadcast_to(kinds[k % 3][:, None, None], (7, h, w))
        after[:, r0 : r0 + h, c0 : c0 + w] = patch * gain + offset
        rects.append((r0, c0, h, w))
    after += rng.normal(0, 35, after.shape).astype(np.float32)
    # processing baseline 05.10 (in the file names): DN = reflectance x 1e4 + 1000
    b = np.clip(before + 1000, 1001, 65535).astype(np.uint16)
    a = np.clip(after + 1000, 1001, 65535).astype(np.uint16)
    return b, a, veg > 0.5, rects


def _write_cog(path: Path, data: np.ndarray, res: float) -> None:
    import rasterio
    from rasterio.shutil import copy as rio_copy
    from rasterio.transform import from_origin

    h, w = data.shape
    tmp = path.with_suffix(".tmp.tif")
    with rasterio.open(tmp, "w", driver="GTiff", width=w, height=h, count=1, dtype=data.dtype, crs=f"EPSG:{EPSG}",
                       transform=from_origin(X0, Y1, res, res), tiled=True, blockxsize=512, blockysize=512) as dst:
        dst.write(data, 1)
    part = path.with_suffix(".part.tif")
    rio_copy(tmp, part, driver="COG", compress="DEFLATE", predictor="2", blocksize=512, overviews="NONE", num_threads="ALL_CPUS")
    os.replace(part, path)
    tmp.unlink()


def write_scenes(folder: Path, before: np.ndarray, after: np.ndarray, veg: np.ndarray) -> Path:
    """Per-band COGs of both dates in per-scene folders: :data:`BANDS7` (B8A 2x2-averaged to 20 m)
    and a 20 m SCL (4 vegetation, 5 bare)."""
    scenes = folder / "scenes"
    if scenes.exists():
        shutil.rmtree(scenes)
    scl = np.where(veg[::2, ::2], 4, 5).astype(np.uint8)
    for (stamp, _), img in ((BEFORE, before), (AFTER, after)):
        name = f"S2A_MSIL2A_{stamp}_N0510_R036_{TILE}_{stamp[:8]}T120000"
        d = scenes / name
        d.mkdir(parents=True)
        for k, band in enumerate(BANDS7):
            if band == "B8A":
                h2, w2 = img.shape[1] // 2, img.shape[2] // 2
                b8a = img[k, : 2 * h2, : 2 * w2].reshape(h2, 2, w2, 2).mean(axis=(1, 3), dtype=np.float32)
                _write_cog(d / f"{name}_{band}.tif", np.round(b8a).astype(np.uint16), 20.0)
            else:
                _write_cog(d / f"{name}_{band}.tif", img[k], 10.0)
        _write_cog(d / f"{name}_SCL.tif", scl, 20.0)
    return scenes


def write_stack(path: Path, img: np.ndarray, *, compress: str | None = None) -> None:
    """A 6-band tiled GeoTIFF (OTB reads one multi-band image per date); ``compress="DEFLATE"``
    encodes it as our input COGs are (DEFLATE, horizontal predictor, 512 px tiles)."""
    import rasterio
    from rasterio.transform import from_origin

    B, h, w = img.shape
    part = path.with_suffix(".part.tif")
    opts = {"compress": compress, "predictor": 2} if compress else {}
    with rasterio.open(part, "w", driver="GTiff", width=w, height=h, count=B, dtype=img.dtype, crs=f"EPSG:{EPSG}",
                       transform=from_origin(X0, Y1, 10, 10), tiled=True, blockxsize=512, blockysize=512, **opts) as dst:
        dst.write(img)
    os.replace(part, path)


def write_grid_aoi(path: Path, n: int, aoi_id: str) -> dict:
    """A GeoJSON polygon whose processing grid (polygon + 200 m buffer, snapped to 10 m) is exactly
    the n x n COG grid: the UTM square inset by 200 m + 1 m, densified, in lon/lat."""
    import shapely
    from shapely.geometry import box, mapping

    from pipeline.aoi import DEFAULT_BUFFER_M, load_aoi
    from pipeline.grid import reproject_geometry

    inset = DEFAULT_BUFFER_M + 1.0
    sq = box(X0 + inset, Y1 - 10 * n + inset, X0 + 10 * n - inset, Y1 - inset)
    ll = reproject_geometry(shapely.segmentize(sq, 500.0), EPSG, 4326)
    doc = {"type": "FeatureCollection", "features": [{"type": "Feature",
           "properties": {"role": "aoi", "id": aoi_id, "name": f"bench {n}x{n} grid"}, "geometry": mapping(ll)}]}
    _write_text(path, json.dumps(doc))
    aoi = load_aoi(path, max_area_km2=13000.0)
    g = aoi.grid()
    want = (X0, Y1 - 10 * n, X0 + 10 * n, Y1)
    if g.epsg != EPSG or g.shape != (n, n) or not np.allclose(g.bounds, want, atol=1e-6):
        raise RuntimeError(f"AOI grid {g} does not coincide with the COG grid {want} (EPSG:{EPSG}, {n}x{n})")
    return {"area_km2": aoi.area_km2, "grid_shape": list(g.shape)}


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def planted_hits(change_class: Path, rects: list) -> dict:
    """How many planted rectangles have >= half their pixels flagged (class > 0) in the change-class
    COG, and the flagged fraction of valid pixels outside every rectangle."""
    import rasterio

    with rasterio.open(change_class) as src:
        cls = src.read(1)
        nodata = src.nodata
    valid = cls != nodata if nodata is not None else np.ones(cls.shape, bool)
    flagged = (cls > 0) & valid
    inside = np.zeros(cls.shape, bool)
    found = 0
    for r0, c0, h, w in rects:
        inside[r0 : r0 + h, c0 : c0 + w] = True
        found += int(flagged[r0 : r0 + h, c0 : c0 + w].mean() >= 0.5)
    out = valid & ~inside
    return {"found": found, "false_frac": float(flagged[out].mean()) if out.any() else 0.0}


def _check(cmd: list[str], what: str) -> tuple[float, int, str]:
    wall, rss, rc, out = C.run_child_peak(cmd)
    if rc != 0:
        raise RuntimeError(f"{what} failed (exit {rc}): {' '.join(cmd)}\n{out[-4000:]}")
    return wall, rss, out


def bench_detect(n: int, folder: Path, run_otb: bool, repeat: int = 3) -> dict:
    say(f"\n== 1. s2watch detect end to end vs OTB MAD on a {n}x{n} pair (local per-band COGs; MAD compared on 6 bands) ==")
    from pipeline.kernels import irmad

    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    before, after, veg, rects = synthetic_scene_pair(n, seed=7)
    scenes = write_scenes(folder, before, after, veg)
    say(f"  synthesised and wrote 2 x 7 band COGs (B02 B03 B04 B08 B11 B12 at 10 m, B8A at 20 m) + SCL ({len(rects)} changed rectangles) in {time.perf_counter() - t0:.1f} s")
    catalog = folder / "catalog"
    if catalog.exists():
        shutil.rmtree(catalog)
    _check([S2WATCH, "stac", "build", str(scenes), "--out", str(catalog)], "s2watch stac build")
    aoi_path = folder / f"aoi_{n}.geojson"
    aoi_info = write_grid_aoi(aoi_path, n, f"bench-grid-{n}")
    say(f"  AOI {aoi_path} ({aoi_info['area_km2']:.0f} km^2 polygon, grid {aoi_info['grid_shape']} = the COG grid)")
    out_dir = folder / "detect-out"
    if out_dir.exists():
        shutil.rmtree(out_dir)
    cmd = NICE + [S2WATCH, "detect", str(aoi_path), "--source", str(catalog), "--before", BEFORE[1],
                  "--after", AFTER[1], "--out", str(out_dir)]
    # one untimed run first: numba compiles the kernels once per install (cached on disk), and
    # every later run, like OTB's, reads COGs the operating system has cached
    warm = [*cmd[:-1], str(folder / "detect-warm-up")]
    wall_w, _, _, _ = C.run_child_peak(warm)
    shutil.rmtree(folder / "detect-warm-up", ignore_errors=True)
    say(f"  warm-up run (untimed; includes compiling the kernels when the numba cache is cold): {wall_w:.1f} s")
    say("  $ " + " ".join(cmd))
    res: dict = {"n": n, "detect_cmd": cmd, "aoi": aoi_info, "rects": rects, "detect_out": str(out_dir)}
    before, after = before[:6], after[:6]  # the six bands compared with OTB
    t0 = time.perf_counter()
    r = irmad(before, after, max_iter=1)
    rho_ours = np.sort(np.asarray(r.rho, np.float64))[::-1]
    res["rho_ours"] = rho_ours.tolist()
    res["our_mad_in_process_s"] = time.perf_counter() - t0
    why = "--no-otb" if not run_otb else ensure_otb()
    cmd_otb = cmd_otb_z = None
    if why:
        say(f"  OTB comparison skipped: {why}")
        res["otb_skipped"] = why
    else:
        stacks = [folder / f"otb_in_{n}_before.tif", folder / f"otb_in_{n}_after.tif"]
        packed = [folder / f"otb_in_{n}_before_deflate.tif", folder / f"otb_in_{n}_after_deflate.tif"]
        for p, q, img in zip(stacks, packed, (before, after)):
            write_stack(p, img)
            write_stack(q, img, compress="DEFLATE")
        cmd_otb = NICE + [OTB_APP, "-in1", str(stacks[0]), "-in2", str(stacks[1]), "-out", str(folder / "otb_mad_out.tif"), "-ram", "1024"]
        # the same pair encoded as our inputs are: OTB then decodes DEFLATE too
        cmd_otb_z = NICE + [OTB_APP, "-in1", str(packed[0]), "-in2", str(packed[1]), "-out", str(folder / "otb_mad_out.tif"), "-ram", "1024"]
    del before, after
    # the runs interleave, round by round (ours, OTB, OTB on DEFLATE; reversed every other round),
    # so that the drift of a shared VM's speed, which moves single wall times by 20-30 % over a
    # minute, falls on both sides alike; the medians are compared
    walls_d, walls_o, walls_z, rss_d, rss_o, out_o = [], [], [], 0, 0, ""
    rc, out = 0, ""
    for i in range(repeat):
        order = ["ours", "otb", "otb_z"] if cmd_otb else ["ours"]
        for which in (order if i % 2 == 0 else order[::-1]):
            if which == "ours":
                if out_dir.exists():
                    shutil.rmtree(out_dir)
                wall_d, rss, rc, out = C.run_child_peak(cmd)
                if rc != 0:
                    break
                walls_d.append(wall_d)
                rss_d = max(rss_d, rss)
            elif which == "otb":
                wall_o, rss, out_o = _check(cmd_otb, "OTB MAD")
                walls_o.append(wall_o)
                rss_o = max(rss_o, rss)
            else:
                walls_z.append(_check(cmd_otb_z, "OTB MAD (DEFLATE inputs)")[0])
        if rc != 0:
            break
    if rc != 0:
        say(f"  s2watch detect FAILED (exit {rc}):\n{out[-3000:]}")
        res["detect_error"] = f"exit {rc}: {out[-3000:]}"
        return res
    manifest = json.loads((out_dir / "manifest.json").read_text())
    timings = manifest.get("timings", {})
    objs = manifest.get("objects") or {}
    hit = planted_hits(out_dir / "change_class.tif", rects)
    wall_d = float(np.median(walls_d))
    res.update(detect_s=wall_d, detect_runs_s=walls_d, detect_rss=rss_d, timings=timings, objects=objs, planted_detected=hit)
    by_class = {k: v for k, v in (objs.get("by_class") or {}).items() if v}
    runs = ", ".join(f"{w:.2f}" for w in walls_d)
    say(f"  s2watch detect: {wall_d:.2f} s wall (median of {len(walls_d)} runs: {runs}), peak RSS {C.fmt_bytes(rss_d)}; {objs.get('count')} objects {by_class}; "
        f"planted rectangles with >= half their pixels flagged: {hit['found']}/{len(rects)}, "
        f"flagged outside them: {100 * hit['false_frac']:.2f} % of valid pixels")
    if not cmd_otb:
        return res
    wall_o = float(np.median(walls_o))
    res["otb_runs_s"] = walls_o
    m = re.search(r"Rho:\s*([-0-9.eE+ ]+)", out_o)
    if not m:
        say("  could not parse OTB's Rho line; output tail:\n" + out_o[-800:])
        res.update(otb_s=wall_o, otb_rss=rss_o, max_rho_diff=None)
        return res
    rho_otb = np.sort(np.array([float(x) for x in m.group(1).split()]))[::-1]
    diff = float(np.max(np.abs(rho_otb - rho_ours)))
    ratio = wall_o / wall_d
    res.update(otb_s=wall_o, otb_rss=rss_o, rho_otb=rho_otb.tolist(), max_rho_diff=diff, otb_over_detect=ratio,
               faster=wall_d < wall_o, rho_ok=diff <= TARGET_RHO)
    say(f"  OTB MAD alone : {wall_o:.2f} s wall (median of {len(walls_o)} runs: {', '.join(f'{w:.2f}' for w in walls_o)}), "
        f"peak RSS {C.fmt_bytes(rss_o)} (reads uncompressed 6-band GeoTIFFs)")
    say(f"  ratio OTB / s2watch detect = {ratio:.2f} [{mark(wall_d < wall_o)}] (target > 1: whole pipeline faster than OTB's MAD alone)")
    wall_z = float(np.median(walls_z))
    res.update(otb_deflate_s=wall_z, otb_deflate_runs_s=walls_z, otb_deflate_over_detect=wall_z / wall_d)
    say(f"  OTB MAD alone on the pair as DEFLATE tiled GeoTIFFs (as our inputs are encoded): {wall_z:.2f} s "
        f"(median of {len(walls_z)} runs: {', '.join(f'{w:.2f}' for w in walls_z)}); ratio OTB / s2watch detect = {wall_z / wall_d:.2f}")
    say(f"  rho OTB  {np.array2string(rho_otb, precision=6)}")
    say(f"  rho ours {np.array2string(rho_ours, precision=6)} (pipeline.kernels.irmad, max_iter=1)")
    say(f"  max |rho difference| = {diff:.2e} [{mark(diff <= TARGET_RHO)}] (target <= {TARGET_RHO:g})")
    if wall_d >= wall_o:
        say("  s2watch detect is SLOWER than OTB's MAD alone. Where the time goes (manifest.json timings, s):")
    else:
        say("  where the detect time goes (manifest.json timings, s):")
    for k, v in sorted(timings.items(), key=lambda kv: -float(kv[1]) if isinstance(kv[1], (int, float)) else 0):
        say(f"    {k:<24} {v}")
    return res


# ------------------------------------------------------------------------------------------------
# 3. scale: s2watch detect from 1k^2 to a whole 10980^2 tile


def write_scenes_banded(folder: Path, n: int, seed: int = 11) -> tuple[Path, list]:
    """Per-band COGs of an n x n pair written one band at a time (a whole tile never sits in memory
    as seven float bands): the same surface model as :func:`synthetic_scene_pair` (soil texture,
    vegetation, water, planted rectangles, per-band gain/offset and 35 DN noise)."""
    rng = np.random.default_rng(seed)
    brightness = 0.45 * _field(rng, n, max(2, n // 512)) + 0.35 * _field(rng, n, max(2, n // 64)) + 0.2 * _field(rng, n, max(2, n // 8))
    brightness *= 0.8 + 0.4 * _parcels(rng, n, 40)
    veg = np.clip((_field(rng, n, max(2, n // 256)) * 0.7 + _field(rng, n, max(2, n // 32)) * 0.3 - 0.55) * 6, 0, 1)
    water = _field(rng, n, max(2, n // 1024)) > 0.93
    road = np.zeros((n, n), bool)  # roads, 2 px wide, on both dates (edges to co-register on)
    for _ in range(max(2, n // 256)):
        if rng.random() < 0.5:
            r = int(rng.integers(0, n - 2))
            road[r : r + 2, :] = True
        else:
            c = int(rng.integers(0, n - 2))
            road[:, c : c + 2] = True
    kinds = (CONCRETE, ASPHALT, WATER)
    rects = []
    n_rect = max(4, int(0.015 * n * n / (60 * 90)))
    for k in range(n_rect):
        h, w = int(rng.integers(20, 100)), int(rng.integers(30, 150))
        rects.append((int(rng.integers(24, n - h - 24)), int(rng.integers(24, n - w - 24)), h, w))
    scenes = folder / "scenes"
    if scenes.exists():
        shutil.rmtree(scenes)
    names = {}
    for stamp, _ in (BEFORE, AFTER):
        names[stamp] = f"S2A_MSIL2A_{stamp}_N0510_R036_{TILE}_{stamp[:8]}T120000"
        (scenes / names[stamp]).mkdir(parents=True)
    gains = np.linspace(0.92, 1.12, 7, dtype=np.float32)
    offsets = np.linspace(-60, 150, 7, dtype=np.float32)
    for k, band in enumerate(BANDS7):
        scene = SOIL[k] * (0.65 + 0.7 * brightness) * (1 - veg) + VEG[k] * veg
        scene[water] = WATER[k]
        scene[road] = ASPHALT[k]
        for (stamp, _), after in ((BEFORE, False), (AFTER, True)):
            img = scene * gains[k] + offsets[k] if after else scene.copy()
            if after:
                for j, (r0, c0, h, w) in enumerate(rects):
                    img[r0 : r0 + h, c0 : c0 + w] = kinds[j % 3][k] * gains[k] + offsets[k]
            img += rng.normal(0, 35, img.shape).astype(np.float32)
            dn = np.clip(img + 1000, 1001, 65535).astype(np.uint16)
            del img
            name = names[stamp]
            if band == "B8A":
                h2 = n // 2
                dn = np.round(dn[: 2 * h2, : 2 * h2].reshape(h2, 2, h2, 2).mean(axis=(1, 3), dtype=np.float32)).astype(np.uint16)
                _write_cog(scenes / name / f"{name}_{band}.tif", dn, 20.0)
            else:
                _write_cog(scenes / name / f"{name}_{band}.tif", dn, 10.0)
            del dn
        del scene
    scl = np.where(veg[::2, ::2] > 0.5, 4, 5).astype(np.uint8)
    for stamp in names.values():
        _write_cog(scenes / stamp / f"{stamp}_SCL.tif", scl, 20.0)
    return scenes, rects


def decode_worker(folder: str) -> None:
    """Child process: decode every COG under ``folder`` once (two threads, like the two cores the
    detection has) and print RESULT {json}."""
    from concurrent.futures import ThreadPoolExecutor

    import rasterio

    files = sorted(Path(folder).rglob("*.tif"))
    t0 = time.perf_counter()

    def read(p):
        with rasterio.open(p) as src:
            return int(src.read(1).sum(dtype=np.uint64) > 0)

    with ThreadPoolExecutor(2) as pool:
        n = sum(pool.map(read, files))
    print("RESULT " + json.dumps({"decode_s": time.perf_counter() - t0, "files": n}), flush=True)


def bench_scale(sizes: list[int], folder: Path) -> dict:
    say(f"\n== 3. s2watch detect from {sizes[0]}^2 to {sizes[-1]}^2 px (local per-band COGs, 7 bands + SCL per date; "
        "grids above 40 Mpx are processed in tiles of pipeline.tiled.TILE_PX) ==")
    rows = []
    for n in sizes:
        sub = folder / f"scale_{n}"
        sub.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        scenes, rects = write_scenes_banded(sub, n)
        catalog = sub / "catalog"
        if catalog.exists():
            shutil.rmtree(catalog)
        _check([S2WATCH, "stac", "build", str(scenes), "--out", str(catalog)], "s2watch stac build")
        aoi_path = sub / f"aoi_{n}.geojson"
        write_grid_aoi(aoi_path, n, f"bench-scale-{n}")
        say(f"  {n}^2: wrote the pair in {time.perf_counter() - t0:.0f} s")
        wall_dec, _, out_dec = _check(NICE + [sys.executable, str(Path(__file__).resolve()), "--decode-worker", str(scenes)], "decode")
        dec = json.loads([ln for ln in out_dec.splitlines() if ln.startswith("RESULT ")][-1][7:])
        out_dir = sub / "detect-out"
        if out_dir.exists():
            shutil.rmtree(out_dir)
        cmd = NICE + [S2WATCH, "detect", str(aoi_path), "--source", str(catalog), "--before", BEFORE[1], "--after", AFTER[1],
                      "--max-area-km2", "13000", "--out", str(out_dir)]
        if n == sizes[0]:  # untimed: compiles the kernels if the numba cache is cold
            _check([*cmd[:-1], str(sub / "warm-up")], "warm-up")
            shutil.rmtree(sub / "warm-up", ignore_errors=True)
        wall, rss, _ = _check(cmd, f"s2watch detect {n}")
        m = json.loads((out_dir / "manifest.json").read_text())
        tiles = (m["parameters"].get("tiling") or {}).get("n_tiles", 1)
        hit = planted_hits(out_dir / "change_class.tif", rects)
        mpx = n * n / 1e6
        row = {"n": n, "mpx": mpx, "detect_s": wall, "peak_rss": rss, "decode_s": dec["decode_s"], "tiles": tiles,
               "s_per_mpx": wall / mpx, "detect_over_decode": wall / dec["decode_s"], "planted": hit, "n_rects": len(rects)}
        rows.append(row)
        say(f"  {n:>6}^2  {wall:8.1f} s  {1e3 * wall / mpx:7.1f} ms/Mpx  peak RSS {C.fmt_bytes(rss)}  tiles {tiles}  "
            f"decode {dec['decode_s']:.1f} s -> detect/decode {wall / dec['decode_s']:.1f}  planted found {hit['found']}/{len(rects)}")
        shutil.rmtree(scenes)  # the COGs of a whole tile pair are ~3 GB
    per = [r["s_per_mpx"] for r in rows]
    spread = max(per) / min(per) - 1
    big = rows[-1]
    say(f"  spread of ms/Mpx: {100 * spread:.0f}% [{mark(spread <= 0.3)}] (target <= 30%); largest: peak RSS "
        f"{C.fmt_bytes(big['peak_rss'])} [{mark(big['peak_rss'] <= 3 * 2**30)}] (target <= 3 GiB), detect/decode "
        f"{big['detect_over_decode']:.1f} [{mark(big['detect_over_decode'] <= 3)}] (target <= 3)")
    return {"rows": rows, "spread": spread}


# ------------------------------------------------------------------------------------------------
# 2. monitoring series


def write_square_aoi(path: Path, lon: float, lat: float, km: float, aoi_id: str) -> None:
    """A km x km square (in the local UTM zone) centred on lon/lat, as GeoJSON."""
    import shapely
    from shapely.geometry import box, mapping

    from pipeline.grid import reproject_geometry, utm_epsg

    epsg = utm_epsg(lon, lat)
    c = reproject_geometry(shapely.Point(lon, lat), 4326, epsg)
    h = km * 500.0
    sq = shapely.segmentize(box(c.x - h, c.y - h, c.x + h, c.y + h), 250.0)
    ll = reproject_geometry(sq, epsg, 4326)
    doc = {"type": "FeatureCollection", "features": [{"type": "Feature",
           "properties": {"role": "aoi", "id": aoi_id, "name": f"bench {km:g} km square"}, "geometry": mapping(ll)}]}
    _write_text(path, json.dumps(doc))


def choose_period(aoi_path: Path, n_acq: int, since: date) -> tuple[date, date, int]:
    """``until`` such that the simulated source has exactly ``n_acq`` acquisitions in [since, until]."""
    from pipeline.aoi import load_aoi
    from pipeline.sources import get_source

    src = get_source("simulated")
    aoi = load_aoi(aoi_path)
    acqs = src.search(aoi, since, since + timedelta(days=10 * n_acq + 60))
    days = sorted({a.time.date() for a in acqs})
    if len(days) < n_acq:
        raise RuntimeError(f"simulated source has only {len(days)} acquisitions after {since}")
    return since, days[n_acq - 1], n_acq


def monitor_worker(args_json: str) -> None:
    """Child process: one ``run_monitor`` call; prints RESULT {json}."""
    from pipeline.config import load_config
    from pipeline.runs.monitor import run_monitor

    a = json.loads(args_json)
    cfg = load_config(env={}, overrides={
        "output_root": a["root"], "source": "simulated", "since": a["since"], "until": a["until"],
        "reference_days": a["reference_days"], "executor": "serial"})
    t0, c0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    summary = run_monitor([a["aoi"]], cfg)
    c1 = resource.getrusage(resource.RUSAGE_SELF)
    o = summary.outcomes[0]
    print("RESULT " + json.dumps({
        "wall_s": time.perf_counter() - t0, "cpu_s": (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime),
        "status": o.status, "n_new": o.n_new, "n_used": o.n_used, "n_skipped": o.n_skipped, "error": o.error,
        "open_counts": o.open_counts, "peak_rss": C.peak_rss_self()}), flush=True)


def _run_monitor_child(payload: dict) -> tuple[float, int, dict]:
    cmd = NICE + [sys.executable, str(Path(__file__).resolve()), "--monitor-worker", json.dumps(payload)]
    wall, rss, out = _check(cmd, "monitor worker")
    lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    if not lines:
        raise RuntimeError(f"monitor worker printed no RESULT:\n{out[-3000:]}")
    return wall, rss, json.loads(lines[-1][len("RESULT "):])


def bench_monitor(n_acq: int, km: float, folder: Path, ref_days: int = 180) -> dict:
    say(f"\n== 2. monitoring: {n_acq} new acquisitions over a {km:g} x {km:g} km AOI (simulated source) ==")
    folder.mkdir(parents=True, exist_ok=True)
    aoi_path = folder / f"monitor_aoi_{km:g}km.geojson"
    write_square_aoi(aoi_path, 16.0, 29.1, km, f"bench-monitor-{km:g}km")
    from pipeline.aoi import load_aoi

    aoi = load_aoi(aoi_path)
    shape = aoi.grid().shape
    since, until, _ = choose_period(aoi_path, n_acq, date(2023, 3, 1))
    ref = (since - timedelta(days=ref_days), since - timedelta(days=1))
    say(f"  AOI {aoi_path}: {aoi.area_km2:.1f} km^2, processing grid {shape[0]}x{shape[1]} px (AOI + 200 m buffer)")
    say(f"  since {since} until {until} ({(until - since).days + 1} days), reference {ref[0]}/{ref[1]}")
    root = folder / f"monitor-root-{km:g}km"
    if root.exists():
        shutil.rmtree(root)
    payload = {"root": str(root), "since": since.isoformat(), "until": until.isoformat(), "aoi": str(aoi_path),
               "reference_days": ref_days}
    wall1, rss1, r1 = _run_monitor_child(payload)
    if r1["status"] == "failed":
        raise RuntimeError(f"monitoring run failed: {r1['error']}")
    wall2, rss2, r2 = _run_monitor_child(payload)
    n = max(r1["n_new"], 1)
    say(f"  first run : {r1['wall_s']:.1f} s in run_monitor ({wall1:.1f} s process), status {r1['status']}, "
        f"{r1['n_new']} new ({r1['n_used']} used, {r1['n_skipped']} skipped), objects {r1['open_counts']}")
    say(f"  per acquisition: {r1['wall_s'] / n:.3f} s wall, {r1['cpu_s'] / n:.3f} s CPU; peak RSS {C.fmt_bytes(rss1)}")
    say(f"  rerun with nothing new: {r2['wall_s']:.2f} s in run_monitor ({wall2:.2f} s process incl. interpreter start), "
        f"status {r2['status']}, {r2['n_new']} new")
    ok_n = r1["n_new"] == n_acq
    say(f"  new acquisitions = {r1['n_new']} [{mark(ok_n)}] (wanted {n_acq}); rerun new = {r2['n_new']} [{mark(r2['n_new'] == 0)}]")
    return {"n_acq": n_acq, "km": km, "grid_shape": list(shape), "since": since.isoformat(), "until": until.isoformat(),
            "reference": [ref[0].isoformat(), ref[1].isoformat()], "first": r1, "first_process_s": wall1, "first_rss": rss1,
            "rerun": r2, "rerun_process_s": wall2, "rerun_rss": rss2,
            "per_acq_wall_s": r1["wall_s"] / n, "per_acq_cpu_s": r1["cpu_s"] / n}


# ------------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    ap.add_argument("--no-otb", action="store_true", help="skip the OTB comparison")
    ap.add_argument("--only", choices=("detect", "monitor", "scale"), help="run one section")
    ap.add_argument("--repeat", type=int, default=5, help="detect vs OTB: timed rounds (ours, then OTB, interleaved), the medians are compared")
    ap.add_argument("--acquisitions", type=int, help="monitoring: new acquisitions (default 100, quick 5)")
    ap.add_argument("--out", type=Path, default=C.OUT, help="output folder (default bench-output/)")
    ap.add_argument("--monitor-worker", help=argparse.SUPPRESS)
    ap.add_argument("--decode-worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.monitor_worker:
        monitor_worker(args.monitor_worker)
        return 0
    if args.decode_worker:
        decode_worker(args.decode_worker)
        return 0
    quick = args.quick
    folder = args.out / ("pipeline_quick" if quick else "pipeline")
    say(f"s2watch pipeline benchmark ({'quick' if quick else 'full'}) - {time.strftime('%Y-%m-%d %H:%M:%S')}")
    say("  " + ", ".join(f"{k}={v}" for k, v in C.machine_info().items()))
    results: dict = {"mode": "quick" if quick else "full", "machine": C.machine_info()}
    if args.only in (None, "detect"):
        results["detect"] = bench_detect(512 if quick else 4096, folder, not args.no_otb, 1 if quick else args.repeat)
    if args.only in (None, "monitor"):
        # quick: a 60-day reference keeps the smoke test short; full: the 180 days before
        results["monitor"] = bench_monitor(args.acquisitions or (5 if quick else 100), 3.0 if quick else 10.0, folder,
                                           60 if quick else 180)
    if args.only in (None, "scale"):
        results["scale"] = bench_scale([256, 512] if quick else [1024, 4096, 10980], folder)
    path = args.out / (f"bench_pipeline{'_quick' if quick else ''}{'_' + args.only if args.only else ''}.json")
    C.write_json(path, results)
    say(f"\n  results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
