"""Co-registration recovers a planted sub-pixel shift and rejects unrelated images."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from pipeline.preprocess.coregister import apply_shift, estimate_shift, shift_mask


def _scene(seed=0, n=128):
    """A textured scene: smoothed noise plus a bright 'runway' strip and a few 'buildings'."""
    rng = np.random.default_rng(seed)
    img = ndimage.gaussian_filter(rng.random((n, n)), 2.0) * 0.3
    img[60:66, 10:120] += 0.2
    for r, c in rng.integers(10, n - 20, size=(8, 2)):
        img[r : r + 5, c : c + 7] += 0.15
    return img.astype(np.float32)


def _fourier_shift(img, shift):
    """Independent oracle: exact sub-pixel shift in the Fourier domain."""
    return np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(img), shift)).real.astype(np.float32)


def test_recovers_planted_subpixel_shift():
    ref = _scene()
    for planted in [(0.37, -1.21), (-0.8, 0.45), (0.0, 0.25)]:
        mov = _fourier_shift(ref, planted)
        est = estimate_shift(ref, mov, upsample=50)
        assert est.ok, est.reason
        assert abs(est.dy + planted[0]) < 0.05 and abs(est.dx + planted[1]) < 0.05, (planted, est)
        assert est.peak > 0.8


def test_recovers_shift_with_masked_cloud():
    """Planted: a bright opaque cloud over a quarter of the moving image, masked as not clear."""
    ref = _scene(1)
    mov = _fourier_shift(ref, (0.6, -0.3))
    mov[:64, :64] = 0.9
    valid = np.ones_like(mov, bool)
    valid[:64, :64] = False
    est = estimate_shift(ref, mov, moving_valid=valid, upsample=50)
    assert est.ok, est.reason
    assert abs(est.dy + 0.6) < 0.05 and abs(est.dx - 0.3) < 0.05, est


def test_apply_shift_aligns_and_propagates_nodata():
    ref = _scene(2)
    mov = _fourier_shift(ref, (0.5, -0.7))
    mov[100, 100] = np.nan
    est = estimate_shift(ref, mov, upsample=50)
    inner = (slice(8, -8), slice(8, -8))
    before_err = np.mean(np.abs(mov - ref)[inner][np.isfinite(mov[inner])])
    cubic = apply_shift(mov, est.shift, order=3)
    assert np.nanmean(np.abs(cubic - ref)[inner]) < 0.3 * before_err
    out = apply_shift(mov, est.shift)  # bilinear: aligned, a little smoothed
    assert np.nanmean(np.abs(out - ref)[inner]) < 0.5 * before_err
    # the fast bilinear path equals scipy's order-1 shift away from no data
    oracle = ndimage.shift(np.nan_to_num(mov), est.shift, order=1)
    ok = np.isfinite(out)
    ok[:2], ok[-2:], ok[:, :2], ok[:, -2:] = False, False, False, False
    np.testing.assert_allclose(out[ok], oracle[ok], atol=1e-5)
    assert np.isnan(out[100, 100]) and np.isfinite(out[50, 50])
    stacked = apply_shift(np.stack([mov, mov]), est.shift)
    np.testing.assert_array_equal(np.isnan(stacked[0]), np.isnan(out))
    np.testing.assert_allclose(stacked[1], out, equal_nan=True)


def test_unrelated_image_is_rejected():
    """Two independent textures (no common runway): no real peak."""
    rng = np.random.default_rng(7)
    a, b = (ndimage.gaussian_filter(rng.random((128, 128)), 2.0).astype(np.float32) for _ in range(2))
    est = estimate_shift(a, b)
    assert not est.ok and est.peak < 0.3 and est.reason


def test_small_shift_not_applied():
    img = _scene(5)
    np.testing.assert_array_equal(apply_shift(img, (0.01, -0.01)), img)


def _bilinear_oracle(a, dy, dx):
    """The bilinear shift in plain numpy: four translated copies (NaN outside), weighted, added in
    the kernel's order."""
    iy, ix = int(np.floor(dy)), int(np.floor(dx))
    fy, fx = dy - iy, dx - ix
    H, W = a.shape[-2:]
    out = None
    for k, wy in ((iy, 1.0 - fy), (iy + 1, fy)):
        for l, wx in ((ix, 1.0 - fx), (ix + 1, fx)):
            w = wy * wx
            if w <= 1e-6:
                continue
            term = np.full(a.shape, np.nan, np.float32)
            ys, yd = (slice(0, H - k), slice(k, H)) if k >= 0 else (slice(-k, H), slice(0, H + k))
            xs, xd = (slice(0, W - l), slice(l, W)) if l >= 0 else (slice(-l, W), slice(0, W + l))
            term[..., yd, xd] = a[..., ys, xs]
            term *= np.float32(w)
            out = term if out is None else out + term
    return out


