"""Options and argument parsers shared by several commands."""

from __future__ import annotations

import argparse
import re
from datetime import date

from ..errors import UsageError

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_date(text: str, *, what: str = "date") -> date:
    """``YYYY-MM-DD`` to a date, or a UsageError naming the value."""
    if not _DATE.match(text or ""):
        raise UsageError(f"{what} {text!r} is not a date; use YYYY-MM-DD")
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise UsageError(f"{what} {text!r} is not a valid date: {exc}") from exc


def parse_when(text: str, *, what: str = "window") -> tuple[date, date]:
    """``YYYY-MM-DD`` (one day) or ``YYYY-MM-DD/YYYY-MM-DD`` (inclusive) to ``(start, end)``."""
    parts = (text or "").split("/")
    if len(parts) == 1:
        d = parse_date(parts[0], what=what)
        return d, d
    if len(parts) != 2:
        raise UsageError(f"{what} {text!r}: use YYYY-MM-DD or YYYY-MM-DD/YYYY-MM-DD")
    start, end = parse_date(parts[0], what=what), parse_date(parts[1], what=what)
    if end < start:
        raise UsageError(f"{what} {text!r}: the end {end} is before the start {start}")
    return start, end


def add_source_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("imagery source")
    g.add_argument(
        "--source",
        default=None,
        help="simulated (default), sentinelhub, cdse, earth-search, planetary-computer, a STAC API URL "
        "or a local STAC catalog path",
    )
    g.add_argument("--max-cloud", type=float, default=None, metavar="PCT", help="skip scenes above this cloud cover")
    g.add_argument("--cache-dir", default=None, metavar="DIR", help="where downloaded responses are cached")
    g.add_argument("--max-pu", type=float, default=None, help="Sentinel Hub: refuse a run above this many processing units")
    g.add_argument("--dry-run", action="store_true", help="search and estimate cost, download nothing")
    g.add_argument("--seed", type=int, default=None, help="simulated source: scenario seed (default 0)")


def source_options(args) -> dict:
    """Keyword options for :func:`pipeline.sources.get_source` from parsed arguments."""
    opts = {}
    for key in ("max_cloud", "cache_dir", "max_pu", "seed"):
        v = getattr(args, key, None)
        if v is not None:
            opts[key] = v
    if getattr(args, "dry_run", False):
        opts["dry_run"] = True
    return opts
