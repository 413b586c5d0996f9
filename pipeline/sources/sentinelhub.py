"""Sentinel Hub and Copernicus Data Space (CDSE) through the sentinelhub client.

* search: Catalog API over the AOI's bounding box and dates, ``eo:cloud_cover`` filter, items
  grouped by solar day and platform (adjacent tiles of one pass are one acquisition).
* read: one Process API request per acquisition day (and per tile of at most 2,500 px a side on
  the AOI grid), evalscript returning the bands as UINT16 DN, SCL and dataMask, on the AOI's UTM
  grid at 10 m (bbox in the grid CRS, width/height = grid shape), ``harmonizeValues`` on so the
  +1000 offset of baseline >= 04.00 is removed (``offset`` 0 recorded). Two data sources of the
  same collection (data fusion) let the bands be upsampled bilinear and SCL nearest in one request.
* Processing Units are estimated before any download; ``dry_run`` reports them and downloads
  nothing, ``max_pu`` refuses a run over budget (:class:`~pipeline.errors.QuotaError`).
* Responses are cached as decoded arrays (:mod:`._cache`; the client's own cache would store the
  bearer token in ``request.json``), so a rerun costs nothing.
* Retries follow :mod:`._retry` (429 honours ``Retry-After`` in ms; 5xx with bounded backoff).

Configuration precedence: keyword options (``client_id``, ``client_secret``, ``base_url``,
``token_url``, e.g. from ``[sources.sentinelhub]`` of the s2watch config file) over an ``SHConfig``
passed as ``config`` (used as is) or, without one, ``SH_CLIENT_ID`` / ``SH_CLIENT_SECRET`` over
the profile ``config`` (or ``SH_PROFILE``, or the default profile) of the standard sentinelhub
``config.toml`` if that file exists, over the defaults. The
file is never written (``SHConfig.load`` would create it). ``cdse`` replaces the default Sentinel
Hub endpoints with the Copernicus Data Space ones unless the profile sets others. Secrets never
appear in logs, reprs or error messages.
"""

from __future__ import annotations

import io
import logging
import math
import os
import tarfile
import warnings
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Sequence

import numpy as np

from ..aoi import AOI
from ..errors import (
    AuthenticationError,
    ConfigError,
    DataError,
    QuotaError,
    SourceError,
    SourceUnavailable,
    UsageError,
)
from ..grid import Grid
from ..scene import ALL_BANDS, Acquisition, SceneStack
from ._cache import ArrayCache, request_key
from ._retry import DEFAULT_RETRY, RetryPolicy
from .base import prepare_read

log = logging.getLogger(__name__)

__all__ = ["SentinelHubSource", "SERVICES", "estimate_request_pu", "evalscript", "MAX_PX"]

SH_BASE_URL = "https://services.sentinel-hub.com"
SH_TOKEN_URL = "https://services.sentinel-hub.com/auth/realms/main/protocol/openid-connect/token"
CDSE_BASE_URL = "https://sh.dataspace.copernicus.eu"
CDSE_TOKEN_URL = "https://identity.dataspace.copernicus.eu/auth/realms/CDSE/protocol/openid-connect/token"

SERVICES = {
    "sentinelhub": {"sh_base_url": SH_BASE_URL, "sh_token_url": SH_TOKEN_URL},
    "cdse": {"sh_base_url": CDSE_BASE_URL, "sh_token_url": CDSE_TOKEN_URL},
}
"""Endpoints per service name."""

MAX_PX = 2500
"""Process API limit of output width and height, pixels."""

PU_AREA_PX = 512 * 512
PU_MIN_AREA_FACTOR = 0.01
PU_MIN_REQUEST = 0.005
DEFAULT_CACHE_DIR = "~/.cache/s2watch/sentinelhub"
COLLECTION_ID = "sentinel-2-l2a"


def estimate_request_pu(width: int, height: int, n_input_bands: int, *, bytes_per_sample: int = 2) -> float:
    """Processing Units of one Process API request (Sentinel Hub / CDSE rules).

    ``max(w*h / 512^2, 0.01) * n_input_bands / 3 * format_factor``, at least 0.005 PU, where the
    format factor is 1 for 8/16-bit output and 2 for 32-bit float. ``dataMask`` is not counted.
    """
    area = max(width * height / PU_AREA_PX, PU_MIN_AREA_FACTOR)
    fmt = 2.0 if bytes_per_sample > 2 else 1.0
    return max(area * n_input_bands / 3.0 * fmt, PU_MIN_REQUEST)


