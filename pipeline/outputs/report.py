"""``report.html``: one self-contained page for people.

Everything is inline: CSS, a few lines of JavaScript, pictures as ``data:`` URIs and maps as
inline SVG. A Content-Security-Policy meta tag forbids any network fetch, so the page opens the
same offline, from an e-mail attachment or on an air-gapped laptop. Every piece of text that
comes from an AOI file, a source or the detector goes through :func:`html.escape`.

Sections: header (AOI, windows, source, counts), AOI map (after true colour, AOI outline, features
of interest, change objects coloured by class), optional timeline (monitoring), a table of objects
sortable by class and confidence, one card per object with before/after chips in true colour
(B04, B03, B02) and SWIR false colour (B12, B8A, B04) with the outline drawn, its evidence and a
``lat, lon`` coordinate to paste into a GIS, then the acquisitions and parameters.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
from typing import Any, Mapping, Sequence

import numpy as np
from affine import Affine
from shapely.geometry.base import BaseGeometry

from .. import __version__
from ..grid import Grid, reproject_geometry
from ..objects.model import CHANGE_CLASSES, CLASS_CODES, ChangeObject
from .geojson import jsonable
from .plots import (
    SWIR_FALSE_COLOUR,
    TRUE_COLOUR,
    normalise_history,
    normalise_series,
    picture_bytes,
    stretch_limits,
    timeline_png,
    to_uint8,
)
from .style import class_label, hex_colour

log = logging.getLogger(__name__)

__all__ = ["render_report", "MAP_MAX_PX", "MAX_CARDS"]

MAP_MAX_PX = 1200
"""Longest side, in pixels, of the background picture of the AOI map (coarser grids are decimated)."""

MAX_CARDS = 200
"""Objects (by confidence) that get a detail card with chips; the table and map list all of them."""

_CHIP_MIN_PX = 24
CHIP_MAX_PX = 256
"""Chips of larger objects are decimated to at most this many pixels across."""
_FEATURE_COLOURS = {"runway": "#ffe119", "taxiway": "#fabed4", "apron": "#dcbeff", "hardstand": "#aaffc3", "quay": "#fffac8", "basin": "#42d4f4"}

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif;margin:0;color:#1b1f24;background:#f6f7f9}
header{background:#1b1f24;color:#fff;padding:14px 24px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#c9d1d9}header code{color:#1b1f24}main{padding:12px 24px;max-width:1300px}
section{background:#fff;border:1px solid #d8dee4;border-radius:6px;padding:12px 16px;margin:14px 0}
h2{font-size:17px;margin:0 0 8px}table{border-collapse:collapse;font-size:13px}
td,th{border-bottom:1px solid #e5e8eb;padding:3px 8px;text-align:left;vertical-align:top}
th button{font:inherit;font-weight:600;border:0;background:none;cursor:pointer;padding:0}
.swatch{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:5px;vertical-align:-1px}
.map svg{width:100%;max-width:1100px;height:auto;background:#222}.legend span{margin-right:14px;white-space:nowrap}
.card{border-top:1px solid #d8dee4;padding:10px 0}.chips{display:flex;flex-wrap:wrap;gap:8px}
.chips figure{margin:0}.chips svg{width:180px;height:180px;background:#222;image-rendering:pixelated}
figcaption{font-size:12px;color:#57606a}code{background:#eef1f4;padding:1px 4px;border-radius:3px}
.muted{color:#57606a}.warn{color:#9a6700}pre{white-space:pre-wrap;font-size:12px;background:#f6f8fa;padding:8px}
"""

_JS = """
(function(){
  function sortObjects(key, numeric){
    var tb=document.querySelector('#objects tbody'); if(!tb){return;}
    var rows=Array.prototype.slice.call(tb.rows);
    var dir=(tb.getAttribute('data-sort')===key && tb.getAttribute('data-dir')==='desc')?'asc':'desc';
    if(!numeric && tb.getAttribute('data-sort')!==key){dir='asc';}
    rows.sort(function(a,b){
      var x=a.getAttribute('data-'+key), y=b.getAttribute('data-'+key);
      if(numeric){x=parseFloat(x); y=parseFloat(y);}
      var c=(x<y)?-1:((x>y)?1:0);
      if(c===0){c=(a.getAttribute('data-id')<b.getAttribute('data-id'))?-1:1; return c;}
      return dir==='asc'?c:-c;
    });
    rows.forEach(function(r){tb.appendChild(r);});
    tb.setAttribute('data-sort',key); tb.setAttribute('data-dir',dir);
  }
  var buttons=document.querySelectorAll('#objects th button');
  Array.prototype.forEach.call(buttons,function(b){
    b.addEventListener('click',function(){sortObjects(b.getAttribute('data-key'), b.getAttribute('data-numeric')==='1');});
  });
  var m=/^#sort=([a-z_]+)$/.exec(window.location.hash||'');
  if(m){var b=document.querySelector('#objects th button[data-key="'+m[1]+'"]'); if(b){b.click();}}
  document.body.setAttribute('data-ready','1');
})();
"""

