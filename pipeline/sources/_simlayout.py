"""Scene layout of the simulated source: what stands where, as polygons in the AOI's UTM CRS.

Private to :mod:`pipeline.sources.simulated`. Every choice is drawn from a generator seeded by
``(aoi.id, seed)``, so the same AOI and seed always give the same airfield, port or town. AOI
features (runways, taxiways, aprons, quays, basins) are used where present; missing ones are
invented next to them (parallel taxiway, apron, hangars, cantonment, shelters; for ports a
coastline, breakwater, basin, piers, tank farm and town).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely.geometry import LineString, Point, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from ..aoi import AOI
from ._simrender import stable_hash

__all__ = ["Layout", "RunwayAxis", "build_layout", "oriented_rect"]

ROOFS = ("roof_concrete", "roof_white", "roof_metal", "roof_rust", "roof_dark", "roof_green")
ROOF_P = (0.40, 0.18, 0.17, 0.12, 0.08, 0.05)


@dataclass(frozen=True)
class RunwayAxis:
    """Centre line of a runway polygon: centre ``(x, y)``, unit vectors along/across, metres."""

    name: str
    polygon: Polygon
    centre: tuple[float, float]
    u: tuple[float, float]
    n: tuple[float, float]
    length: float
    width: float
    surface: str

    def at(self, along: float, across: float = 0.0) -> tuple[float, float]:
        return (
            self.centre[0] + self.u[0] * along + self.n[0] * across,
            self.centre[1] + self.u[1] * along + self.n[1] * across,
        )


@dataclass
class Layout:
    """Everything the renderer paints, in the AOI's UTM CRS (``epsg``).

    ``shapes`` are ``(geometry, material)`` pairs painted in order (later wins).
    """

    epsg: int
    kind: str
    aoi_poly: BaseGeometry
    shapes: list[tuple[BaseGeometry, str]] = field(default_factory=list)
    runways: list[RunwayAxis] = field(default_factory=list)
    aprons: list[BaseGeometry] = field(default_factory=list)
    basins: list[BaseGeometry] = field(default_factory=list)
    piers: list[tuple[Polygon, tuple[float, float], tuple[float, float], float]] = field(default_factory=list)
    quay_apron: BaseGeometry | None = None
    sea: BaseGeometry | None = None
    coast: LineString | None = None
    coast_frame: tuple | None = None
    anchor: tuple[float, float] = (0.0, 0.0)
    axis_angle: float = 0.0
    coastal: bool = False

    def add(self, geom: BaseGeometry | None, material: str) -> None:
        if geom is not None and not geom.is_empty:
            self.shapes.append((geom, material))

    @functools.cached_property
    def built(self) -> BaseGeometry:
        """Union of all man-made footprints (not water, not tracks)."""
        skip = {"water_deep", "water_shallow", "water_harbour", "water_coastal", "beach", "compacted"}
        gs = [g for g, m in self.shapes if m not in skip]
        return unary_union(gs) if gs else Polygon()


def oriented_rect(cx: float, cy: float, u: tuple[float, float], length: float, width: float) -> Polygon:
    """Rectangle centred at ``(cx, cy)`` with ``length`` along unit vector ``u`` and ``width`` across."""
    ux, uy = u
    nx, ny = -uy, ux
    hl, hw = length / 2.0, width / 2.0
    return Polygon(
        [
            (cx - ux * hl - nx * hw, cy - uy * hl - ny * hw),
            (cx + ux * hl - nx * hw, cy + uy * hl - ny * hw),
            (cx + ux * hl + nx * hw, cy + uy * hl + ny * hw),
            (cx - ux * hl + nx * hw, cy - uy * hl + ny * hw),
        ]
    )


def _axis(name: str, poly: BaseGeometry, surface: str) -> RunwayAxis:
    mrr = poly.minimum_rotated_rectangle
    xs, ys = mrr.exterior.coords.xy
    p = np.column_stack([xs[:4], ys[:4]])
    e1, e2 = p[1] - p[0], p[2] - p[1]
    l1, l2 = float(np.hypot(*e1)), float(np.hypot(*e2))
    if l1 >= l2:
        u, length, width = e1 / l1, l1, l2
    else:
        u, length, width = e2 / l2, l2, l1
    if u[1] < 0 or (u[1] == 0 and u[0] < 0):  # point roughly north
        u = -u
    c = poly.centroid
    return RunwayAxis(name, poly, (c.x, c.y), (float(u[0]), float(u[1])), (float(-u[1]), float(u[0])), length, width, surface)


def _pick(rng, items, p=None):
    return items[int(rng.choice(len(items), p=p))]


# ---------------------------------------------------------------------------------------------


def build_layout(aoi: AOI, seed: int) -> Layout:
    """The deterministic layout of ``aoi`` for ``seed`` (see module docstring)."""
    rng = np.random.default_rng(stable_hash("layout", aoi.id, seed))
    epsg = aoi.epsg
    poly = aoi.to_crs(aoi.geometry, epsg)
    kind = aoi.kind.lower()
    lat = aoi.centroid_lonlat[1]
    lay = Layout(epsg=epsg, kind=kind, aoi_poly=poly, coastal=kind in ("port", "naval_base") or lat > 30.5)
    c = poly.centroid
    lay.anchor = (c.x, c.y)

    feats = {}
    for f, g in aoi.features_in(epsg):
        if g.geom_type in ("LineString", "MultiLineString"):
            width = float(f.properties.get("width_m") or (45.0 if f.role == "runway" else 23.0))
            g = g.buffer(width / 2.0, cap_style="flat")
        elif g.geom_type == "Point":
            g = g.buffer(40.0 if f.role != "runway" else 25.0)
        feats.setdefault(f.role, []).append((f, g))

    if kind in ("port", "naval_base"):
        _port(lay, rng, feats)
    elif feats.get("runway"):
        _airbase(lay, rng, feats)
    else:
        _desert_town(lay, rng)
    _tracks(lay, rng)
    return lay


def _extent(lay: Layout) -> float:
    x0, y0, x1, y1 = lay.aoi_poly.bounds
    return float(min(x1 - x0, y1 - y0))


# ---------------------------------------------------------------------------------------------
# airbase


def _airbase(lay: Layout, rng, feats) -> None:
    runways = []
    for f, g in feats["runway"]:
        surface = f.surface or "asphalt"
        runways.append(_axis(f.name, g, "concrete" if surface.startswith("concrete") else "asphalt"))
    lay.runways = runways
    main = max(runways, key=lambda r: r.length)
    lay.axis_angle = math.atan2(main.u[1], main.u[0])
    others = unary_union([r.polygon.buffer(40) for r in runways if r is not main]) if len(runways) > 1 else Polygon()
    rwy_mat = {"asphalt": "asphalt_old", "concrete": "concrete_old"}
    twy_mat = {"asphalt": "asphalt_aged", "concrete": "concrete"}[main.surface]

    # side of the parallel taxiway: away from other runways, inside the AOI
    d_twy = main.width / 2 + float(rng.uniform(160, 230))
    best = None
    for s in (1.0, -1.0):
        line = LineString([main.at(-main.length / 2 + 150, s * d_twy), main.at(main.length / 2 - 150, s * d_twy)])
        apron_probe = Point(main.at(0, s * (d_twy + 900))).buffer(500)
        score = -10.0 * line.intersection(others).length / max(line.length, 1.0)
        score += apron_probe.intersection(lay.aoi_poly).area / apron_probe.area + 0.01 * rng.random()
        score -= apron_probe.intersects(others) * 0.5
        if best is None or score > best[0]:
            best = (score, s)
    s = best[1]

    for r in runways:  # graded runway strips, then the pavements
        lay.add(oriented_rect(*r.centre, r.u, r.length + 120, r.width + 110), "graded")
    for r in runways:
        lay.add(r.polygon, rwy_mat[r.surface])

    L = main.length
    twy_len = L - 240
    lay.add(oriented_rect(*main.at(0, s * d_twy), main.u, twy_len, 23.0), twy_mat)
    stations = [-twy_len / 2 + 12, twy_len / 2 - 12] + list(rng.uniform(-0.35, 0.35, size=int(rng.integers(2, 4))) * L)
    for a in stations:
        lay.add(oriented_rect(*main.at(a, s * (main.width / 2 + d_twy) / 2), main.n, d_twy - main.width / 2, 23.0), twy_mat)

    for r in runways:
        # threshold bars, aiming points and touchdown rubber at both ends
        for e in (-1.0, 1.0):
            lay.add(oriented_rect(*r.at(e * (r.length / 2 - 450), 0), r.u, 500.0, r.width * 0.55), "rubber")
            lay.add(oriented_rect(*r.at(e * (r.length / 2 - 22), 0), r.u, 32.0, r.width - 6), "paint")
            for side in (-1.0, 1.0):
                lay.add(oriented_rect(*r.at(e * (r.length / 2 - 400), side * r.width * 0.28), r.u, 55.0, 8.0), "paint")
        if r is not main:  # link the ends of secondary runways to the main taxiway
            line = LineString([main.at(-twy_len / 2, s * d_twy), main.at(twy_len / 2, s * d_twy)])
            for e in (-1.0, 1.0):
                p = Point(r.at(e * (r.length / 2 - 60), 0))
                q = line.interpolate(line.project(p))
                if p.distance(q) < 2500:
                    lay.add(LineString([p, q]).buffer(11.5, cap_style="flat"), twy_mat)

    # apron (AOI features when given)
    aprons = [g for key in ("apron", "hardstand") for _, g in feats.get(key, [])]
    for _, g in feats.get("taxiway", []):
        lay.add(g, twy_mat)
    a0 = float(rng.uniform(-0.15, 0.15) * L)
    La = float(min(rng.uniform(450, 800), 0.55 * L))
    Da = float(rng.uniform(150, 240))
    n_apron = d_twy + 11.5 + Da / 2
    if not aprons:
        aprons = [oriented_rect(*main.at(a0, s * n_apron), main.u, La, Da)]
    for g in aprons:
        lay.add(g, "concrete")
    lay.aprons = aprons

    # hangars behind the apron, then the cantonment
    n_back = d_twy + 11.5 + Da
    nh = int(rng.integers(2, 5))
    for i in range(nh):
        w = float(rng.uniform(40, 70))
        d = float(rng.uniform(35, 55))
        a = a0 - La / 2 + (i + 0.5) * La / nh
        lay.add(oriented_rect(*main.at(a, s * (n_back + 8 + d / 2)), main.u, w, d), _pick(rng, ("roof_metal", "roof_white", "roof_concrete")))
    depth = float(rng.uniform(350, 600))
    n_c0 = n_back + 120
    width_c = La + 300
    canton = oriented_rect(*main.at(a0, s * (n_c0 + depth / 2)), main.u, width_c, depth)
    lay.add(canton, "compound")
    lay.add(canton.exterior.buffer(3.0), "road")
    _buildings_in(lay, rng, canton, main.u, cell=(62.0, 48.0), size=((16, 48), (10, 26)), fill=0.9,
                  roofs=("roof_concrete", "roof_white", "roof_metal", "roof_rust", "roof_dark"),
                  roof_p=(0.45, 0.2, 0.22, 0.06, 0.07))
    lay.anchor = main.at(a0, s * (n_back / 2 + n_c0 / 2))

    # hardened shelters on loops beyond the apron ends
    nsh = int(rng.integers(4, 9))
    for i in range(nsh):
        side_a = 1.0 if i % 2 else -1.0
        a = a0 + side_a * (La / 2 + 120 + (i // 2) * float(rng.uniform(110, 150)))
        if abs(a) > twy_len / 2 - 40:
            continue
        link = float(rng.uniform(70, 130))
        lay.add(oriented_rect(*main.at(a, s * (d_twy + 11.5 + link / 2)), main.n, link, 15.0), twy_mat)
        pad_c = main.at(a, s * (d_twy + 11.5 + link + 20))
        lay.add(oriented_rect(*pad_c, main.n, 42.0, 42.0), "concrete")
        lay.add(oriented_rect(*pad_c, main.n, 32.0, 22.0), "shelter")

    # access road and perimeter track
    far = main.at(a0 + float(rng.uniform(-600, 600)), s * (n_c0 + depth + 4000))
    mid = main.at(a0 + float(rng.uniform(-300, 300)), s * (n_c0 + depth + 1200))
    lay.add(LineString([main.at(a0, s * (n_c0 + depth / 2)), mid, far]).buffer(4.5, cap_style="flat"), "road")
    hull = unary_union([r.polygon for r in runways] + [canton]).convex_hull.buffer(350.0)
    lay.add(hull.exterior.buffer(3.0), "compacted")


def _buildings_in(lay: Layout, rng, area: Polygon, u, *, cell, size, fill, roofs=ROOFS, roof_p=ROOF_P) -> None:
    """Fill ``area`` with a street grid aligned to ``u``: one building per cell with probability ``fill``."""
    c = area.centroid
    ux, uy = u
    nx, ny = -uy, ux
    # coordinates of the area along/across u
    xs, ys = area.exterior.coords.xy
    along = [(x - c.x) * ux + (y - c.y) * uy for x, y in zip(xs, ys)]
    across = [(x - c.x) * nx + (y - c.y) * ny for x, y in zip(xs, ys)]
    prepared = shapely.prepared.prep(area)
    a = min(along) + cell[0] / 2
    while a < max(along):
        b = min(across) + cell[1] / 2
        while b < max(across):
            if rng.random() < fill:
                L = float(rng.uniform(*size[0]))
                W = float(rng.uniform(*size[1]))
                jx, jy = rng.uniform(-0.15, 0.15, 2) * np.array(cell)
                cx = c.x + ux * (a + jx) + nx * (b + jy)
                cy = c.y + uy * (a + jx) + ny * (b + jy)
                r = oriented_rect(cx, cy, u, min(L, cell[0] - 10), min(W, cell[1] - 8))
                if prepared.contains(r):
                    lay.add(r, _pick(rng, roofs, roof_p))
            b += cell[1]
        a += cell[0]


# ---------------------------------------------------------------------------------------------
# desert town (plain polygons and airbases without runway features)


def _town(lay: Layout, rng, centre, radius: float, angle: float, clip: BaseGeometry | None = None) -> Polygon:
    u = (math.cos(angle), math.sin(angle))
    blob = Point(centre).buffer(radius, quad_segs=16)
    # irregular outline
    pts = np.asarray(blob.exterior.coords)
    k = np.linspace(0, 2 * np.pi, len(pts))
    wob = 1.0 + 0.18 * np.sin(3 * k + rng.uniform(0, 6)) + 0.1 * np.sin(5 * k + rng.uniform(0, 6))
    pts = np.asarray(centre) + (pts - np.asarray(centre)) * wob[:, None]
    town = Polygon(pts).buffer(0)
    if clip is not None:
        town = town.intersection(clip)
        if town.geom_type == "MultiPolygon":
            town = max(town.geoms, key=lambda g: g.area)
    if town.is_empty:
        return town
    lay.add(town, "urban")
    _buildings_in(lay, rng, town, u, cell=(42.0, 36.0), size=((12, 32), (10, 26)), fill=0.9)
    # main streets
    for v in (u, (-u[1], u[0])):
        line = LineString([(centre[0] - v[0] * radius * 1.4, centre[1] - v[1] * radius * 1.4),
                           (centre[0] + v[0] * radius * 1.4, centre[1] + v[1] * radius * 1.4)])
        lay.add(line.buffer(7.0, cap_style="flat").intersection(town.buffer(80)), "road")
    nparks = int(rng.integers(0, 3 if lay.coastal else 2))
    for _ in range(nparks):
        p = town.representative_point()
        off = rng.uniform(-0.4, 0.4, 2) * radius
        park = oriented_rect(p.x + off[0], p.y + off[1], u, float(rng.uniform(60, 140)), float(rng.uniform(40, 90)))
        if town.contains(park):
            lay.add(park, "park")
    return town


def _desert_town(lay: Layout, rng) -> None:
    ext = _extent(lay)
    c = lay.aoi_poly.centroid
    off = rng.uniform(-0.2, 0.2, 2) * ext
    centre = (c.x + off[0], c.y + off[1])
    angle = float(rng.uniform(0, np.pi))
    lay.axis_angle = angle
    radius = float(np.clip(0.14 * ext, 150, 900))
    town = _town(lay, rng, centre, radius, angle, clip=lay.aoi_poly.buffer(-50))
    # roads leaving town
    for k in range(int(rng.integers(2, 4))):
        ang = angle + k * 2.1 + float(rng.uniform(-0.3, 0.3))
        far = (centre[0] + math.cos(ang) * ext * 1.5, centre[1] + math.sin(ang) * ext * 1.5)
        mid = (centre[0] + math.cos(ang + 0.2) * ext * 0.5, centre[1] + math.sin(ang + 0.2) * ext * 0.5)
        lay.add(LineString([centre, mid, far]).buffer(5.0, cap_style="flat"), "road")
    # a walled compound beside the town
    u = (math.cos(angle), math.sin(angle))
    cc = (centre[0] + u[0] * (radius + 250), centre[1] + u[1] * (radius + 250))
    comp = oriented_rect(*cc, u, 260.0, 180.0)
    if lay.aoi_poly.contains(comp):
        lay.add(comp, "compound")
        lay.add(comp.exterior.buffer(2.5), "road")
        _buildings_in(lay, rng, comp, u, cell=(65.0, 45.0), size=((20, 45), (12, 25)), fill=0.6)
    lay.anchor = (cc[0], cc[1]) if not town.is_empty else centre


# ---------------------------------------------------------------------------------------------
# port / naval base


def _coast_fn(rng, scale: float):
    lam = rng.uniform(700, 4000, size=5) * max(scale, 0.3)
    amp = lam * rng.uniform(0.02, 0.05, size=5)
    ph = rng.uniform(0, 2 * np.pi, size=5)

    def f(t):
        t = np.asarray(t, dtype=float)
        return (amp[:, None] * np.sin(2 * np.pi * t[None, :] / lam[:, None] + ph[:, None])).sum(axis=0)

    return f


def _port(lay: Layout, rng, feats) -> None:
    ext = _extent(lay)
    s = float(np.clip(ext / 5000.0, 0.25, 1.0))
    c = lay.aoi_poly.centroid
    theta = float(rng.choice([0.0, 0.5, 1.0, 1.5]) * np.pi + rng.uniform(-0.5, 0.5))
    nvec = np.array([math.cos(theta), math.sin(theta)])  # towards the sea
    tvec = np.array([-nvec[1], nvec[0]])
    origin = np.array([c.x, c.y]) + nvec * ext * float(rng.uniform(0.02, 0.15))
    f = _coast_fn(rng, s)
    D = ext * 3.0
    ts = np.arange(-D, D, 20.0)
    ns = f(ts)

    def xy(t, n):
        t = np.asarray(t, float)
        n = np.asarray(n, float)
        return origin[0] + tvec[0] * t + nvec[0] * n, origin[1] + tvec[1] * t + nvec[1] * n

    cx, cy = xy(ts, ns)
    coast = LineString(np.column_stack([cx, cy]))
    fx, fy = xy([D, -D], [-D, -D])
    land = Polygon(list(zip(cx, cy)) + [(fx[0], fy[0]), (fx[1], fy[1])]).buffer(0)
    big = lay.aoi_poly.buffer(ext * 2).envelope
    sea = big.difference(land)
    lay.sea, lay.coast = sea, coast
    lay.coast_frame = (origin, tvec, nvec, f)
    u = (float(tvec[0]), float(tvec[1]))
    lay.axis_angle = math.atan2(u[1], u[0])

    lay.add(sea, "water_deep")
    lay.add(coast.buffer(120.0 * s + 60).intersection(sea), "water_coastal")
    lay.add(coast.buffer(35.0).intersection(sea), "water_shallow")
    lay.add(coast.buffer(12.0 + 10 * s).intersection(land), "beach")

    # harbour frame
    t0 = float(rng.uniform(-0.12, 0.12) * ext)
    Wb = float(rng.uniform(700, 1300) * s)
    Db = float(rng.uniform(380, 650) * s)
    tr = np.linspace(t0 - Wb / 2, t0 + Wb / 2, 50)
    n_q = float(f(tr).max() + 30 * s)  # straight quay wall
    n_b = n_q + Db
    basins = [g for _, g in feats.get("basin", [])]
    if not basins:
        basin_poly = Polygon([xy(t, n) for t, n in [(t0 - Wb / 2, n_q - 400), (t0 + Wb / 2, n_q - 400), (t0 + Wb / 2, n_b), (t0 - Wb / 2, n_b)]])
        basins = [basin_poly.intersection(sea)]
        for b in basins:
            lay.add(b, "water_harbour")
        gap = float(rng.uniform(120, 220) * s)
        bw = LineString([xy(t0 - Wb / 2, float(f([t0 - Wb / 2])[0]) - 20), xy(t0 - Wb / 2, n_b), xy(t0 + Wb / 2 - gap, n_b)])
        lay.add(bw.buffer(16.0 * max(s, 0.6)), "breakwater")
        spur = LineString([xy(t0 + Wb / 2, float(f([t0 + Wb / 2])[0]) - 20), xy(t0 + Wb / 2, n_b - 90 * s)])
        lay.add(spur.buffer(14.0 * max(s, 0.6)), "breakwater")
    else:
        for b in basins:
            lay.add(b, "water_harbour")
    lay.basins = basins

    # quay apron along the basin: land made of concrete
    quay_apron = Polygon([xy(t, n) for t, n in [(t0 - Wb / 2 + 30, n_q - 160 * s - 60), (t0 + Wb / 2 - 30, n_q - 160 * s - 60),
                                                 (t0 + Wb / 2 - 30, n_q), (t0 - Wb / 2 + 30, n_q)]])
    for _, g in feats.get("quay", []):
        lay.add(g, "concrete")
    lay.add(quay_apron, "concrete")
    lay.quay_apron = quay_apron
    # piers
    npier = int(rng.integers(1, 4)) if lay.kind == "port" else int(rng.integers(2, 4))
    for i in range(npier):
        tp = t0 - Wb / 2 + (i + 1) * Wb / (npier + 1) + float(rng.uniform(-30, 30) * s)
        wp = float(rng.uniform(60, 130) * s)
        lp = float(rng.uniform(0.35, 0.6) * Db)
        pc = xy(tp, n_q + lp / 2 - 5)
        pier = oriented_rect(float(pc[0]), float(pc[1]), (float(nvec[0]), float(nvec[1])), lp + 10, wp)
        lay.add(pier, "concrete")
        end = xy(tp, n_q + lp)
        lay.piers.append((pier, (float(nvec[0]), float(nvec[1])), (float(end[0]), float(end[1])), wp))
        if lay.kind == "port" and wp > 50:
            wc = xy(tp, n_q + lp * 0.45)
            lay.add(oriented_rect(float(wc[0]), float(wc[1]), (float(nvec[0]), float(nvec[1])), lp * 0.6, wp * 0.45), _pick(rng, ("roof_metal", "roof_white", "roof_rust")))
    # warehouses and container stacks on the quay apron (leave room for the scripted warehouse)
    nwh = int(rng.integers(2, 5))
    for i in range(nwh):
        tw = t0 - Wb / 2 + 60 + (i + 0.5) * (Wb * 0.55) / nwh
        wc = xy(tw, n_q - 55 * s - 40)
        lay.add(oriented_rect(float(wc[0]), float(wc[1]), u, float(rng.uniform(50, 90) * s), float(rng.uniform(30, 50) * s)),
                _pick(rng, ("roof_metal", "roof_white", "roof_rust", "roof_concrete")))
    if lay.kind == "port":
        for k in range(int(6 * s) + 2):
            for j in range(3):
                tc = t0 + Wb * 0.12 + k * 28 * s
                if tc > t0 + Wb / 2 - 60:
                    break
                cc = xy(tc, n_q - 20 - j * 22 * s)
                lay.add(oriented_rect(float(cc[0]), float(cc[1]), u, 22 * s, 12 * s), _pick(rng, ("container", "roof_blue", "roof_rust", "roof_white")))
    # tank farm inland
    tf = xy(t0 + float(rng.uniform(-0.5, 0.5) * Wb), n_q - 160 * s - 250 * s)
    bund = oriented_rect(float(tf[0]), float(tf[1]), u, 260 * s, 170 * s)
    if lay.aoi_poly.buffer(200).contains(bund) and land.contains(bund):
        lay.add(bund, "compound")
        for i in range(3):
            for j in range(2):
                ccx = tf[0] + tvec[0] * (i - 1) * 80 * s - nvec[0] * (j - 0.5) * 80 * s
                ccy = tf[1] + tvec[1] * (i - 1) * 80 * s - nvec[1] * (j - 0.5) * 80 * s
                lay.add(Point(ccx, ccy).buffer(float(rng.uniform(18, 30) * s)), "tank")
    # coast road and town inland
    rn = np.array([n - 320 * s - 150 for n in ns])
    rx, ry = xy(ts, rn)
    lay.add(LineString(np.column_stack([rx, ry])).buffer(6.0), "road")
    tc = xy(t0 + float(rng.uniform(-0.6, 0.6) * Wb + Wb * 0.9), n_q - 700 * s - 300)
    land_in = land.intersection(lay.aoi_poly.buffer(150)).buffer(-60)
    _town(lay, rng, (float(tc[0]), float(tc[1])), float(np.clip(0.16 * ext, 150, 800)), lay.axis_angle, clip=land_in.difference(bund.buffer(40)))
    a = xy(t0, n_q - 100 * s)
    lay.anchor = (float(a[0]), float(a[1]))


# ---------------------------------------------------------------------------------------------


def _tracks(lay: Layout, rng) -> None:
    """Vehicle tracks across the open ground (faint bright lines)."""
    ext = _extent(lay)
    c = lay.aoi_poly.centroid
    for _ in range(int(rng.integers(4, 9))):
        p0 = np.array([c.x, c.y]) + rng.uniform(-0.7, 0.7, 2) * ext
        ang = rng.uniform(0, 2 * np.pi)
        pts = [p0]
        for _k in range(6):
            ang += rng.uniform(-0.35, 0.35)
            pts.append(pts[-1] + np.array([math.cos(ang), math.sin(ang)]) * rng.uniform(300, 900))
        g = LineString(pts).buffer(float(rng.uniform(2.0, 4.0)), cap_style="flat")
        if lay.sea is not None:
            g = g.difference(lay.sea)
        lay.shapes.insert(0, (g, "compacted"))
