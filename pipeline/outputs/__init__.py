"""Outputs for GIS and for people: COGs, GeoJSON, GeoPackage with styles, HTML report, manifest.

One call writes everything::

    from pipeline.outputs import write_outputs
    paths = write_outputs(result, "out/al-jufra", rgb=True)

Every file is written atomically (temporary file in the same folder, then ``os.replace``) and
``manifest.json`` comes last, with the sha256 of every other file: a folder with a manifest is
complete. The same result gives byte-identical files; only ``manifest.json``'s ``written_at``
and ``timings["outputs"]`` differ between two writes (see :mod:`pipeline.outputs.gpkg` for how the GeoPackage's own
timestamps are pinned).
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import ConfigError, OutputError
from ..objects.model import ChangeObject
from .atomic import write_text
from .cog import write_class_cog, write_magnitude_cog, write_rgb_cog
from .geojson import write_geojson
from .gpkg import write_gpkg
from .manifest import check_extra, write_manifest
from .plots import TRUE_COLOUR
from .report import render_report
from .summary import render_summary

log = logging.getLogger(__name__)

__all__ = ["write_outputs", "OUTPUT_FILES"]

OUTPUT_FILES = (
    "change_class.tif",
    "change_class.tif.aux.xml",
    "change_class.qml",
    "change_magnitude.tif",
    "changes.geojson",
    "changes.gpkg",
    "changes.qml",
    "report.html",
    "summary.md",
    "manifest.json",
)
"""Files :func:`write_outputs` always writes (``before_rgb.tif`` / ``after_rgb.tif`` with ``rgb=True``)."""


def _validate(result) -> None:
    grid = result.grid
    cm, mag = np.asarray(result.class_map), np.asarray(result.magnitude)
    if cm.shape != grid.shape or cm.dtype != np.uint8:
        raise OutputError(f"class_map is {cm.dtype} {cm.shape}; expected uint8 {grid.shape} (the AOI grid's (H, W))")
    if mag.shape != grid.shape or mag.dtype != np.float32:
        raise OutputError(f"magnitude is {mag.dtype} {mag.shape}; expected float32 {grid.shape}")
    nb = len(result.composite_bands)
    for which in ("before_composite", "after_composite"):
        arr = getattr(result, which)  # an array, or a DiskComposite of a tiled run: not read here
        shape = tuple(getattr(arr, "shape", None) or np.shape(arr))
        if shape != (nb, *grid.shape):
            raise OutputError(f"{which} has shape {shape}; expected (len(composite_bands)={nb}, H, W) = {(nb, *grid.shape)}")
    seen = set()
    for o in result.objects:
        if not isinstance(o, ChangeObject):
            raise OutputError(f"objects must be ChangeObject instances, got {type(o).__name__}")
        if o.id in seen:
            raise OutputError(f"object id {o.id!r} appears twice; ids must be unique")
        seen.add(o.id)
        if o.geometry.is_empty or o.geometry.geom_type not in ("Polygon", "MultiPolygon"):
            raise OutputError(f"object {o.id}: geometry must be a non-empty Polygon or MultiPolygon, got {o.geometry.geom_type}")


def _provenance(result) -> dict:
    aoi = result.aoi
    return {
        "TIFFTAG_SOFTWARE": f"s2watch {__version__}",
        "S2WATCH_VERSION": __version__,
        "S2WATCH_SOURCE": result.source,
        "S2WATCH_BEFORE": result.before,
        "S2WATCH_AFTER": result.after,
        "S2WATCH_AOI_ID": aoi.id,
        "S2WATCH_AOI_NAME": aoi.name,
        "S2WATCH_AOI_DIGEST": aoi.digest,
    }


def write_outputs(
    result,
    out_dir: str | os.PathLike,
    *,
    rgb: bool = False,
    history: dict | None = None,
    extra_manifest: dict | None = None,
) -> dict[str, Path]:
    """Write every output of a detection into ``out_dir``.

    Parameters
    ----------
    result : DetectionResult
        ``class_map`` (H, W) uint8, ``magnitude`` (H, W) float32, composites (B, H, W) float32
        reflectance 0-1 with NaN, objects with geometries in the grid CRS.
    out_dir : path-like
        Created (with parents) if needed. Existing files of the same names are replaced.
    rgb : bool
        Also write ``before_rgb.tif`` and ``after_rgb.tif`` (uint16 reflectance x 10000 COGs).
        Needs B04, B03 and B02 in ``result.composite_bands``.
    history : dict, optional
        Monitoring history for the report's timeline, ``{object_id: [{"date", "status",
        "confidence", "area_m2"}, ...]}``; may also hold ``"series"`` (merged with ``result.series``).
    extra_manifest : dict, optional
        Extra top-level keys for ``manifest.json`` (must not reuse its own keys).

    Returns
    -------
    dict of str -> pathlib.Path
        File name -> path of every file written (see :data:`OUTPUT_FILES`), manifest included.

    Raises
    ------
    OutputError
        When the result's arrays or objects disagree with its grid or the contracts.
    ConfigError
        When ``out_dir`` cannot be created.

    Notes
    -----
    Memory: a few temporary copies of one (H, W) band plus the map picture. Time (measured, shared
    2-core machine): about 2 s for Al-Jufra's 917 x 970 px grid with ``rgb=True`` and 5 s for a
    noise-filled 1100 x 1100 px grid with 50 objects, mostly DEFLATE and PNG compression.

    With ``rgb=False``, ``before_rgb.tif`` / ``after_rgb.tif`` left in ``out_dir`` by an earlier
    ``rgb=True`` write are removed, so the folder always matches its manifest.
    """
    _validate(result)
    check_extra(extra_manifest)
    if rgb and not all(b in result.composite_bands for b in TRUE_COLOUR):
        raise OutputError(f"rgb=True needs bands {', '.join(TRUE_COLOUR)} in composite_bands, got {', '.join(result.composite_bands)}")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output folder {out}: {exc.strerror or exc}; choose a writable --out folder") from exc

    t0 = time.perf_counter()
    epsg = result.grid.epsg
    tags = _provenance(result)
    files: dict[str, Path] = {}
    if not rgb:
        for stale in ("before_rgb.tif", "after_rgb.tif"):
            (out / stale).unlink(missing_ok=True)

    def rasters() -> list[Path]:
        paths = list(write_class_cog(result.class_map, result.grid, out / "change_class.tif", tags=tags))
        paths.append(write_magnitude_cog(result.magnitude, result.grid, out / "change_magnitude.tif", tags=tags))
        if rgb:
            for which in ("before", "after"):
                paths.append(
                    write_rgb_cog(result.composite(which, list(TRUE_COLOUR)), result.grid, out / f"{which}_rgb.tif", tags={**tags, "S2WATCH_WINDOW": which})
                )
        return paths

    raster_names = ["change_class.tif", "change_class.tif.aux.xml", "change_class.qml", "change_magnitude.tif"]
    raster_names += ["before_rgb.tif", "after_rgb.tif"] if rgb else []
    # the COGs (GDAL, which releases the GIL) are written on a second thread while the vectors and
    # the report are made here; every file is still written atomically
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="s2watch-cog") as pool:
        raster_job = pool.submit(rasters)
        try:
            vectors = [write_geojson(result.objects, out / "changes.geojson", aoi_id=result.aoi.id, epsg=epsg)]
            vectors += write_gpkg(result.objects, out / "changes.gpkg", aoi_id=result.aoi.id, epsg=epsg, after=result.after, qml_path=out / "changes.qml")
            listed = sorted({*raster_names, *(p.name for p in vectors), "report.html", "summary.md", "manifest.json"})
            report = render_report(result, history=history, outputs=listed)
        finally:
            raster_paths = raster_job.result()  # re-raises a failed COG write
    for p in raster_paths + vectors:
        files[p.name] = p
    if sorted({*files, "report.html", "summary.md", "manifest.json"}) != listed:  # pragma: no cover - a renamed output
        raise OutputError(f"outputs written {sorted(files)} differ from those listed in the report {listed}")
    files["report.html"] = write_text(out / "report.html", report)
    files["summary.md"] = write_text(out / "summary.md", render_summary(result, outputs=listed))
    files["manifest.json"] = write_manifest(
        out / "manifest.json", result, files, extra=extra_manifest, write_seconds=time.perf_counter() - t0
    )
    log.info("wrote %d files to %s", len(files), out)
    return files
