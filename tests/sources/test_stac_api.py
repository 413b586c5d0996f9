"""StacApiSource driven through pystac-client and rasterio against a local STAC API and a COG
file server with HTTP Range support (tests/sources/_fakes.py)."""

from __future__ import annotations

import shutil
from datetime import date

import numpy as np
import pytest

from pipeline.errors import DataError, SourceUnavailable
from pipeline.scene import BANDS_10M
from pipeline.sources import get_source
from pipeline.sources._retry import RetryPolicy
from pipeline.sources.stac import StacApiSource

from ._fakes import FileServer, make_scene, stac_item, truth_dn
from .conftest import T_AFTER, _lonlat_bounds

FAST = RetryPolicy(attempts=2, backoff_s=0.01, factor=2.0, max_429=2)
START, END = date(2022, 1, 1), date(2022, 2, 28)


def api_source(api, tmp_path=None, **kw):
    kw.setdefault("retry", FAST)
    return StacApiSource(api.url, name="fake-stac", cache_dir=(tmp_path / "cache") if tmp_path else None, **kw)


def grid_lonlat(aoi):
    g = aoi.grid()
    rows, cols = np.indices(g.shape)
    return g.lonlat(rows, cols)


@pytest.fixture
def es_api(stac_api, file_server, archive):
    stac_api.items = [stac_item(s, file_server.href, style="earth-search") for s in archive["tartus"] + archive["tobruk"]]
    # Earth Search v1 with boa_offset_applied=false on the baseline-04.00 items
    for it in stac_api.items:
        if it["properties"]["s2:processing_baseline"] >= "04.00":
            it["properties"]["earthsearch:boa_offset_applied"] = False
    return stac_api


def test_earth_search_style_pair_across_baseline(es_api, file_server, tartus, archive, tmp_path):
    src = api_source(es_api, tmp_path, page_size=1)
    acqs = src.search(tartus, START, END)
    assert [a.date for a in acqs] == [date(2022, 1, 20), date(2022, 1, 30)]
    assert [a.offset for a in acqs] == [0, 1000]
    assert [a.id for a in acqs] == ["S2A_36SYD_20220120_0_L2A", "S2B_36SYD_20220130_0_L2A"]
    assert len(es_api.search_bodies) >= 2 and es_api.search_bodies[1].get("token") == "1"  # paginated
    assert es_api.search_bodies[0]["collections"] == ["sentinel-2-l2a"]
    file_server.range_gets = file_server.full_gets = 0
    stack = src.read(tartus, acqs)
    assert file_server.full_gets == 0 and file_server.range_gets > 0  # only range requests
    lon, lat = grid_lonlat(tartus)
    truth = archive["truth"]["tartus"]
    for t in range(2):
        for b in BANDS_10M:
            want = truth_dn(truth, b, lon, lat)
            got = stack.data[t, stack.band_index(b)].astype(float) - acqs[t].offset
            assert np.abs(got - want).max() <= 0.5 + 1e-9
    assert np.nanmax(np.abs(stack.reflectance(0) - stack.reflectance(1))) * 1e4 <= 1.0
    assert set(np.unique(stack.scl)) == {4, 6, 9}


def test_duplicates_keep_newest_and_offset_from_metadata(stac_api, file_server, archive, tartus, tmp_path):
    """Earth Search _0/_1 duplicates: _1 wins; a reprocessing with a newer baseline wins; an item
    whose metadata says the offset was already removed gets offset 0 whatever its date."""
    sc_after = archive["tartus"][1]
    wrong = make_scene(archive["root"] / "dups", archive["truth"]["tartus"], when=T_AFTER, epsg=32636,
                       lonlat_bounds=_lonlat_bounds(tartus), baseline="04.00", offset=1000, platform="sentinel-2b",
                       tile="36SYD", dn_shift=500, sid="wrong")  # fmt: skip
    old = stac_item(wrong, file_server.href)  # _0, same baseline, different (wrong) data
    new = stac_item(sc_after, file_server.href)
    new["id"] = new["id"].replace("_0_", "_1_")
    stac_api.items = [old, new]
    (acq,) = api_source(stac_api).search(tartus, START, END)
    assert acq.id == new["id"] and acq.offset == 1000
    st = api_source(stac_api).read(tartus, [acq], bands=("B04",))
    lon, lat = grid_lonlat(tartus)
    assert np.abs(st.data[0, 0].astype(float) - 1000 - truth_dn(archive["truth"]["tartus"], "B04", lon, lat)).max() <= 0.5

    # newer baseline beats the sequence number; boa_offset_applied=true means offset 0
    reproc = stac_item(archive["tartus"][0], file_server.href)  # files without offset
    reproc["properties"].update({"s2:processing_baseline": "05.10", "earthsearch:boa_offset_applied": True})
    reproc["properties"]["datetime"] = new["properties"]["datetime"]
    reproc["properties"]["platform"] = "sentinel-2b"
    reproc["id"] = new["id"].replace("_1_", "_0_")
    stac_api.items = [new, reproc]
    (acq,) = api_source(stac_api).search(tartus, START, END)
    assert acq.id == reproc["id"] and acq.offset == 0 and acq.processing_baseline == "05.10"


