"""SQLite state: schema versioning, transactions, acquisitions, runs and tracked objects."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3

import pytest
from shapely.geometry import box

from pipeline.errors import StateError
from pipeline.objects.model import ChangeObject
from pipeline.runs.state import SCHEMA_VERSION, State


def _obj(oid: str, status: str, x0: float = 0.0, **kw) -> ChangeObject:
    return ChangeObject(
        id=oid, geometry=box(x0, 0.0, x0 + 30.0, 20.0), cls="new_structure", confidence=0.8, area_m2=600.0,
        feature=None, before="2024-03-01/2024-08-31", after="2024-09-10", evidence={"track": {"runs_seen": 1}},
        status=status, first_seen="2024-09-10", last_seen="2024-09-10", **kw,
    )


def test_new_database_gets_current_schema_in_wal_mode(tmp_path):
    st = State(tmp_path / "sub" / "state.sqlite")
    assert st.schema_version == SCHEMA_VERSION >= 1
    assert st.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in st.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"aois", "acquisitions", "runs", "objects"} <= tables
    st.close()
    # reopening does not migrate again (would fail on CREATE TABLE)
    assert State(tmp_path / "sub" / "state.sqlite").schema_version == SCHEMA_VERSION


def test_newer_schema_and_garbage_files_are_refused_clearly(tmp_path):
    p = tmp_path / "new.sqlite"
    con = sqlite3.connect(p)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    con.close()
    with pytest.raises(StateError, match=r"newer than this s2watch supports.*upgrade s2watch"):
        State(p)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StateError, match=r"junk\.sqlite: not a usable s2watch state database"):
        State(junk)


def test_transaction_rolls_back_everything_on_error(tmp_path):
    st = State(tmp_path / "s.sqlite")
    with pytest.raises(RuntimeError):
        with st.transaction():
            st.record_acquisition("a", "acq1", date="2024-09-01", status="used")
            st.save_objects("a", [_obj("a-1", "candidate")])
            raise RuntimeError("killed halfway")
    assert st.seen("a") == set()
    assert st.objects("a") == []
    with st.transaction():
        st.record_acquisition("a", "acq1", date="2024-09-01", status="used")
    assert st.seen("a") == {"acq1"}


def test_objects_round_trip_and_replace_open(tmp_path):
    st = State(tmp_path / "s.sqlite")
    a, b, g = _obj("x-1", "candidate"), _obj("x-2", "confirmed", 100.0), _obj("x-3", "gone", 200.0)
    st.save_objects("x", [a, b, g])
    got = {o.id: o for o in st.objects("x")}
    assert got["x-1"] == a and got["x-1"].geometry.equals(a.geometry)
    assert got["x-2"].evidence == {"track": {"runs_seen": 1}}
    assert [o.id for o in st.objects("x", open_only=True)] == ["x-1", "x-2"]
    # the lifecycle dropped candidate x-1 and kept x-2 as persisting
    st.replace_open_objects("x", [_obj("x-2", "persisting", 100.0)])
    assert {o.id: o.status for o in st.objects("x")} == {"x-2": "persisting", "x-3": "gone"}
    assert st.counts("x") == {"persisting": 1, "gone": 1}
    with pytest.raises(ValueError, match="lifecycle"):
        st.save_objects("x", [_obj("x-9", "detected")])


def test_acquisitions_runs_and_interrupted_runs(tmp_path):
    st = State(tmp_path / "s.sqlite")
    st.set_reference("t", period=("2024-03-01", "2024-08-31"), source="simulated", path="reference/c.npy", digest="ab", acquisitions=["r2", "r1"])
    assert st.aoi("t")["reference_acquisitions"] == ["r1", "r2"]
    st.record_acquisition("t", "a2", date="2024-09-06", status="skipped", reason="cloudy: 80% of the AOI")
    st.record_acquisition("t", "a1", date="2024-09-01", status="used", n_objects=2)
    assert [a["acq_id"] for a in st.acquisitions("t")] == ["a1", "a2"]
    assert st.last_used("t")["acq_id"] == "a1"
    st.start_run("r1", "t", source="simulated", versions={"s2watch": "0.1"})
    st.conn.execute("UPDATE runs SET pid = -1 WHERE run_id = 'r1'")  # as if left by a dead process
    assert st.close_interrupted_runs("t") == ["r1"]
    last = st.last_run("t")
    assert last["status"] == "failed" and "interrupted" in last["error"]
    st.start_run("r2", "t", source="simulated", versions={})
    st.finish_run("r2", "t", status="ok", n_new=2, n_used=1)
    assert st.last_run("t")["status"] == "ok"
    snap = st.snapshot("t")
    assert "run_id" not in snap["acquisitions"][0] and snap["aoi"]["reference_digest"] == "ab"


def _writer(path: str, aoi: str, n: int) -> None:
    st = State(path, timeout=30)
    for i in range(n):
        with st.transaction():
            st.record_acquisition(aoi, f"{aoi}-{i}", date="2024-09-01", status="used")
    st.close()


def test_concurrent_writers_from_two_processes(tmp_path):
    path = str(tmp_path / "s.sqlite")
    State(path).close()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, aoi, 40)) for aoi in ("p", "q")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    st = State(path)
    assert len(st.seen("p")) == 40 and len(st.seen("q")) == 40


def test_version_1_database_is_migrated_keeping_its_rows(tmp_path):
    from pipeline.runs.state import MIGRATIONS

    p = tmp_path / "v1.sqlite"
    con = sqlite3.connect(p)
    for sql in MIGRATIONS[1]:
        con.execute(sql)
    con.execute(
        "INSERT INTO objects (aoi_id, object_id, cls, status, first_seen, last_seen, confidence, area_m2, geometry_wkt) "
        "VALUES ('t', 't-1', 'earthworks', 'confirmed', '2024-09-01', '2024-09-06', 0.7, 900, 'POLYGON ((0 0, 1 0, 1 1, 0 0))')"
    )
    con.execute("PRAGMA user_version = 1")
    con.commit()
    con.close()
    st = State(p)
    assert st.schema_version == SCHEMA_VERSION == 2
    assert [o.id for o in st.unreported_confirmed("t")] == ["t-1"]
    st.mark_reported("t", ["t-1"], "run-a")
    st.mark_reported("t", ["t-1"], "run-b")  # the first report wins
    assert st.conn.execute("SELECT reported_run FROM objects").fetchone()[0] == "run-a"
    assert st.unreported_confirmed("t") == []
    st.record_observations("t", st.objects("t"), acq_id="a1", date="2024-09-06")
    assert st.history("t") == {"t-1": [{"date": "2024-09-06", "status": "confirmed", "confidence": 0.7, "area_m2": 900.0}]}


def test_last_run_is_the_latest_started_even_within_one_second(tmp_path, monkeypatch):
    """Run ids carry a random suffix, so two runs started in the same second must be ordered by
    when they were recorded, not by id: status reports the second one."""
    import pipeline.runs.state as state_mod

    monkeypatch.setattr(state_mod, "_now", lambda: "2026-01-01T00:00:00Z")
    st = State(tmp_path / "s.sqlite")
    st.start_run("20260101T000000Z-ffffff", "a", source="simulated", versions={})
    st.finish_run("20260101T000000Z-ffffff", "a", status="ok", n_new=3)
    st.start_run("20260101T000000Z-000000", "a", source="simulated", versions={})
    st.finish_run("20260101T000000Z-000000", "a", status="no_new_data")
    assert st.last_run("a")["status"] == "no_new_data"
    assert [r["run_id"] for r in st.runs("a")] == ["20260101T000000Z-ffffff", "20260101T000000Z-000000"]


def _open_state(path, barrier, results):
    barrier.wait()
    try:
        State(path).close()
        results.put("ok")
    except Exception as exc:  # reported to the parent, which asserts
        results.put(repr(exc))


def test_workers_opening_a_fresh_state_file_together_all_succeed(tmp_path):
    """Several processes (dask workers of a first ``run --all``) open a new state file in the same
    instant: SQLite refuses the WAL switch at once to all but one ("database is locked", without
    waiting its busy timeout), so the opening must retry instead of failing an AOI."""
    ctx = mp.get_context("fork")
    failures = []
    for trial in range(20):
        path = tmp_path / f"t{trial}" / "state.sqlite"
        path.parent.mkdir()
        barrier, results = ctx.Barrier(6), ctx.Queue()
        procs = [ctx.Process(target=_open_state, args=(path, barrier, results)) for _ in range(6)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        failures += [r for r in (results.get(timeout=10) for _ in procs) if r != "ok"]
    assert not failures, failures[:3]
