"""Settings for unattended monitoring: one frozen :class:`Config`, loaded without writing anything.

Precedence (highest first), per setting:

1. the command line (``overrides`` given to :func:`load_config`; ``None`` means "not given"),
2. the environment (``S2WATCH_*``, see :data:`ENV_VARS`),
3. the configuration file: ``--config PATH``, else ``$S2WATCH_CONFIG``, else
   ``~/.config/s2watch/config.toml`` when it exists,
4. the defaults of :class:`Config`.

The file is TOML::

    [output]
    root = "/srv/s2watch"              # ROOT/<aoi-id>/... outputs
    state = "/srv/s2watch/state.sqlite" # default ROOT/state.sqlite

    [monitor]
    aois = ["tartus-naval-facility", "khmeimim"]   # what `run --all` watches (default: every AOI)
    aoi_paths = ["/srv/aois"]           # extra folders searched for AOI ids
    source = "simulated"
    since = 2024-09-01                  # first date monitored (default: 30 days before today)
    until = 2025-06-30                  # default: today
    reference = ["2024-03-01", "2024-08-31"]   # the reference (before) period
    reference_days = 180                # else the N days before `since`
    confirm_after = 2                   # clear acquisitions a change must persist in
    max_cloud = 60.0
    executor = "serial"                 # or "dask"
    scheduler = "tcp://127.0.0.1:8786"
    tile_px = 3072                      # detect every AOI in tiles of N px (default: those above 40 Mpx); 0 = never
    halo_px = 128
    memory_gb = 6                       # without tile_px, tile an AOI whose reference would exceed it in one pass
    fail_on_change = false

    [thresholds]                        # keyword arguments of detect.DetectParams
    min_area_m2 = 400

    [sources.sentinelhub]               # keyword options of sources.get_source(name)
    client_id = "..."
    client_secret = "..."               # masked by `s2watch config show`

    [alerts]
    webhooks = ["https://hooks.slack.com/services/T000/B000/XXXX"]
    format = "auto"                     # auto | slack | json
    timeout_s = 5.0
    retries = 3

Secrets (webhook tokens, client secrets, passwords, API keys) are masked in ``repr``, in
:meth:`Config.masked` and therefore in ``s2watch config show``; they are never logged.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit, urlunsplit

from .errors import ConfigError

__all__ = [
    "Config",
    "ENV_VARS",
    "EXECUTOR_NAMES",
    "NOTIFY_FORMATS",
    "default_config_path",
    "load_config",
    "mask_secret",
    "mask_url",
]

EXECUTOR_NAMES = ("serial", "dask")
NOTIFY_FORMATS = ("auto", "slack", "json")
MASK = "****"
_SECRET_KEY = re.compile(r"(secret|token|password|passwd|api[_-]?key|access[_-]?key|auth|credential)", re.I)


def _default_root() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "s2watch"


@dataclass(frozen=True)
class Config:
    """Everything a monitoring run needs, merged from command line, environment and file.

    Attributes
    ----------
    output_root : Path
        ROOT: outputs go to ``ROOT/<aoi-id>/``. Default ``$XDG_DATA_HOME/s2watch``
        (``~/.local/share/s2watch``).
    state_path : Path or None
        SQLite state database; ``None`` means ``ROOT/state.sqlite``.
    aois : tuple of str
        AOI ids or GeoJSON paths watched by ``run --all``; empty means every AOI on the search path.
    aoi_paths : tuple of str
        Extra folders searched for AOI ids (before ``S2WATCH_AOI_PATH`` and ``aois/``).
    source : str
        Source name, STAC API URL or local catalog path (see ``pipeline.sources``).
    source_options : dict
        ``{source name: {option: value}}`` given to ``get_source``; may hold secrets.
    since, until : date or None
        Monitored period, inclusive. ``since`` default: 30 days before ``until``; ``until``
        default: today (UTC).
    reference : (date, date) or None
        Reference (before) period. Default: the ``reference_days`` days before ``since``.
        Held in the state at an AOI's first run; later runs keep it.
    reference_days : int
        Length of the default reference period, days.
    confirm_after : int
        A change is confirmed once seen in this many clear acquisitions (>= 2 rejects one-date
        changes).
    max_cloud : float or None
        Skip acquisitions whose scene cloud cover exceeds this, percent.
    thresholds : dict
        Keyword arguments of ``detect.DetectParams``.
    notify : tuple of str
        Webhook URLs; may hold tokens.
    notify_format : str
        ``auto`` (Slack format for hooks.slack.com-like URLs), ``slack`` or ``json``.
    notify_timeout_s : float
        Timeout of one webhook attempt, seconds.
    notify_retries : int
        Extra attempts after the first, with bounded exponential backoff.
    executor : str
        ``serial`` or ``dask``.
    scheduler : str or None
        ``tcp://HOST:PORT`` of a dask scheduler; ``None`` starts a LocalCluster.
    tile_px : int or None
        Core size of the tiles a large AOI is detected in (see :mod:`pipeline.tiled`), pixels.
        ``None``: 3072 px tiles for an AOI grid above 40 Mpx, else one pass; ``0``: never tile.
        The choice does not depend on the executor, so serial and dask runs give the same outputs;
        on the dask executor the tiles of a tiled AOI are what the workers share.
    halo_px : int
        Halo read around each tile, pixels.
    memory_gb : float or None
        Memory budget, GiB: with ``tile_px`` None, an AOI whose reference period holds so many
        acquisitions that one pass would exceed it is tiled (:func:`pipeline.tiled.tile_size`).
        ``None``: ``S2WATCH_MEMORY_GB`` as :func:`pipeline.tiled.memory_budget` reads it, else 6.
    fail_on_change : bool
        Exit 3 when a run confirms new change.
    config_path : Path or None
        The file that was read (``None`` when none).
    """

    output_root: Path = field(default_factory=_default_root)
    state_path: Path | None = None
    aois: tuple[str, ...] = ()
    aoi_paths: tuple[str, ...] = ()
    source: str = "simulated"
    source_options: dict = field(default_factory=dict, compare=False)
    since: date | None = None
    until: date | None = None
    reference: tuple[date, date] | None = None
    reference_days: int = 180
    confirm_after: int = 2
    max_cloud: float | None = None
    thresholds: dict = field(default_factory=dict, compare=False)
    notify: tuple[str, ...] = ()
    notify_format: str = "auto"
    notify_timeout_s: float = 5.0
    notify_retries: int = 3
    executor: str = "serial"
    scheduler: str | None = None
    tile_px: int | None = None
    halo_px: int = 128
    memory_gb: float | None = None
    fail_on_change: bool = False
    config_path: Path | None = None

    def __post_init__(self):
        for name in ("output_root", "state_path", "config_path"):  # accept str paths from Python callers
            v = getattr(self, name)
            if v is not None and not isinstance(v, Path):
                object.__setattr__(self, name, Path(v))
        for name in ("aois", "aoi_paths", "notify"):
            v = getattr(self, name)
            if isinstance(v, str):
                raise ConfigError(f"{name} must be a list of strings, got the string {v!r}")
            object.__setattr__(self, name, tuple(v))
        if self.executor not in EXECUTOR_NAMES:
            raise ConfigError(f"executor {self.executor!r} is unknown; use one of {', '.join(EXECUTOR_NAMES)}")
        if self.notify_format not in NOTIFY_FORMATS:
            raise ConfigError(f"notify format {self.notify_format!r} is unknown; use one of {', '.join(NOTIFY_FORMATS)}")
        if self.confirm_after < 1:
            raise ConfigError(f"confirm_after must be >= 1, got {self.confirm_after}")
        if self.reference_days < 1:
            raise ConfigError(f"reference_days must be >= 1, got {self.reference_days}")
        if self.notify_retries < 0 or self.notify_retries > 10:
            raise ConfigError(f"notify retries must be in 0..10, got {self.notify_retries}")
        if not 0 < self.notify_timeout_s <= 120:
            raise ConfigError(f"notify timeout must be in (0, 120] seconds, got {self.notify_timeout_s}")
        if self.reference is not None and self.reference[1] < self.reference[0]:
            raise ConfigError(f"reference period {self.reference[0]}/{self.reference[1]} ends before it starts")
        if self.since and self.until and self.until < self.since:
            raise ConfigError(f"until {self.until} is before since {self.since}")
        if self.tile_px is not None and self.tile_px != 0 and self.tile_px < 256:
            raise ConfigError(f"tile_px {self.tile_px} is too small; use at least 256 px, or 0 to never tile")
        if self.halo_px < 0:
            raise ConfigError(f"halo_px must be >= 0, got {self.halo_px}")
        if self.memory_gb is not None and not (self.memory_gb > 0 and self.memory_gb < float("inf")):
            raise ConfigError(f"memory_gb must be a positive number of GiB, got {self.memory_gb}")
        if self.scheduler is not None and not re.match(r"^(tcp|tls|inproc|ucx)://", self.scheduler):
            raise ConfigError(f"scheduler {self.scheduler!r} must look like tcp://HOST:PORT")

    # -- derived values ----------------------------------------------------------------------

    @property
    def state_file(self) -> Path:
        """The state database: ``state_path`` or ``ROOT/state.sqlite``."""
        return self.state_path if self.state_path is not None else self.output_root / "state.sqlite"

    def period(self, today: date | None = None) -> tuple[date, date]:
        """The monitored period ``(since, until)`` with defaults applied."""
        until = self.until or today or datetime.now(timezone.utc).date()
        since = self.since or (until - timedelta(days=30))
        return since, until

    def reference_period(self, today: date | None = None) -> tuple[date, date]:
        """The configured reference period, or the ``reference_days`` days before ``since``."""
        if self.reference is not None:
            return self.reference
        since, _ = self.period(today)
        return since - timedelta(days=self.reference_days), since - timedelta(days=1)

    # -- secrets -----------------------------------------------------------------------------

    def masked(self) -> dict:
        """A JSON/TOML-able dict of every setting with secrets replaced by ``****``."""
        d: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "notify":
                v = [mask_url(u) for u in v]
            elif f.name == "scheduler" and v:
                v = mask_url(v)
            elif f.name in ("source_options", "thresholds"):
                v = _mask_mapping(v)
            elif f.name == "source" and isinstance(v, str) and "://" in v:
                v = mask_url(v)
            d[f.name] = _plain(v)
        return d

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.masked().items())
        return f"Config({inner})"

    __str__ = __repr__


def _plain(v: Any) -> Any:
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, (date,)):
        return v.isoformat()
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def mask_secret(value: Any) -> str:
    """``****`` for any non-empty secret (nothing of it is shown)."""
    return MASK if value not in (None, "") else ""


def _mask_mapping(m: Mapping) -> dict:
    out = {}
    for k, v in m.items():
        if isinstance(v, Mapping):
            out[k] = _mask_mapping(v)
        elif _SECRET_KEY.search(str(k)):
            out[k] = mask_secret(v)
        elif isinstance(v, str) and "://" in v:
            out[k] = mask_url(v)
        else:
            out[k] = v
    return out


def _looks_like_token(seg: str) -> bool:
    return len(seg) >= 20 or (len(seg) >= 8 and any(c.isdigit() for c in seg) and any(c.isalpha() for c in seg))


def mask_url(url: str) -> str:
    """A URL with its secrets masked: password, secret-looking query values, token-like path parts.

    Slack-style webhooks (``/services/...``) and other ``/hooks/``/``/webhooks/`` URLs keep only
    their host and the first path segment.

    Examples
    --------
    >>> mask_url("https://hooks.slack.com/services/T000/B000/abcdefXYZ123")
    'https://hooks.slack.com/services/****'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{host}" if ":" in userinfo else f"{MASK}@{host}"
    segs = [s for s in parts.path.split("/") if s]
    if segs and (segs[0] in ("services", "hooks", "webhooks", "webhook") or "hook" in parts.netloc.split(".")[0]):
        path = "/" + segs[0] + ("/" + MASK if len(segs) > 1 else "")
    elif segs and segs[:2] == ["api", "webhooks"]:
        path = "/api/webhooks/" + MASK
    else:
        path = "/".join(MASK if _looks_like_token(s) else s for s in parts.path.split("/"))
    query = "&".join(
        (q.split("=", 1)[0] + "=" + MASK) if "=" in q and (_SECRET_KEY.search(q.split("=", 1)[0]) or _looks_like_token(q.split("=", 1)[1])) else q
        for q in parts.query.split("&")
        if q
    )
    return urlunsplit((parts.scheme, netloc, path, query, ""))


