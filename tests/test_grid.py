"""The processing grid: UTM zone of the AOI centre, 10 m pixels snapped to multiples of 10 m."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import box

from pipeline.aoi import AOI
from pipeline.grid import Grid, reproject_geometry, utm_epsg


@pytest.mark.parametrize(
    "lon, lat, epsg",
    [
        (21.83, 21.69, 32634),  # Maaten al-Sarra
        (35.95, 35.40, 32636),  # Khmeimim
        (23.999, 32.07, 32634),  # just west of the 24 E zone edge
        (24.001, 32.07, 32635),  # just east of it
        (-58.38, -34.60, 32721),  # Buenos Aires: south
        (151.2, -33.87, 32756),  # Sydney: south
        (0.0, 0.0, 32631),  # equator belongs to the north
        (180.0, 10.0, 32660),
        (-180.0, -10.0, 32701),
    ],
)
def test_utm_epsg_zone_and_hemisphere(lon, lat, epsg):
    assert utm_epsg(lon, lat) == epsg


def test_utm_epsg_rejects_out_of_range():
    with pytest.raises(ValueError, match="out of range"):
        utm_epsg(21.0, 100.0)


def _aoi(lon0, lat0, lon1, lat1):
    return AOI(id="t", name="t", kind="airbase", geometry=box(lon0, lat0, lon1, lat1))


@settings(max_examples=60, deadline=None)
@given(
    lon=st.floats(-179.0, 178.9),
    lat=st.floats(-79.0, 79.0),
    w=st.floats(0.002, 0.1),
    h=st.floats(0.002, 0.1),
)
def test_grid_is_snapped_and_covers_the_aoi(lon, lat, w, h):
    aoi = _aoi(lon, lat, lon + w, lat + h)
    g = aoi.grid(buffer_m=100)
    assert g.res == 10.0
    xmin, ymin, xmax, ymax = g.bounds
    for v in (xmin, ymin, xmax, ymax):
        assert math.isclose(v / 10.0, round(v / 10.0), abs_tol=1e-6)
    poly = reproject_geometry(aoi.geometry, 4326, g.epsg)
    assert box(*g.bounds).contains(poly)
    assert g.epsg == utm_epsg(*aoi.centroid_lonlat)
    assert (g.epsg // 100) == (326 if aoi.centroid_lonlat[1] >= 0 else 327)


def test_grid_across_zone_edge_uses_centre_zone_and_covers_both_sides():
    # Tobruk port straddles 24 E; the centre (23.985 E) is in zone 34
    aoi = _aoi(23.94, 32.045, 24.03, 32.095)
    g = aoi.grid()
    assert g.epsg == 32634
    east_point = reproject_geometry(box(24.02, 32.06, 24.029, 32.07), 4326, 32634)
    assert box(*g.bounds).contains(east_point)
    # the same AOI shifted east of the edge lands in zone 35
    assert _aoi(24.01, 32.045, 24.1, 32.095).grid().epsg == 32635


def test_grid_southern_hemisphere_northings_positive():
    g = _aoi(-58.40, -34.62, -58.36, -34.58).grid()
    assert g.epsg == 32721
    assert 6_100_000 < g.bounds[1] < 6_200_000


def test_scaled_grid_shares_origin_and_extent():
    g = Grid.from_bounds(32634, (500003.0, 2400001.0, 501007.0, 2401009.0))
    assert (g.bounds[0], g.bounds[3]) == (500000.0, 2401010.0)
    g20 = g.scaled(2)
    assert g20.res == 20.0 and g20.transform.c == g.transform.c and g20.transform.f == g.transform.f
    assert g20.width * 2 >= g.width and g20.height * 2 >= g.height


def test_grid_roundtrips_through_dict():
    g = Grid.from_bounds(32721, (300000, 6150000, 301000, 6151000))
    assert Grid.from_dict(g.to_dict()) == g
