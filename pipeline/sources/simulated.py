"""The built-in simulated Sentinel-2 L2A archive (``--source simulated``).

An offline stand-in for a real archive, used by the tests, the demo and the benchmarks. For any
AOI it renders, on the AOI grid, a desert airbase, port or town from the AOI's features (runways
of their real width, taxiways, aprons, quays, basins) plus invented content where features are
missing, with realistic L2A surface reflectance in the ten 10 m / 20 m bands, and every nuisance
a change detector has to survive: seasonal and illumination drift, haze, sensor noise, sub-pixel
misregistration, fractal clouds with cirrus and displaced shadows (SCL misses thin edges and
about a fifth of the shadows), fully cloudy days, aircraft and ships present on one date only,
the processing-baseline 04.00 DN offset from 2022-01-25 and, rarely, a swath edge.

Scripted changes (runway resurfacing, new storage buildings, earthworks; for ports a quay
extension, waterfront warehouses and land reclamation) all start between 2024-09-01 and
2025-04-30; :meth:`SimulatedSource.truth` returns them as ground truth.

Everything is deterministic: the same ``seed``, AOI and date give identical bytes. The static
base rendering is cached per (AOI, grid, seed); one acquisition of a 1000 x 1000 px AOI with ten
bands and SCL then costs about 50-80 ms of CPU (numba kernels, two threads).
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Sequence

import numpy as np
from shapely.geometry.base import BaseGeometry

from ..aoi import AOI, load_aoi
from ..errors import UsageError
from ..grid import Grid, reproject_geometry
from ..scene import ALL_BANDS, BANDS_10M, BANDS_20M, SCL, Acquisition, SceneStack
from ._simevents import CHANGE_WINDOW, ScriptedEvent, script_events, transients_for
from ._simlayout import Layout, build_layout
from ._simsky import WAVELENGTH_NM, DateParams, baseline_and_offset, cloud_fields, date_params, mgrs_tile, scl20, smooth
from ._simrender import (
    TEX_N,
    compose,
    coverage,
    rasterize_labels,
    material_code,
    render_date,
    spectrum,
    stable_hash,
    tex_field,
    texture_bank,
)

log = logging.getLogger(__name__)

__all__ = ["SimulatedSource", "TruthEvent", "Transient", "CHANGE_WINDOW"]


@dataclass(frozen=True)
class TruthEvent:
    """A scripted change: the ground truth of the simulated archive.

    Attributes
    ----------
    cls : str
        One of :data:`pipeline.objects.model.CHANGE_CLASSES`.
    geometry : shapely Polygon
        Footprint in the grid CRS (UTM metres).
    start : date
        First date the change is visible.
    feature : str or None
        AOI feature it concerns, e.g. ``"runway 01L/19R"`` for runway repair.
    description : str
    """

    cls: str
    geometry: BaseGeometry
    start: date
    feature: str | None
    description: str


@dataclass(frozen=True)
class Transient:
    """An aircraft or ship (part) present on one acquisition only.

    Attributes
    ----------
    kind : str
        ``aircraft`` or ``ship``.
    geometry : shapely Polygon
        Footprint in the grid CRS (UTM metres).
    date : date
    material : str
        Rendered material (e.g. ``aircraft``, ``ship_hull``).
    """

    kind: str
    geometry: BaseGeometry
    date: date
    material: str


def _as_date(d) -> date:
    if isinstance(d, datetime):
        return d.date()
    if isinstance(d, date):
        return d
    try:
        return date.fromisoformat(str(d))
    except ValueError as exc:
        raise UsageError(f"not a date: {d!r}; use YYYY-MM-DD") from exc


_LOCK = threading.RLock()
_CACHES: dict[int, tuple[dict, dict]] = {}
"""Per seed: layouts and scripted events (small)."""
_BASES: OrderedDict = OrderedDict()
"""Base renderings keyed by (seed, AOI, grid): at most :data:`MAX_CACHED_BASES`, least recently used out."""
MAX_CACHED_BASES = 4


class _Base:
    """The static rendering of one AOI on one grid (cached)."""

    __slots__ = ("grid", "grid20", "g10", "g20", "vf10", "vf20", "dveg10", "dveg20", "events", "layout")


class SimulatedSource:
    """A deterministic simulated Sentinel-2 L2A archive (see the module docstring).

    Parameters
    ----------
    seed : int
        Changes the terrain textures, clouds, noise and scripted events; AOI layouts and events
        also depend on the AOI id.
    revisit_days : int
        Days between acquisitions (alternating platforms), counted from ``start``.
    start, end : date
        Extent of the archive.
    cloud_rate : float
        Base probability (0-1) that a date has clouds; modulated by season and climate (the
        Mediterranean coast is cloudier in winter, the Sahara rarely cloudy).
    nodata_rate : float
        Probability that a swath edge cuts the AOI (pixels beyond it have no data).
    **ignored
        Options meant for other sources (credentials, cache folders) are accepted and ignored.
    """

    name = "simulated"

    def __init__(
        self,
        *,
        seed: int = 0,
        revisit_days: int = 5,
        start: date = date(2019, 1, 1),
        end: date = date(2025, 12, 31),
        cloud_rate: float = 0.3,
        nodata_rate: float = 0.02,
        **ignored,
    ):
        if int(revisit_days) < 1:
            raise UsageError(f"revisit_days must be >= 1, got {revisit_days!r}")
        if not 0.0 <= float(cloud_rate) <= 1.0:
            raise UsageError(f"cloud_rate must be within 0..1, got {cloud_rate!r}")
        if not 0.0 <= float(nodata_rate) <= 1.0:
            raise UsageError(f"nodata_rate must be within 0..1, got {nodata_rate!r}")
        self.seed = int(seed)
        self.revisit_days = int(revisit_days)
        self.start = _as_date(start)
        self.end = _as_date(end)
        if self.end < self.start:
            raise UsageError(f"archive end {self.end} is before its start {self.start}")
        self.cloud_rate = float(cloud_rate)
        self.nodata_rate = float(nodata_rate)
        if ignored:
            log.debug("simulated source ignores options %s", sorted(ignored))
        # caches shared by all instances with this seed (get_source() builds a new instance per call)
        self._layouts, self._events = _CACHES.setdefault(self.seed, ({}, {}))

    def __getstate__(self) -> dict:
        # pickled for process/dask workers: send the settings, never the (large) caches
        return {k: v for k, v in self.__dict__.items() if k not in ("_layouts", "_events")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._layouts, self._events = _CACHES.setdefault(self.seed, ({}, {}))

    def __repr__(self) -> str:
        return (f"SimulatedSource(seed={self.seed}, revisit_days={self.revisit_days}, start={self.start}, "
                f"end={self.end}, cloud_rate={self.cloud_rate})")

    # -----------------------------------------------------------------------------------------
    # layout, events, dates

    def _layout(self, aoi: AOI) -> Layout:
        key = (aoi.id, aoi.digest, aoi.geometry.wkb)
        with _LOCK:
            if key not in self._layouts:
                self._layouts[key] = build_layout(aoi, self.seed)
            return self._layouts[key]

    def _scripted(self, aoi: AOI) -> list[ScriptedEvent]:
        key = (aoi.id, aoi.digest, aoi.geometry.wkb)
        with _LOCK:
            if key not in self._events:
                self._events[key] = script_events(aoi.id, self._layout(aoi), self.seed)
            return self._events[key]

    def _dates(self, start: date, end: date) -> list[tuple[int, date]]:
        lo = max(start, self.start)
        hi = min(end, self.end)
        if hi < lo:
            return []
        k0 = -(-(lo - self.start).days // self.revisit_days)
        k1 = (hi - self.start).days // self.revisit_days
        return [(k, self.start + timedelta(days=k * self.revisit_days)) for k in range(k0, k1 + 1)]

    def _params(self, aoi: AOI, d: date) -> DateParams:
        return date_params(aoi, d, seed=self.seed, start=self.start, revisit_days=self.revisit_days,
                           cloud_rate=self.cloud_rate, nodata_rate=self.nodata_rate)

    def _acquisition(self, aoi: AOI, p: DateParams, cloud_cover: float) -> Acquisition:
        lon, lat = aoi.centroid_lonlat
        tile = mgrs_tile(lon, lat)
        orbit = stable_hash("relorbit", tile) % 143 + 1
        baseline, offset = baseline_and_offset(p.day)
        proc = p.time + timedelta(hours=2, minutes=int(stable_hash("proc", aoi.id, p.day.isoformat()) % 180))
        mission = {"sentinel-2a": "S2A", "sentinel-2b": "S2B", "sentinel-2c": "S2C"}[p.platform]
        pid = (f"{mission}_MSIL2A_{p.time:%Y%m%dT%H%M%S}_N{baseline.replace('.', '')}_R{orbit:03d}_T{tile}_"
               f"{proc:%Y%m%dT%H%M%S}")
        return Acquisition(
            id=pid, time=p.time, platform=p.platform, processing_baseline=baseline, offset=offset,
            cloud_cover=cloud_cover, source=self.name, level="L2A",
            extra={"tile": tile, "relative_orbit": orbit, "sun_elevation": round(p.sun_elevation, 2),
                   "sun_azimuth": round(p.sun_azimuth, 2), "simulated": True},
        )

    def _cloud_cover(self, aoi: AOI, p: DateParams) -> float:
        if p.cloud == 0 and p.cirrus == 0:
            return 0.0
        key = ("coarse", aoi.id, aoi.digest, aoi.geometry.wkb)
        if key not in self._layouts:
            g = aoi.grid()
            self._layouts[key] = g.scaled(max(1, int(round(max(g.width, g.height) / 48))))
        alpha, cirrus, _, _ = cloud_fields(self.seed, p, self._layouts[key])
        return round(float(np.mean((alpha > 0.05) | (cirrus > 0.15)) * 100.0), 2)

    # -----------------------------------------------------------------------------------------
    # Source protocol

    def search(self, aoi: "AOI | str", start, end, *, max_cloud: float | None = None) -> list[Acquisition]:
        """Acquisitions over ``aoi`` with ``start <= date <= end``, sorted by time.

        ``cloud_cover`` is the percentage of the AOI under cloud or cirrus in the rendering
        (computed on a coarse grid, without rendering the scene). ``max_cloud`` (percent) drops
        the cloudier ones.
        """
        aoi = load_aoi(aoi)
        start, end = _as_date(start), _as_date(end)
        if end < start:
            raise UsageError(f"search end {end} is before start {start}")
        if max_cloud is not None and not 0.0 <= float(max_cloud) <= 100.0:
            raise UsageError(f"max_cloud is a percentage within 0..100, got {max_cloud!r}")
        out = []
        for _, d in self._dates(start, end):
            p = self._params(aoi, d)
            cc = self._cloud_cover(aoi, p)
            if max_cloud is not None and cc > float(max_cloud):
                continue
            out.append(self._acquisition(aoi, p, cc))
        log.debug("simulated search %s %s..%s: %d acquisitions", aoi.id, start, end, len(out))
        return out

    def read(
        self,
        aoi: "AOI | str",
        acquisitions: Sequence[Acquisition],
        *,
        grid: Grid | None = None,
        bands: Sequence[str] = ALL_BANDS,
    ) -> SceneStack:
        """Render ``acquisitions`` on ``grid`` (default ``aoi.grid()``).

        Returns
        -------
        SceneStack
            ``data`` (T, B, H, W) uint16 DN = reflectance x 10000 + offset (1000 from
            2022-01-25); 20 m bands rendered on ``grid.scaled(2)`` and resampled bilinearly,
            SCL rendered at 20 m and resampled nearest; ``valid`` True inside the swath.

        Notes
        -----
        Memory: the output (20 bytes per pixel and acquisition for ten bands) plus about 30 bytes
        per pixel of cached base rendering (at most four grids are kept).
        """
        aoi = load_aoi(aoi)
        grid = grid or aoi.grid()
        bands = tuple(bands)
        bad = [b for b in bands if b not in ALL_BANDS]
        if bad or not bands:
            raise UsageError(f"bands {bad or '[]'} not available from the simulated source; use some of {', '.join(ALL_BANDS)}")
        acqs = []
        for a in acquisitions:
            if not isinstance(a, Acquisition):
                raise UsageError(f"read() wants Acquisition objects from search(), got {type(a).__name__}")
            acqs.append(a if a.source == self.name else self._acquisition(aoi, self._params(aoi, a.date), self._cloud_cover(aoi, self._params(aoi, a.date))))
        acqs.sort(key=lambda a: a.time)
        base = self._base(aoi, grid)
        H, W = grid.shape
        T = len(acqs)
        data = np.empty((T, len(bands), H, W), dtype=np.uint16)
        valid = np.ones((T, H, W), dtype=bool)
        scl = np.empty((T, H, W), dtype=np.uint8)
        src = [BANDS_10M.index(b) if b in BANDS_10M else BANDS_20M.index(b) for b in bands]
        is20 = [b in BANDS_20M for b in bands]
        bidx = [ALL_BANDS.index(b) for b in bands]
        cloud_refl = spectrum("cloud", bands)
        cirrus_refl = spectrum("cirrus", bands)
        shadow_k = np.array([0.5 + 0.2 * min(1.0, (WAVELENGTH_NM[b] - 490) / 400) for b in bands], np.float32)
        sigma = np.array([0.0032 if b in BANDS_10M else 0.0024 for b in bands], np.float32)
        for i, acq in enumerate(acqs):
            p = self._params(aoi, acq.date)
            g10, g20 = self._ground(aoi, base, p)
            alpha, cirrus, shadow, marked = cloud_fields(self.seed, p, base.grid20)
            render_date(g10, g20, src, is20, (p.shift[0], p.shift[1]), alpha, cirrus, shadow,
                        p.gain[bidx], p.haze[bidx], cloud_refl * p.cloud_gain, cirrus_refl, shadow_k, sigma,
                        p.nstart[bidx], acq.offset, data[i])
            s20 = scl20(g20, alpha, cirrus, shadow, marked)
            scl[i] = np.repeat(np.repeat(s20, 2, axis=0), 2, axis=1)[:H, :W]
            if p.swath is not None:
                ang, off = p.swath
                rr, cc = np.ogrid[0:H, 0:W]
                out = (np.cos(ang) * (cc / W - 0.5) + np.sin(ang) * (rr / H - 0.5)) > off
                valid[i] = ~out
                data[i][:, out] = 0
                scl[i][out] = SCL.NO_DATA
        return SceneStack(grid, bands, data, valid, scl, tuple(acqs))

    # -----------------------------------------------------------------------------------------
    # ground truth and transients

    def truth(self, aoi: "AOI | str", *, grid: Grid | None = None) -> list[TruthEvent]:
        """The scripted changes of ``aoi`` (geometry in the CRS of ``grid``, default the AOI grid)."""
        aoi = load_aoi(aoi)
        epsg = (grid or aoi.grid()).epsg
        out = [TruthEvent(e.cls, reproject_geometry(e.geometry, aoi.epsg, epsg), e.start, e.feature, e.description)
               for e in self._scripted(aoi)]
        return sorted(out, key=lambda e: (e.start, e.cls))

    def transients(self, aoi: "AOI | str", acquisition: "Acquisition | date", *, grid: Grid | None = None) -> list[Transient]:
        """Aircraft and ships rendered on this acquisition only (geometry in the grid CRS)."""
        aoi = load_aoi(aoi)
        d = acquisition.date if isinstance(acquisition, Acquisition) else _as_date(acquisition)
        epsg = (grid or aoi.grid()).epsg
        return [Transient(k, reproject_geometry(g, aoi.epsg, epsg), d, m)
                for k, g, m in transients_for(aoi.id, self._layout(aoi), self.seed, d)]

    # -----------------------------------------------------------------------------------------
    # rendering

    def _base(self, aoi: AOI, grid: Grid) -> _Base:
        key = (self.seed, aoi.id, aoi.digest, aoi.geometry.wkb, grid)
        with _LOCK:
            if key in _BASES:
                _BASES.move_to_end(key)
                return _BASES[key]
            b = self._render_base(aoi, grid)
            _BASES[key] = b
            while len(_BASES) > MAX_CACHED_BASES:
                _BASES.popitem(last=False)
            return b

    def _render_base(self, aoi: AOI, grid: Grid) -> _Base:
        lay = self._layout(aoi)
        b = _Base()
        b.grid, b.grid20 = grid, grid.scaled(2)
        b.layout = lay
        shapes = [(reproject_geometry(g, lay.epsg, grid.epsg), material_code(m)) for g, m in lay.shapes]
        labels = rasterize_labels(shapes, b.grid20, 4)
        H, W = grid.shape
        nat10, nvf10, mod10 = self._natural(aoi, lay, grid, BANDS_10M)
        nat20, nvf20, mod20 = self._natural(aoi, lay, b.grid20, BANDS_20M)
        b.g10, b.vf10, _ = compose(labels, 2, nat10, nvf10, BANDS_10M, mod10)
        b.g20, b.vf20, _ = compose(labels, 4, nat20, nvf20, BANDS_20M, mod20)
        soil = spectrum("coastal_soil" if lay.coastal else "sand")
        dveg = spectrum("vegetation") - soil
        b.dveg10 = dveg[[ALL_BANDS.index(x) for x in BANDS_10M]]
        b.dveg20 = dveg[[ALL_BANDS.index(x) for x in BANDS_20M]]
        b.events = []
        tex = texture_bank(self.seed)
        for e in self._scripted(aoi):
            geom = reproject_geometry(e.geometry, lay.epsg, grid.epsg)
            rim = reproject_geometry(e.rim, lay.epsg, grid.epsg) if e.rim is not None else None
            per_res = []
            for g_, bands in ((grid, BANDS_10M), (b.grid20, BANDS_20M)):
                cov = coverage(geom, g_)
                rcov = coverage(rim, g_) if rim is not None else None
                mod = None
                if cov is not None and e.cls == "earthworks":
                    r0, c0, f = cov
                    sub = g_.window(r0, c0, *f.shape)
                    mod = 1.0 + 0.07 * tex_field(tex[1], sub, scale_m=6.0, offset=(17.0, 91.0))
                per_res.append((cov, rcov, mod, bands))
            b.events.append((e, per_res))
        log.debug("simulated base rendering of %s on %dx%d px cached", aoi.id, W, H)
        return b

    def _natural(self, aoi: AOI, lay: Layout, grid: Grid, bands):
        """Natural terrain of ``grid``: reflectance (B, H, W), vegetation fraction, man-made texture."""
        rng = np.random.default_rng(stable_hash("terrain", aoi.id, self.seed))
        tex = texture_bank(self.seed)
        offs = [tuple(o) for o in rng.uniform(0, TEX_N, size=(8, 2))]
        rock_bias = float(rng.uniform(-0.3, 1.0))
        dune_ang = float(rng.uniform(0, math.pi))
        dune_lam = float(rng.uniform(160, 380))
        dune_amp = float(rng.uniform(0.015, 0.045))
        # aeolian streaks: large patches stretched along the wind
        large = tex_field(tex[0], grid, scale_m=40.0, angle=dune_ang, aniso=2.5, offset=offs[0])
        mid = tex_field(tex[1], grid, scale_m=14.0, angle=dune_ang, aniso=1.8, offset=offs[1])
        fine = tex_field(tex[2], grid, scale_m=4.0, offset=offs[2])
        wad = tex_field(tex[0], grid, scale_m=22.0, angle=0.6, offset=offs[3])
        wmask = tex_field(tex[0], grid, scale_m=70.0, offset=offs[4])
        dwarp = tex_field(tex[0], grid, scale_m=12.0, offset=offs[5])
        rock = smooth(0.5 + 1.5 * (large - rock_bias) + 0.6 * mid)  # gravel/rock plains, ragged edges
        wadi = np.exp(-((wad / 0.14) ** 2)) * np.clip((wmask - 0.4) * 1.5, 0.0, 1.0)
        t = grid.transform
        xs = t.c + (np.arange(grid.width) + 0.5) * t.a
        ys = t.f + (np.arange(grid.height) + 0.5) * t.e
        phase = (math.sin(dune_ang) * (ys - ys.mean()))[:, None] + (math.cos(dune_ang) * (xs - xs.mean()))[None, :]
        dunes = np.sin(2 * np.pi * phase / dune_lam + 2.2 * dwarp) * (1.0 - rock) * np.clip(large + 0.8, 0, 1)
        bright = (1.0 + 0.06 * mid + 0.03 * fine * (0.6 + rock) + dune_amp * dunes).astype(np.float32)
        sand = spectrum("coastal_soil" if lay.coastal else "sand", bands)
        alt = spectrum("beach" if lay.coastal else "rock", bands)
        if lay.coastal:  # light calcareous patches on red Mediterranean soil
            rock = smooth(0.5 + 1.6 * (0.5 * large + 0.8 * mid - rock_bias + 0.3)) * 0.45
        wadi_s = spectrum("wadi", bands)
        mix_rock = rock.astype(np.float32)
        mix_wadi = (0.7 * wadi).astype(np.float32)
        soil = (sand[:, None, None] * (1 - mix_rock) + alt[:, None, None] * mix_rock)
        soil = soil * (1 - mix_wadi) + wadi_s[:, None, None] * mix_wadi
        nat = (soil * bright).astype(np.float32)
        if lay.coastal:
            vf = 0.05 + 0.12 * np.clip(mid + 0.3, 0, 1) + 0.3 * wadi
        else:
            vf = 0.22 * wadi + 0.05 * np.clip(fine - 1.6, 0, 1)
        mod = (1.0 + 0.035 * mid + 0.02 * fine).astype(np.float32)
        return np.ascontiguousarray(nat), np.ascontiguousarray(vf, dtype=np.float32), mod

    def _ground(self, aoi: AOI, base: _Base, p: DateParams):
        """Surface reflectance of one date before the atmosphere: season, changes, transients."""
        vs = np.float32(0.7 + 0.3 * p.season)  # greener in winter/spring
        g10 = base.g10 + (vs * base.vf10)[None] * base.dveg10[:, None, None]
        g20 = base.g20 + (vs * base.vf20)[None] * base.dveg20[:, None, None]
        for e, per_res in base.events:
            if p.day < e.start:
                continue
            if e.weather_to:
                days = (p.day - e.start).days
                w = 1.0 - math.exp(-days / e.weather_days)
            for (cov, rcov, mod, bands), g in zip(per_res, (g10, g20)):
                if cov is None:
                    continue
                spec = spectrum(e.material, bands) * np.float32(e.gain)
                if e.weather_to:
                    spec = spec + (spectrum(e.weather_to, bands) - spec) * np.float32(w)
                _blend(g, cov, spec, mod)
                if rcov is not None:
                    _blend(g, rcov, spectrum("berm", bands), None)
        tr = transients_for(aoi.id, base.layout, self.seed, p.day)
        for _kind, geom, mat in tr:
            geom = reproject_geometry(geom, base.layout.epsg, base.grid.epsg)
            for g_, bands, g in ((base.grid, BANDS_10M, g10), (base.grid20, BANDS_20M, g20)):
                cov = coverage(geom, g_)
                if cov is not None:
                    _blend(g, cov, spectrum(mat, bands), None)
        return g10, g20

def _blend(g: np.ndarray, cov, spec: np.ndarray, mod) -> None:
    r0, c0, f = cov
    h, w = f.shape
    sub = g[:, r0:r0 + h, c0:c0 + w]
    target = spec[:, None, None] * (mod[None] if mod is not None else 1.0)
    sub += f[None] * (target - sub)
