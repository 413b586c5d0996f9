"""``s2watch status [--out ROOT]``: per AOI the last run, last acquisition and open changes."""

from __future__ import annotations

import json
import sys


def register(sub) -> None:
    p = sub.add_parser("status", help="per AOI: last run, last acquisition, open changes")
    p.add_argument("--out", default=None, metavar="ROOT", help="output root (default from the configuration)")
    p.add_argument("--state", default=None, metavar="PATH", help="state database (default ROOT/state.sqlite)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def collect(state) -> list[dict]:
    """One dict per AOI in the state: last run, last acquisition, open change counts and objects."""
    rows = []
    for aoi_id in state.aoi_ids():
        run = state.last_run(aoi_id) or {}
        acqs = state.acquisitions(aoi_id)
        monitored = [a for a in acqs if a["status"] != "reference"]
        last_acq = monitored[-1] if monitored else None
        counts = state.counts(aoi_id)
        aoi = state.aoi(aoi_id)
        rows.append(
            {
                "aoi": aoi_id,
                "reference": f"{aoi['reference_start']}/{aoi['reference_end']}",
                "last_run": run.get("run_id"),
                "last_run_status": run.get("status"),
                "last_run_finished": run.get("finished_at") or run.get("started_at"),
                "last_run_error": run.get("error") or "",
                "last_acquisition": last_acq["date"] if last_acq else None,
                "last_acquisition_status": last_acq["status"] if last_acq else None,
                "acquisitions": {"used": sum(a["status"] == "used" for a in acqs), "skipped": sum(a["status"] == "skipped" for a in acqs)},
                "open": {s: counts.get(s, 0) for s in ("confirmed", "persisting", "candidate")},
                "gone": counts.get("gone", 0),
                "open_changes": [
                    {"id": o.id, "class": o.cls, "status": o.status, "first_seen": o.first_seen, "last_seen": o.last_seen,
                     "area_m2": round(o.area_m2, 1), "feature": o.feature}
                    for o in state.objects(aoi_id, open_only=True) if o.status != "candidate"
                ],
            }
        )
    return rows


def run(args) -> int:
    from ..config import load_config
    from ..errors import ConfigError
    from ..runs.logs import interactive
    from ..runs.state import State

    cfg = load_config(getattr(args, "config", None), overrides={"output_root": args.out, "state_path": args.state})
    path = cfg.state_file
    if not path.is_file():
        raise ConfigError(f"{path}: no state database here; run `s2watch run` first or pass --out/--state")
    with State(path) as st:
        rows = collect(st)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"{path}: no AOI monitored yet")
        return 0
    headers = ("AOI", "last run", "status", "last acquisition", "confirmed", "persisting", "candidates", "gone")
    table = [
        (r["aoi"], r["last_run"] or "-", r["last_run_status"] or "-",
         f"{r['last_acquisition'] or '-'} ({r['last_acquisition_status'] or '-'})",
         str(r["open"]["confirmed"]), str(r["open"]["persisting"]), str(r["open"]["candidate"]), str(r["gone"]))
        for r in rows
    ]
    if interactive() and sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        t = Table(title=f"s2watch status ({path})")
        for h in headers:
            t.add_column(h)
        for row in table:
            t.add_row(*row)
        Console().print(t)
    else:
        widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(headers)]
        print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
        for row in table:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    for r in rows:
        for c in r["open_changes"]:
            where = f" on {c['feature']}" if c["feature"] else ""
            print(f"  {r['aoi']}: {c['status']} {c['class']}{where}, {c['area_m2']} m2, {c['first_seen']}..{c['last_seen']} ({c['id']})")
        if r["last_run_status"] == "failed":
            print(f"  {r['aoi']}: last run failed: {r['last_run_error']}")
    return 0
