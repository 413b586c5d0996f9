"""Monitoring semantics on a planted source (see planted.py for what is planted where and when).

Detection runs with ``normalise = false`` and ``coregister = false`` (the planted scenes are
perfectly aligned and calibrated; IR-MAD alone costs seconds per acquisition on a busy machine):
what is tested here is the monitoring around the detector.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from pipeline.aoi import load_aoi
from pipeline.config import Config
from pipeline.runs.lock import AOILock
from pipeline.tiled import plan_tiles
from pipeline.runs.monitor import run_monitor
from pipeline.runs.state import State
from planted import CLOUDY_DATE, STRUCTURE, STRUCTURE_FROM, TRANSIENT, TRANSIENT_DATE, PlantedSource

AOI = "tartus-naval-facility"
FAST = {"normalise": False, "coregister": False}


def make_cfg(root: Path, until: date, **kw) -> Config:
    return Config(
        output_root=root, since=date(2024, 9, 1), until=until, reference=(date(2024, 3, 1), date(2024, 8, 31)),
        thresholds=FAST, **kw,
    )


def tree_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` except the lock."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"
    }


def _rect_centre(sl, grid):
    x, y = grid.xy((sl[0].start + sl[0].stop - 1) / 2, (sl[1].start + sl[1].stop - 1) / 2)
    return float(x), float(y)


@pytest.fixture(scope="module")
def incremental(tmp_path_factory):
    """Two runs: up to 2024-09-25 (structure seen once), then up to 2024-10-10, then a rerun."""
    root = tmp_path_factory.mktemp("incremental")
    src = PlantedSource()
    s1 = run_monitor([AOI], make_cfg(root, date(2024, 9, 25)), source=src)
    with State(root / "state.sqlite") as st:
        after1 = {"objects": st.objects(AOI), "acqs": st.acquisitions(AOI),
                  "geojson": json.loads((root / AOI / "changes.geojson").read_text())}
    s2 = run_monitor([AOI], make_cfg(root, date(2024, 10, 10)), source=src)
    digest2 = tree_digest(root / AOI)
    reads2 = src.reads
    s3 = run_monitor([AOI], make_cfg(root, date(2024, 10, 10)), source=src)
    return dict(root=root, src=src, s1=s1, s2=s2, s3=s3, after1=after1, digest2=digest2, reads2=reads2)


def test_first_run_records_every_acquisition_and_why(incremental):
    o = incremental["s1"].outcomes[0]
    assert (o.status, o.n_new, o.n_used, o.n_skipped) == ("ok", 5, 4, 1)
    acqs = {a["date"]: a for a in incremental["after1"]["acqs"]}
    assert acqs[CLOUDY_DATE.isoformat()]["status"] == "skipped"
    assert "cloudy" in acqs[CLOUDY_DATE.isoformat()]["reason"]
    assert sum(a["status"] == "reference" for a in acqs.values()) == 13
    assert sum(a["status"] == "used" for a in acqs.values()) == 4


def test_one_date_change_is_never_reported_and_a_first_sighting_is_only_a_candidate(incremental):
    o = incremental["s1"].outcomes[0]
    assert o.new_confirmed == ()
    objs = incremental["after1"]["objects"]
    # the vessel of TRANSIENT_DATE was dropped when the next clear acquisition did not show it;
    # the structure seen once (STRUCTURE_FROM) is a candidate, not reported
    assert [(ob.status, ob.first_seen) for ob in objs] == [("candidate", STRUCTURE_FROM.isoformat())]
    assert incremental["after1"]["geojson"]["features"] == []
    with State(incremental["root"] / "state.sqlite") as st:
        hist = st.history(AOI)
    transient_ids = [oid for oid, h in hist.items() if h[0]["date"] == TRANSIENT_DATE.isoformat()]
    assert len(transient_ids) == 1 and len(hist[transient_ids[0]]) == 1  # seen once, as a candidate
    assert all(ob.id != transient_ids[0] for ob in st_objects(incremental))


def st_objects(inc):
    with State(inc["root"] / "state.sqlite") as st:
        return st.objects(AOI)


def test_persistent_change_is_confirmed_on_second_clear_sighting_with_a_stable_id(incremental):
    o = incremental["s2"].outcomes[0]
    assert (o.status, o.n_new, o.n_used, o.n_skipped) == ("ok", 3, 3, 0)
    cand = incremental["after1"]["objects"][0]
    assert [c["id"] for c in o.new_confirmed] == [cand.id]  # same id as the candidate of run 1
    ch = o.new_confirmed[0]
    assert ch["first_seen"] == STRUCTURE_FROM.isoformat() and ch["last_seen"] == "2024-10-08"
    objs = st_objects(incremental)
    assert [(ob.id, ob.status) for ob in objs] == [(cand.id, "persisting")]
    # the object sits on the planted roof (oracle: the rectangle's centre from the grid transform)
    grid = load_aoi(AOI).grid()
    cx, cy = _rect_centre(STRUCTURE, grid)
    c = objs[0].geometry.centroid
    assert abs(c.x - cx) <= 15 and abs(c.y - cy) <= 15
    assert objs[0].area_m2 == pytest.approx(12 * 12 * 100, rel=0.35)
    with State(incremental["root"] / "state.sqlite") as st:
        statuses = [h["status"] for h in st.history(AOI)[cand.id]]
    assert statuses == ["candidate", "confirmed", "persisting", "persisting"]


def test_outputs_show_tracked_objects_with_history_and_a_run_folder(incremental):
    out = incremental["root"] / AOI
    geo = json.loads((out / "changes.geojson").read_text())
    assert len(geo["features"]) == 1
    props = geo["features"][0]["properties"]
    assert props["status"] == "persisting" and props["first_seen"] == STRUCTURE_FROM.isoformat()
    man = json.loads((out / "manifest.json").read_text())
    assert man["monitoring"]["acquisition"] == "PLANTED_20241008"
    assert man["after"] == "2024-10-08/2024-10-08"
    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert runs == sorted([incremental["s1"].run_id, incremental["s2"].run_id])
    for name, meta in man["outputs"].items():  # the published files are those of the last run folder
        assert hashlib.sha256((out / meta["file"]).read_bytes()).hexdigest() == meta["sha256"]
        assert (out / "runs" / incremental["s2"].run_id / meta["file"]).read_bytes() == (out / meta["file"]).read_bytes()
    with State(incremental["root"] / "state.sqlite") as st:
        row = st.aoi(AOI)
    ref = np.load(out / row["reference_path"])
    assert ref.shape == (7, 155, 154) and hashlib.sha256((out / row["reference_path"]).read_bytes()).hexdigest() == row["reference_digest"]


def test_rerun_without_new_acquisitions_does_no_image_work_and_changes_no_output(incremental):
    o = incremental["s3"].outcomes[0]
    assert (o.status, o.n_new, o.new_confirmed) == ("no_new_data", 0, ())
    assert incremental["src"].reads == incremental["reads2"]
    assert tree_digest(incremental["root"] / AOI) == incremental["digest2"]
    assert incremental["s3"].exit_code(fail_on_change=True) == 0  # already reported by run 2


def test_one_long_run_ends_in_the_same_state_as_incremental_runs(incremental, tmp_path):
    run_monitor([AOI], make_cfg(tmp_path, date(2024, 10, 10)), source=PlantedSource())
    with State(tmp_path / "state.sqlite") as a, State(incremental["root"] / "state.sqlite") as b:
        assert a.snapshot(AOI) == b.snapshot(AOI)


def test_failed_aoi_does_not_stop_the_others_and_exit_codes(tmp_path, caplog):
    bad = tmp_path / "broken.geojson"
    bad.write_text('{"type": "FeatureCollection", "features": []}')
    s = run_monitor([str(bad), AOI], make_cfg(tmp_path, date(2024, 9, 25)), source=PlantedSource())
    st = {o.aoi: o for o in s.outcomes}
    assert st[str(bad)].status == "failed" and "no features" in st[str(bad)].error
    assert st[AOI].status == "ok" and (tmp_path / AOI / "manifest.json").is_file()
    assert s.exit_code() == 1


def test_locked_aoi_is_skipped_with_exit_75(tmp_path):
    with AOILock(tmp_path / AOI / ".lock", aoi_id=AOI):
        s = run_monitor([AOI], make_cfg(tmp_path, date(2024, 9, 25)), source=PlantedSource())
    assert s.outcomes[0].status == "locked" and "being processed by pid" in s.outcomes[0].error
    assert s.exit_code() == 75
    assert not (tmp_path / AOI / "manifest.json").exists()


def test_reference_is_held_in_the_state(tmp_path, caplog):
    run_monitor([AOI], make_cfg(tmp_path, date(2024, 9, 5)), source=PlantedSource())
    cfg = make_cfg(tmp_path, date(2024, 9, 10))
    cfg2 = Config(**{**cfg.__dict__, "reference": (date(2024, 5, 1), date(2024, 8, 31))})
    caplog.set_level(logging.WARNING, logger="pipeline")
    run_monitor([AOI], cfg2, source=PlantedSource())
    with State(tmp_path / "state.sqlite") as st:
        row = st.aoi(AOI)
    assert (row["reference_start"], row["reference_end"]) == ("2024-03-01", "2024-08-31")
    assert "keeping the reference 2024-03-01/2024-08-31 held in the state" in caplog.text


@pytest.mark.network_local
def test_new_confirmed_change_is_posted_once_and_fails_on_change(tmp_path):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    bodies = []

    class H(BaseHTTPRequestHandler):
        def do_POST(self):
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/hook"
    try:
        cfg = make_cfg(tmp_path, date(2024, 10, 10), notify=(url,), fail_on_change=True)
        s1 = run_monitor([AOI], cfg, source=PlantedSource())
        s2 = run_monitor([AOI], cfg, source=PlantedSource())
    finally:
        srv.shutdown()
        srv.server_close()
    assert s1.exit_code(fail_on_change=True) == 3 and s1.alerts == {AOI: {0: True}}
    assert s2.exit_code(fail_on_change=True) == 0 and s2.alerts == {}
    (body,) = bodies
    (change,) = body["changes"]
    assert body["aoi"] == AOI and body["run_id"] == s1.run_id and change["first_seen"] == STRUCTURE_FROM.isoformat()
    grid = load_aoi(AOI).grid()
    lon, lat = grid.lonlat(*[np.array([(s.start + s.stop - 1) / 2]) for s in STRUCTURE])
    assert change["lon"] == pytest.approx(float(lon[0]), abs=2e-4) and change["lat"] == pytest.approx(float(lat[0]), abs=2e-4)


def test_alerts_to_a_dead_webhook_are_sent_in_parallel_and_never_fatal(tmp_path):
    import socket
    import time

    from pipeline.runs.monitor import AOIOutcome, _send_alerts

    with socket.socket() as s:  # accepts connections (backlog) but never answers
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        url = f"http://127.0.0.1:{s.getsockname()[1]}/hook"
        change = {"id": "x", "class": "earthworks", "status": "confirmed", "confidence": 0.9, "area_m2": 1000.0,
                  "feature": None, "first_seen": "2024-09-01", "last_seen": "2024-09-06", "lon": 35.0, "lat": 34.0}
        outcomes = [AOIOutcome(f"aoi-{i}", "r", "ok", new_confirmed=(change,)) for i in range(6)]
        outcomes.append(AOIOutcome("quiet", "r", "ok"))
        cfg = Config(output_root=tmp_path, notify=(url,), notify_timeout_s=0.5, notify_retries=0)
        t0 = time.monotonic()
        alerts = _send_alerts(outcomes, cfg, "r")
        took = time.monotonic() - t0
    assert alerts == {f"aoi-{i}": {0: False} for i in range(6)}
    assert took < 6 * 0.5  # concurrent, not one timeout after another


def test_confirmed_change_that_disappears_is_gone_and_stays_in_the_outputs(tmp_path):
    src = PlantedSource(structure_until=date(2024, 9, 28))  # demolished before 10-03
    run_monitor([AOI], make_cfg(tmp_path, date(2024, 10, 10)), source=src)
    with State(tmp_path / "state.sqlite") as st:
        (obj,) = st.objects(AOI)
        hist = [h["status"] for h in st.history(AOI)[obj.id]]
    assert (obj.status, obj.first_seen, obj.last_seen) == ("gone", STRUCTURE_FROM.isoformat(), "2024-09-28")
    assert hist == ["candidate", "confirmed", "gone"]
    geo = json.loads((tmp_path / AOI / "changes.geojson").read_text())
    assert [(f["properties"]["id"], f["properties"]["status"]) for f in geo["features"]] == [(obj.id, "gone")]


def test_a_candidate_under_cloud_keeps_its_state_until_seen_again(tmp_path):
    src = PlantedSource(cloud_over_structure=(date(2024, 9, 28),))
    s = run_monitor([AOI], make_cfg(tmp_path, date(2024, 10, 10)), source=src)
    with State(tmp_path / "state.sqlite") as st:
        (obj,) = st.objects(AOI)
        hist = [(h["date"], h["status"]) for h in st.history(AOI)[obj.id]]
        acq = {a["date"]: a["status"] for a in st.acquisitions(AOI)}
    assert acq["2024-09-28"] == "used"  # mostly clear, so used; only the roof was hidden
    assert obj.first_seen == STRUCTURE_FROM.isoformat()  # not dropped and re-found on 10-03
    assert hist == [("2024-09-23", "candidate"), ("2024-10-03", "confirmed"), ("2024-10-08", "persisting")]
    assert [c["id"] for c in s.outcomes[0].new_confirmed] == [obj.id]


def _square_aoi(folder: Path, km: float = 5.2) -> Path:
    """A square AOI of ``km`` x ``km`` near Tartus (a grid of about 520 x 520 px)."""
    lon0, lat0 = 35.84, 34.88
    dlat, dlon = km / 111.0, km / (111.32 * np.cos(np.radians(lat0)))
    ring = [[lon0, lat0], [lon0 + dlon, lat0], [lon0 + dlon, lat0 + dlat], [lon0, lat0 + dlat], [lon0, lat0]]
    path = folder / "square.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"role": "aoi", "id": "square", "kind": "port"},
         "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))
    return path


def test_a_tiled_aoi_tracks_like_one_pass_and_prepares_each_tile_reference_once(tmp_path):
    """``tile_px``: the AOI is detected tile by tile (bounded memory); the tracked objects, their
    lifecycle and the outputs' objects are those of the one-pass run, and each tile reads its
    reference acquisitions once per run (kept in a run folder that is removed afterwards), not once
    per new acquisition."""
    aoi = _square_aoi(tmp_path)
    H, W = load_aoi(aoi).grid().shape
    assert H > 256 and W > 256
    runs = {}
    for name, tile_px in (("one", 0), ("tiled", 256)):
        src = PlantedSource()
        cfg = make_cfg(tmp_path / name, date(2024, 10, 10), tile_px=tile_px, halo_px=32)
        s = run_monitor([str(aoi)], cfg, source=src)
        assert s.outcomes[0].status == "ok", s.outcomes[0].error
        with State(cfg.state_file) as st:
            runs[name] = (s.outcomes[0], st.snapshot("square"), src.reads, cfg.output_root / "square")
    (one, snap1, reads1, out1), (tl, snap2, reads2, out2) = runs["one"], runs["tiled"]
    assert (one.n_used, one.n_skipped) == (tl.n_used, tl.n_skipped) == (7, 1)
    assert [c["id"] for c in tl.new_confirmed] == [c["id"] for c in one.new_confirmed] and len(one.new_confirmed) == 1
    assert snap2["objects"] == snap1["objects"] and snap2["history"] == snap1["history"]
    n_tiles = len(plan_tiles((H, W), 256, 32))
    assert n_tiles >= 4
    assert reads1 == 13 + 8
    assert reads2 == n_tiles * (13 + 8)  # each tile: the reference once, then each new acquisition
    man = json.loads((out2 / "manifest.json").read_text())
    assert man["parameters"]["tiling"]["n_tiles"] == n_tiles and "tiling" not in json.loads((out1 / "manifest.json").read_text())["parameters"]
    f1 = json.loads((out1 / "changes.geojson").read_text())["features"]
    f2 = json.loads((out2 / "changes.geojson").read_text())["features"]
    assert [f["properties"]["id"] for f in f2] == [f["properties"]["id"] for f in f1]
    assert not list((out2 / "runs").glob(".tmp-*"))  # the tiles' reference cache is gone
    ref1, ref2 = np.load(out1 / "reference" / "composite.npy"), np.load(out2 / "reference" / "composite.npy")
    assert ref2.shape == ref1.shape == (7, H, W)
    assert np.nanmax(np.abs(ref2 - ref1)) <= 5e-5  # the tiled composite is stored as DN


def test_an_aoi_whose_reference_exceeds_the_memory_budget_is_tiled(tmp_path):
    """Without ``tile_px``, the reference's acquisitions are counted first: one pass over them
    above ``memory_gb`` tiles the AOI (the largest tile that fits), which then tracks exactly what
    the same tiles asked for by ``tile_px`` track."""
    from pipeline.tiled import peak_memory, tile_size

    aoi = _square_aoi(tmp_path)
    shape = load_aoi(aoi).grid().shape
    n_ref = 13  # PlantedSource's acquisitions in the reference period
    budget = peak_memory(shape, n_ref, tile_px=256, halo_px=32) * 1.001 / 2**30
    assert peak_memory(shape, n_ref) > budget * 2**30 and tile_size(shape, dates=n_ref, memory_gb=budget, halo_px=32) == 256
    out = {}
    for name, kw in (("asked", dict(tile_px=256)), ("budget", dict(memory_gb=budget))):
        cfg = make_cfg(tmp_path / name, date(2024, 10, 10), halo_px=32, **kw)
        s = run_monitor([str(aoi)], cfg, source=PlantedSource())
        assert s.outcomes[0].status == "ok", s.outcomes[0].error
        root = cfg.output_root / "square"
        out[name] = (json.loads((root / "manifest.json").read_text()), json.loads((root / "changes.geojson").read_text()))
        assert not list((root / "runs").glob(".tmp-*"))
    (m1, g1), (m2, g2) = out["asked"], out["budget"]
    assert m2["parameters"]["tiling"]["tile_px"] == 256 and m2["parameters"]["tiling"] == m1["parameters"]["tiling"]
    assert g2["features"] and [f["properties"]["id"] for f in g2["features"]] == [f["properties"]["id"] for f in g1["features"]]


def test_reference_file_bytes_are_those_of_np_save_whatever_the_composite(tmp_path):
    """The reference composite is streamed to disk in pieces (a tiled AOI's composite is never
    whole in memory); the file is what ``np.save`` writes, so digests recorded by earlier
    versions still match."""
    import io

    from pipeline.runs.monitor import _digest, _save_reference

    arr = np.random.default_rng(3).random((3, 1100, 37)).astype(np.float32)
    arr[1, 5:9, 2] = np.nan
    buf = io.BytesIO()
    np.save(buf, arr)
    path, digest = _save_reference(tmp_path, arr)
    assert (tmp_path / path).read_bytes() == buf.getvalue()
    assert digest == _digest(arr) == hashlib.sha256(buf.getvalue()).hexdigest()
