"""The monitoring state: one SQLite database (stdlib ``sqlite3``, WAL) shared by every AOI.

Tables (schema version in ``PRAGMA user_version``, upgraded by :data:`MIGRATIONS`):

``aois``
    One row per AOI: its file digest, the source, the reference period held for it, the
    reference composite in use (file path relative to ``ROOT/<aoi-id>/`` + sha256 digest) and the
    acquisition whose detection the published outputs show.
``acquisitions``
    Every acquisition seen, with ``status`` ``used`` / ``skipped`` / ``reference`` and the reason.
``runs``
    One row per run and AOI: status ``running`` / ``ok`` / ``no_new_data`` / ``failed``,
    counts, versions (JSON), error text.
``objects``
    Change objects with lifecycle ``candidate`` / ``confirmed`` / ``persisting`` / ``gone``,
    ``first_seen`` / ``last_seen`` and a stable id (geometry as WKT in the AOI grid CRS);
    ``reported_run`` (schema 2) is the run that first reported it as confirmed.
``observations`` (schema 2)
    Each object's status, confidence and area at every clear acquisition it was tracked at.

Every change is made inside :meth:`State.transaction` (``BEGIN IMMEDIATE`` ... ``COMMIT``), so a
process killed at any point leaves either the old or the new state, never a mix.
"""

from __future__ import annotations

import json
import logging
import os
import random
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from shapely import wkt

from ..errors import StateError
from ..objects.model import ChangeObject

log = logging.getLogger(__name__)

__all__ = ["State", "SCHEMA_VERSION", "MIGRATIONS", "OPEN_STATUSES", "LIFECYCLE"]

LIFECYCLE = ("candidate", "confirmed", "persisting", "gone")
OPEN_STATUSES = ("candidate", "confirmed", "persisting")
RUN_STATUSES = ("running", "ok", "no_new_data", "failed")

