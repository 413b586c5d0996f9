"""Unattended monitoring: process only new acquisitions, track change objects, publish outputs.

Semantics of one AOI (:func:`monitor_aoi`):

reference
    The before window. At an AOI's first run it is fixed from the configuration (``reference``,
    default the 180 days before ``since``) and held in the state; later runs keep it. Its
    composite is saved once as ``ROOT/<aoi>/reference/composite.npy`` (path + sha256 in the
    state); later runs check their composite against that digest and warn when the archive
    changed underneath.
new acquisitions
    ``source.search`` over ``[max(since, reference end + 1 day), until]`` minus every
    acquisition the state has already seen. Without any, the run does no image work and leaves
    all outputs untouched (byte-identical).
one clear acquisition at a time
    Each new acquisition, oldest first, is compared with the reference (``detect_stacks`` with
    ``min_persistence=1``); a cloudy, corrupt or late-arriving one (dated before an acquisition
    already processed) is recorded as ``skipped`` with the reason and changes nothing else. The objects found go through :func:`pipeline.objects.track.update_lifecycle`:
    a change seen once is a ``candidate``; seen again at the next acquisition that observes its
    footprint it is ``confirmed`` (``confirm_after``, default 2), then ``persisting``; a candidate
    not seen again is dropped (a one-date change is never reported); a confirmed change no longer
    seen is ``gone``; an object whose footprint is under cloud keeps its state. Each acquisition's state update is one transaction.
outputs
    ``ROOT/<aoi>/runs/<run-id>/`` (written as ``runs/.tmp-<run-id>`` then renamed) holds the
    outputs of the latest clear acquisition with the tracked objects (confirmed, persisting,
    gone) and their history; its files are then published into ``ROOT/<aoi>/`` one atomic
    rename each, ``manifest.json`` last, and the state records which acquisition they show.

Crash safety: a run killed at any point leaves whole transactions and whole files; the rerun marks
the dead run ``failed``, removes temporary folders, processes the acquisitions not yet recorded
and, if the published outputs lag the state, regenerates them, ending where an uninterrupted run
would. ``S2WATCH_TEST_KILL_AT=<stage>[:<n>]`` (tests only) SIGKILLs the process at the n-th
passage of a stage: ``searched``, ``in-transaction`` (inside an acquisition's state transaction),
``acquisition`` (after its commit), ``run-folder``, ``publish`` (after each published file),
``published``.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import os
import secrets
import shutil
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import __version__
from ..config import Config
from ..errors import ConfigError, DataError, LockHeldError, NoDataError, PipelineError, UsageError
from .lock import AOILock
from .logs import progress
from .state import SCHEMA_VERSION, State

log = logging.getLogger(__name__)

__all__ = ["AOIOutcome", "RunSummary", "monitor_aoi", "run_monitor", "new_run_id", "alert_summary", "KILL_ENV"]

KILL_ENV = "S2WATCH_TEST_KILL_AT"
REPORTED_STATUSES = ("confirmed", "persisting", "gone")
_passages: dict[str, int] = {}


def _kill_point(stage: str) -> None:
    """Test hook: SIGKILL this process when ``$S2WATCH_TEST_KILL_AT`` is ``stage`` or ``stage:n``
    and this is the n-th passage (default 1). Does nothing when the variable is unset."""
    want = os.environ.get(KILL_ENV)
    if not want:
        return
    name, _, nth = want.partition(":")
    if name != stage:
        return
    _passages[stage] = _passages.get(stage, 0) + 1
    if _passages[stage] == int(nth or 1):
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def new_run_id() -> str:
    """``YYYYmmddTHHMMSSZ-<6 hex>``: sortable by start time, unique across overlapping runs."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


