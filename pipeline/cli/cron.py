"""``s2watch cron --aoi ID --every 1d``: print a crontab line (or systemd service + timer units).

Everything in the printed command is absolute (the ``s2watch`` of this virtualenv, the output
root, the configuration file), it changes to ``/`` first and logs one JSON object per line to
``ROOT/cron.log``, so it runs under cron's bare environment (``PATH=/usr/bin:/bin``, no
virtualenv, no terminal). ``S2WATCH_*`` variables set now are not seen by cron: put settings in
the configuration file (a warning lists any that are set).
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import sys
from pathlib import Path

from ..errors import UsageError

_EVERY = re.compile(r"^(\d+)([mhdw])$")


def register(sub) -> None:
    p = sub.add_parser(
        "cron",
        help="print a crontab line (or systemd units) that runs `s2watch run` periodically",
        description="Print the crontab line (default) or a systemd service and timer (--systemd) that run "
        "`s2watch run` with absolute paths and cron-safe logging. Nothing is installed.",
    )
    p.add_argument("--aoi", action="append", default=[], metavar="ID", help="AOI id or path (repeatable)")
    p.add_argument("--all", action="store_true", dest="all_aois", help="every configured AOI")
    p.add_argument("--every", required=True, metavar="N[m|h|d|w]", help="interval: 15m, 1h, 6h, 1d, 7d, 1w ...")
    p.add_argument("--at", default=None, metavar="HH:MM", help="time of day for daily/weekly runs (default: spread by AOI)")
    p.add_argument("--out", default=None, metavar="ROOT", help="output root (default from the configuration)")
    p.add_argument("--log-file", default=None, metavar="PATH", help="log file (default ROOT/cron.log)")
    p.add_argument("--systemd", action="store_true", help="print a systemd service and timer instead of a crontab line")
    p.add_argument("--fail-on-change", action="store_true", help="pass --fail-on-change to run")
    p.set_defaults(func=run)


def s2watch_executable() -> list[str]:
    """The absolute command of this installation: ``<venv>/bin/s2watch`` beside ``sys.executable``
    (symlinks not resolved, so the virtualenv is kept), else ``python -m pipeline.cli.main``."""
    bindir = Path(sys.executable).absolute().parent
    exe = bindir / "s2watch"
    if exe.is_file() and os.access(exe, os.X_OK):
        return [str(exe)]
    return [str(Path(sys.executable).absolute()), "-m", "pipeline.cli.main"]


def schedule(every: str, *, at: str | None, seed: str) -> tuple[str, str]:
    """``(cron expression, systemd OnCalendar)`` for an interval such as ``6h`` or ``1d``.

    Raises
    ------
    UsageError
        For intervals cron cannot express evenly (e.g. ``7m``, ``5h``).
    """
    m = _EVERY.match(every or "")
    if not m:
        raise UsageError(f"--every {every!r}: use a number and a unit m, h, d or w, e.g. 15m, 6h, 1d, 1w")
    n, unit = int(m.group(1)), m.group(2)
    h_seed = int(hashlib.sha1(seed.encode()).hexdigest(), 16)
    minute, hour = h_seed % 60, 1 + (h_seed // 60) % 5  # 01:00-05:59, stable per AOI set
    if at is not None:
        mt = re.match(r"^([01]?\d|2[0-3]):([0-5]\d)$", at)
        if not mt:
            raise UsageError(f"--at {at!r}: use HH:MM (24 h)")
        hour, minute = int(mt.group(1)), int(mt.group(2))
    if n < 1:
        raise UsageError(f"--every {every!r}: the number must be at least 1")
    if unit == "m":
        if 60 % n or n >= 60:
            raise UsageError(f"--every {every!r}: minutes must divide 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30)")
        return (f"*/{n} * * * *", f"*:00/{n}:00")
    if unit == "h":
        if 24 % n:
            raise UsageError(f"--every {every!r}: hours must divide 24 (1, 2, 3, 4, 6, 8, 12)")
        return (f"{minute} */{n} * * *", f"*-*-* 00/{n}:{minute:02d}:00")
    if unit == "w" or (unit == "d" and n == 7):
        if unit == "w" and n != 1:
            raise UsageError(f"--every {every!r}: only 1w is supported")
        return (f"{minute} {hour} * * 1", f"Mon *-*-* {hour:02d}:{minute:02d}:00")
    if n == 1:
        return (f"{minute} {hour} * * *", f"*-*-* {hour:02d}:{minute:02d}:00")
    return (f"{minute} {hour} */{n} * *", f"*-*-01/{n} {hour:02d}:{minute:02d}:00")


def build_command(args, cfg) -> list[str]:
    cmd = s2watch_executable() + ["--log-json"]
    if cfg.config_path is not None:
        cmd += ["--config", str(Path(cfg.config_path).absolute())]
    cmd += ["run"]
    cmd += ["--all"] if args.all_aois else [str(Path(a).absolute()) if os.sep in a or a.endswith((".geojson", ".json")) else a for a in args.aoi]
    cmd += ["--out", str(cfg.output_root)]
    if args.fail_on_change:
        cmd += ["--fail-on-change"]
    return cmd


def run(args) -> int:
    from ..config import ENV_VARS, load_config

    if bool(args.aoi) == bool(args.all_aois):
        raise UsageError("give --aoi ID (repeatable) or --all")
    cfg = load_config(getattr(args, "config", None), overrides={"output_root": args.out})
    ignored = sorted(v for v in os.environ if v in ENV_VARS)
    if ignored:
        print(f"s2watch cron: warning: {', '.join(ignored)} set here will not exist under cron; "
              "put these settings in the configuration file", file=sys.stderr)
    names = ["all"] if args.all_aois else [Path(a).stem for a in args.aoi]
    cron_expr, calendar = schedule(args.every, at=args.at, seed=",".join(names))
    cmd = build_command(args, cfg)
    log_file = Path(args.log_file).absolute() if args.log_file else cfg.output_root / "cron.log"
    env = []
    if os.environ.get("S2WATCH_AOI_PATH"):
        env.append(f"S2WATCH_AOI_PATH={shlex.quote(os.environ['S2WATCH_AOI_PATH'])}")
    line = " ".join(shlex.quote(c) for c in cmd)
    unit = "s2watch-" + "-".join(names)[:60]
    if not args.systemd:
        print(
            f"{cron_expr} cd / && mkdir -p {shlex.quote(str(log_file.parent))} && "
            f"{' '.join(env + [line])} >> {shlex.quote(str(log_file))} 2>&1"
        )
        return 0
    env_lines = "".join(f"Environment={e}\n" for e in env)
    print(f"""# /etc/systemd/system/{unit}.service
[Unit]
Description=s2watch monitoring ({', '.join(names)})
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
WorkingDirectory=/
{env_lines}ExecStart={line}
# 3: new confirmed change (--fail-on-change); 75: another run held an AOI's lock
SuccessExitStatus=3 75
Nice=10

# /etc/systemd/system/{unit}.timer
[Unit]
Description=Run {unit} every {args.every}

[Timer]
OnCalendar={calendar}
Persistent=true

[Install]
WantedBy=timers.target

# enable with: systemctl daemon-reload && systemctl enable --now {unit}.timer
# logs: journalctl -u {unit}.service""")
    return 0
