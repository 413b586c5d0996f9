"""From a change mask to labelled regions and their measured properties.

The mask is cleaned (morphological opening, then speckle removal), its connected regions are
labelled, and every region is measured: size and shape with :mod:`skimage.measure` (area,
elongation, orientation, solidity, rectangularity) and the mean of every index delta and band
inside it. The classifier (:mod:`pipeline.objects.classify`) reads nothing else.

Shape conventions
-----------------
``orientation_deg`` is the azimuth of the region's major axis on the map, degrees clockwise from
grid north, folded into ``[0, 180)`` (0 = north-south, 90 = east-west). ``elongation`` is the ratio
of the inertia ellipse's major to minor axis (minor floored at one pixel), 1 for a disc.
``rectangularity`` is the area divided by the area of the minimum rotated rectangle around the
pixel squares: 1 for any rectangle made of whole pixels, about 0.785 for a disc, lower for
ragged or L-shaped regions.
"""

from __future__ import annotations

import logging
import math
from typing import Callable, Mapping, Sequence

import numpy as np
import shapely
from scipy import ndimage
from skimage import measure

from ..errors import UsageError
from ..kernels.morphology import binary_closing, binary_opening, label

log = logging.getLogger(__name__)

__all__ = ["clean_labels", "clean_mask", "label_regions", "region_table", "relabel", "label_sizes", "DELTA_KEYS"]

DELTA_KEYS = ("ndvi", "ndbi", "bsi", "dbi", "mndwi", "brightness")
"""Index deltas (after - before) the classifier knows; any subset may be given."""



def _check_2d(name: str, arr: np.ndarray, shape: tuple[int, int] | None = None) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 2:
        raise UsageError(f"{name} must be a 2-D (H, W) array, got shape {arr.shape}")
    if shape is not None and arr.shape != tuple(shape):
        raise UsageError(f"{name} has shape {arr.shape} but the change mask has shape {tuple(shape)}; pass arrays on one grid")
    return arr


def relabel(labels: np.ndarray, lut: np.ndarray, *, rows: int = 256) -> np.ndarray:
    """``labels[...] = lut[labels]`` in place, with no second full-size label image; returns
    ``labels``. A (H, W) int32 image with an int32 table goes through one parallel numba pass
    (:func:`pipeline.kernels._numba.relabel_lut`; 36 -> 4 ms on a 4096^2 image), any other a band
    of ``rows`` rows at a time. A label outside the table raises ``IndexError`` as numpy does."""
    from ..kernels import _numba as K

    if labels.ndim == 2 and labels.dtype == np.int32 and lut.ndim == 1 and lut.dtype == np.int32:
        bad = K.relabel_lut(labels, lut)
        if bad:
            raise IndexError(f"{bad} labels are outside the lookup table of {lut.shape[0]} entries")
        return labels
    for r in range(0, labels.shape[0], rows):
        band = labels[r : r + rows]
        band[...] = lut[band]
    return labels


def label_sizes(labels: np.ndarray, n: int, *, rows: int = 256) -> np.ndarray:
    """Pixels of each label 0..n of an integer label image: ``np.bincount(labels.ravel(),
    minlength=n + 1)``. A (H, W) int32 image with labels in 0..n is counted in one parallel numba
    pass (:func:`pipeline.kernels._numba.label_counts`; 27 -> 4 ms on a 4096^2 image); otherwise a
    band of ``rows`` rows at a time (``bincount`` casts its input to int64: a whole 4096^2 int32
    image would take a 128 MiB copy)."""
    from ..kernels import _numba as K

    if labels.ndim == 2 and labels.dtype == np.int32 and labels.size:
        counts, outside = K.label_counts(labels, int(n))
        if not outside:
            return counts
    sizes = np.zeros(n + 1, np.int64)
    for r in range(0, labels.shape[0], rows):
        sizes += np.bincount(labels[r : r + rows].ravel(), minlength=n + 1)
    return sizes


