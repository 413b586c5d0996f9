"""Clear masks on planted arrays: SCL classes with dilation, spectral cloud, haze and shadow tests."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.preprocess.cloudmask import MaskParams, mask_stack, scl_mask, spectral_cloud_mask
from pipeline.scene import SCL

BANDS = ("B02", "B03", "B04", "B8A", "B11", "B12")

SAND = (0.15, 0.22, 0.30, 0.35, 0.45, 0.40)
CONCRETE = (0.25, 0.26, 0.28, 0.30, 0.35, 0.30)
CLOUD = (0.45, 0.46, 0.45, 0.50, 0.35, 0.25)


def _image(spectrum, h=20, w=20):
    return np.broadcast_to(np.asarray(spectrum, np.float32)[:, None, None], (len(spectrum), h, w)).copy()


def test_scl_mask_classes_and_dilation():
    """One high-cloud pixel at (10, 10) grows to a disk of radius 3; vegetation is never masked."""
    scl = np.full((21, 21), SCL.VEGETATION, np.uint8)
    scl[10, 10] = SCL.CLOUD_HIGH
    m = scl_mask(scl, dilate_px=3)
    assert m[10, 10] and m[10, 13] and m[13, 10] and m[12, 12]
    assert not m[10, 15] and not m[15, 15] and not m[0, 0]
    for code in (0, 1, 3, 8, 9, 10):
        s = np.full((5, 5), SCL.NOT_VEGETATED, np.uint8)
        s[2, 2] = code
        assert scl_mask(s, dilate_px=0).sum() == 1, code
    for code in (2, 4, 5, 6, 7, 11):
        assert not scl_mask(np.full((5, 5), code, np.uint8), dilate_px=2).any(), code


def test_spectral_cloud_separates_cloud_from_sand_and_concrete():
    img = np.concatenate([_image(SAND, 4), _image(CONCRETE, 4), _image(CLOUD, 4)], axis=1)
    m = spectral_cloud_mask(img, BANDS)
    assert not m[:8].any()
    assert m[8:].all()


def test_spectral_cloud_needs_bands():
    with pytest.raises(ValueError, match="B11"):
        spectral_cloud_mask(np.zeros((3, 4, 4), np.float32), ("B02", "B04", "B8A"))


def _series(T=6):
    rng = np.random.default_rng(1)
    base = _image(SAND, 30, 30)
    stack = np.stack([base + rng.normal(0, 0.003, base.shape).astype(np.float32) for _ in range(T)])
    return stack


def test_haze_and_shadow_masked_relative_to_clear_median_but_persistent_darkening_kept():
    """Planted: haze (+0.08 blue, +0.01 SWIR) on t=2 rows 0-9; shadow (NIR/SWIR x0.4) on t=4 rows 20-29;
    a persistent dark surface (all bands x0.4, t >= 1) in columns 25-29 of rows 10-19."""
    s = _series()
    b = {n: i for i, n in enumerate(BANDS)}
    s[2, b["B02"], 0:10] += 0.08
    s[2, b["B03"], 0:10] += 0.05
    s[2, b["B11"], 0:10] += 0.01
    s[4, :, 20:30] *= 0.4
    s[1:, :, 10:20, 25:30] *= 0.4
    r = mask_stack(s, BANDS, method="spectral", params=MaskParams(dilate_px=0))
    assert not r.clear[2, 0:10].any()
    assert r.clear[2, 10:30, :25].all()
    assert not r.clear[4, 20:30].any()
    assert r.clear[4, 0:20, :25].all()
    # the persistent dark surface is part of the clear median: never masked after it appeared
    assert r.clear[[1, 3, 5], 10:20, 25:30].all()


def test_mask_stack_fractions_over_aoi_polygon():
    """AOI = left half; t=1 has SCL cloud over the left 5 columns of 20, t=2 has no data everywhere."""
    T, H, W = 3, 10, 20
    refl = np.stack([_image(SAND, H, W)] * T)
    refl[2] = np.nan
    scl = np.full((T, H, W), SCL.NOT_VEGETATED, np.uint8)
    scl[1, :, :5] = SCL.CLOUD_MEDIUM
    aoi = np.zeros((H, W), bool)
    aoi[:, :10] = True
    r = mask_stack(refl, BANDS, scl=scl, aoi_mask=aoi, params=MaskParams(dilate_px=0))
    assert r.method == "scl+spectral"
    np.testing.assert_allclose(r.valid_fraction, [1.0, 1.0, 0.0])
    np.testing.assert_allclose(r.clear_fraction, [1.0, 0.5, 0.0])
    np.testing.assert_allclose(r.cloud_fraction, [0.0, 0.5, 1.0])
    assert r.clear.dtype == bool and r.clear.shape == (T, H, W)


def test_mask_stack_unknown_method_lists_valid_names():
    with pytest.raises(ValueError, match="scl\\+spectral"):
        mask_stack(np.zeros((1, 6, 4, 4), np.float32), BANDS, method="magic")
    with pytest.raises(ValueError, match="SCL"):
        mask_stack(np.zeros((1, 6, 4, 4), np.float32), BANDS, method="scl")
