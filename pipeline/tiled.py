"""Detection over AOIs too large for one pass: tile by tile, in bounded memory, here or on dask.

The AOI grid is cut into square cores of ``tile_px`` pixels. Each core is read and detected with a
halo of ``halo_px`` pixels around it, so objects near a core edge are seen whole and the
morphology has its neighbours. Every tile is an independent :func:`pipeline.detect.detect_stacks`:
its own masks, co-registration, IR-MAD normalisation and threshold, i.e. local statistics over
``tile_px + 2 halo_px`` pixels (20 x 20 km by default), as a moving-window method would use.

The tiles are merged by their cores:

* ``class_map`` and ``magnitude`` are pasted core by core;
* an object is kept by the one tile whose core holds its representative point, with the geometry
  that tile saw (whole if it reaches no more than ``halo_px`` beyond the core);
* the composites are kept on disk, one ``.npy`` per tile and window, as uint16 reflectance x 10000
  (0 = no data): the result's ``before_composite`` / ``after_composite`` are :class:`DiskComposite`
  views that read only the windows asked for (report chips, the decimated overview);
* ``acquisitions`` are those of the first tile with data; every tile's threshold, changed pixels
  and co-registration shifts are in ``parameters["tiling"]["tiles"]``.

Memory: one tile's detection (about 2 GB for the default 3328 x 3328 px tile with halo, seven
bands and one acquisition per window; each acquisition more adds about 45 bytes per pixel) plus the
merged class map and magnitude (5 bytes per AOI pixel). :func:`tile_size` picks a smaller tile when
long windows would take the detection over the memory budget (:func:`peak_memory`). With the dask executor
the tiles run on the workers; results come back one by one as they finish.

A class map pixel of an object straddling two cores is classified by the tile it lies in, so such an
object can show two classes on either side of the seam while the object list holds it once.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from shapely.geometry import box

from .aoi import AOI
from .errors import NoDataError, UsageError
from .grid import Grid
from .objects.model import NODATA_CODE
from .outputs.cog import RGB_SCALE, reflectance_dn
from .result import DetectionResult

log = logging.getLogger(__name__)

__all__ = ["Tile", "plan_tiles", "tile_size", "peak_memory", "memory_budget", "MEMORY_GB", "DiskComposite", "detect_tiled", "TILE_PX", "HALO_PX", "AUTO_TILE_MPX"]

TILE_PX = 3072
"""Default core size of a tile, pixels. A whole Sentinel-2 tile (10980^2) is then 16 tiles: on the
whole-tile bench pair (7 bands + SCL, one acquisition per window) 53 s and a peak RSS of 2.4 GB,
against 68 s and 1.6 GB in 36 tiles of 2048 px (a third less CPU: each tile's fixed costs, and
the halo read around it, come 16 times instead of 36)."""
HALO_PX = 128
"""Default halo read around each core, pixels (1.28 km at 10 m)."""
AUTO_TILE_MPX = 40.0
"""``s2watch detect`` tiles a grid of more megapixels than this unless told otherwise (about
6300 x 6300 px; a whole 10980 x 10980 px Sentinel-2 tile is 121 Mpx)."""

_DN = np.float32(1.0 / RGB_SCALE)  # stored as the RGB COGs store reflectance


@dataclass(frozen=True)
class Tile:
    """One tile: ``core`` and ``outer`` (core + halo, clipped to the grid) as ``(row0, row1,
    col0, col1)`` pixel ranges of the AOI grid."""

    index: int
    core: tuple[int, int, int, int]
    outer: tuple[int, int, int, int]


def plan_tiles(shape: tuple[int, int], tile_px: int = TILE_PX, halo_px: int = HALO_PX) -> list[Tile]:
    """Cut an ``(H, W)`` grid into cores of at most ``tile_px`` square (equal sizes, row-major).

    Raises
    ------
    UsageError
        ``tile_px`` < 256 or ``halo_px`` < 0.
    """
    if tile_px < 256:
        raise UsageError(f"tile size {tile_px} px is too small; use at least 256 (default {TILE_PX})")
    if halo_px < 0:
        raise UsageError(f"halo {halo_px} px must be >= 0 (default {HALO_PX})")
    H, W = shape
    nr, nc = -(-H // tile_px), -(-W // tile_px)
    rows = [round(i * H / nr) for i in range(nr + 1)]
    cols = [round(j * W / nc) for j in range(nc + 1)]
    tiles = []
    for i in range(nr):
        for j in range(nc):
            r0, r1, c0, c1 = rows[i], rows[i + 1], cols[j], cols[j + 1]
            outer = (max(0, r0 - halo_px), min(H, r1 + halo_px), max(0, c0 - halo_px), min(W, c1 + halo_px))
            tiles.append(Tile(len(tiles), (r0, r1, c0, c1), outer))
    return tiles


MEMORY_GB = 6.0
"""Default memory budget of one detection, GiB (``--memory-gb``, ``S2WATCH_MEMORY_GB``): a grid or a
window of acquisitions whose one-pass detection :func:`peak_memory` expects above it is tiled."""

# Peak resident memory of one detection, measured with the simulated source and local COGs
# (`/usr/bin/time -f %M s2watch detect ...`) and rounded up: a fixed part (the interpreter, its
# libraries and numba's kernels), a part per grid pixel (the composites, magnitude, class map and
# objects) and a part per grid pixel and acquisition of the larger window (its DN and the
# reflectance stack the median is taken over, which live together while the window is
# harmonised). Measured: 0.69 Mpx with 2 / 12 / 35 / 70 acquisitions 0.50 / 0.72 / 1.42 / 2.49 GB;
# 4.8 Mpx with 12 3.32 GB; 16.8 Mpx with 1 2.08 GB; this estimate: 0.55 / 0.88 / 1.64 / 2.80,
# 3.75 and 3.22 GB.
_FIXED_BYTES = 0.4e9
_BYTES_PER_PX = 120.0
_BYTES_PER_PX_DATE = 48.0
_TILED_BYTES_PER_PX = 60.0  # per tile pixel: the previous tile's composites being written meanwhile
_MERGED_BYTES_PER_PX = 5.0  # per AOI pixel: the merged class map (1) and magnitude (4)


def peak_memory(shape: tuple[int, int], dates: int = 1, *, tile_px: int | None = None, halo_px: int = HALO_PX) -> float:
    """The peak memory, bytes, that detecting an ``(H, W)`` grid with windows of up to ``dates``
    acquisitions is expected to take: in one pass (``tile_px`` None) or in tiles of ``tile_px``
    with ``halo_px`` halos. An estimate from measurements, rounded up (see the source)."""
    H, W = shape
    per_px = _BYTES_PER_PX + _BYTES_PER_PX_DATE * max(1, int(dates))
    if tile_px is None or (H <= tile_px and W <= tile_px):
        return _FIXED_BYTES + H * W * per_px
    outer = (min(H, tile_px + 2 * halo_px)) * (min(W, tile_px + 2 * halo_px))
    return _FIXED_BYTES + outer * (per_px + _TILED_BYTES_PER_PX) + H * W * _MERGED_BYTES_PER_PX


def memory_budget(memory_gb: float | None = None) -> float:
    """The memory budget, bytes: ``memory_gb`` GiB, else ``S2WATCH_MEMORY_GB``, else :data:`MEMORY_GB`.

    Raises
    ------
    UsageError
        A budget that is not a positive number (naming where it came from).
    """
    where = "--memory-gb"
    if memory_gb is None:
        env = os.environ.get("S2WATCH_MEMORY_GB")
        if env is None or not env.strip():
            return MEMORY_GB * 2**30
        where = "S2WATCH_MEMORY_GB"
        try:
            memory_gb = float(env)
        except ValueError:
            raise UsageError(f"{where}={env!r} is not a number; give the memory budget in GiB, e.g. 6") from None
    if not (isinstance(memory_gb, (int, float)) and math.isfinite(memory_gb) and memory_gb > 0):
        raise UsageError(f"{where} {memory_gb!r}: the memory budget must be a positive number of GiB, e.g. 6")
    return float(memory_gb) * 2**30


def tile_size(
    shape: tuple[int, int],
    tile_px: int | None = None,
    *,
    distributed: bool = False,
    dates: int = 1,
    memory_gb: float | None = None,
    halo_px: int = HALO_PX,
) -> int | None:
    """The core size to tile an ``(H, W)`` grid with, or None for one pass.

    ``tile_px`` None decides: one pass unless the grid exceeds :data:`AUTO_TILE_MPX`, the work is
    ``distributed`` (tiles are what a cluster shares out), or the one-pass detection of windows of
    up to ``dates`` acquisitions would exceed the memory budget (:func:`peak_memory` against
    :func:`memory_budget`; a year of acquisitions over a few hundred km^2 does); then the largest
    core, a multiple of 256 px up to :data:`TILE_PX`, whose tiles fit the budget (256 px, with a
    warning, when none does). ``0`` never tiles; any other value is the core size asked for
    (checked by :func:`plan_tiles`), or one pass when the grid fits in one tile and the work is
    not ``distributed``.

    Raises
    ------
    UsageError
        ``tile_px`` 0 with ``distributed``, a negative ``tile_px``, or a bad budget.
    """
    H, W = shape
    if tile_px is None:
        budget = memory_budget(memory_gb)
        if not (distributed or H * W / 1e6 > AUTO_TILE_MPX or peak_memory(shape, dates) > budget):
            return None
        for core in range(TILE_PX, 255, -256):
            if peak_memory(shape, dates, tile_px=core, halo_px=halo_px) <= budget:
                break
        else:
            log.warning(
                "windows of %d acquisitions over %d x %d px: even tiles of %d px are expected to peak at %.1f GiB, "
                "above the %.1f GiB budget; shorten the windows (fewer acquisitions) or raise --memory-gb",
                dates, H, W, core, peak_memory(shape, dates, tile_px=core, halo_px=halo_px) / 2**30, budget / 2**30,
            )
        if not distributed and H <= core and W <= core:
            return None  # one tile is one pass
        return core
    if tile_px < 0:
        raise UsageError(f"tile size {tile_px} px must be >= 0 (--tile-px 0: never tile)")
    if tile_px == 0:
        if distributed:
            raise UsageError("the dask executor distributes tiles; it cannot be used with --tile-px 0 (tile_px = 0: never tile)")
        return None
    if not distributed and H <= tile_px and W <= tile_px:
        return None  # one tile is one pass
    return tile_px


def _sub_grid(grid: Grid, rect: tuple[int, int, int, int]) -> Grid:
    r0, r1, c0, c1 = rect
    return grid.window(r0, c0, r1 - r0, c1 - c0)


def _span(idx: range, lo: int, hi: int) -> slice | None:
    """The positions in ``idx`` whose values lie in ``[lo, hi)``, as a slice; None if there are none."""
    if idx.step > 0:
        i0 = max(0, -(-(lo - idx.start) // idx.step))
        i1 = min(len(idx), -(-(hi - idx.start) // idx.step))
        return slice(i0, i1) if i0 < i1 else None
    pos = [i for i, v in enumerate(idx) if lo <= v < hi]  # a reversed slice: rare, plain
    return slice(pos[0], pos[-1] + 1) if pos else None


def _shifted(sub: range, origin: int) -> slice:
    """``sub`` (a non-empty range of grid indices) as a slice of a part starting at ``origin``."""
    stop = sub[-1] - origin + (1 if sub.step > 0 else -1)
    return slice(sub[0] - origin, stop if stop >= 0 else None, sub.step)


class DiskComposite:
    """A (B, H, W) float32 composite kept on disk tile by tile, read by window.

    Index it like an array with basic slices on the rows and columns and an int, slice or list on
    the bands (``comp[[2, 1, 0], r0:r1:step, c0:c1:step]``): only the tiles the window touches are
    read (memory-mapped). ``np.asarray(comp)`` reads it all.
    """

    dtype = np.dtype(np.float32)
    ndim = 3
    PENDING_MAX = 2
    """Tiles written in the background at most at once (one being written, one queued): the next
    tile's detection goes on while a slow disk takes the last one (a whole tile's composites are
    3.4 GB; this VM's disk writes about 160 MB/s), for at most two tiles' DN held in memory."""

    def __init__(self, shape: tuple[int, int, int], folder: Path, name: str):
        self.shape = tuple(int(s) for s in shape)
        self.folder, self.name = Path(folder), name
        self._parts: list[tuple[tuple[int, int, int, int], Path]] = []
        self._writer: ThreadPoolExecutor | None = None
        self._pending: deque = deque()

    def __repr__(self) -> str:
        return f"DiskComposite({self.name!r}, shape={self.shape}, {len(self._parts)} tiles in {self.folder})"

    def put(self, core: tuple[int, int, int, int], dn: np.ndarray) -> None:
        """Store the (B, h, w) uint16 DN of a core."""
        r0, r1, c0, c1 = core
        if dn.shape != (self.shape[0], r1 - r0, c1 - c0) or dn.dtype != np.uint16:
            raise ValueError(f"tile {core}: expected uint16 {(self.shape[0], r1 - r0, c1 - c0)}, got {dn.dtype} {dn.shape}")
        path = self.folder / f"{self.name}_{r0}_{c0}.npy"
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"s2watch-{self.name}")
        while len(self._pending) >= self.PENDING_MAX:
            self._pending.popleft().result()  # re-raises a failed write
        self._pending.append(self._writer.submit(np.save, path, dn))
        self._parts.append((core, path))

    def flush(self) -> None:
        """Wait for the tiles still being written; a failed write raises here."""
        while self._pending:
            self._pending.popleft().result()

    def __getstate__(self) -> dict:
        self.flush()
        return {k: v for k, v in self.__dict__.items() if k not in ("_writer", "_pending")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _writer=None, _pending=deque())

    def __getitem__(self, key) -> np.ndarray:
        self.flush()
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (3 - len(key))
        bsel, rs, cs = key
        if not isinstance(rs, slice) or not isinstance(cs, slice):
            raise IndexError("index a DiskComposite with slices on rows and columns")
        bands = np.arange(self.shape[0])[bsel]
        squeeze = np.ndim(bands) == 0
        bands = np.atleast_1d(bands)
        rows = range(*rs.indices(self.shape[1]))
        cols = range(*cs.indices(self.shape[2]))
        out = np.full((bands.size, len(rows), len(cols)), np.nan, dtype=np.float32)
        # a chip of the report asks for a few hundred pixels: the parts it overlaps, found by
        # arithmetic on the slices (not by comparing every row and column index with every part)
        for (r0, r1, c0, c1), path in self._parts:
            ri, ci = _span(rows, r0, r1), _span(cols, c0, c1)
            if ri is None or ci is None:
                continue
            # mapped per read, not kept: pages of a whole composite read once (the RGB COGs) would
            # stay in the process's resident set while the maps live
            mm = np.load(path, mmap_mode="r")
            src = (bands, _shifted(rows[ri], r0), _shifted(cols[ci], c0))
            dn = mm[src]  # (bands, h, w): one fancy index, two slices
            vals = dn.astype(np.float32) * _DN
            vals[:, (dn == 0).any(axis=0)] = np.nan
            out[:, ri, ci] = vals
        return out[0] if squeeze else out

    def __array__(self, dtype=None, copy=None):
        arr = self[:, :, :]
        return arr if dtype is None else arr.astype(dtype)


@dataclass
class _TileJob:
    """What every tile task needs (pickled once per task for dask)."""

    aoi: AOI
    source: Any
    before_acqs: list
    after_acqs: list
    grid: Grid
    params: Any
    windows: tuple
    source_name: str
    reference_cache: str | None = None


@dataclass
class _TileResult:
    tile: Tile
    class_core: np.ndarray | None = None
    magnitude_core: np.ndarray | None = None
    before_dn: np.ndarray | None = None
    after_dn: np.ndarray | None = None
    objects: tuple = ()
    acquisitions: tuple = ()
    parameters: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    skipped: str = ""  # why the tile has no result (outside the AOI, no data)


def _load_reference(path: Path):
    import pickle

    try:
        with open(path, "rb") as fh:
            return pickle.load(fh)
    except FileNotFoundError:
        return None


def _save_reference(path: Path, reference) -> None:
    """Pickle a detached :class:`~pipeline.detect.Reference` to ``path`` atomically."""
    import pickle

    from .outputs.atomic import write_bytes

    write_bytes(path, pickle.dumps(reference, protocol=pickle.HIGHEST_PROTOCOL))


def _run_tile(tile: Tile, job: _TileJob) -> _TileResult:
    """Read and detect one tile (core + halo); return its core's share of the result.

    With ``job.reference_cache`` (a folder every worker can reach) the tile's prepared before
    window is kept there (:meth:`pipeline.detect.Reference.detached`, pickled) by the first
    task of the tile and reused by later ones, which then read only the after window.
    """
    from .detect import _read_and_detect, aoi_mask

    g = _sub_grid(job.grid, tile.outer)
    if not aoi_mask(job.aoi, g).any():
        return _TileResult(tile, skipped="outside the AOI polygon")
    cache = Path(job.reference_cache) / f"tile-{tile.index}.pkl" if job.reference_cache else None
    cached = _load_reference(cache) if cache is not None else None
    try:
        res, ref = _read_and_detect(
            job.aoi, job.source, job.before_acqs, job.after_acqs, grid=g, params=job.params, windows=job.windows,
            source_name=job.source_name, reference=cached,
        )
    except NoDataError as exc:
        return _TileResult(tile, skipped=f"no data: {exc}")
    if cache is not None and cached is None:
        _save_reference(cache, ref)
    del ref, cached
    r0, r1, c0, c1 = tile.core
    o0, _, q0, _ = tile.outer
    sl = (slice(r0 - o0, r1 - o0), slice(c0 - q0, c1 - q0))
    core_box = box(*_sub_grid(job.grid, tile.core).bounds)
    objects = tuple(o for o in res.objects if core_box.covers(o.geometry.representative_point()))
    return _TileResult(
        tile,
        class_core=np.ascontiguousarray(res.class_map[sl]),
        magnitude_core=np.ascontiguousarray(res.magnitude[sl]),
        before_dn=reflectance_dn(np.asarray(res.before_composite)[(slice(None),) + sl]),
        after_dn=reflectance_dn(np.asarray(res.after_composite)[(slice(None),) + sl]),
        objects=objects,
        acquisitions=res.acquisitions,
        parameters=res.parameters,
        timings=dict(res.timings),
    )


def detect_tiled(
    aoi: AOI,
    source,
    *,
    before: tuple[date, date],
    after: tuple[date, date],
    params=None,
    tile_px: int = TILE_PX,
    halo_px: int = HALO_PX,
    executor=None,
    workdir: "str | Path | None" = None,
    acquisitions: "tuple[list, list] | None" = None,
    reference_cache: "str | Path | None" = None,
) -> DetectionResult:
    """Detect change over a large AOI tile by tile (see the module docstring).

    Parameters
    ----------
    aoi : AOI
    source : Source
        Searched once here; each tile reads its own window (on the dask workers with the dask
        executor: the source must then be picklable, as every built-in source is).
    before, after : (date, date)
    params : DetectParams or None
    tile_px, halo_px : int
        Core size and halo of the tiles, pixels.
    executor : SerialExecutor, DaskExecutor or None
        Where the tiles run (default: here, one after another).
    workdir : path or None
        Folder for the composites kept on disk (default: a new temporary folder, removed when
        the result's composites are garbage-collected or the process exits; give one to keep them).
    acquisitions : (list of Acquisition, list of Acquisition) or None
        The before and after acquisitions, already searched (e.g. one new acquisition of a
        monitoring run); default: ``source.search`` over each window.
    reference_cache : path or None
        A folder (reachable from every worker) where each tile keeps its prepared before window
        for later calls with the same before acquisitions and parameters, e.g. each new
        acquisition of a monitoring run; the caller removes it. Default: nothing kept.

    Returns
    -------
    DetectionResult
        With :class:`DiskComposite` composites and ``parameters["tiling"]``.

    Raises
    ------
    NoDataError
        A window has no acquisition, or no tile has usable data (the first tile's reason).
    """
    from .detect import DetectParams, _check_window, _window_str
    from .runs.executor import SerialExecutor

    params = params or DetectParams()
    before = _check_window("before", before)
    after = _check_window("after", after)
    grid = aoi.grid()
    name = getattr(source, "name", "")
    acqs = {}
    for i, (wname, win) in enumerate((("before", before), ("after", after))):
        if acquisitions is not None:
            found = list(acquisitions[i])
        else:
            found = source.search(aoi, win[0], win[1], max_cloud=params.max_cloud)
            log.info("%s window %s: %d acquisitions found", wname, _window_str(win), len(found))
        if not found:
            raise NoDataError(
                f"no usable acquisition in the {wname} window {_window_str(win)}: 0 found, the source found no "
                "acquisition over the AOI in that window. Widen the window, raise max_cloud or lower min_clear_fraction."
            )
        acqs[wname] = found
    tiles = plan_tiles(grid.shape, tile_px, halo_px)
    job = _TileJob(aoi, source, acqs["before"], acqs["after"], grid, params, (before, after), name,
                   str(reference_cache) if reference_cache is not None else None)
    H, W = grid.shape
    B = len(params.bands)
    folder = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix=f"s2watch-{aoi.id}-"))
    folder.mkdir(parents=True, exist_ok=True)
    bc, ac = DiskComposite((B, H, W), folder, "before"), DiskComposite((B, H, W), folder, "after")
    if workdir is None:
        import weakref

        weakref.finalize(bc, shutil.rmtree, folder, True)
    class_map = np.full((H, W), NODATA_CODE, dtype=np.uint8)
    magnitude = np.full((H, W), np.nan, dtype=np.float32)
    objects: dict[str, Any] = {}
    first = None
    timings: dict[str, float] = {}
    summary = []
    reasons = []
    log.info("%s: %d x %d px in %d tiles of %d px (+%d px halo)", aoi.id, H, W, len(tiles), tile_px, halo_px)
    ex = executor or SerialExecutor()
    for tile, res in ex.as_completed(_run_tile, tiles, job):
        if isinstance(res, BaseException):
            raise res
        r0, r1, c0, c1 = tile.core
        row = {"index": tile.index, "core": list(tile.core)}
        if res.skipped:
            row["skipped"] = res.skipped
            reasons.append(res.skipped)
            summary.append(row)
            continue
        class_map[r0:r1, c0:c1] = res.class_core
        magnitude[r0:r1, c0:c1] = res.magnitude_core
        bc.put(tile.core, res.before_dn)
        ac.put(tile.core, res.after_dn)
        for o in res.objects:
            objects.setdefault(o.id, o)
        for k, v in res.timings.items():
            timings[k] = round(timings.get(k, 0.0) + v, 4)
        prm = res.parameters
        row.update(
            threshold_value=prm.get("threshold_value"),
            changed_pixels=prm.get("changed_pixels"),
            objects=len(res.objects),
            shifts={a.id: a.shift_px for a in res.acquisitions if a.used},
        )
        summary.append(row)
        if first is None or tile.index < first[0]:
            first = (tile.index, res.acquisitions, prm)
        log.info("tile %d/%d %s: %d objects", tile.index + 1, len(tiles), tile.core, len(res.objects))
    bc.flush()
    ac.flush()
    if first is None:
        raise NoDataError(f"{aoi.id}: no tile had usable data ({reasons[0] if reasons else 'no tile inside the AOI'})")
    _, records, prm = first
    summary.sort(key=lambda r: r["index"])
    parameters = dict(prm)
    parameters["changed_pixels"] = int(sum(r.get("changed_pixels") or 0 for r in summary))
    parameters["tiling"] = {"tile_px": tile_px, "halo_px": halo_px, "n_tiles": len(tiles), "tiles": summary,
                            "note": "per-tile thresholds and normalisation; acquisitions and threshold_value of the first tile"}
    objs = tuple(sorted(objects.values(), key=lambda o: (-o.confidence, o.id)))
    return DetectionResult(
        aoi=aoi,
        grid=grid,
        source=name,
        before=_window_str(before),
        after=_window_str(after),
        class_map=class_map,
        magnitude=magnitude,
        objects=objs,
        composite_bands=tuple(params.bands),
        before_composite=bc,
        after_composite=ac,
        acquisitions=tuple(records),
        parameters=parameters,
        timings=timings,
    )