@dataclass(frozen=True)
class AOIOutcome:
    """What one run did for one AOI.

    Attributes
    ----------
    aoi : str
    run_id : str
    status : str
        ``ok`` (outputs updated or nothing new to show), ``no_new_data``, ``locked`` (another run
        holds the AOI) or ``failed``.
    n_new, n_used, n_skipped : int
        New acquisitions found, used (clear) and skipped (cloudy / no data).
    new_confirmed : tuple of dict
        Changes confirmed and not reported by an earlier run (see :func:`alert_summary`).
    open_counts : dict
        Tracked objects per lifecycle status after the run.
    out_dir : str or None
        ``ROOT/<aoi>`` when outputs were (re)published.
    error : str
    seconds : float
        Wall time.
    """

    aoi: str
    run_id: str
    status: str
    n_new: int = 0
    n_used: int = 0
    n_skipped: int = 0
    new_confirmed: tuple[dict, ...] = ()
    open_counts: dict = field(default_factory=dict)
    out_dir: str | None = None
    report: str | None = None
    aoi_name: str = ""
    error: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class RunSummary:
    """Outcomes of every AOI of one run, and the alerts sent."""

    run_id: str
    outcomes: tuple[AOIOutcome, ...]
    alerts: dict = field(default_factory=dict)

    def exit_code(self, *, fail_on_change: bool = False) -> int:
        """1 if any AOI failed; else 3 with ``fail_on_change`` and new confirmed change; else 75
        if an AOI was locked by another run; else 0."""
        if any(o.status == "failed" for o in self.outcomes):
            return 1
        if fail_on_change and any(o.new_confirmed for o in self.outcomes):
            return 3
        if any(o.status == "locked" for o in self.outcomes):
            return 75
        return 0


def _versions() -> dict:
    import numba
    import rasterio
    import shapely

    return {
        "s2watch": __version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "numba": numba.__version__,
        "rasterio": rasterio.__version__,
        "gdal": rasterio.__gdal_version__,
        "shapely": shapely.__version__,
        "state_schema": SCHEMA_VERSION,
    }


def alert_summary(aoi, run_id: str, objects, *, report: str | None = None) -> dict:
    """The JSON summary of new confirmed changes posted to webhooks.

    ``{"aoi", "aoi_name", "run_id", "report", "changes": [{"id", "class", "status", "confidence",
    "area_m2", "feature", "first_seen", "last_seen", "lon", "lat"}]}``; lon/lat of the centroid.
    """
    from ..grid import reproject_geometry

    rows = []
    for o in objects:
        c = reproject_geometry(o.geometry.centroid, aoi.epsg, 4326)
        rows.append(
            {
                "id": o.id, "class": o.cls, "status": o.status, "confidence": round(float(o.confidence), 3),
                "area_m2": round(float(o.area_m2), 1), "feature": o.feature, "first_seen": o.first_seen,
                "last_seen": o.last_seen, "lon": round(c.x, 6), "lat": round(c.y, 6),
            }
        )
    return {"aoi": aoi.id, "aoi_name": aoi.name, "run_id": run_id, "report": report, "changes": rows}


def detect_params(cfg: Config):
    """The DetectParams of monitoring: ``[thresholds]`` with ``min_persistence=1`` (persistence is
    judged across acquisitions by the lifecycle). ConfigError for unknown keys or bad values."""
    from ..detect import DetectParams

    valid = ", ".join(k for k in DetectParams.__dataclass_fields__ if k not in ("mask", "objects"))
    unknown = sorted(set(cfg.thresholds) - set(DetectParams.__dataclass_fields__))
    where = f"{cfg.config_path}: " if cfg.config_path else ""
    if unknown:
        raise ConfigError(f"{where}[thresholds]: unknown key(s) {', '.join(unknown)}; valid keys: {valid}")
    try:
        params = DetectParams(**cfg.thresholds)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}[thresholds]: {exc}") from exc
    # persistence is judged across acquisitions by the lifecycle, not inside one detection
    return replace(params, min_persistence=1, max_cloud=cfg.max_cloud if cfg.max_cloud is not None else params.max_cloud)


def _source(cfg: Config):
    from ..sources import get_source

    return get_source(cfg.source, **dict(cfg.source_options.get(cfg.source, {})))


def _cleanup(root: Path) -> None:
    """Remove what a killed run may have left: temporary run folders and temporary files."""
    runs = root / "runs"
    if runs.is_dir():
        for p in runs.glob(".tmp-*"):
            shutil.rmtree(p, ignore_errors=True)
    for p in root.glob(".*.tmp*"):
        p.unlink(missing_ok=True)


def _npy_chunks(composite, rows: int = 512):
    """The bytes ``np.save`` writes for ``composite`` as float32, in pieces of ``rows`` rows of one
    band: an in-memory array and a :class:`~pipeline.tiled.DiskComposite` (a tiled AOI) give the
    same bytes, and neither is converted whole."""
    B, H, W = (int(n) for n in composite.shape)
    head = io.BytesIO()
    descr = np.lib.format.dtype_to_descr(np.dtype(np.float32))
    np.lib.format.write_array_header_1_0(head, {"descr": descr, "fortran_order": False, "shape": (B, H, W)})
    yield head.getvalue()
    for b in range(B):
        for r in range(0, H, rows):
            yield np.ascontiguousarray(composite[b, r:r + rows], dtype=np.float32).tobytes()


