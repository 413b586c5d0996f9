"""report.html: self-contained, escaped, sortable, and rendered by a real headless browser."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from pyproj import Transformer

from pipeline.outputs import write_outputs
from pipeline.outputs.report import render_report

from .conftest import EPSG, make_result, run_browser

HOSTILE_NAME = "<script>alert(1)</script>"
HOSTILE_FEATURE = '"><img src=x onerror=alert(2)>'
HOSTILE_NOTE = "<b onmouseover=alert(3)>bold</b>"

SERIES = {
    "runway 14/32": {"dnbr": {"2024-01-10": 0.01, "2024-03-01": 0.02, "2024-06-01": 0.31}},
    "apron area changed (km2)": [("2024-01-10", 0.0), ("2024-06-01", 0.03)],
}
HISTORY = {
    "obj-runway": [
        {"date": "2024-05-20", "status": "candidate", "confidence": 0.55, "area_m2": 2500.0},
        {"date": "2024-06-01", "status": "confirmed", "confidence": 0.91, "area_m2": 3000.0},
    ]
}


@pytest.fixture(scope="module")
def html(written):
    return written[0]["report.html"].read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    res = make_result(name=HOSTILE_NAME, feature_name=HOSTILE_FEATURE, evidence_note=HOSTILE_NOTE)
    out = tmp_path_factory.mktemp("hostile")
    return write_outputs(res, out)["report.html"]


def _attr_urls(text: str) -> list[str]:
    return re.findall(r'\b(?:src|href|xlink:href|action|poster|data)\s*=\s*["\']?([^"\'\s>]+)', text, flags=re.I)


# -------------------------------------------------------------------------- static checks


def test_single_file_without_network_references(html):
    urls = _attr_urls(html)
    assert urls, "expected images and anchors"
    for u in urls:
        assert u.startswith(("data:image/png;base64,", "data:image/jpeg;base64,", "#")), u
    assert not re.search(r"url\(\s*['\"]?(?!data:)", html)
    assert "<link" not in html and "@import" not in html and "<iframe" not in html
    assert "Content-Security-Policy" in html and "default-src 'none'" in html


def test_every_object_has_chips_evidence_and_pasteable_coordinate(html, result):
    tr = Transformer.from_crs(EPSG, 4326, always_xy=True)
    for o in result.objects:
        lon, lat = tr.transform(*o.geometry.centroid.coords[0])
        card = html.split(f'<div class="card" id="obj-{o.id}"', 1)[1].split('<div class="card"', 1)[0]
        assert f'<code class="coord">{lat:.6f}, {lon:.6f}</code>' in card
        assert len(re.findall(r"data:image/(?:png|jpeg);base64,", card)) == 4  # before/after x true/SWIR colour
        for key in o.evidence:
            assert f"<th>{key}</th>" in card


def test_chips_are_true_colour_crops_of_the_composites(html):
    """The after true-colour chip of the hangar is brighter than the before chip (planted +0.2)."""
    from PIL import Image

    card = html.split('<div class="card" id="obj-obj-hangar"', 1)[1]
    chips = re.findall(r"data:image/(png|jpeg);base64,([A-Za-z0-9+/=]+)", card)[:2]
    assert [mime for mime, _ in chips] == ["jpeg", "jpeg"]  # opaque chips are JPEG (small, fast)
    before, after = (np.asarray(Image.open(io.BytesIO(base64.b64decode(p))).convert("RGB")) for _, p in chips)
    assert before.shape == after.shape == (40, 40, 3)  # twice the 20 px object, centred on it
    inner = (slice(10, 30), slice(10, 30))
    assert after[inner].mean() > before[inner].mean() + 40
    # unchanged surroundings look the same: JPEG codes 8 x 8 blocks apart, without chroma subsampling
    np.testing.assert_array_equal(after[:8], before[:8])
    assert "first_seen: 2024-03-10<br>runs_seen: 3<" in card  # nested evidence is shown as key: value lines


def test_table_rows_carry_sort_keys(html):
    rows = re.findall(r'<tr data-id="([^"]+)" data-class="([^"]+)" data-code="\d" data-confidence="([0-9.]+)"', html)
    assert rows == [("obj-runway", "runway_repair", "0.9100"), ("obj-hangar", "new_structure", "0.6200")]


def test_hostile_text_is_escaped(hostile):
    text = hostile.read_text(encoding="utf-8")
    for raw in (HOSTILE_NAME, HOSTILE_FEATURE, HOSTILE_NOTE, "<img src=x"):
        assert raw not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert text.count("<script>") == 2  # our error hook and our sorter, nothing else


def test_timeline_from_series_and_history(result):
    from PIL import Image

    page = render_report(make_result(series=SERIES), history=HISTORY)
    section = page.split('<section id="timeline">', 1)[1].split("</section>", 1)[0]
    png = base64.b64decode(re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", section).group(1))
    img = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float)
    assert img.shape[0] > 300 and img.std() > 5  # two panels, not blank
    card = page.split('<div class="card" id="obj-obj-runway"', 1)[1].split('<div class="card"', 1)[0]
    assert "<h4>History</h4>" in card and "candidate" in card and "2024-05-20" in card
    assert '<section id="timeline">' not in render_report(result)


def test_unreadable_series_is_reported_not_fatal():
    page = render_report(make_result(series={"weird": "not a series"}))
    assert "Skipped: weird" in page


def test_report_is_deterministic(result):
    assert render_report(result, history=HISTORY) == render_report(result, history=HISTORY)


# -------------------------------------------------------------------------- real browser


@pytest.mark.needs_browser
def test_browser_detector_catches_requests_and_errors(tmp_path):
    """Positive control: a page that fetches from the internet and throws is caught by the checks."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><body><img src="https://example.com/x.png"><script>undefinedFn();</script></body></html>')
    res = run_browser(page.as_uri(), tmp_path, mode="dom")
    assert res["requests"] == ["https://example.com/x.png"]
    assert any("undefinedFn" in line for line in res["console"])


