"""Helpers of the objects tests and the planted desert airbase (built by the ``site`` fixture).

The AOI is a 3 x 3 km square in UTM zone 34N (near Benghazi) holding

* ``runway 03/21``: a 2000 x 45 m polygon whose axis points 30 degrees east of grid north,
  centred on the AOI centre;
* ``apron A``: a 300 x 200 m axis-aligned rectangle 700 m west of the centre;
* ``taxiway T1``: a LineString 20 m wide (``width_m``) running east-west 900 m south of the centre.

Geometries are drawn in UTM metres and stored in lon/lat like a real AOI file.
"""

from __future__ import annotations

import math

import numpy as np
from rasterio import features as rio_features
from shapely.geometry import Polygon

from pipeline.aoi import AOIFeature
from pipeline.grid import reproject_geometry

EPSG = 32634
CX, CY = 431005.0, 3550995.0  # AOI centre, UTM metres (not on a 10 m line on purpose)
RUNWAY_AZ = 30.0


def rotated_rect(cx, cy, length, width, az_deg) -> Polygon:
    """Rectangle centred on (cx, cy) whose long side points ``az_deg`` clockwise from north."""
    a = math.radians(az_deg)
    ux, uy = math.sin(a), math.cos(a)  # along
    vx, vy = math.cos(a), -math.sin(a)  # across
    hl, hw = length / 2, width / 2
    pts = [
        (cx + s * hl * ux + t * hw * vx, cy + s * hl * uy + t * hw * vy)
        for s, t in ((-1, -1), (1, -1), (1, 1), (-1, 1))
    ]
    return Polygon(pts)


def feature(role, geom_utm, **props):
    ll = reproject_geometry(geom_utm, EPSG, 4326)
    name = f"{role} {props['designator']}" if "designator" in props else role
    return AOIFeature(role=role, geometry=ll, name=name, properties={"role": role, **props})



def burn(geom, grid) -> np.ndarray:
    """(H, W) bool of the pixels whose centre is inside ``geom`` (UTM)."""
    return rio_features.rasterize(
        [geom], out_shape=grid.shape, transform=grid.transform, fill=0, default_value=1, dtype="uint8"
    ).astype(bool)


def rc_of(grid, x, y) -> tuple[int, int]:
    """Row and column of the pixel holding UTM point (x, y)."""
    inv = ~grid.transform
    c, r = inv @ (x, y)
    return int(math.floor(r)), int(math.floor(c))


class Scene:
    """Change inputs on ``grid`` with nothing changed: mask False, magnitude 0, every delta a
    little noise (sd 0.003), before and after images of desert sand, every pixel valid.

    Spectra (B02, B03, B04, B08, B11, B12 reflectance): ``SAND`` bright desert sand (SWIR/visible
    ratio 1.9), ``ROOF`` a bright roof (ratio 1.0), ``SOIL`` darker disturbed soil.
    """

    BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")
    SAND = (0.20, 0.28, 0.36, 0.40, 0.52, 0.45)
    ROOF = (0.45, 0.47, 0.48, 0.50, 0.46, 0.40)
    SOIL = (0.15, 0.21, 0.28, 0.33, 0.50, 0.46)

    def __init__(self, grid, seed=0):
        self.grid = grid
        h, w = grid.shape
        rng = np.random.default_rng(seed)
        self.mask = np.zeros((h, w), bool)
        self.magnitude = np.zeros((h, w), np.float32)
        self.deltas = {
            k: rng.normal(0, 0.003, (h, w)).astype(np.float32) for k in ("ndvi", "ndbi", "bsi", "dbi", "mndwi", "brightness")
        }
        self.before = np.empty((len(self.BANDS), h, w), np.float32)
        self.before[:] = np.asarray(self.SAND, np.float32)[:, None, None]
        self.after = self.before.copy()
        self.valid = np.ones((h, w), bool)

    def plant(self, where: np.ndarray, *, magnitude=3.0, before=None, after=None, **deltas):
        """Mark ``where`` as changed, add the given deltas there and set the spectra."""
        self.mask |= where
        self.magnitude[where] = magnitude
        for k, v in deltas.items():
            self.deltas[k][where] += np.float32(v)
        if before is not None:
            self.before[:, where] = np.asarray(before, np.float32)[:, None]
        if after is not None:
            self.after[:, where] = np.asarray(after, np.float32)[:, None]

    def extract(self, aoi, **kw):
        from pipeline.objects import extract_objects

        return extract_objects(
            self.mask,
            self.magnitude,
            self.deltas,
            self.grid,
            aoi,
            before="2024-01-01/2024-02-01",
            after="2024-06-01/2024-07-01",
            before_img=self.before,
            after_img=self.after,
            bands=self.BANDS,
            valid=self.valid,
            **kw,
        )


def on_axis(d: float, az_deg: float = RUNWAY_AZ) -> tuple[float, float]:
    """The UTM point ``d`` metres from the AOI centre along the runway axis."""
    a = math.radians(az_deg)
    return CX + d * math.sin(a), CY + d * math.cos(a)
