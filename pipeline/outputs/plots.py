"""Pictures for the report: stretched true/false-colour PNGs and the monitoring timeline.

Every PNG is written without timestamps or software tags, so the same arrays give the same bytes
(and the same report). Matplotlib runs on its Agg canvas, never through ``pyplot``'s global state.
"""

from __future__ import annotations

import io
import logging
import math
from datetime import date, datetime
from typing import Any, Mapping

import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "TRUE_COLOUR",
    "SWIR_FALSE_COLOUR",
    "stretch_limits",
    "to_uint8",
    "png_bytes",
    "normalise_series",
    "normalise_history",
    "timeline_png",
]

STRETCH_SAMPLE = 1_000_000
"""Pixels per picture the stretch percentiles are taken from (an even grid subsample)."""
TRUE_COLOUR = ("B04", "B03", "B02")
SWIR_FALSE_COLOUR = ("B12", "B8A", "B04")


def stretch_limits(*stacks: np.ndarray, pct: tuple[float, float] = (2.0, 98.0)) -> tuple[np.ndarray, np.ndarray]:
    """Percentile limits over several ``(3, H, W)`` stacks together (NaN ignored), shared by the
    three bands.

    One pair of limits for the before and after pictures keeps them comparable; one pair for the
    three bands keeps the hue (desert stays tan, water blue), as in Sentinel-2 true-colour
    products. The pair spans the lowest lower and the highest upper per-band percentile.

    Returns
    -------
    lo, hi : (3,) float32
        Equal across bands; ``hi > lo`` always (flat data gets ``hi = lo + 1e-3``); ``(0, 0.3)``
        when every band is all NaN.
    """
    # percentiles of an even subsample of at most ~STRETCH_SAMPLE pixels per stack: the limits
    # of a picture do not need every pixel, and a 4k x 4k composite would be copied and sorted
    parts = []
    for s in stacks:
        step = max(1, int(np.ceil(np.sqrt(s.shape[-2] * s.shape[-1] / STRETCH_SAMPLE))))
        parts.append(s[:, ::step, ::step].reshape(s.shape[0], -1))
    both = np.concatenate(parts, axis=1)
    los, his = [], []
    for b in range(both.shape[0]):
        v = both[b][np.isfinite(both[b])]
        if v.size:
            l, h = np.percentile(v, pct)
            los.append(l)
            his.append(h)
    n = both.shape[0]
    if not los:
        return np.zeros(n, np.float32), np.full(n, 0.3, np.float32)
    lo, hi = float(min(los)), float(max(his))
    if hi - lo < 1e-3:
        hi = lo + 1e-3
    return np.full(n, lo, np.float32), np.full(n, hi, np.float32)


