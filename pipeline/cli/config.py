"""``s2watch config show | path``: the merged configuration (secrets masked) and where it comes from."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser(
        "config",
        help="show the configuration in effect (secrets masked)",
        description="Settings merge command line > S2WATCH_* environment > file (--config, S2WATCH_CONFIG or "
        "~/.config/s2watch/config.toml). Loading never writes a file.",
    )
    csub = p.add_subparsers(dest="config_command", metavar="ACTION")
    show = csub.add_parser("show", help="print the merged configuration as TOML (or --json), secrets masked")
    show.add_argument("--json", action="store_true", help="print JSON instead of TOML")
    show.set_defaults(func=run)
    path = csub.add_parser("path", help="print the configuration file in use (or where one would be read)")
    path.set_defaults(func=run)
    p.set_defaults(func=run, config_command=None)


def as_toml_tables(masked: dict) -> dict:
    """The masked settings in the configuration file's layout (tables output/monitor/alerts/...)."""
    from ..config import _FILE_KEYS

    out: dict[str, dict] = {}
    for (table, key), name in _FILE_KEYS.items():
        v = masked.get(name)
        if v is None or v == [] or v == ():
            continue
        out.setdefault(table, {})[key] = v
    if masked.get("thresholds"):
        out["thresholds"] = masked["thresholds"]
    if masked.get("source_options"):
        out["sources"] = masked["source_options"]
    return out


def run(args) -> int:
    from ..config import default_config_path, load_config
    from ..errors import UsageError

    action = getattr(args, "config_command", None)
    if action is None:
        raise UsageError("config needs an action: show or path")
    cfg = load_config(getattr(args, "config", None))
    if action == "path":
        print(cfg.config_path if cfg.config_path else f"{default_config_path()} (not present; defaults in use)")
        return 0
    masked = cfg.masked()
    if args.json:
        print(json.dumps(masked, indent=2, sort_keys=True))
        return 0
    import tomli_w

    src = str(cfg.config_path) if cfg.config_path else "none (defaults and environment)"
    print(f"# s2watch configuration in effect; file: {src}; secrets masked")
    print(f"# state database: {cfg.state_file}")
    tables = as_toml_tables(masked)
    for key, name in (("since", "since"), ("until", "until")):  # TOML has dates: show them as dates
        if getattr(cfg, name) is not None:
            tables["monitor"][key] = getattr(cfg, name)
    if cfg.reference is not None:
        tables["monitor"]["reference"] = list(cfg.reference)
    print(tomli_w.dumps(tables), end="")
    return 0
