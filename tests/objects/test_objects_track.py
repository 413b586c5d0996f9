"""Stable ids and the monitoring lifecycle (candidate -> confirmed -> persisting -> gone)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely import affinity
from shapely.geometry import box

from pipeline.errors import PipelineError
from pipeline.objects.model import ChangeObject
from pipeline.objects.track import match, object_id, unique_ids, update_lifecycle

# a 60 x 40 m object whose centroid (431000, 3551000) lies on a node of the 100 m id lattice,
# i.e. 50 m from the edges of its snapping cell
BLDG = box(430970.0, 3550980.0, 431030.0, 3551020.0)
FAR = box(432500.0, 3552500.0, 432600.0, 3552600.0)


def obj(geom, oid=None, cls="new_structure", **kw):
    return ChangeObject(
        id=oid or object_id("base", geom),
        geometry=geom,
        cls=cls,
        confidence=0.8,
        area_m2=geom.area,
        feature=None,
        before="2024-01-01",
        after="2024-06-01",
        **kw,
    )


def test_object_id_is_deterministic_and_stable_under_small_shifts():
    oid = object_id("base", BLDG)
    assert oid.startswith("base-") and len(oid) == len("base-") + 10
    assert object_id("base", BLDG) == oid
    for dx, dy in ((10, 0), (0, -10), (-10, 10), (45, -45)):
        assert object_id("base", affinity.translate(BLDG, dx, dy)) == oid
    assert object_id("other-base", BLDG) != oid
    assert object_id("base", affinity.translate(BLDG, 300, 0)) != oid


@settings(max_examples=50, deadline=None)
@given(st.floats(-49, 49), st.floats(-49, 49))
def test_object_id_stable_for_any_shift_inside_the_cell(dx, dy):
    """The planted centroid is 50 m from its cell's edges: shifts below 50 m keep the id."""
    assert object_id("base", affinity.translate(BLDG, dx, dy)) == object_id("base", BLDG)


def test_object_id_rejects_empty_geometry():
    with pytest.raises(PipelineError, match="non-empty"):
        object_id("base", box(0, 0, 1, 1).intersection(box(5, 5, 6, 6)))


def test_unique_ids():
    assert unique_ids(["a", "b", "a", "a", "a-2"]) == ["a", "b", "a-3", "a-4", "a-2"]


def test_match_pairs_by_overlap_one_to_one():
    prev = [obj(BLDG), obj(FAR)]
    shifted = affinity.translate(BLDG, 10, 0)  # IoU 50/70
    grown = box(432450.0, 3552450.0, 432700.0, 3552700.0)  # contains FAR: IoU 0.16, containment 1
    elsewhere = box(430000.0, 3550000.0, 430050.0, 3550050.0)
    cur = [obj(elsewhere), obj(grown), obj(shifted)]
    assert match(prev, cur) == [(1, 1), (0, 2)]
    assert match(prev, cur, min_containment=2.0) == [(0, 2)]
    # two current objects over one previous: only the better one pairs
    assert match([obj(BLDG)], [obj(shifted), obj(BLDG)]) == [(0, 1)]
    assert match([], cur) == [] and match(prev, []) == []


def test_lifecycle_candidate_confirmed_persisting_gone():
    """Planted: the same building seen in runs 1-3 (shifted by 10-20 m each time, so its
    snapped id may change), absent in run 4; a transient seen only in run 2."""
    run1 = update_lifecycle([], [obj(BLDG)], date="2024-06-01")
    assert [(o.status, o.first_seen, o.last_seen) for o in run1] == [("candidate", "2024-06-01", "2024-06-01")]
    first_id = run1[0].id

    moved = affinity.translate(BLDG, 20, 10)
    transient = obj(FAR, cls="other")
    run2 = update_lifecycle(run1, [obj(moved, oid="base-fresh-id"), transient], date="2024-06-11")
    by_geom = {o.geometry.wkt: o for o in run2}
    b = by_geom[moved.wkt]
    assert (b.id, b.status, b.first_seen, b.last_seen) == (first_id, "confirmed", "2024-06-01", "2024-06-11")
    assert b.evidence["track"]["runs_seen"] == 2
    assert by_geom[FAR.wkt].status == "candidate"

    run3 = update_lifecycle(run2, [obj(affinity.translate(moved, -10, 0))], date="2024-06-21")
    assert [(o.id, o.status) for o in run3] == [(first_id, "persisting")]  # transient dropped

    run4 = update_lifecycle(run3, [], date="2024-07-01")
    assert [(o.id, o.status, o.first_seen, o.last_seen) for o in run4] == [(first_id, "gone", "2024-06-01", "2024-06-21")]
    # gone objects are reported once and not carried further
    assert update_lifecycle(run4, [], date="2024-07-11") == []


