"""Detection: compare the clear acquisitions of a ``before`` window with those of an ``after`` window.

The stages, in order (each timed in ``DetectionResult.timings``)::

    search + read        source.search / source.read (or a given SceneStack)
    harmonise            remove each acquisition's DN offset (metadata) -> float32 reflectance
    masks                SCL + spectral cloud/haze/shadow tests; drop acquisitions below
                         ``min_clear_fraction`` of the AOI (recorded with the reason)
    coregister           global sub-pixel shift of every acquisition against the clearest
                         before acquisition (phase correlation of gradients); weak peaks dropped;
                         the masks are then computed again on the aligned dates
    composite            per-pixel median of the clear observations of each window
    normalise            IR-MAD no-change pixels, orthogonal regression per band after -> before
    kernels              change magnitude (CVA, z-scored CVA or IR-MAD chi2) and index deltas
    threshold            automatic threshold of the magnitude plus a floor in reflectance CVA
    persistence          the change must hold in ``min_persistence`` individual clear after
                         acquisitions (a parked aircraft, a ship, a missed cloud does not)
    objects              cleanup, labelling, polygons and classes (pipeline.objects)

Example
-------
>>> from pipeline import load_aoi, get_source
>>> from pipeline.detect import detect
>>> res = detect(load_aoi("maaten-al-sarra"), get_source("simulated"),
...              before=(date(2024, 3, 1), date(2024, 8, 31)), after=(date(2025, 5, 1), date(2025, 10, 31)))
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import date
from typing import Callable, Sequence

import numpy as np

from .aoi import AOI
from .errors import NoDataError, UsageError
from .grid import Grid
from .objects import ObjectParams
from .objects.model import NODATA_CODE
from .preprocess.cloudmask import MASK_METHODS, MaskParams, mask_stack
from .preprocess.composite import Composite, median_composite
from .preprocess.coregister import apply_shift, estimate_shift, shift_mask
from .preprocess.harmonise import harmonise
from .preprocess.normalise import Normalisation, apply_normalisation, fit_normalisation, normalise
from .result import AcquisitionRecord, DetectionResult
from .scene import SceneStack

log = logging.getLogger(__name__)

__all__ = ["DetectParams", "MAGNITUDES", "MAGNITUDE_BANDS", "CONTEXTS", "Reference", "detect", "detect_stacks", "search_windows", "prepare_reference", "aoi_mask"]

DEFAULT_BANDS = ("B02", "B03", "B04", "B08", "B8A", "B11", "B12")
"""Bands read and composited: the report needs B02 B03 B04 B8A B11 B12, the indices B08."""


@dataclass(frozen=True)
class DetectParams:
    """Every tunable of a detection, with defaults.

    Attributes
    ----------
    bands : tuple of str
        Bands read, composited and compared. Default :data:`DEFAULT_BANDS`.
    max_cloud : float or None
        Scene cloud cover (metadata, percent) above which the search skips an acquisition.
        Default 80.
    mask_method : str
        ``auto`` (SCL + spectral when SCL exists, else spectral), ``scl``, ``spectral`` or
        ``scl+spectral``.
    mask : MaskParams
        Thresholds of the cloud/haze/shadow masks (see :class:`MaskParams`).
    min_clear_fraction : float
        Acquisitions with less of the AOI clear (0-1) are dropped. Default 0.3.
    coregister : bool
        Estimate and apply a global shift per acquisition. Default True.
    coreg_band : str
        Band the shift is estimated on. Default ``B04`` (10 m, high contrast on paved surfaces).
    coreg_upsample : int
        Precision of the shift, 1/``coreg_upsample`` pixel. Default 20.
    coreg_min_peak : float
        Minimum gradient correlation (0-1) after alignment; weaker acquisitions are dropped.
    coreg_max_shift_px : float
        Largest plausible shift, 10 m pixels. Default 3.
    normalise : bool
        Map the after composite onto the before composite (IR-MAD + orthogonal regression).
    nochange_p : float
        IR-MAD no-change probability above which a pixel feeds the normalisation. Default 0.9.
    nochange_min_fraction : float
        Floor (0-1) on the share of the valid pixels the normalisation is fitted on: when fewer
        pass ``nochange_p``, the most stable ``nochange_min_fraction`` of them (highest IR-MAD
        no-change probability) are used (see :func:`pipeline.preprocess.normalise.normalise`).
        Guards against IR-MAD collapsing onto a small cluster (two of five real OSCD pairs: 65
        and 108 pixels, per-band gains of 37 and -11). 0 disables.
    magnitude : str
        Change magnitude: ``cva`` (reflectance units), ``zscore_cva`` or ``irmad_chi2``.
    magnitude_bands : str
        Which of ``bands`` enter the magnitude, a name in :data:`MAGNITUDE_BANDS`: ``no_nir``
        (default: visible + SWIR; drops B08/B8A, which carry the seasonal swing of vegetation,
        not the concrete, asphalt and bare soil of the change classes), ``all`` or ``visible``.
        The ``min_cva`` floor, the persistence test and the index deltas still use all ``bands``.
    context : str
        Context cue applied to the magnitude before thresholding, a name in :data:`CONTEXTS`:
        ``none`` (default), ``phenology`` (a pixel vegetated on both dates, NDVI above
        ``context_ndvi`` before and after, is not a change: crops, lawns, forest seasons) or
        ``multiscale`` (per pixel the maximum over Gaussian scales of 1, 2 and 4 pixels of the
        magnitude, each in robust z units: median 0, 1.4826 x MAD = 1).
    context_ndvi : float
        NDVI (unitless, -1..1) above which a date counts as vegetated for ``phenology``.
        Default 0.5.
    threshold : str
        Threshold method of the magnitude: ``robust`` (median + ``robust_k`` x 1.4826 x MAD: a
        multiple of the noise, right whatever the size of the change), ``otsu``,
        ``kittler-illingworth``, ``chi2`` (IR-MAD's chi-square statistic tested at ``chi2_p``,
        whatever ``magnitude`` is) or ``none`` (only the floor below).
    robust_k : float
        Multiple of the robust standard deviation of the magnitude for ``robust``. Default 6.
    min_cva : float
        Floor: a pixel changed only if its CVA over ``bands`` is at least this (reflectance).
        Protects no-change pairs, where any automatic threshold cuts into noise. Default 0.06.
    chi2_p : float
        Significance of the ``chi2`` threshold (probability of no change below). Default 0.001.
    smooth_px : float
        Gaussian sigma (pixels) of the magnitude before thresholding; 0 = none. Default 0.
    extent_fraction : float
        Trims the halo a change gets from 20 m bands and sub-pixel shifts: within each connected
        changed region, pixels whose magnitude is below ``extent_fraction`` x the region's peak
        magnitude are dropped (a half-maximum-like outline). 0 disables. Default 0.4.
    extent_radius_px : int
        Where the peak of ``extent_fraction`` is taken: 0, the peak of the whole connected region;
        r > 0, the local peak within r pixels (a (2r+1)^2 window). A halo is a local effect (the
        20 m bands and the smoothing spread a change over 1-2 pixels, a residual shift over
        another), so it is trimmed against the change that casts it; with the region-wide peak
        one strong pixel (a bright new roof) erased the weaker but real change joined to it
        through its halo (real OSCD pairs: pooled pixel recall 0.38 -> 0.43 at r = 3, precision
        0.45 -> 0.44). Default 3 (70 m window: halo plus misregistration with room to spare).
    closing_radius_px : int
        After the trim and the persistence test, a binary closing with a disc of this radius
        (pixels) joins the fragments of one change: gaps up to 2r pixels wide are filled, but
        only with pixels the trim would keep, whose magnitude is at least ``extent_fraction`` x
        the local peak of the changed pixels within ``extent_radius_px`` (at least r): a
        construction site flagged in pieces becomes one object, while the halo between two new
        roofs a few pixels apart (under the trim's level) keeps them two. Closing before the
        objects' opening is SiROC's morphological post-processing (Kondmann et al. 2021, arXiv
        2110.02068). On the real OSCD pairs, pooled pixel F1 0.443 -> 0.449, non-natural
        classes 0.418 -> 0.427 (with ``ClassifyThresholds.water_swir_dark``). 0 disables it.
        Default 2.
    min_persistence : int
        A changed pixel must also be changed in at least this many individual clear after
        acquisitions. Default 2.
    persistence_factor : float
        An individual acquisition counts as changed at ``persistence_factor`` times the
        composite threshold (single dates are noisier). Default 0.75.
    objects : ObjectParams
        Parameters of :func:`pipeline.objects.extract_objects` (cleanup, minimum area, rules).
    """

    bands: tuple[str, ...] = DEFAULT_BANDS
    max_cloud: float | None = 80.0
    mask_method: str = "auto"
    mask: MaskParams = field(default_factory=MaskParams)
    min_clear_fraction: float = 0.3
    coregister: bool = True
    coreg_band: str = "B04"
    coreg_upsample: int = 20
    coreg_min_peak: float = 0.3
    coreg_max_shift_px: float = 3.0
    normalise: bool = True
    nochange_p: float = 0.9
    nochange_min_fraction: float = 0.5
    magnitude: str = "cva"
    magnitude_bands: str = "no_nir"
    context: str = "none"
    context_ndvi: float = 0.5
    threshold: str = "robust"
    robust_k: float = 6.0
    min_cva: float = 0.06
    chi2_p: float = 0.001
    smooth_px: float = 0.0
    extent_fraction: float = 0.4
    extent_radius_px: int = 3
    closing_radius_px: int = 2
    min_persistence: int = 2
    persistence_factor: float = 0.75
    objects: ObjectParams = field(default_factory=ObjectParams)

    def __post_init__(self):
        if self.mask_method != "auto" and self.mask_method not in MASK_METHODS:
            raise UsageError(f"mask_method {self.mask_method!r}: use one of auto, {', '.join(MASK_METHODS)}")
        if self.magnitude not in MAGNITUDES:
            raise UsageError(f"magnitude {self.magnitude!r}: use one of {', '.join(MAGNITUDES)}")
        if self.magnitude_bands not in MAGNITUDE_BANDS:
            raise UsageError(f"magnitude_bands {self.magnitude_bands!r}: use one of {', '.join(MAGNITUDE_BANDS)}")
        if not _magnitude_band_index(self.bands, self.magnitude_bands):
            raise UsageError(
                f"magnitude_bands {self.magnitude_bands!r} keeps none of bands {self.bands}; "
                f"use 'all' or read bands {MAGNITUDE_BANDS[self.magnitude_bands]}"
            )
        if self.context not in CONTEXTS:
            raise UsageError(f"context {self.context!r}: use one of {', '.join(CONTEXTS)}")
        if self.context == "phenology" and not {"B04", "B08"} <= set(self.bands):
            raise UsageError(f"context 'phenology' needs bands B04 and B08 (NDVI); bands are {self.bands}")
        if not -1.0 <= self.context_ndvi <= 1.0:
            raise UsageError(f"context_ndvi must be in [-1, 1], got {self.context_ndvi}")
        valid_thr = ("robust", "otsu", "kittler-illingworth", "chi2", "none")
        if self.threshold not in valid_thr:
            raise UsageError(f"threshold {self.threshold!r}: use one of {', '.join(valid_thr)}")
        if not 0.0 <= self.nochange_min_fraction <= 1.0:
            raise UsageError(f"nochange_min_fraction must be in [0, 1], got {self.nochange_min_fraction}")
        if not 0.0 <= self.min_clear_fraction <= 1.0:
            raise UsageError(f"min_clear_fraction must be in [0, 1], got {self.min_clear_fraction}")
        if not (isinstance(self.extent_radius_px, (int, np.integer)) and self.extent_radius_px >= 0):
            raise UsageError(f"extent_radius_px must be a non-negative int, got {self.extent_radius_px!r}")
        if not (isinstance(self.closing_radius_px, (int, np.integer)) and self.closing_radius_px >= 0):
            raise UsageError(f"closing_radius_px must be a non-negative int, got {self.closing_radius_px!r}")
        if self.min_persistence < 0:
            raise UsageError(f"min_persistence must be >= 0, got {self.min_persistence}")
        if self.coreg_band not in self.bands:
            raise UsageError(f"coreg_band {self.coreg_band!r} is not among bands {self.bands}")

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in ("mask", "objects")}
        d["bands"] = list(self.bands)
        d["mask"] = asdict(self.mask)
        d["mask"]["scl_classes"] = list(self.mask.scl_classes)
        d["objects"] = self.objects.to_dict()
        return d


# ----------------------------------------------------------------------------------------------
# magnitudes


def _subset(img: np.ndarray, sel: list[int]) -> np.ndarray:
    return img if len(sel) == img.shape[0] else img[sel]


def _mag_cva(before, after, sel, inside, irmad_res):
    from .kernels.metrics import cva

    return cva(before, after, bands=sel)  # the kernel reads the selected bands in place


def _mag_zscore(before, after, sel, inside, irmad_res):
    from .kernels.metrics import zscore_cva

    return zscore_cva(_subset(before, sel), _subset(after, sel), mask=inside)


def _mag_chi2(before, after, sel, inside, irmad_res):
    if irmad_res is None or len(sel) != before.shape[0]:  # ``irmad_res`` is of all the bands
        from .kernels.irmad import irmad

        irmad_res = irmad(_subset(before, sel), _subset(after, sel), mask=inside)
    return np.array(irmad_res.chi2, dtype=np.float32)  # a copy: the caller writes into it


MAGNITUDES: dict[str, Callable] = {"cva": _mag_cva, "zscore_cva": _mag_zscore, "irmad_chi2": _mag_chi2}
"""Named change magnitudes: ``(before, after, sel, inside, irmad_result) -> (H, W) float32`` over the
bands ``sel`` (indices into axis 0), a new array; ``irmad_result`` is IR-MAD of all the bands, or None."""

MAGNITUDE_BANDS: dict[str, tuple[str, ...] | None] = {
    "all": None,
    "no_nir": ("B02", "B03", "B04", "B11", "B12"),
    "visible": ("B02", "B03", "B04"),
}
"""Named band sets of the magnitude: the bands kept (in the order of ``bands``); None = all.
``no_nir`` keeps visible (B02-B04) and SWIR (B11, B12), drops red edge and NIR (B05-B8A), where
the seasonal swing of vegetation lives."""


def _magnitude_band_index(bands: tuple[str, ...], name: str) -> list[int]:
    keep = MAGNITUDE_BANDS[name]
    return [i for i, b in enumerate(bands) if keep is None or b in keep]


def _robust_z(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(x - median) / (1.4826 MAD) over ``valid``; a zero MAD leaves the scale at 1."""
    v = x[valid & np.isfinite(x)]
    if v.size == 0:
        return x
    med = float(np.median(v))
    mad = 1.4826 * float(np.median(np.abs(v - med)))
    return (x - med) / (mad if mad > 0 else 1.0)


def _ctx_none(magnitude, before, after_raw, bands, valid, params):
    return magnitude


def _ctx_phenology(magnitude, before, after_raw, bands, valid, params):
    r, n = bands.index("B04"), bands.index("B08")

    def ndvi(img):
        with np.errstate(invalid="ignore", divide="ignore"):
            return (img[n] - img[r]) / (img[n] + img[r])

    # physical reflectance on both sides (the after composite before normalisation)
    with np.errstate(invalid="ignore"):
        veg_both = (ndvi(before) > params.context_ndvi) & (ndvi(after_raw) > params.context_ndvi)
    return np.where(veg_both & np.isfinite(magnitude), 0.0, magnitude).astype(np.float32)


def _ctx_multiscale(magnitude, before, after_raw, bands, valid, params):
    from scipy import ndimage

    filled = np.where(np.isfinite(magnitude), magnitude, 0.0).astype(np.float32)
    scales = [_robust_z(ndimage.gaussian_filter(filled, s), valid) for s in (1.0, 2.0, 4.0)]
    return np.where(valid, np.max(scales, axis=0), np.nan).astype(np.float32)


CONTEXTS: dict[str, Callable] = {"none": _ctx_none, "phenology": _ctx_phenology, "multiscale": _ctx_multiscale}
"""Named context cues: ``(magnitude, before, after_raw, bands, valid, params) -> (H, W) float32``,
applied after ``smooth_px`` and before the threshold."""


# ----------------------------------------------------------------------------------------------
# helpers


class _Timer:
    def __init__(self):
        self.t: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.t[stage] = round(self.t.get(stage, 0.0) + time.perf_counter() - t0, 4)


def aoi_mask(aoi: AOI, grid: Grid) -> np.ndarray:
    """(H, W) bool: True for pixels whose centre lies inside the AOI polygon."""
    from rasterio.features import geometry_mask

    geom = aoi.to_crs(aoi.geometry, grid.epsg)
    return geometry_mask([geom], out_shape=grid.shape, transform=grid.transform, invert=True)


def _window_str(w: tuple[date, date]) -> str:
    return f"{w[0].isoformat()}/{w[1].isoformat()}"


def _check_window(name: str, w) -> tuple[date, date]:
    try:
        a, b = w
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be a (start, end) pair of dates, got {w!r}") from None
    if not (isinstance(a, date) and isinstance(b, date)):
        raise UsageError(f"{name} must be a (start, end) pair of datetime.date, got {w!r}")
    if a > b:
        raise UsageError(f"{name} window starts after it ends: {a} > {b}")
    return a, b


@dataclass
class _Window:
    """Working state of one window."""

    name: str
    stack: SceneStack
    refl: np.ndarray  # (T, B, H, W) float32; NaN where no data (and, after _apply_masks, not clear)
    records: list[dict]
    used: list[int]
    clear: np.ndarray  # (T, H, W) bool from the first mask pass


def _harmonise(stack: SceneStack, params: DetectParams, timer: _Timer):
    with timer("harmonise"):
        return harmonise(stack, bands=params.bands)


def _prepare(
    name: str, stack: SceneStack, params: DetectParams, inside: np.ndarray, timer: _Timer, harmonised=None
) -> _Window:
    """Harmonise (unless ``harmonised`` is given: then ``stack`` may be :func:`_without_data`)
    and mask one window; drop acquisitions too cloudy."""
    h = harmonised if harmonised is not None else _harmonise(stack, params, timer)
    with timer("masks"):
        m = mask_stack(h.reflectance, h.bands, scl=stack.scl, aoi_mask=inside, method=params.mask_method, params=params.mask)
    refl = h.reflectance
    records, used = [], []
    for t, acq in enumerate(stack.acquisitions):
        rec = dict(
            id=acq.id,
            date=acq.date.isoformat(),
            window=name,
            platform=acq.platform,
            processing_baseline=acq.processing_baseline,
            offset=int(h.offsets[t]),
            offset_handling=h.handling[t],
            cloud_cover=acq.cloud_cover,
            cloud_fraction=round(float(m.cloud_fraction[t]), 4),
            valid_fraction=round(float(m.valid_fraction[t]), 4),
            shift_px=None,
            used=True,
            reason="",
        )
        if m.clear_fraction[t] < params.min_clear_fraction:
            rec["used"] = False
            if m.valid_fraction[t] < params.min_clear_fraction:
                rec["reason"] = f"no data over {100 * (1 - m.valid_fraction[t]):.0f}% of the AOI"
            else:
                rec["reason"] = (
                    f"cloudy: {100 * m.clear_fraction[t]:.0f}% of the AOI clear "
                    f"< min_clear_fraction {100 * params.min_clear_fraction:.0f}% ({m.method} mask)"
                )
            log.warning("%s acquisition %s dropped (CloudyScene): %s", name, acq.id, rec["reason"])
        else:
            used.append(t)
        records.append(rec)
    return _Window(name, stack, refl, records, used, m.clear)


def _apply_masks(w: _Window, params: DetectParams, inside: np.ndarray, shifted: bool, timer: _Timer) -> None:
    """Set not-clear observations of the used acquisitions to NaN.

    After co-registration the masks are computed again on the aligned reflectance (with the SCL
    moved by the rounded shift): the haze and shadow tests compare each date with the window's
    median, and a misregistered date would light up along every edge.
    """
    idx = w.used
    if not idx:
        return
    clear = w.clear[idx]
    # only a window with a moved acquisition needs its masks again (the reference never moves)
    shifted = shifted and any(tuple(w.records[t]["shift_px"] or (0.0, 0.0)) != (0.0, 0.0) for t in idx)
    if shifted:
        from .preprocess.coregister import _translate

        with timer("masks"):
            scl = None
            if w.stack.scl is not None:  # the used dates' SCL moved by their rounded shifts
                scl = w.stack.scl.copy()
                for t in idx:
                    dy, dx = (int(round(v)) for v in w.records[t]["shift_px"])
                    if dy or dx:
                        scl[t] = _translate(w.stack.scl[t], dy, dx, fill=0)
            # the used dates masked in place of the window: no copy of their reflectance
            m = mask_stack(w.refl, params.bands, scl=scl, aoi_mask=inside, method=params.mask_method, params=params.mask, use=_use(w))
            clear = m.clear[idx]
    for k, t in enumerate(idx):
        np.copyto(w.refl[t], np.float32(np.nan), where=~clear[k])


def _use(w: _Window) -> np.ndarray:
    """(T,) bool: the window's acquisitions still used."""
    use = np.zeros(len(w.refl), dtype=bool)
    use[list(w.used)] = True
    return use


def _composite(w: _Window) -> Composite:
    """The per-pixel median of the used acquisitions; the window's reflectance is not copied
    (dates no longer used are left out by the composite's clear mask), and a single-date window's
    composite is that date, in place (its reflectance is not used again)."""
    use = _use(w)
    if use.all():
        return median_composite(w.refl, overwrite=True)
    T, _, H, W = w.refl.shape
    return median_composite(w.refl, np.ascontiguousarray(np.broadcast_to(use[:, None, None], (T, H, W))))


def _no_data(name: str, window: tuple[date, date], w: _Window | None, n_found: int) -> NoDataError:
    if w is None or n_found == 0:
        why = "the source found no acquisition over the AOI in that window"
    else:
        reasons = "; ".join(f"{r['date']}: {r['reason']}" for r in w.records if not r["used"])
        why = f"all {n_found} were dropped ({reasons})"
    return NoDataError(
        f"no usable acquisition in the {name} window {_window_str(window)}: {n_found} found, {why}. "
        f"Widen the window, raise max_cloud or lower min_clear_fraction."
    )


def _coreg_reference(before: _Window, params: DetectParams) -> tuple[int, np.ndarray, str]:
    """The clearest used before acquisition: its index, its ``coreg_band`` image (a copy, taken
    before any masking) and its id."""
    bi = params.bands.index(params.coreg_band)
    clear_n = [int(before.clear[t].sum()) for t in before.used]
    ref_t = before.used[int(np.argmax(clear_n))]
    # matched on the whole images with data: clouds add edges the other image lacks (noise, no
    # bias), whereas cutting the same holes into both would add common edges that pull to 0
    return ref_t, before.refl[ref_t, bi].copy(), before.stack.acquisitions[ref_t].id


def _coregister(
    windows: list[_Window], params: DetectParams, timer: _Timer, ref: tuple[int, np.ndarray, str], before: _Window | None = None
) -> str:
    """Shift every used acquisition of ``windows`` onto the reference image ``ref`` (from
    :func:`_coreg_reference` on ``before``, the window the reference acquisition belongs to and is
    kept as is); drop weak matches."""
    bi = params.bands.index(params.coreg_band)
    ref_t, ref_img, ref_id = ref
    with timer("coregister"):
        for w in windows:
            keep = []
            for t in w.used:
                rec = w.records[t]
                if w is before and t == ref_t:
                    rec["shift_px"] = (0.0, 0.0)
                    keep.append(t)
                    continue
                est = estimate_shift(
                    ref_img,
                    w.refl[t, bi],
                    upsample=params.coreg_upsample,
                    min_peak=params.coreg_min_peak,
                    max_shift_px=params.coreg_max_shift_px,
                )
                if not est.ok:
                    rec["used"] = False
                    rec["reason"] = f"co-registration: {est.reason}"
                    log.warning("%s acquisition %s dropped: %s", w.name, rec["id"], rec["reason"])
                    continue
                rec["shift_px"] = (round(est.dy, 3), round(est.dx, 3))
                apply_shift(w.refl[t], est.shift, out=w.refl[t])  # in place: no copy of the bands
                w.clear[t] = shift_mask(w.clear[t], est.shift)
                keep.append(t)
            w.used = keep
    return ref_id


THRESHOLD_SAMPLE = 2_000_000
"""The automatic threshold is computed on at most about this many pixels: every k-th pixel of the
grid, where valid. The median and MAD of 2 million values are those of the whole image to about
0.1 % (on the 4096^2 bench magnitude the robust threshold moved by 0.05 %), at a tenth of the cost
(0.04 s against 0.33-0.40 s there); AOIs up to 2 Mpx (14 x 14 km) use every pixel."""


def _threshold_sample(stat: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """A new 1-D float array: the finite values of ``stat`` where ``valid``, on every k-th pixel of
    the grid (k = 1 up to :data:`THRESHOLD_SAMPLE` pixels)."""
    ok = valid & np.isfinite(stat)
    step = max(1, -(-ok.size // THRESHOLD_SAMPLE))
    if step == 1:
        return stat[ok]
    return stat.reshape(-1)[::step][ok.reshape(-1)[::step]]


def _threshold(values: np.ndarray, method: str, *, dof: int, chi2_p: float, robust_k: float) -> float:
    """The threshold of ``values`` (1-D, finite; overwritten by the ``robust`` method)."""
    if method == "none":
        return 0.0
    if method == "robust":  # ``values`` is the caller's own copy: both medians work in it in place
        med = float(np.median(values, overwrite_input=True))
        dev = np.abs(np.subtract(values, np.float32(med), out=values), out=values)
        return med + robust_k * 1.4826 * float(np.median(dev, overwrite_input=True))
    from .kernels.thresholds import threshold

    if method == "chi2":
        return float(threshold(values, "chi2", dof=dof, alpha=chi2_p))
    return float(threshold(values, method, sample=1_000_000))


def _trim_extent(changed: np.ndarray, stat: np.ndarray, fraction: float, *, radius_px: int = 0) -> np.ndarray:
    """Pixels of ``changed`` at or above ``fraction`` x a peak of ``stat``: the peak of their
    connected region (``radius_px`` 0) or the local peak over changed pixels within ``radius_px``
    (:func:`pipeline.kernels.thresholds.local_peak_keep`)."""
    from scipy import ndimage

    if radius_px > 0:
        from .kernels.thresholds import local_peak_keep

        return local_peak_keep(changed, stat, fraction, radius_px=radius_px)  # stat finite where changed

    labels, n = ndimage.label(changed, structure=np.ones((3, 3), bool))
    if n == 0:
        return changed
    lab = labels[changed]  # only the changed pixels: a few percent of the image
    vals = np.nan_to_num(stat[changed], nan=0.0).astype(np.float64)
    peak = np.zeros(n + 1)
    np.maximum.at(peak, lab, vals)
    out = np.zeros_like(changed)
    out[changed] = vals >= fraction * peak[lab]
    return out


def _close_gaps(changed: np.ndarray, stat: np.ndarray, valid: np.ndarray, fraction: float, *, radius_px: int, peak_radius_px: int) -> np.ndarray:
    """``changed`` closed with a disc of ``radius_px``, adding only ``valid`` pixels that would
    pass the halo trim: ``stat`` at least ``fraction`` x the local peak of the changed pixels
    within ``peak_radius_px`` (:func:`pipeline.kernels.thresholds.local_peak_keep`)."""
    from .kernels.morphology import binary_closing
    from .kernels.thresholds import local_peak_keep

    added = binary_closing(changed, radius_px=radius_px) & ~changed & valid
    if not added.any():
        return changed
    with np.errstate(invalid="ignore"):
        added &= np.isfinite(stat)
    return changed | local_peak_keep(changed, stat, fraction, radius_px=peak_radius_px, query=added)


def _deltas_at(before: np.ndarray, after: np.ndarray, bands):
    """Index deltas computed at given flat pixel positions only (the objects' pixels, a few
    percent of the grid), for :func:`pipeline.objects.extract_objects`."""
    from .kernels.metrics import index_deltas

    def at(flat_index: np.ndarray) -> dict:
        rows, cols = np.unravel_index(flat_index, before.shape[1:])
        b = np.ascontiguousarray(before[:, rows, cols])[:, None, :]
        a = np.ascontiguousarray(after[:, rows, cols])[:, None, :]
        return {k: v[0] for k, v in index_deltas(b, a, bands=bands).items()}

    return at


def _persistence(
    before_c: np.ndarray,
    after: _Window,
    norm: Normalisation | None,
    changed: np.ndarray,
    params: DetectParams,
    cva_threshold: float,
) -> tuple[np.ndarray, int]:
    """Count, per pixel, the individual clear after acquisitions where the change holds."""
    from .kernels.metrics import cva

    count = np.zeros(changed.shape, dtype=np.uint16)
    thr = params.persistence_factor * cva_threshold
    for t in after.used:
        img = after.refl[t]
        if norm is not None:
            try:  # per-acquisition map onto the before composite on the same no-change pixels
                n_t = fit_normalisation(before_c, img, norm.nochange, min_pixels=50)
            except Exception:  # too few clear no-change pixels on this date: the composite's map
                n_t = norm
            img = apply_normalisation(img, n_t)
        mag = cva(before_c, img)
        with np.errstate(invalid="ignore"):
            count += (mag >= thr) & changed
    return count, len(after.used)


@dataclass(eq=False)
class Reference:
    """A before window prepared once: masked, co-registered and composited.

    Made by :func:`prepare_reference`; pass it to :func:`detect_stacks` to compare many after
    windows (e.g. each new acquisition of a monitoring run) with one before window without
    preparing it again. Holds the before reflectance, so it costs about as much memory as one
    detection's before window.
    """

    stack: SceneStack
    params: DetectParams
    inside: np.ndarray
    window: _Window
    composite: Composite
    coreg: tuple[int, np.ndarray, str] | None

    @property
    def coreg_id(self) -> str | None:
        return self.coreg[2] if self.coreg is not None else None

    def detached(self) -> "Reference":
        """This reference without the before stack and reflectance: only the composite, the
        acquisition records and the co-registration image, to keep (e.g. pickled on disk) and pass
        to :func:`detect_stacks` with ``before_stack=None``. About B x 4 + 6 bytes per pixel."""
        w = self.window
        return replace(self, stack=None, window=_Window(w.name, None, None, w.records, w.used, None))


def _inside(aoi: AOI, grid: Grid) -> np.ndarray:
    """:func:`aoi_mask`, refusing a grid the AOI covers no pixel centre of."""
    inside = aoi_mask(aoi, grid)
    if not inside.any():
        raise UsageError(f"AOI {aoi.id} covers no pixel centre of the grid {grid.shape}; check the AOI and the grid")
    return inside


def _prepare_reference(
    stack: SceneStack, params: DetectParams, window, timer: _Timer, inside: np.ndarray, harmonised=None
) -> Reference:
    if len(stack) == 0:
        raise _no_data("before", window, None, 0)
    bw = _prepare("before", stack, params, inside, timer, harmonised)
    if not bw.used:
        raise _no_data("before", window, bw, len(stack))
    coreg = None
    if params.coregister:
        coreg = _coreg_reference(bw, params)
        _coregister([bw], params, timer, coreg, before=bw)
        if not bw.used:
            raise _no_data("before", window, bw, len(stack))
    _apply_masks(bw, params, inside, params.coregister, timer)
    with timer("composite"):
        bc = _composite(bw)
    return Reference(stack, params, inside, bw, bc, coreg)


def prepare_reference(aoi: AOI, before_stack: SceneStack, *, params: DetectParams | None = None) -> Reference:
    """Prepare the before window once for several :func:`detect_stacks` calls.

    Parameters
    ----------
    aoi : AOI
    before_stack : SceneStack
        The before acquisitions, read onto ``aoi``'s grid.
    params : DetectParams or None
        Must be the parameters of the detections it serves.

    Returns
    -------
    Reference

    Raises
    ------
    NoDataError
        No usable before acquisition.
    """
    params = params or DetectParams()
    window = (before_stack.dates[0], before_stack.dates[-1]) if len(before_stack) else (date.min, date.min)
    return _prepare_reference(before_stack, params, window, _Timer(), _inside(aoi, before_stack.grid))


# ----------------------------------------------------------------------------------------------
# public API


def detect(
    aoi: AOI,
    source,
    *,
    before: tuple[date, date],
    after: tuple[date, date],
    params: DetectParams | None = None,
    stack: SceneStack | None = None,
    acquisitions: "tuple[Sequence, Sequence] | None" = None,
    on_magnitude: Callable[..., object] | None = None,
) -> DetectionResult:
    """Detect change over ``aoi`` between the ``before`` and ``after`` windows.

    Parameters
    ----------
    aoi : AOI
    source : Source
        Searched and read unless ``stack`` is given (then only its ``name`` is used).
    before, after : (date, date)
        Inclusive windows.
    params : DetectParams or None
    stack : SceneStack or None
        Acquisitions already read (covering both windows), e.g. from a monitoring run.
    acquisitions : (before, after) sequences of Acquisition, optional
        The windows' acquisitions, already searched (:func:`search_windows`); default: searched here.
    on_magnitude : callable, optional
        Called once the change magnitude is final, before the objects are extracted, as
        ``on_magnitude(magnitude, grid=, aoi=, source=, before=, after=)`` (the result's own
        array and field values; the array must not be modified). The CLI starts writing
        ``change_magnitude.tif`` there (:class:`pipeline.outputs.MagnitudeInAdvance`), on a
        second core while the objects are made on the first.

    Returns
    -------
    DetectionResult

    Raises
    ------
    NoDataError
        A window has no usable acquisition (the message says which, how many and why).
    """
    params = params or DetectParams()
    before = _check_window("before", before)
    after = _check_window("after", after)
    name = getattr(source, "name", "") if source is not None else ""
    timer = _Timer()
    if stack is not None:
        b_stack, a_stack = stack.between(*before), stack.between(*after)
    else:
        grid = aoi.grid()
        if acquisitions is None:
            with timer("search"):
                found = search_windows(aoi, source, before, after, params=params)
        else:
            found = [list(a) for a in acquisitions]
            for wname, win, acqs in zip(("before", "after"), (before, after), found):
                if not acqs:
                    raise _no_data(wname, win, None, 0)
        result, _ = _read_and_detect(
            aoi, source, found[0], found[1], grid=grid, params=params, windows=(before, after), source_name=name, timer=timer,
            on_magnitude=on_magnitude,
        )
        return result
    return detect_stacks(
        aoi, b_stack, a_stack, params=params, source_name=name, windows=(before, after), _timer=timer,
        on_magnitude=on_magnitude,
    )


def search_windows(aoi: AOI, source, before: tuple[date, date], after: tuple[date, date], *, params: DetectParams | None = None) -> tuple[list, list]:
    """The acquisitions ``source`` finds over ``aoi`` in the ``before`` and ``after`` windows
    (cloud cover up to ``params.max_cloud``).

    Raises
    ------
    NoDataError
        A window has no acquisition (naming the window and what to do).
    """
    params = params or DetectParams()
    found = []
    for wname, win in (("before", _check_window("before", before)), ("after", _check_window("after", after))):
        acqs = source.search(aoi, win[0], win[1], max_cloud=params.max_cloud)
        log.info("%s window %s: %d acquisitions found", wname, _window_str(win), len(acqs))
        if not acqs:
            raise _no_data(wname, win, None, 0)
        found.append(list(acqs))
    return found[0], found[1]


def _read_and_detect(
    aoi: AOI,
    source,
    before_acqs,
    after_acqs,
    *,
    grid: Grid,
    params: DetectParams,
    windows,
    source_name: str = "",
    timer: _Timer | None = None,
    reference: "Reference | None" = None,
    on_magnitude: Callable[..., object] | None = None,
) -> tuple[DetectionResult, Reference]:
    """Read and compare acquisitions already searched, in bounded memory: the before window is
    read, prepared and released (only its :meth:`Reference.detached` part is kept) before the
    after window is read, so the after window reuses that memory. A detached ``reference`` given
    (prepared earlier for the same acquisitions, grid and parameters) is used without reading the
    before window. Returns the result and the detached reference, for reuse."""
    timer = timer or _Timer()
    # each window's DN (B x 2 bytes per pixel and date) are freed as soon as they are harmonised,
    # before the masks and the rest of the window's preparation need memory
    if reference is None:
        with timer("read"):
            b_stack = source.read(aoi, before_acqs, grid=grid, bands=params.bands)
        hb = _harmonise(b_stack, params, timer) if len(b_stack) else None
        b_stack = _without_data(b_stack)
        reference = _prepare_reference(b_stack, params, windows[0], timer, _inside(aoi, grid), hb).detached()
        del b_stack, hb
    with timer("read"):
        a_stack = source.read(aoi, after_acqs, grid=grid, bands=params.bands)
    aw = None
    if len(a_stack):
        ha = _harmonise(a_stack, params, timer)
        a_stack = _without_data(a_stack)
        aw = _prepare("after", a_stack, params, reference.inside, timer, ha)
        del ha
    result = detect_stacks(
        aoi, None, a_stack, params=params, source_name=source_name, windows=windows, reference=reference, _timer=timer,
        _after=aw, on_magnitude=on_magnitude,
    )
    return result, reference


def _without_data(stack: SceneStack) -> SceneStack:
    """``stack`` with its DN and validity replaced by zero-stride zeros (no memory): what a
    prepared window still needs of its stack is the SCL, the acquisitions and the grid."""
    return replace(
        stack,
        data=np.broadcast_to(np.uint16(0), stack.data.shape),
        valid=np.broadcast_to(np.False_, stack.valid.shape),
    )


def detect_stacks(
    aoi: AOI,
    before_stack: SceneStack | None,
    after_stack: SceneStack,
    *,
    params: DetectParams | None = None,
    source_name: str = "",
    windows: tuple[tuple[date, date], tuple[date, date]] | None = None,
    reference: "Reference | None" = None,
    _timer: _Timer | None = None,
    _after: _Window | None = None,
    on_magnitude: Callable[..., object] | None = None,
) -> DetectionResult:
    """Detect change between two stacks already read onto one grid.

    Parameters
    ----------
    aoi : AOI
    before_stack, after_stack : SceneStack
        Same grid; must hold ``params.bands``. ``before_stack`` may be None with a
        :meth:`Reference.detached` reference.
    params : DetectParams or None
    source_name : str
        Recorded in the result.
    windows : ((date, date), (date, date)) or None
        The windows as asked (default: the stacks' first and last dates).
    reference : Reference or None
        ``prepare_reference(aoi, before_stack, params)`` done once and reused, e.g. for every
        new acquisition of a monitoring run against one reference period; the result is the
        same as without it.
    on_magnitude : callable, optional
        As for :func:`detect`.

    Returns
    -------
    DetectionResult

    Notes
    -----
    Memory: both windows as float32 reflectance (T x B x H x W x 4 bytes each) plus a few
    (B, H, W) composites.
    """
    params = params or DetectParams()
    timer = _timer or _Timer()
    if before_stack is None and (reference is None or reference.stack is not None):
        raise UsageError("before_stack may be None only with a detached reference (Reference.detached())")
    grid = after_stack.grid if before_stack is None else before_stack.grid
    if after_stack.grid != grid:
        raise UsageError("before and after stacks must share one grid; read both onto aoi.grid()")
    if windows is None and before_stack is None:
        raise UsageError("give the windows when comparing with a detached reference")
    if windows is None:
        windows = tuple(
            (s.dates[0], s.dates[-1]) if len(s) else (date.min, date.min) for s in (before_stack, after_stack)
        )
    wins = dict(zip(("before", "after"), windows))
    if reference is not None:
        if reference.stack is not before_stack or reference.params != params or reference.inside.shape != grid.shape:
            raise UsageError("reference was prepared for another before stack or other parameters; prepare it again")
        inside = reference.inside
    else:
        inside = _inside(aoi, grid)
        reference = _prepare_reference(before_stack, params, wins["before"], timer, inside)
    bw, bc, ref_id = reference.window, reference.composite, reference.coreg_id
    if len(after_stack) == 0:
        raise _no_data("after", wins["after"], None, 0)
    aw = _after if _after is not None else _prepare("after", after_stack, params, inside, timer)
    if not aw.used:
        raise _no_data("after", wins["after"], aw, len(after_stack))
    prepared = [bw, aw]

    if params.coregister:
        _coregister([aw], params, timer, reference.coreg)
        if not aw.used:
            raise _no_data(aw.name, wins[aw.name], aw, len(aw.stack))
    _apply_masks(aw, params, inside, params.coregister, timer)

    with timer("composite"):
        ac = _composite(aw)
    before_c, after_raw = bc.median, ac.median
    both = inside & np.isfinite(before_c).all(axis=0) & np.isfinite(after_raw).all(axis=0)
    if not both.any():
        raise NoDataError(
            f"the before ({_window_str(wins['before'])}) and after ({_window_str(wins['after'])}) composites "
            "share no clear pixel inside the AOI; widen the windows"
        )

    norm = None
    irmad_res = None
    with timer("normalise"):
        if params.normalise:
            try:
                norm = normalise(
                    before_c, after_raw, valid=both, p_min=params.nochange_p, min_fraction=params.nochange_min_fraction
                )
            except UsageError as exc:  # e.g. a singular band covariance: compare unnormalised
                log.warning("radiometric normalisation skipped: %s", exc)
            else:
                all_bands = len(_magnitude_band_index(params.bands, params.magnitude_bands)) == len(params.bands)
                needs_chi2 = params.threshold == "chi2" or (params.magnitude == "irmad_chi2" and all_bands)
                if norm.irmad is not None and needs_chi2:  # the fit's IR-MAD judged a subsample
                    from .kernels.irmad import irmad_transform

                    chi2, p_nc = irmad_transform(before_c, after_raw, norm.irmad)
                    irmad_res = replace(norm.irmad, chi2=chi2, p_nochange=p_nc)
        if norm is None:
            after_c = after_raw
        else:  # in place when no context cue needs the unnormalised after composite again
            inplace = params.context == "none" and after_raw.flags.c_contiguous
            after_c = apply_normalisation(after_raw, norm, out=after_raw if inplace else None)

    with timer("kernels"):
        from .kernels.metrics import cva

        cva_map = cva(before_c, after_c)
        mb = _magnitude_band_index(params.bands, params.magnitude_bands)
        magnitude = np.asarray(MAGNITUDES[params.magnitude](before_c, after_c, mb, both, irmad_res), np.float32)
        np.copyto(magnitude, np.float32(np.nan), where=~both)
        if params.smooth_px > 0:
            from scipy import ndimage

            filled = np.where(np.isfinite(magnitude), magnitude, 0.0)
            magnitude = np.where(both, ndimage.gaussian_filter(filled, params.smooth_px), np.nan).astype(np.float32)
        magnitude = np.asarray(CONTEXTS[params.context](magnitude, before_c, after_raw, params.bands, both, params), np.float32)
        deltas = _deltas_at(before_c, after_c, params.bands)
    if on_magnitude is not None:  # final from here on: nothing below writes into it
        magnitude.flags.writeable = False
        on_magnitude(
            magnitude, grid=grid, aoi=aoi, source=source_name,
            before=_window_str(wins["before"]), after=_window_str(wins["after"]),
        )

    with timer("threshold"):
        # the statistic tested: the magnitude, or IR-MAD's chi-square for the chi2 test
        stat = magnitude
        if params.threshold == "chi2" and params.magnitude != "irmad_chi2":
            stat = np.where(both, _mag_chi2(before_c, after_c, list(range(len(params.bands))), both, irmad_res), np.nan)
        vals = _threshold_sample(stat, both)
        dof = len(mb) if params.magnitude == "irmad_chi2" else len(params.bands)
        thr = (
            _threshold(vals, params.threshold, dof=dof, chi2_p=params.chi2_p, robust_k=params.robust_k)
            if vals.size
            else np.inf
        )
        with np.errstate(invalid="ignore"):
            changed = both & (stat > thr) & (cva_map >= params.min_cva)
        if params.extent_fraction > 0 and changed.any():
            changed &= _trim_extent(changed, stat, params.extent_fraction, radius_px=params.extent_radius_px)
        # the CVA level the changed pixels reach: persistence compares single dates against it
        cva_level = max(params.min_cva, float(np.nanpercentile(cva_map[changed], 5)) if changed.any() else params.min_cva)

    persistence_info: dict = {"min_persistence": params.min_persistence}
    with timer("persistence"):
        n_after = len(aw.used)
        persistence_info["after_clear_acquisitions"] = n_after
        if params.min_persistence <= 1:
            persistence_info["applied"] = False
            persistence_info["note"] = "disabled (min_persistence <= 1)"
        elif n_after < params.min_persistence:
            persistence_info["applied"] = False
            persistence_info["note"] = (
                f"after window has {n_after} clear acquisition(s) < min_persistence {params.min_persistence}: "
                "fell back to the composite comparison alone"
            )
            log.warning("persistence not applied: %s", persistence_info["note"])
        else:
            count, _ = _persistence(before_c, aw, norm, changed, params, cva_level)
            dropped = int((changed & (count < params.min_persistence)).sum())
            changed &= count >= params.min_persistence
            persistence_info["applied"] = True
            persistence_info["pixels_dropped"] = dropped

    if params.closing_radius_px > 0 and changed.any():
        with timer("threshold"):  # after persistence: the pixels it adds are below the threshold by design
            peak_r = max(params.extent_radius_px, params.closing_radius_px)
            changed = _close_gaps(changed, stat, both, params.extent_fraction, radius_px=params.closing_radius_px, peak_radius_px=peak_r)

    with timer("objects"):
        from .objects import extract_objects

        objects, class_map = extract_objects(
            changed,
            magnitude,
            deltas,
            grid,
            aoi,
            before=_window_str(wins["before"]),
            after=_window_str(wins["after"]),
            params=params.objects,
            before_img=before_c,
            after_img=after_c,
            bands=params.bands,
            valid=both,
        )
        class_map = np.asarray(class_map, dtype=np.uint8).copy()
        class_map[~both] = NODATA_CODE

    records = tuple(AcquisitionRecord(**r) for w in prepared for r in w.records)
    parameters = {
        **params.to_dict(),
        "threshold_value": None if not np.isfinite(thr) else round(float(thr), 6),
        "cva_level": round(cva_level, 6),
        "changed_pixels": int(changed.sum()),
        "persistence": persistence_info,
        "coregistration_reference": ref_id,
        "normalisation": norm.to_dict() if norm is not None else None,
        "acquisitions_used": {w.name: len(w.used) for w in prepared},
        "composite_median_count": {"before": int(np.median(bc.count[inside])), "after": int(np.median(ac.count[inside]))},
    }
    log.info(
        "%s: %d objects (%d changed pixels, threshold %.4g, before %d / after %d acquisitions)",
        aoi.id, len(objects), int(changed.sum()), thr, len(bw.used), len(aw.used),
    )
    return DetectionResult(
        aoi=aoi,
        grid=grid,
        source=source_name,
        before=_window_str(wins["before"]),
        after=_window_str(wins["after"]),
        class_map=class_map,
        magnitude=magnitude,
        objects=tuple(objects),
        composite_bands=tuple(params.bands),
        before_composite=before_c.astype(np.float32, copy=False),
        after_composite=after_c.astype(np.float32, copy=False),
        acquisitions=records,
        parameters=parameters,
        timings=dict(timer.t),
    )
