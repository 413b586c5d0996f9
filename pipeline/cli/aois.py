"""``s2watch aois list | show ID | validate PATH...``"""

from __future__ import annotations

import json
import sys

from ..errors import AOIError


def register(sub) -> None:
    p = sub.add_parser("aois", help="list, show and validate areas of interest")
    asub = p.add_subparsers(dest="aois_command", metavar="SUBCOMMAND", required=True)
    pl = asub.add_parser("list", help="AOIs found on the search path")
    pl.add_argument("--json", action="store_true", help="machine-readable output")
    pl.set_defaults(func=_list)
    ps = asub.add_parser("show", help="one AOI: features, grid, area")
    ps.add_argument("aoi", metavar="ID_OR_PATH")
    ps.add_argument("--geojson", action="store_true", help="print the AOI as GeoJSON")
    ps.set_defaults(func=_show)
    pv = asub.add_parser("validate", help="check AOI files; exit 0 when all are valid, 2 otherwise")
    pv.add_argument("paths", nargs="+", metavar="PATH")
    pv.add_argument("--max-area-km2", type=float, default=None, help="largest allowed AOI area (default 2500)")
    pv.set_defaults(func=_validate)


def _list(args) -> int:
    from ..aoi import list_aois, load_aoi

    rows = []
    for path in list_aois():
        try:
            a = load_aoi(path)
            rows.append({"id": a.id, "kind": a.kind, "name": a.name, "area_km2": round(a.area_km2, 1),
                         "features": len(a.features), "path": str(path)})
        except AOIError as exc:
            rows.append({"id": path.stem, "kind": "INVALID", "name": exc.problems[0], "area_km2": None,
                         "features": None, "path": str(path)})
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    for r in rows:
        area = f"{r['area_km2']:.1f} km2" if r["area_km2"] is not None else "-"
        print(f"{r['id']:<24} {r['kind']:<11} {area:>10}  {r['name']}")
    return 0


def _show(args) -> int:
    from ..aoi import load_aoi

    a = load_aoi(args.aoi)
    if args.geojson:
        print(json.dumps(a.to_geojson(), indent=1))
        return 0
    g = a.grid()
    lon, lat = a.centroid_lonlat
    print(f"id:       {a.id}")
    print(f"name:     {a.name}")
    print(f"kind:     {a.kind}")
    if a.country:
        print(f"country:  {a.country}")
    print(f"centre:   {lat:.5f}, {lon:.5f} (lat, lon)")
    print(f"area:     {a.area_km2:.1f} km2")
    print(f"grid:     {g.crs_string}, {g.width} x {g.height} px at {g.res:g} m, origin ({g.bounds[0]:.0f}, {g.bounds[3]:.0f})")
    print(f"file:     {a.path}")
    for f in a.features:
        print(f"feature:  {f.name} ({f.role})")
    if a.description:
        print(f"about:    {a.description}")
    return 0


def _validate(args) -> int:
    from ..aoi import DEFAULT_MAX_AREA_KM2, validate_aoi_file

    max_area = args.max_area_km2 or DEFAULT_MAX_AREA_KM2
    bad = 0
    for path in args.paths:
        problems = validate_aoi_file(path, max_area_km2=max_area)
        if problems:
            bad += 1
            for pr in problems:
                print(f"{path}: {pr}", file=sys.stderr)
        else:
            print(f"{path}: valid")
    return 2 if bad else 0
