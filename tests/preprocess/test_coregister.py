"""Co-registration recovers a planted sub-pixel shift and rejects unrelated images."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from pipeline.preprocess.coregister import apply_shift, estimate_shift


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