# --------------------------------------------------------------------------------------------
# loading

ENV_VARS: dict[str, str] = {
    "S2WATCH_OUT": "output_root",
    "S2WATCH_STATE": "state_path",
    "S2WATCH_AOIS": "aois",
    "S2WATCH_SOURCE": "source",
    "S2WATCH_SINCE": "since",
    "S2WATCH_UNTIL": "until",
    "S2WATCH_REFERENCE": "reference",
    "S2WATCH_CONFIRM_AFTER": "confirm_after",
    "S2WATCH_MAX_CLOUD": "max_cloud",
    "S2WATCH_NOTIFY": "notify",
    "S2WATCH_NOTIFY_FORMAT": "notify_format",
    "S2WATCH_EXECUTOR": "executor",
    "S2WATCH_SCHEDULER": "scheduler",
    "S2WATCH_TILE_PX": "tile_px",
    "S2WATCH_MEMORY_GB": "memory_gb",
}
"""Environment variable -> setting. Lists (``S2WATCH_AOIS``, ``S2WATCH_NOTIFY``) are comma
separated; ``S2WATCH_REFERENCE`` is ``START/END``. ``S2WATCH_CONFIG`` names the file."""

# (table, key) in the TOML file -> setting
_FILE_KEYS: dict[tuple[str, str], str] = {
    ("output", "root"): "output_root",
    ("output", "state"): "state_path",
    ("monitor", "aois"): "aois",
    ("monitor", "aoi_paths"): "aoi_paths",
    ("monitor", "source"): "source",
    ("monitor", "since"): "since",
    ("monitor", "until"): "until",
    ("monitor", "reference"): "reference",
    ("monitor", "reference_days"): "reference_days",
    ("monitor", "confirm_after"): "confirm_after",
    ("monitor", "max_cloud"): "max_cloud",
    ("monitor", "executor"): "executor",
    ("monitor", "scheduler"): "scheduler",
    ("monitor", "tile_px"): "tile_px",
    ("monitor", "halo_px"): "halo_px",
    ("monitor", "memory_gb"): "memory_gb",
    ("monitor", "fail_on_change"): "fail_on_change",
    ("alerts", "webhooks"): "notify",
    ("alerts", "format"): "notify_format",
    ("alerts", "timeout_s"): "notify_timeout_s",
    ("alerts", "retries"): "notify_retries",
}
_TABLES = {"output", "monitor", "alerts", "thresholds", "sources"}


