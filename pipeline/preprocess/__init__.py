"""Preprocessing: harmonise -> masks -> co-register -> composites -> radiometric normalisation.

Each step is one module: :mod:`.harmonise`, :mod:`.cloudmask`, :mod:`.coregister`,
:mod:`.composite`, :mod:`.normalise`. :mod:`pipeline.detect` chains them.
"""

from __future__ import annotations

from .cloudmask import MASK_METHODS, MaskParams, MaskResult, mask_stack, scl_mask, spectral_cloud_mask
from .composite import Composite, median_composite
from .coregister import ShiftEstimate, apply_shift, estimate_shift
from .harmonise import Harmonised, harmonise, offset_handling
from .normalise import Normalisation, apply_normalisation, normalise, tls_fit

__all__ = [
    "MASK_METHODS",
    "MaskParams",
    "MaskResult",
    "mask_stack",
    "scl_mask",
    "spectral_cloud_mask",
    "Composite",
    "median_composite",
    "ShiftEstimate",
    "apply_shift",
    "estimate_shift",
    "Harmonised",
    "harmonise",
    "offset_handling",
    "Normalisation",
    "apply_normalisation",
    "normalise",
    "tls_fit",
]