def clean_labels(
    mask: np.ndarray,
    *,
    opening_radius_px: int = 1,
    min_pixels: int = 3,
    connectivity: int = 2,
    closing_radius_px: int = 0,
) -> tuple[np.ndarray, int]:
    """Clean a change mask (:func:`clean_mask`) and label what is left in one labelling pass.

    Parameters
    ----------
    mask : (H, W) bool
    opening_radius_px, min_pixels, connectivity, closing_radius_px : int, keyword-only
        As for :func:`clean_mask`; ``connectivity`` also joins the labelled regions.

    Returns
    -------
    labels : (H, W) int32
        0 background, the kept regions numbered 1..n in raster order of their first pixel (as
        :func:`label_regions` numbers them).
    n : int

    Notes
    -----
    Memory: the labels and two (H, W) bool temporaries, two more (padded) with the closing. One
    labelling (:func:`pipeline.kernels.morphology.label`, ``scipy.ndimage.label``'s labels) serves
    both the size filter and the labels, instead of a labelling inside the filter and another after it.
    """
    mask = _check_2d("mask", mask)
    if mask.dtype != bool:
        raise UsageError(f"mask must be a bool array, got dtype {mask.dtype}")
    if min(opening_radius_px, min_pixels, closing_radius_px) < 0:
        raise UsageError(
            "opening_radius_px, min_pixels and closing_radius_px must be >= 0, got "
            f"{opening_radius_px}, {min_pixels} and {closing_radius_px}"
        )
    if connectivity not in (1, 2):
        raise UsageError(f"connectivity must be 1 or 2, got {connectivity}")
    if closing_radius_px > 0:
        # the image edge erodes like any unchanged pixel, so what touches it is not eaten into
        mask = binary_closing(mask, radius_px=int(closing_radius_px))
    if opening_radius_px > 0:
        mask = binary_opening(mask, radius_px=int(opening_radius_px))
    labels, n = label(mask, connectivity=connectivity)
    if min_pixels > 1 and n:
        keep = label_sizes(labels, n) >= min_pixels
        keep[0] = False
        if not keep[1:].all():  # renumber the kept regions 1..n, in the same (raster) order
            lut = np.zeros(n + 1, np.int32)
            lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
            relabel(labels, lut)
            n = int(keep.sum())
    return labels, int(n)


def clean_mask(
    mask: np.ndarray,
    *,
    opening_radius_px: int = 1,
    min_pixels: int = 3,
    connectivity: int = 2,
    closing_radius_px: int = 0,
) -> np.ndarray:
    """Join fragments, then remove thin slivers and speckle from a change mask.

    The steps, in order: binary closing (``closing_radius_px``), binary opening
    (``opening_radius_px``), removal of regions smaller than ``min_pixels``. Closing before
    opening is the morphological post-processing of SiROC (Kondmann et al. 2021, IEEE TGRS, arXiv
    2110.02068), which turns pixel changes into object changes: a change a few pixels across is
    rarely flagged whole (a roof and its shadowed side, a construction site with an unchanged
    patch), so its fragments are joined before slivers are removed.

    Parameters
    ----------
    mask : (H, W) bool
        Changed pixels.
    closing_radius_px : int, keyword-only
        Radius (pixels) of the disc of a binary closing (dilation, then erosion) applied first;
        0 skips it (default). A radius of 2 joins fragments up to 4 pixels apart and fills
        notches of that width; it never adds a region where no pixel changed.
    opening_radius_px : int, keyword-only
        Radius (pixels) of the disc used for a binary opening; 0 skips it. A radius of 1 (a 3x3
        cross) removes lines one or two pixels wide, typical of misregistered edges, keeps
        strips three pixels wide in any direction, and clips the corner pixel of rectangles.
    min_pixels : int, keyword-only
        Connected regions with fewer pixels are removed.
    connectivity : {1, 2}, keyword-only
        Neighbourhood for the size filter: 1 = 4-connected, 2 = 8-connected.

    Returns
    -------
    (H, W) bool
        A new array; ``mask`` is not modified.

    Notes
    -----
    Memory: the int32 labels of the size filter and two bool temporaries, two more (padded) with
    the closing (see :func:`clean_labels`, which also returns the labels).
    """
    return (
        clean_labels(
            mask,
            opening_radius_px=opening_radius_px,
            min_pixels=min_pixels,
            connectivity=connectivity,
            closing_radius_px=closing_radius_px,
        )[0]
        > 0
    )


