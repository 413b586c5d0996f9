"""``s2watch detect AOI --before WHEN --after WHEN --out DIR``: compare two windows once."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..errors import UsageError
from .options import add_source_options, parse_when, source_options

log = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser(
        "detect",
        help="detect change between a before and an after window",
        description="Compare the clear acquisitions of a before window with those of an after window and write "
        "change objects (GeoJSON, GeoPackage), class and magnitude COGs, an HTML report and a manifest.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("aoi", metavar="AOI", help="AOI id from `s2watch aois list` or a path to a GeoJSON file")
    p.add_argument("--before", required=True, metavar="WHEN", help="YYYY-MM-DD or YYYY-MM-DD/YYYY-MM-DD")
    p.add_argument("--after", required=True, metavar="WHEN", help="YYYY-MM-DD or YYYY-MM-DD/YYYY-MM-DD")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument("--rgb", action="store_true", help="also write true-colour before/after COGs")
    p.add_argument(
        "--threshold",
        default=None,
        help="threshold of the change magnitude: robust (median + k robust sigma; the default), otsu, "
        "kittler-illingworth, chi2 (IR-MAD no-change test) or none (only the reflectance floor)",
    )
    p.add_argument(
        "--tile-px",
        type=int,
        default=None,
        metavar="N",
        help="detect tile by tile, cores of N x N px with a halo (bounded memory; see pipeline.tiled). Default: "
        "tiles of 3072 px when the AOI grid exceeds 40 Mpx or with --executor dask, smaller ones when long windows would "
        "exceed --memory-gb, else one pass; 0 = never tile",
    )
    p.add_argument("--halo-px", type=int, default=128, metavar="N", help="halo read around each tile, px")
    p.add_argument(
        "--memory-gb",
        type=float,
        default=None,
        metavar="GIB",
        help="memory budget: without --tile-px, an AOI whose windows hold so many acquisitions that one pass would "
        "exceed it is detected in smaller tiles (default: $S2WATCH_MEMORY_GB, else 6)",
    )
    p.add_argument(
        "--max-area-km2",
        type=float,
        default=2500.0,
        help="largest AOI accepted, km^2 (a guard against a mistyped polygon; a whole Sentinel-2 tile is "
        "about 12 100 km^2 and runs in tiles)",
    )
    p.add_argument("--executor", choices=("serial", "dask"), default="serial", help="where the tiles run")
    p.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT", help="dask scheduler (default: a local cluster)")
    add_source_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..aoi import load_aoi
    from ..sources import get_source

    before = parse_when(args.before, what="--before")
    after = parse_when(args.after, what="--after")
    if before[0] > after[0]:
        raise UsageError(f"--before {args.before} starts after --after {args.after}; swap them")
    aoi = load_aoi(args.aoi, max_area_km2=args.max_area_km2)
    source_name = args.source or "simulated"
    source = get_source(source_name, **source_options(args))
    from ..detect import DetectParams, detect, search_windows
    from ..outputs import MagnitudeInAdvance, write_outputs

    from .. import tiled

    overrides = {k: v for k, v in (("threshold", args.threshold), ("max_cloud", args.max_cloud)) if v is not None}
    params = DetectParams(**overrides)
    if args.dry_run:
        return _dry_run(aoi, source, before, after, args, params)
    if args.scheduler and args.executor != "dask":
        raise UsageError("--scheduler needs --executor dask")
    shape = aoi.grid().shape
    _plan(shape, 1, args)  # bad tiling options and budgets are refused before anything is searched
    log.info("detect %s: before %s/%s after %s/%s from %s", aoi.id, *before, *after, source_name)
    acqs = search_windows(aoi, source, before, after, params=params)
    dates = max(len(a) for a in acqs)
    tile_px, peak = _plan(shape, dates, args)
    if tile_px is None:
        # change_magnitude.tif is encoded on a second thread while the objects are extracted
        with MagnitudeInAdvance(args.out) as early:
            result = detect(aoi, source, before=before, after=after, params=params, acquisitions=acqs, on_magnitude=early)
            paths = write_outputs(result, Path(args.out), rgb=args.rgb, early=early)
    else:
        from ..runs.executor import get_executor

        if args.tile_px is None:
            log.info(
                "%s: %d x %d px with up to %d acquisitions per window: tiles of %d px (expected peak %.1f GiB)",
                aoi.id, *shape, dates, tile_px, peak / 2**30,
            )
        with get_executor(args.executor, scheduler=args.scheduler) as ex:
            result = tiled.detect_tiled(
                aoi, source, before=before, after=after, params=params, tile_px=tile_px, halo_px=args.halo_px,
                executor=ex, acquisitions=acqs,
            )
        paths = write_outputs(result, Path(args.out), rgb=args.rgb)
    counts: dict[str, int] = {}
    for o in result.objects:
        counts[o.cls] = counts.get(o.cls, 0) + 1
    summary = ", ".join(f"{n} {c}" for c, n in sorted(counts.items())) or "no change objects"
    print(f"{aoi.id}: {summary}")
    print(f"report: {paths['report.html'].resolve()}")
    return 0


def _plan(shape: tuple[int, int], dates: int, args) -> tuple[int | None, float]:
    """Tile core size (None: one pass) for windows of up to ``dates`` acquisitions, as the options
    ask (see :func:`pipeline.tiled.tile_size`), and the peak memory expected, bytes."""
    from .. import tiled

    tile_px = tiled.tile_size(
        shape, args.tile_px, distributed=args.executor == "dask", dates=dates, memory_gb=args.memory_gb, halo_px=args.halo_px
    )
    return tile_px, tiled.peak_memory(shape, dates, tile_px=tile_px, halo_px=args.halo_px)


def _dry_run(aoi, source, before, after, args, params) -> int:
    acq_b = source.search(aoi, *before, max_cloud=params.max_cloud)
    acq_a = source.search(aoi, *after, max_cloud=params.max_cloud)
    shape = aoi.grid().shape
    print(f"{aoi.id}: {len(acq_b)} acquisitions before, {len(acq_a)} after; grid {shape} px")
    if acq_b and acq_a:
        tile_px, peak = _plan(shape, max(len(acq_b), len(acq_a)), args)
        how = "one pass" if tile_px is None else f"tiles of {tile_px} px"
        print(f"detection: {how}, expected peak memory {peak / 2**30:.1f} GiB")
    est = getattr(source, "estimate_pu", None)
    if est is not None:
        print(f"estimated processing units: {est(aoi, acq_b + acq_a):.3f}")
    sys.stdout.flush()
    return 0
