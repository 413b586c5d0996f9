"""The change rasters: valid COGs, planted values back at known pixels, colour table, categories."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate

from pipeline.errors import OutputError, PipelineError
from pipeline.objects.model import CLASS_CODES, CLASS_COLOURS, NODATA_CODE
from pipeline.outputs.cog import RGB_SCALE, write_class_cog, write_magnitude_cog

from .conftest import GRID, HANGAR_HOLE_PX, HANGAR_PX, RUNWAY_PX, need_tool


@pytest.mark.parametrize("name", ["change_class.tif", "change_magnitude.tif", "before_rgb.tif", "after_rgb.tif"])
def test_rasters_are_valid_cogs(written, name):
    paths, _ = written
    valid, errors, warnings = cog_validate(str(paths[name]), strict=True)
    assert valid, errors
    assert not errors and not warnings


def test_class_cog_layout_and_georeferencing(written, result):
    with rasterio.open(written[0]["change_class.tif"]) as ds:
        assert ds.crs.to_epsg() == 32633
        assert ds.transform == GRID.transform
        assert (ds.height, ds.width) == GRID.shape
        assert ds.dtypes == ("uint8",)
        assert ds.nodata == NODATA_CODE
        assert ds.block_shapes == [(256, 256)]
        assert ds.compression.name.upper() == "DEFLATE"
        assert ds.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR") == "2"
        assert ds.overviews(1) == [2]  # 440 x 390 px: one level brings it under one 256 px tile
        assert ds.descriptions == ("change class",)
        tags = ds.tags()
        assert tags["S2WATCH_AOI_ID"] == "test-base"
        assert tags["S2WATCH_BEFORE"] == result.before and tags["S2WATCH_AFTER"] == result.after
        assert tags["S2WATCH_SOURCE"] == "simulated"
        assert tags["S2WATCH_VERSION"]
        assert ds.tags(1)["CLASS_1"] == "runway_repair"
        cmap = ds.colormap(1)
        for name, code in CLASS_CODES.items():  # TIFF palettes hold RGB only (alpha reads back 255)
            assert cmap[code][:3] == tuple(CLASS_COLOURS[name])[:3]
        np.testing.assert_array_equal(ds.read(1), result.class_map)


def test_class_overviews_use_mode(written):
    """Averaging codes 0 and 2 would invent code 1 at the hangar's edge; mode keeps real codes."""
    with rasterio.open(written[0]["change_class.tif"], overview_level=0) as ov:
        data = ov.read(1)
    assert set(np.unique(data).tolist()) <= {0, 1, 2, NODATA_CODE}
    r0, r1, c0, c1 = HANGAR_PX
    # the hangar ring, halved: its outer band of 2-px-wide blocks are all code 2
    assert data[r0 // 2, c0 // 2 : c1 // 2].tolist() == [2] * ((c1 - c0) // 2)
    hr0, _, hc0, _ = HANGAR_HOLE_PX
    assert data[(hr0 + 2) // 2, (hc0 + 2) // 2] == 0


def test_magnitude_cog_values_and_average_overview(written, result):
    with rasterio.open(written[0]["change_magnitude.tif"]) as ds:
        assert ds.dtypes == ("float32",)
        assert np.isnan(ds.nodata)
        assert ds.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR") == "3"
        full = ds.read(1)
        np.testing.assert_array_equal(np.isnan(full), np.isnan(result.magnitude))
        assert full[200, 100] == pytest.approx(200 * 0.01 + 100 * 0.001, abs=1e-6)
    with rasterio.open(written[0]["change_magnitude.tif"], overview_level=0) as ov:
        half = ov.read(1)
    # oracle: plain 2x2 block means of the planted ramp (rows 10+ are finite)
    m = result.magnitude.astype(np.float64)
    block = m[100:102, 60:62].mean()
    assert half[50, 30] == pytest.approx(block, abs=1e-5)


def test_rgb_cogs_hold_scaled_reflectance(written, result):
    with rasterio.open(written[0]["after_rgb.tif"]) as ds:
        assert ds.count == 3 and ds.dtypes == ("uint16",) * 3 and ds.nodata == 0
        arr = ds.read()
    expected = np.round(result.composite("after", ["B04", "B03", "B02"])[:, 200, 100] * RGB_SCALE)
    np.testing.assert_array_equal(arr[:, 200, 100], expected.astype(np.uint16))
    assert (arr[:, :10] == 0).all()  # NaN rows are no data


def test_class_cog_determinism(tmp_path, result):
    a = write_class_cog(result.class_map, GRID, tmp_path / "a.tif")
    b = write_class_cog(result.class_map, GRID, tmp_path / "b.tif")
    assert a[0].read_bytes() == b[0].read_bytes()


def test_bad_arrays_raise_clear_errors(tmp_path, result):
    with pytest.raises(OutputError, match=r"shape \(10, 10\)"):
        write_class_cog(np.zeros((10, 10), np.uint8), GRID, tmp_path / "x.tif")
    bad = result.class_map.copy()
    bad[50, 50] = 42
    with pytest.raises(PipelineError, match=r"\[42\]"):
        write_class_cog(bad, GRID, tmp_path / "x.tif")
    with pytest.raises(OutputError, match="float32"):
        write_magnitude_cog(result.magnitude.astype(np.float64), GRID, tmp_path / "m.tif")
    assert list(tmp_path.iterdir()) == []  # nothing half-written left behind


# ------------------------------------------------------------------ GDAL command-line tools


@pytest.mark.needs_gdal
def test_gdal_tools_read_the_zstd_magnitude(written, result):
    """The magnitude is ZSTD-compressed (half DEFLATE's write time on float noise): the system's
    GDAL command-line tools must decode it to the values written."""
    gdalinfo = need_tool("gdalinfo", "gdal-bin")
    path = str(written[0]["change_magnitude.tif"])
    info = json.loads(subprocess.run([gdalinfo, "-json", "-mm", path], capture_output=True, text=True, check=True).stdout)
    assert info["metadata"]["IMAGE_STRUCTURE"]["COMPRESSION"] == "ZSTD"
    assert info["metadata"]["IMAGE_STRUCTURE"]["LAYOUT"] == "COG"
    band = info["bands"][0]
    assert band["computedMin"] == pytest.approx(float(np.nanmin(result.magnitude)), abs=1e-6)
    assert band["computedMax"] == pytest.approx(float(np.nanmax(result.magnitude)), abs=1e-6)
    probe = subprocess.run([need_tool("gdallocationinfo", "gdal-bin"), "-valonly", path, "100", "200"],
                           capture_output=True, text=True, check=True).stdout
    assert float(probe) == pytest.approx(float(result.magnitude[200, 100]), abs=1e-6)


@pytest.mark.needs_gdal
def test_gdalinfo_reads_categories_colours_and_crs(written):
    gdalinfo = need_tool("gdalinfo", "gdal-bin")
    info = json.loads(subprocess.run([gdalinfo, "-json", str(written[0]["change_class.tif"])], capture_output=True, text=True, check=True).stdout)
    band = info["bands"][0]
    assert band["categories"][: len(CLASS_CODES)] == [n for n, _ in sorted(CLASS_CODES.items(), key=lambda kv: kv[1])]
    entries = band["colorTable"]["entries"]
    assert entries[CLASS_CODES["runway_repair"]][:3] == list(CLASS_COLOURS["runway_repair"])[:3]
    assert band["noDataValue"] == NODATA_CODE
    assert "32633" in info["coordinateSystem"]["wkt"].split("ID[")[-1]
    assert info["metadata"]["IMAGE_STRUCTURE"]["LAYOUT"] == "COG"
    assert info["metadata"]["IMAGE_STRUCTURE"]["COMPRESSION"] == "DEFLATE"
    rat = info.get("rat") or band.get("rat")
    assert rat is not None and any(r["f"][1] == "new_structure" for r in rat["row"])


@pytest.mark.needs_gdal
@pytest.mark.parametrize(
    "name,row,col,expected",
    [
        ("change_class.tif", RUNWAY_PX[0], RUNWAY_PX[2], 1),
        ("change_class.tif", HANGAR_PX[0], HANGAR_PX[2], 2),
        ("change_class.tif", HANGAR_HOLE_PX[0] + 1, HANGAR_HOLE_PX[2] + 1, 0),
        ("change_class.tif", 5, 5, 255),
        ("change_magnitude.tif", 300, 40, 300 * 0.01 + 40 * 0.001),
    ],
)
def test_gdallocationinfo_known_pixels(written, name, row, col, expected):
    tool = need_tool("gdallocationinfo", "gdal-bin")
    out = subprocess.run([tool, "-valonly", str(written[0][name]), str(col), str(row)], capture_output=True, text=True, check=True).stdout
    assert float(out.strip()) == pytest.approx(expected, abs=1e-5)



def test_large_rasters_are_staged_on_disk_with_the_same_bytes(tmp_path, result, monkeypatch):
    """Rasters above STAGE_IN_MEMORY_MAX are staged in a temporary file beside the destination
    (no in-memory copy of a whole tile): the COG is byte-identical to the in-memory staging, and
    no staging file is left behind."""
    import pipeline.outputs.cog as cog

    (tmp_path / "mem").mkdir()
    mem = write_class_cog(result.class_map, GRID, tmp_path / "mem" / "c.tif")[0]
    mag_mem = write_magnitude_cog(result.magnitude, GRID, tmp_path / "mem" / "m.tif")
    monkeypatch.setattr(cog, "STAGE_IN_MEMORY_MAX", 0)
    (tmp_path / "disk").mkdir()
    disk = write_class_cog(result.class_map, GRID, tmp_path / "disk" / "c.tif")[0]
    mag_disk = write_magnitude_cog(result.magnitude, GRID, tmp_path / "disk" / "m.tif")
    assert disk.read_bytes() == mem.read_bytes()
    assert mag_disk.read_bytes() == mag_mem.read_bytes()
    assert sorted(p.name for p in (tmp_path / "disk").iterdir()) == ["c.qml", "c.tif", "c.tif.aux.xml", "m.tif"]
    with rasterio.open(disk) as ds:
        assert ds.colormap(1)[CLASS_CODES["runway_repair"]][:3] == tuple(CLASS_COLOURS["runway_repair"][:3])
        assert ds.tags(1)["CLASS_1"] == "runway_repair"
