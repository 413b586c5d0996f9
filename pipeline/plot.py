"""Small matplotlib helpers for notebooks: colour composites, before/after pairs, objects, series.

Every helper draws on a given ``Axes`` or makes a new :class:`matplotlib.figure.Figure` (never
through ``pyplot``'s global state, so nothing accumulates and any backend, Agg included, works) and
returns what it drew on. Images are shown in pixel coordinates of the AOI grid (``imshow``'s
default), and :func:`show_objects` draws outlines in the same coordinates.

The stretch is the report's (:func:`pipeline.outputs.plots.stretch_limits`): percentiles over every
image of a comparison together and one pair of limits for the three bands, so before and after are
comparable and the hue is kept.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Sequence

import numpy as np
from affine import Affine
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .errors import UsageError
from .grid import Grid
from .objects.model import CLASS_COLOURS
from .outputs.plots import SWIR_FALSE_COLOUR, TRUE_COLOUR, stretch_limits

log = logging.getLogger(__name__)

__all__ = [
    "COMBOS",
    "class_colour",
    "rgb",
    "composite_limits",
    "show_pair",
    "show_clear",
    "show_magnitude",
    "show_objects",
    "show_outline",
    "plot_series",
    "plot_profile",
]

COMBOS: dict[str, tuple[str, str, str]] = {"true": TRUE_COLOUR, "swir": SWIR_FALSE_COLOUR}
"""Named band combinations (red, green, blue): ``true`` = B04 B03 B02; ``swir`` = B12 B8A B04
(fresh asphalt near black, bare soil and new concrete bright, vegetation green)."""

DEFAULT_PERCENTILES = (2.0, 98.0)
_CLEAR_CMAP = ListedColormap(["0.45", "white"], name="clear")


def class_colour(cls: str) -> tuple[float, float, float, float]:
    """Matplotlib RGBA (0-1) of a change class, from :data:`pipeline.objects.model.CLASS_COLOURS`."""
    if cls not in CLASS_COLOURS:
        raise ValueError(f"unknown change class {cls!r}; valid: {', '.join(CLASS_COLOURS)}")
    return tuple(c / 255.0 for c in CLASS_COLOURS[cls])  # type: ignore[return-value]


def _combo_bands(combo) -> tuple[str, str, str]:
    if isinstance(combo, str):
        if combo not in COMBOS:
            raise ValueError(f"unknown combo {combo!r}; use one of {', '.join(COMBOS)} or three band names")
        return COMBOS[combo]
    combo = tuple(combo)
    if len(combo) != 3 or not all(isinstance(b, str) for b in combo):
        raise ValueError(f"combo must be one of {', '.join(COMBOS)} or three band names, got {combo!r}")
    return combo  # type: ignore[return-value]


def _channels(image, bands: Sequence[str], combo) -> np.ndarray:
    """``(3, H, W)`` float32 of the combo's bands from a ``(B, H, W)`` float reflectance image."""
    img = np.asarray(image)
    if img.ndim != 3:
        raise UsageError(f"image must be (B, H, W) reflectance, got shape {img.shape}")
    if not np.issubdtype(img.dtype, np.floating):
        raise UsageError(
            f"image must be float reflectance (0-1, NaN = no data), got {img.dtype}; "
            "convert DN with SceneStack.reflectance(t)"
        )
    bands = tuple(bands)
    if len(bands) != img.shape[0]:
        raise UsageError(f"bands names {len(bands)} bands {bands} but image has {img.shape[0]}")
    want = _combo_bands(combo)
    missing = [b for b in want if b not in bands]
    if missing:
        raise UsageError(f"combo {combo!r} needs bands {', '.join(missing)}, not in {bands}")
    return img[[bands.index(b) for b in want]].astype(np.float32, copy=False)


def composite_limits(*images, bands: Sequence[str], combo="true", percentiles=DEFAULT_PERCENTILES):
    """Shared stretch limits ``(lo, hi)``, each ``(3,)`` float32, over several ``(B, H, W)`` images."""
    return stretch_limits(*(_channels(im, bands, combo) for im in images), pct=tuple(percentiles))


