"""``s2watch stac build`` and LocalStacSource: real BigEarthNet/OSCD files and planted scenes."""

from __future__ import annotations

import json
import re
import shutil
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from scipy import ndimage

from pipeline.errors import DataError, NoDataError, PipelineError, UsageError
from pipeline.scene import ALL_BANDS, BANDS_10M
from pipeline.sources import get_source
from pipeline.sources.stac import LocalStacSource
from pipeline.sources.stac_build import build_catalog

from ._fakes import truth_dn, truth_scl


def _items(cat_path):
    return sorted(pystac.Catalog.from_file(str(cat_path)).get_items(recursive=True), key=lambda i: i.id)


def oracle(aoi, truth, band, grid=None):
    """Planted harmonised DN at the grid's pixel centres (independent of any reader)."""
    g = grid or aoi.grid()
    rows, cols = np.indices(g.shape)
    lon, lat = g.lonlat(rows, cols)
    return truth_dn(truth, band, lon, lat)


def interior(mask_true_blocks, width=2):
    """Pixels farther than ``width`` from any planted block edge."""
    edges = ndimage.binary_dilation(mask_true_blocks, iterations=width) & ~ndimage.binary_erosion(mask_true_blocks, iterations=width)
    return ~edges


# ------------------------------------------------------------------------------------------------
# real data


def test_build_bigearthnet(shared_data, tmp_path):
    src = shared_data / "bigearthnet-l2a"
    cat = build_catalog(src, tmp_path / "cat")
    items = _items(cat)
    assert len(items) == 6
    for it in items:
        name = it.id
        m = re.search(r"_(\d{8})T(\d+)_", name)
        assert it.datetime.date() == datetime.strptime(m.group(1), "%Y%m%d").date()
        assert set(it.assets) == {"B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"}
        assert it.properties["processing:level"] == "L2A"
        for key, a in it.assets.items():
            assert Path(a.href).is_absolute() and Path(a.href).is_file()
            assert a.href.endswith(f"_{key}.tif")
            with rasterio.open(a.href) as ds:
                assert a.extra_fields["proj:code"] == f"EPSG:{ds.crs.to_epsg()}"
                assert a.extra_fields["proj:shape"] == list(ds.shape)
            assert a.extra_fields["eo:bands"][0]["name"] == key
    first = items[0]
    assert first.datetime == datetime(2017, 6, 13, 10, 10, 31, tzinfo=timezone.utc)
    # the SAFE name in BigEarthNet's metadata JSON gives the processing baseline (N0205)
    meta = json.loads(next((src / first.id).glob("*.json")).read_text())
    bl = re.search(r"_N(\d\d)(\d\d)_", meta["tile_source"])
    assert first.properties["s2:processing_baseline"] == f"{bl.group(1)}.{bl.group(2)}"


def test_build_oscd_dates_from_dates_txt(shared_data, tmp_path):
    images = shared_data / "oscd-dev" / "images"
    cat = build_catalog(images, tmp_path / "oscd")
    items = _items(cat)
    assert len(items) == 2 * len([c for c in images.iterdir() if c.is_dir()])
    by_folder = {}
    for it in items:
        folder = Path(it.assets["B02"].href).parent
        by_folder[(folder.parent.name, folder.name)] = it
        assert it.properties["processing:level"] == "L1C"
        assert "B10" in it.assets and "SCL" not in it.assets
    for city in images.iterdir():
        lines = dict(line.split(":") for line in (city / "dates.txt").read_text().split("\n") if ":" in line)
        for k in (1, 2):
            want = datetime.strptime(lines[f"date_{k}"].strip(), "%Y%m%d").date()
            assert by_folder[(city.name, f"imgs_{k}")].datetime.date() == want, (city.name, k)


def test_local_source_reads_oscd_city(shared_data, tmp_path):
    """End to end on a real OSCD city (EPSG:4326 files): reading through the catalog agrees with
    nearest sampling of the original file at the grid's pixel centres."""
    city = shared_data / "oscd-dev" / "images" / "bercy"
    cat = build_catalog(city, tmp_path / "bercy")
    aoi_path = tmp_path / "bercy.geojson"
    shutil.copy(city / "bercy.geojson", aoi_path)
    from pipeline.aoi import load_aoi

    aoi = load_aoi(aoi_path)
    src = get_source(str(cat.parent))
    assert isinstance(src, LocalStacSource)
    acqs = src.search(aoi, date(2015, 1, 1), date(2018, 12, 31))
    assert [a.date.isoformat() for a in acqs] == ["2016-11-30", "2017-08-29"]
    assert all(a.level == "L1C" and a.offset == 0 for a in acqs)
    stack = src.read(aoi, acqs, bands=("B04", "B11"))
    assert stack.scl is None and stack.data.shape[:2] == (2, 2)
    g = stack.grid
    rows, cols = np.indices(g.shape)
    lon, lat = g.lonlat(rows, cols)
    with rasterio.open(next((city / "imgs_1").glob("*_B04.tif"))) as ds:
        r, c = rasterio.transform.rowcol(ds.transform, lon.ravel(), lat.ravel())
        r, c = np.asarray(r).reshape(g.shape), np.asarray(c).reshape(g.shape)
        inside = (r >= 0) & (r < ds.height) & (c >= 0) & (c < ds.width)
        ref = ds.read(1)[np.clip(r, 0, ds.height - 1), np.clip(c, 0, ds.width - 1)]
    got = stack.data[0, 0]
    m = inside & stack.valid[0]
    assert m.mean() > 0.5
    assert np.array_equal(m, inside & (got > 0))
    corr = np.corrcoef(got[m].astype(float), ref[m].astype(float))[0, 1]
    assert corr > 0.9, corr
    assert np.median(np.abs(got[m].astype(float) - ref[m])) < 60


