"""A tiny offline source with planted changes, for monitoring tests (independent of the simulator).

Scenes of an AOI's grid (tartus-naval-facility: 155 x 154 px; a window of the grid gets its part of
the scenes, as tiles do): a fixed textured background (bare-soil
spectrum ``SOIL`` times 1 +- 0.25 of smoothed noise) plus 0.004 of per-date noise, SCL 5 (not
vegetated) everywhere, with 40 fixed darker or brighter rectangles (buildings, roads). Planted, by date:

- reference: every 15 days from 2024-03-01 to 2024-08-28, background only;
- ``TRANSIENT_DATE`` 2024-09-08: a 10 x 10 px ``VESSEL`` at ``TRANSIENT`` - one
  date only (a parked ship / aircraft shadow), must never be reported;
- ``CLOUDY_DATE`` 2024-09-18: the whole scene cloudy (SCL 9, reflectance 0.6), must be skipped;
- from ``STRUCTURE_FROM`` 2024-09-23 on: a 12 x 12 px bright ``ROOF`` at ``STRUCTURE``,
  seen 09-23, 09-28, 10-03, 10-08: candidate on 09-23, confirmed on 09-28, then persisting
  (``structure_until`` removes it again after that date: the change is then ``gone``;
  ``cloud_over_structure`` dates have a 60 x 60 px cloud over it, the rest of the scene clear).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import numpy as np
from scipy import ndimage

from pipeline.scene import SCL, Acquisition, SceneStack

BANDS = ("B02", "B03", "B04", "B08", "B8A", "B11", "B12")
SOIL = dict(zip(BANDS, (0.10, 0.13, 0.16, 0.22, 0.23, 0.30, 0.25)))  # bare desert soil
ROOF = dict(zip(BANDS, (0.25, 0.28, 0.30, 0.33, 0.34, 0.45, 0.38)))  # new bright concrete roof
VESSEL = dict(zip(BANDS, (0.18, 0.20, 0.22, 0.26, 0.27, 0.42, 0.32)))  # a parked vessel, one date
TRANSIENT = (slice(92, 102), slice(88, 98))
STRUCTURE = (slice(60, 72), slice(62, 74))
TRANSIENT_DATE = date(2024, 9, 8)
CLOUDY_DATE = date(2024, 9, 18)
STRUCTURE_FROM = date(2024, 9, 23)
MONITORED = [date(2024, 9, 3) + timedelta(days=5 * i) for i in range(8)]  # 09-03 .. 10-08
REFERENCE = [date(2024, 3, 1) + timedelta(days=15 * i) for i in range(13)]  # 03-01 .. 08-28


def _overlaps(rect, sl, margin=4):
    r0, c0, h, w = rect
    return not (r0 + h + margin <= sl[0].start or sl[0].stop + margin <= r0 or c0 + w + margin <= sl[1].start or sl[1].stop + margin <= c0)


class PlantedSource:
    name = "planted"

    def __init__(self, dates=None, *, structure_until: date | None = None, cloud_over_structure=()):
        self.dates = sorted(dates or (REFERENCE + MONITORED))
        self.structure_until = structure_until  # last date the roof stands (None: stays)
        self.cloud_over_structure = set(cloud_over_structure)  # dates with a cloud over the roof only
        self.reads = 0  # acquisitions read, to check that a rerun does no image work

    def search(self, aoi, start, end, *, max_cloud=None):
        out = []
        for d in self.dates:
            if start <= d <= end:
                cc = 95.0 if d == CLOUDY_DATE else 2.0
                if max_cloud is not None and cc > max_cloud:
                    continue
                out.append(
                    Acquisition(id=f"PLANTED_{d:%Y%m%d}", time=datetime(d.year, d.month, d.day, 8, 30, tzinfo=timezone.utc),
                                platform="sentinel-2a", processing_baseline="05.10", offset=0, cloud_cover=cc, source=self.name)
                )
        return out

    def read(self, aoi, acquisitions, *, grid=None, bands=("B02", "B03", "B04", "B08", "B8A", "B11", "B12")):
        full = aoi.grid()
        grid = grid or full
        # scenes are made on the AOI grid; a window of it (a tile) gets its part of them
        r0 = round((full.transform.f - grid.transform.f) / full.res)
        c0 = round((grid.transform.c - full.transform.c) / full.res)
        if grid.epsg != full.epsg or r0 < 0 or c0 < 0 or r0 + grid.height > full.height or c0 + grid.width > full.width:
            raise ValueError(f"planted scenes can only be read on the AOI grid or a window of it, not {grid}")
        win = (slice(r0, r0 + grid.height), slice(c0, c0 + grid.width))
        H, W = full.shape
        rng = np.random.default_rng(7)
        n = ndimage.gaussian_filter(rng.normal(size=(H, W)), 2.5)
        n = (n - n.min()) / (n.max() - n.min()) - 0.5
        base = np.stack([SOIL[b] * (1 + 0.5 * n) for b in bands]).astype(np.float32)
        for k in range(40):  # existing buildings and roads: sharp edges for co-registration
            r0, c0 = rng.integers(5, H - 20), rng.integers(5, W - 20)
            h, w = rng.integers(3, 14, size=2)
            if not (_overlaps((r0, c0, h, w), STRUCTURE) or _overlaps((r0, c0, h, w), TRANSIENT)):
                base[:, r0:r0 + h, c0:c0 + w] *= rng.choice([0.6, 1.5])
        roof = np.array([ROOF[b] for b in bands], np.float32)[:, None, None]
        vessel = np.array([VESSEL[b] for b in bands], np.float32)[:, None, None]
        T = len(acquisitions)
        data = np.zeros((T, len(bands), H, W), np.uint16)
        scl = np.full((T, H, W), SCL.NOT_VEGETATED, np.uint8)
        for t, a in enumerate(acquisitions):
            d = a.date
            r = base + np.random.default_rng(d.toordinal()).normal(0, 0.004, base.shape).astype(np.float32)
            if d == TRANSIENT_DATE:
                r[(slice(None), *TRANSIENT)] = vessel
            if d >= STRUCTURE_FROM and (self.structure_until is None or d <= self.structure_until):
                r[(slice(None), *STRUCTURE)] = roof
            if d in self.cloud_over_structure:  # 60 x 60 px cloud (15 % of the grid) over the roof
                r[:, 40:100, 40:100] = 0.6
                scl[t, 40:100, 40:100] = SCL.CLOUD_HIGH
            if d == CLOUDY_DATE:
                r[:] = 0.6
                scl[t] = SCL.CLOUD_HIGH
            data[t] = np.clip(np.round(r * 10000), 1, 65535).astype(np.uint16)
        self.reads += T
        data, scl = np.ascontiguousarray(data[(Ellipsis, *win)]), np.ascontiguousarray(scl[(Ellipsis, *win)])
        return SceneStack(grid, tuple(bands), data, np.ones(scl.shape, bool), scl, tuple(acquisitions))
