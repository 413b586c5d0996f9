"""The plug-in point for imagery: every source implements :class:`Source`."""

from __future__ import annotations

from datetime import date
from typing import Protocol, Sequence, runtime_checkable

from ..aoi import AOI
from ..grid import Grid
from ..scene import ALL_BANDS, Acquisition, SceneStack

__all__ = ["Source"]


@runtime_checkable
class Source(Protocol):
    """A Sentinel-2 archive.

    ``search`` lists acquisitions (one per solar day and platform, duplicates merged) over the AOI
    between two dates inclusive; ``read`` returns them as a :class:`SceneStack` on ``grid``
    (default ``aoi.grid()``), all bands resampled onto the 10 m grid (bilinear for reflectance,
    nearest for SCL), offsets recorded per acquisition in ``Acquisition.offset``.
    """

    name: str

    def search(self, aoi: AOI, start: date, end: date, *, max_cloud: float | None = None) -> list[Acquisition]:
        ...

    def read(
        self,
        aoi: AOI,
        acquisitions: Sequence[Acquisition],
        *,
        grid: Grid | None = None,
        bands: Sequence[str] = ALL_BANDS,
    ) -> SceneStack:
        ...