def _save_reference(root: Path, composite) -> tuple[str, str]:
    """Write the reference composite to ``ROOT/<aoi>/reference/composite.npy`` (atomically,
    streamed) and return its path relative to ``root`` and sha256."""
    from ..outputs.atomic import atomic_path

    (root / "reference").mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with atomic_path(root / "reference" / "composite.npy") as tmp:
        with open(tmp, "xb") as fh:
            for chunk in _npy_chunks(composite):
                digest.update(chunk)
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
    return "reference/composite.npy", digest.hexdigest()


def _digest(composite) -> str:
    digest = hashlib.sha256()
    for chunk in _npy_chunks(composite):
        digest.update(chunk)
    return digest.hexdigest()


def _publish(run_dir: Path, files: dict[str, Path], root: Path) -> None:
    """Move the run's files into ``root`` one atomic rename each (hard link, else copy), manifest last."""
    names = sorted(files, key=lambda n: (n == "manifest.json", n))
    for name in names:
        src = run_dir / Path(files[name]).name
        dst = root / src.name
        tmp = root / f".{src.name}.{secrets.token_hex(4)}.tmp"
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
        _kill_point("publish")


class _Tracker:
    """Processes one AOI's new acquisitions against its reference.

    The reference is read and prepared once per run and only its composite, records and
    co-registration image are kept (:meth:`pipeline.detect.Reference.detached`). An AOI that :func:`pipeline.tiled.tile_size`
    tiles (``cfg.tile_px``) is detected tile by tile on ``tile_executor`` (default: here), in
    bounded memory: each tile prepares its share of the reference at the run's first acquisition
    and keeps it in ``ROOT/<aoi>/runs/.tmp-<run-id>-reference/`` (removed by :meth:`close`, or by
    the next run when this one dies) for the later ones.
    """

    def __init__(self, aoi, cfg: Config, state: State, source, run_id: str, *, tile_executor=None):
        from ..tiled import tile_size

        self.aoi, self.cfg, self.state, self.source, self.run_id = aoi, cfg, state, source, run_id
        self.root = cfg.output_root / aoi.id
        self.params = detect_params(cfg)
        self.grid = aoi.grid()
        self.tile_px = tile_size(self.grid.shape, cfg.tile_px)
        # an AOI the grid alone does not tile may still be, once the reference's acquisitions are
        # counted (:meth:`_plan`): one pass holds all of them
        self._planned = cfg.tile_px is not None or self.tile_px is not None
        self.tile_executor = tile_executor
        self._ref_acqs = None
        self._reference = None  # the prepared before window (pipeline.detect.Reference)

    @property
    def reference_cache(self) -> Path | None:
        """Where a tiled AOI's tiles keep their prepared reference during the run (None untiled)."""
        return self.root / "runs" / f".tmp-{self.run_id}-reference" if self.tile_px is not None else None

    def reference_acquisitions(self, period: tuple[date, date]) -> list:
        if self._ref_acqs is None:
            acqs = self.source.search(self.aoi, *period, max_cloud=self.params.max_cloud)
            if not acqs:
                raise NoDataError(
                    f"{self.aoi.id}: no acquisition in the reference period {period[0]}/{period[1]}; "
                    "set [monitor] reference to a period with imagery"
                )
            self._ref_acqs = acqs
        return self._ref_acqs

    def _plan(self, period: tuple[date, date]) -> None:
        """Tile the AOI when its reference acquisitions would take one pass over the memory
        budget (``cfg.memory_gb``; :func:`pipeline.tiled.tile_size`); decided once per run."""
        if self._planned:
            return
        from ..tiled import peak_memory, tile_size

        n = len(self.reference_acquisitions(period))
        self.tile_px = tile_size(self.grid.shape, None, dates=n, memory_gb=self.cfg.memory_gb, halo_px=self.cfg.halo_px)
        self._planned = True
        if self.tile_px is not None:
            log.info(
                "%s: %d reference acquisitions over %d x %d px: tiles of %d px (expected peak %.1f GiB)",
                self.aoi.id, n, *self.grid.shape, self.tile_px,
                peak_memory(self.grid.shape, n, tile_px=self.tile_px, halo_px=self.cfg.halo_px) / 2**30,
            )

    def detect_one(self, period, acq):
        from ..detect import _read_and_detect

        self._plan(period)
        windows = (period, (acq.date, acq.date))
        if self.tile_px is not None:
            from ..tiled import detect_tiled

            self.reference_cache.mkdir(parents=True, exist_ok=True)
            return detect_tiled(
                self.aoi, self.source, before=period, after=windows[1], params=self.params,
                tile_px=self.tile_px, halo_px=self.cfg.halo_px, executor=self.tile_executor,
                acquisitions=(self.reference_acquisitions(period), [acq]), reference_cache=self.reference_cache,
            )
        # the reference is read and prepared at the first acquisition, then reused detached
        before = self.reference_acquisitions(period) if self._reference is None else None
        result, self._reference = _read_and_detect(
            self.aoi, self.source, before, [acq], grid=self.grid, params=self.params, windows=windows,
            source_name=self.source.name, reference=self._reference,
        )
        return result

    def close(self) -> None:
        """Drop the prepared reference (and the tiles' cache folder)."""
        self._reference = None
        if self.reference_cache is not None:
            shutil.rmtree(self.reference_cache, ignore_errors=True)


