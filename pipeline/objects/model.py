"""Change objects and the class vocabulary shared by detection and every output."""

from __future__ import annotations

from dataclasses import dataclass, field

from shapely.geometry.base import BaseGeometry

__all__ = ["CHANGE_CLASSES", "NATURAL_CLASSES", "CLASS_CODES", "CLASS_COLOURS", "NODATA_CODE", "NO_CHANGE_CODE", "ChangeObject"]

CHANGE_CLASSES = (
    "runway_repair",
    "new_structure",
    "removed_structure",
    "earthworks",
    "surface_change",
    "vegetation",
    "water",
    "other",
)
"""Class names of change objects, in code order (codes 1..8)."""

NATURAL_CLASSES = ("vegetation", "water")
"""Classes of change on ground that stays natural; the others are development or ground work."""

NO_CHANGE_CODE = 0
NODATA_CODE = 255
CLASS_CODES = {"no_change": NO_CHANGE_CODE, **{c: i + 1 for i, c in enumerate(CHANGE_CLASSES)}}
"""uint8 code of each class in ``change_class.tif``; 0 no change, 255 no data."""

CLASS_COLOURS = {
    "no_change": (0, 0, 0, 0),
    "runway_repair": (230, 25, 75, 255),
    "new_structure": (255, 140, 0, 255),
    "removed_structure": (145, 30, 180, 255),
    "earthworks": (170, 110, 40, 255),
    "surface_change": (70, 240, 240, 255),
    "vegetation": (60, 180, 75, 255),
    "water": (0, 90, 230, 255),
    "other": (128, 128, 128, 255),
}
"""RGBA colour of each class, shared by the COG colour table, the QGIS style and the report."""


@dataclass(frozen=True)
class ChangeObject:
    """One change object.

    Attributes
    ----------
    id : str
        Stable id: the same change keeps it across runs (see ``objects.track``).
    geometry : shapely Polygon or MultiPolygon
        In the AOI grid CRS (UTM metres).
    cls : str
        One of :data:`CHANGE_CLASSES`.
    confidence : float
        0-1.
    area_m2 : float
    feature : str or None
        Name of the AOI feature it touches, e.g. ``"runway 01L/19R"``.
    before, after : str
        The compared windows as ISO dates or ``start/end`` intervals.
    evidence : dict
        What drove the class: index deltas, shape measures, the rule that fired (JSON-able).
    status : str
        Lifecycle in monitoring: ``candidate``, ``confirmed``, ``persisting``, ``gone``;
        ``detected`` for a one-off ``detect``.
    first_seen, last_seen : str or None
        ISO dates (monitoring).
    """

    id: str
    geometry: BaseGeometry
    cls: str
    confidence: float
    area_m2: float
    feature: str | None
    before: str
    after: str
    evidence: dict = field(default_factory=dict, compare=False, hash=False)
    status: str = "detected"
    first_seen: str | None = None
    last_seen: str | None = None

    def __post_init__(self):
        if self.cls not in CHANGE_CLASSES:
            raise ValueError(f"unknown change class {self.cls!r}; use one of {', '.join(CHANGE_CLASSES)}")
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must be in [0, 1], got {self.confidence}")
