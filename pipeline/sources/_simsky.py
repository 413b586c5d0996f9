"""Acquisition dates, sun and sky of the simulated source: platform, time, clouds and drift.

Private to :mod:`pipeline.sources.simulated`. Every draw for a date comes from a generator seeded
by ``(seed, aoi.id, date)``, so :func:`date_params` is cheap and ``search`` never renders.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

import numpy as np

from ..aoi import AOI
from ..grid import Grid
from ..scene import ALL_BANDS, BASELINE_OFFSET_DATE, SCL
from ._simrender import TEX_N, stable_hash, tex_field, texture_bank, texture_quantiles

__all__ = ["DateParams", "date_params", "cloud_fields", "baseline_and_offset", "mgrs_tile", "scl20", "smooth"]

WAVELENGTH_NM = {"B02": 492, "B03": 560, "B04": 665, "B05": 704, "B06": 740, "B07": 783, "B08": 833,
                 "B8A": 865, "B11": 1614, "B12": 2202}
BASELINES = (
    (date(2015, 1, 1), "02.07"),
    (date(2019, 7, 8), "02.08"),
    (date(2020, 1, 28), "02.09"),
    (date(2021, 6, 30), "03.00"),
    (date(2021, 11, 16), "03.01"),
    (BASELINE_OFFSET_DATE, "04.00"),
)
S2C_FROM = date(2025, 1, 1)



@dataclass(frozen=True)
class DateParams:
    """Per-date draws: platform, time, clouds, radiometric drift, shift, noise seeds, swath edge."""

    day: date
    index: int
    time: datetime
    platform: str
    cloud: float
    cloud_scale: float
    cloud_angle: float
    cloud_off: tuple[float, float]
    soft: float
    shadow_shift: tuple[float, float]
    shadow_mark_off: tuple[float, float]
    cirrus: float
    cirrus_scale: float
    cirrus_angle: float
    cirrus_off: tuple[float, float]
    cirrus_strength: float
    gain: np.ndarray
    haze: np.ndarray
    cloud_gain: float
    shift: tuple[float, float]
    nstart: np.ndarray
    swath: tuple[float, float] | None
    sun_elevation: float
    sun_azimuth: float
    season: float


@functools.lru_cache(maxsize=256)
def mgrs_tile(lon: float, lat: float) -> str:
    """MGRS tile id (``34QEJ``) of a lon/lat point (standard zones; no Norway/Svalbard exceptions)."""
    from pyproj import Transformer

    zone = min(int((lon + 180) // 6) + 1, 60)
    band = "CDEFGHJKLMNPQRSTUVWXX"[int(np.clip((lat + 80) // 8, 0, 20))]
    epsg = (32600 if lat >= 0 else 32700) + zone
    e, n = Transformer.from_crs(4326, epsg, always_xy=True).transform(lon, lat)
    col = ("ABCDEFGH", "JKLMNPQR", "STUVWXYZ")[(zone - 1) % 3][int(e // 100000) - 1]
    row = "ABCDEFGHJKLMNPQRSTUV"[(int(n // 100000) + (5 if zone % 2 == 0 else 0)) % 20]
    return f"{zone:02d}{band}{col}{row}"


def sun_position(lon: float, lat: float, when: datetime) -> tuple[float, float]:
    """Sun elevation and azimuth (degrees, azimuth clockwise from north) at ``when`` (UTC)."""
    doy = when.timetuple().tm_yday
    decl = math.radians(23.44) * math.sin(2 * math.pi * (284 + doy) / 365.0)
    hours = when.hour + when.minute / 60 + when.second / 3600 + lon / 15.0
    h = math.radians((hours - 12.0) * 15.0)
    phi = math.radians(lat)
    el = math.asin(math.sin(phi) * math.sin(decl) + math.cos(phi) * math.cos(decl) * math.cos(h))
    az = math.degrees(math.atan2(math.sin(h), math.cos(h) * math.sin(phi) - math.tan(decl) * math.cos(phi))) + 180.0
    return math.degrees(el), az % 360.0


def smooth(x: np.ndarray) -> np.ndarray:
    """Smoothstep of ``x`` clipped to [0, 1]."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def date_params(aoi: AOI, d: date, *, seed: int, start: date, revisit_days: int, cloud_rate: float,
                nodata_rate: float) -> DateParams:
    """Everything random about one date, drawn from a generator seeded by (seed, AOI id, date)."""
    k = (d - start).days // revisit_days
    rng = np.random.default_rng(stable_hash("date", seed, aoi.id, d.isoformat()))
    lon, lat = aoi.centroid_lonlat
    if k % 2 == 0:
        platform = "sentinel-2c" if d >= S2C_FROM else "sentinel-2a"
    else:
        platform = "sentinel-2b"
    orbit_sec = stable_hash("orbit", aoi.id) % 600
    t = datetime.combine(d, time(0), tzinfo=timezone.utc) + timedelta(
        hours=10.5 - lon / 15.0, seconds=float(orbit_sec - 300 + rng.uniform(-4, 4)))
    t = t.replace(microsecond=0)
    el, az = sun_position(lon, lat, t)
    doy = d.timetuple().tm_yday
    season = math.cos(2 * math.pi * (doy - 20) / 365.25)  # +1 mid-winter, -1 mid-summer
    coastal = aoi.kind.lower() in ("port", "naval_base") or lat > 30.5
    p_cloud = cloud_rate * ((1.0 + 0.85 * season) if coastal else 0.55 * (1.0 + 0.4 * season))
    u = rng.random()
    if u < 0.1 * p_cloud:
        cloud = float(rng.uniform(0.95, 1.0))
    elif u < p_cloud:
        cloud = float(min(0.9, rng.beta(1.1, 2.6)))
    else:
        cloud = 0.0
    cirrus = float(rng.uniform(0.1, 0.7)) if rng.random() < 0.45 * p_cloud + 0.03 else 0.0
    height = float(rng.uniform(800, 3500))
    reach = height / math.tan(math.radians(max(el, 10.0)))
    shadow_shift = (reach * math.sin(math.radians(az)), reach * math.cos(math.radians(az)))
    # radiometry
    sun_gain = (math.sin(math.radians(el)) / math.sin(math.radians(60.0))) ** 0.12
    dust = 1.8 if d.month in (3, 4, 5) else 1.0
    h0 = 0.003 + float(rng.exponential(0.009)) * dust
    lam = np.array([WAVELENGTH_NM[b] for b in ALL_BANDS], dtype=np.float64)
    haze = (h0 * (492.0 / lam) ** 1.6).astype(np.float32)
    gain = (sun_gain * (1.0 - 1.5 * h0) * rng.normal(1.0, 0.012) * rng.normal(1.0, 0.006, size=10)).astype(np.float32)
    # geometry
    if d < date(2021, 1, 1):
        sd, lim = (0.85, 1.6) if rng.random() < 0.2 else (0.35, 0.8)
    else:
        sd, lim = 0.18, 0.5
    shift = tuple(float(v) for v in np.clip(rng.normal(0.0, sd, 2), -lim, lim))
    nstart = rng.integers(0, 1 << 32, size=10)
    swath = (float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(-0.3, 0.4))) if rng.random() < nodata_rate else None
    return DateParams(
        day=d, index=k, time=t, platform=platform, cloud=cloud,
        cloud_scale=float(rng.uniform(45, 110)), cloud_angle=float(rng.uniform(0, 2 * math.pi)),
        cloud_off=tuple(rng.uniform(0, TEX_N, 2)), soft=float(rng.uniform(0.25, 0.6)),
        shadow_shift=shadow_shift, shadow_mark_off=tuple(rng.uniform(0, TEX_N, 2)),
        cirrus=cirrus, cirrus_scale=float(rng.uniform(60, 160)), cirrus_angle=float(rng.uniform(0, math.pi)),
        cirrus_off=tuple(rng.uniform(0, TEX_N, 2)), cirrus_strength=float(rng.uniform(0.4, 1.0)),
        gain=gain, haze=haze, cloud_gain=float(rng.uniform(0.85, 1.12)), shift=shift, nstart=nstart,
        swath=swath, sun_elevation=el, sun_azimuth=az, season=season,
    )

