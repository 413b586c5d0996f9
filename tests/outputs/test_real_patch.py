"""Outputs from real Sentinel-2 L2A reflectance (a BigEarthNet patch in ../shared/data).

Planted on real data: the "after" composite is the patch with a 12 x 16 px rectangle brightened
by 0.15 reflectance in every band (a new roof); the object is that rectangle. Skips, saying why,
when the shared data are absent.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import rasterio
import shapely
from pyproj import Transformer
from rio_cogeo.cogeo import cog_validate

from pipeline.aoi import AOI
from pipeline.grid import Grid, reproject_geometry
from pipeline.objects.model import ChangeObject
from pipeline.outputs import write_outputs
from pipeline.result import DetectionResult

PATCH = "S2A_MSIL2A_20170613T101031_87_48"
BANDS = ("B02", "B03", "B04", "B8A", "B11", "B12")
ROOF = (40, 52, 60, 76)


@pytest.fixture(scope="module")
def real_result(shared_data):
    folder = shared_data / "bigearthnet-l2a" / PATCH
    if not folder.is_dir():
        pytest.skip(f"BigEarthNet patch {PATCH} not found in {folder.parent}")
    arrays = []
    for b in BANDS:
        with rasterio.open(folder / f"{PATCH}_{b}.tif") as ds:
            a = ds.read(1).astype(np.float32) / 10000.0
            if b == "B02":
                epsg, transform, shape = ds.crs.to_epsg(), ds.transform, ds.shape
        f = shape[0] // a.shape[0]
        arrays.append(np.repeat(np.repeat(a, f, axis=0), f, axis=1))
    before = np.stack(arrays)
    after = before.copy()
    r0, r1, c0, c1 = ROOF
    after[:, r0:r1, c0:c1] += 0.15
    grid = Grid(epsg, transform, shape[1], shape[0])
    x0, y1 = transform @ (c0, r0)
    x1, y0 = transform @ (c1, r1)
    roof = shapely.box(x0, y0, x1, y1)
    aoi_ll = reproject_geometry(shapely.box(*grid.bounds).buffer(-50), epsg, 4326)
    cm = np.zeros(grid.shape, np.uint8)
    cm[r0:r1, c0:c1] = 2
    mag = np.abs(after - before).sum(axis=0).astype(np.float32)
    obj = ChangeObject("roof-1", roof, "new_structure", 0.8, roof.area, None, "2017-06-13", "2017-06-13", {"d_brightness": 0.15})
    return DetectionResult(
        AOI("real-patch", "BigEarthNet patch", "other", aoi_ll, digest="0" * 64), grid, "bigearthnet", "2017-06-13", "2017-06-13",
        cm, mag, (obj,), BANDS, before, after,
    )  # fmt: skip


def test_real_patch_outputs(real_result, tmp_path):
    paths = write_outputs(real_result, tmp_path, rgb=True)
    for name in ("change_class.tif", "change_magnitude.tif", "after_rgb.tif"):
        assert cog_validate(str(paths[name]))[0], name
    with rasterio.open(paths["change_class.tif"]) as ds:
        assert ds.crs.to_epsg() == real_result.grid.epsg and ds.transform == real_result.grid.transform
        assert ds.read(1)[ROOF[0], ROOF[2]] == 2
    feat = json.loads(paths["changes.geojson"].read_text())["features"][0]
    tr = Transformer.from_crs(real_result.grid.epsg, 4326, always_xy=True)
    lon, lat = tr.transform(*real_result.objects[0].geometry.centroid.coords[0])
    assert (feat["properties"]["centroid_lon"], feat["properties"]["centroid_lat"]) == (pytest.approx(lon, abs=1e-6), pytest.approx(lat, abs=1e-6))
    html = paths["report.html"].read_text()
    assert f"{lat:.6f}, {lon:.6f}" in html
    # real texture: the after map picture is not flat
    from base64 import b64decode
    from io import BytesIO

    from PIL import Image

    first = re.search(r"data:image/(?:png|jpeg);base64,([A-Za-z0-9+/=]+)", html).group(1)
    img = np.asarray(Image.open(BytesIO(b64decode(first))).convert("L"), dtype=float)
    assert img.std() > 10