# ------------------------------------------------------------------------------------------------
# planted scenes


@pytest.fixture
def tartus_catalog(archive, tmp_path):
    return build_catalog(archive["root"] / "tartus", tmp_path / "tartus-cat")


def test_local_catalog_pair_across_baseline_change(archive, tartus, tartus_catalog):
    src = LocalStacSource(tartus_catalog)
    acqs = src.search(tartus, date(2022, 1, 1), date(2022, 2, 28))
    assert [a.date for a in acqs] == [date(2022, 1, 20), date(2022, 1, 30)]
    assert [a.offset for a in acqs] == [0, 1000]
    assert [a.processing_baseline for a in acqs] == ["03.01", "04.00"]
    assert [a.platform for a in acqs] == ["sentinel-2a", "sentinel-2b"]
    stack = src.read(tartus, acqs)
    truth = archive["truth"]["tartus"]
    g = tartus.grid()
    assert stack.grid == g and stack.data.shape == (2, 10, *g.shape)
    assert stack.valid.all()
    rows, cols = np.indices(g.shape)
    lon, lat = g.lonlat(rows, cols)
    from ._fakes import _inside

    roof = _inside(truth.roof, lon, lat)
    for t in range(2):
        harm = stack.data[t].astype(np.int32) - acqs[t].offset
        for i, b in enumerate(ALL_BANDS):
            want = oracle(tartus, truth, b)
            diff = np.abs(harm[i] - want)
            if b in BANDS_10M:  # aligned 10 m grid: exact, planted roof included
                assert diff.max() <= 0.5 + 1e-9, (t, b, diff.max())
            else:  # 20 m bands bilinear: exact away from the roof's edges
                assert diff[interior(roof)].max() <= 1.0, (t, b)
    # the pair across 2022-01-25 agrees after harmonisation
    h0 = stack.reflectance(0)
    h1 = stack.reflectance(1)
    assert np.nanmax(np.abs(h0 - h1)) * 10000 <= 1.0
    # SCL nearest: the planted classes, exact away from block edges
    want_scl = truth_scl(truth, lon, lat)
    blocks = want_scl != 4
    ok = interior(blocks, 3)
    assert np.array_equal(stack.scl[0][ok], want_scl[ok])
    assert set(np.unique(stack.scl[0])) == {4, 6, 9}


def test_local_catalog_empty_search_and_empty_read(tartus, tartus_catalog, caplog):
    src = LocalStacSource(tartus_catalog)
    with caplog.at_level("WARNING"):
        assert src.search(tartus, date(2019, 1, 1), date(2019, 2, 1)) == []
    assert "no items over AOI tartus-naval-facility" in caplog.text
    with pytest.raises(NoDataError, match="no acquisitions to read"):
        src.read(tartus, [])


def test_local_catalog_other_aoi_not_matched(tobruk, tartus_catalog):
    assert LocalStacSource(tartus_catalog).search(tobruk, date(2022, 1, 1), date(2022, 12, 31)) == []


