"""The in-memory scene stack: acquisitions of one AOI on its grid.

Sources produce a :class:`SceneStack`; everything downstream consumes it. Dtype policy (stated
once): reflectance is stored as uint16 DN = reflectance x 10000 (+ the acquisition's ``offset``),
0 is no data; all reflectance arithmetic is float32.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone
from typing import Sequence

import numpy as np

from .grid import Grid

__all__ = [
    "Acquisition",
    "SceneStack",
    "BANDS_10M",
    "BANDS_20M",
    "ALL_BANDS",
    "BASELINE_OFFSET_DATE",
    "SCL",
]

BANDS_10M = ("B02", "B03", "B04", "B08")
BANDS_20M = ("B05", "B06", "B07", "B8A", "B11", "B12")
ALL_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
"""The ten 10 m and 20 m bands, in wavelength order."""

BAND_RESOLUTION = {**{b: 10 for b in BANDS_10M}, **{b: 20 for b in BANDS_20M}, "B01": 60, "B09": 60, "B10": 60}

BASELINE_OFFSET_DATE = date(2022, 1, 25)
"""First sensing day of processing baseline 04.00 (+1000 DN offset) in the live archive."""


class SCL:
    """Sentinel-2 L2A scene classification codes."""

    NO_DATA = 0
    SATURATED_DEFECTIVE = 1
    DARK_AREA = 2
    CLOUD_SHADOW = 3
    VEGETATION = 4
    NOT_VEGETATED = 5
    WATER = 6
    UNCLASSIFIED = 7
    CLOUD_MEDIUM = 8
    CLOUD_HIGH = 9
    THIN_CIRRUS = 10
    SNOW = 11
    MASKED = (0, 1, 3, 8, 9, 10)
    """Classes never used as clear observations."""


@dataclass(frozen=True)
class Acquisition:
    """One acquisition (a solar day of one platform) as a source describes it.

    Attributes
    ----------
    id : str
        Source item id (for a mosaic of several items: the ids joined by ``+``).
    time : datetime
        Sensing time, timezone-aware UTC.
    platform : str
        ``sentinel-2a``, ``sentinel-2b`` or ``sentinel-2c``.
    processing_baseline : str
        e.g. ``"04.00"``; ``""`` when unknown.
    offset : int
        DN offset present in the delivered data (1000 for baseline >= 04.00 data not yet
        harmonised, else 0). Reflectance = (DN - offset) / 10000.
    cloud_cover : float or None
        Scene cloud cover from metadata, percent.
    source : str
        Name of the source that delivered it.
    level : str
        ``L2A`` or ``L1C`` (L1C has no SCL).
    extra : dict
        Source-specific metadata (asset hrefs, tile ids...); not compared.
    """

    id: str
    time: datetime
    platform: str = "sentinel-2"
    processing_baseline: str = ""
    offset: int = 0
    cloud_cover: float | None = None
    source: str = ""
    level: str = "L2A"
    extra: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def date(self) -> date:
        return self.time.astimezone(timezone.utc).date()

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "datetime": self.time.astimezone(timezone.utc).isoformat().replace("+00:00", "Z"),
            "date": self.date.isoformat(),
            "platform": self.platform,
            "processing_baseline": self.processing_baseline,
            "offset": self.offset,
            "cloud_cover": self.cloud_cover,
            "source": self.source,
            "level": self.level,
        }


@dataclass(frozen=True, eq=False)
class SceneStack:
    """A stack of acquisitions on one grid.

    Attributes
    ----------
    grid : Grid
        The AOI grid (10 m). Every array below has its ``(H, W)``.
    bands : tuple of str
        Band names along axis 1 of ``data`` (subset of :data:`ALL_BANDS`).
    data : (T, B, H, W) uint16
        DN as delivered (reflectance x 10000 + ``acquisitions[t].offset``); 0 = no data.
        20 m bands are resampled onto the 10 m grid by the source.
    valid : (T, H, W) bool
        True where the source delivered data (dataMask).
    scl : (T, H, W) uint8 or None
        Scene classification layer; None for L1C sources.
    acquisitions : tuple of Acquisition
        One per time step, sorted by time.
    """

    grid: Grid
    bands: tuple[str, ...]
    data: np.ndarray
    valid: np.ndarray
    scl: np.ndarray | None
    acquisitions: tuple[Acquisition, ...]

    def __post_init__(self):
        T = len(self.acquisitions)
        H, W = self.grid.shape
        if self.data.dtype != np.uint16 or self.data.shape != (T, len(self.bands), H, W):
            raise ValueError(
                f"data must be uint16 of shape {(T, len(self.bands), H, W)}, got {self.data.dtype} {self.data.shape}"
            )
        if self.valid.shape != (T, H, W) or self.valid.dtype != bool:
            raise ValueError(f"valid must be bool of shape {(T, H, W)}, got {self.valid.dtype} {self.valid.shape}")
        if self.scl is not None and self.scl.shape != (T, H, W):
            raise ValueError(f"scl must have shape {(T, H, W)}, got {self.scl.shape}")

    def __len__(self) -> int:
        return len(self.acquisitions)

    @property
    def times(self) -> list[datetime]:
        return [a.time for a in self.acquisitions]

    @property
    def dates(self) -> list[date]:
        return [a.date for a in self.acquisitions]

    def band_index(self, name: str) -> int:
        try:
            return self.bands.index(name)
        except ValueError:
            raise KeyError(f"band {name!r} not in stack bands {self.bands}") from None

    def reflectance(self, t: int, bands: Sequence[str] | None = None) -> np.ndarray:
        """Harmonised float32 reflectance ``(B, H, W)`` of time step ``t``; NaN where no data."""
        idx = [self.band_index(b) for b in (bands or self.bands)]
        dn = self.data[t, idx]
        out = (dn.astype(np.float32) - np.float32(self.acquisitions[t].offset)) / np.float32(10000.0)
        out[:, (~self.valid[t]) | (dn == 0).any(axis=0)] = np.nan
        return out

    def select(self, indices: Sequence[int]) -> "SceneStack":
        """A stack of the given time steps."""
        idx = list(indices)
        return replace(
            self,
            data=self.data[idx],
            valid=self.valid[idx],
            scl=None if self.scl is None else self.scl[idx],
            acquisitions=tuple(self.acquisitions[i] for i in idx),
        )

    def between(self, start: date, end: date) -> "SceneStack":
        """Time steps with ``start <= date <= end``."""
        return self.select([i for i, a in enumerate(self.acquisitions) if start <= a.date <= end])

    @staticmethod
    def concat(stacks: Sequence["SceneStack"]) -> "SceneStack":
        """Join stacks on the same grid and bands, sorted by time."""
        stacks = [s for s in stacks if len(s)]
        if not stacks:
            raise ValueError("no stacks to concatenate")
        first = stacks[0]
        acq = [a for s in stacks for a in s.acquisitions]
        order = sorted(range(len(acq)), key=lambda i: acq[i].time)
        data = np.concatenate([s.data for s in stacks])[order]
        valid = np.concatenate([s.valid for s in stacks])[order]
        scl = None if any(s.scl is None for s in stacks) else np.concatenate([s.scl for s in stacks])[order]
        return SceneStack(first.grid, first.bands, data, valid, scl, tuple(acq[i] for i in order))