MIGRATIONS: dict[int, list[str]] = {
    1: [
        """CREATE TABLE aois (
            aoi_id TEXT PRIMARY KEY,
            aoi_digest TEXT NOT NULL DEFAULT '',
            source TEXT NOT NULL DEFAULT '',
            reference_start TEXT NOT NULL,
            reference_end TEXT NOT NULL,
            reference_path TEXT,
            reference_digest TEXT,
            reference_acquisitions TEXT NOT NULL DEFAULT '[]',
            outputs_acquisition TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
        """CREATE TABLE acquisitions (
            aoi_id TEXT NOT NULL,
            acq_id TEXT NOT NULL,
            date TEXT NOT NULL,
            source TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL CHECK (status IN ('used', 'skipped', 'reference')),
            reason TEXT NOT NULL DEFAULT '',
            cloud_cover REAL,
            cloud_fraction REAL,
            valid_fraction REAL,
            n_objects INTEGER NOT NULL DEFAULT 0,
            run_id TEXT,
            PRIMARY KEY (aoi_id, acq_id)
        )""",
        "CREATE INDEX acquisitions_date ON acquisitions (aoi_id, date)",
        """CREATE TABLE runs (
            run_id TEXT NOT NULL,
            aoi_id TEXT NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL CHECK (status IN ('running', 'ok', 'no_new_data', 'failed')),
            source TEXT NOT NULL DEFAULT '',
            pid INTEGER,
            n_new INTEGER NOT NULL DEFAULT 0,
            n_used INTEGER NOT NULL DEFAULT 0,
            n_new_confirmed INTEGER NOT NULL DEFAULT 0,
            versions TEXT NOT NULL DEFAULT '{}',
            error TEXT NOT NULL DEFAULT '',
            out_dir TEXT,
            PRIMARY KEY (run_id, aoi_id)
        )""",
        "CREATE INDEX runs_aoi ON runs (aoi_id, started_at)",
        """CREATE TABLE objects (
            aoi_id TEXT NOT NULL,
            object_id TEXT NOT NULL,
            cls TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('candidate', 'confirmed', 'persisting', 'gone')),
            first_seen TEXT,
            last_seen TEXT,
            confidence REAL NOT NULL,
            area_m2 REAL NOT NULL,
            feature TEXT,
            before TEXT NOT NULL DEFAULT '',
            after TEXT NOT NULL DEFAULT '',
            geometry_wkt TEXT NOT NULL,
            evidence TEXT NOT NULL DEFAULT '{}',
            run_id TEXT,
            PRIMARY KEY (aoi_id, object_id)
        )""",
    ],
    2: [
        # which run first reported an object as confirmed (alerts and --fail-on-change fire once)
        "ALTER TABLE objects ADD COLUMN reported_run TEXT",
        # one row per object and clear acquisition it was tracked at: the report's history
        """CREATE TABLE observations (
            aoi_id TEXT NOT NULL,
            object_id TEXT NOT NULL,
            date TEXT NOT NULL,
            acq_id TEXT NOT NULL,
            status TEXT NOT NULL,
            confidence REAL NOT NULL,
            area_m2 REAL NOT NULL,
            PRIMARY KEY (aoi_id, object_id, acq_id)
        )""",
    ],
}
"""Schema version -> SQL statements that bring the previous version to it."""

SCHEMA_VERSION = max(MIGRATIONS)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class State:
    """The state database of one output root.

    Parameters
    ----------
    path : path
        The SQLite file (created with its folder when missing).
    timeout : float
        Seconds to wait for another writer (``busy_timeout``).

    Raises
    ------
    StateError
        When the file is not a database, or was written by a newer s2watch.
    """

    def __init__(self, path: str | os.PathLike, *, timeout: float = 60.0):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None, check_same_thread=False)
            self.conn.row_factory = sqlite3.Row
            self._open(timeout)
        except sqlite3.DatabaseError as exc:
            raise StateError(
                f"{self.path}: not a usable s2watch state database ({exc}); move it away to start afresh"
            ) from exc

    def _open(self, timeout: float) -> None:
        """WAL mode, settings and schema, retried while another process holds the file.

        Switching a new database to WAL takes an exclusive lock, and SQLite answers "database is
        locked" at once, without waiting ``busy_timeout``, when two connections escalate together
        (several workers opening a fresh state file in the same instant: 3 in 30 trials of six
        processes). So the opening is retried, with a short jittered pause, for up to ``timeout``.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=NORMAL")
                self.conn.execute("PRAGMA foreign_keys=ON")
                self._migrate()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                time.sleep(0.02 + 0.08 * random.random())

    # -- plumbing ----------------------------------------------------------------------------

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StateError(
                f"{self.path}: state schema version {version} is newer than this s2watch supports "
                f"({SCHEMA_VERSION}); upgrade s2watch"
            )
        if version == SCHEMA_VERSION:
            return
        with self.transaction():
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]  # re-read under the lock
            for v in range(version + 1, SCHEMA_VERSION + 1):
                for sql in MIGRATIONS[v]:
                    self.conn.execute(sql)
                self.conn.execute(f"PRAGMA user_version = {int(v)}")
                log.debug("state %s migrated to schema %d", self.path, v)

    @property
    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error); nests as a no-op."""
        if self.conn.in_transaction:
            yield self.conn
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "State":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- AOIs and reference ------------------------------------------------------------------

    def aoi(self, aoi_id: str) -> dict | None:
        """The AOI row as a dict (``reference_acquisitions`` decoded), or None before its first run."""
        row = self.conn.execute("SELECT * FROM aois WHERE aoi_id = ?", (aoi_id,)).fetchone()
        if row is None:
            return None
        d = dict(row)
        d["reference_acquisitions"] = json.loads(d["reference_acquisitions"] or "[]")
        return d

    def aoi_ids(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT aoi_id FROM aois ORDER BY aoi_id")]

    def set_reference(
        self,
        aoi_id: str,
        *,
        period: tuple[str, str],
        source: str,
        aoi_digest: str = "",
        path: str | None = None,
        digest: str | None = None,
        acquisitions: Iterable[str] = (),
    ) -> None:
        """Create or update the AOI row with its reference period and composite (path + sha256)."""
        now = _now()
        with self.transaction():
            self.conn.execute(
                """INSERT INTO aois (aoi_id, aoi_digest, source, reference_start, reference_end, reference_path,
                       reference_digest, reference_acquisitions, created_at, updated_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (aoi_id) DO UPDATE SET aoi_digest = excluded.aoi_digest, source = excluded.source,
                       reference_start = excluded.reference_start, reference_end = excluded.reference_end,
                       reference_path = excluded.reference_path, reference_digest = excluded.reference_digest,
                       reference_acquisitions = excluded.reference_acquisitions, updated_at = excluded.updated_at""",
                (aoi_id, aoi_digest, source, str(period[0]), str(period[1]), path, digest,
                 json.dumps(sorted(acquisitions)), now, now),
            )

    def set_outputs(self, aoi_id: str, acquisition_id: str | None) -> None:
        """Record which acquisition's detection the published outputs of ``aoi_id`` show."""
        with self.transaction():
            self.conn.execute(
                "UPDATE aois SET outputs_acquisition = ?, updated_at = ? WHERE aoi_id = ?", (acquisition_id, _now(), aoi_id)
            )

    # -- acquisitions ------------------------------------------------------------------------

    def seen(self, aoi_id: str) -> set[str]:
        """Ids of the acquisitions already recorded (used, skipped or reference) for ``aoi_id``."""
        return {r[0] for r in self.conn.execute("SELECT acq_id FROM acquisitions WHERE aoi_id = ?", (aoi_id,))}

    def record_acquisition(
        self,
        aoi_id: str,
        acq_id: str,
        *,
        date: str,
        status: str,
        reason: str = "",
        source: str = "",
        cloud_cover: float | None = None,
        cloud_fraction: float | None = None,
        valid_fraction: float | None = None,
        n_objects: int = 0,
        run_id: str | None = None,
    ) -> None:
        if status not in ("used", "skipped", "reference"):
            raise ValueError(f"acquisition status {status!r}; use used, skipped or reference")
        with self.transaction():
            self.conn.execute(
                """INSERT OR REPLACE INTO acquisitions (aoi_id, acq_id, date, source, status, reason, cloud_cover,
                       cloud_fraction, valid_fraction, n_objects, run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (aoi_id, acq_id, date, source, status, reason, cloud_cover, cloud_fraction, valid_fraction, n_objects, run_id),
            )

    def acquisitions(self, aoi_id: str, *, status: str | None = None) -> list[dict]:
        """Recorded acquisitions of ``aoi_id`` by date (optionally of one status)."""
        q = "SELECT * FROM acquisitions WHERE aoi_id = ?" + (" AND status = ?" if status else "") + " ORDER BY date, acq_id"
        return [dict(r) for r in self.conn.execute(q, (aoi_id, status) if status else (aoi_id,))]

    def last_used(self, aoi_id: str) -> dict | None:
        """The latest acquisition used for detection, or None."""
        row = self.conn.execute(
            "SELECT * FROM acquisitions WHERE aoi_id = ? AND status = 'used' ORDER BY date DESC, acq_id DESC LIMIT 1",
            (aoi_id,),
        ).fetchone()
        return dict(row) if row else None

    # -- runs --------------------------------------------------------------------------------

    def start_run(self, run_id: str, aoi_id: str, *, source: str, versions: dict, out_dir: str | None = None) -> None:
        with self.transaction():
            self.conn.execute(
                """INSERT INTO runs (run_id, aoi_id, started_at, status, source, pid, versions, out_dir)
                   VALUES (?, ?, ?, 'running', ?, ?, ?, ?)""",
                (run_id, aoi_id, _now(), source, os.getpid(), json.dumps(versions, sort_keys=True), out_dir),
            )

    def finish_run(
        self,
        run_id: str,
        aoi_id: str,
        *,
        status: str,
        n_new: int = 0,
        n_used: int = 0,
        n_new_confirmed: int = 0,
        error: str = "",
        out_dir: str | None = None,
    ) -> None:
        if status not in RUN_STATUSES:
            raise ValueError(f"run status {status!r}; use one of {', '.join(RUN_STATUSES)}")
        with self.transaction():
            self.conn.execute(
                """UPDATE runs SET finished_at = ?, status = ?, n_new = ?, n_used = ?, n_new_confirmed = ?, error = ?,
                       out_dir = COALESCE(?, out_dir) WHERE run_id = ? AND aoi_id = ?""",
                (_now(), status, n_new, n_used, n_new_confirmed, error, out_dir, run_id, aoi_id),
            )

    def close_interrupted_runs(self, aoi_id: str) -> list[str]:
        """Mark runs of ``aoi_id`` left ``running`` by a killed process as ``failed``; call under the AOI lock."""
        with self.transaction():
            ids = [
                r[0]
                for r in self.conn.execute(
                    "SELECT run_id FROM runs WHERE aoi_id = ? AND status = 'running' AND pid != ?", (aoi_id, os.getpid())
                )
            ]
            for rid in ids:
                self.conn.execute(
                    "UPDATE runs SET status = 'failed', error = 'interrupted (process ended before the run finished)', "
                    "finished_at = ? WHERE run_id = ? AND aoi_id = ?",
                    (_now(), rid, aoi_id),
                )
        return ids

    def runs(self, aoi_id: str | None = None) -> list[dict]:
        q = "SELECT * FROM runs" + (" WHERE aoi_id = ?" if aoi_id else "") + " ORDER BY started_at, rowid"
        return [dict(r) for r in self.conn.execute(q, (aoi_id,) if aoi_id else ())]

    def last_run(self, aoi_id: str) -> dict | None:
        row = self.conn.execute(
            "SELECT * FROM runs WHERE aoi_id = ? ORDER BY started_at DESC, rowid DESC LIMIT 1", (aoi_id,)
        ).fetchone()
        return dict(row) if row else None

    # -- change objects ----------------------------------------------------------------------

    def objects(self, aoi_id: str, *, open_only: bool = False) -> list[ChangeObject]:
        """Tracked objects of ``aoi_id`` (``open_only``: not ``gone``), ordered by id."""
        q = "SELECT * FROM objects WHERE aoi_id = ?"
        if open_only:
            q += " AND status != 'gone'"
        q += " ORDER BY object_id"
        return [_row_to_object(r) for r in self.conn.execute(q, (aoi_id,))]

    def save_objects(self, aoi_id: str, objects: Iterable[ChangeObject], *, run_id: str | None = None) -> None:
        """Upsert tracked objects (by id); objects not given keep their rows."""
        rows = []
        for o in objects:
            if o.status not in LIFECYCLE:
                raise ValueError(f"object {o.id}: status {o.status!r} is not a lifecycle status ({', '.join(LIFECYCLE)})")
            rows.append(
                (aoi_id, o.id, o.cls, o.status, o.first_seen, o.last_seen, float(o.confidence), float(o.area_m2),
                 o.feature, o.before, o.after, o.geometry.wkt, json.dumps(o.evidence, sort_keys=True, default=str), run_id)
            )
        with self.transaction():
            self.conn.executemany(
                """INSERT INTO objects (aoi_id, object_id, cls, status, first_seen, last_seen, confidence,
                       area_m2, feature, before, after, geometry_wkt, evidence, run_id)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (aoi_id, object_id) DO UPDATE SET cls = excluded.cls, status = excluded.status,
                       first_seen = excluded.first_seen, last_seen = excluded.last_seen,
                       confidence = excluded.confidence, area_m2 = excluded.area_m2, feature = excluded.feature,
                       before = excluded.before, after = excluded.after, geometry_wkt = excluded.geometry_wkt,
                       evidence = excluded.evidence, run_id = excluded.run_id""",
                rows,
            )

    def replace_open_objects(self, aoi_id: str, objects: Iterable[ChangeObject], *, run_id: str | None = None) -> None:
        """Make ``objects`` the tracked set of ``aoi_id``: upsert them and delete open (not ``gone``)
        rows they no longer contain (transient candidates dropped by the lifecycle)."""
        objects = list(objects)
        keep = {o.id for o in objects}
        with self.transaction():
            for (oid,) in self.conn.execute(
                "SELECT object_id FROM objects WHERE aoi_id = ? AND status != 'gone'", (aoi_id,)
            ).fetchall():
                if oid not in keep:
                    self.conn.execute("DELETE FROM objects WHERE aoi_id = ? AND object_id = ?", (aoi_id, oid))
            self.save_objects(aoi_id, objects, run_id=run_id)

    def record_observations(self, aoi_id: str, objects: Iterable[ChangeObject], *, acq_id: str, date: str) -> None:
        """Record each object's status, confidence and area at one clear acquisition."""
        with self.transaction():
            self.conn.executemany(
                "INSERT OR REPLACE INTO observations VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(aoi_id, o.id, date, acq_id, o.status, float(o.confidence), float(o.area_m2)) for o in objects],
            )

    def history(self, aoi_id: str, object_ids: Iterable[str] | None = None) -> dict[str, list[dict]]:
        """``{object_id: [{"date", "status", "confidence", "area_m2"}, ...]}`` by date (the report's history)."""
        want = set(object_ids) if object_ids is not None else None
        out: dict[str, list[dict]] = {}
        for r in self.conn.execute(
            "SELECT object_id, date, status, confidence, area_m2 FROM observations WHERE aoi_id = ? ORDER BY object_id, date, acq_id",
            (aoi_id,),
        ):
            if want is None or r[0] in want:
                out.setdefault(r[0], []).append({"date": r[1], "status": r[2], "confidence": r[3], "area_m2": r[4]})
        return out

    def unreported_confirmed(self, aoi_id: str) -> list[ChangeObject]:
        """Confirmed or persisting objects no run has reported yet."""
        q = ("SELECT * FROM objects WHERE aoi_id = ? AND status IN ('confirmed', 'persisting') AND reported_run IS NULL "
             "ORDER BY object_id")
        return [_row_to_object(r) for r in self.conn.execute(q, (aoi_id,))]

    def mark_reported(self, aoi_id: str, object_ids: Iterable[str], run_id: str) -> None:
        with self.transaction():
            self.conn.executemany(
                "UPDATE objects SET reported_run = ? WHERE aoi_id = ? AND object_id = ? AND reported_run IS NULL",
                [(run_id, aoi_id, oid) for oid in object_ids],
            )

    def counts(self, aoi_id: str) -> dict[str, int]:
        """Number of objects of ``aoi_id`` per lifecycle status."""
        return {
            r[0]: r[1]
            for r in self.conn.execute("SELECT status, COUNT(*) FROM objects WHERE aoi_id = ? GROUP BY status", (aoi_id,))
        }

    def snapshot(self, aoi_id: str) -> dict:
        """The state of ``aoi_id`` without run ids and timestamps: what two equivalent histories share."""
        aoi = self.aoi(aoi_id) or {}
        keep = ("aoi_digest", "source", "reference_start", "reference_end", "reference_path", "reference_digest",
                "reference_acquisitions", "outputs_acquisition")
        acqs = [{k: v for k, v in a.items() if k != "run_id"} for a in self.acquisitions(aoi_id)]
        objs = [
            {**{k: v for k, v in dict(r).items() if k not in ("run_id", "reported_run")}, "reported": r["reported_run"] is not None}
            for r in self.conn.execute("SELECT * FROM objects WHERE aoi_id = ? ORDER BY object_id", (aoi_id,))
        ]
        return {"aoi": {k: aoi.get(k) for k in keep}, "acquisitions": acqs, "objects": objs, "history": self.history(aoi_id)}


def _row_to_object(r: sqlite3.Row) -> ChangeObject:
    return ChangeObject(
        id=r["object_id"],
        geometry=wkt.loads(r["geometry_wkt"]),
        cls=r["cls"],
        confidence=float(r["confidence"]),
        area_m2=float(r["area_m2"]),
        feature=r["feature"],
        before=r["before"],
        after=r["after"],
        evidence=json.loads(r["evidence"] or "{}"),
        status=r["status"],
        first_seen=r["first_seen"],
        last_seen=r["last_seen"],
    )