def monitor_aoi(aoi_ref: Any, cfg: Config, run_id: str | None = None, *, source=None, tile_executor=None) -> AOIOutcome:
    """Run monitoring for one AOI (see the module docstring). Never raises for a failed AOI:
    the outcome says ``failed`` with the error, or ``locked`` when another run holds it.

    Parameters
    ----------
    aoi_ref : str, path or AOI
    cfg : Config
    run_id : str or None
        Shared by every AOI of one ``s2watch run`` (default: a new id).
    source : Source or None
        Default: ``get_source(cfg.source, **cfg.source_options[cfg.source])``.
    tile_executor : executor or None
        Where the tiles of an AOI that is detected in tiles run (default: here, in turn).
    """
    from ..aoi import load_aoi

    run_id = run_id or new_run_id()
    t0 = time.monotonic()
    name = str(getattr(aoi_ref, "id", aoi_ref))
    try:
        aoi = load_aoi(aoi_ref, extra_paths=cfg.aoi_paths)
        name = aoi.id
        root = cfg.output_root / aoi.id
        with AOILock(root / ".lock", aoi_id=aoi.id):
            with State(cfg.state_file) as state:
                out = _monitor_locked(aoi, cfg, state, source or _source(cfg), run_id, tile_executor)
        return replace(out, seconds=round(time.monotonic() - t0, 3))
    except LockHeldError as exc:
        log.warning("%s", exc, extra={"aoi": name})
        return AOIOutcome(name, run_id, "locked", error=str(exc), seconds=round(time.monotonic() - t0, 3))
    except Exception as exc:
        msg = str(exc) if isinstance(exc, PipelineError) else f"{type(exc).__name__}: {exc}"
        log.error("%s failed: %s", name, msg, extra={"aoi": name})
        log.debug("%s", traceback.format_exc())
        _record_failure(cfg, name, run_id, msg)
        return AOIOutcome(name, run_id, "failed", error=msg, seconds=round(time.monotonic() - t0, 3))


def _record_failure(cfg: Config, aoi_id: str, run_id: str, msg: str) -> None:
    try:
        with State(cfg.state_file) as st:
            if st.conn.execute("SELECT 1 FROM runs WHERE run_id = ? AND aoi_id = ?", (run_id, aoi_id)).fetchone():
                st.finish_run(run_id, aoi_id, status="failed", error=msg[:2000])
    except Exception:  # the state itself may be what failed
        log.debug("could not record the failure in the state", exc_info=True)