@pytest.mark.needs_browser
def test_report_error_hook_reports_into_dom(written, tmp_path):
    """Positive control for the window.onerror hook: an error thrown in the report shows up in the DOM."""
    broken = tmp_path / "broken.html"
    text = written[0]["report.html"].read_text(encoding="utf-8")
    broken.write_text(text.replace("</body>", "<script>undefinedFn();</script></body>"), encoding="utf-8")
    dom = run_browser(broken.as_uri(), tmp_path, mode="dom")["dom"]
    assert re.search(r"<html[^>]*data-js-error", dom) and 'id="js-errors"' in dom and "undefinedFn" in dom


@pytest.mark.needs_browser
def test_report_renders_offline_without_errors(written, tmp_path):
    res = run_browser(written[0]["report.html"].as_uri(), tmp_path, mode="dom")
    assert res["returncode"] == 0, res["stderr"][-2000:]
    dom = res["dom"]
    assert 'data-ready="1"' in dom, "the page's script did not run to the end"
    assert not re.search(r"<html[^>]*data-js-error", dom) and 'id="js-errors"' not in dom
    assert res["console"] == []
    assert res["requests"] == []
    for u in _attr_urls(dom):
        assert not u.lower().startswith(("http:", "https:", "//")), u


@pytest.mark.needs_browser
def test_report_screenshot_is_not_blank(written, tmp_path):
    from PIL import Image

    res = run_browser(written[0]["report.html"].as_uri(), tmp_path, mode="screenshot")
    assert res["png"] is not None, res["stderr"][-2000:]
    img = np.asarray(Image.open(res["png"]).convert("RGB"), dtype=np.int16)
    assert img.shape[0] >= 1000 and img.std() > 20
    # the runway-repair outline/fill colour (230, 25, 75) is on screen: SVG overlays rendered
    close = (np.abs(img - np.array([230, 25, 75])).sum(axis=2) < 30).sum()
    assert close > 50
    assert res["requests"] == []


@pytest.mark.needs_browser
def test_table_sorts_by_class_in_browser(written, tmp_path):
    res = run_browser(written[0]["report.html"].as_uri() + "#sort=class", tmp_path, mode="dom")
    order = re.findall(r'<tr data-id="([^"]+)"', res["dom"])
    assert order == ["obj-hangar", "obj-runway"]  # new_structure < runway_repair; default is by confidence
    assert 'data-sort="class"' in res["dom"]


@pytest.mark.needs_browser
def test_hostile_aoi_name_renders_as_text(hostile, tmp_path):
    res = run_browser(hostile.as_uri(), tmp_path, mode="dom")
    dom = res["dom"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom  # shown as text in the title/header
    assert dom.count("<script>") == 2
    assert '<img src="x"' not in dom and "onerror=alert" not in dom.replace("onerror=alert(2)&gt;", "")
    assert 'data-ready="1"' in dom and res["console"] == []


def test_detail_cards_are_capped(monkeypatch, result):
    import pipeline.outputs.report as report

    monkeypatch.setattr(report, "MAX_CARDS", 1)
    page = render_report(result)
    assert page.count('<div class="card"') == 1 and 'id="obj-obj-runway"' in page  # the most confident one
    assert "1 more object(s)" in page and page.count("<tr data-id=") == 2
