"""Stable ids and the lifecycle of change objects across monitoring runs.

An object's id is derived from its AOI and its centroid snapped to a coarse lattice
(:func:`object_id`), so the same change found again gets the same id even without any state.
Across runs, :func:`match` pairs objects by overlap and :func:`update_lifecycle` carries ids
forward and moves each object through::

    candidate --(seen in confirm_after runs)--> confirmed --(seen again)--> persisting
        |                                          |                          |
        +-- not seen again: dropped (transient)    +------ not seen: gone ----+

An object that is not found again where this run saw no clear ground (``valid``) keeps its
state: a cloud is not a demolition.

Matched objects keep the previous id (even when their centroid drifted into another lattice
cell), ``first_seen`` and the number of runs seen, stored as ``evidence["track"]``.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import replace
from typing import Sequence

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from ..errors import UsageError
from ..grid import Grid
from .model import ChangeObject

log = logging.getLogger(__name__)

__all__ = ["object_id", "unique_ids", "match", "update_lifecycle", "observed_fraction", "STATUSES"]

STATUSES = ("candidate", "confirmed", "persisting", "gone")
"""Lifecycle states in monitoring (``detected`` marks a one-off detection)."""

DEFAULT_SNAP_M = 100.0


def object_id(aoi_id: str, geometry: BaseGeometry, *, snap_m: float = DEFAULT_SNAP_M) -> str:
    """Deterministic id of a change object: ``"<aoi_id>-<10 hex digits>"``.

    The digits hash the AOI id and the centroid of ``geometry`` (grid CRS metres) rounded to the
    nearest multiple of ``snap_m``: shifting an object by less than ``snap_m / 2`` keeps its id
    unless the centroid crosses a cell edge; across runs :func:`update_lifecycle` keeps ids
    stable regardless.

    Parameters
    ----------
    aoi_id : str
    geometry : shapely geometry
        In the AOI grid CRS (metres); must not be empty.
    snap_m : float, keyword-only
        Lattice spacing in metres.
    """
    if geometry is None or geometry.is_empty:
        raise UsageError(f"object_id needs a non-empty geometry (aoi {aoi_id!r})")
    if snap_m <= 0:
        raise UsageError(f"snap_m must be > 0 metres, got {snap_m}")
    c = geometry.centroid
    ix = int(math.floor(c.x / snap_m + 0.5))
    iy = int(math.floor(c.y / snap_m + 0.5))
    digest = hashlib.sha1(f"{aoi_id}|{snap_m:g}|{ix}|{iy}".encode()).hexdigest()[:10]
    return f"{aoi_id}-{digest}"


def unique_ids(ids: Sequence[str]) -> list[str]:
    """Make ids unique in order: the second ``x`` becomes ``x-2``, the third ``x-3``."""
    seen: dict[str, int] = {}
    out = []
    taken = set(ids)
    for i in ids:
        n = seen.get(i, 0) + 1
        seen[i] = n
        if n == 1:
            out.append(i)
            continue
        k = n
        while f"{i}-{k}" in taken:
            k += 1
        new = f"{i}-{k}"
        taken.add(new)
        out.append(new)
    return out


def _overlap(a: BaseGeometry, b: BaseGeometry) -> tuple[float, float]:
    """(IoU, intersection / smaller area) of two polygons."""
    inter = a.intersection(b).area
    if inter <= 0:
        return 0.0, 0.0
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0, inter / max(min(a.area, b.area), 1e-12)


def match(
    previous: Sequence[ChangeObject],
    current: Sequence[ChangeObject],
    *,
    min_iou: float = 0.2,
    min_containment: float = 0.6,
) -> list[tuple[int, int]]:
    """Pair previous and current objects that are the same change.

    Two objects can pair when their intersection over union is at least ``min_iou``, or when the
    smaller one lies at least ``min_containment`` inside the other (a growing construction
    site). Pairing is one-to-one and greedy, best IoU first (ties: lower indices first), so it is
    deterministic.

    Parameters
    ----------
    previous, current : sequence of ChangeObject
        Geometries in the same CRS.
    min_iou : float, keyword-only
        0-1.
    min_containment : float, keyword-only
        0-1; values above 1 disable the containment rule.

    Returns
    -------
    list of (int, int)
        ``(index in previous, index in current)`` pairs, sorted by the current index.
    """
    if not 0.0 <= min_iou <= 1.0:
        raise UsageError(f"min_iou must be in [0, 1], got {min_iou}")
    if not previous or not current:
        return []
    prev_geoms = [p.geometry for p in previous]
    tree = shapely.STRtree(prev_geoms)
    candidates: list[tuple[float, float, int, int]] = []
    for j, cur in enumerate(current):
        for i in tree.query(cur.geometry, predicate="intersects"):
            i = int(i)
            iou, contain = _overlap(prev_geoms[i], cur.geometry)
            if iou >= min_iou or contain >= min_containment:
                candidates.append((-iou, -contain, i, j))
    candidates.sort()
    used_p: set[int] = set()
    used_c: set[int] = set()
    pairs = []
    for _, _, i, j in candidates:
        if i in used_p or j in used_c:
            continue
        used_p.add(i)
        used_c.add(j)
        pairs.append((i, j))
    return sorted(pairs, key=lambda ij: ij[1])


def observed_fraction(geometry: BaseGeometry, valid: np.ndarray, grid: Grid) -> float:
    """Fraction of the pixels whose centres lie in ``geometry`` that are ``valid`` (0-1).

    Geometries smaller than a pixel use the pixel holding their centroid; geometries off the
    grid count as unobserved (0).
    """
    win = grid.to_window(geometry.bounds)
    r0, c0 = max(0, int(win.row_off)), max(0, int(win.col_off))
    r1 = min(grid.height, int(win.row_off + win.height))
    c1 = min(grid.width, int(win.col_off + win.width))
    if r0 >= r1 or c0 >= c1:
        return 0.0
    rr, cc = np.mgrid[r0:r1, c0:c1]
    xs, ys = grid.xy(rr.ravel(), cc.ravel())
    inside = shapely.contains_xy(geometry, xs, ys)
    if not inside.any():
        c = geometry.centroid
        col, row = ~grid.transform @ (c.x, c.y)
        r, k = int(np.floor(row)), int(np.floor(col))
        return float(valid[r, k]) if 0 <= r < grid.height and 0 <= k < grid.width else 0.0
    return float(valid[rr.ravel()[inside], cc.ravel()[inside]].mean())


def _runs_seen(obj: ChangeObject, confirm_after: int) -> int:
    tr = obj.evidence.get("track") if isinstance(obj.evidence, dict) else None
    if isinstance(tr, dict) and isinstance(tr.get("runs_seen"), int):
        return tr["runs_seen"]
    # objects from a store that dropped the evidence: infer a lower bound from the status
    return {"candidate": 1, "confirmed": confirm_after, "persisting": confirm_after + 1}.get(obj.status, 1)


def _with_track(obj: ChangeObject, runs_seen: int, **changes) -> ChangeObject:
    ev = dict(obj.evidence)
    ev["track"] = {"runs_seen": int(runs_seen)}
    return replace(obj, evidence=ev, **changes)


def update_lifecycle(
    previous: Sequence[ChangeObject],
    current: Sequence[ChangeObject],
    *,
    date: str,
    confirm_after: int = 2,
    min_iou: float = 0.2,
    valid: np.ndarray | None = None,
    grid: Grid | None = None,
    min_observed: float = 0.5,
) -> list[ChangeObject]:
    """The objects of this run with ids and lifecycle carried over from the previous run.

    Parameters
    ----------
    previous : sequence of ChangeObject
        The objects the previous run returned (``gone`` ones are ignored: they were reported).
    current : sequence of ChangeObject
        This run's detections (any status; ids from :func:`object_id`).
    date : str, keyword-only
        ISO date of this run's latest acquisition; becomes ``last_seen`` (and ``first_seen`` of
        new objects).
    confirm_after : int, keyword-only
        Runs an object must be seen in before it is ``confirmed`` (1 confirms at once).
    min_iou : float, keyword-only
        Passed to :func:`match`.
    valid : (H, W) bool, keyword-only, optional
        Pixels this run observed (clear data inside the AOI), on ``grid``. A previous object not
        found again whose footprint was less than ``min_observed`` observed (cloud, swath edge)
        is kept unchanged instead of becoming ``gone`` or being dropped. Without ``valid`` every
        footprint counts as observed.
    grid : Grid, keyword-only
        The grid of ``valid`` (required with it).
    min_observed : float, keyword-only
        0-1, see ``valid``.

    Returns
    -------
    list of ChangeObject
        Current objects first (in their order): matched ones keep the previous id and
        ``first_seen``, and become ``confirmed`` on reaching ``confirm_after`` runs, then
        ``persisting``; new ones are ``candidate`` (``confirmed`` when ``confirm_after`` is 1).
        Then previous ``confirmed``/``persisting`` objects not seen this run, as ``gone`` with
        their last geometry and ``last_seen``. Unconfirmed candidates not seen again are dropped
        as transients. ``evidence["track"]["runs_seen"]`` counts the runs each was seen in.
    """
    if valid is not None:
        if grid is None:
            raise UsageError("update_lifecycle: valid given without grid; pass grid=<the Grid of valid>")
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != grid.shape:
            raise UsageError(f"update_lifecycle: valid has shape {valid.shape}, grid has {grid.shape}")
    if confirm_after < 1:
        raise UsageError(f"confirm_after must be >= 1, got {confirm_after}")
    if not isinstance(date, str) or not date:
        raise UsageError(f"date must be an ISO date string, got {date!r}")
    live_prev = [p for p in previous if p.status != "gone"]
    pairs = dict((j, i) for i, j in match(live_prev, current, min_iou=min_iou))
    out: list[ChangeObject] = []
    taken = {p.id for p in live_prev}
    for j, cur in enumerate(current):
        if j in pairs:
            prev = live_prev[pairs[j]]
            n = _runs_seen(prev, confirm_after) + 1
            if n < confirm_after:
                status = "candidate"
            elif prev.status in ("confirmed", "persisting"):
                status = "persisting"
            else:
                status = "confirmed"
            out.append(
                _with_track(cur, n, id=prev.id, status=status, first_seen=prev.first_seen or date, last_seen=date)
            )
        else:
            new_id = cur.id
            k = 2
            while new_id in taken:
                new_id = f"{cur.id}-{k}"
                k += 1
            taken.add(new_id)
            status = "confirmed" if confirm_after <= 1 else "candidate"
            out.append(_with_track(cur, 1, id=new_id, status=status, first_seen=date, last_seen=date))
    matched_prev = set(pairs.values())
    for i, prev in enumerate(live_prev):
        if i in matched_prev:
            continue
        if valid is not None and observed_fraction(prev.geometry, valid, grid) < min_observed:
            # hidden by cloud or outside this acquisition: not evidence that it went away
            log.debug("%s not observed on %s; kept as %s", prev.id, date, prev.status)
            out.append(prev)
            continue
        if prev.status in ("confirmed", "persisting"):
            out.append(_with_track(prev, _runs_seen(prev, confirm_after), status="gone"))
        else:
            log.debug("dropping transient candidate %s (seen once, not seen on %s)", prev.id, date)
    return out
