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


def prepare_read(
    source_name: str, aoi: AOI, acquisitions: Sequence[Acquisition], grid: Grid | None, bands: Sequence[str]
) -> tuple[Grid, tuple[str, ...], list[Acquisition]]:
    """Check and normalise the arguments of ``Source.read``: the grid (default ``aoi.grid()``),
    the band names, and the acquisitions sorted by time.

    Raises
    ------
    UsageError
        For a band name that is not one of :data:`pipeline.scene.ALL_BANDS`.
    NoDataError
        When there is nothing to read.
    """
    from ..errors import NoDataError, UsageError

    grid = grid or aoi.grid()
    bands = tuple(bands)
    bad = [b for b in bands if b not in ALL_BANDS]
    if bad:
        raise UsageError(f"unknown band(s) {bad}; valid bands are {', '.join(ALL_BANDS)}")
    acqs = sorted(acquisitions, key=lambda a: a.time)
    if not acqs:
        raise NoDataError(f"{source_name}: no acquisitions to read for AOI {aoi.id}; widen the dates or raise max_cloud")
    return grid, bands, acqs
