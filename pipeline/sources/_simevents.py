"""Scripted changes and single-date transients of the simulated source.

Private to :mod:`pipeline.sources.simulated`. All scripted changes start between
:data:`CHANGE_WINDOW` ``[0]`` and ``[1]``; the time before is a no-change period.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
from shapely.geometry import Point, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from ._simlayout import Layout, oriented_rect
from ._simrender import stable_hash

__all__ = ["CHANGE_WINDOW", "ScriptedEvent", "script_events", "transients_for"]

CHANGE_WINDOW = (date(2024, 9, 1), date(2025, 4, 30))
"""First and last possible start date of a scripted change (inclusive)."""


@dataclass(frozen=True)
class ScriptedEvent:
    """One scripted change with how to render it.

    Attributes
    ----------
    cls, geometry, start, feature, description
        As in :class:`pipeline.sources.simulated.TruthEvent` (geometry in the layout CRS).
    material : str
        Material the footprint takes on ``start``.
    weather_to : str or None
        Material it drifts towards afterwards (fresh asphalt -> aged asphalt).
    weather_days : float
        e-folding time of the drift, days.
    rim : Polygon or None
        Berms around earthworks (painted ``berm``).
    gain : float
        Brightness factor of the material (roof-to-roof differences).
    """

    cls: str
    geometry: BaseGeometry
    start: date
    feature: str | None
    description: str
    material: str
    weather_to: str | None = None
    weather_days: float = 0.0
    rim: BaseGeometry | None = None
    gain: float = 1.0
    extra: dict = field(default_factory=dict, compare=False, hash=False)


def _dates(rng, k: int) -> list[date]:
    span = (CHANGE_WINDOW[1] - CHANGE_WINDOW[0]).days
    days = np.sort(rng.choice(span + 1, size=k, replace=False))
    return [CHANGE_WINDOW[0] + timedelta(days=int(d)) for d in days]


def _place(rng, lay: Layout, taken: BaseGeometry, around: BaseGeometry, make, *, dmin: float, dmax: float,
           tries: int = 400, inside: BaseGeometry | None = None):
    """First candidate ``make(x, y)`` in the ring ``dmin..dmax`` around ``around`` that is inside
    the AOI, clear of ``taken``, on land. Widens the ring when crowded. None if nothing fits."""
    inside = inside if inside is not None else lay.aoi_poly.buffer(-60.0)
    c = around.centroid
    r0 = math.sqrt(max(around.area, 1.0) / math.pi)
    for attempt in range(tries):
        grow = 1.0 + attempt / 100.0
        ang = rng.uniform(0, 2 * np.pi)
        dist = r0 + rng.uniform(dmin, dmax * grow)
        x, y = c.x + math.cos(ang) * dist, c.y + math.sin(ang) * dist
        g = make(x, y)
        if not inside.contains(g) or g.intersects(taken):
            continue
        if lay.sea is not None and g.intersects(lay.sea):
            continue
        return g
    return None


def _irregular(rng, cx, cy, u, length, width) -> Polygon:
    """A rough rectangle (scraped ground): jittered corners and mid-points."""
    ux, uy = u
    nx, ny = -uy, ux
    pts = []
    for a, b in [(-1, -1), (0, -1.08), (1, -1), (1.06, 0), (1, 1), (0, 1.05), (-1, 1), (-1.08, 0)]:
        ja, jb = rng.uniform(-0.08, 0.08, 2)
        aa, bb = (a + ja) * length / 2, (b + jb) * width / 2
        pts.append((cx + ux * aa + nx * bb, cy + uy * aa + ny * bb))
    return Polygon(pts).buffer(0)


def script_events(aoi_id: str, lay: Layout, seed: int) -> list[ScriptedEvent]:
    """The scripted changes of an AOI (deterministic by ``aoi_id`` and ``seed``)."""
    rng = np.random.default_rng(stable_hash("events", aoi_id, seed))
    events: list[ScriptedEvent] = []
    u = (math.cos(lay.axis_angle), math.sin(lay.axis_angle))
    taken = lay.built.buffer(45.0)
    base = unary_union(lay.aprons + [Point(lay.anchor).buffer(150)]) if lay.aprons else Point(lay.anchor).buffer(200)

    # runway resurfacing
    if lay.runways:
        r = lay.runways[int(rng.integers(len(lay.runways)))]
        ls = float(min(rng.uniform(600, 1500), 0.8 * r.length))
        a = float(rng.uniform(-(r.length - ls) / 2, (r.length - ls) / 2))
        cut = oriented_rect(*r.at(a, 0), r.u, ls, r.width + 60)
        geom = r.polygon.intersection(cut)
        events.append(ScriptedEvent(
            "runway_repair", geom, _dates(rng, 1)[0], r.name,
            f"{ls:.0f} m section of {r.name} resurfaced with fresh asphalt",
            material="asphalt_fresh", weather_to="asphalt_aged", weather_days=float(rng.uniform(365, 540)),
        ))

    if lay.kind in ("port", "naval_base"):
        _port_events(rng, lay, events, taken)
        return events

    # storage buildings in a row near the base, each its own event; crowded AOIs get fewer,
    # closer buildings, at worst three placed one by one
    k = int(rng.integers(3, 7))
    wb = float(rng.uniform(32, 60))
    lb = float(min(wb * rng.uniform(1.7, 2.1), 120.0))
    gap = float(rng.uniform(45, 75))  # fire breaks: 4-7 pixels, separable at 10 m
    nx, ny = -u[1], u[0]
    site = None
    while site is None and k >= 3:
        row_len = k * wb + (k - 1) * gap

        def make_row(x, y, row_len=row_len):
            return oriented_rect(x, y, u, row_len + 40, lb + 40)

        site = _place(rng, lay, taken, base, make_row, dmin=80, dmax=700)
        if site is None:
            site = _place(rng, lay, taken, lay.aoi_poly.centroid.buffer(10), make_row, dmin=0, dmax=3000, tries=200)
        if site is None:
            k, gap = k - 1, max(30.0, gap * 0.8)
    footprints = []
    if site is not None:
        c = site.centroid
        for i in range(k):
            off = -row_len / 2 + wb / 2 + i * (wb + gap)
            footprints.append(oriented_rect(c.x + u[0] * off, c.y + u[1] * off, (nx, ny), lb, wb))
        taken = taken.union(site.buffer(60))
    else:
        k = 3
        for _ in range(k):
            g = _place(rng, lay, taken, base, lambda x, y: oriented_rect(x, y, (nx, ny), lb, wb), dmin=0, dmax=3000)
            if g is not None:
                footprints.append(g)
                taken = taken.union(g.buffer(40))
    dates = _dates(rng, len(footprints)) if footprints else []
    for i, g in enumerate(footprints):
        events.append(ScriptedEvent(
            "new_structure", g, dates[i], None,
            f"new storage building {i + 1} of {len(footprints)} ({wb:.0f} x {lb:.0f} m, bright roof)",
            material="roof_white", gain=float(rng.uniform(0.9, 1.08)),
        ))

    # earthworks; a small or crowded AOI gets smaller ones placed anywhere it has room
    for j in range(int(rng.integers(1, 3))):
        L, W = float(rng.uniform(210, 280)), float(rng.uniform(140, 180))
        ang = lay.axis_angle + float(rng.uniform(-0.4, 0.4))
        ue = (math.cos(ang), math.sin(ang))
        g = _place(rng, lay, taken, base, lambda x, y: _irregular(rng, x, y, ue, L, W), dmin=200, dmax=1400)
        for shrink in (0.75, 0.55):
            if g is not None:
                break
            L, W = L * shrink, W * shrink
            g = _place(rng, lay, taken, lay.aoi_poly.centroid.buffer(10),
                       lambda x, y: _irregular(rng, x, y, ue, L, W), dmin=0, dmax=3000, tries=300)
        if g is None:
            continue
        events.append(ScriptedEvent(
            "earthworks", g, _dates(rng, 1)[0], None,
            f"scraped ground and berms, about {L:.0f} x {W:.0f} m",
            material="disturbed", rim=g.exterior.buffer(7.0).intersection(g.buffer(2.0)),
        ))
        taken = taken.union(g.buffer(80))
    return events


def _port_events(rng, lay: Layout, events: list, taken) -> None:
    water = unary_union(lay.basins) if lay.basins else lay.sea
    # quay extension: a pier grows into the basin
    if lay.piers:
        pier, v, end, wp = lay.piers[int(rng.integers(len(lay.piers)))]
        ext = float(rng.uniform(90, 200))
        for _ in range(6):
            g = oriented_rect(end[0] + v[0] * ext / 2, end[1] + v[1] * ext / 2, v, ext, wp)
            g = g.intersection(water).intersection(lay.aoi_poly.buffer(-30))
            if g.area > 0.8 * ext * wp:
                break
            ext *= 0.7
        if not g.is_empty and g.area > 1500:
            events.append(ScriptedEvent(
                "new_structure", g, _dates(rng, 1)[0], None,
                f"quay extension, {ext:.0f} m long, {wp:.0f} m wide",
                material="concrete",
            ))
            taken = taken.union(g.buffer(40))
    # new warehouse(s) on the waterfront
    free_quay = lay.quay_apron.difference(lay.built.difference(lay.quay_apron).buffer(20)) if lay.quay_apron is not None else None
    u = (math.cos(lay.axis_angle), math.sin(lay.axis_angle))
    for i in range(int(rng.integers(1, 3))):
        wb = float(rng.uniform(32, 50))
        lb = float(min(wb * rng.uniform(1.7, 2.1), 110))

        def mk(x, y):
            return oriented_rect(x, y, u, lb, wb)

        g = None
        if free_quay is not None and not free_quay.is_empty:
            inside = free_quay.buffer(-5).intersection(lay.aoi_poly.buffer(-30))
            g = _place(rng, lay, Polygon() if not events else unary_union([e.geometry.buffer(30) for e in events]),
                       lay.quay_apron, mk, dmin=-math.sqrt(lay.quay_apron.area / math.pi), dmax=50, inside=inside, tries=300)
        if g is None:
            g = _place(rng, lay, taken, Point(lay.anchor).buffer(100), mk, dmin=100, dmax=900)
        if g is None:
            continue
        events.append(ScriptedEvent(
            "new_structure", g, _dates(rng, 1)[0], None,
            f"new waterfront warehouse ({wb:.0f} x {lb:.0f} m, bright roof)", material="roof_white",
            gain=float(rng.uniform(0.92, 1.06)),
        ))
        taken = taken.union(g.buffer(45))
    # land reclamation along the open coast, outside the harbour
    if lay.coast_frame is not None:
        origin, tvec, nvec, f = lay.coast_frame
        harbour = unary_union(lay.basins).buffer(150) if lay.basins else Polygon()
        inside = lay.aoi_poly.buffer(-40)
        reach = min(4000.0, math.sqrt(lay.aoi_poly.area))
        for k in range(600):
            # narrow or crowded coasts get a smaller fill after 300 tries
            shrink = 1.0 if k < 300 else 0.6
            t = float(rng.uniform(-1.0, 1.0) * (4000 if k < 300 else reach))
            lt = float(rng.uniform(180, 260)) * shrink
            dn = float(rng.uniform(130, 170)) * shrink
            tt = np.linspace(t - lt / 2, t + lt / 2, 12)
            nn = f(tt)
            near = [(origin + tvec * a + nvec * (b - 25)) for a, b in zip(tt, nn)]
            far = [(origin + tvec * a + nvec * (b + dn)) for a, b in zip(tt[::-1], nn[::-1])]
            g = Polygon([tuple(p) for p in near + far]).buffer(0)
            if not inside.contains(g) or g.intersects(harbour) or g.intersects(taken):
                continue
            sea_part = g.intersection(lay.sea)
            if sea_part.area < 0.6 * g.area:
                continue
            events.append(ScriptedEvent(
                "earthworks", g, _dates(rng, 1)[0], None,
                f"land reclamation: about {lt:.0f} x {dn:.0f} m of fill tipped into the sea",
                material="fill", rim=g.exterior.buffer(6.0).intersection(g.buffer(1.0)),
            ))
            break


# ---------------------------------------------------------------------------------------------


def _aircraft(rng, x, y) -> tuple[BaseGeometry, str]:
    L = float(rng.uniform(22, 50))
    ang = float(rng.uniform(0, 2 * np.pi))
    u = (math.cos(ang), math.sin(ang))
    fus = oriented_rect(x, y, u, L, max(3.5, L * 0.11))
    wc = (x + u[0] * L * 0.05, y + u[1] * L * 0.05)
    wing = oriented_rect(*wc, (-u[1], u[0]), L * float(rng.uniform(0.9, 1.1)), L * 0.16)
    tc = (x - u[0] * L * 0.42, y - u[1] * L * 0.42)
    tail = oriented_rect(*tc, (-u[1], u[0]), L * 0.35, L * 0.08)
    return unary_union([fus, wing, tail]), ("aircraft" if rng.random() < 0.7 else "aircraft_grey")


def _ship(rng, x, y, u, scale) -> list[tuple[BaseGeometry, str]]:
    L = float(rng.uniform(60, 190) * scale)
    W = float(max(10.0, L * rng.uniform(0.13, 0.17)))
    hull = oriented_rect(x, y, u, L, W)
    deck = oriented_rect(x, y, u, L * 0.8, W * 0.6)
    return [(hull, "ship_hull"), (deck, "ship_deck" if rng.random() < 0.8 else "roof_white")]


def transients_for(aoi_id: str, lay: Layout, seed: int, d: date) -> list[tuple[str, BaseGeometry, str]]:
    """``(kind, geometry, material)`` of the aircraft and ships present on date ``d`` only."""
    rng = np.random.default_rng(stable_hash("transients", aoi_id, seed, d.isoformat()))
    out: list[tuple[str, BaseGeometry, str]] = []
    for apron in lay.aprons:
        inner = apron.buffer(-28)
        if inner.is_empty:
            continue
        x0, y0, x1, y1 = inner.bounds
        for _ in range(int(rng.poisson(1.3))):
            for _t in range(30):
                x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
                if inner.contains(Point(x, y)):
                    g, m = _aircraft(rng, x, y)
                    out.append(("aircraft", g, m))
                    break
    if lay.runways and rng.random() < 0.12:  # one taking off / landing
        r = lay.runways[int(rng.integers(len(lay.runways)))]
        x, y = r.at(float(rng.uniform(-0.4, 0.4) * r.length))
        g, m = _aircraft(rng, x, y)
        out.append(("aircraft", g, m))
    if lay.kind in ("port", "naval_base") and lay.basins:
        scale = float(np.clip(math.sqrt(lay.aoi_poly.area) / 5000.0, 0.3, 1.0))
        u = (math.cos(lay.axis_angle), math.sin(lay.axis_angle))
        water = unary_union(lay.basins).buffer(-30)
        built = lay.built
        spots = [(water, int(rng.poisson(1.6)))]
        if lay.sea is not None:
            spots.append((lay.sea.intersection(lay.aoi_poly).buffer(-150), int(rng.poisson(0.8))))
        for area, n in spots:
            if area.is_empty:
                continue
            x0, y0, x1, y1 = area.bounds
            for _ in range(n):
                for _t in range(40):
                    x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
                    uu = u if rng.random() < 0.7 else (u[1], -u[0])
                    parts = _ship(rng, x, y, uu, scale)
                    if area.contains(parts[0][0]) and not parts[0][0].intersects(built):
                        out += [("ship", g, m) for g, m in parts]
                        break
    return out