def default_config_path(env: Mapping[str, str] | None = None) -> Path:
    """``~/.config/s2watch/config.toml`` (``$XDG_CONFIG_HOME`` respected)."""
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "s2watch" / "config.toml"


def _coerce(name: str, value: Any, where: str) -> Any:
    """Convert a raw value (TOML or environment string) for setting ``name``; ConfigError names ``where``."""

    def bad(expect: str) -> ConfigError:
        return ConfigError(f"{where}: value {value!r} is not valid for {name}; expected {expect}")

    try:
        if name in ("output_root", "state_path"):
            if not isinstance(value, (str, os.PathLike)) or not str(value):
                raise bad("a path")
            return Path(os.path.expanduser(str(value)))
        if name in ("aois", "aoi_paths", "notify"):
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
                raise bad("a list of strings (comma separated in the environment)")
            return tuple(value)
        if name in ("since", "until"):
            if isinstance(value, datetime):
                return value.date()
            if isinstance(value, date):
                return value
            if isinstance(value, str):
                return date.fromisoformat(value.strip())
            raise bad("a date YYYY-MM-DD")
        if name == "reference":
            if isinstance(value, str):
                value = value.split("/")
            if not isinstance(value, (list, tuple)) or len(value) != 2:
                raise bad('[START, END] dates (or "START/END" in the environment)')
            a, b = (_coerce("since", v, where) for v in value)
            return (a, b)
        if name in ("reference_days", "confirm_after", "notify_retries", "tile_px", "halo_px"):
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise bad("an integer")
            return int(value)
        if name in ("max_cloud", "notify_timeout_s", "memory_gb"):
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise bad("a number")
            v = float(value)
            if name == "max_cloud" and not 0 <= v <= 100:
                raise bad("a percentage 0-100")
            return v
        if name == "fail_on_change":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                return value.lower() in ("1", "true", "yes", "on")
            raise bad("true or false")
        if name in ("source", "notify_format", "executor", "scheduler"):
            if not isinstance(value, str) or not value:
                raise bad("a non-empty string")
            return value
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise bad(f"a valid value ({exc})") from exc
    raise ConfigError(f"{where}: unknown setting {name!r}")  # pragma: no cover - internal


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: configuration file not found; check --config / S2WATCH_CONFIG") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read configuration file: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    out: dict[str, Any] = {}
    for table, body in doc.items():
        if table not in _TABLES:
            raise ConfigError(f"{path}: unknown table [{table}]; use {', '.join(sorted(_TABLES))}")
        if not isinstance(body, dict):
            raise ConfigError(f"{path}: {table} must be a table ([{table}])")
        if table == "thresholds":
            out["thresholds"] = dict(body)
            continue
        if table == "sources":
            for name, opts in body.items():
                if not isinstance(opts, dict):
                    raise ConfigError(f"{path}: [sources.{name}] must be a table of options")
            out["source_options"] = {k: dict(v) for k, v in body.items()}
            continue
        for key, value in body.items():
            name = _FILE_KEYS.get((table, key))
            if name is None:
                valid = ", ".join(k for (t, k) in _FILE_KEYS if t == table)
                raise ConfigError(f"{path}: unknown key {table}.{key}; valid keys in [{table}]: {valid}")
            shown = MASK if name == "notify" else repr(value)
            try:
                out[name] = _coerce(name, value, f"{path}: {table}.{key}")
                if name in ("output_root", "state_path") and not out[name].is_absolute():
                    out[name] = path.resolve().parent / out[name]
            except ConfigError as exc:
                if name == "notify":  # never echo webhook URLs
                    raise ConfigError(f"{path}: {table}.{key} = {shown} is not a list of URLs") from None
                raise exc
    return out