def test_planetary_computer_style_and_signing(stac_api, file_server, archive, tartus, monkeypatch):
    stac_api.items = [stac_item(s, file_server.href, style="pc") for s in archive["tartus"]]
    signed = []

    def fake_sign(href):
        signed.append(href)
        return href + "?se=2030-01-01&sig=SECRET"

    import planetary_computer

    monkeypatch.setattr(planetary_computer, "sign", fake_sign)
    src = api_source(stac_api, sign=True)
    acqs = src.search(tartus, START, END)
    assert [a.offset for a in acqs] == [0, 1000]
    assert all("sig=" not in h for a in acqs for r in a.extra["items"] for h in r["assets"].values())
    st = src.read(tartus, acqs, bands=("B02", "B8A"))
    assert len(signed) == 2 * 3  # B02, B8A, SCL per acquisition, signed at read time
    assert st.valid.all()
    assert StacApiSource("https://planetarycomputer.microsoft.com/api/stac/v1").sign is True
    assert get_source("earth-search").sign is False


def test_cross_zone_items_give_one_seamless_stack(es_api, tobruk, archive):
    src = api_source(es_api)
    (acq,) = src.search(tobruk, date(2023, 5, 1), date(2023, 5, 31))
    assert acq.id.count("+") == 1 and {r["epsg"] for r in acq.extra["items"]} == {32634, 32635}
    st = src.read(tobruk, [acq], bands=("B03", "B12"))
    assert st.grid.epsg == 32634 and st.valid.all()
    lon, lat = grid_lonlat(tobruk)
    truth = archive["truth"]["tobruk"]
    from scipy import ndimage

    from ._fakes import _inside

    ok = ~ndimage.binary_dilation(_inside(truth.roof, lon, lat), iterations=3)
    for i, b in enumerate(("B03", "B12")):
        d = np.abs(st.data[0, i].astype(float) - acq.offset - truth_dn(truth, b, lon, lat))
        assert d[ok].max() <= (1.0 if b == "B03" else 1.5), b
    # no seam: the east part (zone 35 item) continues the plane without a step
    east = lon[0] > 24.0
    col = np.argmax(east)
    row = st.data[0, 0, st.grid.height // 4].astype(float)
    assert abs(row[col] - row[col - 1]) < 2.0


def test_empty_and_all_cloudy_search(es_api, tartus, caplog):
    src = api_source(es_api)
    with caplog.at_level("WARNING", logger="pipeline"):
        assert src.search(tartus, date(2019, 1, 1), date(2019, 3, 1)) == []
    assert "no sentinel-2-l2a items over AOI tartus-naval-facility" in caplog.text
    caplog.clear()
    for it in es_api.items:
        it["properties"]["eo:cloud_cover"] = 95.0
    es_api.CONFORMS = [c for c in es_api.CONFORMS if "query" not in c]  # server ignores query: filter client-side
    with caplog.at_level("WARNING", logger="pipeline"):
        assert src.search(tartus, START, END, max_cloud=20) == []
    assert "all have cloud cover above 20" in caplog.text


def test_search_retries_5xx_then_fails_clearly(es_api, tartus):
    es_api.fail_search = [503]
    assert len(api_source(es_api).search(tartus, START, END)) == 2
    es_api.fail_search = [500] * 10
    with pytest.raises(SourceUnavailable, match="STAC API .* failed \\(HTTP 500\\)"):
        api_source(es_api).search(tartus, START, END)


def test_api_unreachable(tartus):
    with pytest.raises(SourceUnavailable, match="cannot reach STAC API"):
        StacApiSource("http://127.0.0.1:9", retry=FAST).search(tartus, START, END)


def test_file_server_down_mid_run_then_rerun(es_api, file_server, tartus, tmp_path):
    src = api_source(es_api, tmp_path)
    acqs = src.search(tartus, START, END)
    port = file_server._port
    file_server.stop()
    with pytest.raises(SourceUnavailable, match="could not be read over HTTP"):
        src.read(tartus, acqs)
    assert src.cache.entries() == []
    file_server._port = port
    file_server.start()
    st = src.read(tartus, acqs)
    assert st.valid.all() and len(src.cache.entries()) == 2


def test_truncated_cog_over_http_then_rerun(stac_api, archive, tartus, tmp_path):
    root = tmp_path / "served"
    shutil.copytree(archive["root"] / "tartus", root / "tartus")
    srv = FileServer(root).start()
    try:
        scenes = [s for s in archive["tartus"]]
        items = []
        for s in scenes:
            it = stac_item(s, lambda f: srv.href(root / "tartus" / f.parent.name / f.name))
            items.append(it)
        stac_api.items = items
        victim = root / "tartus" / scenes[1].id / f"{scenes[1].id}_B04.tif"
        good = victim.read_bytes()
        victim.write_bytes(good[: len(good) // 2])
        src = api_source(stac_api, tmp_path)
        acqs = src.search(tartus, START, END)
        with pytest.raises(DataError, match=f"{victim.name}: corrupt, truncated or unreadable"):
            src.read(tartus, acqs)
        assert len(src.cache.entries()) == 1  # the intact first day is kept, nothing half-written
        assert not list((tmp_path / "cache").rglob(".tmp-*"))
        victim.write_bytes(good)
        # a new source in the same process (as a monitoring loop builds) must not reuse GDAL's
        # cached size/bytes of the truncated file
        assert api_source(stac_api, tmp_path).read(tartus, acqs).valid.all()
    finally:
        srv.stop()


def test_l1c_collection_and_missing_bands(stac_api, file_server, archive, tartus):
    items = [stac_item(s, file_server.href, collection="sentinel-2-l1c") for s in archive["tartus"]]
    for it in items:
        it["id"] = it["id"].replace("L2A", "L1C")
        del it["assets"]["scl"]
    stac_api.items = items
    src = api_source(stac_api, collection="sentinel-2-l1c")
    acqs = src.search(tartus, START, END)
    assert [a.level for a in acqs] == ["L1C", "L1C"]
    st = src.read(tartus, acqs, bands=("B04",))
    assert st.scl is None and st.valid.all()
    del items[0]["assets"]["swir22"], items[0]["assets"]["swir22-jp2"]
    with pytest.raises(DataError, match=r"item S2A_36SYD_20220120_0_L1C lacks band\(s\) B12"):
        src.read(tartus, src.search(tartus, START, END))


def test_crs_of_the_file_wins_over_metadata(stac_api, file_server, archive, tartus):
    """Items whose proj:epsg / proj:code disagree with their files still land on the right pixels."""
    items = [stac_item(s, file_server.href, style=st) for s, st in zip(archive["tartus"], ("earth-search", "pc"))]
    items[0]["properties"]["proj:epsg"] = 32633
    items[1]["properties"]["proj:code"] = "EPSG:32637"
    stac_api.items = items
    src = api_source(stac_api)
    acqs = src.search(tartus, START, END)
    assert [a.extra["items"][0]["epsg"] for a in acqs] == [32633, 32637]
    st = src.read(tartus, acqs, bands=("B03",))
    lon, lat = grid_lonlat(tartus)
    want = truth_dn(archive["truth"]["tartus"], "B03", lon, lat)
    for t in range(2):
        assert np.abs(st.data[t, 0].astype(float) - acqs[t].offset - want).max() <= 0.5


def test_jp2_assets_are_a_fallback_only(stac_api, file_server, archive, tartus):
    """Earth Search L2A lists COG and JPEG2000 copies (the COG is read); its L1C items have only
    JPEG2000 assets, which are then used."""
    from pipeline.sources.stac import item_band_assets
    import pystac

    es = stac_item(archive["tartus"][0], file_server.href)
    keys = item_band_assets(pystac.Item.from_dict(es))
    assert keys["B02"] == "blue" and keys["SCL"] == "scl"
    l1c = stac_item(archive["tartus"][0], file_server.href)
    l1c["assets"] = {k: {**a, "type": "image/jp2"} for k, a in l1c["assets"].items() if not k.endswith("-jp2")}
    l1c["assets"]["thumbnail"] = {"href": "http://127.0.0.1:9/t.jpg", "type": "image/jpeg", "roles": ["thumbnail"]}
    l1c["assets"]["granule_metadata"] = {"href": "http://127.0.0.1:9/m.xml", "type": "application/xml", "roles": ["metadata"]}
    keys = item_band_assets(pystac.Item.from_dict(l1c))
    assert keys["B04"] == "red" and keys["B8A"] == "nir08" and "thumbnail" not in keys.values()
    stac_api.items = [l1c]
    src = api_source(stac_api)
    (acq,) = src.search(tartus, START, END)
    assert src.read(tartus, [acq], bands=("B04",)).valid.all()
