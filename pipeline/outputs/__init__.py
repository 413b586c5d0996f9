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
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
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

__all__ = ["write_outputs", "MagnitudeInAdvance", "OUTPUT_FILES"]

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
    return _tags(aoi=result.aoi, source=result.source, before=result.before, after=result.after)


def _tags(*, aoi, source: str, before: str, after: str) -> dict:
    """GDAL metadata of every raster: what was compared, where, with which version."""
    return {
        "TIFFTAG_SOFTWARE": f"s2watch {__version__}",
        "S2WATCH_VERSION": __version__,
        "S2WATCH_SOURCE": source,
        "S2WATCH_BEFORE": before,
        "S2WATCH_AFTER": after,
        "S2WATCH_AOI_ID": aoi.id,
        "S2WATCH_AOI_NAME": aoi.name,
        "S2WATCH_AOI_DIGEST": aoi.digest,
    }


def _make_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output folder {out}: {exc.strerror or exc}; choose a writable --out folder") from exc


class MagnitudeInAdvance:
    """Writes ``change_magnitude.tif`` on a second thread while the detection goes on.

    The magnitude is final before the objects are extracted, and extracting them keeps one core
    busy: handed over then (``detect(..., on_magnitude=early)``), the COG is encoded on the other
    core meanwhile, and :func:`write_outputs` (``early=early``) only moves it into place. Until
    then it is a hidden staging file in ``out_dir``, removed when the ``with`` block is left
    without :func:`write_outputs` having taken it (the detection failed), so the folder never
    holds a new magnitude beside the objects of an older run.

    Parameters
    ----------
    out_dir : path-like
        The folder :func:`write_outputs` will write (created on the handover if needed).

    Examples
    --------
    >>> with MagnitudeInAdvance(out) as early:  # doctest: +SKIP
    ...     result = detect(aoi, source, before=before, after=after, on_magnitude=early)
    ...     write_outputs(result, out, early=early)

    Notes
    -----
    The file is the one :func:`write_outputs` writes otherwise, byte for byte: the same array and
    the same tags. :meth:`take` checks both against the result and, when they differ (another
    result written), drops the staged file and lets :func:`write_outputs` write its own.
    """

    def __init__(self, out_dir: str | os.PathLike):
        self.out = Path(out_dir)
        self._pool: ThreadPoolExecutor | None = None
        self._job: Future | None = None
        self._staged: Path | None = None
        self._key: tuple | None = None

    def __call__(self, magnitude: np.ndarray, *, grid, aoi, source: str, before: str, after: str) -> None:
        if self._job is not None:
            raise OutputError("MagnitudeInAdvance takes one magnitude; use one per detection")
        if self._pool is None:
            raise OutputError("use MagnitudeInAdvance as a context manager (`with MagnitudeInAdvance(out) as early:`)")
        _make_dir(self.out)
        tags = _tags(aoi=aoi, source=source, before=before, after=after)
        fd, tmp = tempfile.mkstemp(prefix=".change_magnitude.tif.", suffix=".early.tif", dir=self.out)
        os.close(fd)
        self._staged = Path(tmp)
        self._staged.unlink()  # GDAL creates it
        self._key = (magnitude, grid, tags)
        self._job = self._pool.submit(write_magnitude_cog, magnitude, grid, self._staged, tags=tags, threads=1)
        log.debug("writing the magnitude in advance to %s", self._staged)

    def take(self, result) -> Path | None:
        """The staged COG of ``result``'s magnitude once written (re-raising its error), or None
        when none was handed over or it was not ``result``'s; the caller moves it into place."""
        if self._job is None:
            return None
        path = self._job.result()
        magnitude, grid, tags = self._key
        if result.magnitude is not magnitude or result.grid != grid or _provenance(result) != tags:
            log.debug("the magnitude written in advance is not this result's; writing it again")
            self._discard()
            return None
        self._job, self._key = None, None
        return path

    def _discard(self) -> None:
        self._job, self._key = None, None
        if self._staged is not None:
            self._staged.unlink(missing_ok=True)

    def __enter__(self) -> "MagnitudeInAdvance":
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s2watch-early-cog")
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self._job is not None:
                self._job.exception()  # wait for it, whatever happened; its file goes below
        finally:
            self._pool.shutdown(wait=True)
            self._pool = None
            self._discard()


def write_outputs(
    result,
    out_dir: str | os.PathLike,
    *,
    rgb: bool = False,
    history: dict | None = None,
    extra_manifest: dict | None = None,
    early: MagnitudeInAdvance | None = None,
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
    early : MagnitudeInAdvance, optional
        Where ``change_magnitude.tif`` of ``result`` is being written already (see there); it is
        moved into ``out_dir`` instead of being written again.

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
    _make_dir(out)
    if early is not None and early.out.resolve() != out.resolve():
        raise OutputError(f"the magnitude was written in advance to {early.out}, not to {out}; give write_outputs the same folder")

    t0 = time.perf_counter()
    epsg = result.grid.epsg
    tags = _provenance(result)
    files: dict[str, Path] = {}
    if not rgb:
        for stale in ("before_rgb.tif", "after_rgb.tif"):
            (out / stale).unlink(missing_ok=True)

    def magnitude() -> Path:
        path = out / "change_magnitude.tif"
        staged = early.take(result) if early is not None else None
        if staged is None:
            return write_magnitude_cog(result.magnitude, result.grid, path, tags=tags)
        os.replace(staged, path)
        return path

    def rasters() -> list[Path]:
        paths = list(write_class_cog(result.class_map, result.grid, out / "change_class.tif", tags=tags))
        if rgb:
            for which in ("before", "after"):
                paths.append(
                    write_rgb_cog(result.composite(which, list(TRUE_COLOUR)), result.grid, out / f"{which}_rgb.tif", tags={**tags, "S2WATCH_WINDOW": which})
                )
        return paths

    raster_names = ["change_class.tif", "change_class.tif.aux.xml", "change_class.qml", "change_magnitude.tif"]
    raster_names += ["before_rgb.tif", "after_rgb.tif"] if rgb else []
    # the COGs (GDAL, which releases the GIL) are written on two more threads, the magnitude on its
    # own (a whole tile's class and magnitude COGs: 5.4 s one after the other, 4.1-4.4 s side by
    # side), while the vectors and the report are made here; every file is still written atomically
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="s2watch-cog") as pool:
        magnitude_job = pool.submit(magnitude)
        raster_job = pool.submit(rasters)
        try:
            vectors = [write_geojson(result.objects, out / "changes.geojson", aoi_id=result.aoi.id, epsg=epsg)]
            vectors += write_gpkg(result.objects, out / "changes.gpkg", aoi_id=result.aoi.id, epsg=epsg, after=result.after, qml_path=out / "changes.qml")
            listed = sorted({*raster_names, *(p.name for p in vectors), "report.html", "summary.md", "manifest.json"})
            report = render_report(result, history=history, outputs=listed)
        finally:
            raster_paths = [magnitude_job.result(), *raster_job.result()]  # re-raises a failed COG write
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