def to_uint8(stack: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``(3, H, W)`` float reflectance -> ``(H, W, 4)`` uint8 RGBA, linear stretch ``lo..hi``.

    Pixels with any NaN band are transparent (alpha 0).
    """
    s = np.asarray(stack, dtype=np.float32)
    scaled = (s - lo[:, None, None]) / (hi - lo)[:, None, None]
    rgb = np.clip(np.nan_to_num(scaled, nan=0.0) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    alpha = np.where(np.isfinite(s).all(axis=0), 255, 0).astype(np.uint8)
    return np.dstack([rgb.transpose(1, 2, 0), alpha])


def png_bytes(image: np.ndarray) -> bytes:
    """PNG of an ``(H, W, 3|4)`` uint8 image, without metadata chunks (deterministic)."""
    from PIL import Image

    buf = io.BytesIO()
    # zlib level 1: a third of the time of the default 6 on imagery, a few percent larger
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG", optimize=False, compress_level=1)
    return buf.getvalue()


JPEG_QUALITY = 90
"""Quality of opaque chips (JPEG, no chroma subsampling): visually lossless on imagery."""


def picture_bytes(image: np.ndarray) -> tuple[bytes, str]:
    """``(bytes, mime type)`` of an ``(H, W, 3|4)`` uint8 picture for the report: JPEG when it is
    opaque (no alpha, or alpha 255 everywhere), PNG when it has transparent (no data) pixels.

    Notes
    -----
    On imagery, JPEG at :data:`JPEG_QUALITY` with 4:4:4 chroma is 30-40 times faster to encode
    than PNG at zlib level 1 and about a tenth of its size, which keeps a report with hundreds of
    chips quick to write and small enough to mail. Deterministic: the same pixels give the same
    bytes.
    """
    from PIL import Image

    image = np.ascontiguousarray(image)
    if image.shape[2] == 4 and not (image[..., 3] == 255).all():
        return png_bytes(image), "image/png"
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image[..., :3])).save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return buf.getvalue(), "image/jpeg"


# ---------------------------------------------------------------------------------------------
# monitoring series


def _to_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, np.datetime64):
        return value.astype("datetime64[D]").astype(date)
    return date.fromisoformat(str(value).split("/")[-1][:10])


def _pairs(value: Any) -> list[tuple[date, float]] | None:
    """``(date, value)`` pairs from one series in any accepted form; ``None`` when it is not one."""
    if isinstance(value, Mapping) and "dates" in value and "values" in value:
        items = list(zip(value["dates"], value["values"]))
    elif isinstance(value, Mapping) and value and all(isinstance(v, (int, float, np.number, type(None))) for v in value.values()):
        items = list(value.items())
    elif isinstance(value, (list, tuple)) and value and all(isinstance(v, Mapping) and "date" in v for v in value):
        key = next((k for k in ("value", "metric", "confidence") if k in value[0]), None)
        if key is None:
            return None
        items = [(v["date"], v.get(key)) for v in value]
    elif isinstance(value, (list, tuple)) and value and all(isinstance(v, (list, tuple)) and len(v) == 2 for v in value):
        items = list(value)
    else:
        return None
    out = []
    for d, v in items:
        if v is None or not math.isfinite(float(v)):
            continue
        out.append((_to_date(d), float(v)))
    return sorted(out)


def normalise_series(series: Mapping | None) -> tuple[dict[str, list[tuple[date, float]]], list[str]]:
    """Flatten ``DetectionResult.series`` into named ``(date, value)`` lists.

    Accepted per-series forms: ``{iso_date: value}``, ``[(iso_date, value), ...]``,
    ``[{"date": ..., "value": ...}, ...]`` and ``{"dates": [...], "values": [...]}``; one level of
    grouping (``{"runway 14/32": {"dnbr": {...}}}``) becomes the name ``"runway 14/32: dnbr"``.

    Returns
    -------
    series : dict
        Name -> sorted ``(date, value)`` pairs (non-finite values dropped).
    skipped : list of str
        One line per entry that was not understood (shown in the report, logged as warning).
    """
    out: dict[str, list[tuple[date, float]]] = {}
    skipped: list[str] = []

    def visit(name: str, value: Any, depth: int) -> None:
        try:
            pairs = _pairs(value)
        except (TypeError, ValueError) as exc:
            skipped.append(f"{name}: {exc}")
            return
        if pairs is not None:
            if pairs:
                out[name] = pairs
            return
        if isinstance(value, Mapping) and depth < 2:
            for k, v in value.items():
                visit(f"{name}: {k}" if name else str(k), v, depth + 1)
            return
        skipped.append(f"{name or 'series'}: not a date -> value series")

    visit("", dict(series or {}), 0)
    for s in skipped:
        log.warning("timeline: %s", s)
    return out, skipped


def normalise_history(history: Mapping | None) -> dict[str, list[dict]]:
    """Per-object history records sorted by date: ``{object_id: [{"date": ..., ...}, ...]}``.

    ``history`` is either that mapping or a dict holding it under ``"objects"``. Records need a
    ``date``; other keys (``status``, ``confidence``, ``area_m2``, ...) are kept as they are.
    """
    if not history:
        return {}
    if not isinstance(history, Mapping):
        return {}
    objs = history["objects"] if isinstance(history.get("objects"), Mapping) else history
    out: dict[str, list[dict]] = {}
    for oid, recs in dict(objs).items():
        if not isinstance(recs, (list, tuple)):
            continue
        good = []
        for r in recs:
            if isinstance(r, Mapping) and "date" in r:
                try:
                    good.append({**r, "date": _to_date(r["date"]).isoformat()})
                except ValueError:
                    log.warning("history of %s: record with bad date %r skipped", oid, r.get("date"))
        if good:
            out[str(oid)] = sorted(good, key=lambda r: r["date"])
    return out


def timeline_png(series: Mapping[str, list[tuple[date, float]]], history: Mapping[str, list[dict]], *, max_objects: int = 12) -> bytes | None:
    """Timeline figure (PNG bytes): series metrics on top, object confidence below; ``None`` if empty."""
    hist = {k: [(r["date"], r["confidence"]) for r in v if isinstance(r.get("confidence"), (int, float))] for k, v in history.items()}
    hist = {k: v for k, v in hist.items() if v}
    panels = [p for p in (series, hist) if p]
    if not panels:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 2.8 * len(panels)), dpi=96)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(panels), 1, squeeze=False, sharex=True)[:, 0]
    i = 0
    if series:
        ax = axes[i]
        i += 1
        for name, pairs in sorted(series.items()):
            ax.plot([d for d, _ in pairs], [v for _, v in pairs], marker="o", ms=3, lw=1.2, label=name)
        ax.set_title("change metrics over time")
        ax.set_ylabel("value")
        ax.legend(fontsize=7, loc="best")
        ax.grid(alpha=0.3)
    if hist:
        ax = axes[i]
        for name in sorted(hist)[:max_objects]:
            pairs = [(_to_date(d), float(v)) for d, v in hist[name]]
            ax.plot([d for d, _ in pairs], [v for _, v in pairs], marker="s", ms=3, lw=1.0, label=name)
        ax.set_title("object confidence by run")
        ax.set_ylabel("confidence")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=7, loc="best")
        ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()
