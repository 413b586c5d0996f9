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


GROUND = (0.06, 0.08, 0.08, 0.25, 0.20, 0.12)  # mixed town and grass, dark in the visible
ROOF = (0.38, 0.39, 0.40, 0.44, 0.40, 0.35)  # bright white metal roof: passes the cloud test


def _fractal_alpha(h, w, *, centre, radius_px, edge_px, seed):
    """Cloud opacity (0-1): a fractal blob (octaves of smoothed noise over a radial envelope of
    ``radius_px``) whose edge fades out over about ``edge_px`` pixels (smoothstep)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    noise = sum(ndimage.gaussian_filter(rng.normal(0, 1, (h, w)), s) * s for s in (2, 4, 8, 16))
    noise /= noise.std()
    y, x = np.mgrid[0:h, 0:w]
    env = 1.0 - np.hypot(y - centre[0], x - centre[1]) / radius_px
    x01 = np.clip((env + 0.15 * noise) * radius_px / edge_px, 0.0, 1.0)
    return (x01 * x01 * (3.0 - 2.0 * x01)).astype(np.float32)


def _single_date_scene():
    """Planted on one date, 10 m pixels, 300 x 300 (3 km), dark town-and-grass ground:

    * a fractal cumulus ~1.2 km across, edges fading over ~250 m, centred at (100, 100);
    * a small fragment of it (~120 px of cloud-test pixels, below the surface area bound)
      centred at (100, 185), ~100 m off the cumulus edge;
    * a soft isolated puff ~300 m across centred at (60, 250);
    * a bright rectangular roof of 10 x 12 px (1.2 ha) at rows 230-239, columns 200-211,
      sharp-edged, more than 1 km from the cumulus.
    """
    h = w = 300
    rng = np.random.default_rng(5)
    ground = _image(GROUND, h, w) + rng.normal(0, 0.004, (6, h, w)).astype(np.float32)
    alpha = np.maximum.reduce([
        _fractal_alpha(h, w, centre=(100, 100), radius_px=60, edge_px=25, seed=1),
        _fractal_alpha(h, w, centre=(100, 185), radius_px=10, edge_px=6, seed=3),
        _fractal_alpha(h, w, centre=(60, 250), radius_px=15, edge_px=10, seed=2),
    ])
    cloud = np.asarray(CLOUD, np.float32)[:, None, None]
    refl = (1.0 - alpha) * ground + alpha * cloud
    refl[:, 230:240, 200:212] = np.asarray(ROOF, np.float32)[:, None, None]
    return refl[None], alpha


ROOF_ZONE = (slice(225, 245), slice(195, 217))  # the roof and its 3-pixel dilation ring


def test_single_date_keeps_sharp_small_roof_but_masks_fractal_and_soft_clouds():
    """Without a window median, the bright roof passes the spectral cloud test; the surface guard
    keeps it (small, sharp-edged, far from any cloud body) while the cumulus, its fragment and
    the puff stay masked exactly as without the guard. With the guard off (``surface_max_px=0``)
    the roof is masked: the guard is what keeps it."""
    refl, alpha = _single_date_scene()
    assert spectral_cloud_mask(refl[0], BANDS)[230:240, 200:212].all()  # the roof looks like cloud
    r = mask_stack(refl, BANDS, method="spectral")
    assert r.clear[0, 230:240, 200:212].all()
    off = mask_stack(refl, BANDS, method="spectral", params=MaskParams(surface_max_px=0))
    assert not off.clear[0, 230:240, 200:212].any()
    opaque = alpha > 0.6
    assert opaque[:, :170].sum() > 5000 and opaque[80:120, 172:200].sum() > 50 and opaque[:, 230:].sum() > 200
    assert not r.clear[0][opaque].any()
    outside = np.ones(alpha.shape, bool)
    outside[ROOF_ZONE] = False
    np.testing.assert_array_equal(r.clear[0][outside], off.clear[0][outside])
    # the fragment is small and soft: it is masked because the cumulus is near
    near_off = mask_stack(refl, BANDS, method="spectral", params=MaskParams(surface_clearance_px=0))
    assert near_off.clear[0, 80:120, 172:200][opaque[80:120, 172:200]].all()


def test_surface_guard_only_without_a_window_median():
    """With 3 dates the median test decides: a roof on all three dates is kept, the guard is not used."""
    refl, _ = _single_date_scene()
    r = mask_stack(np.concatenate([refl] * 3), BANDS, method="spectral", params=MaskParams(surface_max_px=0))
    assert r.clear[:, 230:240, 200:212].all()


def test_scl_in_equals_isin_for_every_code_and_shape():
    from pipeline.preprocess.cloudmask import scl_in

    rng = np.random.default_rng(3)
    for shape in ((256, 3), (4, 17, 256), (1, 1), (0, 5), (2, 0, 3)):
        scl = rng.integers(0, 256, shape).astype(np.uint8)
        for classes in (SCL.MASKED, (0,), (255, 1), ()):
            np.testing.assert_array_equal(scl_in(scl, classes), np.isin(scl, classes))
    with pytest.raises(ValueError, match="shape"):
        scl_in(np.zeros(5, np.uint8), SCL.MASKED)


def test_spectral_cloud_kernel_and_data_mask_equal_numpy():
    """The fused cloud test and the no-data mask against the plain numpy expressions, on values
    around every threshold, tiny and zero denominators and NaN bands."""
    rng = np.random.default_rng(8)
    bands = ("B02", "B03", "B04", "B8A", "B11")
    refl = rng.choice(np.float32([0.0, 5e-5, 1e-4, 0.15, 0.2, 0.2001, 0.25, 0.3, 0.5]), size=(3, 5, 40, 30))
    refl *= rng.choice(np.float32([0.8, 1.0, 1.25]), size=refl.shape)
    refl[0, 3, 2, :7] = np.nan
    refl[1, 0, 5, 5] = np.nan
    refl[2, 2, :, 3] = np.nan
    p = MaskParams()
    for t in range(3):
        b02, b04, b8a, b11 = refl[t, 0], refl[t, 2], refl[t, 3], refl[t, 4]
        with np.errstate(invalid="ignore", divide="ignore"):
            want = (b02 > p.cloud_blue) & (b02 / np.maximum(b04, 1e-4) > p.cloud_whiteness) & (b11 / np.maximum(b8a, 1e-4) < p.cloud_swir_ratio)
        got = spectral_cloud_mask(refl[t], bands, params=p)
        np.testing.assert_array_equal(got, want)
        assert want.any() and not want.all()
    res = mask_stack(refl, bands, method="spectral")
    data_ok = ~np.isnan(refl).any(axis=1)
    assert not (res.clear & ~data_ok).any()
    np.testing.assert_allclose(res.valid_fraction, data_ok.mean(axis=(1, 2)))


@pytest.mark.parametrize("use", [[True, False, True, True, False, True], [False, True, False, False, True, False]])
def test_masks_of_the_used_dates_equal_those_of_their_subset(use):
    """``use`` masks the chosen dates as if the others were not there (no copy of them): with four
    used dates the window's median tests apply, with two the single-date cloud test does; the
    dates left out come out not clear. Planted as the haze/shadow test plus a cloud on t=1."""
    s = _series()
    b = {n: i for i, n in enumerate(BANDS)}
    s[2, b["B02"], 0:10] += 0.08
    s[2, b["B11"], 0:10] += 0.01
    s[4, :, 20:30] *= 0.4
    s[1, :, 5:15, 5:15] = np.asarray(CLOUD, np.float32)[:, None, None]
    s[:, 0, 29, 29] = np.nan
    use = np.array(use)
    scl = np.full(s[:, 0].shape, SCL.NOT_VEGETATED, np.uint8)
    scl[3, 0, 0] = SCL.CLOUD_HIGH
    for method in ("spectral", "scl+spectral"):
        whole = mask_stack(s, BANDS, scl=scl, method=method, use=use)
        part = mask_stack(s[use], BANDS, scl=scl[use], method=method)
        np.testing.assert_array_equal(whole.clear[use], part.clear)
        assert not whole.clear[~use].any()
    with pytest.raises(ValueError, match="use must be"):
        mask_stack(s, BANDS, use=np.ones(3, bool))
