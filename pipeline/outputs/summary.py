"""``summary.md``: a short Markdown digest for chat or e-mail alerts."""

from __future__ import annotations

from typing import Sequence

from ..grid import reproject_geometry
from ..objects.model import CHANGE_CLASSES
from .style import class_label

__all__ = ["render_summary"]


def _md(text: object) -> str:
    """Text safe inside Markdown: backslash-escape characters that would start markup or HTML."""
    s = " ".join(str(text).split())
    for ch in "\\`*_{}[]<>()#+!|":
        s = s.replace(ch, "\\" + ch)
    return s


def render_summary(result, *, top: int = 5, outputs: Sequence[str] = ()) -> str:
    """The digest: AOI, windows, counts by class and the ``top`` objects by confidence with coordinates.

    Parameters
    ----------
    result : DetectionResult
    top : int
        How many objects to list.
    outputs : sequence of str
        File names written beside it (mentioned at the end).
    """
    aoi = result.aoi
    objs = sorted(result.objects, key=lambda o: (-o.confidence, str(o.id)))
    counts = {c: sum(1 for o in objs if o.cls == c) for c in CHANGE_CLASSES}
    lines = [
        f"# s2watch: {_md(aoi.name)} ({_md(aoi.id)})",
        "",
        f"- before: {_md(result.before)}",
        f"- after: {_md(result.after)}",
        f"- source: {_md(result.source)}",
        f"- acquisitions used: {sum(1 for a in result.acquisitions if a.used)} of {len(result.acquisitions)}",
        f"- change objects: {len(objs)}" + (" (" + ", ".join(f"{n} {class_label(c)}" for c, n in counts.items() if n) + ")" if objs else ""),
        "",
    ]
    if objs:
        lines.append(f"## Top {min(top, len(objs))} by confidence")
        lines.append("")
        for o in objs[:top]:
            c = reproject_geometry(o.geometry.centroid, result.grid.epsg, 4326)
            where = f" on {_md(o.feature)}" if o.feature else ""
            lines.append(
                f"- **{_md(class_label(o.cls))}**{where}: confidence {o.confidence:.2f}, {o.area_m2:,.0f} m², "
                f"at `{c.y:.6f}, {c.x:.6f}` (lat, lon), id {_md(o.id)}, {_md(o.status)}"
            )
        lines.append("")
    else:
        lines += ["No change objects.", ""]
    if outputs:
        lines.append("Files: " + ", ".join(f"`{n}`" for n in outputs))
        lines.append("")
    return "\n".join(lines)