def evalscript(bands: Sequence[str]) -> str:
    """The V3 evalscript: data source ``s2`` gives the bands as UINT16 DN (harmonised by the
    request's ``harmonizeValues``), data source ``scl`` gives SCL and dataMask (nearest)."""
    blist = ", ".join(f'"{b}"' for b in bands)
    values = ", ".join(f"s.{b}" for b in bands)
    zeros = ", ".join("0" for _ in bands)
    return f"""//VERSION=3
function setup() {{
  return {{
    input: [
      {{datasource: "s2", bands: [{blist}], units: "DN"}},
      {{datasource: "scl", bands: ["SCL", "dataMask"], units: "DN"}}
    ],
    output: [
      {{id: "bands", bands: {len(bands)}, sampleType: "UINT16"}},
      {{id: "scl", bands: 1, sampleType: "UINT8"}},
      {{id: "dataMask", bands: 1, sampleType: "UINT8"}}
    ]
  }};
}}
function first(x) {{ return Array.isArray(x) ? x[0] : x; }}
function evaluatePixel(samples) {{
  var s = first(samples.s2), c = first(samples.scl);
  if (!s || !c || c.dataMask === 0) {{
    return {{bands: [{zeros}], scl: [0], dataMask: [0]}};
  }}
  return {{bands: [{values}], scl: [c.SCL], dataMask: [c.dataMask]}};
}}
"""


@dataclass(frozen=True)
class _Job:
    """One Process API request: acquisition ``t``, tile window ``(row, col, h, w)`` on the grid."""

    t: int
    window: tuple[int, int, int, int]
    key: str
    download: Any  # sentinelhub DownloadRequest
    day: str