@pytest.mark.parametrize("shift", [(0.37, -1.62), (-2.0, 0.5), (1.0, 0.0), (0.0, 0.25), (-0.999, 2.7)])
def test_bilinear_kernel_equals_numpy_oracle_in_place_and_not(shift):
    rng = np.random.default_rng(3)
    img = rng.random((3, 41, 57)).astype(np.float32)
    img[1, 10, 20] = np.nan
    expected = _bilinear_oracle(img, *shift)
    np.testing.assert_array_equal(apply_shift(img, shift), expected)  # bit for bit, NaN where NaN
    inplace = img.copy()
    assert apply_shift(inplace, shift, out=inplace) is inplace
    np.testing.assert_array_equal(inplace, expected)
    np.testing.assert_array_equal(apply_shift(img[2], shift), expected[2])


@pytest.mark.parametrize("shift", [(0.37, -1.62), (-2.0, 0.5), (0.005, 0.0), (0.01, 0.0), (0.0, -0.004), (-0.999, 2.7), (40.5, 0.0)])
def test_shift_mask_equals_the_float_shift_of_the_mask(shift):
    """The clear-sky mask follows its acquisition's shift: the bilinear shift of the mask as 0/1,
    NaN (outside) as 0, > 0.99 (pixels whose whole neighbourhood was clear); a term of weight
    0.005 that is cloudy still leaves the pixel clear, one of 0.01 does not."""
    rng = np.random.default_rng(4)
    mask = ndimage.binary_opening(rng.random((47, 53)) < 0.7)
    expected = np.nan_to_num(_bilinear_oracle(mask.astype(np.float32), *shift), nan=0.0) > 0.99
    got = shift_mask(mask, shift, min_shift=0.0)
    assert got.dtype == bool and got.shape == mask.shape
    np.testing.assert_array_equal(got, expected)
    # as apply_shift, a negligible shift (both axes under min_shift) is not applied
    if max(abs(shift[0]), abs(shift[1])) < 0.02:
        np.testing.assert_array_equal(shift_mask(mask, shift), mask)


def test_negligible_shift_in_place_leaves_the_image():
    img = _scene(5)
    keep = img.copy()
    assert apply_shift(img, (0.01, 0.0), out=img) is img
    np.testing.assert_array_equal(img, keep)
    with pytest.raises(ValueError, match="out must be float32"):
        apply_shift(img, (0.5, 0.5), out=np.empty((2, 2), np.float32))


@pytest.mark.parametrize("shape", [(64, 64), (5, 9), (1, 7)])
def test_gradient_image_equals_the_scipy_formula(shape):
    """Sobel magnitude (numba passes with scipy's roundings) and the no-data margin (a city-block
    distance of 2, as two cross dilations) equal plain scipy bit for bit."""
    from pipeline.preprocess.coregister import _fill, gradient_image

    rng = np.random.default_rng(shape[0])
    img = rng.random(shape).astype(np.float32)
    img.flat[:: 7] = np.nan
    ok = np.isfinite(img)
    filled = _fill(img, ok)
    want = np.hypot(ndimage.sobel(filled, axis=0), ndimage.sobel(filled, axis=1)).astype(np.float32)
    want[ndimage.binary_dilation(~ok, iterations=2)] = 0.0
    np.testing.assert_array_equal(gradient_image(img), want)
