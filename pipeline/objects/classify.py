"""Classes of change objects: rules over measured properties and their place in the AOI.

A classifier takes the properties of one region (a dict from
:func:`pipeline.objects.label.region_table`) and its :class:`RegionContext` (which AOI feature
it touches) and returns ``(cls, confidence, evidence)``. Classifiers are named in
:data:`CLASSIFIERS`; a callable with the same signature is accepted too.

The default, ``"rules"``, tries the classes in a fixed order and the first rule whose conditions
hold wins:

1. ``runway_repair``: on a runway or taxiway (mostly inside its polygon, or touching it,
   elongated and aligned with its axis), with a clear brightness change: darkening is fresh
   asphalt, brightening new concrete.
2. ``water``: MNDWI change dominant, with water present before or after. Water replaced by
   land is classed by what replaced it: a built-up, compact surface is a ``new_structure``
   (quay, pier), anything else ``earthworks`` (land reclamation).
3. ``vegetation``: NDVI change dominant, the vegetated side vegetated; vegetation cleared down to
   bare soil (after NDVI bare, BSI or SWIR up) is not a vegetation change but ground work and is
   classed by the rules below (``earthworks``, variant ``cleared``, unless a structure is built).
   Nor is vegetation *replaced* by another surface (``ClassifyThresholds.replaced_vegetation``):
   a loss that brightens the visible bands (green plants are dark there; soil, roofs and paving
   are not): ``earthworks`` (variant ``cleared``) when soil shows (BSI or SWIR up), else ``other``
   (variant ``vegetation_replaced``). A vegetation change is then a swing of the plants on
   ground that stays natural: growth, thinning, a darkening or unchanged visible.
4. ``new_structure``: brightening, compact and roughly rectangular, with a built-up signature
   (SWIR falling relative to the visible bands, DBI up or BSI down: sand has the opposite
   signature) on ground that was bare; or darkening with at least two built-up signs and a
   built-up SWIR/visible ratio after (a dark roof, new paving).
5. ``removed_structure``: the reverse: darkening, compact, signature back towards bare ground,
   on ground that looked built-up.
6. ``earthworks``: bare soil exposed or moved: BSI up, or a brightness change with SWIR rising.
7. ``surface_change``: any other clear change mostly on paved features (aprons, hardstands,
   runways, taxiways, quays).
8. ``other``.

Deserts: NDBI is weak (bright sand looks built-up), so it is recorded in the evidence but never
decides a class; DBI, BSI, the SWIR/visible ratio, brightness, shape and context do.

Units: index deltas are unitless (after - before, each index in -1..1, formulas in
:data:`pipeline.kernels.metrics.INDEX_BANDS`); ``brightness`` is the mean visible reflectance
(B02, B03, B04; 0-1); areas m^2, lengths m, angles degrees.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping

from ..errors import UsageError
from .context import RUNWAY_ROLES, RegionContext, angle_difference
from .context import PAVED_ROLES, WATER_ROLES, feature_axis_deg, feature_context  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)

__all__ = [
    "CLASSIFIERS",
    "ClassifyThresholds",
    "RegionContext",
    "classify_region",
    "classify_rules",
    "water_both_dates",
    "feature_context",
    "feature_axis_deg",
    "get_classifier",
    "angle_difference",
    "PAVED_ROLES",
    "WATER_ROLES",
]



@dataclass(frozen=True)
class ClassifyThresholds:
    """Thresholds of the ``rules`` classifier.

    Attributes
    ----------
    brightness_min : float
        Smallest mean brightness change (reflectance, 0-1) that counts as a surface change. 0.03.
    ndvi_min : float
        Smallest mean NDVI change that counts as vegetation change. 0.08.
    mndwi_min : float
        Smallest mean MNDWI change that counts as water change. 0.15.
    bsi_min : float
        Smallest mean BSI rise that counts as bare soil exposed. 0.04.
    swir_rise_min : float
        Smallest B11 reflectance rise (0-1) that counts as "SWIR up" for earthworks. 0.02.
    swir_vis_drop : float
        Change of the B11 / mean(B02, B03, B04) ratio below ``-swir_vis_drop`` is a built-up
        signature (above ``+swir_vis_drop`` the reverse). 0.05.
    dbi_min : float
        DBI change above ``dbi_min`` is a built-up signature (below ``-dbi_min`` the reverse). 0.02.
    angle_tol_deg : float
        Largest angle between a region's axis and a runway axis for "aligned", degrees. 15.
    runway_elongation_min : float
        Smallest elongation (major / minor axis) of a repair strip that only touches a runway. 2.5.
    inside_min : float
        Fraction of a region inside a feature polygon for "on the feature" (0-1). 0.5.
    structure_elongation_max : float
        Largest elongation of a structure. 5.
    structure_rectangularity_min : float
        Smallest area / minimum-rotated-rectangle area of a structure (0-1). 0.6.
    structure_solidity_min : float
        Smallest area / convex-hull area of a structure (0-1). 0.8.
    bare_ndvi_max : float
        Largest NDVI of the ground before for "was bare ground". 0.2.
    builtup_swir_vis_max : float
        Largest B11 / mean(B02, B03, B04) ratio that looks built-up (concrete, metal, asphalt are
        near 1; bright desert sand is about 1.5-2). 1.35.
    water_nir_max : float
        Largest B08 reflectance (0-1) of open water; with MNDWI > 0 a surface looks like water. 0.15.
    water_swir_max : float
        Largest B11 reflectance (0-1) of open water for :func:`water_both_dates` (water absorbs
        at 1.6 um: clear or turbid, B11 stays near 0.01-0.04; shaded streets and dark roofs,
        which can have MNDWI > 0 and a dark NIR in a winter scene, are brighter). 0.05.
    vegetated_ndvi_min : float
        Smallest NDVI of the vegetated side (after for growth, before for loss). 0.25.
    water_swir_dark : bool
        Water appearing must also be dark in the SWIR after, B11 <= ``water_swir_max`` (the test
        of :func:`water_both_dates`): water absorbs at 1.6 um whether clear or turbid, whereas a
        new dark roof or a shaded street can pass MNDWI > 0 with a dark NIR (measured on a real
        OSCD pair: B11 0.11 after, classed ``water`` without this test). Only the appearing side
        is tested: water replaced by land is classed by what replaced it, and a region along a
        shore mixes land into its mean. True; False restores the MNDWI + NIR test.
    replaced_vegetation : bool
        A vegetation loss (NDVI down by ``ndvi_min``) that brightens the visible bands by
        ``brightness_min`` or more is vegetation replaced by another surface, not a vegetation
        change (see the module docstring). On real OSCD pairs such objects were mostly labelled
        urban change. Caveat: plants drying to straw also brighten the visible; with BSI or SWIR
        up they are then named ``earthworks`` (``cleared``), as a harvest down to bare soil
        already was. True; False restores the NDVI-only rule.
    thin_width_m : float
        Objects whose minimum rotated rectangle is at most this wide (metres; 4 pixels) skip the
        rectangularity test: rasterised thin rotated shapes are staircases (a 21 m wide diagonal
        quay measures 0.6 and 33 m). 40.
    """

    brightness_min: float = 0.03
    ndvi_min: float = 0.08
    mndwi_min: float = 0.15
    bsi_min: float = 0.04
    swir_rise_min: float = 0.02
    swir_vis_drop: float = 0.05
    dbi_min: float = 0.02
    angle_tol_deg: float = 15.0
    runway_elongation_min: float = 2.5
    inside_min: float = 0.5
    structure_elongation_max: float = 5.0
    structure_rectangularity_min: float = 0.6
    structure_solidity_min: float = 0.8
    bare_ndvi_max: float = 0.2
    builtup_swir_vis_max: float = 1.35
    water_nir_max: float = 0.15
    water_swir_max: float = 0.05
    vegetated_ndvi_min: float = 0.25
    water_swir_dark: bool = True
    replaced_vegetation: bool = True
    thin_width_m: float = 40.0


def _ramp(x: float, lo: float, hi: float) -> float:
    """0 at or below ``lo``, 1 at or above ``hi``, linear between."""
    if hi <= lo:
        return 1.0 if x >= hi else 0.0
    return min(1.0, max(0.0, (x - lo) / (hi - lo)))


def _get(props: Mapping[str, Any], key: str) -> float | None:
    v = props.get(key)
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _derived(props: Mapping[str, Any], water_nir_max: float = 0.15) -> dict[str, float | bool | None]:
    """Band-derived measurements: SWIR/visible ratio before/after, NDVI before, B11 change."""
    out: dict[str, float | None] = {}
    for w in ("before", "after"):
        vis = [_get(props, f"{w}_{b}") for b in ("B02", "B03", "B04")]
        swir = _get(props, f"{w}_B11")
        red, nir = _get(props, f"{w}_B04"), _get(props, f"{w}_B08")
        if swir is not None and all(v is not None for v in vis) and sum(vis) > 1e-6:
            out[f"{w}_swir_vis"] = swir / (sum(vis) / 3.0)
        if red is not None and nir is not None and (red + nir) > 1e-6:
            out[f"{w}_ndvi"] = (nir - red) / (nir + red)
        green = vis[1]
        if green is not None and swir is not None and (green + swir) > 1e-6:
            out[f"{w}_mndwi"] = (green - swir) / (green + swir)
            # open water: MNDWI > 0 and a dark NIR (water absorbs it; roofs and sand do not)
            out[f"{w}_water"] = out[f"{w}_mndwi"] > 0.0 and (nir is None or nir <= water_nir_max)
        out[f"{w}_B11"] = swir
    if out.get("before_swir_vis") is not None and out.get("after_swir_vis") is not None:
        out["d_swir_vis"] = out["after_swir_vis"] - out["before_swir_vis"]
    if out.get("before_B11") is not None and out.get("after_B11") is not None:
        out["d_swir"] = out["after_B11"] - out["before_B11"]
    return out


def water_both_dates(props: Mapping[str, Any], thresholds: ClassifyThresholds | None = None) -> bool:
    """True when a region is open water on both dates: only the colour of the water changed.

    Open water on a date: MNDWI > 0 and B11 <= ``water_swir_max`` (region means). No NIR test:
    sediment-laden water reaches B08 0.16 (a measured river reach), above the ``water_nir_max``
    the classifier uses to tell water from bright roofs; the SWIR test is the stricter one. A
    river turning turbid, sun glint, algae or waves change the reflectance of water a lot
    without any change of what covers the ground (measured: a whole river reach, 13 000
    pixels, flagged on a real L1C pair). False when a band is missing.
    """
    t = thresholds or ClassifyThresholds()
    for w in ("before", "after"):
        g, s = _get(props, f"{w}_B03"), _get(props, f"{w}_B11")
        if g is None or s is None or g + s <= 1e-6:
            return False
        if not ((g - s) / (g + s) > 0.0 and s <= t.water_swir_max):
            return False
    return True


_MEASURE_KEYS = (
    "area_m2",
    "length_m",
    "width_m",
    "elongation",
    "orientation_deg",
    "rectangularity",
    "solidity",
    "mean_magnitude",
    "d_brightness",
    "d_ndvi",
    "d_ndbi",
    "d_bsi",
    "d_dbi",
    "d_mndwi",
)

UNITS = {
    "area_m2": "m^2",
    "length_m": "m",
    "width_m": "m",
    "elongation": "ratio major/minor axis",
    "orientation_deg": "degrees clockwise from grid north, 0-180",
    "angle_to_feature_deg": "degrees",
    "rectangularity": "area / minimum rotated rectangle area",
    "solidity": "area / convex hull area",
    "inside_fraction": "0-1",
    "mean_magnitude": "change magnitude (unitless)",
    "d_brightness": "change of the mean visible reflectance (B02, B03, B04), 0-1 scale",
    "d_swir": "B11 reflectance change (0-1 scale)",
    "swir_vis": "B11 / mean(B02, B03, B04)",
}
"""Units of the measurements recorded in the evidence; index deltas (``d_*``) are unitless."""


def _r(v: float | None, nd: int = 4) -> float | None:
    return None if v is None else round(float(v), nd)


def classify_rules(
    props: Mapping[str, Any], context: RegionContext | None = None, *, thresholds: ClassifyThresholds | None = None
) -> tuple[str, float, dict]:
    """The default rule-based classifier (see the module docstring for the rules and their order).

    Parameters
    ----------
    props : dict
        One region's properties from :func:`pipeline.objects.label.region_table`; missing deltas
        or bands simply disable the checks that need them.
    context : RegionContext, optional
        Where the region lies; default: touching no feature.
    thresholds : ClassifyThresholds, keyword-only, optional

    Returns
    -------
    cls : str
        One of :data:`pipeline.objects.model.CHANGE_CLASSES`.
    confidence : float
        0-1: how clearly the measurements pass the rule's thresholds.
    evidence : dict
        JSON-able: ``rule`` (``"<class>.<variant>"``), ``reason`` (one sentence), ``measurements``
        (the key values, rounded), ``units`` and ``feature`` context.
    """
    t = thresholds or ClassifyThresholds()
    ctx = context or RegionContext()
    der = _derived(props, t.water_nir_max)
    dB = _get(props, "d_brightness")
    dN = _get(props, "d_ndvi")
    dW = _get(props, "d_mndwi")
    dS = _get(props, "d_bsi")
    dD = _get(props, "d_dbi")
    d_sv = der.get("d_swir_vis")
    d_swir = der.get("d_swir")
    elong = _get(props, "elongation") or 1.0
    rect = _get(props, "rectangularity") or 0.0
    solid = _get(props, "solidity") or 0.0
    orient = _get(props, "orientation_deg")
    width = _get(props, "width_m")
    # a rotated shape a few pixels wide rasterises into a staircase whose rectangularity says
    # nothing about the object: only wider objects are held to it
    rect_ok = rect >= t.structure_rectangularity_min or (width is not None and width <= t.thin_width_m)

    meas: dict[str, Any] = {k: _r(_get(props, k)) for k in _MEASURE_KEYS if _get(props, k) is not None}
    for k in ("before_swir_vis", "after_swir_vis", "d_swir_vis", "d_swir", "before_ndvi", "after_ndvi", "before_mndwi", "after_mndwi"):
        if der.get(k) is not None:
            meas[k] = _r(der[k])
    angle = None
    if orient is not None and ctx.feature_axis_deg is not None:
        angle = angle_difference(orient, ctx.feature_axis_deg)
        meas["angle_to_feature_deg"] = _r(angle, 2)
    if ctx.feature is not None:
        meas["inside_fraction"] = _r(ctx.inside_fraction, 3)

    def done(cls: str, variant: str, conf: float, reason: str) -> tuple[str, float, dict]:
        ev = {
            "rule": f"{cls}.{variant}",
            "reason": reason,
            "measurements": meas,
            "units": {k: UNITS[k] for k in meas if k in UNITS} | {"d_*": "index change, unitless"},
            "context": {
                "feature": ctx.feature,
                "role": ctx.role,
                "surface": ctx.surface,
                "touches": bool(ctx.touches),
                "paved_fraction": _r(ctx.paved_fraction, 3),
                "aoi_kind": ctx.aoi_kind,
            },
        }
        return cls, round(min(1.0, max(0.0, conf)), 3), ev

    absB = abs(dB) if dB is not None else 0.0
    absN = abs(dN) if dN is not None else 0.0
    absW = abs(dW) if dW is not None else 0.0
    absS = abs(dS) if dS is not None else 0.0
    greening = dN is not None and dN >= t.ndvi_min

    # 1. runway repair -----------------------------------------------------------------------
    if ctx.role in RUNWAY_ROLES and absB >= t.brightness_min and not greening:
        inside = ctx.inside_fraction >= t.inside_min
        aligned = angle is not None and angle <= t.angle_tol_deg and elong >= t.runway_elongation_min
        if inside or (ctx.touches and aligned):
            darker = dB < 0
            conf = 0.45 + 0.25 * _ramp(absB, t.brightness_min, 3 * t.brightness_min)
            conf += 0.15 * min(1.0, ctx.inside_fraction / max(t.inside_min, 1e-6))
            conf += 0.15 if aligned else 0.0
            # the recorded surface agrees with the direction: asphalt resurfaced darker, concrete brighter
            if ctx.surface and ("asphalt" in ctx.surface or "bitumen" in ctx.surface):
                conf += 0.05 if darker else -0.05
            elif ctx.surface and "concrete" in ctx.surface:
                conf += 0.05 if not darker else -0.05
            where = "inside" if inside else "along"
            what = "darkening (fresh asphalt)" if darker else "brightening (new concrete or fresh paint)"
            return done(
                "runway_repair",
                "darkening" if darker else "brightening",
                conf,
                f"{what} of {absB:.3f} reflectance {where} {ctx.feature}"
                + (f", axis within {angle:.0f} deg of it" if aligned else ""),
            )

    # 2. water ---------------------------------------------------------------------------------
    # Open water has a negative NDVI, so filling it with any land cover raises NDVI as much as it
    # lowers MNDWI: a clear water <-> land transition whose land side is not vegetated is decided
    # here, whichever index moved more.
    wet_b, wet_a = der.get("before_water"), der.get("after_water")
    land_ndvi = der.get("after_ndvi") if wet_b else der.get("before_ndvi")
    water_transition = (
        wet_b is not None and wet_a is not None and bool(wet_b) != bool(wet_a)
        and (land_ndvi is None or land_ndvi < t.vegetated_ndvi_min)
    )
    if dW is not None and absW >= t.mndwi_min and (absW >= absN or water_transition):
        wet_before, wet_after = der.get("before_water"), der.get("after_water")
        if wet_before is not None or wet_after is not None:
            # the side that gained MNDWI must look like water: MNDWI > 0 and dark in the NIR
            # (a bright new roof also raises MNDWI, but it is bright in the NIR)
            has_water = bool(wet_after) if dW > 0 else bool(wet_before)
        else:
            has_water = absW >= 2 * t.mndwi_min or ctx.water_fraction >= t.inside_min
        if dW > 0 and dB is not None and dB >= t.brightness_min:
            has_water = False  # water appearing darkens the surface
        after_swir = der.get("after_B11")
        if dW > 0 and t.water_swir_dark and after_swir is not None and after_swir > t.water_swir_max:
            has_water = False  # water absorbs at 1.6 um; a dark roof or a shaded street does not
        after_sv = der.get("after_swir_vis")
        filled = dW < 0 and bool(wet_before) and wet_after is not None and not wet_after
        if has_water and filled and after_sv is not None:
            # water became land: what replaced it decides (ports: quays built, land reclaimed)
            shape_ok = rect_ok and solid >= t.structure_solidity_min
            conf = 0.45 + 0.3 * _ramp(absW, t.mndwi_min, 3 * t.mndwi_min)
            if after_sv <= t.builtup_swir_vis_max and shape_ok:
                return done(
                    "new_structure",
                    "on_water",
                    conf + 0.15,
                    f"water replaced by a built-up surface (MNDWI fell by {absW:.2f}, SWIR/visible after "
                    f"{after_sv:.2f}): a quay, pier or jetty",
                )
            return done(
                "earthworks",
                "reclamation",
                conf + 0.1 * (dS is not None and dS >= t.bsi_min),
                f"water replaced by bare fill (MNDWI fell by {absW:.2f}, SWIR/visible after {after_sv:.2f}): land reclamation",
            )
        if has_water:
            conf = 0.5 + 0.4 * _ramp(absW, t.mndwi_min, 3 * t.mndwi_min) + 0.1 * (ctx.water_fraction >= t.inside_min)
            variant = "appeared" if dW > 0 else "receded"
            return done("water", variant, conf, f"MNDWI {'rose' if dW > 0 else 'fell'} by {absW:.2f}, more than NDVI changed")

    # 3. vegetation ----------------------------------------------------------------------------
    # the vegetated side (after for growth, before for loss) must look vegetated when bands
    # tell: bare sand has an NDVI of 0.1-0.15 that a new roof or tarmac takes to 0
    green_side = der.get("after_ndvi" if (dN or 0.0) > 0 else "before_ndvi")
    vegetated = green_side is None or green_side >= t.vegetated_ndvi_min
    # vegetation cleared down to bare soil (after NDVI bare, BSI or SWIR up) is ground work, not a
    # vegetation change: it falls through to earthworks (or a structure, when one is built)
    after_ndvi, was_green = der.get("after_ndvi"), der.get("before_ndvi")
    cleared = (
        dN is not None
        and dN <= -t.ndvi_min
        and was_green is not None
        and was_green >= t.vegetated_ndvi_min
        and after_ndvi is not None
        and after_ndvi <= t.bare_ndvi_max
        and ((dS is not None and dS >= t.bsi_min) or (d_swir is not None and d_swir >= t.swir_rise_min))
    )
    # vegetation replaced by a surface brighter in the visible (green plants are dark there)
    replaced = t.replaced_vegetation and dN is not None and dN <= -t.ndvi_min and dB is not None and dB >= t.brightness_min
    if dN is not None and absN >= t.ndvi_min and absN >= absS and vegetated and not cleared and not replaced:
        conf = 0.5 + 0.4 * _ramp(absN, t.ndvi_min, 3 * t.ndvi_min) + 0.1 * (absN >= 2 * absS)
        variant = "growth" if dN > 0 else "loss"
        return done("vegetation", variant, conf, f"NDVI {'rose' if dN > 0 else 'fell'} by {absN:.2f}, the dominant index change")

    compact = elong <= t.structure_elongation_max and rect_ok and solid >= t.structure_solidity_min
    built_signs = []  # signs that the surface became more built-up (positive) or less (negative)
    if d_sv is not None and abs(d_sv) >= t.swir_vis_drop:
        built_signs.append(("swir_vis", -1 if d_sv > 0 else 1))
    if dD is not None and abs(dD) >= t.dbi_min:
        built_signs.append(("dbi", 1 if dD > 0 else -1))
    if dS is not None and abs(dS) >= t.bsi_min:
        built_signs.append(("bsi", -1 if dS > 0 else 1))
    toward_built = sum(s for _, s in built_signs)
    before_ndvi = der.get("before_ndvi")
    was_bare = before_ndvi is None or before_ndvi <= t.bare_ndvi_max
    before_sv = der.get("before_swir_vis")
    was_built = before_sv is None or before_sv <= t.builtup_swir_vis_max
    on_paved = ctx.paved_fraction >= t.inside_min

    # 4. new structure -------------------------------------------------------------------------
    if dB is not None and dB >= t.brightness_min and compact and toward_built > 0 and was_bare and not on_paved:
        n_signs = sum(1 for _, s in built_signs if s > 0)
        conf = 0.4 + 0.2 * _ramp(dB, t.brightness_min, 3 * t.brightness_min) + 0.1 * n_signs + 0.1 * _ramp(rect, t.structure_rectangularity_min, 0.9)
        signs = ", ".join(n for n, s in built_signs if s > 0)
        return done(
            "new_structure",
            "bright_compact",
            conf,
            f"compact rectangular brightening of {dB:.3f} reflectance with a built-up signature ({signs}) on bare ground",
        )

    # dark roofs and fresh paving darken instead: demand two built-up signs and a built-up after
    after_sv = der.get("after_swir_vis")
    n_built = sum(1 for _, s in built_signs if s > 0)
    if (
        dB is not None
        and dB <= -t.brightness_min
        and compact
        and n_built >= 2
        and toward_built >= 2
        and (after_sv is None or after_sv <= t.builtup_swir_vis_max)
        and was_bare
        and not on_paved
    ):
        conf = 0.35 + 0.15 * _ramp(-dB, t.brightness_min, 3 * t.brightness_min) + 0.05 * n_built + 0.1 * _ramp(rect, t.structure_rectangularity_min, 0.9)
        signs = ", ".join(n for n, s in built_signs if s > 0)
        return done(
            "new_structure",
            "dark_builtup",
            conf,
            f"compact darkening of {-dB:.3f} reflectance with a built-up signature ({signs}): a dark roof or new paving",
        )

    # 5. removed structure ---------------------------------------------------------------------
    if dB is not None and dB <= -t.brightness_min and compact and toward_built < 0 and was_built and not on_paved:
        n_signs = sum(1 for _, s in built_signs if s < 0)
        conf = 0.35 + 0.2 * _ramp(-dB, t.brightness_min, 3 * t.brightness_min) + 0.1 * n_signs + 0.1 * _ramp(rect, t.structure_rectangularity_min, 0.9)
        signs = ", ".join(n for n, s in built_signs if s < 0)
        return done(
            "removed_structure",
            "dark_compact",
            conf,
            f"compact rectangular darkening of {-dB:.3f} reflectance with the signature returning to bare ground ({signs})",
        )

    # 6. earthworks ----------------------------------------------------------------------------
    bsi_up = dS is not None and dS >= t.bsi_min
    swir_up = d_swir is not None and d_swir >= t.swir_rise_min and absB >= t.brightness_min
    if (bsi_up or swir_up) and not greening and not on_paved:
        irregular = not compact
        conf = 0.45 + 0.25 * _ramp(dS if dS is not None else 0.0, t.bsi_min, 3 * t.bsi_min)
        conf += 0.15 * bool(swir_up) + 0.15 * irregular
        why = []
        if bsi_up:
            why.append(f"BSI rose by {dS:.2f}")
        if swir_up:
            why.append(f"SWIR rose by {d_swir:.3f} reflectance with a brightness change")
        if irregular:
            why.append("irregular shape")
        if cleared or replaced:
            why.append(f"vegetation cleared (NDVI fell by {absN:.2f}" + (f" to {after_ndvi:.2f})" if after_ndvi is not None else ")"))
        return done("earthworks", "cleared" if cleared or replaced else "bare_soil", conf, "bare soil exposed: " + ", ".join(why))

    # 7. surface change on paved areas ---------------------------------------------------------
    if on_paved and (absB >= t.brightness_min or absS >= t.bsi_min or (dD is not None and abs(dD) >= t.dbi_min)):
        conf = 0.4 + 0.3 * _ramp(absB, t.brightness_min, 3 * t.brightness_min) + 0.2 * min(1.0, ctx.paved_fraction)
        return done(
            "surface_change",
            "paved",
            conf,
            f"surface change on paved {ctx.role or 'area'} {ctx.feature or ''}".rstrip()
            + f" (brightness change {dB if dB is not None else float('nan'):+.3f})",
        )

    # 8. other ---------------------------------------------------------------------------------
    mag = _get(props, "mean_magnitude")
    if replaced:
        return done(
            "other",
            "vegetation_replaced",
            0.4 + 0.2 * _ramp(absN, t.ndvi_min, 3 * t.ndvi_min),
            f"vegetation replaced by a brighter surface (NDVI fell by {absN:.2f}, brightness rose by {dB:.3f})",
        )
    conf = 0.3 if mag is None else 0.2 + 0.2 * _ramp(mag, 0.0, 3.0)
    return done("other", "unexplained", conf, "change detected but no class rule matched")


ClassifierFn = Callable[..., tuple[str, float, dict]]

CLASSIFIERS: dict[str, ClassifierFn] = {"rules": classify_rules}
"""Named classifiers: ``fn(props, context, *, thresholds) -> (cls, confidence, evidence)``."""


def get_classifier(method: str | ClassifierFn) -> ClassifierFn:
    """The classifier named ``method`` (or ``method`` itself when callable)."""
    if callable(method):
        return method
    try:
        return CLASSIFIERS[method]
    except KeyError:
        raise UsageError(f"unknown classifier {method!r}; use one of {', '.join(sorted(CLASSIFIERS))} or pass a callable") from None


def classify_region(
    props: Mapping[str, Any],
    context: RegionContext | None = None,
    *,
    method: str | ClassifierFn = "rules",
    thresholds: ClassifyThresholds | None = None,
) -> tuple[str, float, dict]:
    """Class, confidence and evidence of one region.

    Parameters
    ----------
    props : dict
        From :func:`pipeline.objects.label.region_table`.
    context : RegionContext, optional
    method : str or callable, keyword-only
        A name in :data:`CLASSIFIERS` or a callable ``fn(props, context, *, thresholds)``.
    thresholds : ClassifyThresholds, keyword-only, optional

    Raises
    ------
    UsageError
        (a ``ValueError``) for an unknown method name, listing the valid ones, or a classifier
        returning a class outside :data:`pipeline.objects.model.CHANGE_CLASSES`.
    """
    from .model import CHANGE_CLASSES

    fn = get_classifier(method)
    cls, conf, evidence = fn(props, context, thresholds=thresholds)
    if cls not in CHANGE_CLASSES:
        raise UsageError(f"classifier {method!r} returned unknown class {cls!r}; use one of {', '.join(CHANGE_CLASSES)}")
    evidence = dict(evidence)
    if "thresholds" not in evidence and thresholds is not None:
        evidence["thresholds"] = asdict(thresholds)
    return cls, float(min(1.0, max(0.0, conf))), evidence
