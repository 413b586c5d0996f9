"""Fixtures of the source tests: planted scenes written as COGs once per session, and local
servers (file server with Range support, STAC API, Sentinel Hub imitation) on 127.0.0.1."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from rasterio.warp import transform_bounds

from pipeline.aoi import load_aoi

from ._fakes import FakeSentinelHub, FakeStacApi, FileServer, Truth, make_scene

T_BEFORE = datetime(2022, 1, 20, 8, 35, 41, tzinfo=timezone.utc)  # baseline 03.01, no offset
T_AFTER = datetime(2022, 1, 30, 8, 35, 39, tzinfo=timezone.utc)  # baseline 04.00, +1000 offset
T_TOBRUK = datetime(2023, 5, 10, 9, 0, 31, tzinfo=timezone.utc)
ZONE_EDGE = 24.0


def _lonlat_bounds(aoi, margin=0.004):
    g = aoi.grid()
    lo0, la0, lo1, la1 = transform_bounds(g.crs_string, "EPSG:4326", *g.bounds, densify_pts=21)
    return (lo0 - margin, la0 - margin, lo1 + margin, la1 + margin)


@pytest.fixture(scope="session")
def tartus():
    return load_aoi("tartus-naval-facility")


@pytest.fixture(scope="session")
def tobruk():
    return load_aoi("tobruk-port")


@pytest.fixture(scope="session")
def archive(tmp_path_factory, tartus, tobruk):
    """Planted scenes on disk.

    * ``tartus``: a pair across 2022-01-25: S2A 2022-01-20 baseline 03.01 (files without offset)
      and S2B 2022-01-30 baseline 04.00 (files with +1000), same planted reflectance; EPSG:32636.
    * ``tobruk``: one datatake on 2023-05-10 as two items, EPSG:32634 west of 24.004 E and
      EPSG:32635 east of 23.996 E (overlapping footprints across the zone edge at 24 E).
    """
    root = tmp_path_factory.mktemp("archive")
    t_truth, b_truth = Truth.around(tartus), Truth.around(tobruk)
    tb = _lonlat_bounds(tartus)
    tartus_scenes = [
        make_scene(root / "tartus", t_truth, when=T_BEFORE, epsg=32636, lonlat_bounds=tb, baseline="03.01",
                   offset=0, platform="sentinel-2a", tile="36SYD", cloud=3.0),
        make_scene(root / "tartus", t_truth, when=T_AFTER, epsg=32636, lonlat_bounds=tb, baseline="04.00",
                   offset=1000, platform="sentinel-2b", tile="36SYD", cloud=7.0),
    ]  # fmt: skip
    bb = _lonlat_bounds(tobruk)
    tobruk_scenes = [
        make_scene(root / "tobruk", b_truth, when=T_TOBRUK, epsg=32634, lonlat_bounds=(bb[0], bb[1], ZONE_EDGE + 0.004, bb[3]),
                   lon_clip=(-180, ZONE_EDGE + 0.004), baseline="05.09", offset=1000, tile="34RGS", cloud=2.0),
        make_scene(root / "tobruk", b_truth, when=T_TOBRUK.replace(second=35), epsg=32635,
                   lonlat_bounds=(ZONE_EDGE - 0.004, bb[1], bb[2], bb[3]), lon_clip=(ZONE_EDGE - 0.004, 180),
                   baseline="05.09", offset=1000, tile="35RKM", cloud=4.0),
    ]  # fmt: skip
    return {"root": root, "tartus": tartus_scenes, "tobruk": tobruk_scenes, "truth": {"tartus": t_truth, "tobruk": b_truth}}


@pytest.fixture
def file_server(archive):
    srv = FileServer(archive["root"]).start()
    yield srv
    srv.stop()


@pytest.fixture
def stac_api():
    srv = FakeStacApi().start()
    yield srv
    srv.stop()


@pytest.fixture
def sh_env(monkeypatch, tmp_path):
    """Environment of the Sentinel Hub tests: http token URL allowed, an empty XDG config home
    (so nothing can read or write the user's sentinelhub config), no SH_* variables."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for v in ("SH_CLIENT_ID", "SH_CLIENT_SECRET", "SH_PROFILE"):
        monkeypatch.delenv(v, raising=False)
    yield tmp_path
    from sentinelhub import SentinelHubDownloadClient

    SentinelHubDownloadClient.clear_cache()


@pytest.fixture
def sh_server(archive, sh_env):
    srv = FakeSentinelHub(archive["tartus"] + archive["tobruk"]).start()
    yield srv
    srv.stop()
