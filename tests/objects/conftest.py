"""Fixtures of the objects tests; the planted site is described in ``objects_planted``."""

from __future__ import annotations

import pytest
from shapely.geometry import LineString, box

from objects_planted import CX, CY, EPSG, RUNWAY_AZ, Scene, feature, rotated_rect
from pipeline.aoi import AOI
from pipeline.grid import reproject_geometry


@pytest.fixture(scope="session")
def site() -> AOI:
    """The planted airbase: runway 03/21 (azimuth 30), apron A, taxiway T1 (a 20 m wide line)."""
    aoi_utm = box(CX - 1500, CY - 1500, CX + 1500, CY + 1500)
    feats = (
        feature("runway", rotated_rect(CX, CY, 2000, 45, RUNWAY_AZ), designator="03/21", surface="asphalt"),
        feature("apron", box(CX - 850, CY - 100, CX - 550, CY + 100), designator="A"),
        feature("taxiway", LineString([(CX - 1000, CY - 900), (CX + 1000, CY - 900)]), designator="T1", width_m=20),
    )
    return AOI(
        id="test-base",
        name="Test base",
        kind="airbase",
        geometry=reproject_geometry(aoi_utm, EPSG, 4326),
        features=feats,
    )


@pytest.fixture(scope="session")
def grid(site):
    g = site.grid()
    assert g.epsg == EPSG
    return g


@pytest.fixture
def scene(grid):
    """An empty :class:`objects_planted.Scene` on the site grid."""
    return Scene(grid)


@pytest.fixture(scope="session")
def runway_utm():
    return rotated_rect(CX, CY, 2000, 45, RUNWAY_AZ)
