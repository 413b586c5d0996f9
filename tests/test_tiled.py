"""Tiled detection: the plan covers the grid once, composites on disk read like arrays, and a
tiled run finds what the one-pass run finds (simulated archive, real CLI)."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pytest

from pipeline.aoi import load_aoi
from pipeline.cli.main import main
from pipeline.detect import DetectParams, detect
from pipeline.errors import UsageError
from pipeline.sources import get_source
from pipeline.outputs.cog import reflectance_dn
from pipeline.tiled import AUTO_TILE_MPX, TILE_PX, DiskComposite, detect_tiled, memory_budget, peak_memory, plan_tiles, tile_size

AOI = "maaten-al-sarra"
BEFORE = (date(2024, 3, 1), date(2024, 4, 10))
AFTER = (date(2025, 5, 1), date(2025, 6, 10))


@pytest.mark.parametrize("shape, tile, halo", [((973, 710), 256, 64), ((100, 1000), 300, 0), ((512, 512), 512, 32)])
def test_tile_cores_cover_the_grid_once_and_halos_stay_inside(shape, tile, halo):
    tiles = plan_tiles(shape, tile, halo)
    hits = np.zeros(shape, np.int32)
    for t in tiles:
        r0, r1, c0, c1 = t.core
        assert 0 < r1 - r0 <= tile and 0 < c1 - c0 <= tile
        hits[r0:r1, c0:c1] += 1
        o = t.outer
        assert o[0] == max(0, r0 - halo) and o[1] == min(shape[0], r1 + halo)
        assert o[2] == max(0, c0 - halo) and o[3] == min(shape[1], c1 + halo)
    assert (hits == 1).all()
    assert [t.index for t in tiles] == list(range(len(tiles)))
    with pytest.raises(UsageError, match="at least 256"):
        plan_tiles(shape, 100)


def test_disk_composite_reads_windows_like_the_array(tmp_path):
    rng = np.random.default_rng(2)
    full = rng.uniform(0.01, 0.6, (4, 70, 90)).astype(np.float32)
    full[:, 5, 7] = np.nan
    full[2, 40, 80] = np.nan  # one band missing: no data in every band, as in the composites
    dn = reflectance_dn(full)
    want = np.where((dn == 0).any(axis=0), np.nan, dn.astype(np.float32) * np.float32(1e-4))
    comp = DiskComposite(full.shape, tmp_path, "before")
    for r0, r1, c0, c1 in [(0, 30, 0, 50), (0, 30, 50, 90), (30, 70, 0, 90)]:
        comp.put((r0, r1, c0, c1), dn[:, r0:r1, c0:c1])
    for key in [(slice(None), slice(None), slice(None)), ([2, 1, 0], slice(10, 60, 3), slice(5, 85, 4)), (1, slice(25, 35), slice(45, 55)), ([3], slice(None, None, 7), slice(None, None, 9)), (slice(None), slice(60, 5, -4), slice(None, None, -1))]:
        got = comp[key]
        np.testing.assert_array_equal(got, want[key])
    np.testing.assert_array_equal(np.asarray(comp), want)
    assert np.isnan(comp[:, 40:41, 80:81]).all()
    # stored as reflectance x 10000: within half a DN of the float composite
    assert np.nanmax(np.abs(np.asarray(comp) - np.where(np.isnan(want), np.nan, full))) <= 5e-5 + 1e-7
    # tiles are written in the background: a copy made by pickling waits for them and reads the same
    import pickle

    again = pickle.loads(pickle.dumps(comp))
    np.testing.assert_array_equal(np.asarray(again), want)


def test_disk_composite_write_failure_surfaces(tmp_path):
    """A tile the disk refused raises when the composite is flushed or read, not silently."""
    comp = DiskComposite((1, 4, 4), tmp_path / "gone", "after")  # a folder that does not exist
    comp.put((0, 4, 0, 4), np.ones((1, 4, 4), np.uint16))
    with pytest.raises(FileNotFoundError):
        comp.flush()


def test_tile_size_tiles_large_grids_and_honours_the_choice():
    big = int((AUTO_TILE_MPX * 1e6) ** 0.5) + 1
    assert tile_size((1000, 1000)) is None and tile_size((big, big)) == TILE_PX
    assert tile_size((1000, 1000), distributed=True) == TILE_PX  # a cluster shares tiles
    assert tile_size((1000, 1000), 512) == 512 and tile_size((500, 400), 512) is None  # one tile is one pass
    assert tile_size((500, 400), 512, distributed=True) == 512
    assert tile_size((big, big), 0) is None
    with pytest.raises(UsageError, match="--tile-px 0"):
        tile_size((big, big), 0, distributed=True)
    with pytest.raises(UsageError, match="must be >= 0"):
        tile_size((1000, 1000), -5)


def test_long_windows_are_detected_in_tiles_that_fit_the_memory_budget(monkeypatch, caplog):
    """One pass holds every acquisition of a window: a year of them over a 20 x 20 km AOI would
    take ~20 GiB, so the AOI is tiled, with the largest tile (a multiple of 256 px) that fits."""
    monkeypatch.delenv("S2WATCH_MEMORY_GB", raising=False)
    shape = (2000, 2000)
    budget = memory_budget()
    assert tile_size(shape, dates=1) is None and peak_memory(shape, 1) <= budget
    assert peak_memory(shape, 70) > budget
    sizes = [tile_size(shape, dates=n) for n in (40, 70, 140)]
    assert all(s is not None and s % 256 == 0 and s <= TILE_PX for s in sizes), sizes
    assert sizes[0] >= sizes[1] >= sizes[2] and sizes[0] > sizes[2]
    for n, s in zip((40, 70, 140), sizes):
        assert peak_memory(shape, n, tile_px=s) <= budget < peak_memory(shape, n, tile_px=s + 256)
    # the budget: argument, then environment
    assert tile_size(shape, dates=40, memory_gb=64) is None
    monkeypatch.setenv("S2WATCH_MEMORY_GB", "64")
    assert tile_size(shape, dates=40) is None
    monkeypatch.setenv("S2WATCH_MEMORY_GB", "lots")
    with pytest.raises(UsageError, match="S2WATCH_MEMORY_GB"):
        tile_size(shape, dates=20)
    monkeypatch.delenv("S2WATCH_MEMORY_GB")
    for bad in (0, -1, float("nan")):
        with pytest.raises(UsageError, match="--memory-gb"):
            tile_size(shape, dates=20, memory_gb=bad)
    # a size asked for is honoured; a budget no tile fits gets the smallest tile and a warning
    assert tile_size(shape, 1024, dates=500) == 1024
    with caplog.at_level("WARNING", logger="pipeline.tiled"):
        assert tile_size(shape, dates=500, memory_gb=0.5) == 256
    assert "raise --memory-gb" in caplog.text


def test_cli_tiles_when_the_windows_would_exceed_the_memory_budget(tmp_path, capsys):
    """The dry run says how the detection will run; a budget the one pass exceeds tiles it."""
    args = ["detect", AOI, "--source", "simulated", "--before", "2024-03-01/2024-04-10", "--after", "2025-05-01/2025-06-10"]
    assert main([*args, "--out", str(tmp_path / "dry"), "--dry-run"]) == 0
    assert "detection: one pass" in capsys.readouterr().out
    assert main([*args, "--out", str(tmp_path / "dry"), "--dry-run", "--memory-gb", "0.6"]) == 0
    assert "detection: tiles of 256 px" in capsys.readouterr().out
    assert not (tmp_path / "dry").exists()
    out = tmp_path / "o"
    assert main([*args, "--out", str(out), "--memory-gb", "0.6"]) == 0
    tiling = json.loads((out / "manifest.json").read_text())["parameters"]["tiling"]
    assert tiling["tile_px"] == 256 and tiling["n_tiles"] == len(plan_tiles((973, 710), 256)) == 12
    assert json.loads((out / "changes.geojson").read_text())["features"]
    assert main([*args, "--out", str(tmp_path / "x"), "--memory-gb", "0"]) == 2
    assert "--memory-gb" in capsys.readouterr().err and not (tmp_path / "x").exists()


@pytest.fixture(scope="module")
def pair():
    aoi = load_aoi(AOI)
    src = get_source("simulated")
    params = DetectParams()
    whole = detect(aoi, src, before=BEFORE, after=AFTER, params=params)
    tiled = detect_tiled(aoi, src, before=BEFORE, after=AFTER, params=params, tile_px=256, halo_px=96)
    return whole, tiled


def test_tiled_run_finds_what_the_one_pass_run_finds(pair):
    """Every object of one run lies (>= 80 % of its area) in objects of the same class of the
    other run, both ways; a change may come out split in two in one run and whole in the other
    (the tiles' thresholds are local), so counts may differ by such splits only."""
    from shapely import union_all

    whole, tiled = pair
    assert tiled.parameters["tiling"]["n_tiles"] == len(plan_tiles(whole.grid.shape, 256, 96)) > 4
    assert len(whole.objects) >= 3
    assert abs(len(tiled.objects) - len(whole.objects)) <= 1

    def covered(a, b):
        for o in a:
            same = union_all([t.geometry for t in b if t.cls == o.cls])
            frac = o.geometry.intersection(same).area / o.geometry.area
            assert frac >= 0.8, (o.cls, o.area_m2, frac, sorted((t.cls, t.area_m2) for t in b))

    covered(whole.objects, tiled.objects)
    covered(tiled.objects, whole.objects)
    assert len({o.id for o in tiled.objects}) == len(tiled.objects)
    assert (tiled.class_map == whole.class_map).mean() > 0.999
    assert (np.isfinite(whole.magnitude) == np.isfinite(tiled.magnitude)).all()
    # the composites on disk hold the tiles' composites to 1e-4 reflectance
    bw = np.asarray(whole.before_composite)[:, 300:400, 200:500]
    bt = tiled.before_composite[:, 300:400, 200:500]
    # (a tile may use a date the whole AOI dropped as too cloudy: its clear fraction is local)
    d = np.abs(bw - bt)
    assert np.nanmedian(d) < 0.01, np.nanmedian(d)


def test_cli_tiles_on_request_and_writes_every_output(tmp_path, capsys):
    out = tmp_path / "o"
    rc = main(["detect", AOI, "--source", "simulated", "--before", "2024-03-01/2024-04-10", "--after", "2025-05-01/2025-06-10",
               "--tile-px", "512", "--halo-px", "64", "--out", str(out)])
    assert rc == 0
    m = json.loads((out / "manifest.json").read_text())
    tiling = m["parameters"]["tiling"]
    assert tiling["tile_px"] == 512 and tiling["n_tiles"] == 4 and len(tiling["tiles"]) == 4
    gj = json.loads((out / "changes.geojson").read_text())
    assert len(gj["features"]) >= 3
    html = (out / "report.html").read_text()
    assert html.count('class="card"') == len(gj["features"])
    assert main(["detect", AOI, "--before", "2024-03-01", "--after", "2025-05-01", "--out", str(out), "--tile-px", "0", "--executor", "dask"]) == 2
    assert "--tile-px 0" in capsys.readouterr().err


def test_an_aoi_above_the_area_guard_needs_max_area(tmp_path, capsys):
    """A 60 x 60 km square (3 600 km^2) is refused with the flag to pass; with it, it is accepted
    (dry run: searched, not read)."""
    big = tmp_path / "big.geojson"
    lon0, lat0, d = 20.0, 30.0, 0.6
    ring = [[lon0, lat0], [lon0 + d / np.cos(np.radians(lat0 + d / 2)) * 1.04, lat0], [lon0 + d / np.cos(np.radians(lat0 + d / 2)) * 1.04, lat0 + d],
            [lon0, lat0 + d], [lon0, lat0]]
    big.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"role": "aoi", "id": "big"}, "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))
    args = ["detect", str(big), "--source", "simulated", "--before", "2024-03-01/2024-03-10", "--after", "2025-05-01/2025-05-10",
            "--out", str(tmp_path / "o"), "--dry-run"]
    assert main(args) == 2
    assert "--max-area-km2" in capsys.readouterr().err
    assert main([*args, "--max-area-km2", "5000"]) == 0
    assert "big:" in capsys.readouterr().out


