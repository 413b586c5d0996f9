"""Argument checks shared by the public kernel wrappers (shapes, dtypes, offsets, band names)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import UsageError

SUPPORTED_DTYPES = (np.dtype(np.uint16), np.dtype(np.float32))
"""Input dtypes every kernel accepts: uint16 DN (0 = no data) or float32 reflectance (NaN = no data)."""


def is_dask(x) -> bool:
    """True for a dask array (checked without importing dask)."""
    return type(x).__module__.split(".")[0] == "dask"


def as_array(x, what: str):
    """Return ``x`` unchanged if it is a numpy or dask array, else ``np.asarray(x)``."""
    if isinstance(x, np.ndarray) or is_dask(x):
        return x
    return np.asarray(x)


def check_image(image, what: str, *, ndim: int = 3):
    """Check one image: ``ndim`` dimensions and a supported dtype. Returns the array."""
    image = as_array(image, what)
    if image.ndim != ndim:
        shape = "(B, H, W)" if ndim == 3 else "(H, W)"
        raise UsageError(f"{what} must be a {shape} array, got shape {tuple(image.shape)}")
    if image.dtype not in SUPPORTED_DTYPES:
        raise UsageError(
            f"{what} has dtype {image.dtype}; kernels take uint16 DN (0 = no data) or float32 reflectance "
            "(NaN = no data): convert with .astype(np.float32) / 10000 or keep the delivered uint16"
        )
    return image


def check_pair(before, after):
    """Check a before/after pair: same (B, H, W) shape, supported dtypes."""
    before = check_image(before, "before")
    after = check_image(after, "after")
    if tuple(before.shape) != tuple(after.shape):
        raise UsageError(
            f"before and after must have the same (B, H, W) shape, got {tuple(before.shape)} and {tuple(after.shape)}"
        )
    return before, after


def check_offset(offset, dtype, what: str) -> float:
    """An offset is an integer DN subtracted from uint16 input; float input must have offset 0."""
    try:
        value = float(offset)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{what} must be a number (DN), got {offset!r}") from exc
    if not np.isfinite(value) or value < 0 or value > 65535:
        raise UsageError(f"{what} must be a DN between 0 and 65535, got {offset!r}")
    if dtype == np.float32 and value != 0:
        raise UsageError(
            f"{what}={offset!r} but the image is float32 reflectance; DN offsets apply to uint16 input only "
            "(pass 0 for float input)"
        )
    return value


def check_offsets(offsets, before, after) -> tuple[float, float]:
    try:
        ob, oa = offsets
    except (TypeError, ValueError) as exc:
        raise UsageError(f"offsets must be a pair (before_offset, after_offset) in DN, got {offsets!r}") from exc
    return check_offset(ob, before.dtype, "offsets[0]"), check_offset(oa, after.dtype, "offsets[1]")


def check_out(out, shape: tuple[int, ...], what: str = "out") -> np.ndarray:
    """Allocate a float32 output, or check a caller-supplied one (C-contiguous float32 of ``shape``)."""
    if out is None:
        return np.empty(shape, dtype=np.float32)
    if not isinstance(out, np.ndarray) or out.dtype != np.float32 or tuple(out.shape) != tuple(shape):
        raise UsageError(
            f"{what} must be a float32 numpy array of shape {tuple(shape)}, got "
            f"{getattr(out, 'dtype', type(out).__name__)} {tuple(getattr(out, 'shape', ()))}"
        )
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise UsageError(f"{what} must be a writeable C-contiguous array")
    return out


def check_mask(mask, shape_hw: tuple[int, int], what: str = "mask"):
    """A (H, W) bool mask or None."""
    if mask is None:
        return None
    mask = as_array(mask, what)
    if tuple(mask.shape) != tuple(shape_hw):
        raise UsageError(f"{what} must have shape (H, W) = {tuple(shape_hw)}, got {tuple(mask.shape)}")
    if mask.dtype != bool:
        raise UsageError(f"{what} must be a bool array (True = use the pixel), got dtype {mask.dtype}")
    return mask


def band_position(bands: Sequence[str], name: str, *, needed_by: str, n_bands: int) -> int:
    """Index of band ``name`` in ``bands`` (the names along axis 0)."""
    if bands is None:
        raise UsageError(f"{needed_by} needs bands=<names along axis 0>, e.g. ('B02', 'B03', 'B04', 'B08', 'B11', 'B12')")
    bands = tuple(bands)
    if len(bands) != n_bands:
        raise UsageError(f"bands names {len(bands)} bands {bands} but the image has {n_bands} along axis 0")
    try:
        return bands.index(name)
    except ValueError:
        raise UsageError(f"{needed_by} needs band {name}, which is not among bands={bands}") from None
