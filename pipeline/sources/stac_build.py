"""Build a static STAC catalog from a folder of per-band Sentinel-2 GeoTIFFs.

A user with downloaded data (BigEarthNet patches, OSCD image pairs, bands exported from SNAP...)
gets a catalog that :class:`~pipeline.sources.stac.LocalStacSource` reads like any archive::

    s2watch stac build DIR --out CATALOG_DIR
    s2watch run AOI --source CATALOG_DIR ...

Files are grouped into items by folder and by the name before the band suffix
(``<scene>_B02.tif``, ``<scene>_SCL.tif``). The acquisition time comes from, in order: a
``dates.txt`` next to an ``imgs_1`` / ``imgs_2`` folder (OSCD's ``date_1: YYYYMMDD``), or the
first ``YYYYMMDDTHHMMSS`` in the file name (``S2A_MSIL2A_20170613T101031_...``). Assets point to
the files in place (absolute hrefs); the CRS, shape and transform of each file go into ``proj:*``.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import rasterio
from rasterio.errors import RasterioError
from rasterio.warp import transform_bounds

from ..errors import DataError, UsageError
from ..scene import BAND_RESOLUTION

log = logging.getLogger(__name__)

__all__ = ["build_catalog", "scan_scenes", "SceneFiles"]

_BAND_SUFFIX = re.compile(r"^(?P<prefix>.+?)[_-](?P<band>B(?:0?[1-9]|1[0-2]|8A)|SCL)$", re.IGNORECASE)
_STAMP = re.compile(r"(?<!\d)(\d{8})T(\d{4,6})(?!\d)")
_BASELINE = re.compile(r"_N(\d{2})(\d{2})_")
_TILE = re.compile(r"(?:^|_)T(\d{2}[C-X][A-Z]{2})(?:_|$)")
_DATE_LINE = re.compile(r"^\s*date_(\d)\s*:\s*(\d{8})\s*$")

COMMON_NAME = {
    "B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge", "B06": "rededge",
    "B07": "rededge", "B08": "nir", "B8A": "nir08", "B09": "nir09", "B10": "cirrus", "B11": "swir16", "B12": "swir22",
}  # fmt: skip
CENTER_UM = {
    "B01": 0.443, "B02": 0.490, "B03": 0.560, "B04": 0.665, "B05": 0.705, "B06": 0.740, "B07": 0.783,
    "B08": 0.842, "B8A": 0.865, "B09": 0.945, "B10": 1.375, "B11": 1.610, "B12": 2.190,
}  # fmt: skip


@dataclass(frozen=True)
class SceneFiles:
    """The band files of one scene found on disk.

    Attributes
    ----------
    id : str
        Item id (the file-name prefix; folder-qualified when two folders share a prefix).
    folder : Path
    bands : dict
        Band name (``B02``, ``B8A``, ``SCL``) -> absolute file path.
    time : datetime
        Sensing time, UTC.
    time_from : str
        ``dates.txt`` or ``file name``: where the time came from.
    """

    id: str
    folder: Path
    bands: dict
    time: datetime
    time_from: str


def _norm_band(b: str) -> str:
    b = b.upper()
    if b in ("SCL", "B8A"):
        return b
    return f"B{int(b[1:]):02d}"


def _dates_txt(folder: Path) -> date | None:
    m = re.match(r"^imgs_(\d)$", folder.name)
    f = folder.parent / "dates.txt"
    if not m or not f.is_file():
        return None
    for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
        dm = _DATE_LINE.match(line)
        if dm and dm.group(1) == m.group(1):
            try:
                return datetime.strptime(dm.group(2), "%Y%m%d").date()
            except ValueError as exc:
                raise DataError(f"{f}: bad date {dm.group(2)!r} for date_{dm.group(1)} (want YYYYMMDD)") from exc
    raise DataError(f"{f}: no 'date_{m.group(1)}: YYYYMMDD' line for folder {folder.name}")


def _stamp(name: str) -> datetime | None:
    m = _STAMP.search(name)
    if not m:
        return None
    hms = m.group(2).rjust(6, "0")  # BigEarthNet drops leading zeros ("T94161")
    h, mi, s = min(int(hms[:2]), 23), min(int(hms[2:4]), 59), min(int(hms[4:]), 59)
    try:
        day = datetime.strptime(m.group(1), "%Y%m%d")
    except ValueError:
        return None
    return day.replace(hour=h, minute=mi, second=s, tzinfo=timezone.utc)


def scan_scenes(src_dir: "str | os.PathLike") -> list[SceneFiles]:
    """Find per-band GeoTIFF scenes under ``src_dir`` (recursively), sorted by time.

    Raises
    ------
    UsageError
        ``src_dir`` is missing or holds no ``*_Bxx.tif`` files.
    DataError
        A scene has no date in ``dates.txt`` nor in its file names.
    """
    src = Path(src_dir)
    if not src.is_dir():
        raise UsageError(f"{src}: not a folder; give the folder holding the per-band GeoTIFFs")
    groups: dict[tuple[Path, str], dict[str, Path]] = defaultdict(dict)
    for f in sorted(src.rglob("*")):
        if f.suffix.lower() not in (".tif", ".tiff") or not f.is_file():
            continue
        m = _BAND_SUFFIX.match(f.stem)
        if m:
            groups[(f.parent.resolve(), m.group("prefix"))][_norm_band(m.group("band"))] = f.resolve()
    if not groups:
        raise UsageError(f"{src}: no per-band GeoTIFFs named like <scene>_B02.tif found (searched recursively)")
    prefixes = defaultdict(list)
    for folder, prefix in groups:
        prefixes[prefix].append(folder)
    scenes = []
    for (folder, prefix), bands in groups.items():
        day = _dates_txt(folder)
        stamp = _stamp(prefix)
        if day is not None:
            if stamp is not None and stamp.date() == day:
                t, how = stamp, "dates.txt"
            else:  # S2 passes at about 10:30 local solar time
                lon = _lon_of(next(iter(bands.values())))
                t = datetime.combine(day, datetime.min.time(), tzinfo=timezone.utc) + timedelta(hours=10.5 - lon / 15.0)
                how = "dates.txt"
        elif stamp is not None:
            t, how = stamp, "file name"
        else:
            raise DataError(
                f"{folder}: cannot tell the date of scene {prefix!r}: no YYYYMMDDTHHMMSS in the file names "
                "and no dates.txt (date_1: YYYYMMDD) next to an imgs_1/imgs_2 folder; rename the files or add dates.txt"
            )
        sid = prefix
        if len(prefixes[prefix]) > 1:
            rel = os.path.relpath(folder, src.resolve()).replace(os.sep, "_")
            sid = f"{rel}_{prefix}"
        scenes.append(SceneFiles(sid, folder, dict(sorted(bands.items())), t, how))
    return sorted(scenes, key=lambda s: (s.time, s.id))


def _lon_of(path: Path) -> float:
    with rasterio.open(path) as ds:
        b = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds, densify_pts=21)
    return (b[0] + b[2]) / 2.0


def _properties(scene: SceneFiles, level: str | None, baseline: str | None) -> dict:
    text = scene.id
    for j in sorted(scene.folder.glob("*.json"))[:5]:  # BigEarthNet keeps the SAFE name in its metadata
        try:
            text += " " + j.read_text(encoding="utf-8", errors="replace")[:20000]
        except OSError:
            pass
    props: dict = {"constellation": "sentinel-2", "s2watch:time_from": scene.time_from}
    m = re.match(r"^(?:.*_)?S2([ABCD])_", scene.id) or re.match(r"^S2([ABCD])", scene.id)
    if m:
        props["platform"] = f"sentinel-2{m.group(1).lower()}"
    if level is None:
        if "L2A" in scene.id.upper():
            level = "L2A"
        elif "L1C" in scene.id.upper():
            level = "L1C"
        else:
            level = "L2A" if "SCL" in scene.bands else "L1C"
    props["processing:level"] = level.upper()
    props["s2:product_type"] = "S2MSI2A" if level.upper() == "L2A" else "S2MSI1C"
    if baseline is None:
        bm = _BASELINE.search(text)
        baseline = f"{bm.group(1)}.{bm.group(2)}" if bm else None
    if baseline:
        props["s2:processing_baseline"] = baseline
    tm = _TILE.search(scene.id)
    if tm:
        props["s2:mgrs_tile"] = tm.group(1)
    return props


def _make_item(scene: SceneFiles, level: str | None, baseline: str | None):
    import pystac
    from pystac.extensions.eo import Band, EOExtension
    from pystac.extensions.projection import ProjectionExtension
    from shapely.geometry import box, mapping

    ref_band = next((b for b in ("B02", "B03", "B04", "B08") if b in scene.bands), next(iter(scene.bands)))
    metas = {}
    for b, f in scene.bands.items():
        try:
            with rasterio.open(f) as ds:
                if ds.crs is None:
                    raise DataError(f"{f}: GeoTIFF has no CRS; georeference it before building a catalog")
                metas[b] = (ds.crs, ds.bounds, ds.shape, list(ds.transform)[:6])
        except RasterioError as exc:
            raise DataError(f"{f}: unreadable GeoTIFF ({exc}); replace the file") from exc
    crs, bounds, shape, transform = metas[ref_band]
    lonlat = transform_bounds(crs, "EPSG:4326", *bounds, densify_pts=21)
    props = _properties(scene, level, baseline)
    item = pystac.Item(
        id=scene.id,
        geometry=mapping(box(*lonlat)),
        bbox=list(lonlat),
        datetime=scene.time,
        properties=props,
    )
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    epsg = crs.to_epsg()
    if epsg:
        proj.epsg = epsg
    else:
        proj.wkt2 = crs.to_wkt()
    proj.shape = list(shape)
    proj.transform = transform
    EOExtension.ext(item, add_if_missing=True)
    for b, f in scene.bands.items():
        asset = pystac.Asset(href=str(f), media_type=pystac.MediaType.GEOTIFF, roles=["data"], title=b)
        item.add_asset(b, asset)
        pa = ProjectionExtension.ext(asset)
        a_crs, _, a_shape, a_transform = metas[b]
        if a_crs.to_epsg():
            pa.epsg = a_crs.to_epsg()
        pa.shape = list(a_shape)
        pa.transform = a_transform
        if b != "SCL":
            EOExtension.ext(asset).bands = [
                Band.create(name=b, common_name=COMMON_NAME.get(b), center_wavelength=CENTER_UM.get(b))
            ]
            asset.extra_fields["gsd"] = BAND_RESOLUTION.get(b)
        else:
            EOExtension.ext(asset).bands = [Band.create(name="SCL", description="scene classification")]
    return item


def build_catalog(
    src_dir: "str | os.PathLike",
    out_dir: "str | os.PathLike | None" = None,
    *,
    level: str | None = None,
    processing_baseline: str | None = None,
    title: str | None = None,
) -> Path:
    """Write a static STAC catalog describing the per-band GeoTIFFs under ``src_dir``.

    Parameters
    ----------
    src_dir : path
        Folder searched recursively for ``<scene>_Bxx.tif`` files.
    out_dir : path, optional
        Catalog folder (default ``src_dir/catalog``); replaced atomically if it already holds a
        catalog, refused if it holds anything else.
    level : {"L2A", "L1C"}, optional
        Processing level of every scene; by default from the names (``MSIL2A``/``L1C``), else
        L2A when an SCL file exists, else L1C.
    processing_baseline : str, optional
        e.g. ``"04.00"`` for data carrying the +1000 offset; by default parsed from names
        (``_N0400_``) or from JSON metadata next to the files; unknown means no offset.
    title : str, optional

    Returns
    -------
    Path
        The written ``catalog.json``.

    Raises
    ------
    UsageError
        No band files, or ``out_dir`` is a non-catalog folder.
    DataError
        A scene without date, or an unreadable file.
    """
    import pystac

    if level is not None and level.upper() not in ("L2A", "L1C"):
        raise UsageError(f"level must be L2A or L1C, got {level!r}")
    src = Path(src_dir)
    scenes = scan_scenes(src)
    out = Path(out_dir) if out_dir is not None else src / "catalog"
    if out.exists() and not (out / "catalog.json").is_file() and any(out.iterdir()):
        raise UsageError(f"{out}: exists and is not a STAC catalog; choose an empty or new --out folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    cat = pystac.Catalog(
        id=re.sub(r"[^A-Za-z0-9_.-]+", "-", src.resolve().name) or "s2watch",
        description=f"Sentinel-2 band files under {src.resolve()} (built by s2watch stac build)",
        title=title,
    )
    for sc in scenes:
        cat.add_item(_make_item(sc, level, processing_baseline))
        log.info("item %s: %s (%d bands, time from %s)", sc.id, sc.time.isoformat(), len(sc.bands), sc.time_from)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        cat.normalize_hrefs(tmp.as_posix() + "/")  # trailing / : a dotted name is not a file
        cat.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
        _absolute_assets(tmp, scenes)
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote %s: %d items", out / "catalog.json", len(scenes))
    return out / "catalog.json"


def _absolute_assets(root: Path, scenes: list[SceneFiles]) -> None:
    """Make sure asset hrefs point to the original files (absolute), whatever pystac made of them."""
    import json

    by_id = {s.id: s for s in scenes}
    for f in root.rglob("*.json"):
        if f.name == "catalog.json":
            continue
        d = json.loads(f.read_text(encoding="utf-8"))
        sc = by_id.get(d.get("id"))
        if sc is None:
            continue
        for k, a in d.get("assets", {}).items():
            if k in sc.bands:
                a["href"] = str(sc.bands[k])
        f.write_text(json.dumps(d, indent=2), encoding="utf-8")