def load_config(
    path: str | os.PathLike | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Merge command line > environment > file > defaults into a :class:`Config`. Writes nothing.

    Parameters
    ----------
    path : path or None
        ``--config``; else ``$S2WATCH_CONFIG``; else the default path when it exists.
    env : mapping, optional
        The environment (default ``os.environ``).
    overrides : mapping, optional
        Settings from the command line by :class:`Config` field name; ``None`` values are ignored.

    Raises
    ------
    ConfigError
        Naming the file, key or variable and the offending value.
    """
    env = os.environ if env is None else env
    explicit = path if path is not None else (env.get("S2WATCH_CONFIG") or None)
    cfg_path: Path | None = None
    if explicit is not None:
        cfg_path = Path(os.path.expanduser(str(explicit)))
        if not cfg_path.is_file():
            src = "--config" if path is not None else "S2WATCH_CONFIG"
            raise ConfigError(f"{cfg_path}: configuration file not found (from {src})")
    else:
        cand = default_config_path(env)
        if cand.is_file():
            cfg_path = cand
    values: dict[str, Any] = _read_file(cfg_path) if cfg_path is not None else {}
    for var, name in ENV_VARS.items():
        raw = env.get(var)
        if raw is None or raw == "":
            continue
        try:
            values[name] = _coerce(name, raw, f"environment variable {var}")
        except ConfigError:
            if name == "notify":
                raise ConfigError(f"environment variable {var} is not a comma-separated list of URLs") from None
            raise
    known = {f.name for f in fields(Config)}
    for name, value in (overrides or {}).items():
        if value is None:
            continue
        if name not in known:
            raise ConfigError(f"unknown setting {name!r}; valid: {', '.join(sorted(known))}")
        values[name] = _coerce(name, value, f"option for {name}") if name not in ("thresholds", "source_options") else value
    if cfg_path is not None:
        values["config_path"] = cfg_path
    try:
        cfg = Config(**values)
    except ConfigError as exc:
        where = f"{cfg_path}: " if cfg_path is not None else ""
        raise ConfigError(f"{where}{exc}") from None
    # relative paths in the file are relative to the file (done in _read_file); others to the cwd
    root = cfg.output_root if cfg.output_root.is_absolute() else Path.cwd() / cfg.output_root
    state = cfg.state_path
    if state is not None and not state.is_absolute():
        state = Path.cwd() / state
    return replace(cfg, output_root=root, state_path=state)
