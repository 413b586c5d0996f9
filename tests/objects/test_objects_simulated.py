"""The classifier on rendered spectra: the simulated archive's scripted changes get their class.

For each AOI the three clearest simulated acquisitions of a window before the scripted changes
(2024-03-01..2024-08-20) and after them (2025-05-10..2025-09-30) are median-composited, the
index deltas computed with :func:`pipeline.kernels.metrics.index_deltas`, and the truth
footprints (``SimulatedSource.truth``) used as the change mask, so the test isolates the objects
stage (labelling, context, rules) from detection. The object overlapping each truth event most
must carry the event's class (and, for runway repair, its runway).
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
from rasterio import features

from pipeline.aoi import load_aoi
from pipeline.kernels.metrics import index_deltas
from pipeline.objects import extract_objects
from pipeline.sources import get_source

BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")
BEFORE = (date(2024, 3, 1), date(2024, 8, 20))
AFTER = (date(2025, 5, 10), date(2025, 9, 30))


@pytest.fixture(scope="module")
def source():
    return get_source("simulated")


def _composite(source, aoi, grid, window):
    acqs = sorted(source.search(aoi, *window), key=lambda a: (a.cloud_cover or 0.0, a.time))[:3]
    stack = source.read(aoi, acqs, grid=grid, bands=BANDS)
    return np.nanmedian(np.stack([stack.reflectance(i) for i in range(len(stack))]), axis=0)


def _classes(source, aoi_id):
    aoi = load_aoi(aoi_id)
    grid = aoi.grid()
    before = _composite(source, aoi, grid, BEFORE)
    after = _composite(source, aoi, grid, AFTER)
    truth = source.truth(aoi, grid=grid)
    assert truth, f"the simulated archive scripts no change at {aoi_id}"
    mask = features.rasterize([e.geometry for e in truth], out_shape=grid.shape, transform=grid.transform).astype(bool)
    valid = np.isfinite(before).all(0) & np.isfinite(after).all(0)
    magnitude = np.sqrt(np.sum((after - before) ** 2, axis=0)).astype(np.float32)
    objects, _ = extract_objects(
        mask, magnitude, index_deltas(before, after, bands=BANDS), grid, aoi, before="b", after="a",
        before_img=before, after_img=after, bands=BANDS, valid=valid,
    )
    out = []
    for ev in truth:
        best = max(objects, key=lambda o: o.geometry.intersection(ev.geometry).area)
        assert best.geometry.intersection(ev.geometry).area > 0, f"no object over {ev.description}"
        out.append((ev, best))
    return out


@pytest.mark.parametrize("aoi_id", ["benina", "tobruk-port"])
def test_scripted_changes_get_their_class(source, aoi_id):
    """benina: six new storage buildings, earthworks, a runway resurfaced with fresh asphalt;
    tobruk-port: two waterfront warehouses, a quay extension, land reclamation."""
    for ev, obj in _classes(source, aoi_id):
        assert obj.cls == ev.cls, (ev.description, obj.evidence)
        if ev.cls == "runway_repair":
            assert obj.feature == ev.feature


def test_port_changes_tartus_naval(source):
    """tartus-naval-facility: a waterfront warehouse and land reclamation (the quay extension
    has its own test below)."""
    pairs = [(ev, o) for ev, o in _classes(source, "tartus-naval-facility") if not ev.description.startswith("quay")]
    assert len(pairs) == 2
    for ev, obj in pairs:
        assert obj.cls == ev.cls, (ev.description, obj.evidence)


def test_thin_diagonal_quay_extension_is_new_structure(source):
    """tartus-naval-facility's quay extension, 117 x 21 m and diagonal, rasterises to a
    staircase two pixels wide (rectangularity 0.6) of which the opening keeps 10 pixels: it is
    still a structure built on water, not reclamation."""
    ((ev, obj),) = [(ev, o) for ev, o in _classes(source, "tartus-naval-facility") if ev.description.startswith("quay")]
    assert obj.cls == "new_structure", obj.evidence
    assert obj.evidence["rule"] == "new_structure.on_water"