def _monitor_locked(aoi, cfg: Config, state: State, source, run_id: str, tile_executor=None) -> AOIOutcome:
    root = cfg.output_root / aoi.id
    dead = state.close_interrupted_runs(aoi.id)
    if dead:
        log.warning("%s: run(s) %s were interrupted; resuming", aoi.id, ", ".join(dead), extra={"aoi": aoi.id})
    _cleanup(root)

    row = state.aoi(aoi.id)
    if row is None:
        ref = cfg.reference_period()
        state.set_reference(aoi.id, period=(ref[0].isoformat(), ref[1].isoformat()), source=source.name, aoi_digest=aoi.digest)
        row = state.aoi(aoi.id)
    else:
        ref = (date.fromisoformat(row["reference_start"]), date.fromisoformat(row["reference_end"]))
        if cfg.reference is not None and cfg.reference != ref:
            log.warning(
                "%s: keeping the reference %s/%s held in the state (configured %s/%s applies to new AOIs only)",
                aoi.id, ref[0], ref[1], cfg.reference[0], cfg.reference[1], extra={"aoi": aoi.id},
            )
    since, until = cfg.period()
    since = max(since, ref[1] + timedelta(days=1))
    versions = _versions()

    found = source.search(aoi, since, until, max_cloud=cfg.max_cloud) if since <= until else []
    seen = state.seen(aoi.id)
    new = sorted((a for a in found if a.id not in seen), key=lambda a: (a.time, a.id))
    log.info("%s: %d acquisitions %s..%s, %d new", aoi.id, len(found), since, until, len(new), extra={"aoi": aoi.id, "stage": "search"})
    _kill_point("searched")

    last = state.last_used(aoi.id)
    stale = last is not None and row["outputs_acquisition"] != last["acq_id"]
    if not new and not stale:
        state.start_run(run_id, aoi.id, source=source.name, versions=versions)
        state.finish_run(run_id, aoi.id, status="no_new_data")
        return AOIOutcome(aoi.id, run_id, "no_new_data", open_counts=state.counts(aoi.id), aoi_name=aoi.name)

    state.start_run(run_id, aoi.id, source=source.name, versions=versions)
    tracker = _Tracker(aoi, cfg, state, source, run_id, tile_executor=tile_executor)
    try:
        last_result, last_acq = None, None
        n_used = n_skipped = 0
        with progress(log, f"{aoi.id} acquisitions", len(new), aoi=aoi.id) as bar:
            latest = state.last_used(aoi.id)
            for acq in new:
                try:
                    if latest is not None and acq.date.isoformat() < latest["date"]:
                        raise NoDataError(
                            f"arrived after the later acquisition {latest['acq_id']} was processed; "
                            "out-of-order acquisitions are not tracked"
                        )
                    result = tracker.detect_one(ref, acq)
                except (NoDataError, DataError) as exc:
                    if "before window" in str(exc) or "reference" in str(exc):
                        raise
                    with state.transaction():
                        state.record_acquisition(
                            aoi.id, acq.id, date=acq.date.isoformat(), status="skipped", reason=str(exc)[:500],
                            source=source.name, cloud_cover=acq.cloud_cover, run_id=run_id,
                        )
                    n_skipped += 1
                    bar.advance(f"{acq.date} skipped", stage="acquisition")
                    _kill_point("acquisition")
                    continue
                _check_reference(aoi, root, state, result, ref, source.name)
                rec = next((r for r in result.acquisitions if r.window == "after"), None)
                with state.transaction():
                    from ..objects.track import update_lifecycle

                    day = acq.date.isoformat()
                    # pixels this acquisition observed: an object under cloud keeps its state
                    observed = np.isfinite(result.magnitude)
                    tracked = update_lifecycle(
                        state.objects(aoi.id, open_only=True), list(result.objects),
                        date=day, confirm_after=cfg.confirm_after, valid=observed, grid=result.grid,
                    )
                    state.replace_open_objects(aoi.id, tracked, run_id=run_id)
                    state.record_observations(
                        aoi.id, [o for o in tracked if o.last_seen == day or o.status == "gone"], acq_id=acq.id, date=day
                    )
                    state.record_acquisition(
                        aoi.id, acq.id, date=acq.date.isoformat(), status="used", source=source.name,
                        cloud_cover=acq.cloud_cover, cloud_fraction=rec.cloud_fraction if rec else None,
                        valid_fraction=rec.valid_fraction if rec else None, n_objects=len(result.objects), run_id=run_id,
                    )
                    _kill_point("in-transaction")
                n_used += 1
                last_result, last_acq = result, acq
                latest = {"acq_id": acq.id, "date": acq.date.isoformat()}
                bar.advance(f"{acq.date} {len(result.objects)} objects", stage="acquisition")
                _kill_point("acquisition")

        last = state.last_used(aoi.id)
        published = None
        if last is not None and (last_result is None or last_acq.id != last["acq_id"]):
            # outputs lag the state (an earlier run died before publishing): recompute the last clear one
            acq = next((a for a in source.search(aoi, date.fromisoformat(last["date"]), date.fromisoformat(last["date"]),
                                                   max_cloud=cfg.max_cloud) if a.id == last["acq_id"]), None)
            if acq is None:
                raise NoDataError(f"{aoi.id}: acquisition {last['acq_id']} of the state is no longer in the source")
            last_result, last_acq = tracker.detect_one(ref, acq), acq
        if last_result is not None and (state.aoi(aoi.id)["outputs_acquisition"] != last_acq.id or n_used):
            published = _write_and_publish(aoi, cfg, state, last_result, last_acq, run_id)
    finally:
        tracker.close()

    fresh = state.unreported_confirmed(aoi.id)
    report = str(root / "report.html") if (root / "report.html").exists() else None
    summary = alert_summary(aoi, run_id, fresh, report=report)["changes"] if fresh else []
    with state.transaction():
        state.mark_reported(aoi.id, [o.id for o in fresh], run_id)
        state.finish_run(
            run_id, aoi.id, status="ok", n_new=len(new), n_used=n_used, n_new_confirmed=len(fresh),
            out_dir=str(published) if published else None,
        )
    if fresh:
        log.warning("%s: %d new confirmed change(s): %s", aoi.id, len(fresh), ", ".join(f"{o.cls} {o.id}" for o in fresh), extra={"aoi": aoi.id})
    return AOIOutcome(
        aoi.id, run_id, "ok", n_new=len(new), n_used=n_used, n_skipped=n_skipped, new_confirmed=tuple(summary),
        open_counts=state.counts(aoi.id), out_dir=str(root) if published else None, report=report, aoi_name=aoi.name,
    )