def test_lifecycle_confirm_after():
    r1 = update_lifecycle([], [obj(BLDG)], date="d1", confirm_after=3)
    r2 = update_lifecycle(r1, [obj(BLDG)], date="d2", confirm_after=3)
    r3 = update_lifecycle(r2, [obj(BLDG)], date="d3", confirm_after=3)
    r4 = update_lifecycle(r3, [obj(BLDG)], date="d4", confirm_after=3)
    assert [r[0].status for r in (r1, r2, r3, r4)] == ["candidate", "candidate", "confirmed", "persisting"]
    assert update_lifecycle([], [obj(BLDG)], date="d1", confirm_after=1)[0].status == "confirmed"


def test_lifecycle_without_track_evidence_infers_from_status():
    """A previous object loaded from a store that kept only the status still progresses."""
    prev = obj(BLDG, status="confirmed", first_seen="d0", last_seen="d1")
    out = update_lifecycle([prev], [obj(BLDG)], date="d2")
    assert out[0].status == "persisting" and out[0].first_seen == "d0"


def test_new_object_does_not_take_a_live_id():
    """Planted: a confirmed building gone this run while a new object elsewhere happens to
    carry the same id (as a hash collision would): the new one gets a suffix."""
    prev = update_lifecycle([], [obj(BLDG, oid="base-x")], date="d1", confirm_after=1)
    out = update_lifecycle(prev, [obj(FAR, oid="base-x")], date="d2")
    assert sorted((o.id, o.status) for o in out) == [("base-x", "gone"), ("base-x-2", "candidate")]


def test_bad_arguments():
    with pytest.raises(PipelineError, match="confirm_after"):
        update_lifecycle([], [], date="d", confirm_after=0)
    with pytest.raises(PipelineError, match="date"):
        update_lifecycle([], [], date="")
    with pytest.raises(ValueError, match="min_iou"):
        match([], [], min_iou=2)


def test_objects_hidden_by_cloud_are_kept_not_gone():
    """Planted: a confirmed building and a candidate; the next run finds neither, but a cloud
    covers the building (valid False there) while the candidate's ground was clear: the
    building keeps its state, the candidate is dropped; a later clear run makes it gone."""
    from affine import Affine
    import numpy as np

    from pipeline.grid import Grid
    from pipeline.objects.track import observed_fraction

    grid = Grid(32634, Affine(10.0, 0.0, 430000.0, 0.0, -10.0, 3553000.0), 300, 300)
    prev = update_lifecycle([], [obj(BLDG), obj(FAR, cls="other")], date="d1", confirm_after=1)
    prev = [prev[0], update_lifecycle([], [obj(FAR, cls="other")], date="d1")[0]]  # FAR a candidate
    assert [p.status for p in prev] == ["confirmed", "candidate"]
    valid = np.ones(grid.shape, bool)
    cloud = box(430900.0, 3550900.0, 431100.0, 3551100.0)
    rr, cc = np.mgrid[0:300, 0:300]
    xs, ys = grid.xy(rr, cc)
    valid[(xs > 430900) & (xs < 431100) & (ys > 3550900) & (ys < 3551100)] = False
    assert observed_fraction(BLDG, valid, grid) == 0.0 and observed_fraction(FAR, valid, grid) == 1.0
    assert cloud.contains(BLDG)
    out = update_lifecycle(prev, [], date="d2", valid=valid, grid=grid)
    assert [(o.id, o.status, o.last_seen) for o in out] == [(prev[0].id, "confirmed", "d1")]
    out = update_lifecycle(out, [], date="d3", valid=np.ones(grid.shape, bool), grid=grid)
    assert [(o.id, o.status) for o in out] == [(prev[0].id, "gone")]
    with pytest.raises(PipelineError, match="grid"):
        update_lifecycle(prev, [], date="d2", valid=valid)
