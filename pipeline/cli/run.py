"""``s2watch run AOI... | --all``: monitor AOIs, processing only acquisitions not seen before.

Exit codes: 0 success; 1 some AOI failed (the others were processed and saved); 2 usage or
configuration error; 3 new confirmed change with ``--fail-on-change``; 75 another run holds an
AOI's lock (that AOI was skipped). When several apply: 1, then 3, then 75.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict

from ..errors import UsageError
from .options import parse_date, parse_when

log = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser(
        "run",
        help="monitor AOIs: process new acquisitions, track changes, alert",
        description="For each AOI, find the acquisitions not processed yet, compare each clear one with the AOI's "
        "reference period, track change objects (a change is confirmed once seen in two clear acquisitions) and "
        "update ROOT/<aoi-id>/ (plus a per-run copy in ROOT/<aoi-id>/runs/<run-id>/). Settings come from the "
        "command line, then S2WATCH_* variables, then the configuration file.",
    )
    p.add_argument("aois", nargs="*", metavar="AOI", help="AOI ids or GeoJSON paths")
    p.add_argument("--all", action="store_true", dest="all_aois", help="every configured AOI (default: every AOI in the catalogue)")
    p.add_argument("--source", default=None, help="imagery source (default simulated)")
    p.add_argument("--since", default=None, metavar="DATE", help="first monitored date (default 30 days before --until)")
    p.add_argument("--until", default=None, metavar="DATE", help="last monitored date (default today)")
    p.add_argument("--reference", default=None, metavar="START/END", help="reference period for AOIs not yet in the state "
                   "(default: the 180 days before --since)")
    p.add_argument("--confirm-after", type=int, default=None, metavar="N", help="clear acquisitions a change must be seen in (default 2)")
    p.add_argument("--max-cloud", type=float, default=None, metavar="PCT", help="skip scenes above this cloud cover")
    p.add_argument("--out", default=None, metavar="ROOT", help="output root (default ~/.local/share/s2watch)")
    p.add_argument("--state", default=None, metavar="PATH", help="state database (default ROOT/state.sqlite)")
    p.add_argument("--notify", action="append", default=None, metavar="URL", help="webhook for new confirmed changes (repeatable)")
    p.add_argument("--notify-format", choices=("auto", "slack", "json"), default=None, help="webhook payload format (default auto)")
    p.add_argument("--fail-on-change", action="store_true", default=None, help="exit 3 when new change is confirmed")
    p.add_argument("--executor", choices=("serial", "dask"), default=None, help="where AOIs run (default serial)")
    p.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT", help="dask scheduler (default: a local cluster)")
    p.add_argument("--tile-px", type=int, default=None, metavar="N",
                   help="detect AOIs in tiles of N x N px with a halo, in bounded memory; on dask the tiles of such an "
                   "AOI run on the workers (default: 3072 px tiles for AOIs above 40 Mpx; 0 = never tile)")
    p.add_argument("--halo-px", type=int, default=None, metavar="N", help="halo read around each tile, px (default 128)")
    p.add_argument("--memory-gb", type=float, default=None, metavar="GIB",
                   help="memory budget: without --tile-px, an AOI whose reference period holds so many acquisitions that one "
                   "pass would exceed it is detected in smaller tiles (default: $S2WATCH_MEMORY_GB, else 6)")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    """The :class:`~pipeline.config.Config` of a ``run``-like command: its options over env and file."""
    from ..config import load_config

    over = {
        "source": args.source,
        "since": parse_date(args.since, what="--since") if args.since else None,
        "until": parse_date(args.until, what="--until") if args.until else None,
        "reference": parse_when(args.reference, what="--reference") if getattr(args, "reference", None) else None,
        "confirm_after": getattr(args, "confirm_after", None),
        "max_cloud": getattr(args, "max_cloud", None),
        "output_root": args.out,
        "state_path": getattr(args, "state", None),
        "notify": tuple(args.notify) if getattr(args, "notify", None) else None,
        "notify_format": getattr(args, "notify_format", None),
        "fail_on_change": getattr(args, "fail_on_change", None),
        "executor": getattr(args, "executor", None),
        "scheduler": getattr(args, "scheduler", None),
        "tile_px": getattr(args, "tile_px", None),
        "halo_px": getattr(args, "halo_px", None),
        "memory_gb": getattr(args, "memory_gb", None),
    }
    return load_config(getattr(args, "config", None), overrides=over)


def run(args) -> int:
    from ..config import mask_url
    from ..runs.monitor import detect_params, resolve_aois, run_monitor

    if args.aois and args.all_aois:
        raise UsageError("give AOI ids or --all, not both")
    cfg = config_from_args(args)
    if cfg.scheduler and cfg.executor != "dask":
        raise UsageError("--scheduler needs --executor dask")
    detect_params(cfg)  # a bad [thresholds] table is a configuration error (exit 2), not an AOI failure
    aois = resolve_aois(cfg, args.aois, all_aois=args.all_aois)
    since, until = cfg.period()
    shown = mask_url(cfg.source) if "://" in cfg.source else cfg.source
    log.info("run: %d AOI(s), %s..%s, source %s, executor %s, output %s", len(aois), since, until, shown, cfg.executor, cfg.output_root)
    summary = run_monitor(aois, cfg)
    code = summary.exit_code(fail_on_change=cfg.fail_on_change)
    if getattr(args, "log_json", False):  # one JSON object per line on stdout too (schedulers, cron logs)
        for o in summary.outcomes:
            d = {k: v for k, v in asdict(o).items() if k != "new_confirmed"}
            d["new_confirmed"] = [c["id"] for c in o.new_confirmed]
            d["alerts"] = summary.alerts.get(o.aoi, {})
            print(json.dumps({"event": "aoi_done", **d}, default=str))
        print(json.dumps({"event": "run_done", "run_id": summary.run_id, "exit_code": code, "output": str(cfg.output_root)}))
        return code
    for o in summary.outcomes:
        open_ = ", ".join(f"{n} {s}" for s, n in sorted(o.open_counts.items()) if s != "gone") or "none"
        if o.status in ("failed", "locked"):
            print(f"{o.aoi}: {o.status}: {o.error}")
            continue
        print(
            f"{o.aoi}: {o.status}, {o.n_new} new acquisition(s) ({o.n_used} used, {o.n_skipped} skipped), "
            f"{len(o.new_confirmed)} new confirmed change(s); open: {open_}"
        )
    for aoi, res in summary.alerts.items():
        ok = sum(1 for v in res.values() if v)
        print(f"{aoi}: alert delivered to {ok}/{len(res)} webhook(s)")
    print(f"run {summary.run_id}: output {cfg.output_root}")
    return code