_ONERROR = (
    "window.onerror=function(msg,src,line){var e=document.getElementById('js-errors');"
    "if(!e){e=document.createElement('pre');e.id='js-errors';document.documentElement.appendChild(e);}"
    "e.textContent+=String(msg)+' (line '+line+')\\n';document.documentElement.setAttribute('data-js-error','1');};"
)


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return _e(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return _e(f"{v:.4g}") if math.isfinite(v) else "n/a"
    if isinstance(value, dict):
        return "<br>".join(f"{_e(k)}: {_fmt(v)}" for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))) or "{}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return _e(value)


def _data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def _svg_path(geom: BaseGeometry, inv: Affine, scale: float = 1.0) -> str:
    """SVG path data of a (multi)polygon or line projected by ``inv`` (CRS -> pixel)."""
    parts = []

    def ring(coords, close=True):
        pts = [inv @ (x, y) for x, y, *_ in coords]
        d = "M" + "L".join(f"{c * scale:.2f} {r * scale:.2f}" for c, r in pts)
        parts.append(d + ("Z" if close else ""))

    geoms = getattr(geom, "geoms", [geom])
    for g in geoms:
        if g.geom_type == "Polygon":
            ring(g.exterior.coords)
            for h in g.interiors:
                ring(h.coords)
        elif g.geom_type in ("LineString", "LinearRing"):
            ring(g.coords, close=False)
        elif g.geom_type == "Point":
            c, r = inv @ (g.x, g.y)
            parts.append(f"M{c * scale - 3:.2f} {r * scale:.2f}h6M{c * scale:.2f} {r * scale - 3:.2f}v6")
    return "".join(parts)


def _object_rows(objects: Sequence[ChangeObject], grid: Grid) -> list[dict]:
    rows = []
    for o in objects:
        c = reproject_geometry(o.geometry.centroid, grid.epsg, 4326)
        rows.append({"obj": o, "lat": c.y, "lon": c.x, "code": CLASS_CODES[o.cls]})
    return rows


def _map_section(result, rows, tc: np.ndarray | None, lims) -> str:
    grid: Grid = result.grid
    h, w = grid.shape
    step = max(1, math.ceil(max(h, w) / MAP_MAX_PX))
    inv = ~grid.transform
    body = []
    if tc is not None:
        img = to_uint8(tc[:, ::step, ::step], *lims)
        body.append(f'<image x="0" y="0" width="{w}" height="{h}" preserveAspectRatio="none" href="{_data_uri(*picture_bytes(img))}"/>')
    else:
        body.append(f'<rect x="0" y="0" width="{w}" height="{h}" fill="#333"/>')
    aoi = result.aoi
    stroke = max(1.0, max(h, w) / 500)
    body.append(
        f'<path d="{_svg_path(reproject_geometry(aoi.geometry, 4326, grid.epsg), inv)}" fill="none" stroke="#fff" '
        f'stroke-width="{stroke:.1f}" stroke-dasharray="{4 * stroke:.1f} {2 * stroke:.1f}"><title>{_e(aoi.name)} (AOI)</title></path>'
    )
    for f in aoi.features:
        colour = _FEATURE_COLOURS.get(f.role, "#ffffff")
        body.append(
            f'<path d="{_svg_path(reproject_geometry(f.geometry, 4326, grid.epsg), inv)}" fill="none" stroke="{colour}" '
            f'stroke-width="{stroke:.1f}"><title>{_e(f.role)}: {_e(f.name)}</title></path>'
        )
    for r in rows:
        o = r["obj"]
        colour = hex_colour(o.cls)
        minx, miny, maxx, maxy = o.geometry.bounds
        if max(maxx - minx, maxy - miny) / grid.res < 4 * stroke:  # too small to see: ring it
            c, rr = inv @ (o.geometry.centroid.x, o.geometry.centroid.y)
            body.append(f'<circle cx="{c:.2f}" cy="{rr:.2f}" r="{6 * stroke:.1f}" fill="none" stroke="{colour}" stroke-width="{stroke:.1f}"/>')
        body.append(
            f'<a href="#obj-{_e(o.id)}"><path class="obj" data-id="{_e(o.id)}" d="{_svg_path(o.geometry, inv)}" fill="{colour}" fill-opacity="0.35" '
            f'stroke="{colour}" stroke-width="{1.5 * stroke:.1f}" fill-rule="evenodd"><title>{_e(o.id)}: {_e(class_label(o.cls))} '
            f"({o.confidence:.2f})</title></path></a>"
        )
    legend = "".join(
        f'<span><i class="swatch" style="background:{hex_colour(c)}"></i>{_e(class_label(c))}</span>' for c in CHANGE_CLASSES
    )
    roles = sorted({f.role for f in aoi.features})
    legend += "".join(f'<span><i class="swatch" style="background:{_FEATURE_COLOURS.get(r, "#fff")}"></i>{_e(r)}</span>' for r in roles)
    note = "" if tc is not None else '<p class="warn">No true-colour background: the composite lacks B04/B03/B02.</p>'
    return (
        '<section class="map" id="map"><h2>Map</h2>'
        f'<svg viewBox="0 0 {w} {h}" role="img" '
        f'aria-label="AOI map">{"".join(body)}</svg>'
        f'<p class="legend">{legend}</p>{note}<p class="muted">Background: after composite, true colour (B04, B03, B02). '
        "Dashed white: AOI outline.</p></section>"
    )


