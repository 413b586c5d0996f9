"""STAC sources: any STAC API (:class:`StacApiSource`: Earth Search, Planetary Computer, a URL)
and a static catalog on disk (:class:`LocalStacSource`).

Both turn STAC items into :class:`~pipeline.scene.Acquisition` s the same way:

* bands are resolved from asset keys and ``eo:bands`` (Earth Search ``blue ... swir22, scl``,
  Planetary Computer ``B02 ... B12, B8A, SCL``, a local catalog ``B02 ...``);
* the DN offset is decided per item from metadata, never from dates: ``s2:processing_baseline``
  >= 04.00 means +1000 unless ``earthsearch:boa_offset_applied`` is true;
* items of one solar day and platform are one acquisition: duplicates of a tile (Earth Search
  ``_0``/``_1``, reprocessings) keep the newest baseline, other tiles are mosaicked first-valid;
* L1C collections give ``level="L1C"`` and no SCL (the pipeline then masks clouds another way).

``read`` reads only the AOI window of each COG asset (range requests for ``http(s)`` hrefs),
reprojected once onto the AOI grid: 20 m bands bilinear, SCL nearest, items from two UTM zones
mosaicked into one seamless stack.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..aoi import AOI
from ..errors import AuthenticationError, DataError, SourceError, SourceUnavailable, UsageError
from ..grid import Grid
from ..scene import ALL_BANDS, Acquisition, SceneStack
from ._cache import ArrayCache, request_key
from ._reproject import mosaic_first_valid, read_to_grid
from ._retry import DEFAULT_RETRY, RetryPolicy
from .base import prepare_read

log = logging.getLogger(__name__)

__all__ = ["StacApiSource", "LocalStacSource", "item_band_assets", "item_offset", "items_to_acquisitions"]

S2_BAND_RE = re.compile(r"^B(0?[1-9]|1[0-2]|8A)$", re.IGNORECASE)

EARTH_SEARCH_KEYS = {
    "coastal": "B01", "blue": "B02", "green": "B03", "red": "B04", "rededge1": "B05", "rededge2": "B06",
    "rededge3": "B07", "nir": "B08", "nir08": "B8A", "nir09": "B09", "cirrus": "B10", "swir16": "B11",
    "swir22": "B12", "scl": "SCL",
}  # fmt: skip
"""Earth Search v1 asset keys."""

COMMON_NAMES = {
    "coastal": "B01", "blue": "B02", "green": "B03", "red": "B04", "nir": "B08", "nir08": "B8A",
    "nir09": "B09", "cirrus": "B10", "swir16": "B11", "swir22": "B12",
}  # fmt: skip
"""eo:bands common names that identify one Sentinel-2 band (``rededge`` is ambiguous)."""

DEFAULT_COLLECTION = "sentinel-2-l2a"
_NOT_RASTER = ("xml", "json", "png", "image/jpeg", "text/", "html")


def _norm_band(name: str) -> str | None:
    n = name.strip().upper()
    if n == "SCL":
        return "SCL"
    m = S2_BAND_RE.match(n)
    if not m:
        return None
    num = m.group(1).upper()
    return "B8A" if num == "8A" else f"B{int(num):02d}"


def item_band_assets(item) -> dict[str, str]:
    """Map Sentinel-2 band names (``B02`` ... ``B12``, ``B8A``, ``SCL``) to asset keys of a
    ``pystac.Item``. COG/GeoTIFF assets are preferred; JPEG2000 ones (Earth Search L1C has only
    those) are used for bands without a COG; metadata and preview assets are skipped."""
    ranked: dict[str, tuple[int, str]] = {}
    for key, asset in item.assets.items():
        mtype = (asset.media_type or "").lower()
        if any(w in mtype for w in _NOT_RASTER):
            continue
        jp2 = "jp2" in mtype or "jpeg2000" in mtype or key.lower().endswith(("-jp2", "_jp2"))
        base = re.sub(r"[-_]jp2$", "", key, flags=re.IGNORECASE)
        bands = asset.extra_fields.get("eo:bands") or asset.extra_fields.get("bands") or []
        band = None
        if len(bands) == 1 and isinstance(bands[0], dict):
            band = _norm_band(str(bands[0].get("name", "")))
        if band is None:
            band = _norm_band(base)
        if band is None and base.lower() in EARTH_SEARCH_KEYS:
            band = EARTH_SEARCH_KEYS[base.lower()]
        if band is None and len(bands) == 1 and isinstance(bands[0], dict):
            band = COMMON_NAMES.get(str(bands[0].get("common_name", "")).lower())
        if band is None:
            continue
        rank = (1 if jp2 else 0, key)
        if band not in ranked or rank < ranked[band]:
            ranked[band] = rank
    return {band: key for band, (_, key) in ranked.items()}


def _baseline(props: dict, item_id: str) -> str:
    b = props.get("s2:processing_baseline") or props.get("processing:version") or ""
    if not b:
        m = re.search(r"_N(\d{2})(\d{2})_", item_id)
        if m:
            b = f"{m.group(1)}.{m.group(2)}"
    return str(b)


def _baseline_value(b: str) -> float:
    try:
        return float(b)
    except ValueError:
        return -1.0


def item_offset(item) -> int:
    """DN offset of an item's data from its metadata: 1000 when ``s2:processing_baseline`` is
    04.00 or newer and ``earthsearch:boa_offset_applied`` is not true, else 0."""
    props = item.properties
    if props.get("earthsearch:boa_offset_applied") is True:
        return 0
    b = _baseline_value(_baseline(props, item.id))
    return 1000 if b >= 4.0 else 0


def _item_epsg(item) -> int | None:
    p = item.properties
    if p.get("proj:epsg"):
        return int(p["proj:epsg"])
    code = p.get("proj:code")
    if isinstance(code, str) and code.upper().startswith("EPSG:"):
        return int(code.split(":")[1])
    return None


def _item_level(item) -> str:
    text = " ".join(
        str(x) for x in (item.collection_id, item.id, item.properties.get("s2:product_type"), item.properties.get("processing:level"))
    ).upper()
    return "L1C" if ("L1C" in text or "1C" in str(item.properties.get("s2:product_type", "")).upper()) else "L2A"


def _platform(item) -> str:
    p = str(item.properties.get("platform") or "").lower().replace("_", "-")
    m = re.match(r"^(?:sentinel-?)?2([abcd])$", p)
    if m:
        return f"sentinel-2{m.group(1)}"
    m = re.match(r"^S2([ABCD])", item.id)
    if m:
        return f"sentinel-2{m.group(1).lower()}"
    return p or "sentinel-2"


def _tile(item) -> str:
    p = item.properties
    for k in ("s2:mgrs_tile", "grid:code", "mgrs:tile"):
        if p.get(k):
            return str(p[k]).replace("MGRS-", "")
    m = re.search(r"T?(\d{2}[C-X][A-Z]{2})", item.id)
    return m.group(1) if m else item.id


def _sequence(item) -> int:
    m = re.search(r"_(\d+)_L(?:2A|1C)$", item.id)
    return int(m.group(1)) if m else 0


def _item_time(item) -> datetime:
    t = item.datetime or item.common_metadata.start_datetime
    if t is None:
        raise DataError(f"STAC item {item.id}: no datetime")
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.astimezone(timezone.utc)


def _solar_day(t: datetime, lon: float) -> date:
    return (t + timedelta(hours=lon / 15.0)).date()


def items_to_acquisitions(
    items: Iterable, aoi: AOI, *, source: str, max_cloud: float | None = None, href=lambda item, key: item.assets[key].href
) -> list[Acquisition]:
    """Group STAC items into acquisitions, one per solar day and platform.

    Within a group, items of the same tile are duplicates: the newest processing baseline wins,
    then the highest Earth Search sequence number, then the latest ``updated``. The remaining
    items (adjacent tiles, other UTM zones) are mosaicked first-valid in order of cloud cover.
    Items with ``eo:cloud_cover`` above ``max_cloud`` are dropped.
    """
    lon = aoi.centroid_lonlat[0]
    groups: dict[tuple, list] = defaultdict(list)
    dropped_cloud = 0
    n = 0
    for item in items:
        n += 1
        cc = item.properties.get("eo:cloud_cover")
        if max_cloud is not None and cc is not None and float(cc) > max_cloud:
            dropped_cloud += 1
            continue
        t = _item_time(item)
        groups[(_solar_day(t, lon), _platform(item))].append(item)
    if not groups:
        if n:
            log.warning(
                "%s: %d items over AOI %s but all have cloud cover above %s%%; raise max_cloud or widen the dates",
                source, n, aoi.id, max_cloud,
            )  # fmt: skip
        return []
    acqs = []
    for (day, platform), members in sorted(groups.items()):
        by_tile: dict[str, list] = defaultdict(list)
        for it in members:
            by_tile[_tile(it)].append(it)
        chosen = []
        for tile, dups in by_tile.items():
            dups.sort(
                key=lambda it: (
                    _baseline_value(_baseline(it.properties, it.id)),
                    _sequence(it),
                    str(it.properties.get("updated") or it.properties.get("created") or ""),
                    it.id,
                ),
                reverse=True,
            )
            if len(dups) > 1:
                log.info("%s %s tile %s: kept %s over duplicates %s", source, day, tile, dups[0].id, [d.id for d in dups[1:]])
            chosen.append(dups[0])
        chosen.sort(key=lambda it: (float(it.properties.get("eo:cloud_cover") or 0.0), it.id))
        offsets = {item_offset(it) for it in chosen}
        levels = {_item_level(it) for it in chosen}
        level = "L1C" if "L1C" in levels else "L2A"
        records = []
        for it in chosen:
            assets = item_band_assets(it)
            records.append(
                {
                    "id": it.id,
                    "collection": it.collection_id,
                    "assets": {b: href(it, k) for b, k in assets.items()},
                    "offset": item_offset(it),
                    "epsg": _item_epsg(it),
                    "level": _item_level(it),
                }
            )
        ccs = [float(it.properties["eo:cloud_cover"]) for it in chosen if it.properties.get("eo:cloud_cover") is not None]
        baselines = [_baseline(it.properties, it.id) for it in chosen]
        acqs.append(
            Acquisition(
                id="+".join(it.id for it in chosen),
                time=min(_item_time(it) for it in chosen),
                platform=platform,
                processing_baseline=max(baselines, key=_baseline_value) if baselines else "",
                offset=offsets.pop() if len(offsets) == 1 else 0,
                cloud_cover=float(np.mean(ccs)) if ccs else None,
                source=source,
                level=level,
                extra={"items": records},
            )
        )
    if level_l1c := [a for a in acqs if a.level == "L1C"]:
        log.info(
            "%s: %d L1C acquisitions have no SCL; the pipeline masks clouds without it", source, len(level_l1c)
        )
    return sorted(acqs, key=lambda a: a.time)


class _StacReader:
    """The shared ``read`` of both STAC sources."""

    name: str
    retry: RetryPolicy
    cache: ArrayCache
    max_threads: int = 4

    def _sign(self, href: str) -> str:
        return href

    def read(
        self, aoi: AOI, acquisitions: Sequence[Acquisition], *, grid: Grid | None = None, bands: Sequence[str] = ALL_BANDS
    ) -> SceneStack:
        """Read acquisitions onto ``grid`` (default ``aoi.grid()``).

        Returns
        -------
        SceneStack
            ``data`` (T, B, H, W) uint16 DN as delivered (offset recorded per acquisition),
            ``valid`` where every band has data, ``scl`` (T, H, W) uint8 or None when any
            acquisition is L1C.

        Raises
        ------
        NoDataError
            ``acquisitions`` is empty.
        DataError
            An item lacks a requested band, or a file is corrupt.
        SourceUnavailable
            A server could not be reached; already read acquisitions stay cached.

        Notes
        -----
        Memory: about ``T * H * W * (2 B + 2)`` bytes for the result plus one band being warped.
        """
        grid, bands, acqs = prepare_read(self.name, aoi, acquisitions, grid, bands)
        T, (H, W) = len(acqs), grid.shape
        data = np.zeros((T, len(bands), H, W), np.uint16)
        valid = np.zeros((T, H, W), bool)
        with_scl = all(a.level != "L1C" for a in acqs)
        scl = np.zeros((T, H, W), np.uint8) if with_scl else None
        if not with_scl:
            log.info("%s: L1C data in the request: no SCL, stack.scl is None", self.name)
        for t, acq in enumerate(acqs):
            items = acq.extra.get("items")
            if not items:
                raise UsageError(f"acquisition {acq.id} was not produced by a STAC source (no item records); search with {self.name}")
            key = request_key(
                {"source": "stac", "items": [(r["id"], r["collection"]) for r in items], "grid": grid.to_dict(), "bands": bands, "scl": with_scl, "offset": acq.offset}
            )
            arrays = self.cache.get(key)
            if arrays is None:  # decoded straight into the stack's slices
                arrays = self._read_acquisition(
                    acq, items, grid, bands, with_scl, out=(data[t], valid[t], scl[t] if scl is not None else None)
                )
                self.cache.put(key, arrays)
            else:
                data[t] = arrays["data"]
                valid[t] = arrays["valid"]
                if scl is not None:
                    scl[t] = arrays["scl"]
        return SceneStack(grid, bands, data, valid, scl, tuple(acqs))

    def _read_acquisition(self, acq: Acquisition, items: list[dict], grid: Grid, bands: tuple[str, ...], with_scl: bool, out=None):
        """The acquisition's ``data`` (B, H, W) uint16, ``valid`` and ``scl`` on ``grid``, mosaicked
        first-valid over its items; written into ``out = (data, valid, scl)`` when given."""
        from ..kernels import _numba as K

        H, W = grid.shape
        data, valid, scl = out if out is not None else (None, None, None)
        data = np.zeros((len(bands), H, W), np.uint16) if data is None else data
        valid = np.zeros((H, W), bool) if valid is None else valid
        scl = np.zeros((H, W), np.uint8) if scl is None else scl
        for n, rec in enumerate(items):
            need = list(bands) + (["SCL"] if with_scl else [])
            missing = [b for b in need if b not in rec["assets"]]
            if missing:
                raise DataError(
                    f"{self.name}: item {rec['id']} lacks band(s) {', '.join(missing)} "
                    f"(has {', '.join(sorted(rec['assets'])) or 'none'}); choose another collection or fewer bands"
                )
            # bilinear for all reflectance (exact on an aligned 10 m grid, smooth for 20 m), SCL nearest;
            # the assets are read in parallel (each read is mostly waiting for HTTP ranges); the first
            # item (often the only one) is decoded straight into the output, with no mosaic copy
            first = n == 0
            layer = data if first else np.empty((len(bands), H, W), np.uint16)
            lscl = scl if first else np.empty((H, W), np.uint8)
            jobs = [(rec["assets"][b], "bilinear", "uint16", layer[k]) for k, b in enumerate(bands)]
            if with_scl:
                jobs.append((rec["assets"]["SCL"], "nearest", "uint8", lscl))
            pool = _read_pool(self.max_threads)
            futures = [pool.submit(self._read_band, href, grid, rs, dt, o) for href, rs, dt, o in jobs]
            try:
                _warm_up_dn_valid()  # numba's first dispatch, here while GDAL decodes
                for f in futures:
                    f.result()
            finally:  # on an error, let the other bands finish before their arrays are dropped
                wait(futures)
            shift = int(rec["offset"]) - int(acq.offset)
            lvalid = valid if first else np.empty((H, W), bool)
            # one parallel pass: data in every band; the first item (no offset to move) also gets 0 in
            # every band where any band has no data, as a mosaic into empty arrays leaves it
            K.dn_valid(layer, lvalid, first and not shift)
            if shift:  # items of one day with different offsets: harmonise to the acquisition's
                layer = np.where(lvalid, np.clip(layer.astype(np.int32) - shift, 1, 65535), 0).astype(np.uint16)
            if first:
                if shift:
                    data[...] = layer
                if with_scl:
                    np.copyto(scl, 0, where=~lvalid)
                continue
            take = lvalid & ~valid
            if with_scl:
                np.copyto(scl, lscl, where=take)
            mosaic_first_valid(data, valid, layer, lvalid)
        return {"data": data, "valid": valid, "scl": scl}

    def _read_band(self, href: str, grid: Grid, resampling: str, dtype: str, out: np.ndarray | None = None) -> np.ndarray:
        return read_to_grid(self._sign(href), grid, resampling=resampling, dtype=dtype, policy=self.retry, out=out)


_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _read_pool(max_threads: int) -> ThreadPoolExecutor:
    """The process's pool of ``max_threads`` asset-reading threads, started on first use and kept
    (a tiled whole-tile run reads about 300 band sets: a pool per read spent 18 ms starting each
    thread while the detection's threads held the GIL). Keyed by process id too, so a forked
    worker (dask, multiprocessing) starts its own instead of using threads it does not have."""
    key = (os.getpid(), max(1, int(max_threads)))
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            pool = _POOLS[key] = ThreadPoolExecutor(max_workers=key[1], thread_name_prefix="s2watch-read")
        return pool


_dn_valid_ready = False


def _warm_up_dn_valid() -> None:
    """Call ``dn_valid`` once on a pixel of the same types as the reads' (3-D uint16, 2-D bool):
    the first call in a process loads the cached kernel and starts numba's threads (about
    0.15 s), which the first read then spends while its bands decode instead of after."""
    global _dn_valid_ready
    if _dn_valid_ready:
        return
    from ..kernels import _numba as K

    K.dn_valid(np.ones((1, 1, 1), np.uint16), np.zeros((1, 1), bool), True)
    _dn_valid_ready = True


class LocalStacSource(_StacReader):
    """A static STAC catalog on disk (a folder with ``catalog.json``, or the file itself).

    Parameters
    ----------
    path : str or path
    cache_dir : path, optional
        Cache of decoded reads (off by default: local reads are cheap).
    retry : RetryPolicy, optional
    max_threads : int
        Assets read in parallel.
    **options
        Other CLI options (``max_cloud`` is the default cloud limit; ``dry_run``, ``max_pu``...
        are accepted and ignored).
    """

    def __init__(
        self,
        path: "str | os.PathLike",
        *,
        cache_dir=None,
        retry: RetryPolicy = DEFAULT_RETRY,
        name: str | None = None,
        max_threads: int = 4,
        **options: Any,
    ):
        p = Path(path)
        if p.is_dir():
            p = p / "catalog.json"
        if not p.is_file():
            raise UsageError(f"{path}: no STAC catalog here (expected catalog.json); build one with `s2watch stac build DIR`")
        self.path = p
        self.max_threads = int(max_threads)
        self.name = name or f"local:{p.parent.name}"
        self.retry = retry
        self.cache = ArrayCache(cache_dir)
        self._catalog = None
        self.default_max_cloud = options.get("max_cloud")

    def __repr__(self) -> str:
        return f"LocalStacSource({str(self.path)!r})"

    def _items(self) -> list:
        import pystac

        if self._catalog is None:
            try:
                self._catalog = pystac.read_file(str(self.path))
            except Exception as exc:  # pystac raises several types for a broken catalog
                raise DataError(f"{self.path}: not a readable STAC catalog ({exc}); rebuild it with `s2watch stac build`") from exc
        cat = self._catalog
        if isinstance(cat, pystac.Item):
            return [cat]
        return list(cat.get_items(recursive=True))

    def search(self, aoi: AOI, start: date, end: date, *, max_cloud: float | None = None) -> list[Acquisition]:
        """Items of the catalog intersecting the AOI with ``start <= date <= end``, as acquisitions."""
        from shapely.geometry import box, shape

        max_cloud = self.default_max_cloud if max_cloud is None else max_cloud
        lon = aoi.centroid_lonlat[0]
        hits = []
        for it in self._items():
            geom = shape(it.geometry) if it.geometry else (box(*it.bbox) if it.bbox else None)
            if geom is None or not geom.intersects(aoi.geometry):
                continue
            if start <= _solar_day(_item_time(it), lon) <= end:
                hits.append(it)
        if not hits:
            log.warning("%s: no items over AOI %s between %s and %s", self.name, aoi.id, start, end)
        return items_to_acquisitions(
            hits, aoi, source=self.name, max_cloud=max_cloud, href=lambda item, key: item.assets[key].get_absolute_href()
        )


class StacApiSource(_StacReader):
    """A STAC API searched with pystac-client; assets read with HTTP range requests.

    Parameters
    ----------
    url : str
        The API root (e.g. ``https://earth-search.aws.element84.com/v1``).
    name : str
        Source name recorded in acquisitions.
    collection : str
        ``sentinel-2-l2a`` by default; an L1C collection (``sentinel-2-l1c``) gives ``level="L1C"``.
    cache_dir : path, optional
        Cache of decoded AOI windows, so a rerun reads nothing.
    max_cloud : float, optional
        Default scene cloud cover limit, percent.
    retry : RetryPolicy
        Retries of temporary HTTP errors (API and COG reads).
    sign : bool, optional
        Sign asset hrefs with the ``planetary-computer`` package (default: when the URL is the
        Planetary Computer's).
    page_size : int
        Items per search page.
    max_threads : int
        Assets read in parallel (HTTP range reads are mostly waiting).
    **options
        Other CLI options are accepted and ignored.
    """

    def __init__(
        self,
        url: str,
        name: str | None = None,
        *,
        collection: str = DEFAULT_COLLECTION,
        cache_dir=None,
        max_cloud: float | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        sign: bool | None = None,
        page_size: int = 100,
        max_threads: int = 4,
        **options: Any,
    ):
        self.url = url.rstrip("/")
        self.max_threads = int(max_threads)
        self.name = name or self.url
        self.collection = collection
        self.cache = ArrayCache(cache_dir)
        self.default_max_cloud = max_cloud
        self.retry = retry
        self.sign = ("planetarycomputer" in self.url) if sign is None else sign
        self.page_size = page_size

    def __repr__(self) -> str:
        return f"StacApiSource({self.url!r}, name={self.name!r}, collection={self.collection!r})"

    def _sign(self, href: str) -> str:
        if not self.sign:
            return href
        try:
            import planetary_computer
        except ImportError as exc:  # pragma: no cover - a declared dependency
            from ..errors import MissingOptionalDependency

            raise MissingOptionalDependency("pip install planetary-computer") from exc
        return planetary_computer.sign(href)

    def _client(self):
        from pystac_client import Client
        from pystac_client.stac_api_io import StacApiIO

        io = StacApiIO(max_retries=self.retry.urllib3_retry())
        return Client.open(self.url, stac_io=io)

    def search(self, aoi: AOI, start: date, end: date, *, max_cloud: float | None = None) -> list[Acquisition]:
        """Search the API over the AOI's bounding box and ``[start, end]`` (whole days, UTC with a
        day of margin for the solar-day grouping), then group into acquisitions."""
        import requests
        from pystac_client.conformance import ConformanceClasses
        from pystac_client.exceptions import APIError

        max_cloud = self.default_max_cloud if max_cloud is None else max_cloud
        t0 = datetime.combine(start - timedelta(days=1), time.min, tzinfo=timezone.utc)
        t1 = datetime.combine(end + timedelta(days=1), time.max, tzinfo=timezone.utc)
        kwargs: dict[str, Any] = dict(
            collections=[self.collection],
            bbox=list(aoi.geometry.bounds),
            datetime=(t0, t1),
            limit=self.page_size,
        )
        try:
            client = self._client()
            if max_cloud is not None and client.conforms_to(ConformanceClasses.QUERY):
                kwargs["query"] = {"eo:cloud_cover": {"lte": max_cloud}}  # else filtered here after the search
            items = list(client.search(**kwargs).items())
        except APIError as exc:
            status = getattr(exc, "status_code", None)
            if status in (401, 403):
                raise AuthenticationError(f"{self.name}: the STAC API refused access (HTTP {status}): {exc}") from exc
            if status is None:
                raise SourceUnavailable(
                    f"{self.name}: cannot reach STAC API {self.url} ({_short_reason(exc)}); check the URL and the connection, then rerun"
                ) from exc
            if status >= 500 or status == 429:
                raise SourceUnavailable(f"{self.name}: STAC API {self.url} failed (HTTP {status}): {exc}; rerun later") from exc
            raise SourceError(f"{self.name}: STAC API rejected the search (HTTP {status}): {exc}") from exc
        except requests.RequestException as exc:
            raise SourceUnavailable(f"{self.name}: cannot reach STAC API {self.url} ({type(exc).__name__}); check the URL/connection and rerun") from exc
        lon = aoi.centroid_lonlat[0]
        items = [it for it in items if start <= _solar_day(_item_time(it), lon) <= end and it.geometry and _intersects(it, aoi)]
        if not items:
            log.warning("%s: no %s items over AOI %s between %s and %s", self.name, self.collection, aoi.id, start, end)
        return items_to_acquisitions(items, aoi, source=self.name, max_cloud=max_cloud)


def _short_reason(exc: BaseException) -> str:
    msg = str(exc)
    for key, text in (("refused", "connection refused"), ("timed out", "timed out"), ("Name or service", "unknown host")):
        if key in msg:
            return text
    return msg.splitlines()[0][:160] if msg else type(exc).__name__


def _intersects(item, aoi: AOI) -> bool:
    from shapely.geometry import shape

    return shape(item.geometry).intersects(aoi.geometry)
