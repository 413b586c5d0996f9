"""``s2watch stac build DIR [--out CATALOG_DIR]``: a local STAC catalog from per-band GeoTIFFs."""

from __future__ import annotations

import argparse
import logging

from ..errors import UsageError

log = logging.getLogger(__name__)

__all__ = ["register", "run"]


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``stac`` command (with its ``build`` subcommand) to ``subparsers``."""
    p = subparsers.add_parser("stac", help="local STAC catalogs of downloaded Sentinel-2 data")
    sub = p.add_subparsers(dest="stac_command", metavar="SUBCOMMAND")
    b = sub.add_parser(
        "build",
        help="turn a folder of per-band GeoTIFFs into a static STAC catalog",
        description=(
            "Group <scene>_Bxx.tif files into STAC items (dates from the file names, e.g. "
            "S2A_MSIL2A_20170613T101031_..., or from an OSCD dates.txt), with assets pointing to the "
            "files in place. Use the catalog folder as --source of other commands."
        ),
    )
    b.add_argument("dir", metavar="DIR", help="folder searched recursively for <scene>_B02.tif ... files")
    b.add_argument("--out", metavar="CATALOG_DIR", default=None, help="catalog folder (default: DIR/catalog)")
    b.add_argument("--level", choices=["L2A", "L1C"], default=None, help="processing level (default: from names / SCL)")
    b.add_argument(
        "--processing-baseline", default=None, metavar="NN.NN",
        help="processing baseline of all scenes (04.00 or newer means a +1000 DN offset); default: from names",
    )  # fmt: skip
    p.set_defaults(func=run)
    b.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``stac build``; returns the exit code. Errors (:class:`PipelineError`) propagate to
    ``cli/main.py``, which prints them on one line and maps them to exit codes (2 usage, 1 failure)."""
    import pystac

    from ..sources.stac_build import build_catalog

    if getattr(args, "stac_command", None) != "build":
        raise UsageError("s2watch stac: give a subcommand: build DIR [--out CATALOG_DIR]")
    try:
        path = build_catalog(args.dir, args.out, level=args.level, processing_baseline=args.processing_baseline)
    except PermissionError as exc:
        raise UsageError(f"cannot write the catalog ({exc}); choose a writable --out folder") from exc
    n = sum(1 for _ in pystac.Catalog.from_file(str(path)).get_items(recursive=True))
    print(f"{path}  ({n} items)")
    return 0
