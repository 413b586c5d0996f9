"""Bytes and requests per AOI-date: windowed COG reads (StacApiSource) against whole assets.

For each AOI a synthetic Sentinel-2 tile is written as real COGs (DEFLATE level 1, 512 px blocks, 10 m
bands B02/B03/B04/B08 plus 20 m bands B05/B06/B07/B8A/B11/B12 and SCL, noisy reflectance so it
compresses about like real data), served by a local HTTP server with Range support that counts
requests and bytes, and read through the STAC API code path users run (pystac-client search,
rasterio/GDAL range reads of the AOI window, reprojection onto the AOI grid). The same assets are
then fetched whole, as a tool without range reads would. Everything runs on 127.0.0.1.

    python benchmarks/bench_sources.py [--tile-px 5490] [--aoi ID ...]

``--tile-px`` is the 10 m tile width (10980 = a full Sentinel-2 tile; the default, a quarter
tile, keeps the run under a minute).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import rasterio
import requests
from affine import Affine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.aoi import load_aoi  # noqa: E402
from pipeline.scene import ALL_BANDS, BAND_RESOLUTION  # noqa: E402
from pipeline.sources.stac import StacApiSource  # noqa: E402
from tests.sources._fakes import ES_KEYS, FakeStacApi, FakeScene, FileServer, stac_item  # noqa: E402


def write_tile(folder: Path, aoi, tile_px: int, rng) -> FakeScene:
    """A tile of ``tile_px`` 10 m pixels a side in the AOI's UTM zone, the AOI off-centre inside."""
    g = aoi.grid()
    epsg = g.epsg
    x0 = np.floor((g.bounds[0] - 0.37 * tile_px * 10) / 60) * 60
    y1 = np.ceil((g.bounds[3] + 0.41 * tile_px * 10) / 60) * 60
    sid = f"S2A_MSIL2A_20240601T083601_N0510_R064_T36SYD_{aoi.id}"
    d = folder / sid
    d.mkdir(parents=True)
    files = {}
    for b in (*ALL_BANDS, "SCL"):
        res = 20 if b == "SCL" else BAND_RESOLUTION[b]
        n = tile_px * 10 // res
        if b == "SCL":
            arr = np.array([4, 4, 4, 5, 5, 6, 8, 9], np.uint8)[rng.integers(0, 8, size=(n, n), dtype=np.uint8)]
        else:  # noisy reflectance: about 9 bits of entropy per pixel, like real 10 m data
            arr = rng.integers(2000, 2500, size=(n, n), dtype=np.uint16)
        f = d / f"{sid}_{b}.tif"
        with rasterio.open(
            f, "w", driver="COG", width=n, height=n, count=1, dtype=arr.dtype, crs=f"EPSG:{epsg}",
            transform=Affine(res, 0, x0, 0, -res, y1), nodata=0, compress="DEFLATE", level=1, blocksize=512,
            overview_resampling="nearest",
        ) as dst:  # fmt: skip
            dst.write(arr, 1)
        files[b] = f
    from rasterio.warp import transform_bounds

    fp = transform_bounds(f"EPSG:{epsg}", "EPSG:4326", x0, y1 - tile_px * 10, x0 + tile_px * 10, y1, densify_pts=21)
    return FakeScene(sid, datetime(2024, 6, 1, 8, 36, 1, tzinfo=timezone.utc), epsg, "36SYD", files, fp, baseline="05.10", offset=1000)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tile-px", type=int, default=5490)
    ap.add_argument("--aoi", nargs="*", default=["tartus-naval-facility", "tobruk-port", "khmeimim"])
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-sources-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        scenes = {a: write_tile(root, load_aoi(a), args.tile_px, rng) for a in args.aoi}
        print(f"wrote {len(scenes)} synthetic tiles of {args.tile_px} px (10 m) in {time.perf_counter() - t0:.1f} s")
        files = FileServer(root).start()
        api = FakeStacApi().start()
        try:
            for aoi_id, sc in scenes.items():
                aoi = load_aoi(aoi_id)
                api.items = [stac_item(sc, files.href)]
                src = StacApiSource(api.url, name="bench")
                acqs = src.search(aoi, date(2024, 6, 1), date(2024, 6, 1))
                files.reset_counters()
                t = time.perf_counter()
                st = src.read(aoi, acqs)
                dt = time.perf_counter() - t
                assert st.valid.all(), "AOI not fully covered by the tile"
                cog_req, cog_bytes = len(files.requests), files.bytes_sent
                files.reset_counters()
                t = time.perf_counter()
                for b in (*ALL_BANDS, "SCL"):
                    r = requests.get(files.href(sc.files[b]), timeout=60)
                    r.raise_for_status()
                dt_whole = time.perf_counter() - t
                whole_req, whole_bytes = len(files.requests), files.bytes_sent
                size = sum(f.stat().st_size for f in sc.files.values())
                assert whole_bytes == size
                rows.append((aoi_id, st.grid.shape, len(sc.files), cog_req, cog_bytes, dt, whole_req, whole_bytes, dt_whole))
        finally:
            files.stop()
            api.stop()
    print(f"\nper AOI-date, {len(ES_KEYS)} assets (10 bands + SCL), tile {args.tile_px} px at 10 m; bytes = HTTP bodies sent")
    print(f"{'AOI':<24} {'grid HxW':>10} {'COG req':>8} {'COG MB':>8} {'s':>5} {'whole req':>9} {'whole MB':>9} {'s':>5} {'bytes ratio':>11}")
    for aoi_id, shape, n, cr, cb, dt, wr, wb, dtw in rows:
        print(
            f"{aoi_id:<24} {shape[0]:>4}x{shape[1]:<5} {cr:>8} {cb / 1e6:>8.2f} {dt:>5.2f} {wr:>9} {wb / 1e6:>9.1f} {dtw:>5.2f} "
            f"{wb / cb:>10.1f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
