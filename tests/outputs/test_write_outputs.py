"""write_outputs: the set of files, manifest with checksums, determinism, atomicity, errors."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest

import pipeline
from pipeline.errors import ConfigError, OutputError, UsageError
from pipeline.outputs import OUTPUT_FILES, MagnitudeInAdvance, write_outputs

from .conftest import make_result


def _sha(p) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_returns_every_file_it_wrote(written):
    paths, out = written
    assert set(paths) == set(OUTPUT_FILES) | {"before_rgb.tif", "after_rgb.tif"}
    assert sorted(p.name for p in out.iterdir()) == sorted(paths)  # and nothing else (no temp files)
    for name, p in paths.items():
        assert p.parent == out and p.name == name and p.stat().st_size > 0


def test_manifest_records_run_and_checksums(written, result):
    paths, _ = written
    m = json.loads(paths["manifest.json"].read_text())
    assert m["software"] == {"name": "s2watch", "version": pipeline.__version__}
    assert m["aoi"]["id"] == "test-base" and m["aoi"]["digest"] == "d" * 64
    assert m["grid"] == json.loads(json.dumps(result.grid.to_dict()))
    assert m["source"] == "simulated" and (m["before"], m["after"]) == (result.before, result.after)
    assert m["parameters"] == result.parameters
    assert m["timings"] == {**result.timings, "outputs": pytest.approx(m["timings"]["outputs"])}
    assert 0 < m["timings"]["outputs"] < 60
    assert [a["id"] for a in m["acquisitions"]] == [a.id for a in result.acquisitions]
    assert m["acquisitions"][1]["used"] is False and m["acquisitions"][1]["reason"] == "cloudy"
    assert m["objects"]["by_class"]["runway_repair"] == 1 and m["objects"]["count"] == 2
    assert m["run_id"] == "test-run"
    assert set(m["outputs"]) == set(paths) - {"manifest.json"}
    for name, entry in m["outputs"].items():
        assert entry["sha256"] == _sha(paths[name]) and entry["bytes"] == paths[name].stat().st_size


def test_two_writes_are_identical_except_manifest_time(tmp_path, result):
    a = write_outputs(result, tmp_path / "a", rgb=True)
    b = write_outputs(result, tmp_path / "b", rgb=True)
    assert set(a) == set(b)
    for name in a:
        if name != "manifest.json":
            assert _sha(a[name]) == _sha(b[name]), name
    ma, mb = (json.loads(p["manifest.json"].read_text()) for p in (a, b))
    for m in (ma, mb):  # the two volatile entries (manifest.VOLATILE_KEYS)
        m.pop("written_at")
        m["timings"].pop("outputs")
    assert ma == mb


def test_failure_midway_leaves_no_partial_files(tmp_path, result, monkeypatch):
    """A crash while rendering the report: complete earlier files, no report, no temp, no manifest."""
    import pipeline.outputs as outputs

    def boom(*a, **k):
        raise RuntimeError("renderer crashed")

    monkeypatch.setattr(outputs, "render_report", boom)
    with pytest.raises(RuntimeError, match="renderer crashed"):
        write_outputs(result, tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "manifest.json" not in names and "report.html" not in names
    assert not [n for n in names if n.startswith(".")]
    assert "changes.geojson" in names


def test_failed_rewrite_keeps_previous_file(tmp_path, result, monkeypatch):
    write_outputs(result, tmp_path)
    before = (tmp_path / "changes.gpkg").read_bytes()
    import pipeline.outputs.gpkg as gpkg

    def broken_write(path, *a, **k):
        path.write_bytes(b"half a geopackage")  # the writer dies after writing part of the temp file
        raise OSError("disk full")

    monkeypatch.setattr(gpkg, "ogr_write", broken_write)
    with pytest.raises(OSError, match="disk full"):
        write_outputs(result, tmp_path)
    assert (tmp_path / "changes.gpkg").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_summary_digest(written):
    text = written[0]["summary.md"].read_text()
    assert "# s2watch: Test Air Base (test-base)" in text
    assert "- after: 2024-05-01/2024-06-15" in text
    assert "2 (1 runway repair, 1 new structure)" in text
    top = [ln for ln in text.splitlines() if ln.startswith("- **")]
    assert top[0].startswith("- **runway repair** on runway 14/32: confidence 0.91")
    assert "`29.187720, 15.634100`" in top[0]  # lat, lon of the planted runway box centre


def test_summary_escapes_markdown():
    from pipeline.outputs.summary import render_summary

    text = render_summary(make_result(name="[click](http://evil) <b>x</b>"))
    assert "[click](http://evil)" not in text and "<b>" not in text


def test_no_objects_still_writes_everything(tmp_path):
    res = make_result(objects=())
    paths = write_outputs(res, tmp_path)
    assert json.loads(paths["changes.geojson"].read_text())["features"] == []
    assert "No change objects." in paths["summary.md"].read_text()
    assert "No change objects." in paths["report.html"].read_text()


def test_bad_inputs_raise_clear_errors(tmp_path, result):
    with pytest.raises(OutputError, match=r"class_map is int64"):
        write_outputs(dataclasses.replace(result, class_map=result.class_map.astype(np.int64)), tmp_path / "x")
    with pytest.raises(OutputError, match=r"after_composite has shape"):
        write_outputs(dataclasses.replace(result, after_composite=result.after_composite[:3]), tmp_path / "x")
    dup = (result.objects[0], result.objects[0])
    with pytest.raises(OutputError, match="appears twice"):
        write_outputs(dataclasses.replace(result, objects=dup), tmp_path / "x")
    with pytest.raises(OutputError, match="rgb=True needs bands B04, B03, B02"):
        res = dataclasses.replace(result, composite_bands=("B8A", "B11", "B12", "B05", "B06", "B07"))
        write_outputs(res, tmp_path / "x", rgb=True)
    with pytest.raises(UsageError, match="'aoi'"):
        write_outputs(result, tmp_path / "x", extra_manifest={"aoi": "mine"})
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot create output folder"):
        write_outputs(result, blocker / "sub")
    assert not (tmp_path / "x").exists()  # checks come before anything is written


def test_rewrite_without_rgb_drops_stale_rgb_files(tmp_path, result):
    write_outputs(result, tmp_path, rgb=True)
    paths = write_outputs(result, tmp_path, rgb=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(paths) == sorted(OUTPUT_FILES)


def _hand_over(early, result) -> None:
    """What ``detect(..., on_magnitude=early)`` does once the magnitude is final."""
    early(result.magnitude, grid=result.grid, aoi=result.aoi, source=result.source, before=result.before, after=result.after)


def test_magnitude_written_in_advance_gives_the_same_files(tmp_path, result, monkeypatch):
    import threading

    import pipeline.outputs as outputs

    ref = write_outputs(result, tmp_path / "ref")
    calls = []
    write = outputs.write_magnitude_cog

    def spy(magnitude, grid, path, **kw):
        calls.append((path.name, threading.current_thread().name))
        return write(magnitude, grid, path, **kw)

    monkeypatch.setattr(outputs, "write_magnitude_cog", spy)
    out = tmp_path / "early"
    with MagnitudeInAdvance(out) as early:
        _hand_over(early, result)
        paths = write_outputs(result, out, early=early)
    # written once, on the handover's thread, to a hidden staging file, then moved into place
    assert len(calls) == 1 and calls[0][0].startswith(".change_magnitude.tif.") and "early" in calls[0][1]
    assert sorted(p.name for p in out.iterdir()) == sorted(paths) == sorted(ref)  # nothing staged is left
    for name in ref:
        if name != "manifest.json":
            assert _sha(paths[name]) == _sha(ref[name]), name
    m = json.loads(paths["manifest.json"].read_text())
    assert m["outputs"]["change_magnitude.tif"]["sha256"] == _sha(ref["change_magnitude.tif"])


def test_magnitude_staged_for_a_failed_detection_leaves_the_folder_as_it_was(tmp_path, result):
    write_outputs(result, tmp_path)  # an earlier run's outputs
    was = {p.name: _sha(p) for p in tmp_path.iterdir()}
    newer = dataclasses.replace(result, magnitude=result.magnitude * 2)
    with pytest.raises(RuntimeError, match="objects failed"):
        with MagnitudeInAdvance(tmp_path) as early:
            _hand_over(early, newer)
            raise RuntimeError("objects failed")  # the detection dies after the handover
    assert {p.name: _sha(p) for p in tmp_path.iterdir()} == was


def test_magnitude_in_advance_of_another_result_is_written_again(tmp_path, result):
    other = dataclasses.replace(result, magnitude=result.magnitude + 1)
    ref = write_outputs(result, tmp_path / "ref")
    with MagnitudeInAdvance(tmp_path / "a") as early:
        _hand_over(early, other)
        paths = write_outputs(result, tmp_path / "a", early=early)
    assert _sha(paths["change_magnitude.tif"]) == _sha(ref["change_magnitude.tif"])
    assert not [p for p in (tmp_path / "a").iterdir() if p.name.startswith(".")]


def test_magnitude_in_advance_misuse_is_refused(tmp_path, result):
    with pytest.raises(OutputError, match="context manager"):
        _hand_over(MagnitudeInAdvance(tmp_path), result)
    with MagnitudeInAdvance(tmp_path / "a") as early:
        _hand_over(early, result)
        with pytest.raises(OutputError, match="one magnitude"):
            _hand_over(early, result)
        with pytest.raises(OutputError, match="same folder"):
            write_outputs(result, tmp_path / "b", early=early)
    assert not (tmp_path / "a").exists() or not list((tmp_path / "a").iterdir())
