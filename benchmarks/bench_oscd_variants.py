"""OSCD parameter and method variants, scored like ``bench_accuracy.py`` with leave-one-city-out.

Each city is read once; every variant of a sweep is then run on all cities and scored per city
and pooled, for every object (``all``) and for the non-natural classes only (``nn``: objects not
classed ``vegetation`` or ``water``, the issue's reading). Leave-one-city-out: for each city the
variant best on the other four (pooled counts) is picked and scored on the held-out city; the
held-out counts are pooled. Run::

    .venv/bin/python benchmarks/bench_oscd_variants.py closing water k siroc tolerant sam landscaping area [--oscd DIR]

Sweeps: ``closing`` (``DetectParams.closing_radius_px`` 0-4), ``water``
(``ClassifyThresholds.water_swir_dark`` off/on), ``k`` (``robust_k`` 5.5-7 x closing 2, 3),
``siroc`` (SiROC's local-gain residual, Kondmann et al. 2021, as the magnitude: for every band,
the after pixel minus the before pixel times the gain sum(pre x post) / sum(pre^2) over a square
ring of neighbours, |residual| averaged over the bands or z-scored and summed in quadrature,
averaged over 27 (14) mutually exclusive rings up to 200 (100) pixels; thresholds k 5-7),
``tolerant`` (z-scored CVA tolerant to local misregistration: the smallest magnitude over the
before image shifted by up to 1 px, one way or both ways; thresholds k 5-7), ``sam`` (z-scored CVA
and the spectral angle between the dates in robust z units, in quadrature, the angle weighted
0.25-1; thresholds k 6-8), ``landscaping`` (``ObjectParams.landscaping_m``: vegetation growth
within 0-100 m of a non-natural object counted as part of that development, or off), ``area``
(``ObjectParams.min_area_m2`` 1600-3200 m^2 x ``smooth_px`` 1, 1.5), ``opening`` (opening radius
0, 1 x area), ``floor`` (``min_cva`` 0-0.09), ``nochange`` (the normalisation's ``nochange_p`` x
``nochange_min_fraction``), ``connectivity`` (labelling connectivity x ``touch_m``), ``localz``
(band differences z-scored in 101 / 201 px windows, floored at 0.5 / 0.8 x the scene's spread),
``strata`` (the robust threshold per NDVI stratum, 0.3 / 0.5, before or either date) and
``bandweight`` (the default z-scored CVA with per-band weights on the z-differences,
sqrt(sum_b (w_b z_b)^2): the 20 m SWIR bands B11, B12, resampled to 10 m and so spreading a change
over their neighbours and carrying spatially correlated noise, weighted 0.5-1.25, the visible
bands 1; weight 1 reproduces the default; thresholds k 5.5-7; red-edge B05 is not among the bands
read, so no B05 variant).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_accuracy as B  # noqa: E402
from pipeline import detect as D  # noqa: E402
from pipeline.aoi import load_aoi  # noqa: E402
from pipeline.objects.model import CLASS_CODES, NATURAL_CLASSES  # noqa: E402

NATURAL = [CLASS_CODES[c] for c in NATURAL_CLASSES]


def _siroc_magnitude(max_ring: int, n_rings: int, combine: str):
    from scipy import ndimage

    step = max_ring // n_rings
    rings = [(step * i, step * (i - 1)) for i in range(1, n_rings + 1)]

    def box(x, r):
        return ndimage.uniform_filter(x, 2 * r + 1, mode="constant") * (2 * r + 1) ** 2

    def magnitude(before, after, sel, inside, irmad_res):
        out = np.zeros(before.shape[1:])
        for outer, inner in rings:
            tot = np.zeros(before.shape[1:])
            for k in sel:
                p = np.where(inside, before[k], 0.0).astype(np.float64)
                q = np.where(inside, after[k], 0.0).astype(np.float64)
                s_pq = box(p * q, outer) - (box(p * q, inner) if inner > 0 else 0.0)
                s_pp = box(p * p, outer) - (box(p * p, inner) if inner > 0 else 0.0)
                res = np.where(inside, q - s_pq / np.maximum(s_pp, 1e-12) * p, np.nan)
                if combine == "abs":
                    tot += np.abs(np.nan_to_num(res)) / len(sel)
                else:
                    v = res[inside]
                    med = np.median(v)
                    tot += ((np.nan_to_num(res) - med) / (1.4826 * np.median(np.abs(v - med)))) ** 2
            out += tot if combine == "abs" else np.sqrt(tot)
        return (out / len(rings)).astype(np.float32)

    return magnitude


def _tolerant_magnitude(radius: int, symmetric: bool):
    """z-scored CVA tolerant to local misregistration: each band's difference is standardised
    with its unshifted mean and spread, and the magnitude is the smallest over the shifts
    ``s`` within ``radius`` px of the norm of (after(x) - before(x + s) - mean) / sd; with
    ``symmetric`` also the other way round (after shifted), and the larger of the two kept, so
    a change present in either date only is not matched away."""

    def shifted(x, dy, dx):
        out = np.full_like(x, np.nan)
        H, W = x.shape
        ys, yd = (slice(dy, H), slice(0, H - dy)) if dy >= 0 else (slice(0, H + dy), slice(-dy, H))
        xs, xd = (slice(dx, W), slice(0, W - dx)) if dx >= 0 else (slice(0, W + dx), slice(-dx, W))
        out[yd, xd] = x[ys, xs]
        return out

    def magnitude(before, after, sel, inside, irmad_res):
        b = before[sel].astype(np.float64)
        a = after[sel].astype(np.float64)
        d = a - b
        ok = inside & np.isfinite(d).all(axis=0)
        mu = np.array([d[k][ok].mean() for k in range(len(sel))])
        sd = np.array([d[k][ok].std() for k in range(len(sel))])
        sd[sd == 0] = 1.0
        offs = [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)]

        def one_way(fixed, moving, sign):
            best = np.full(fixed.shape[1:], np.inf)
            for dy, dx in offs:
                acc = np.zeros(fixed.shape[1:])
                for k in range(len(sel)):
                    diff = sign * (fixed[k] - shifted(moving[k], dy, dx))
                    acc += ((diff - mu[k]) / sd[k]) ** 2
                best = np.fmin(best, np.where(np.isfinite(acc), acc, np.inf))
            return best

        m = one_way(a, b, 1.0)
        if symmetric:
            m = np.maximum(m, one_way(b, a, -1.0))
        out = np.sqrt(m)
        out[~np.isfinite(d).all(axis=0)] = np.nan
        out[~np.isfinite(out)] = np.nan
        return out.astype(np.float32)

    return magnitude


def _cva_sam_magnitude(weight: float):
    """z-scored CVA combined in quadrature with the spectral angle between the dates in robust z
    units (median, 1.4826 MAD over the AOI), the angle weighted by ``weight``: a change of
    spectral shape at equal brightness (Carvalho Junior et al. 2011, CVA with distance and
    similarity measures)."""
    from pipeline.kernels.metrics import zscore_cva

    def magnitude(before, after, sel, inside, irmad_res):
        b = before[sel].astype(np.float64)
        a = after[sel].astype(np.float64)
        z = zscore_cva(before[sel], after[sel], mask=inside).astype(np.float64)
        cos = (a * b).sum(0) / np.maximum(np.sqrt((a * a).sum(0) * (b * b).sum(0)), 1e-12)
        ang = np.arccos(np.clip(cos, -1.0, 1.0))
        ok = inside & np.isfinite(ang)
        med = np.median(ang[ok])
        mad = 1.4826 * np.median(np.abs(ang[ok] - med)) or 1.0
        za = np.maximum((ang - med) / mad, 0.0)
        out = np.sqrt(z * z + (weight * za) ** 2)
        return out.astype(np.float32)

    return magnitude


def _local_z_magnitude(win: int, floor: float):
    """Each band's difference standardised by its standard deviation in a ``win`` px window
    (floored at ``floor`` x the scene's), instead of over the whole scene, summed in quadrature."""
    from scipy import ndimage

    def magnitude(before, after, sel, inside, irmad_res):
        out = np.zeros(before.shape[1:], np.float64)
        ok = inside & np.all(np.isfinite(before[sel]), axis=0) & np.all(np.isfinite(after[sel]), axis=0)
        cnt = np.maximum(ndimage.uniform_filter(ok.astype(np.float64), win, mode="constant"), 1e-9)
        for b in sel:
            d = np.where(ok, after[b].astype(np.float64) - before[b], 0.0)
            gm, gs = d[ok].mean(), d[ok].std()
            m1 = ndimage.uniform_filter(d, win, mode="constant") / cnt
            m2 = ndimage.uniform_filter(d * d, win, mode="constant") / cnt
            scale = np.maximum(np.sqrt(np.maximum(m2 - m1 * m1, 0)), floor * gs)
            z = (np.where(ok, after[b] - before[b], np.nan) - gm) / np.where(scale > 0, scale, 1.0)
            out += z * z
        return np.sqrt(out).astype(np.float32)

    return magnitude


def _strata_magnitude(ndvi_cut: float, which: str):
    """z-CVA rescaled to the scene's median and MAD separately over vegetated pixels (NDVI above
    ``ndvi_cut`` before, or on either date with ``which="max"``) and the rest, so that the robust
    threshold acts per stratum."""
    def magnitude(before, after, sel, inside, irmad_res):
        m = D.MAGNITUDES["zscore_cva"](before, after, sel, inside, irmad_res).astype(np.float64)
        r, n = B.OSCD_PARAMS.bands.index("B04"), B.OSCD_PARAMS.bands.index("B08")
        with np.errstate(invalid="ignore", divide="ignore"):
            nb = (before[n] - before[r]) / (before[n] + before[r])
            na = (after[n] - after[r]) / (after[n] + after[r])
        veg = (nb > ndvi_cut) if which == "before" else (np.fmax(nb, na) > ndvi_cut)
        ok = inside & np.isfinite(m)
        gmed = np.median(m[ok])
        gmad = 1.4826 * np.median(np.abs(m[ok] - gmed))
        out = m.copy()
        for stratum in (veg, ~veg):
            sel_ = ok & stratum
            if sel_.sum() < 1000:
                continue
            med = np.median(m[sel_])
            mad = 1.4826 * np.median(np.abs(m[sel_] - med))
            if mad > 0:
                out[stratum] = gmed + (m[stratum] - med) / mad * gmad
        return out.astype(np.float32)

    return magnitude


def _band_weight_magnitude(weights: dict[str, float]):
    """The default z-scored CVA (:func:`pipeline.kernels.metrics.zscore_cva`: each band's difference
    standardised with its mean and sample standard deviation over the pixels inside the AOI with
    data in every selected band of both dates; float64 moments, float32 z and sum, as the kernel)
    with a weight on each band's z-difference, sqrt(sum_b (w_b z_b)^2); bands not in ``weights``
    weigh 1, so all weights 1 give the default magnitude."""

    def magnitude(before, after, sel, inside, irmad_res):
        d = np.stack([after[k].astype(np.float32) - before[k].astype(np.float32) for k in sel])
        ok = inside & np.isfinite(d).all(axis=0)
        n = int(ok.sum())
        acc = np.zeros(d.shape[1:], np.float32)
        for k, b in zip(sel, d):
            v = b[ok].astype(np.float64)
            mean = v.sum() / n
            sd = np.sqrt(max((v * v).sum() / n - mean * mean, 0.0) * n / (n - 1))
            z = (b - np.float32(mean)) * np.float32(1.0 / sd if sd > 0 else 0.0)
            wz = np.float32(weights.get(B.OSCD_PARAMS.bands[k], 1.0)) * z
            acc += wz * wz
        return np.sqrt(acc)

    return magnitude


def sweeps(name: str) -> dict:
    P = B.OSCD_PARAMS
    th = P.objects.thresholds
    if name == "closing":
        return {f"closing_radius_px={r}": replace(P, closing_radius_px=r) for r in range(5)}
    if name == "water":
        return {f"water_swir_dark={w}": replace(P, objects=replace(P.objects, thresholds=replace(th, water_swir_dark=w))) for w in (False, True)}
    if name == "k":
        return {f"closing {r} k {k}": replace(P, closing_radius_px=r, robust_k=k) for r in (2, 3) for k in (5.5, 6.0, 6.5, 7.0)}
    if name == "siroc":
        out = {}
        for max_ring, n in ((200, 27), (100, 14)):
            for comb in ("abs", "z"):
                key = f"siroc_{max_ring}_{comb}"
                D.MAGNITUDES[key] = _siroc_magnitude(max_ring, n, comb)
                for k in (5.0, 6.0, 7.0):
                    out[f"{key} k {k}"] = replace(P, magnitude=key, robust_k=k)
        out["zscore_cva k 6 (OSCD_PARAMS)"] = P
        return out
    if name == "tolerant":
        out = {"zscore_cva k 6 (OSCD_PARAMS)": P}
        for sym in (False, True):
            key = f"tolerant_r1_{'sym' if sym else 'one'}"
            D.MAGNITUDES[key] = _tolerant_magnitude(1, sym)
            for k in (5.0, 5.5, 6.0, 7.0):
                out[f"{key} k {k}"] = replace(P, magnitude=key, robust_k=k)
        return out
    if name == "sam":
        out = {"zscore_cva k 6 (OSCD_PARAMS)": P}
        for w in (0.25, 0.5, 1.0):
            key = f"cva_sam_{w}"
            D.MAGNITUDES[key] = _cva_sam_magnitude(w)
            for k in (6.0, 7.0, 8.0):
                out[f"{key} k {k}"] = replace(P, magnitude=key, robust_k=k)
        return out
    if name == "area":
        return {f"min_area_m2={a:g} smooth {sp:g}": replace(P, smooth_px=sp, objects=replace(P.objects, min_area_m2=a))
                for sp in (1.0, 1.5) for a in (1600.0, 2000.0, 2400.0, 2800.0, 3200.0)}
    if name == "opening":
        return {f"opening {o} area {a:g}": replace(P, objects=replace(P.objects, opening_radius_px=o, min_area_m2=a))
                for o in (0, 1) for a in (2000.0, 2400.0, 2800.0)}
    if name == "floor":
        return {f"min_cva {m}": replace(P, min_cva=m) for m in (0.0, 0.03, 0.05, 0.07, 0.09)}
    if name == "nochange":
        return {f"nochange_p {q} minfrac {f}": replace(P, nochange_p=q, nochange_min_fraction=f) for q in (0.8, 0.9, 0.95) for f in (0.3, 0.5, 0.7)}
    if name == "connectivity":
        return {f"connectivity {c} touch {t:g}": replace(P, objects=replace(P.objects, connectivity=c, touch_m=t)) for c in (1, 2) for t in (0.0, 20.0, 40.0)}
    if name == "localz":
        out = {"zscore_cva k 6 (OSCD_PARAMS)": P}
        for win in (101, 201):
            for floor in (0.5, 0.8):
                key = f"localz_{win}_{floor}"
                D.MAGNITUDES[key] = _local_z_magnitude(win, floor)
                for k in (5.5, 6.0, 7.0):
                    out[f"{key} k {k}"] = replace(P, magnitude=key, robust_k=k)
        return out
    if name == "strata":
        out = {"zscore_cva k 6 (OSCD_PARAMS)": P}
        for cut in (0.3, 0.5):
            for which in ("before", "max"):
                key = f"strata_{cut}_{which}"
                D.MAGNITUDES[key] = _strata_magnitude(cut, which)
                for k in (5.5, 6.0, 6.5, 7.0):
                    out[f"{key} k {k}"] = replace(P, magnitude=key, robust_k=k)
        return out
    if name == "bandweight":
        out = {"zscore_cva k 6 (OSCD_PARAMS)": P}
        for w in (0.5, 0.75, 1.0, 1.25):
            key = f"bandweight_swir_{w}"
            D.MAGNITUDES[key] = _band_weight_magnitude({"B11": w, "B12": w})
            for k in (5.5, 6.0, 7.0):
                out[f"{key} k {k}"] = replace(P, magnitude=key, robust_k=k)
        return out
    if name == "landscaping":
        return {f"landscaping_m={d}": replace(P, objects=replace(P.objects, landscaping_m=d)) for d in (None, 0.0, 20.0, 50.0, 100.0)}
    raise SystemExit(f"unknown sweep {name!r}; use closing, water, k, siroc, tolerant, sam, landscaping, area, opening, floor, nochange, connectivity, localz, strata, bandweight")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep", nargs="+", help="closing, water, k, siroc, tolerant, sam, landscaping, area, opening, floor, nochange, connectivity, localz, strata, bandweight")
    ap.add_argument("--oscd", default=str(ROOT.parent / "shared" / "data" / "oscd-dev"))
    args = ap.parse_args(argv)
    root = Path(args.oscd)
    if not (root / "images").is_dir():
        print(f"OSCD: no data at {root}")
        return 0
    from pipeline.sources.stac import LocalStacSource
    from pipeline.sources.stac_build import build_catalog

    cities = sorted(p.name for p in (root / "images").iterdir() if p.is_dir())
    data = {}
    with tempfile.TemporaryDirectory(prefix="s2watch-oscd-") as tmp:
        for city in cities:
            cdir = root / "images" / city
            src = LocalStacSource(build_catalog(cdir, Path(tmp) / city))
            aoi = load_aoi(cdir / f"{city}.geojson")
            stack = src.read(aoi, src.search(aoi, date(2015, 1, 1), date(2019, 12, 31)), bands=B.OSCD_PARAMS.bands)
            lab = B._labels_on_grid(cdir, root / "labels" / city / "cm" / f"{city}-cm.tif", stack.grid)
            data[city] = (aoi, stack, lab, D.aoi_mask(aoi, stack.grid), src.name)
    for sweep in args.sweep:
        print(f"sweep {sweep}")
        scores = {}
        for label, params in sweeps(sweep).items():
            per = {}
            for city, (aoi, stack, lab, inside, name) in data.items():
                res = D.detect_stacks(aoi, stack.select([0]), stack.select([1]), params=params, source_name=name)
                pred = (res.class_map > 0) & (res.class_map < 255)
                per[city] = (B._prf(pred, lab, inside), B._prf(pred & ~np.isin(res.class_map, NATURAL), lab, inside))
            scores[label] = per
            a, n = sum(v[0] for v in per.values()), sum(v[1] for v in per.values())
            cells = " ".join(f"{c[:4]} {B._f1(v[0])[2]:.3f}/{B._f1(v[1])[2]:.3f}" for c, v in per.items())
            print(f"  {label:32s} all {B._f1(a)[2]:.3f} (P {B._f1(a)[0]:.3f} R {B._f1(a)[1]:.3f})  nn {B._f1(n)[2]:.3f} "
                  f"(P {B._f1(n)[0]:.3f} R {B._f1(n)[1]:.3f}) | {cells}", flush=True)  # fmt: skip
        for which, reading in ((0, "all"), (1, "nn")):
            held, picks = np.zeros(3, int), []
            for city in cities:
                best = max(scores, key=lambda k: B._f1(sum(scores[k][c][which] for c in cities if c != city))[2])
                picks.append(best)
                held += scores[best][city][which]
            print(f"  leave-one-city-out ({reading}): held-out pooled F1 {B._f1(held)[2]:.4f}; picks {picks}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
