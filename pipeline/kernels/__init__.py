"""Change kernels: pixel metrics between two dates, IR-MAD and automatic thresholds.

Inputs are (B, H, W) uint16 DN (0 = no data, offsets subtracted) or float32 reflectance (NaN = no
data), numpy or dask; outputs are float32 with NaN where no data. numpy input runs fused, parallel
numba kernels that stream the data in rows; dask input runs the same kernels per block.
"""

from .irmad import IRMADResult, irmad, irmad_transform, mad_variates, nochange_mask
from .metrics import INDEX_BANDS, INDICES, cva, cva_direction, index, index_deltas, log_ratio, zscore_cva
from .thresholds import THRESHOLDS, apply_threshold, threshold

__all__ = [
    "INDEX_BANDS",
    "INDICES",
    "IRMADResult",
    "THRESHOLDS",
    "apply_threshold",
    "cva",
    "cva_direction",
    "index",
    "index_deltas",
    "irmad",
    "irmad_transform",
    "log_ratio",
    "mad_variates",
    "nochange_mask",
    "threshold",
    "zscore_cva",
]