def _check_reference(aoi, root: Path, state: State, result, ref, source_name: str) -> None:
    row = state.aoi(aoi.id)
    if row["reference_digest"]:
        if _digest(result.before_composite) != row["reference_digest"]:
            log.warning(
                "%s: the reference composite differs from the one recorded (%s); the archive may have been "
                "reprocessed", aoi.id, row["reference_path"], extra={"aoi": aoi.id},
            )
        return
    path, digest = _save_reference(root, result.before_composite)
    used = [r.id for r in result.acquisitions if r.window == "before"]
    with state.transaction():
        state.set_reference(
            aoi.id, period=(ref[0].isoformat(), ref[1].isoformat()), source=source_name, aoi_digest=aoi.digest,
            path=path, digest=digest, acquisitions=used,
        )
        for r in result.acquisitions:
            if r.window == "before":
                state.record_acquisition(
                    aoi.id, r.id, date=r.date, status="reference", reason=r.reason, source=source_name,
                    cloud_cover=r.cloud_cover, cloud_fraction=r.cloud_fraction, valid_fraction=r.valid_fraction,
                )


def _write_and_publish(aoi, cfg: Config, state: State, result, acq, run_id: str) -> Path:
    from ..outputs import write_outputs

    root = cfg.output_root / aoi.id
    objects = [o for o in state.objects(aoi.id) if o.status in REPORTED_STATUSES]
    final = replace(result, objects=tuple(objects))
    history = state.history(aoi.id, [o.id for o in objects])
    row = state.aoi(aoi.id)
    extra = {
        "monitoring": {
            "run_id": run_id,
            "acquisition": acq.id,
            "reference": {"period": f"{row['reference_start']}/{row['reference_end']}", "composite": row["reference_path"],
                          "sha256": row["reference_digest"]},
            "confirm_after": cfg.confirm_after,
            "objects": state.counts(aoi.id),
        }
    }
    runs = root / "runs"
    tmp = runs / f".tmp-{run_id}"
    files = write_outputs(final, tmp, history=history, extra_manifest=extra)
    run_dir = runs / run_id
    os.replace(tmp, run_dir)
    _kill_point("run-folder")
    _publish(run_dir, files, root)
    _kill_point("published")
    state.set_outputs(aoi.id, acq.id)
    log.info("%s: outputs of %s published to %s", aoi.id, acq.date, root, extra={"aoi": aoi.id, "stage": "publish"})
    return root


# --------------------------------------------------------------------------------------------