def _chip(stack: np.ndarray | None, lims, window: tuple[int, int, int, int], geom: BaseGeometry, grid: Grid, colour: str, caption: str) -> str:
    r0, r1, c0, c1 = window
    if stack is None:
        return f'<figure><svg viewBox="0 0 10 10"></svg><figcaption>{_e(caption)}: bands missing</figcaption></figure>'
    # a large object's chip is decimated to about CHIP_MAX_PX: the card shows it a few hundred px wide
    step = max(1, math.ceil(max(r1 - r0, c1 - c0) / CHIP_MAX_PX))
    img = to_uint8(stack[:, r0:r1:step, c0:c1:step], *lims)
    inv = ~grid.transform
    shift = Affine.translation(-c0, -r0) * inv
    hh, ww = r1 - r0, c1 - c0
    return (
        f'<figure><svg viewBox="0 0 {ww} {hh}">'
        f'<image x="0" y="0" width="{ww}" height="{hh}" href="{_data_uri(*picture_bytes(img))}"/>'
        f'<path d="{_svg_path(geom, shift)}" fill="none" stroke="{colour}" stroke-width="{max(0.4, ww / 120):.2f}"/></svg>'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _chip_window(geom: BaseGeometry, grid: Grid) -> tuple[int, int, int, int]:
    win = grid.to_window(geom.bounds)
    size = max(_CHIP_MIN_PX, int(max(win.width, win.height) * 2))
    cr, cc = win.row_off + win.height / 2, win.col_off + win.width / 2
    r0 = int(max(0, min(grid.height - size, round(cr - size / 2))))
    c0 = int(max(0, min(grid.width - size, round(cc - size / 2))))
    return r0, min(grid.height, r0 + size), c0, min(grid.width, c0 + size)


class _BandView:
    """Three bands of a composite, copied only as far as they are sliced: ``view[:, r0:r1, c0:c1]``
    gives a (3, h, w) array without copying the whole (3, H, W) picture first."""

    def __init__(self, arr: np.ndarray, index: list[int]):
        self.arr, self.index = arr, index
        self.shape = (len(index),) + tuple(arr.shape[1:])

    def __getitem__(self, key):
        if not (isinstance(key, tuple) and key and key[0] == slice(None)):
            raise IndexError("slice a band view as view[:, rows, cols]")
        return self.arr[(self.index,) + key[1:]]


def _bands(result, which: str, bands) -> _BandView | None:
    if not all(b in result.composite_bands for b in bands):
        return None
    arr = result.before_composite if which == "before" else result.after_composite
    return _BandView(arr, [result.composite_bands.index(b) for b in bands])


def _table_section(rows: list[dict]) -> str:
    """The objects table; rows carry ``data-*`` sort keys for the inline sorter."""
    trs = []
    for r in rows:
        o = r["obj"]
        trs.append(
            f'<tr data-id="{_e(o.id)}" data-class="{_e(o.cls)}" data-code="{r["code"]}" data-confidence="{o.confidence:.4f}" '
            f'data-area="{o.area_m2:.1f}"><td><a href="#obj-{_e(o.id)}">{_e(o.id)}</a></td>'
            f'<td><i class="swatch" style="background:{hex_colour(o.cls)}"></i>{_e(class_label(o.cls))}</td>'
            f"<td>{o.confidence:.2f}</td><td>{o.area_m2:,.0f}</td><td>{_e(o.feature or '')}</td><td>{_e(o.status)}</td>"
            f"<td><code>{r['lat']:.6f}, {r['lon']:.6f}</code></td></tr>"
        )
    head = (
        '<tr><th>id</th><th><button type="button" data-key="class">class &#8597;</button></th>'
        '<th><button type="button" data-key="confidence" data-numeric="1">confidence &#8597;</button></th>'
        '<th><button type="button" data-key="area" data-numeric="1">area m&#178; &#8597;</button></th>'
        "<th>feature</th><th>status</th><th>lat, lon</th></tr>"
    )
    return (
        f'<section id="objects-section"><h2>Change objects</h2><table id="objects"><thead>{head}</thead>'
        f'<tbody data-sort="confidence" data-dir="desc">{"".join(trs)}</tbody></table>'
        + ("" if rows else '<p class="muted">No change objects.</p>')
        + "</section>"
    )


def _history_table(records: list[dict]) -> str:
    if not records:
        return ""
    keys = sorted({k for rec in records for k in rec if k != "date"})
    head = "<tr><th>date</th>" + "".join(f"<th>{_e(k)}</th>" for k in keys) + "</tr>"
    body = "".join("<tr><td>" + _e(rec["date"]) + "</td>" + "".join(f"<td>{_fmt(rec.get(k))}</td>" for k in keys) + "</tr>" for rec in records)
    return f"<h4>History</h4><table>{head}{body}</table>"


def _cards_section(result, rows: list[dict], hist: Mapping[str, list[dict]], true_colour, swir) -> str:
    """One card per object (the :data:`MAX_CARDS` most confident): chips, coordinate, evidence, history."""
    grid: Grid = result.grid
    tc_b, tc_a, tc_lims = true_colour
    sw_b, sw_a, sw_lims = swir
    cards = []
    for r in rows[:MAX_CARDS]:
        o = r["obj"]
        colour = hex_colour(o.cls)
        win = _chip_window(o.geometry, grid)
        chips = "".join(
            [
                _chip(tc_b, tc_lims, win, o.geometry, grid, colour, "before, true colour"),
                _chip(tc_a, tc_lims, win, o.geometry, grid, colour, "after, true colour"),
                _chip(sw_b, sw_lims, win, o.geometry, grid, colour, "before, SWIR false colour"),
                _chip(sw_a, sw_lims, win, o.geometry, grid, colour, "after, SWIR false colour"),
            ]
        )
        ev = "".join(f"<tr><th>{_e(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in sorted(dict(o.evidence).items(), key=lambda kv: str(kv[0])))
        cards.append(
            f'<div class="card" id="obj-{_e(o.id)}"><h3><i class="swatch" style="background:{colour}"></i>{_e(o.id)}: '
            f"{_e(class_label(o.cls))} <span class=\"muted\">confidence {o.confidence:.2f}, {o.area_m2:,.0f} m&#178;"
            f"{', ' + _e(o.feature) if o.feature else ''}, {_e(o.status)}</span></h3>"
            f'<p>Location (lat, lon): <code class="coord">{r["lat"]:.6f}, {r["lon"]:.6f}</code> &middot; before {_e(o.before)}'
            f" &middot; after {_e(o.after)}"
            + (f" &middot; first seen {_e(o.first_seen)}" if o.first_seen else "")
            + (f" &middot; last seen {_e(o.last_seen)}" if o.last_seen else "")
            + f'</p><div class="chips">{chips}</div><h4>Evidence</h4><table class="evidence">{ev or "<tr><td>none recorded</td></tr>"}</table>'
            f"{_history_table(hist.get(str(o.id), []))}</div>"
        )
    if not cards:
        return ""
    more = len(rows) - len(cards)
    note = f'<p class="muted">{more} more object(s) of lower confidence are in the table and the map only.</p>' if more > 0 else ""
    return f'<section id="cards"><h2>Objects in detail</h2>{"".join(cards)}{note}</section>'


def _run_section(result, outputs: Sequence[str]) -> str:
    """Acquisitions considered, parameters and the files beside the report."""
    acq = "".join(
        f"<tr><td>{_e(a.date)}</td><td>{_e(a.window)}</td><td>{_e(a.id)}</td><td>{_e(a.platform)}</td>"
        f"<td>{_fmt(a.cloud_fraction)}</td><td>{_fmt(a.valid_fraction)}</td><td>{'yes' if a.used else 'no'}</td><td>{_e(a.reason)}</td></tr>"
        for a in sorted(result.acquisitions, key=lambda a: (a.date, a.id))
    )
    params = json.dumps(jsonable(result.parameters), indent=1, sort_keys=True)
    files = "".join(f"<li><code>{_e(n)}</code></li>" for n in outputs)
    return (
        '<section id="acquisitions"><h2>Acquisitions</h2><table><tr><th>date</th><th>window</th><th>id</th><th>platform</th>'
        f"<th>cloud</th><th>valid</th><th>used</th><th>reason</th></tr>{acq}</table></section>\n"
        f'<section id="parameters"><h2>Run</h2><details><summary>Parameters</summary><pre>{_e(params)}</pre></details>'
        + (f"<p>Files beside this report:</p><ul>{files}</ul>" if files else "")
        + "</section></main>"
    )


def render_report(result, *, history: Mapping | None = None, outputs: Sequence[str] = ()) -> str:
    """The report as one HTML string.

    Parameters
    ----------
    result : DetectionResult
    history : dict, optional
        Monitoring history: ``{object_id: [{"date", "status", "confidence", "area_m2"}, ...]}``
        (or that mapping under ``"objects"``); ``"series"`` inside it is merged with ``result.series``.
    outputs : sequence of str
        File names written beside the report (listed at the end).

    Notes
    -----
    Size: the map picture is at most :data:`MAP_MAX_PX` on a side (about 1-3 MB as PNG); each object
    adds four small chips.
    """
    grid: Grid = result.grid
    aoi = result.aoi
    rows = _object_rows(sorted(result.objects, key=lambda o: (-o.confidence, str(o.id))), grid)

    tc_b, tc_a = _bands(result, "before", TRUE_COLOUR), _bands(result, "after", TRUE_COLOUR)
    sw_b, sw_a = _bands(result, "before", SWIR_FALSE_COLOUR), _bands(result, "after", SWIR_FALSE_COLOUR)
    tc_lims = stretch_limits(tc_b, tc_a) if tc_a is not None else None
    sw_lims = stretch_limits(sw_b, sw_a) if sw_a is not None else None

    counts = {c: 0 for c in CHANGE_CLASSES}
    for r in rows:
        counts[r["obj"].cls] += 1

    raw_series = dict(result.series or {})
    hist_in = dict(history) if isinstance(history, Mapping) else {}
    if isinstance(hist_in.get("series"), Mapping):
        raw_series.update(hist_in.pop("series"))
    series, skipped = normalise_series(raw_series)
    hist = normalise_history(hist_in)

    parts: list[str] = []
    title = f"s2watch: {aoi.name}"
    counts_txt = ", ".join(f"{n} {class_label(c)}" for c, n in counts.items() if n) or "no change objects"
    parts.append(
        f"<header><h1>{_e(title)}</h1><p>AOI <code>{_e(aoi.id)}</code> ({_e(aoi.kind)}{', ' + _e(aoi.country) if aoi.country else ''})"
        f" &middot; before {_e(result.before)} &middot; after {_e(result.after)} &middot; source {_e(result.source)}"
        f" &middot; s2watch {_e(__version__)}</p></header><main>"
    )
    parts.append(
        f'<section id="summary"><h2>Summary</h2><p><strong>{len(rows)}</strong> change object(s): {_e(counts_txt)}.</p>'
        + (f"<p>{_e(aoi.description)}</p>" if aoi.description else "")
        + f'<p class="muted">Grid {_e(grid.crs_string)}, {grid.width} x {grid.height} px at {grid.res:g} m.</p></section>'
    )
    parts.append(_map_section(result, rows, tc_a, tc_lims))

    png = timeline_png(series, hist)
    if png is not None or skipped:
        img = f'<img alt="timeline" style="max-width:100%" src="{_data_uri(png)}"/>' if png else ""
        notes = "".join(f'<p class="warn">Skipped: {_e(s)}</p>' for s in skipped)
        parts.append(f'<section id="timeline"><h2>Timeline</h2>{img}{notes}</section>')

    parts.append(_table_section(rows))
    cards = _cards_section(result, rows, hist, (tc_b, tc_a, tc_lims), (sw_b, sw_a, sw_lims))
    if cards:
        parts.append(cards)
    parts.append(_run_section(result, outputs))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><script>{_ONERROR}</script><style>{_CSS}</style></head>\n<body>"
        + "\n".join(parts)
        + f"\n<script>{_JS}</script></body></html>\n"
    )