def test_missing_band_and_corrupt_file_then_rerun(archive, tartus, tmp_path):
    """A missing band and a truncated file give clear errors, nothing is cached for the failed
    acquisition, and the rerun after repair completes."""
    src_dir = tmp_path / "scenes"
    shutil.copytree(archive["root"] / "tartus", src_dir)
    victim = sorted(src_dir.rglob("*_B11.tif"))[0]
    saved = victim.read_bytes()
    victim.unlink()
    cat = build_catalog(src_dir, tmp_path / "cat")
    src = LocalStacSource(cat, cache_dir=tmp_path / "cache")
    acqs = src.search(tartus, date(2022, 1, 1), date(2022, 2, 28))
    with pytest.raises(DataError, match=r"lacks band\(s\) B11"):
        src.read(tartus, acqs)
    # reading fewer bands works
    assert src.read(tartus, acqs, bands=BANDS_10M).data.shape[1] == 4

    victim.write_bytes(saved[: len(saved) // 2])  # truncated COG
    cat = build_catalog(src_dir, tmp_path / "cat")
    src = LocalStacSource(cat, cache_dir=tmp_path / "cache")
    acqs = src.search(tartus, date(2022, 1, 1), date(2022, 2, 28))
    n_before = len(src.cache.entries())
    with pytest.raises(DataError, match="corrupt, truncated or unreadable") as ei:
        src.read(tartus, acqs)
    assert victim.name in str(ei.value)
    assert len(src.cache.entries()) == n_before + (0 if victim.parent.name in acqs[0].id else 1)
    assert not list((tmp_path / "cache").rglob(".tmp-*"))
    victim.unlink()  # moved away after the catalog was built: said so, not "corrupt"
    with pytest.raises(DataError, match="no such file; the catalog points to a file that is not there") as ei:
        LocalStacSource(cat).read(tartus, acqs)
    assert victim.name in str(ei.value) and "stac build" in str(ei.value)
    victim.write_bytes(saved)
    stack = LocalStacSource(cat, cache_dir=tmp_path / "cache").read(tartus, acqs)
    assert stack.valid.all()


def test_cache_rerun_reads_nothing(tartus, tartus_catalog, tmp_path, monkeypatch):
    src = LocalStacSource(tartus_catalog, cache_dir=tmp_path / "c")
    acqs = src.search(tartus, date(2022, 1, 1), date(2022, 2, 28))
    first = src.read(tartus, acqs)
    import pipeline.sources.stac as stac_mod

    def boom(*a, **k):
        raise AssertionError("read_to_grid called on a cached rerun")

    monkeypatch.setattr(stac_mod, "read_to_grid", boom)
    again = LocalStacSource(tartus_catalog, cache_dir=tmp_path / "c").read(tartus, acqs)
    assert np.array_equal(first.data, again.data) and np.array_equal(first.scl, again.scl)


def test_build_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no per-band GeoTIFFs"):
        build_catalog(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(UsageError, match="not a folder"):
        build_catalog(tmp_path / "nope", tmp_path / "out")
    d = tmp_path / "nodate"
    d.mkdir()
    with rasterio.open(d / "scene_B02.tif", "w", driver="GTiff", width=4, height=4, count=1, dtype="uint16",
                       crs="EPSG:32636", transform=rasterio.transform.from_origin(0, 0, 10, 10)) as ds:  # fmt: skip
        ds.write(np.ones((1, 4, 4), np.uint16))
    with pytest.raises(DataError, match=r"nodate: cannot tell the date of scene 'scene'"):
        build_catalog(d, tmp_path / "out")


def test_rebuild_replaces_catalog_and_refuses_foreign_folder(archive, tmp_path):
    out = tmp_path / "cat"
    build_catalog(archive["root"] / "tartus", out)
    (out / "stale.txt").write_text("old")
    build_catalog(archive["root"] / "tartus", out)
    assert not (out / "stale.txt").exists() and len(_items(out / "catalog.json")) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["cat"]  # no temporary folders left
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "a.jpg").write_text("x")
    with pytest.raises(UsageError, match="not a STAC catalog"):
        build_catalog(archive["root"] / "tartus", foreign)
    assert (foreign / "a.jpg").exists()


def test_cli_stac_build(archive, tmp_path, capsys):
    from pipeline.cli.main import main

    out = tmp_path / "cli-cat"
    assert main(["stac", "build", str(archive["root"] / "tartus"), "--out", str(out)]) == 0
    assert "(2 items)" in capsys.readouterr().out
    assert len(_items(out / "catalog.json")) == 2
    (tmp_path / "empty").mkdir()
    assert main(["stac", "build", str(tmp_path / "empty"), "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert "no per-band GeoTIFFs" in err and err.count("\n") == 1
    assert not (tmp_path / "o2").exists()


def test_unknown_catalog_path_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no STAC catalog here"):
        LocalStacSource(tmp_path)
    assert issubclass(UsageError, PipelineError)


# ------------------------------------------------------------------------------------------------
# the aligned-read shortcut of read_to_grid


@pytest.mark.parametrize("nodata", [0, 65535])
def test_aligned_read_equals_the_warper(tmp_path, nodata):
    """A grid on the file's own pixel lattice is read without GDAL's warper; the pixels, the 0
    outside the file and the nodata handling must equal what WarpedVRT gives."""
    from affine import Affine
    from rasterio.vrt import WarpedVRT

    from pipeline.grid import Grid
    from pipeline.sources._reproject import _aligned_window, read_to_grid

    rng = np.random.default_rng(3)
    data = rng.integers(1, 12000, (300, 260)).astype(np.uint16)
    data[260:270, 60:90] = nodata  # inside the grid
    path = tmp_path / "b04.tif"
    t = Affine(10.0, 0, 500000.0, 0, -10.0, 3500000.0)
    with rasterio.open(path, "w", driver="COG", width=260, height=300, count=1, dtype="uint16", crs="EPSG:32633",
                       transform=t, nodata=nodata, compress="deflate") as dst:
        dst.write(data, 1)
    # partly outside the file on the left and at the bottom, offset by whole pixels
    grid = Grid(32633, Affine(10.0, 0, 500000.0 - 70, 0, -10.0, 3500000.0 - 2500), 200, 180)
    with rasterio.open(path) as src:
        assert _aligned_window(src, grid) == (250, -7)
        with WarpedVRT(src, crs="EPSG:32633", transform=grid.transform, width=grid.width, height=grid.height,
                       resampling=rasterio.enums.Resampling.bilinear, src_nodata=nodata, nodata=0) as vrt:
            warped = vrt.read(1)
        # a half-pixel shift is not aligned: the warper is used
        half = Grid(32633, Affine(10.0, 0, 500005.0, 0, -10.0, 3500000.0), 50, 50)
        assert _aligned_window(src, half) is None
    fast = read_to_grid(str(path), grid, resampling="bilinear", dtype="uint16")
    np.testing.assert_array_equal(fast, warped)
    assert (fast[:, :7] == 0).all() and (fast[50:, :] == 0).all()
    assert fast[0, 7] == data[250, 0] and (fast[10:20, 67:97] == 0).all()


@pytest.mark.parametrize("resampling", ["bilinear", "nearest"])
def test_resampled_read_of_a_20m_band_equals_the_warper(tmp_path, resampling):
    """A 20 m band onto the 10 m grid (origin on the 20 m lattice or half a 20 m pixel off) is
    read by GDAL's resampled RasterIO, not the warper, with the warper's very pixels; nodata near
    the window, or a grid reaching outside the file, falls back to the warper."""
    from affine import Affine
    from rasterio.vrt import WarpedVRT
    from scipy import ndimage

    from pipeline.grid import Grid
    from pipeline.sources._reproject import RESAMPLING, _read_resampled, read_to_grid

    rng = np.random.default_rng(5)
    data = (ndimage.gaussian_filter(rng.random((200, 180)), 1.5) * 9000 + 600).astype(np.uint16)
    data[150:160, 20:40] = 0  # nodata, away from the first two grids
    path = tmp_path / "b8a.tif"
    t = Affine(20.0, 0, 500000.0, 0, -20.0, 3500000.0)
    with rasterio.open(path, "w", driver="COG", width=180, height=200, count=1, dtype="uint16", crs="EPSG:32633",
                       transform=t, nodata=0, compress="deflate") as dst:
        dst.write(data, 1)

    def warped(grid):
        with rasterio.open(path) as src, WarpedVRT(src, crs="EPSG:32633", transform=grid.transform, width=grid.width,
                                                   height=grid.height, resampling=RESAMPLING[resampling], src_nodata=0, nodata=0) as vrt:
            return vrt.read(1)

    def fast_path_taken(grid):
        with rasterio.open(path) as src:
            return _read_resampled(src, 1, grid, RESAMPLING[resampling], 0, np.empty(grid.shape, np.uint16))

    on_lattice = Grid(32633, Affine(10.0, 0, 500000.0 + 20 * 7, 0, -10.0, 3500000.0 - 20 * 11), 150, 130)
    half_off = Grid(32633, Affine(10.0, 0, 500000.0 + 20 * 7 + 10, 0, -10.0, 3500000.0 - 20 * 11 - 10), 151, 129)
    whole = Grid(32633, t * Affine.scale(0.5), 360, 400)  # the whole file, edges included
    near_nodata = Grid(32633, Affine(10.0, 0, 500000.0, 0, -10.0, 3500000.0 - 20 * 140), 60, 100)
    outside = Grid(32633, Affine(10.0, 0, 500000.0 - 100, 0, -10.0, 3500000.0), 50, 50)
    for grid, fast in ((on_lattice, True), (half_off, True), (whole, False), (near_nodata, False), (outside, False)):
        assert fast_path_taken(grid) is fast
        np.testing.assert_array_equal(read_to_grid(str(path), grid, resampling=resampling, dtype="uint16"), warped(grid))
    whole_clean = Grid(32633, t * Affine.scale(0.5), 360, 280)  # all columns, rows 0-139 of the file: no nodata
    assert fast_path_taken(whole_clean)
    np.testing.assert_array_equal(read_to_grid(str(path), whole_clean, resampling=resampling, dtype="uint16"), warped(whole_clean))