def _reflectance_dn_numpy(refl):
    """The plain numpy oracle of reflectance_dn."""
    x = np.multiply(refl, 10000, dtype=np.result_type(refl.dtype, np.float32))
    x = np.rint(np.fmin(np.fmax(x, 1), 65535)).astype(np.uint16)
    x[:, ~np.isfinite(refl).all(axis=0)] = 0
    return x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reflectance_dn_equals_the_numpy_expression(dtype):
    """The fused kernel against the numpy expression: random reflectance with NaN, +-inf, values
    below 0 and above 6.5535, half-DN ties, on a strided view (a tile's core of its composite)."""
    rng = np.random.default_rng(11)
    full = rng.uniform(-0.2, 7.0, (5, 90, 120)).astype(dtype)
    full[:, ::7, ::5] = np.round(full[:, ::7, ::5] * 10000) / 10000 + 0.00005  # ties
    for v in (np.nan, np.inf, -np.inf):
        full[rng.integers(0, 5, 40), rng.integers(0, 90, 40), rng.integers(0, 120, 40)] = v
    core = full[:, 7:80, 11:101]
    np.testing.assert_array_equal(reflectance_dn(core), _reflectance_dn_numpy(core))
    np.testing.assert_array_equal(reflectance_dn(full[[2, 1, 0]]), _reflectance_dn_numpy(full[[2, 1, 0]]))


def test_reflectance_dn_clips_rounds_and_marks_missing_pixels():
    refl = np.array([[[0.12344, 0.12346, 7.0, -0.5, np.inf, 0.2]], [[0.3, 0.3, 0.3, 0.3, 0.3, np.nan]]], np.float32)
    dn = reflectance_dn(refl)
    assert dn.dtype == np.uint16
    # x 10000, rounded; clipped to 1..65535 (0 is no data); a pixel not finite in any band is 0 in all
    assert dn[0, 0].tolist() == [1234, 1235, 65535, 1, 0, 0]
    assert dn[1, 0].tolist() == [3000, 3000, 3000, 3000, 0, 0]