def resolve_aois(cfg: Config, aois: Sequence[str] = (), *, all_aois: bool = False) -> list[str]:
    """The AOIs of a run: those given, else with ``all_aois`` the configured list or every AOI on
    the search path."""
    if aois:
        return list(dict.fromkeys(aois))
    if not all_aois:
        raise UsageError("name at least one AOI or use --all")
    if cfg.aois:
        return list(cfg.aois)
    from ..aoi import list_aois

    return [p.stem for p in list_aois(cfg.aoi_paths)]


def _tiled_aois(aois: Sequence[str], cfg: Config) -> set[str]:
    """The AOIs of ``aois`` that are detected in tiles (see :func:`pipeline.tiled.tile_size`); an
    AOI that does not load is left to :func:`monitor_aoi` to report."""
    from ..aoi import load_aoi
    from ..tiled import tile_size

    out = set()
    for name in aois:
        try:
            aoi = load_aoi(name, extra_paths=cfg.aoi_paths)
        except PipelineError:
            continue
        if tile_size(aoi.grid().shape, cfg.tile_px) is not None:
            out.add(name)
    return out


def run_monitor(aois: Sequence[str], cfg: Config, *, run_id: str | None = None, executor=None, source=None) -> RunSummary:
    """Monitor every AOI (on ``executor``, default from ``cfg.executor``), then send alerts.

    ``source`` (a Source object, serial executor only) replaces ``cfg.source``, e.g. in tests.

    On a distributed executor each AOI is one task, except an AOI detected in tiles (a large
    AOI, see ``cfg.tile_px``): this process tracks it and its tiles are the tasks, so one AOI too
    large for a worker is shared by all of them. The outputs are those of the serial run.

    Alerts go out from this process after all AOIs finished, one per AOI with new confirmed
    change and webhook, bounded in time (see :mod:`pipeline.runs.notify`); a failed alert is
    logged, never fatal.
    """
    from .executor import get_executor

    run_id = run_id or new_run_id()
    aois = list(aois)
    own = executor is None
    if own:
        executor = get_executor(cfg.executor, **({"scheduler": cfg.scheduler} if cfg.executor == "dask" else {}))
    fn = monitor_aoi
    if source is not None:
        if executor.name != "serial":
            raise UsageError("a source object can only be passed with the serial executor; name it in the configuration")
        fn = functools.partial(monitor_aoi, source=source)
    results: dict[str, Any] = {}
    try:
        tiled = _tiled_aois(aois, cfg) if executor.name != "serial" else set()
        whole = [a for a in aois if a not in tiled]
        results.update(zip(whole, executor.map(fn, whole, cfg, run_id)))
        for name in aois:
            if name in tiled:
                log.info("%s: tracked here, its tiles run on the %s executor", name, executor.name)
                results[name] = monitor_aoi(name, cfg, run_id, tile_executor=executor)
    finally:
        if own:
            executor.close()
    outcomes = []
    for name in aois:
        res = results[name]
        if isinstance(res, BaseException):
            res = AOIOutcome(str(name), run_id, "failed", error=f"{type(res).__name__}: {res}")
        outcomes.append(res)
    return RunSummary(run_id, tuple(outcomes), _send_alerts(outcomes, cfg, run_id))


def _send_alerts(outcomes: Sequence[AOIOutcome], cfg: Config, run_id: str) -> dict[str, dict[int, bool]]:
    """Post one summary per AOI with new confirmed change to every webhook, up to 8 at a time, so
    a dead webhook costs one per-URL bound (timeout x attempts + backoff), not one per AOI."""
    from concurrent.futures import ThreadPoolExecutor

    from .notify import notify

    jobs = []
    for o in outcomes:
        if o.new_confirmed:
            summary = {"aoi": o.aoi, "aoi_name": o.aoi_name, "run_id": run_id, "report": o.report, "changes": list(o.new_confirmed)}
            jobs += [(o.aoi, i, u, summary) for i, u in enumerate(cfg.notify)]
    alerts: dict[str, dict[int, bool]] = {}
    if not jobs:
        return alerts
    with ThreadPoolExecutor(max_workers=min(8, len(jobs))) as pool:
        futs = [
            (aoi, i, pool.submit(notify, u, s, fmt=cfg.notify_format, timeout_s=cfg.notify_timeout_s, retries=cfg.notify_retries))
            for aoi, i, u, s in jobs
        ]
        for aoi, i, fut in futs:
            alerts.setdefault(aoi, {})[i] = bool(fut.result())
    return alerts