def cloud_fields(seed: int, p: DateParams, grid: Grid):
    """Cloud opacity, cirrus, shadow strength and the SCL shadow-marking mask on ``grid``."""
    tex = texture_bank(seed)
    shape = grid.shape
    zeros = np.zeros(shape, dtype=np.float32)
    alpha, shadow, cirrus, marked = zeros, zeros, zeros, np.ones(shape, dtype=bool)
    if p.cloud > 0:
        thr = float(np.interp(1.0 - p.cloud, np.linspace(0, 1, 1001), texture_quantiles(seed, 3)))
        kw = dict(scale_m=p.cloud_scale, angle=p.cloud_angle, offset=p.cloud_off)
        alpha = smooth((tex_field(tex[3], grid, **kw) - thr) / p.soft)
        cast = smooth((tex_field(tex[3], grid, shift_m=p.shadow_shift, **kw) - thr) / p.soft)
        shadow = cast * (1.0 - alpha)
        marked = tex_field(tex[5], grid, scale_m=8.0, offset=p.shadow_mark_off) > -0.85  # ~80 % marked, in patches
    if p.cirrus > 0:
        thr = float(np.interp(1.0 - p.cirrus, np.linspace(0, 1, 1001), texture_quantiles(seed, 4)))
        f = tex_field(tex[4], grid, scale_m=p.cirrus_scale, angle=p.cirrus_angle, aniso=3.5, offset=p.cirrus_off)
        cirrus = (np.clip((f - thr) / 0.9, 0.0, 1.0) * p.cirrus_strength).astype(np.float32)
    return alpha.astype(np.float32), cirrus, shadow.astype(np.float32), marked

def baseline_and_offset(d: date) -> tuple[str, int]:
    """Processing baseline and DN offset of an acquisition sensed on ``d``."""
    baseline = [b for since, b in BASELINES if d >= since][-1]
    return baseline, (1000 if d >= BASELINE_OFFSET_DATE else 0)


def scl20(g20, alpha, cirrus, shadow, marked) -> np.ndarray:
    """Scene classification at 20 m, Sen2Cor-like rules on the ground reflectance plus clouds."""
    b05, b8a, b11 = g20[0], g20[3], g20[4]
    s = np.full(b05.shape, SCL.NOT_VEGETATED, dtype=np.uint8)
    ndre = (b8a - b05) / (b8a + b05 + 1e-6)
    s[ndre > 0.3] = SCL.VEGETATION
    s[b8a < 0.12] = SCL.DARK_AREA
    s[(b8a < 0.05) & (b11 < 0.03)] = SCL.WATER
    clear = alpha <= 0.3
    s[clear & (shadow > 0.3) & marked] = SCL.CLOUD_SHADOW
    s[clear & (cirrus > 0.35)] = SCL.THIN_CIRRUS
    s[alpha > 0.3] = SCL.CLOUD_MEDIUM
    s[alpha > 0.6] = SCL.CLOUD_HIGH
    return s
