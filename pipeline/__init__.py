"""s2watch: change monitoring of airbases and ports with Sentinel-2 L2A imagery.

The few names a notebook needs::

    from pipeline import load_aoi, get_source
    from pipeline.detect import detect
    from pipeline.outputs import write_outputs
"""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("s2watch")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

logging.getLogger(__name__).addHandler(logging.NullHandler())

from .aoi import AOI, load_aoi  # noqa: E402
from .errors import PipelineError  # noqa: E402
from .grid import Grid  # noqa: E402
from .scene import Acquisition, SceneStack  # noqa: E402
from .sources import get_source  # noqa: E402
from .timeseries import feature_series, flagged_dates, runway_profile  # noqa: E402

__all__ = [
    "AOI",
    "Acquisition",
    "Grid",
    "PipelineError",
    "SceneStack",
    "feature_series",
    "flagged_dates",
    "get_source",
    "load_aoi",
    "runway_profile",
    "__version__",
]
