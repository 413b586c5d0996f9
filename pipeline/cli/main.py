"""The ``s2watch`` command: a thin shell that parses, configures logging, calls the library and maps
the outcome to an exit code.

Exit codes: 0 success; 1 a run failed (for ``run``: some AOI failed, the others were saved);
2 usage or configuration error; 3 new confirmed change with ``--fail-on-change``; 75 another run
holds the AOI's lock.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import time

from .. import __version__
from .._alloc import keep_freed_memory, no_hugepage_stalls
from ..errors import AOIError, ConfigError, LockHeldError, PipelineError, UsageError

log = logging.getLogger("pipeline.cli")

COMMANDS = ("detect", "run", "aois", "stac", "config", "status", "cron")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CHANGE = 3
EXIT_LOCKED = 75


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        d = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("aoi", "stage", "acquisition", "run_id"):
            if hasattr(record, key):
                d[key] = getattr(record, key)
        if record.exc_info:
            d["error"] = self.formatException(record.exc_info)
        return json.dumps(d, ensure_ascii=False)


def configure_logging(verbosity: int = 0, *, log_json: bool = False) -> None:
    """-q: errors only; default: warnings and progress (INFO) lines; -v: debug."""
    level = {-1: logging.ERROR, 0: logging.INFO, 1: logging.DEBUG}.get(max(-1, min(1, verbosity)), logging.INFO)
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    if log_json:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("pipeline").setLevel(level)
    logging.captureWarnings(True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="s2watch",
        description="Detect and monitor change at airbases and ports with Sentinel-2 L2A imagery.",
    )
    p.add_argument("--version", action="version", version=f"s2watch {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (debug)")
    p.add_argument("-q", "--quiet", action="count", default=0, help="errors only")
    p.add_argument("--log-json", action="store_true", help="log one JSON object per line (for schedulers)")
    p.add_argument("--config", metavar="PATH", default=None, help="configuration file (TOML)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"{__package__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__package__}.{name}":
                continue
            raise
        mod.register(sub)
    return p


def exit_code_for(exc: BaseException) -> int:
    if isinstance(exc, LockHeldError):
        return EXIT_LOCKED
    if isinstance(exc, (UsageError, ConfigError, AOIError)):
        return EXIT_USAGE
    return EXIT_FAILED



def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose - args.quiet, log_json=args.log_json)
    keep_freed_memory()  # image-sized arrays reuse the pages of freed ones (see pipeline._alloc)
    no_hugepage_stalls()  # no synchronous memory compaction on first touch (see pipeline._alloc)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except PipelineError as exc:
        code = exit_code_for(exc)
        msg = str(exc)
        if exc.__cause__ is not None and args.verbose:
            log.debug("cause", exc_info=exc.__cause__)
        print(f"s2watch: error: {msg}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print("s2watch: interrupted", file=sys.stderr)
        return 130


PROGRAM_GC_THRESHOLD = (10_000, 20, 20)
"""Garbage-collector thresholds of the ``s2watch`` program (Python's default: 700, 10, 10)."""


def console_main() -> None:
    """The ``s2watch`` program: :func:`main` with fewer garbage collections, then exit without the
    interpreter's final ones.

    The work is in arrays, but the imported libraries (numba's typing and lowering registries,
    GDAL's and SciPy's bindings) leave about 150 000 tracked objects that every full collection
    walks: with Python's default thresholds, collections took 0.30 s of the 4096^2 ``s2watch
    detect`` (372 young, 34 middle, 3 full), with :data:`PROGRAM_GC_THRESHOLD` 0.10 s (194, 17, 1),
    peak memory unchanged (1.87-1.90 GiB); the whole command, 8 runs each alternating, median 4.05
    -> 3.96 s wall, 5.59 -> 5.49 s user (part of the collections overlapped GDAL's reading threads).

    Python's shutdown collects every generation several times and tears each module down, which
    after a detection (numba's and GDAL's bindings, about 140 000 tracked objects) took 0.5-1.5 s
    of pure CPU after the work was done. :func:`gc.freeze` before exiting moves what is left into
    the permanent generation, which those collections skip; the files are already closed and
    renamed, ``atexit`` handlers still run, and the operating system reclaims the memory. Only
    the program does this: :func:`main` called in a process that goes on is left alone.
    """
    import gc

    gc.set_threshold(*PROGRAM_GC_THRESHOLD)
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    console_main()
