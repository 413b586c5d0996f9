"""QGIS and SLD styles of the change objects, built from :data:`CLASS_COLOURS`.

One source of colour for the COG colour table, the GeoPackage ``layer_styles`` row, the
``changes.qml`` file beside it and the HTML report.
"""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

from ..objects.model import CHANGE_CLASSES, CLASS_COLOURS

__all__ = ["class_label", "hex_colour", "qml", "raster_qml", "sld", "TIME_FIELD"]

TIME_FIELD = "detected_at"
"""DateTime field the QGIS temporal controller is configured on in ``changes.qml``."""

_FILL_ALPHA = 90
"""Alpha (0-255) of polygon fills; outlines are opaque."""


def class_label(cls: str) -> str:
    """Human label of a class name: ``runway_repair`` -> ``runway repair``."""
    return cls.replace("_", " ")


def hex_colour(cls: str) -> str:
    """``#rrggbb`` of a class."""
    r, g, b, _ = CLASS_COLOURS[cls]
    return f"#{r:02x}{g:02x}{b:02x}"


def _opt(name: str, value: str) -> str:
    return f'<Option name={quoteattr(name)} type="QString" value={quoteattr(value)}/>'


def qml(*, field: str = "class", time_field: str = TIME_FIELD) -> str:
    """A QGIS 3 layer style: categorized renderer on ``field`` with one fill per change class.

    Also enables the layer's temporal properties on ``time_field`` (a DateTime field), so the
    temporal controller can step through detections.
    """
    cats = []
    syms = []
    for i, cls in enumerate(CHANGE_CLASSES):
        r, g, b, a = CLASS_COLOURS[cls]
        cats.append(f"      <category render=\"true\" symbol=\"{i}\" value={quoteattr(cls)} label={quoteattr(class_label(cls))}/>")
        opts = "".join(
            [
                _opt("color", f"{r},{g},{b},{_FILL_ALPHA}"),
                _opt("joinstyle", "miter"),
                _opt("outline_color", f"{r},{g},{b},{a}"),
                _opt("outline_style", "solid"),
                _opt("outline_width", "0.6"),
                _opt("outline_width_unit", "MM"),
                _opt("style", "solid"),
            ]
        )
        syms.append(
            f'      <symbol type="fill" name="{i}" alpha="1" clip_to_extent="1" force_rhr="0">\n'
            f'        <layer class="SimpleFill" enabled="1" locked="0" pass="0">\n'
            f'          <Option type="Map">{opts}</Option>\n'
            f"        </layer>\n"
            f"      </symbol>"
        )
    return (
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
        '<qgis version="3.28.0" styleCategories="Symbology|Labeling|Temporal">\n'
        f'  <temporal enabled="1" mode="1" startField={quoteattr(time_field)} endField="" accumulate="1"'
        ' durationField="" durationUnit="d" fixedDuration="0" limitMode="0" startExpression="" endExpression=""/>\n'
        f'  <renderer-v2 type="categorizedSymbol" attr={quoteattr(field)} symbollevels="0" enableorderby="0" forceraster="0">\n'
        "    <categories>\n" + "\n".join(cats) + "\n    </categories>\n"
        "    <symbols>\n" + "\n".join(syms) + "\n    </symbols>\n"
        "  </renderer-v2>\n"
        "  <layerGeometryType>2</layerGeometryType>\n"
        "</qgis>\n"
    )


def sld(*, layer: str = "changes", field: str = "class") -> str:
    """An OGC SLD 1.1 style equivalent to :func:`qml` (for tools other than QGIS)."""
    rules = []
    for cls in CHANGE_CLASSES:
        colour = hex_colour(cls)
        rules.append(
            "        <se:Rule>\n"
            f"          <se:Name>{cls}</se:Name>\n"
            f"          <se:Description><se:Title>{class_label(cls)}</se:Title></se:Description>\n"
            "          <ogc:Filter><ogc:PropertyIsEqualTo>"
            f"<ogc:PropertyName>{field}</ogc:PropertyName><ogc:Literal>{cls}</ogc:Literal>"
            "</ogc:PropertyIsEqualTo></ogc:Filter>\n"
            "          <se:PolygonSymbolizer>\n"
            f'            <se:Fill><se:SvgParameter name="fill">{colour}</se:SvgParameter>'
            f'<se:SvgParameter name="fill-opacity">{_FILL_ALPHA / 255:.2f}</se:SvgParameter></se:Fill>\n'
            f'            <se:Stroke><se:SvgParameter name="stroke">{colour}</se:SvgParameter>'
            '<se:SvgParameter name="stroke-width">2</se:SvgParameter></se:Stroke>\n'
            "          </se:PolygonSymbolizer>\n"
            "        </se:Rule>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<StyledLayerDescriptor version="1.1.0" xmlns="http://www.opengis.net/sld" '
        'xmlns:se="http://www.opengis.net/se" xmlns:ogc="http://www.opengis.net/ogc">\n'
        f"  <NamedLayer>\n    <se:Name>{layer}</se:Name>\n    <UserStyle>\n      <se:Name>{layer}</se:Name>\n"
        "      <se:FeatureTypeStyle>\n" + "\n".join(rules) + "\n      </se:FeatureTypeStyle>\n"
        "    </UserStyle>\n  </NamedLayer>\n</StyledLayerDescriptor>\n"
    )


def raster_qml() -> str:
    """A QGIS 3 paletted style for ``change_class.tif``: class colours, names, no change transparent.

    TIFF colour tables cannot hold alpha, so without this style QGIS would paint "no change" (code
    0) opaque black. QGIS loads ``change_class.qml`` beside ``change_class.tif`` automatically.
    """
    from ..objects.model import CLASS_CODES

    entries = []
    for name, code in sorted(CLASS_CODES.items(), key=lambda kv: kv[1]):
        r, g, b, a = CLASS_COLOURS[name]
        entries.append(
            f'        <paletteEntry value="{code}" color="#{r:02x}{g:02x}{b:02x}" alpha="{a}" label={quoteattr(class_label(name))}/>'
        )
    return (
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
        '<qgis version="3.28.0" styleCategories="Symbology">\n'
        "  <pipe>\n"
        '    <rasterrenderer type="paletted" band="1" opacity="1" alphaBand="-1" nodataColor="">\n'
        "      <rasterTransparency/>\n"
        "      <colorPalette>\n" + "\n".join(entries) + "\n      </colorPalette>\n"
        "    </rasterrenderer>\n"
        '    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>\n'
        '    <rasterresampler maxOversampling="2"/>\n'
        "  </pipe>\n"
        "  <blendMode>0</blendMode>\n"
        "</qgis>\n"
    )
