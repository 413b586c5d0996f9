"""Cloud-Optimised GeoTIFFs of the change rasters, written with GDAL's COG driver.

Each raster is first built in memory (GTiff in a ``MemoryFile``, with colour table, band
description and tags), then copied with the ``COG`` driver to a temporary file beside the
destination and renamed into place. The COG driver lays out internal 256 x 256 tiles, overviews
(``MODE`` for class codes, ``AVERAGE`` for magnitudes and reflectance) and DEFLATE compression
(ZSTD for the float magnitude) with a predictor. No timestamp tag is written, so the same arrays
give byte-identical files.

Category names (shown by QGIS as the legend of the paletted renderer) cannot live inside a
GeoTIFF; GDAL keeps them in a ``.aux.xml`` sidecar (PAM). :func:`write_class_cog` writes that
sidecar too (category names plus a thematic raster attribute table) and repeats the names inside
the file as band tags ``CLASS_<code>=<name>``.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from xml.sax.saxutils import escape as xml_escape

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.io import MemoryFile

from ..errors import OutputError
from ..grid import Grid
from ..objects.model import CLASS_CODES, CLASS_COLOURS, NODATA_CODE
from .atomic import atomic_path, write_text
from .style import raster_qml

log = logging.getLogger(__name__)

__all__ = ["write_class_cog", "write_magnitude_cog", "write_rgb_cog", "COG_OPTIONS", "RGB_SCALE"]

COG_OPTIONS = {
    "COMPRESS": "DEFLATE",
    "PREDICTOR": "YES",
    "BLOCKSIZE": "256",
    "OVERVIEWS": "AUTO",
    "NUM_THREADS": "ALL_CPUS",  # blocks are compressed in parallel and written in order: same bytes
    "BIGTIFF": "IF_SAFER",
}
"""Creation options of the COG driver shared by every raster (resampling is set per raster)."""

RGB_SCALE = 10000
"""``before_rgb.tif`` / ``after_rgb.tif`` store reflectance x 10000 as uint16 (0 = no data)."""

_ENV = {"GDAL_PAM_ENABLED": "NO", "GDAL_NUM_THREADS": "1", "GDAL_TIFF_INTERNAL_MASK": "YES", "GDAL_CACHEMAX": 64}
"""GDAL settings of every write. The block cache is bounded (64 MB): each block is written once,
so caching more only adds to the peak memory (a whole tile's magnitude otherwise held about 1.2 GB
of cached and staged copies on top of its own 482 MB)."""

STAGE_IN_MEMORY_MAX = 64 * 2**20
"""Rasters up to this many bytes are staged as an in-memory GTiff before the COG copy; larger ones
are staged in a temporary file beside the destination, removed afterwards, so the staging copy
does not add to the process's memory (measured on a 10980^2 float32 magnitude: +98 MB and 4.0 s
staged on disk against +545 MB and 5.3 s in memory)."""


def _check_2d(arr: np.ndarray, grid: Grid, name: str) -> None:
    if arr.ndim != 2 or arr.shape != grid.shape:
        raise OutputError(f"{name} has shape {arr.shape}; expected (H, W) = {grid.shape} of the AOI grid")


def _write_cog(
    data: np.ndarray,
    grid: Grid,
    path: Path,
    *,
    nodata: float | int | None,
    resampling: str,
    descriptions: list[str],
    tags: dict,
    band_tags: list[dict] | None = None,
    colormap: dict | None = None,
    photometric: str | None = None,
    options: dict | None = None,
) -> Path:
    """Write ``data`` ``(B, H, W)`` as a COG at ``path`` atomically (``options`` override
    :data:`COG_OPTIONS`)."""
    count, height, width = data.shape
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": data.dtype.name,
        "crs": grid.crs_string,
        "transform": grid.transform,
        "nodata": nodata,
    }
    if photometric:
        profile["photometric"] = photometric
    opts = {**COG_OPTIONS, "OVERVIEW_RESAMPLING": resampling, "RESAMPLING": resampling, **(options or {})}

    def fill(ds) -> None:
        ds.write(data)
        for i, d in enumerate(descriptions, start=1):
            ds.set_band_description(i, d)
        ds.update_tags(**{k: str(v) for k, v in tags.items()})
        for i, bt in enumerate(band_tags or [], start=1):
            ds.update_tags(i, **{k: str(v) for k, v in bt.items()})
        if colormap is not None:
            ds.write_colormap(1, colormap)

    with rasterio.Env(**_ENV):
        if data.nbytes <= STAGE_IN_MEMORY_MAX:
            with MemoryFile() as mem:
                with mem.open(**profile) as ds:
                    fill(ds)
                with mem.open() as src, atomic_path(path) as tmp:
                    rasterio.shutil.copy(src, tmp, driver="COG", **opts)
        else:
            with tempfile.TemporaryDirectory(prefix=f".{path.name}.stage-", dir=path.parent) as stage_dir:
                stage = Path(stage_dir) / "stage.tif"
                with rasterio.open(stage, "w", **profile, tiled=True, blockxsize=512, blockysize=512, bigtiff="IF_SAFER") as ds:
                    fill(ds)
                with rasterio.open(stage) as src, atomic_path(path) as tmp:
                    rasterio.shutil.copy(src, tmp, driver="COG", **opts)
    log.debug("wrote %s", path)
    return path


def write_class_cog(class_map: np.ndarray, grid: Grid, path: str | os.PathLike, *, tags: dict | None = None) -> list[Path]:
    """Write the class map as a paletted COG plus its ``.aux.xml`` with category names.

    Parameters
    ----------
    class_map : (H, W) uint8
        Codes of :data:`pipeline.objects.model.CLASS_CODES`; 255 = no data.
    grid : Grid
        The AOI grid (CRS and transform of the file).
    path : path-like
        Destination ``.tif``; the sidecars are ``<path>.aux.xml`` and ``<stem>.qml``.
    tags : dict, optional
        Dataset tags (provenance), written as GDAL metadata.

    Returns
    -------
    list of pathlib.Path
        The ``.tif``, its ``.aux.xml`` and a QGIS style ``<stem>.qml`` (paletted, code 0
        transparent: TIFF palettes cannot store alpha).
    """
    class_map = np.asarray(class_map)
    _check_2d(class_map, grid, "class_map")
    if class_map.dtype != np.uint8:
        raise OutputError(f"class_map must be uint8 class codes, got {class_map.dtype}")
    known = set(CLASS_CODES.values()) | {NODATA_CODE}
    unknown = sorted(set(np.unique(class_map).tolist()) - known)
    if unknown:
        raise OutputError(f"class_map holds codes {unknown} that are not in CLASS_CODES (valid: {sorted(known)})")
    names = _names_by_code()
    colormap = {code: tuple(CLASS_COLOURS[name]) for code, name in names.items()}
    colormap[NODATA_CODE] = (0, 0, 0, 0)
    band_tags = {f"CLASS_{code}": name for code, name in names.items()}
    band_tags[f"CLASS_{NODATA_CODE}"] = "nodata"
    path = Path(path)
    _write_cog(
        class_map[None],
        grid,
        path,
        nodata=NODATA_CODE,
        resampling="MODE",
        descriptions=["change class"],
        tags=tags or {},
        band_tags=[band_tags],
        colormap=colormap,
    )
    aux = write_text(Path(str(path) + ".aux.xml"), _pam_xml(names))
    style = write_text(path.with_suffix(".qml"), raster_qml())
    return [path, aux, style]


def write_magnitude_cog(
    magnitude: np.ndarray, grid: Grid, path: str | os.PathLike, *, tags: dict | None = None, threads: int | None = None
) -> Path:
    """Write the change magnitude as a float32 COG (nodata NaN, AVERAGE overviews).

    Parameters
    ----------
    magnitude : (H, W) float32
        Unitless change magnitude; NaN where no data.
    threads : int, optional
        Threads compressing the blocks (default: all CPUs); one when the main thread is busy
        with other work meanwhile (:class:`pipeline.outputs.MagnitudeInAdvance`). The bytes
        written are the same.
    """
    magnitude = np.asarray(magnitude)
    _check_2d(magnitude, grid, "magnitude")
    if magnitude.dtype != np.float32:
        raise OutputError(f"magnitude must be float32, got {magnitude.dtype}")
    return _write_cog(
        magnitude[None],
        grid,
        Path(path),
        nodata=float("nan"),
        resampling="AVERAGE",
        descriptions=["change magnitude"],
        tags=tags or {},
        band_tags=[{"UNITS": "unitless, larger = more change"}],
        # float noise hardly compresses: ZSTD level 1 writes the 4096 x 4096 bench magnitude in
        # about half the time of DEFLATE level 1 (0.44-0.62 s against 0.98-1.05 s) at the same
        # size (70 MB); GDAL >= 2.3 and so QGIS >= 3.4 read it
        options={"COMPRESS": "ZSTD", "LEVEL": "1", **({"NUM_THREADS": str(int(threads))} if threads else {})},
    )


def reflectance_dn(refl: np.ndarray) -> np.ndarray:
    """(B, H, W) float reflectance -> uint16 reflectance x :data:`RGB_SCALE`, clipped to 1..65535
    so that 0 is free for no data: 0 in every band where any band is not finite."""
    from ..kernels import _numba as K

    refl = np.asarray(refl)
    if refl.ndim != 3:
        raise ValueError(f"refl must be (B, H, W), got shape {refl.shape}")
    ft = np.result_type(refl.dtype, np.float32)  # float32 stays float32: the product as numpy's
    if refl.dtype != ft:
        refl = refl.astype(ft)
    dn = np.empty(refl.shape, np.uint16)
    # one parallel pass, strided input read in place (a tile's core of its composite): the
    # numpy expression (multiply, fmax, fmin, rint, astype, a missing mask) took 108 ms per
    # composite core of a whole-tile run, 7 s of it
    K.reflectance_to_dn(refl, ft.type(RGB_SCALE), ft.type(1), ft.type(65535), dn)
    return dn


def write_rgb_cog(rgb: np.ndarray, grid: Grid, path: str | os.PathLike, *, tags: dict | None = None) -> Path:
    """Write a true-colour composite as a uint16 RGB COG.

    Parameters
    ----------
    rgb : (3, H, W) float32
        Reflectance 0-1 of B04, B03, B02; NaN where no clear observation.

    Notes
    -----
    Stored as reflectance x :data:`RGB_SCALE` in uint16, clipped to 1..65535 so that 0 is free
    for no data (any band NaN -> 0 in all three bands).
    """
    rgb = np.asarray(rgb, dtype=np.float32)
    if rgb.ndim != 3 or rgb.shape[0] != 3 or rgb.shape[1:] != grid.shape:
        raise OutputError(f"rgb has shape {rgb.shape}; expected (3, H, W) with (H, W) = {grid.shape}")
    return _write_cog(
        reflectance_dn(rgb),
        grid,
        Path(path),
        nodata=0,
        resampling="AVERAGE",
        descriptions=["B04 red", "B03 green", "B02 blue"],
        tags={**(tags or {}), "SCALE": f"reflectance x {RGB_SCALE}"},
        photometric="RGB",
    )


def _names_by_code() -> dict[int, str]:
    return {code: name for name, code in sorted(CLASS_CODES.items(), key=lambda kv: kv[1])}


def _pam_xml(names: dict[int, str]) -> str:
    """GDAL PAM sidecar: category names (index = code) and a thematic raster attribute table."""
    top = max(names)
    cats = "".join(f"      <Category>{xml_escape(names.get(i, ''))}</Category>\n" for i in range(top + 1))
    fields = [("Value", 0, 5), ("Class", 2, 2), ("Red", 0, 6), ("Green", 0, 7), ("Blue", 0, 8), ("Alpha", 0, 9)]
    defs = "".join(
        f'      <FieldDefn index="{i}"><Name>{n}</Name><Type>{t}</Type><Usage>{u}</Usage></FieldDefn>\n'
        for i, (n, t, u) in enumerate(fields)
    )
    rows = ""
    for r, (code, name) in enumerate(sorted(names.items())):
        cells = [code, xml_escape(name), *CLASS_COLOURS[name]]
        rows += f'      <Row index="{r}">' + "".join(f"<F>{c}</F>" for c in cells) + "</Row>\n"
    return (
        "<PAMDataset>\n"
        '  <PAMRasterBand band="1">\n'
        "    <CategoryNames>\n"
        f"{cats}"
        "    </CategoryNames>\n"
        '    <GDALRasterAttributeTable tableType="thematic">\n'
        f"{defs}{rows}"
        "    </GDALRasterAttributeTable>\n"
        "  </PAMRasterBand>\n"
        "</PAMDataset>\n"
    )