def label_regions(mask: np.ndarray, *, connectivity: int = 2) -> tuple[np.ndarray, int]:
    """Label the connected regions of a mask.

    Parameters
    ----------
    mask : (H, W) bool
    connectivity : {1, 2}, keyword-only
        1 = 4-connected, 2 = 8-connected (default: diagonal neighbours join).

    Returns
    -------
    labels : (H, W) int32
        0 background, regions numbered 1..n in raster order.
    n : int
        Number of regions.
    """
    mask = _check_2d("mask", mask)
    labels, n = measure.label(mask, connectivity=connectivity, return_num=True)
    return labels.astype(np.int32, copy=False), int(n)


def _region_means(flat_labels: np.ndarray, flat_index: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Mean of the finite ``values`` per label 1..n (NaN when a region has no finite value).

    ``flat_index`` holds the flat positions of the labelled pixels and ``flat_labels`` their
    labels, so each layer costs one gather over the objects only, not a pass over the grid;
    ``flat_index`` None: ``values`` are already those of the labelled pixels.
    """
    v = np.asarray(values).ravel()[flat_index].astype(np.float64) if flat_index is not None else np.asarray(values, np.float64)
    finite = np.isfinite(v)
    lab = flat_labels[finite]
    sums = np.bincount(lab, weights=v[finite], minlength=n + 1)[: n + 1]
    counts = np.bincount(lab, minlength=n + 1)[: n + 1]
    out = np.full(n + 1, np.nan)
    np.divide(sums, counts, out=out, where=counts > 0)
    return out


def _min_rect(region_mask: np.ndarray) -> tuple[float, float, float]:
    """Minimum rotated rectangle around the pixel squares of a region: (area, long, short) in px."""
    rr, cc = np.nonzero(region_mask)
    # only boundary pixels can be hull vertices: keep pixels with a background 4-neighbour
    edge = region_mask & ~ndimage.binary_erosion(region_mask, border_value=0)
    er, ec = np.nonzero(edge)
    if er.size:
        rr, cc = er, ec
    corners = np.concatenate(
        [np.stack([cc + dx, rr + dy], axis=1) for dx in (0.0, 1.0) for dy in (0.0, 1.0)], axis=0
    )
    rect = shapely.oriented_envelope(shapely.multipoints(corners))
    xy = np.asarray(rect.exterior.coords)[:4]
    sides = np.hypot(*(np.roll(xy, -1, axis=0) - xy).T)
    a, b = float(sides[0]), float(sides[1])
    return float(rect.area), max(a, b), min(a, b)


def region_table(
    labels: np.ndarray,
    magnitude: np.ndarray | None = None,
    deltas: "Mapping[str, np.ndarray] | Callable[[np.ndarray], Mapping[str, np.ndarray]] | None" = None,
    *,
    before_img: np.ndarray | None = None,
    after_img: np.ndarray | None = None,
    bands: Sequence[str] | None = None,
    pixel_size_m: float = 10.0,
) -> dict[int, dict]:
    """Measure every labelled region.

    Parameters
    ----------
    labels : (H, W) int
        Region labels, 0 background (from :func:`label_regions`).
    magnitude : (H, W) float32, optional
        Change magnitude (unitless); NaN ignored.
    deltas : dict of str to (H, W) float32, or callable, optional
        Index deltas after - before (keys such as :data:`DELTA_KEYS`); NaN ignored. A callable
        takes the flat indices of the labelled pixels ((n,) int64) and returns the deltas of those
        pixels only (dict of str to (n,) float32), so they need not be computed over the grid.
    before_img, after_img : (B, H, W) float32, optional, keyword-only
        Reflectance (0-1) composites with band names ``bands``; NaN ignored.
    bands : sequence of str, keyword-only
        Names of the B bands (e.g. ``("B02", "B03", "B04", "B08", "B11", "B12")``); required with
        the images.
    pixel_size_m : float, keyword-only
        Pixel side in metres (for areas and lengths in metres).

    Returns
    -------
    dict of int to dict
        For each label a JSON-able dict with ``label``, ``area_px``, ``area_m2``, ``centroid_rc``
        (row, col of the centroid, pixels), ``bbox`` (min_row, min_col, max_row, max_col),
        ``length_m`` and ``width_m`` (sides of the minimum rotated rectangle), ``elongation``,
        ``orientation_deg``, ``rectangularity``, ``solidity``, ``extent``, ``mean_magnitude``,
        ``d_<key>`` for every delta given, and ``before_<band>`` / ``after_<band>`` for every band
        given. Missing or all-NaN measurements are ``None``.

    Notes
    -----
    Cost: one :func:`skimage.measure.regionprops` pass (about 1.5 ms per region) plus, per input
    layer, one gather and ``bincount`` over the labelled pixels only; memory: a few float64
    arrays the size of the labelled pixels.
    """
    labels = _check_2d("labels", labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise UsageError(f"labels must be an integer array, got dtype {labels.dtype}")
    shape = labels.shape
    layers: dict[str, np.ndarray] = {}
    if magnitude is not None:
        layers["mean_magnitude"] = _check_2d("magnitude", magnitude, shape)
    if not callable(deltas):
        for key, arr in (deltas or {}).items():
            if arr is None:
                continue
            layers[f"d_{key}"] = _check_2d(f"deltas[{key!r}]", arr, shape)
    for which, img in (("before", before_img), ("after", after_img)):
        if img is None:
            continue
        img = np.asarray(img)
        if bands is None:
            raise UsageError(f"{which}_img given without bands; pass bands=(names of its {img.shape[0] if img.ndim == 3 else '?'} bands)")
        if img.ndim != 3 or img.shape[1:] != shape or img.shape[0] != len(bands):
            raise UsageError(
                f"{which}_img must have shape (len(bands)={len(bands)}, {shape[0]}, {shape[1]}), got {img.shape}"
            )
        for i, b in enumerate(bands):
            layers[f"{which}_{b}"] = img[i]

    props = measure.regionprops(labels)
    n = int(labels.max()) if labels.size else 0
    flat_index = np.flatnonzero(labels)
    flat_labels = labels.ravel()[flat_index]
    means = {k: _region_means(flat_labels, flat_index, v, n) for k, v in layers.items()}
    if callable(deltas):
        for key, vals in deltas(flat_index).items():
            vals = np.asarray(vals)
            if vals.shape != flat_index.shape:
                raise UsageError(f"deltas[{key!r}] of the labelled pixels has shape {vals.shape}; expected {flat_index.shape}")
            means[f"d_{key}"] = _region_means(flat_labels, None, vals, n)
    px_area = float(pixel_size_m) ** 2
    table: dict[int, dict] = {}
    for rp in props:
        lab = int(rp.label)
        area = int(rp.area)
        rect_area, long_px, short_px = _min_rect(rp.image)
        major = float(rp.axis_major_length)
        minor = float(rp.axis_minor_length)
        azimuth = (-math.degrees(float(rp.orientation))) % 180.0
        d = {
            "label": lab,
            "area_px": area,
            "area_m2": area * px_area,
            "centroid_rc": [float(rp.centroid[0]), float(rp.centroid[1])],
            "bbox": [int(v) for v in rp.bbox],
            "length_m": long_px * pixel_size_m,
            "width_m": short_px * pixel_size_m,
            "elongation": max(major, 1.0) / max(minor, 1.0),
            "orientation_deg": round(azimuth, 3) % 180.0,
            "rectangularity": min(1.0, area / rect_area) if rect_area > 0 else 1.0,
            "solidity": float(rp.solidity),
            "extent": float(rp.extent),
        }
        for key, m in means.items():
            v = m[lab]
            d[key] = None if not np.isfinite(v) else float(v)
        table[lab] = d
    return table