def rgb(
    image,
    bands: Sequence[str],
    *,
    combo="true",
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    limits: tuple[np.ndarray, np.ndarray] | None = None,
    nodata: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> np.ndarray:
    """A colour composite of a reflectance image with a percentile stretch.

    Parameters
    ----------
    image : (B, H, W) float
        Reflectance (0-1), NaN = no data (e.g. ``DetectionResult.before_composite`` or
        ``SceneStack.reflectance(t)``).
    bands : sequence of str
        Band names along axis 0.
    combo : str or three band names
        ``"true"`` (B04 B03 B02) or ``"swir"`` (B12 B8A B04), see :data:`COMBOS`.
    percentiles : (float, float)
        Per-band stretch percentiles over the image's valid pixels.
    limits : ((3,), (3,)) arrays, optional
        Explicit ``(lo, hi)`` reflectance per channel (e.g. :func:`composite_limits` of a pair);
        overrides ``percentiles``.
    nodata : RGB triple
        Colour (0-1) of pixels where any channel is NaN.

    Returns
    -------
    (H, W, 3) float32
        Values in [0, 1], ready for ``Axes.imshow``.

    Raises
    ------
    ValueError
        Unknown combo name (lists the valid ones).
    UsageError
        Wrong shape or dtype, or a band the combo needs is missing.
    """
    ch = _channels(image, bands, combo)
    lo, hi = limits if limits is not None else stretch_limits(ch, pct=tuple(percentiles))
    lo = np.asarray(lo, dtype=np.float32).reshape(3, 1, 1)
    hi = np.asarray(hi, dtype=np.float32).reshape(3, 1, 1)
    with np.errstate(invalid="ignore"):
        out = np.clip((ch - lo) / np.maximum(hi - lo, np.float32(1e-6)), 0.0, 1.0)
    bad = ~np.isfinite(ch).all(axis=0)
    out[:, bad] = np.asarray(nodata, dtype=np.float32)[:, None]
    return np.ascontiguousarray(out.transpose(1, 2, 0))


def _new_axes(n: int, *, figsize, ncols: int | None = None, sharex=True, sharey=True):
    ncols = ncols or n
    nrows = -(-n // ncols)
    fig = Figure(figsize=figsize or (4.5 * ncols, 4.5 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharex=sharex, sharey=sharey, squeeze=False).ravel()
    return fig, axes


def show_pair(
    before,
    after,
    bands: Sequence[str],
    *,
    combo="true",
    titles: tuple[str, str] = ("before", "after"),
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    axes: Sequence[Axes] | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Before and after composites side by side with one shared stretch.

    Parameters
    ----------
    before, after : (B, H, W) float
        Reflectance (0-1), NaN = no data.
    bands : sequence of str
    combo : str or three band names
        See :func:`rgb`.
    titles : (str, str)
    axes : two Axes, optional
        Draw there instead of on a new figure.

    Returns
    -------
    matplotlib.figure.Figure
        Its first two axes hold the images (pixel coordinates).
    """
    lims = composite_limits(before, after, bands=bands, combo=combo, percentiles=percentiles)
    if axes is None:
        fig, axes = _new_axes(2, figsize=figsize)
    else:
        if len(axes) != 2:
            raise UsageError(f"show_pair needs two axes, got {len(axes)}")
        fig = axes[0].figure
    name = combo if isinstance(combo, str) else "/".join(combo)
    for ax, img, title in zip(axes, (before, after), titles):
        ax.imshow(rgb(img, bands, combo=combo, limits=lims), interpolation="nearest")
        ax.set_title(f"{title} ({name})")
    return fig


def show_clear(
    clear,
    dates: Sequence[date],
    *,
    fractions: Sequence[float] | None = None,
    ncols: int = 6,
    max_panels: int = 24,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Clear-sky masks of a stack as small panels (clear white, masked grey).

    Parameters
    ----------
    clear : (T, H, W) bool
        True where an observation is clear (e.g. ``MaskResult.clear``).
    dates : sequence of date
        Length T.
    fractions : sequence of float, optional
        Clear fraction (0-1) per date for the titles; default the fraction of True pixels.
    max_panels : int
        At most this many dates are drawn, evenly spread over the stack.

    Returns
    -------
    matplotlib.figure.Figure
    """
    clear = np.asarray(clear)
    if clear.ndim != 3 or clear.dtype != bool:
        raise UsageError(f"clear must be a (T, H, W) bool array, got {clear.dtype} {clear.shape}")
    T = clear.shape[0]
    if len(dates) != T:
        raise UsageError(f"{len(dates)} dates for {T} masks")
    if T == 0:
        raise UsageError("no masks to show (empty stack)")
    idx = np.unique(np.linspace(0, T - 1, min(T, max_panels)).round().astype(int))
    fig, axes = _new_axes(len(idx), figsize=figsize or (2.2 * min(ncols, len(idx)), 2.4 * -(-len(idx) // ncols)), ncols=min(ncols, len(idx)))
    for ax, t in zip(axes, idx):
        ax.imshow(clear[t], cmap=_CLEAR_CMAP, vmin=0, vmax=1, interpolation="nearest")
        frac = float(fractions[t]) if fractions is not None else float(clear[t].mean())
        ax.set_title(f"{dates[t]:%Y-%m-%d}\n{100 * frac:.0f}% clear", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[len(idx) :]:
        ax.set_visible(False)
    return fig


def show_magnitude(magnitude, *, ax: Axes | None = None, vmax: float | None = None, cmap: str = "magma") -> Axes:
    """The change magnitude ``(H, W)`` float with a colour bar; NaN shown grey.

    ``vmax`` defaults to the 99.5th percentile of the finite values.
    """
    mag = np.asarray(magnitude, dtype=np.float32)
    if mag.ndim != 2:
        raise UsageError(f"magnitude must be (H, W), got shape {mag.shape}")
    if ax is None:
        fig, axes = _new_axes(1, figsize=(6, 5))
        ax = axes[0]
    finite = mag[np.isfinite(mag)]
    if vmax is None:
        vmax = float(np.percentile(finite, 99.5)) if finite.size else 1.0
    import matplotlib as mpl

    cm = mpl.colormaps[cmap].with_extremes(bad="0.6")
    im = ax.imshow(np.ma.masked_invalid(mag), cmap=cm, vmin=0.0, vmax=max(vmax, 1e-6), interpolation="nearest")
    ax.figure.colorbar(im, ax=ax, shrink=0.8, label="change magnitude")
    ax.set_title("change magnitude")
    return ax


def _rings(geom):
    polys = getattr(geom, "geoms", [geom])
    for p in polys:
        if p.geom_type != "Polygon" or p.is_empty:
            continue
        yield np.asarray(p.exterior.coords)
        for hole in p.interiors:
            yield np.asarray(hole.coords)


def _pixel_affine(grid: Grid, coords: str) -> Affine:
    if coords not in ("pixel", "crs"):
        raise ValueError(f"unknown coords {coords!r}; use one of pixel, crs")
    # imshow puts pixel (row, col)'s centre at (col, row): shift the inverse transform by half a pixel
    return Affine.translation(-0.5, -0.5) * ~grid.transform if coords == "pixel" else Affine.identity()


def show_outline(
    ax: Axes,
    geom,
    grid: Grid,
    *,
    colour="tab:red",
    label: str | None = None,
    coords: str = "pixel",
    linewidth: float = 1.5,
    linestyle: str = "-",
) -> Axes:
    """Outline any grid-CRS polygon (a runway stretch, a truth footprint) on an image of ``grid``.

    Keeps the axes' view when it holds an image. ``label`` goes to the legend (call
    ``ax.legend()``). Returns ``ax``.
    """
    inv = _pixel_affine(grid, coords)
    xlim, ylim = ax.get_xlim(), ax.get_ylim()
    first = True
    for ring in _rings(geom):
        x, y = inv @ (ring[:, 0], ring[:, 1])
        ax.plot(x, y, color=colour, linewidth=linewidth, linestyle=linestyle, label=label if first else None)
        first = False
    if ax.images:
        ax.set_xlim(xlim)
        ax.set_ylim(ylim)
    return ax


def show_objects(
    ax: Axes,
    objects,
    grid: Grid,
    *,
    coords: str = "pixel",
    labels: bool = True,
    legend: bool = True,
    linewidth: float = 1.5,
) -> Axes:
    """Outline change objects on an axes, coloured by class.

    Parameters
    ----------
    ax : Axes
        Usually holding an image of the AOI grid drawn with ``imshow`` (pixel coordinates).
    objects : sequence of ChangeObject
        Geometries in the grid CRS (``DetectionResult.objects``).
    grid : Grid
        The grid of the image.
    coords : ``"pixel"`` or ``"crs"``
        Draw in pixel coordinates (column, row of pixel centres as ``imshow`` places them) or in
        grid CRS metres.
    labels : bool
        Write each object's position in ``objects`` (0, 1, ...) beside it, to match a table.
    legend : bool
        A legend of the classes present.

    Returns
    -------
    Axes
    """
    inv = _pixel_affine(grid, coords)
    present: dict[str, tuple] = {}
    xlim, ylim = ax.get_xlim(), ax.get_ylim()
    has_image = bool(ax.images)
    for i, obj in enumerate(objects):
        colour = class_colour(obj.cls)
        present.setdefault(obj.cls, colour)
        for ring in _rings(obj.geometry):
            x, y = inv @ (ring[:, 0], ring[:, 1])
            ax.plot(x, y, color=colour, linewidth=linewidth)
        if labels:
            c = obj.geometry.representative_point()
            lx, ly = inv @ (c.x, c.y)
            ax.annotate(
                str(i), (lx, ly), color=colour, fontsize=8, fontweight="bold", xytext=(4, 4), textcoords="offset points"
            )
    if has_image:  # keep the image's extent: outlines must not zoom the view out
        ax.set_xlim(xlim)
        ax.set_ylim(ylim)
    if legend and present:
        handles = [Line2D([], [], color=c, linewidth=2, label=k.replace("_", " ")) for k, c in present.items()]
        ax.legend(handles=handles, loc="lower right", fontsize=8, framealpha=0.8)
    return ax


def _values(series, signal):
    from .timeseries import series_values

    return series_values(series, signal)


def plot_series(
    series,
    *,
    signals: Sequence[str] = ("brightness",),
    steps: Sequence = (),
    ax: Axes | None = None,
    title: str | None = None,
) -> Axes:
    """A feature's series against date: clear observations joined, cloudy dates marked, steps shaded.

    Parameters
    ----------
    series : FeatureSeries
        From :func:`pipeline.timeseries.feature_series`.
    signals : sequence of str
        Bands or indices to draw (one line each).
    steps : sequence of Step
        From :func:`pipeline.timeseries.flagged_dates`: a red line at each step's date and a shaded
        span back to its last clear date before.
    ax : Axes, optional

    Returns
    -------
    Axes
        Cloudy (not clear) dates appear as grey ticks along the bottom of the axes.
    """
    if ax is None:
        fig, axes = _new_axes(1, figsize=(10, 4))
        ax = axes[0]
    dates = np.asarray(series.dates, dtype="datetime64[D]")
    clear = np.asarray(series.clear, dtype=bool)
    if clear.ndim != 1:
        raise UsageError("plot_series draws a FeatureSeries; use plot_profile for a RunwayProfile")
    for sig in signals:
        v = np.asarray(_values(series, sig), dtype=np.float64)
        ok = clear & np.isfinite(v)
        ax.plot(dates[ok], v[ok], marker="o", markersize=3, linewidth=1.2, label=sig)
    cloudy = dates[~clear]
    if cloudy.size:
        ax.plot(
            cloudy,
            np.full(cloudy.size, 0.03),
            linestyle="none",
            marker="|",
            markersize=12,
            color="0.5",
            transform=ax.get_xaxis_transform(),
            label="cloudy date",
        )
    for s in steps:
        ax.axvspan(np.datetime64(s.last_before), np.datetime64(s.date), color="tab:red", alpha=0.12)
        ax.axvline(np.datetime64(s.date), color="tab:red", linestyle="--", linewidth=1.2)
    if steps:
        ax.plot([], [], color="tab:red", linestyle="--", label="flagged step")
    ax.set_xlabel("date")
    ax.set_ylabel(", ".join(signals))
    ax.legend(fontsize=8, loc="best")
    ax.set_title(title or series.feature)
    ax.figure.autofmt_xdate()
    return ax


def plot_profile(
    profile,
    *,
    signal: str = "brightness",
    steps: Sequence = (),
    ax: Axes | None = None,
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
) -> Axes:
    """A runway profile as an image: date across, distance along the runway up, colour = signal.

    Cloudy bins are grey; a repaired stretch shows as a band of another colour starting at its
    date. Steps from :func:`pipeline.timeseries.flagged_dates` are outlined in red over their
    distance range.

    Parameters
    ----------
    profile : RunwayProfile
    signal : str
        Band or index.
    steps : sequence of Step
    ax : Axes, optional
    cmap : str
    vmin, vmax : float, optional
        Colour limits; default the 2nd and 98th percentiles of the clear values.

    Returns
    -------
    Axes
    """
    import matplotlib as mpl
    import matplotlib.dates as mdates
    from matplotlib.patches import Rectangle

    if ax is None:
        fig, axes = _new_axes(1, figsize=(10, 4.5))
        ax = axes[0]
    v = np.asarray(_values(profile, signal), dtype=np.float64)  # (T, L)
    if v.ndim != 2:
        raise UsageError("plot_profile draws a RunwayProfile; use plot_series for a FeatureSeries")
    v = np.where(profile.clear, v, np.nan)
    x = mdates.date2num(np.asarray(profile.dates, dtype="datetime64[D]"))
    if x.size == 0:
        raise UsageError("the profile has no dates")
    if x.size == 1:
        xe = np.array([x[0] - 2.5, x[0] + 2.5])
    else:
        mid = (x[1:] + x[:-1]) / 2
        xe = np.concatenate([[x[0] - (mid[0] - x[0])], mid, [x[-1] + (x[-1] - mid[-1])]])
    d = np.asarray(profile.distance_m, dtype=np.float64)
    half = (d[1] - d[0]) / 2 if d.size > 1 else profile.length_m / 2
    ye = np.concatenate([d - half, [d[-1] + half]])
    finite = v[np.isfinite(v)]
    if vmin is None:
        vmin = float(np.percentile(finite, 2)) if finite.size else 0.0
    if vmax is None:
        vmax = float(np.percentile(finite, 98)) if finite.size else 1.0
    cm = mpl.colormaps[cmap].with_extremes(bad="0.75")
    mesh = ax.pcolormesh(xe, ye, np.ma.masked_invalid(v.T), cmap=cm, vmin=vmin, vmax=max(vmax, vmin + 1e-6), shading="flat")
    ax.figure.colorbar(mesh, ax=ax, label=signal)
    for s in steps:
        if s.distance_m is None:
            continue
        x0 = mdates.date2num(np.datetime64(s.date))
        ax.add_patch(
            Rectangle((x0, s.distance_m[0]), xe[-1] - x0, s.distance_m[1] - s.distance_m[0], fill=False, edgecolor="tab:red", linewidth=1.5)
        )
        ax.axvline(x0, color="tab:red", linestyle="--", linewidth=1)
    ax.xaxis_date()
    ax.set_xlabel("date (grey: cloudy)")
    ax.set_ylabel("distance along runway (m)")
    ax.set_title(f"{profile.feature}: {signal}")
    ax.figure.autofmt_xdate()
    return ax