def _tiles(grid: Grid, max_px: int) -> list[tuple[int, int, int, int]]:
    """Windows ``(row, col, height, width)`` of at most ``max_px`` a side covering ``grid``."""
    ny, nx = math.ceil(grid.height / max_px), math.ceil(grid.width / max_px)
    hs = [grid.height // ny + (1 if i < grid.height % ny else 0) for i in range(ny)]
    ws = [grid.width // nx + (1 if i < grid.width % nx else 0) for i in range(nx)]
    out, r = [], 0
    for h in hs:
        c = 0
        for w in ws:
            out.append((r, c, h, w))
            c += w
        r += h
    return out


def _load_config(service: str, config: Any):
    """An SHConfig for ``service`` without ever writing the user's config file."""
    from sentinelhub import SHConfig

    if isinstance(config, SHConfig):
        return config.copy()
    if config is not None and not isinstance(config, str):
        raise ConfigError(f"config must be a sentinelhub SHConfig or a profile name, got {type(config).__name__}")
    path = SHConfig.get_config_location()
    profile = config or os.environ.get("SH_PROFILE")
    if os.path.isfile(path):
        try:
            cfg = SHConfig(profile)  # reads the file and SH_CLIENT_ID/SECRET; writes nothing when the file exists
        except KeyError as exc:
            raise ConfigError(f"{path}: no sentinelhub profile {profile!r}; create it with `sentinelhub.config --profile {profile} ...`") from exc
        except Exception as exc:  # a broken TOML file
            raise ConfigError(f"{path}: unreadable sentinelhub configuration ({type(exc).__name__}); fix or remove it") from exc
    else:
        if config:
            raise ConfigError(f"sentinelhub profile {config!r} requested but {path} does not exist; create it or set SH_CLIENT_ID/SH_CLIENT_SECRET")
        cfg = SHConfig(use_defaults=True)
        cfg.sh_client_id = os.environ.get("SH_CLIENT_ID", "") or ""
        cfg.sh_client_secret = os.environ.get("SH_CLIENT_SECRET", "") or ""
    if service == "cdse" and cfg.sh_base_url.rstrip("/") == SH_BASE_URL:
        cfg.sh_base_url = CDSE_BASE_URL
        if cfg.sh_token_url == SH_TOKEN_URL:
            cfg.sh_token_url = CDSE_TOKEN_URL
    return cfg


def _status(exc) -> int | None:
    req = getattr(exc, "request_exception", None)
    resp = getattr(req, "response", None)
    return getattr(resp, "status_code", None)


class SentinelHubSource:
    """Sentinel-2 L2A from Sentinel Hub (``service="sentinelhub"``) or CDSE (``"cdse"``).

    Parameters
    ----------
    service : {"sentinelhub", "cdse"}
    config : sentinelhub.SHConfig or str, optional
        A ready config, or the name of a profile in sentinelhub's ``config.toml``.
    cache_dir : path, optional
        Cache of decoded responses (default ``~/.cache/s2watch/sentinelhub``); ``False`` disables it.
    max_pu : float, optional
        Budget of Processing Units of one ``read``; over it, :class:`QuotaError` before any download.
    dry_run : bool
        ``read`` estimates PU, logs them and downloads nothing (the stack is all no-data).
    max_cloud : float, optional
        Default scene cloud cover limit, percent.
    retry : RetryPolicy
        Mapped onto the client's ``max_download_attempts`` / ``download_sleep_time`` (the client
        multiplies the sleep by 3 each time) / ``max_retries`` (429).
    max_px : int
        Tile size limit of one request, pixels a side (2,500 = the service's limit).
    max_threads : int
        Parallel Process requests.
    page_size : int
        Catalog page size (100 = service maximum).
    client_id, client_secret, base_url, token_url : str, optional
        Override the loaded configuration (so do ``sh_*`` keyword options named like SHConfig
        fields). Precedence: these > ``SH_CLIENT_ID``/``SH_CLIENT_SECRET`` > profile > defaults.
    profile : str, optional
        Same as a string ``config``.
    **options
        Other CLI options are accepted and ignored.
    """

    def __init__(
        self,
        service: str = "sentinelhub",
        *,
        config: Any = None,
        cache_dir: Any = None,
        max_pu: float | None = None,
        dry_run: bool = False,
        max_cloud: float | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        max_px: int = MAX_PX,
        max_threads: int = 2,
        page_size: int = 100,
        name: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        base_url: str | None = None,
        token_url: str | None = None,
        profile: str | None = None,
        **options: Any,
    ):
        if service not in SERVICES:
            raise UsageError(f"unknown Sentinel Hub service {service!r}; use one of {', '.join(SERVICES)}")
        if not 1 <= max_px <= MAX_PX:
            raise UsageError(f"max_px must be 1..{MAX_PX}, got {max_px}")
        if max_pu is not None and max_pu < 0:
            raise UsageError(f"max_pu must be >= 0, got {max_pu}")
        self.service = service
        self.name = name or service
        self.config = _load_config(service, config if config is not None else profile)
        # explicit options (e.g. [sources.sentinelhub] of the s2watch config file) beat env and file
        explicit = {"sh_client_id": client_id, "sh_client_secret": client_secret, "sh_base_url": base_url, "sh_token_url": token_url}
        explicit.update({k: v for k, v in options.items() if k.startswith("sh_") and hasattr(self.config, k)})
        for key, value in explicit.items():
            if value not in (None, ""):
                setattr(self.config, key, value)
        retry.apply_to_shconfig(self.config)
        self.retry = retry
        if cache_dir is False:
            cache_dir = None
        elif cache_dir is None:
            cache_dir = DEFAULT_CACHE_DIR
        self.cache = ArrayCache(cache_dir)
        self.max_pu = max_pu
        self.dry_run = bool(dry_run)
        self.default_max_cloud = max_cloud
        self.max_px = int(max_px)
        self.max_threads = int(max_threads)
        self.page_size = int(page_size)
        self.last_pu_estimate: float | None = None
        self.rate_limited = 0

    def __repr__(self) -> str:
        return f"SentinelHubSource(service={self.service!r}, base_url={self.config.sh_base_url!r}, cache={self.cache.root!s})"

    # --------------------------------------------------------------------------------------------
    # helpers

    def _collection(self):
        from sentinelhub import DataCollection

        # service_url=None: the configured base URL wins (the stock collection pins services.sentinel-hub.com)
        return DataCollection.SENTINEL2_L2A.define_from("S2WATCH_SENTINEL2_L2A", service_url=None)

    def _check_credentials(self) -> None:
        if not (self.config.sh_client_id and self.config.sh_client_secret):
            raise ConfigError(
                f"{self.name}: no OAuth client credentials; set SH_CLIENT_ID and SH_CLIENT_SECRET, or a profile in "
                f"{_config_location()} (sentinelhub.config --sh_client_id ... --sh_client_secret ...)"
            )

    def _translate(self, exc: BaseException, what: str) -> Exception:
        """One clear PipelineError for any failure of the client."""
        from oauthlib.oauth2.rfc6749.errors import OAuth2Error
        import requests
        from sentinelhub.exceptions import DownloadFailedException, OutOfRequestsException

        if isinstance(exc, OutOfRequestsException):
            return QuotaError(f"{self.name}: {what}: rate limit (HTTP 429) persisted for {self.retry.max_429} attempts; rerun later or lower the request rate")
        if isinstance(exc, OAuth2Error):
            return AuthenticationError(
                f"{self.name}: credentials rejected by {self.config.sh_token_url} ({exc.error}); check SH_CLIENT_ID/SH_CLIENT_SECRET or the profile"
            )
        if isinstance(exc, ValueError) and "sh_client_id" in str(exc):
            return ConfigError(f"{self.name}: no OAuth client credentials; set SH_CLIENT_ID and SH_CLIENT_SECRET")
        status = _status(exc)
        if isinstance(exc, requests.HTTPError) and exc.response is not None:
            status = exc.response.status_code
        if status == 401:
            return AuthenticationError(f"{self.name}: {what}: HTTP 401 unauthorized; check the OAuth client credentials")
        if status == 403:
            msg = str(exc).lower()
            if any(w in msg for w in ("quota", "processing unit", "insufficient", "exceeded")):
                return QuotaError(f"{self.name}: {what}: processing-unit quota exhausted (HTTP 403); wait for the quota to renew or raise it")
            return AuthenticationError(f"{self.name}: {what}: HTTP 403 forbidden; the account may lack access to this service")
        if status == 429:
            return QuotaError(f"{self.name}: {what}: rate limited (HTTP 429); rerun later")
        network = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
        if (status is not None and status >= 500) or isinstance(exc, network) or isinstance(getattr(exc, "request_exception", None), network):
            return SourceUnavailable(
                f"{self.name}: {what}: service unavailable after {self.retry.attempts} attempts "
                f"({'HTTP ' + str(status) if status else type(exc).__name__}); rerun later (finished parts are cached)"
            )
        if isinstance(exc, DownloadFailedException):
            return SourceError(f"{self.name}: {what}: request rejected (HTTP {status}): {_server_message(exc)}")
        return SourceError(f"{self.name}: {what}: {type(exc).__name__}: {_first_line(exc)}")

    def _quiet_warnings(self):
        from sentinelhub.exceptions import SHRateLimitWarning

        ctx = warnings.catch_warnings(record=True)
        return ctx, SHRateLimitWarning

    # --------------------------------------------------------------------------------------------
    # search

    def search(self, aoi: AOI, start: date, end: date, *, max_cloud: float | None = None) -> list[Acquisition]:
        """Catalog search over the AOI, ``start``..``end`` inclusive, grouped by solar day.

        Raises
        ------
        AuthenticationError, QuotaError, SourceUnavailable, ConfigError
        """
        from sentinelhub import CRS, BBox, SentinelHubCatalog

        self._check_credentials()
        max_cloud = self.default_max_cloud if max_cloud is None else max_cloud
        lon = aoi.centroid_lonlat[0]
        t0 = datetime.combine(start - timedelta(days=1), time.min, tzinfo=timezone.utc)
        t1 = datetime.combine(end + timedelta(days=1), time(23, 59, 59), tzinfo=timezone.utc)
        kwargs: dict[str, Any] = {"bbox": BBox(aoi.geometry.bounds, crs=CRS.WGS84), "time": (t0, t1), "limit": self.page_size}
        if max_cloud is not None:
            kwargs["filter"] = f"eo:cloud_cover < {float(max_cloud):g}"
        rec, rate_warning = self._quiet_warnings()
        try:
            with rec as caught:
                warnings.simplefilter("always", rate_warning)
                catalog = SentinelHubCatalog(config=self.config)
                feats = list(catalog.search(COLLECTION_ID, **kwargs))
            self._count_rate(caught, rate_warning)
        except Exception as exc:
            raise self._translate(exc, "Catalog search") from exc
        groups: dict[tuple, list[dict]] = {}
        for f in feats:
            t = _parse_dt(f["properties"]["datetime"])
            day = (t + timedelta(hours=lon / 15.0)).date()
            if not start <= day <= end:
                continue
            plat = str(f["properties"].get("platform") or "sentinel-2").lower()
            groups.setdefault((day, plat), []).append(f)
        if not groups:
            log.warning(
                "%s: no Sentinel-2 L2A acquisitions over AOI %s between %s and %s%s",
                self.name, aoi.id, start, end, f" with cloud cover below {max_cloud}%" if max_cloud is not None else "",
            )  # fmt: skip
        acqs = []
        for (day, plat), fs in sorted(groups.items()):
            fs.sort(key=lambda f: f["id"])
            ccs = [float(f["properties"]["eo:cloud_cover"]) for f in fs if f["properties"].get("eo:cloud_cover") is not None]
            baselines = [str(f["properties"].get("s2:processing_baseline", "")) for f in fs]
            acqs.append(
                Acquisition(
                    id="+".join(f["id"] for f in fs),
                    time=min(_parse_dt(f["properties"]["datetime"]) for f in fs),
                    platform=plat,
                    processing_baseline=max(baselines),
                    offset=0,  # harmonizeValues: the service removes the baseline-04.00 offset
                    cloud_cover=float(np.mean(ccs)) if ccs else None,
                    source=self.name,
                    level="L2A",
                    extra={"items": [f["id"] for f in fs], "epsg": sorted({f["properties"].get("proj:epsg") for f in fs} - {None})},
                )
            )
        if self.dry_run and acqs:
            log.warning(
                "%s: dry run: reading these %d acquisitions would cost about %.3f PU (%d requests); nothing downloaded",
                self.name, len(acqs), self.estimate_pu(aoi, acqs), len(acqs) * len(_tiles(aoi.grid(), self.max_px)),
            )  # fmt: skip
        return acqs

    # --------------------------------------------------------------------------------------------
    # Processing Units

    def _jobs(self, acqs: Sequence[Acquisition], grid: Grid, bands: tuple[str, ...]) -> list[_Job]:
        from sentinelhub import CRS, BBox, MimeType, SentinelHubRequest

        coll = self._collection()
        script = evalscript(bands)
        jobs = []
        for t, acq in enumerate(acqs):
            tt = acq.time.astimezone(timezone.utc)
            interval = ((tt - timedelta(hours=1)).replace(tzinfo=None), (tt + timedelta(hours=1)).replace(tzinfo=None))
            for win in _tiles(grid, self.max_px):
                sub = grid.window(*win)
                req = SentinelHubRequest(
                    evalscript=script,
                    input_data=[
                        SentinelHubRequest.input_data(
                            coll, time_interval=interval,
                            other_args={"id": "s2", "processing": {"upsampling": "BILINEAR", "downsampling": "BILINEAR", "harmonizeValues": True}},
                        ),
                        SentinelHubRequest.input_data(
                            coll, time_interval=interval,
                            other_args={"id": "scl", "processing": {"upsampling": "NEAREST", "downsampling": "NEAREST", "harmonizeValues": True}},
                        ),
                    ],
                    responses=[
                        SentinelHubRequest.output_response("bands", MimeType.TIFF),
                        SentinelHubRequest.output_response("scl", MimeType.TIFF),
                        SentinelHubRequest.output_response("dataMask", MimeType.TIFF),
                    ],
                    bbox=BBox(sub.bounds, crs=CRS(grid.epsg)),
                    size=(sub.width, sub.height),
                    config=self.config,
                )  # fmt: skip
                dr = req.download_list[0]
                key = request_key({"url": dr.url, "payload": dr.post_values})
                jobs.append(_Job(t, win, key, dr, acq.date.isoformat()))
        return jobs

    def _jobs_pu(self, jobs: Sequence[_Job], n_bands: int) -> float:
        return float(sum(estimate_request_pu(j.window[3], j.window[2], n_bands + 1) for j in jobs))

    def estimate_pu(self, aoi: AOI, acquisitions: Sequence[Acquisition], *, grid: Grid | None = None, bands: Sequence[str] = ALL_BANDS) -> float:
        """Processing Units a ``read`` of these acquisitions costs without any cache: one request
        per acquisition and tile, input bands = ``bands`` + SCL (dataMask is free)."""
        grid = grid or aoi.grid()
        n_in = len(tuple(bands)) + 1
        per_acquisition = sum(estimate_request_pu(w, h, n_in) for (_, _, h, w) in _tiles(grid, self.max_px))
        return float(len(acquisitions) * per_acquisition)

    # --------------------------------------------------------------------------------------------
    # read

    def read(
        self, aoi: AOI, acquisitions: Sequence[Acquisition], *, grid: Grid | None = None, bands: Sequence[str] = ALL_BANDS
    ) -> SceneStack:
        """Download (or take from the cache) one Process request per acquisition and tile.

        Returns
        -------
        SceneStack
            ``data`` (T, B, H, W) uint16 harmonised DN (``offset`` 0), ``valid`` = dataMask,
            ``scl`` (T, H, W) uint8.

        Raises
        ------
        QuotaError
            The estimate for the uncached requests exceeds ``max_pu`` (nothing downloaded), or the
            service reports the quota exhausted / keeps rate limiting.
        AuthenticationError, ConfigError, SourceUnavailable, DataError
            Finished requests stay cached, so a rerun only fetches the rest.

        Notes
        -----
        Memory: the result, about ``T * H * W * (2 B + 2)`` bytes, plus one response at a time.
        """
        grid, bands, acqs = prepare_read(self.name, aoi, acquisitions, grid, bands)
        T, (H, W) = len(acqs), grid.shape
        data = np.zeros((T, len(bands), H, W), np.uint16)
        valid = np.zeros((T, H, W), bool)
        scl = np.zeros((T, H, W), np.uint8)
        stack_acqs = tuple(a if a.offset == 0 else _with_offset0(a) for a in acqs)
        jobs = self._jobs(acqs, grid, bands)
        cached, todo = {}, []
        for j in jobs:
            arrays = None if self.dry_run else self.cache.get(j.key)
            if arrays is None:
                todo.append(j)
            else:
                cached[j.key] = arrays
        pu = self._jobs_pu(todo, len(bands))
        self.last_pu_estimate = pu
        log.info(
            "%s: %d Process requests for %d acquisitions (%d cached); estimated %.3f PU",
            self.name, len(jobs), T, len(jobs) - len(todo), pu,
        )  # fmt: skip
        if self.dry_run:
            raise UsageError(
                f"{self.name}: dry run: reading would take {len(todo)} Process requests, about {pu:.3f} PU; "
                "nothing was downloaded (drop --dry-run to read the data)"
            )
        if self.max_pu is not None and pu > self.max_pu:
            raise QuotaError(
                f"{self.name}: estimated {pu:.3f} PU for {len(todo)} requests exceeds the budget max_pu={self.max_pu:g}; "
                "raise --max-pu, shorten the dates or shrink the AOI"
            )
        if todo:
            self._check_credentials()
            self._download(todo, cached, len(bands))
        for j in jobs:
            r, c, h, w = j.window
            a = cached[j.key]
            data[j.t, :, r : r + h, c : c + w] = a["bands"]
            valid[j.t, r : r + h, c : c + w] = a["dataMask"].astype(bool)
            scl[j.t, r : r + h, c : c + w] = a["scl"]
        data[~np.broadcast_to(valid[:, None], data.shape)] = 0
        return SceneStack(grid, bands, data, valid, scl, stack_acqs)

    def _download(self, todo: list[_Job], out: dict, n_bands: int) -> None:
        from sentinelhub import SentinelHubDownloadClient

        by_key = {j.key: j for j in todo}
        source = self

        class _Client(SentinelHubDownloadClient):
            def _process_response(self, request, response):
                key = request_key({"url": request.url, "payload": request.post_values})
                job = by_key[key]
                arrays = source._decode(response.content, job, n_bands)  # raises DataError: nothing cached
                source.cache.put(key, arrays)
                out[key] = arrays
                return response

        for attempt in (1, 2):
            pending = [j for j in todo if j.key not in out]
            if not pending:
                break
            rec, rate_warning = self._quiet_warnings()
            client = _Client(config=self.config)
            try:
                with rec as caught:
                    warnings.simplefilter("always", rate_warning)
                    client.download([j.download for j in pending], max_threads=self.max_threads, decode_data=False)
                self._count_rate(caught, rate_warning)
            except DataError:
                raise
            except Exception as exc:
                if attempt == 1 and _status(exc) == 401:  # token revoked or expired early: new session once
                    log.info("%s: HTTP 401 on a Process request; fetching a new token and retrying once", self.name)
                    SentinelHubDownloadClient._CACHED_SESSIONS.pop((self.config.sh_client_id, self.config.sh_base_url), None)
                    continue
                raise self._translate(exc, f"Process request ({len(out)}/{len(todo)} done)") from exc
        missing = [j for j in todo if j.key not in out]
        if missing:
            raise SourceError(f"{self.name}: {len(missing)} Process requests returned nothing; rerun")

    def _count_rate(self, caught, rate_warning) -> None:
        n = sum(1 for w in caught if issubclass(w.category, rate_warning))
        if n:
            self.rate_limited += n
            log.info("%s: rate limited %d times (HTTP 429); waited as the service asked", self.name, n)
        for w in caught:
            if not issubclass(w.category, rate_warning):
                log.warning("%s: %s", self.name, w.message)

    def _decode(self, content: bytes, job: _Job, n_bands: int) -> dict[str, np.ndarray]:
        """Decode and check the tar of one Process response."""
        import tifffile

        r, c, h, w = job.window
        where = f"{self.name}: Process response for {job.day} tile at row {r} col {c}"
        try:
            arrays = {}
            with tarfile.open(fileobj=io.BytesIO(content), mode="r:") as tar:
                for m in tar.getmembers():
                    name = m.name.rsplit(".", 1)[0]
                    fh = tar.extractfile(m)
                    if fh is None or not m.name.endswith((".tif", ".tiff")):
                        continue
                    arrays[name] = tifffile.imread(io.BytesIO(fh.read()))
        except Exception as exc:  # tarfile / tifffile raise many types on torn data
            raise DataError(f"{where} is corrupt or truncated ({type(exc).__name__}: {_first_line(exc)}); nothing was cached, rerun") from exc
        missing = [k for k in ("bands", "scl", "dataMask") if k not in arrays]
        if missing:
            raise DataError(f"{where} lacks output(s) {', '.join(missing)}; nothing was cached, rerun")
        b = arrays["bands"]
        if b.ndim == 2:
            b = b[..., None]
        if b.shape != (h, w, n_bands) or arrays["scl"].shape[:2] != (h, w) or arrays["dataMask"].shape[:2] != (h, w):
            raise DataError(
                f"{where}: unexpected shapes bands {b.shape}, scl {arrays['scl'].shape}, dataMask {arrays['dataMask'].shape} "
                f"(want {(h, w, n_bands)}); nothing was cached"
            )
        return {
            "bands": np.ascontiguousarray(np.moveaxis(b.astype(np.uint16, copy=False), -1, 0)),
            "scl": arrays["scl"].reshape(h, w).astype(np.uint8, copy=False),
            "dataMask": arrays["dataMask"].reshape(h, w).astype(np.uint8, copy=False),
        }


def _with_offset0(a: Acquisition) -> Acquisition:
    from dataclasses import replace

    return replace(a, offset=0)


def _parse_dt(s: str) -> datetime:
    return datetime.fromisoformat(str(s).replace("Z", "+00:00")).astimezone(timezone.utc)


def _server_message(exc: BaseException) -> str:
    """The service's own error message (JSON ``error.message`` or the start of the body); never headers."""
    resp = getattr(getattr(exc, "request_exception", None), "response", None)
    if resp is None:
        return _first_line(exc)
    try:
        err = resp.json().get("error")
        if isinstance(err, dict):
            return " ".join(str(err.get(k)) for k in ("code", "message") if err.get(k))[:300] or str(err)[:300]
        if err:
            return str(err)[:300]
    except ValueError:
        pass
    return (resp.text or "").strip().splitlines()[0][:300] if (resp.text or "").strip() else f"HTTP {resp.status_code}"


def _first_line(exc: BaseException) -> str:
    s = str(exc).strip().splitlines()
    return s[0][:300] if s else type(exc).__name__


def _config_location() -> str:
    from sentinelhub import SHConfig

    return SHConfig.get_config_location()
