"""Offline imitations for the source tests: synthetic Sentinel-2 scenes written as real COGs, and
local HTTP servers on 127.0.0.1 (a COG file server with Range support, a STAC API, and the
Sentinel Hub OAuth / Catalog / Process services).

The planted scene (independent oracle, see :func:`truth_dn` / :func:`truth_scl`): reflectance of
band ``k`` is a gentle plane in lon/lat, ``1500 + 150 k + 4000 (lon - lon0) + 3000 (lat - lat0)``
DN (about 0.04 DN per metre, so bilinear resampling and reprojection change it by far less than
1 DN), plus a bright +1500 DN block ("new roof") east of the centre; SCL is 4 (vegetation)
with a cloud block (9) west of the centre and a water block (6) north of it. Files of a scene
with ``offset=1000`` store DN + 1000, as baseline 04.00 data does.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.errors import NotGeoreferencedWarning
from rasterio.warp import Resampling, reproject, transform_bounds

from pipeline.scene import ALL_BANDS, BAND_RESOLUTION

BAND_INDEX = {b: i for i, b in enumerate(ALL_BANDS)}
ES_KEYS = {
    "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge1", "B06": "rededge2", "B07": "rededge3",
    "B08": "nir", "B8A": "nir08", "B11": "swir16", "B12": "swir22", "SCL": "scl",
}  # fmt: skip
COMMON = {"B02": "blue", "B03": "green", "B04": "red", "B05": "rededge", "B06": "rededge", "B07": "rededge",
          "B08": "nir", "B8A": "nir08", "B11": "swir16", "B12": "swir22"}  # fmt: skip


# ------------------------------------------------------------------------------------------------
# the planted scene


@dataclass(frozen=True)
class Truth:
    """The planted scene around ``(lon0, lat0)`` (lon/lat degrees); blocks are lon/lat boxes."""

    lon0: float
    lat0: float
    roof: tuple = ()
    cloud: tuple = ()
    water: tuple = ()

    @classmethod
    def around(cls, aoi) -> "Truth":
        lon0, lat0 = aoi.centroid_lonlat
        d = 0.0025  # ~250 m blocks
        return cls(
            lon0,
            lat0,
            roof=(lon0 + 0.001, lat0 - d / 2, lon0 + 0.001 + d, lat0 + d / 2),
            cloud=(lon0 - 0.001 - d, lat0 - d / 2, lon0 - 0.001, lat0 + d / 2),
            water=(lon0 - d / 2, lat0 + 0.0015, lon0 + d / 2, lat0 + 0.0015 + d),
        )


def _inside(box, lon, lat):
    return (lon >= box[0]) & (lon < box[2]) & (lat >= box[1]) & (lat < box[3])


def truth_dn(truth: Truth, band: str, lon, lat, *, roof: bool = True) -> np.ndarray:
    """Harmonised DN (reflectance x 10000) of ``band`` at lon/lat, float64."""
    v = 1500.0 + 150.0 * BAND_INDEX[band] + 4000.0 * (np.asarray(lon) - truth.lon0) + 3000.0 * (np.asarray(lat) - truth.lat0)
    if roof and truth.roof:
        v = v + 1500.0 * _inside(truth.roof, lon, lat)
    return v


def truth_scl(truth: Truth, lon, lat) -> np.ndarray:
    s = np.full(np.shape(lon), 4, np.uint8)
    if truth.cloud:
        s[_inside(truth.cloud, lon, lat)] = 9
    if truth.water:
        s[_inside(truth.water, lon, lat)] = 6
    return s


@dataclass
class FakeScene:
    """One synthetic item: per-band COG files plus the metadata a catalog would hold."""

    id: str
    time: datetime
    epsg: int
    tile: str
    files: dict
    footprint: tuple  # lon/lat bounds of the data
    platform: str = "sentinel-2a"
    baseline: str = "03.01"
    offset: int = 0  # DN offset stored in the files
    boa_offset_applied: bool | None = None
    cloud: float = 5.0
    level: str = "L2A"
    seq: int = 0
    extra: dict = field(default_factory=dict)


def make_scene(
    folder: Path,
    truth: Truth,
    *,
    when: datetime,
    epsg: int,
    lonlat_bounds: tuple,
    lon_clip: tuple | None = None,
    offset: int = 0,
    baseline: str = "03.01",
    platform: str = "sentinel-2a",
    tile: str = "36SYD",
    bands=ALL_BANDS,
    scl: bool = True,
    cloud: float = 5.0,
    boa_offset_applied: bool | None = None,
    sid: str | None = None,
    seq: int = 0,
    dn_shift: int = 0,
    level: str = "L2A",
    blocksize: int = 256,
) -> FakeScene:
    """Write the planted scene as one COG per band (10/20 m, SCL at 20 m) in ``epsg``.

    ``lonlat_bounds`` is the area covered; ``lon_clip`` = (lon_min, lon_max) leaves pixels outside
    as no data (a footprint edge). ``dn_shift`` adds to every valid DN (a "different" scene).
    """
    stamp = when.strftime("%Y%m%dT%H%M%S")
    p = platform[-1].upper()
    sid = sid or f"S2{p}_MSI{level}_{stamp}_N{baseline.replace('.', '')}_R000_T{tile}_{stamp}"
    d = folder / sid
    d.mkdir(parents=True, exist_ok=True)
    xmin, ymin, xmax, ymax = transform_bounds("EPSG:4326", f"EPSG:{epsg}", *lonlat_bounds, densify_pts=51)
    xmin, ymin = np.floor(xmin / 60) * 60, np.floor(ymin / 60) * 60
    xmax, ymax = np.ceil(xmax / 60) * 60, np.ceil(ymax / 60) * 60
    to_ll = Transformer.from_crs(epsg, 4326, always_xy=True)
    files = {}
    names = list(bands) + (["SCL"] if scl else [])
    cache = {}
    for b in names:
        res = 20 if b == "SCL" else BAND_RESOLUTION[b]
        w, h = int(round((xmax - xmin) / res)), int(round((ymax - ymin) / res))
        if res not in cache:
            cols, rows = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
            lon, lat = to_ll.transform(xmin + cols * res, ymax - rows * res)
            cache[res] = (lon, lat)
        lon, lat = cache[res]
        inside = np.ones(lon.shape, bool) if lon_clip is None else (lon >= lon_clip[0]) & (lon < lon_clip[1])
        if b == "SCL":
            arr = np.where(inside, truth_scl(truth, lon, lat), 0).astype(np.uint8)
        else:
            arr = np.where(inside, np.round(truth_dn(truth, b, lon, lat)) + offset + dn_shift, 0).astype(np.uint16)
        f = d / f"{sid}_{b}.tif"
        with rasterio.open(
            f, "w", driver="COG", width=w, height=h, count=1, dtype=arr.dtype, crs=f"EPSG:{epsg}",
            transform=Affine(res, 0, xmin, 0, -res, ymax), nodata=0, blocksize=blocksize, overview_resampling="nearest",
        ) as dst:  # fmt: skip
            dst.write(arr, 1)
        files[b] = f
    fp = transform_bounds(f"EPSG:{epsg}", "EPSG:4326", xmin, ymin, xmax, ymax, densify_pts=51)
    if lon_clip is not None:
        fp = (max(fp[0], lon_clip[0]), fp[1], min(fp[2], lon_clip[1]), fp[3])
    return FakeScene(sid, when, epsg, tile, files, fp, platform, baseline, offset, boa_offset_applied, cloud, level, seq)


def stac_item(scene: FakeScene, href_of, *, style: str = "earth-search", collection: str = "sentinel-2-l2a") -> dict:
    """The STAC item of a scene, as Earth Search v1 (``style="earth-search"``: asset keys blue...,
    ``proj:epsg``) or Planetary Computer (``"pc"``: keys B02..., ``proj:code``) publish it."""
    lo0, la0, lo1, la1 = scene.footprint
    props = {
        "datetime": scene.time.isoformat().replace("+00:00", "Z"),
        "platform": scene.platform,
        "constellation": "sentinel-2",
        "eo:cloud_cover": scene.cloud,
        "s2:processing_baseline": scene.baseline,
        "updated": (scene.time + timedelta(days=1 + scene.seq)).isoformat().replace("+00:00", "Z"),
    }
    if scene.boa_offset_applied is not None:
        props["earthsearch:boa_offset_applied"] = scene.boa_offset_applied
    assets = {}
    if style == "earth-search":
        iid = f"S2{scene.platform[-1].upper()}_{scene.tile}_{scene.time:%Y%m%d}_{scene.seq}_{scene.level}"
        props["proj:epsg"] = scene.epsg
        props["grid:code"] = f"MGRS-{scene.tile}"
        for b, f in scene.files.items():
            eo = [{"name": ES_KEYS[b], "common_name": COMMON[b]}] if b != "SCL" else []
            assets[ES_KEYS[b]] = {"href": href_of(f), "type": "image/tiff; application=geotiff; profile=cloud-optimized", "roles": ["data"], "eo:bands": eo}
            # Earth Search also lists JPEG2000 copies: they must be ignored
            assets[ES_KEYS[b] + "-jp2"] = {"href": href_of(f).replace(".tif", ".jp2"), "type": "image/jp2", "roles": ["data"]}
    else:
        iid = scene.id
        props["proj:code"] = f"EPSG:{scene.epsg}"
        props["s2:mgrs_tile"] = scene.tile
        for b, f in scene.files.items():
            eo = [{"name": b, "common_name": COMMON.get(b)}] if b != "SCL" else []
            assets[b] = {"href": href_of(f), "type": "image/tiff; application=geotiff; profile=cloud-optimized", "roles": ["data"], "eo:bands": eo}
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [],
        "id": iid,
        "collection": collection,
        "geometry": {"type": "Polygon", "coordinates": [[[lo0, la0], [lo1, la0], [lo1, la1], [lo0, la1], [lo0, la0]]]},
        "bbox": [lo0, la0, lo1, la1],
        "properties": props,
        "assets": assets,
        "links": [],
    }


# ------------------------------------------------------------------------------------------------
# HTTP servers


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def _dispatch(self, method):
        app = self.server.app
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with app.lock:
            app.requests.append((method, self.path))
        try:
            status, headers, payload = app.handle(method, self.path, dict(self.headers), body)
        except Exception as exc:  # a bug in the fake: answer 500 and keep the trace visible
            import traceback

            traceback.print_exc()
            status, headers, payload = 500, {"Content-Type": "text/plain"}, str(exc).encode()
        if status is None:  # drop the connection without an answer
            self.close_connection = True
            return
        self.send_response(status)
        sent_len = headers.pop("X-Fake-Content-Length", None)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(sent_len if sent_len is not None else len(payload)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(payload)
            with app.lock:
                app.bytes_sent += len(payload)
        if sent_len is not None:
            self.close_connection = True

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_HEAD(self):
        self._dispatch("HEAD")


class LocalServer:
    """An app served by a ThreadingHTTPServer on 127.0.0.1 (``port=0``: any free port)."""

    def __init__(self, port: int = 0):
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []
        self.bytes_sent = 0
        self._port = port
        self.httpd = None

    def start(self):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self._port), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.app = self
        self._port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def reset_counters(self):
        with self.lock:
            self.requests.clear()
            self.bytes_sent = 0

    def handle(self, method, path, headers, body):  # pragma: no cover - overridden
        return 404, {}, b""


def _json(status, obj, extra=None):
    return status, {"Content-Type": "application/json", **(extra or {})}, json.dumps(obj).encode()


class FileServer(LocalServer):
    """Serves files under ``root`` at ``/files/<relative path>`` with HTTP Range support
    (single and multi-range), counting requests and bytes sent."""

    def __init__(self, root: Path, port: int = 0):
        super().__init__(port)
        self.root = Path(root)
        self.range_gets = 0
        self.full_gets = 0

    def href(self, path: Path) -> str:
        return f"{self.url}/files/{Path(path).relative_to(self.root).as_posix()}"

    def handle(self, method, path, headers, body):
        rel = urlparse(path).path
        if not rel.startswith("/files/"):
            return 404, {}, b"not found"
        f = self.root / rel[len("/files/"):]
        if not f.is_file():
            return 404, {"Content-Type": "text/plain"}, b"not found"
        data = f.read_bytes()
        size = len(data)
        rng = headers.get("Range") or headers.get("range")
        if method == "GET":
            with self.lock:
                self.range_gets += bool(rng)
                self.full_gets += not rng
        if method == "HEAD" or not rng:
            return 200, {"Accept-Ranges": "bytes", "Content-Type": "image/tiff"}, data  # HEAD: length only
        m = re.match(r"bytes=(.+)", rng)
        parts = []
        for spec in m.group(1).split(","):
            a, _, b = spec.strip().partition("-")
            a = int(a) if a else max(size - int(b), 0)
            b = min(int(b), size - 1) if b and a is not None and spec.strip()[0] != "-" else size - 1
            if a >= size:
                return 416, {"Content-Range": f"bytes */{size}"}, b""
            parts.append((a, b))
        if len(parts) == 1:
            a, b = parts[0]
            return 206, {"Content-Range": f"bytes {a}-{b}/{size}", "Accept-Ranges": "bytes", "Content-Type": "image/tiff"}, data[a : b + 1]
        boundary = "FAKEBOUNDARY"
        out = io.BytesIO()
        for a, b in parts:
            out.write(f"\r\n--{boundary}\r\nContent-Type: image/tiff\r\nContent-Range: bytes {a}-{b}/{size}\r\n\r\n".encode())
            out.write(data[a : b + 1])
        out.write(f"\r\n--{boundary}--\r\n".encode())
        return 206, {"Content-Type": f"multipart/byteranges; boundary={boundary}"}, out.getvalue()


class FakeStacApi(LocalServer):
    """A STAC API (landing page, conformance, POST/GET /search with ``next``-link pagination,
    bbox/datetime/collections/query filters) over a list of item dicts."""

    CONFORMS = [
        "https://api.stacspec.org/v1.0.0/core",
        "https://api.stacspec.org/v1.0.0/item-search",
        "https://api.stacspec.org/v1.0.0/item-search#query",
        "https://api.stacspec.org/v1.0.0/item-search#sort",
    ]

    def __init__(self, items: list[dict] | None = None, port: int = 0):
        super().__init__(port)
        self.items = list(items or [])
        self.search_bodies: list[dict] = []
        self.fail_search: list[int] = []  # statuses answered to the next searches

    def landing(self):
        u = self.url
        return {
            "type": "Catalog", "id": "fake-stac", "stac_version": "1.0.0", "description": "fake STAC API",
            "conformsTo": self.CONFORMS,
            "links": [
                {"rel": "self", "href": u + "/", "type": "application/json"},
                {"rel": "root", "href": u + "/", "type": "application/json"},
                {"rel": "conformance", "href": u + "/conformance", "type": "application/json"},
                {"rel": "data", "href": u + "/collections", "type": "application/json"},
                {"rel": "search", "href": u + "/search", "type": "application/geo+json", "method": "GET"},
                {"rel": "search", "href": u + "/search", "type": "application/geo+json", "method": "POST"},
            ],
        }  # fmt: skip

    def handle(self, method, path, headers, body):
        p = urlparse(path)
        if p.path in ("", "/"):
            return _json(200, self.landing())
        if p.path == "/conformance":
            return _json(200, {"conformsTo": self.CONFORMS})
        if p.path == "/search":
            if method == "POST":
                params = json.loads(body or b"{}")
            else:
                q = parse_qs(p.query)
                params = {k: v[0] for k, v in q.items()}
                if "collections" in params:
                    params["collections"] = params["collections"].split(",")
                if "bbox" in params:
                    params["bbox"] = [float(x) for x in params["bbox"].split(",")]
                if "limit" in params:
                    params["limit"] = int(params["limit"])
                if "query" in params:
                    params["query"] = json.loads(params["query"])
            with self.lock:
                self.search_bodies.append(params)
                fail = self.fail_search.pop(0) if self.fail_search else None
            if fail:
                return _json(fail, {"code": "Fail", "description": f"injected {fail}"})
            return _json(200, self.search(params), {"Content-Type": "application/geo+json"})
        return _json(404, {"code": "NotFound", "description": p.path})

    def search(self, params):
        hits = []
        t0, t1 = _interval(params.get("datetime"))
        for it in self.items:
            if params.get("collections") and it["collection"] not in params["collections"]:
                continue
            if params.get("bbox") and not _bbox_overlap(params["bbox"], it["bbox"]):
                continue
            t = _parse_time(it["properties"]["datetime"])
            if (t0 and t < t0) or (t1 and t > t1):
                continue
            cc = ((params.get("query") or {}).get("eo:cloud_cover") or {})
            v = it["properties"].get("eo:cloud_cover")
            if v is not None and (("lte" in cc and v > cc["lte"]) or ("lt" in cc and v >= cc["lt"])):
                continue
            hits.append(it)
        limit = int(params.get("limit") or 10)
        start = int(params.get("token") or 0)
        page = hits[start : start + limit]
        links = []
        if start + limit < len(hits):
            links.append({"rel": "next", "href": self.url + "/search", "method": "POST", "type": "application/geo+json",
                          "body": {**{k: v for k, v in params.items() if k != "token"}, "token": str(start + limit)}})  # fmt: skip
        return {"type": "FeatureCollection", "features": page, "links": links, "numberMatched": len(hits), "numberReturned": len(page)}


def _parse_time(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).astimezone(timezone.utc)


def _interval(s):
    if not s:
        return None, None
    a, _, b = s.partition("/")
    return (None if a in ("", "..") else _parse_time(a)), (None if b in ("", "..") else _parse_time(b))


def _bbox_overlap(a, b) -> bool:
    return not (a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1])


# ------------------------------------------------------------------------------------------------
# Sentinel Hub imitation


TOKEN_PATH = "/auth/realms/main/protocol/openid-connect/token"
_RENDER_LOCK = threading.Lock()


class FakeSentinelHub(LocalServer):
    """OAuth token, Catalog search (``context.next`` pagination) and Process API rendering the
    planted scenes onto the requested bbox/size (bilinear or nearest per ``processing.upsampling``,
    ``harmonizeValues`` removing the +1000 offset), answering a tar of ``bands.tif``, ``scl.tif``,
    ``dataMask.tif``. ``faults`` is a queue of directives for the next Process requests:
    ``("429", ms)``, ``("500",)``, ``("401",)``, ``("403",)``, ``("corrupt",)``, ``("drop",)``."""

    def __init__(self, scenes: list[FakeScene], *, client_id="fake-id", client_secret="fake-secret", port: int = 0):
        super().__init__(port)
        self.scenes = list(scenes)
        self.client_id, self.client_secret = client_id, client_secret
        self.tokens: set[str] = set()
        self.faults: list[tuple] = []
        self.token_faults: list[int] = []
        self.process_bodies: list[dict] = []
        self.catalog_bodies: list[dict] = []
        self.pu_spent = 0.0
        self.n_token = 0
        self.drop_outputs: set[str] = set()  # outputs left out of the tar (a "missing band" answer)

    def count(self, what: str) -> int:
        return sum(1 for _, p in self.requests if what in p)

    def _auth(self, headers):
        h = headers.get("Authorization") or headers.get("authorization") or ""
        return h.startswith("Bearer ") and h[7:] in self.tokens

    def handle(self, method, path, headers, body):
        p = urlparse(path).path
        if p == TOKEN_PATH and method == "POST":
            return self._token(body)
        if p.startswith("/api/v1/catalog/1.0.0"):
            if not self._auth(headers):
                return _json(401, {"error": {"status": 401, "reason": "Unauthorized", "message": "bad token"}})
            if p.endswith("/search"):
                return self._catalog(json.loads(body))
            return _json(200, {"conformsTo": []})
        if p == "/api/v1/process" and method == "POST":
            with self.lock:
                fault = self.faults.pop(0) if self.faults else None
            if fault and fault[0] == "401":
                return _json(401, {"error": {"status": 401, "reason": "Unauthorized", "message": "Token expired"}})
            if not self._auth(headers):
                return _json(401, {"error": {"status": 401, "reason": "Unauthorized", "message": "bad token"}})
            if fault and fault[0] == "429":
                return _json(429, {"error": {"status": 429, "reason": "Too Many Requests"}}, {"Retry-After": str(fault[1])})
            if fault and fault[0] == "500":
                return _json(500, {"error": {"status": 500, "reason": "Internal Server Error", "message": "injected"}})
            if fault and fault[0] == "403":
                return _json(403, {"error": {"status": 403, "reason": "Forbidden", "message": "You have exceeded your processing units quota"}})
            if fault and fault[0] == "drop":
                return None, {}, b""
            if fault and fault[0] == "400":
                return _json(400, {"error": {"status": 400, "reason": "Bad Request", "message": "Failed to evaluate script! evaluatePixel: injected",
                                             "code": "RENDERER_EXCEPTION"}})  # fmt: skip
            payload = json.loads(body)
            with self.lock:
                self.process_bodies.append(payload)
            with _RENDER_LOCK, warnings.catch_warnings():
                # rasterio wraps the numpy destination in an ungeoreferenced MemoryDataset
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                status, hdrs, content = self._process(payload, headers)
            if fault and fault[0] == "corrupt":
                content = content[: len(content) // 3] + b"\x00" * 64  # a torn tar / TIFF
            return status, hdrs, content
        return _json(404, {"error": {"status": 404, "message": p}})

    def _token(self, body):
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        with self.lock:
            self.n_token += 1
            fault = self.token_faults.pop(0) if self.token_faults else None
        if fault == 429:
            return 429, {"Content-Type": "text/html", "Retry-After": "10"}, b"<html>slow down</html>"
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return _json(401, {"error": "invalid_client", "error_description": "Invalid client or Invalid client credentials"})
        import base64
        import secrets

        payload = base64.urlsafe_b64encode(json.dumps({"azp": self.client_id, "exp": int(time.time()) + 3600}).encode()).decode().rstrip("=")
        tok = f"eyJhbGciOiJub25lIn0.{payload}.{secrets.token_hex(8)}"
        with self.lock:
            self.tokens.add(tok)
        return _json(200, {"access_token": tok, "expires_in": 3600, "refresh_expires_in": 0, "token_type": "Bearer", "not-before-policy": 0})

    def _catalog(self, body):
        with self.lock:
            self.catalog_bodies.append(body)
        t0, t1 = _interval(body.get("datetime"))
        maxcc = None
        m = re.search(r"eo:cloud_cover\s*<\s*([\d.]+)", body.get("filter") or "")
        if m:
            maxcc = float(m.group(1))
        hits = []
        for sc in sorted(self.scenes, key=lambda s: s.time):
            if t0 and sc.time < t0 or t1 and sc.time > t1:
                continue
            if body.get("bbox") and not _bbox_overlap(body["bbox"], sc.footprint):
                continue
            if maxcc is not None and sc.cloud >= maxcc:
                continue
            hits.append(sc)
        limit = int(body.get("limit") or 100)
        start = int(body.get("next") or 0)
        page = hits[start : start + limit]
        feats = []
        for sc in page:
            lo0, la0, lo1, la1 = sc.footprint
            feats.append({
                "type": "Feature", "stac_version": "1.0.0", "id": sc.id, "collection": "sentinel-2-l2a",
                "geometry": {"type": "Polygon", "coordinates": [[[lo0, la0], [lo1, la0], [lo1, la1], [lo0, la1], [lo0, la0]]]},
                "bbox": [lo0, la0, lo1, la1],
                "properties": {"datetime": sc.time.isoformat().replace("+00:00", "Z"), "platform": sc.platform,
                               "eo:cloud_cover": sc.cloud, "proj:epsg": sc.epsg, "instruments": ["msi"]},
                "assets": {}, "links": [],
            })  # fmt: skip
        ctx = {"limit": limit, "returned": len(feats)}
        if start + limit < len(hits):
            ctx["next"] = start + limit
        return _json(200, {"type": "FeatureCollection", "features": feats, "links": [], "context": ctx})

    def _process(self, payload, headers):
        from rasterio.crs import CRS

        inp = payload["input"]
        crs_url = inp["bounds"]["properties"]["crs"]
        epsg = int(crs_url.rstrip("/").split("/")[-1])
        x0, y0, x1, y1 = inp["bounds"]["bbox"]
        out = payload["output"]
        W, H = int(out["width"]), int(out["height"])
        dst_transform = Affine((x1 - x0) / W, 0, x0, 0, -(y1 - y0) / H, y1)
        script = payload["evalscript"]
        lists = re.findall(r"bands:\s*\[([^\]]*)\]", script)
        bands = [s.strip().strip("\"'") for s in lists[0].split(",") if s.strip()]
        data_inputs = inp["data"]
        by_id = {d.get("id", f"#{i}"): d for i, d in enumerate(data_inputs)}
        refl = by_id.get("s2", data_inputs[0])
        tr = refl["dataFilter"]["timeRange"]
        t0, t1 = _parse_time(tr["from"]), _parse_time(tr["to"])
        maxcc = refl["dataFilter"].get("maxCloudCoverage")
        harmonise = refl.get("processing", {}).get("harmonizeValues", True)
        up = {"BILINEAR": Resampling.bilinear, "NEAREST": Resampling.nearest}
        r_refl = up[refl.get("processing", {}).get("upsampling", "NEAREST")]
        scl_in = by_id.get("scl", refl)
        r_scl = up[scl_in.get("processing", {}).get("upsampling", "NEAREST")]
        scenes = [s for s in self.scenes if t0 <= s.time <= t1 and (maxcc is None or s.cloud <= maxcc)]
        scenes.sort(key=lambda s: s.time, reverse=True)  # mostRecent
        data = np.zeros((H, W, len(bands)), np.uint16)
        scl = np.zeros((H, W), np.uint8)
        mask = np.zeros((H, W), bool)
        for sc in scenes:
            layer = np.zeros((len(bands), H, W), np.float64)
            for i, b in enumerate(bands):
                with rasterio.open(sc.files[b]) as src:
                    reproject(rasterio.band(src, 1), layer[i], dst_transform=dst_transform, dst_crs=CRS.from_epsg(epsg),
                              resampling=r_refl, src_nodata=0, dst_nodata=0)  # fmt: skip
            lvalid = (layer > 0).all(axis=0)
            if harmonise and sc.offset:
                layer = np.clip(layer - sc.offset, 0, None)
            lscl = np.zeros((H, W), np.uint8)
            if "SCL" in sc.files:
                with rasterio.open(sc.files["SCL"]) as src:
                    reproject(rasterio.band(src, 1), lscl, dst_transform=dst_transform, dst_crs=CRS.from_epsg(epsg),
                              resampling=r_scl, src_nodata=0, dst_nodata=0)  # fmt: skip
            take = lvalid & ~mask
            data[take] = np.round(np.moveaxis(layer, 0, -1)[take]).astype(np.uint16)
            scl[take] = lscl[take]
            mask |= take
        n_in = len(bands) + 1
        pu = max(max(W * H / 512**2, 0.01) * n_in / 3.0, 0.005)
        with self.lock:
            self.pu_spent += pu
        hdr = {"x-processingunits-spent": f"{pu:.6f}"}
        ids = [r["identifier"] for r in out["responses"]]
        import tifffile

        def tif(a):
            buf = io.BytesIO()
            tifffile.imwrite(buf, a, photometric="minisblack", planarconfig="contig")
            return buf.getvalue()

        arrays = {"bands": data if data.shape[2] > 1 else data[..., 0], "scl": scl, "dataMask": mask.astype(np.uint8)}
        if len(ids) == 1:
            return 200, {"Content-Type": "image/tiff", **hdr}, tif(arrays[ids[0]])
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for ident in ids:
                if ident in self.drop_outputs:
                    continue
                content = tif(arrays[ident])
                ti = tarfile.TarInfo(f"{ident}.tif")
                ti.size = len(content)
                tar.addfile(ti, io.BytesIO(content))
        return 200, {"Content-Type": "application/x-tar", **hdr}, buf.getvalue()
