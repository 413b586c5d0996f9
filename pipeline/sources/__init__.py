"""Imagery sources, chosen by name: ``get_source("simulated")``.

Names: ``simulated`` (built in, offline), ``sentinelhub`` and ``cdse`` (the sentinelhub client),
``earth-search`` and ``planetary-computer`` (STAC APIs), any ``http(s)://`` STAC API URL, or a
path to a local static STAC catalog (a folder or its ``catalog.json``).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable

from ..errors import UsageError
from .base import Source

__all__ = ["Source", "get_source", "SOURCES"]


def _lazy(module: str, factory: str, **preset: Any) -> Callable[..., Source]:
    def make(**options: Any) -> Source:
        mod = importlib.import_module(f"{__name__}.{module}")
        return getattr(mod, factory)(**{**preset, **options})

    make.__name__ = f"{module}.{factory}"
    return make


SOURCES: dict[str, Callable[..., Source]] = {
    "simulated": _lazy("simulated", "SimulatedSource"),
    "sentinelhub": _lazy("sentinelhub", "SentinelHubSource", service="sentinelhub"),
    "cdse": _lazy("sentinelhub", "SentinelHubSource", service="cdse"),
    "earth-search": _lazy("stac", "StacApiSource", url="https://earth-search.aws.element84.com/v1", name="earth-search"),
    "planetary-computer": _lazy(
        "stac", "StacApiSource", url="https://planetarycomputer.microsoft.com/api/stac/v1", name="planetary-computer"
    ),
}


def get_source(spec: "str | Source", **options: Any) -> Source:
    """Build a source from a name, a STAC API URL or a local catalog path.

    Raises
    ------
    UsageError
        For an unknown name, listing the valid ones.
    """
    if not isinstance(spec, str):
        return spec
    if spec in SOURCES:
        return SOURCES[spec](**options)
    if spec.startswith(("http://", "https://")):
        return _lazy("stac", "StacApiSource", url=spec, name=spec)(**options)
    p = Path(spec)
    if p.exists():
        return _lazy("stac", "LocalStacSource", path=str(p))(**options)
    raise UsageError(
        f"unknown source {spec!r}: use one of {', '.join(SOURCES)}, a STAC API URL (https://...) "
        "or the path of a local STAC catalog"
    )
