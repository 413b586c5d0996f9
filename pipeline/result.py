"""What a detection produces: the value object every output writer consumes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .aoi import AOI
from .grid import Grid
from .objects.model import ChangeObject

__all__ = ["AcquisitionRecord", "DetectionResult"]


@dataclass(frozen=True)
class AcquisitionRecord:
    """How one acquisition was handled (written to the manifest and the state database).

    Attributes
    ----------
    id, date : str
        Source item id and ISO date.
    window : str
        ``before``, ``after`` or ``series``.
    platform, processing_baseline : str
    offset : int
        DN offset found in the data (0 or 1000) and removed by harmonisation.
    offset_handling : str
        How the offset was decided, e.g. ``"metadata: baseline 04.00 -> -1000"``.
    cloud_cover : float or None
        Scene cloud cover from metadata, percent.
    cloud_fraction, valid_fraction : float
        Over the AOI, from our own masks, 0-1.
    shift_px : tuple of float or None
        ``(dy, dx)`` sub-pixel shift applied by co-registration, in 10 m pixels.
    used : bool
    reason : str
        Why it was not used (empty when used).
    """

    id: str
    date: str
    window: str
    platform: str = ""
    processing_baseline: str = ""
    offset: int = 0
    offset_handling: str = ""
    cloud_cover: float | None = None
    cloud_fraction: float = 0.0
    valid_fraction: float = 1.0
    shift_px: tuple[float, float] | None = None
    used: bool = True
    reason: str = ""

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["shift_px"] = list(self.shift_px) if self.shift_px is not None else None
        return d


@dataclass(frozen=True, eq=False)
class DetectionResult:
    """Everything one detection produced.

    Attributes
    ----------
    aoi : AOI
    grid : Grid
    source : str
    before, after : str
        The compared windows, ``YYYY-MM-DD/YYYY-MM-DD``.
    class_map : (H, W) uint8
        Class codes (``objects.model.CLASS_CODES``); 255 outside the AOI or without valid data.
    magnitude : (H, W) float32
        Change magnitude (unitless, larger = more change); NaN where no data.
    objects : tuple of ChangeObject
    composite_bands : tuple of str
        Band names of the composites.
    before_composite, after_composite : (B, H, W) float32
        Harmonised, normalised reflectance composites (NaN where no clear observation).
    acquisitions : tuple of AcquisitionRecord
    parameters : dict
        Every parameter of the run (JSON-able).
    timings : dict
        Seconds per stage.
    series : dict
        Optional time series for monitoring reports (e.g. per-runway metrics by date).
    """

    aoi: AOI
    grid: Grid
    source: str
    before: str
    after: str
    class_map: np.ndarray
    magnitude: np.ndarray
    objects: tuple[ChangeObject, ...]
    composite_bands: tuple[str, ...]
    before_composite: np.ndarray
    after_composite: np.ndarray
    acquisitions: tuple[AcquisitionRecord, ...] = ()
    parameters: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    series: dict = field(default_factory=dict)

    def composite(self, which: str, bands) -> np.ndarray:
        """``(len(bands), H, W)`` float32 of the ``before`` or ``after`` composite."""
        arr = self.before_composite if which == "before" else self.after_composite
        return arr[[self.composite_bands.index(b) for b in bands]]
