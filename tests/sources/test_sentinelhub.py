"""SentinelHubSource driven through the real sentinelhub client against the local imitation of
the Sentinel Hub services (tests/sources/_fakes.py: OAuth, Catalog with pagination, Process API
rendering the planted scenes, injected 429/500/401/403/corrupt/dropped answers)."""

from __future__ import annotations

import math
import time
from datetime import date

import numpy as np
import pytest
from sentinelhub import SHConfig

from pipeline.errors import AuthenticationError, ConfigError, DataError, PipelineError, QuotaError, SourceUnavailable, UsageError
from pipeline.scene import ALL_BANDS, BANDS_10M
from pipeline.sources import get_source
from pipeline.sources._retry import RetryPolicy
from pipeline.sources.sentinelhub import CDSE_BASE_URL, CDSE_TOKEN_URL, SentinelHubSource, estimate_request_pu

from ._fakes import TOKEN_PATH, _inside, truth_dn, truth_scl

FAST = RetryPolicy(attempts=3, backoff_s=0.01, factor=2.0, max_429=4)
START, END = date(2022, 1, 1), date(2022, 2, 28)


def sh_config(srv, secret="fake-secret"):
    return SHConfig(
        use_defaults=True, sh_client_id="fake-id", sh_client_secret=secret, sh_base_url=srv.url, sh_token_url=srv.url + TOKEN_PATH
    )


def make_source(srv, tmp_path, *, secret="fake-secret", cache="cache", **kw):
    kw.setdefault("retry", FAST)
    return SentinelHubSource("sentinelhub", config=sh_config(srv, secret), cache_dir=tmp_path / cache, **kw)


def n_process(srv):
    return srv.count("/api/v1/process")


# ------------------------------------------------------------------------------------------------
# search


def test_search_paginates_and_groups_by_solar_day(sh_server, tmp_path, tartus, tobruk):
    src = make_source(sh_server, tmp_path, page_size=1)
    acqs = src.search(tartus, START, END)
    assert [a.date for a in acqs] == [date(2022, 1, 20), date(2022, 1, 30)]
    assert [a.platform for a in acqs] == ["sentinel-2a", "sentinel-2b"]
    assert all(a.offset == 0 and a.level == "L2A" and a.source == "sentinelhub" for a in acqs)
    bodies = sh_server.catalog_bodies
    assert len(bodies) == 2 and bodies[0].get("next") is None and bodies[1]["next"] == 1
    assert bodies[0]["collections"] == ["sentinel-2-l2a"]
    lo0, la0, lo1, la1 = bodies[0]["bbox"]
    b = tartus.geometry.bounds
    assert lo0 <= b[0] and la0 <= b[1] and lo1 >= b[2] and la1 >= b[3]
    # Tobruk: one pass, two tiles in two UTM zones -> one acquisition
    (acq,) = src.search(tobruk, date(2023, 5, 1), date(2023, 5, 31))
    assert acq.id.count("+") == 1 and acq.date == date(2023, 5, 10)
    assert acq.extra["epsg"] == [32634, 32635]


def test_search_max_cloud_and_empty(sh_server, tmp_path, tartus, caplog):
    src = make_source(sh_server, tmp_path)
    acqs = src.search(tartus, START, END, max_cloud=5)
    assert [a.date for a in acqs] == [date(2022, 1, 20)]
    assert sh_server.catalog_bodies[-1]["filter"] == "eo:cloud_cover < 5"
    with caplog.at_level("WARNING", logger="pipeline"):
        assert src.search(tartus, START, END, max_cloud=1) == []  # all too cloudy
        assert src.search(tartus, date(2020, 1, 1), date(2020, 2, 1)) == []
    assert "no Sentinel-2 L2A acquisitions over AOI tartus-naval-facility" in caplog.text
    assert "cloud cover below 1" in caplog.text


# ------------------------------------------------------------------------------------------------
# read


def test_read_planted_scene_harmonised(sh_server, tmp_path, tartus, archive):
    src = make_source(sh_server, tmp_path)
    acqs = src.search(tartus, START, END)
    stack = src.read(tartus, acqs)
    g = tartus.grid()
    assert stack.grid == g and stack.data.shape == (2, 10, *g.shape) and stack.valid.all()
    assert [a.offset for a in stack.acquisitions] == [0, 0]
    truth = archive["truth"]["tartus"]
    rows, cols = np.indices(g.shape)
    lon, lat = g.lonlat(rows, cols)
    for t in range(2):
        for b in BANDS_10M:
            want = truth_dn(truth, b, lon, lat)
            assert np.abs(stack.data[t, stack.band_index(b)] - want).max() <= 0.5 + 1e-9, (t, b)
    # baseline 04.00 data (files +1000) come back harmonised: the pair agrees within 1 DN
    assert np.abs(stack.data[0].astype(int) - stack.data[1]).max() <= 1
    assert set(np.unique(stack.scl)) == {4, 6, 9}
    # the request on the wire
    body = sh_server.process_bodies[0]
    assert body["input"]["bounds"]["properties"]["crs"].endswith("/32636")
    assert body["input"]["bounds"]["bbox"] == pytest.approx(list(g.bounds))
    assert (body["output"]["width"], body["output"]["height"]) == (g.width, g.height)
    s2, scl = body["input"]["data"]
    assert s2["processing"] == {"upsampling": "BILINEAR", "downsampling": "BILINEAR", "harmonizeValues": True}
    assert scl["processing"]["upsampling"] == "NEAREST"
    assert 'sampleType: "UINT16"' in body["evalscript"] and "units: \"DN\"" in body["evalscript"]
    assert [r["identifier"] for r in body["output"]["responses"]] == ["bands", "scl", "dataMask"]
    assert n_process(sh_server) == 2  # one request per acquisition day


def test_tiled_read_equals_untiled(sh_server, tmp_path, tartus):
    whole = make_source(sh_server, tmp_path, cache="c1")
    acqs = whole.search(tartus, START, END)
    ref = whole.read(tartus, acqs)
    n0 = n_process(sh_server)
    tiled = make_source(sh_server, tmp_path, cache="c2", max_px=64)
    st = tiled.read(tartus, acqs)
    g = tartus.grid()
    n_tiles = math.ceil(g.width / 64) * math.ceil(g.height / 64)
    assert n_process(sh_server) - n0 == 2 * n_tiles
    assert all(b["output"]["width"] <= 64 and b["output"]["height"] <= 64 for b in sh_server.process_bodies[n0:])
    assert np.array_equal(st.data, ref.data) and np.array_equal(st.scl, ref.scl) and np.array_equal(st.valid, ref.valid)


def test_pu_estimate_dry_run_and_budget(sh_server, tmp_path, tartus, caplog):
    src = make_source(sh_server, tmp_path)
    acqs = src.search(tartus, START, END)
    h, w = tartus.grid().shape
    want = 2 * max(w * h / (512 * 512), 0.01) * (10 + 1) / 3  # ten bands + SCL, dataMask free
    assert src.estimate_pu(tartus, acqs) == pytest.approx(want)
    assert estimate_request_pu(10, 10, 3) == pytest.approx(0.01)  # minimum area factor
    assert estimate_request_pu(10, 10, 1) == pytest.approx(0.005)  # minimum per request
    assert estimate_request_pu(512, 512, 3, bytes_per_sample=4) == pytest.approx(2.0)

    dry = make_source(sh_server, tmp_path, dry_run=True)
    with caplog.at_level("WARNING", logger="pipeline"):
        assert dry.search(tartus, START, END) == acqs
    assert f"would cost about {want:.3f} PU (2 requests)" in caplog.text
    with pytest.raises(UsageError, match=rf"dry run: reading would take 2 Process requests, about {want:.3f} PU"):
        dry.read(tartus, acqs)
    assert n_process(sh_server) == 0
    assert dry.last_pu_estimate == pytest.approx(want)

    poor = make_source(sh_server, tmp_path, max_pu=0.1)
    with pytest.raises(QuotaError, match=rf"estimated {want:.3f} PU for 2 requests exceeds the budget max_pu=0.1"):
        poor.read(tartus, acqs)
    assert n_process(sh_server) == 0
    # a rerun from a warm cache costs nothing and fits any budget
    make_source(sh_server, tmp_path).read(tartus, acqs)
    assert make_source(sh_server, tmp_path, max_pu=0.0).read(tartus, acqs).valid.all()


def test_cache_rerun_costs_nothing_and_stores_no_secret(sh_server, tmp_path, tartus):
    src = make_source(sh_server, tmp_path)
    acqs = src.search(tartus, START, END)
    first = src.read(tartus, acqs)
    n = len(sh_server.requests)
    again = make_source(sh_server, tmp_path).read(tartus, acqs)
    assert len(sh_server.requests) == n  # not even a token request
    assert np.array_equal(first.data, again.data)
    blobs = b"".join(p.read_bytes() for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert blobs
    for secret in [*sh_server.tokens, "fake-secret"]:
        assert secret.encode() not in blobs


def test_429_honours_retry_after_ms(sh_server, tmp_path, tartus):
    src = make_source(sh_server, tmp_path, max_threads=1)
    acqs = src.search(tartus, START, END)
    sh_server.faults = [("429", 400)]
    t0 = time.perf_counter()
    st = src.read(tartus, acqs)
    assert time.perf_counter() - t0 >= 0.4
    assert st.valid.all() and n_process(sh_server) == 3 and src.rate_limited == 1


def test_429_forever_is_a_quota_error(sh_server, tmp_path, tartus):
    src = make_source(sh_server, tmp_path, max_threads=1)
    acqs = src.search(tartus, START, END)[:1]
    sh_server.faults = [("429", 5)] * 10
    with pytest.raises(QuotaError, match="rate limit"):
        src.read(tartus, acqs)
    assert n_process(sh_server) == FAST.max_429


def test_5xx_and_dropped_connections_are_retried(sh_server, tmp_path, tartus):
    src = make_source(sh_server, tmp_path, max_threads=1)
    acqs = src.search(tartus, START, END)
    sh_server.faults = [("500",), ("drop",)]
    assert src.read(tartus, acqs).valid.all()
    assert n_process(sh_server) == 4


def test_server_keeps_failing_then_rerun_completes(sh_server, tmp_path, tartus):
    src = make_source(sh_server, tmp_path, max_threads=1)
    acqs = src.search(tartus, START, END)
    sh_server.faults = [("500",)] * FAST.attempts  # the first day fails every attempt
    with pytest.raises(SourceUnavailable, match="rerun later") as ei:
        src.read(tartus, acqs)
    assert "\n" not in str(ei.value)
    assert len(src.cache.entries()) == 1  # the second day finished and is kept
    assert not list((tmp_path / "cache").rglob(".tmp-*"))
    n = n_process(sh_server)
    assert make_source(sh_server, tmp_path).read(tartus, acqs).valid.all()
    assert n_process(sh_server) - n == 1  # only the missing day is fetched


def test_server_down_mid_run(sh_server, tmp_path, tartus):
    src = make_source(sh_server, tmp_path)
    acqs = src.search(tartus, START, END)
    port = sh_server._port
    sh_server.stop()
    with pytest.raises(SourceUnavailable, match="service unavailable"):
        src.read(tartus, acqs)
    assert src.cache.entries() == []
    sh_server._port = port
    sh_server.start()
    assert src.read(tartus, acqs).valid.all()


def test_corrupt_response_nothing_cached_then_rerun(sh_server, tmp_path, tartus):
    clean = make_source(sh_server, tmp_path, cache="clean")
    acqs = clean.search(tartus, START, END)
    ref = clean.read(tartus, acqs)
    src = make_source(sh_server, tmp_path, max_threads=1)
    sh_server.faults = [("corrupt",)]
    with pytest.raises(DataError, match="corrupt or truncated; nothing was cached|is corrupt or truncated"):
        src.read(tartus, acqs)
    assert len(src.cache.entries()) == 1
    st = make_source(sh_server, tmp_path).read(tartus, acqs)
    assert np.array_equal(st.data, ref.data)


def test_bad_secret_is_one_clear_line_without_secret(sh_server, tmp_path, tartus, caplog):
    src = make_source(sh_server, tmp_path, secret="WRONG-very-secret")
    with caplog.at_level("DEBUG", logger="pipeline"), pytest.raises(AuthenticationError) as ei:
        src.search(tartus, START, END)
    msg = str(ei.value)
    assert "credentials rejected" in msg and "invalid_client" in msg and "\n" not in msg
    assert "WRONG-very-secret" not in msg and "WRONG-very-secret" not in caplog.text
    assert "WRONG-very-secret" not in repr(src) and "WRONG-very-secret" not in repr(src.config)
    assert isinstance(ei.value, PipelineError)
    from pipeline.cli.main import exit_code_for

    assert exit_code_for(ei.value) != 0


def test_401_on_process_gets_a_new_token_once(sh_server, tmp_path, tartus):
    src = make_source(sh_server, tmp_path, max_threads=1)
    acqs = src.search(tartus, START, END)
    n_tok = sh_server.n_token
    sh_server.faults = [("401",)]
    assert src.read(tartus, acqs).valid.all()
    assert sh_server.n_token == n_tok + 1


def test_401_persisting_and_403_quota(sh_server, tmp_path, tartus):
    src = make_source(sh_server, tmp_path, max_threads=1)
    acqs = src.search(tartus, START, END)[:1]
    sh_server.faults = [("401",), ("401",)]
    with pytest.raises(AuthenticationError, match="HTTP 401"):
        src.read(tartus, acqs)
    sh_server.faults = [("403",)]
    with pytest.raises(QuotaError, match="quota exhausted"):
        src.read(tartus, acqs)


def test_token_rate_limited_is_quota_error(sh_server, tmp_path, tartus):
    sh_server.token_faults = [429]
    with pytest.raises(QuotaError):
        make_source(sh_server, tmp_path).search(tartus, START, END)


def test_cross_zone_aoi_one_seamless_stack(sh_server, tmp_path, tobruk, archive):
    src = make_source(sh_server, tmp_path)
    acqs = src.search(tobruk, date(2023, 5, 1), date(2023, 5, 31))
    st = src.read(tobruk, acqs, bands=("B04", "B11"))
    g = tobruk.grid()
    assert st.grid.epsg == 32634 and st.valid.all()
    rows, cols = np.indices(g.shape)
    lon, lat = g.lonlat(rows, cols)
    truth = archive["truth"]["tobruk"]
    roof = _inside(truth.roof, lon, lat)
    from scipy import ndimage

    ok = ~ndimage.binary_dilation(roof, iterations=3)
    for i, b in enumerate(("B04", "B11")):
        d = np.abs(st.data[0, i] - truth_dn(truth, b, lon, lat))
        assert d[ok].max() <= (1.0 if b == "B04" else 1.5), b  # rounding + bilinear of the 20 m band
    east = lon > 24.01
    assert east.any() and (~east).any()
    want_scl = truth_scl(truth, lon, lat)
    assert (st.scl[0] == want_scl).mean() > 0.99


# ------------------------------------------------------------------------------------------------
# configuration


def test_config_from_env_never_writes_file(sh_env, monkeypatch):
    monkeypatch.setenv("SH_CLIENT_ID", "env-id")
    monkeypatch.setenv("SH_CLIENT_SECRET", "env-secret-123")
    src = get_source("cdse", cache_dir=sh_env / "c")
    assert isinstance(src, SentinelHubSource) and src.service == "cdse"
    assert src.config.sh_base_url == CDSE_BASE_URL and src.config.sh_token_url == CDSE_TOKEN_URL
    assert src.config.sh_client_id == "env-id"
    assert not (sh_env / "xdg").exists()  # SHConfig.load would have created config.toml
    assert "env-secret-123" not in repr(src) and "env-secret-123" not in repr(src.config)
    sh = get_source("sentinelhub", cache_dir=sh_env / "c")
    assert sh.config.sh_base_url == "https://services.sentinel-hub.com"


def test_config_profile_from_file(sh_env):
    cfg_dir = sh_env / "xdg" / "sentinelhub"
    cfg_dir.mkdir(parents=True)
    f = cfg_dir / "config.toml"
    f.write_text('[work]\nsh_client_id = "file-id"\nsh_client_secret = "file-secret"\nsh_base_url = "https://example.invalid"\n')
    before = f.read_bytes()
    src = SentinelHubSource("cdse", config="work", cache_dir=sh_env / "c")
    assert src.config.sh_client_id == "file-id"
    assert src.config.sh_base_url == "https://example.invalid"  # the profile's URL wins over the CDSE default
    assert f.read_bytes() == before
    with pytest.raises(ConfigError, match="no sentinelhub profile 'nope'"):
        SentinelHubSource("sentinelhub", config="nope")


def test_missing_credentials_is_config_error(sh_env, tartus):
    src = SentinelHubSource("sentinelhub", cache_dir=sh_env / "c")
    with pytest.raises(ConfigError, match="SH_CLIENT_ID and SH_CLIENT_SECRET"):
        src.search(tartus, START, END)
    with pytest.raises(ConfigError, match="profile 'x' requested"):
        SentinelHubSource("sentinelhub", config="x")
    assert not (sh_env / "xdg").exists()


def test_full_band_set_and_unknown_band(sh_server, tmp_path, tartus):
    src = make_source(sh_server, tmp_path)
    acqs = src.search(tartus, START, END)
    from pipeline.errors import UsageError

    with pytest.raises(UsageError, match="valid bands are"):
        src.read(tartus, acqs, bands=("B02", "B10"))
    assert src.read(tartus, acqs, bands=ALL_BANDS).bands == ALL_BANDS


def test_rejected_request_and_missing_outputs(sh_server, tmp_path, tartus):
    """A 400 shows the service's message; a response without the SCL output is a DataError and
    nothing is cached; the rerun completes."""
    from pipeline.errors import SourceError

    src = make_source(sh_server, tmp_path, max_threads=1)
    acqs = src.search(tartus, START, END)[:1]
    sh_server.faults = [("400",)]
    with pytest.raises(SourceError, match="request rejected \\(HTTP 400\\): RENDERER_EXCEPTION Failed to evaluate script"):
        src.read(tartus, acqs)
    sh_server.drop_outputs = {"scl"}
    with pytest.raises(DataError, match="lacks output\\(s\\) scl"):
        src.read(tartus, acqs)
    assert src.cache.entries() == []
    sh_server.drop_outputs = set()
    assert src.read(tartus, acqs).valid.all()


def test_tiles_cover_the_grid_exactly_once():
    from affine import Affine
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from pipeline.grid import Grid
    from pipeline.sources.sentinelhub import _tiles

    @settings(max_examples=60, deadline=None)
    @given(st.integers(1, 6000), st.integers(1, 6000), st.integers(100, 2500))
    def check(h, w, max_px):
        g = Grid(32636, Affine(10, 0, 500000, 0, -10, 4000000), w, h)
        tiles = _tiles(g, max_px)
        assert all(1 <= th <= max_px and 1 <= tw <= max_px for _, _, th, tw in tiles)
        rows, cols = sorted({(r, th) for r, _, th, _ in tiles}), sorted({(c, tw) for _, c, _, tw in tiles})
        for spans, n in ((rows, h), (cols, w)):  # contiguous partitions of [0, n)
            assert spans[0][0] == 0 and all(a + la == b for (a, la), (b, _) in zip(spans, spans[1:]))
            assert spans[-1][0] + spans[-1][1] == n
        assert sorted(tiles) == sorted((r, c, th, tw) for r, th in rows for c, tw in cols)  # every pair once
        assert len(tiles) == math.ceil(h / max_px) * math.ceil(w / max_px)

    check()


def test_keyword_credentials_from_the_s2watch_config(sh_server, sh_env, tartus, monkeypatch):
    """``[sources.sentinelhub]`` options (client_id, client_secret, base_url, token_url) reach the
    client and beat the environment; the secret stays out of reprs."""
    monkeypatch.setenv("SH_CLIENT_ID", "env-id")
    monkeypatch.setenv("SH_CLIENT_SECRET", "env-secret")
    src = get_source(
        "sentinelhub", client_id="fake-id", client_secret="fake-secret", base_url=sh_server.url,
        token_url=sh_server.url + TOKEN_PATH, cache_dir=sh_env / "c", retry=FAST,
    )  # fmt: skip
    assert len(src.search(tartus, START, END)) == 2
    assert "fake-secret" not in repr(src) and "fake-secret" not in repr(src.config)
    assert not (sh_env / "xdg").exists()


def test_imitation_single_geotiff_answer_decodes_with_the_client(sh_server, tartus):
    """The imitation's single-output answer is a pixel-interleaved GeoTIFF the real client decodes
    to (H, W, C), like the service's."""
    from sentinelhub import CRS, BBox, DataCollection, MimeType, SentinelHubRequest

    from pipeline.sources.sentinelhub import evalscript

    g = tartus.grid()
    coll = DataCollection.SENTINEL2_L2A.define_from("S2WATCH_SENTINEL2_L2A", service_url=None)
    req = SentinelHubRequest(
        evalscript=evalscript(("B02", "B03", "B04")),
        input_data=[SentinelHubRequest.input_data(coll, time_interval=("2022-01-20", "2022-01-20"), other_args={"id": "s2"})],
        responses=[SentinelHubRequest.output_response("bands", MimeType.TIFF)],
        bbox=BBox(g.bounds, crs=CRS(g.epsg)),
        size=(g.width, g.height),
        config=sh_config(sh_server),
    )
    (arr,) = req.get_data()
    assert arr.shape == (g.height, g.width, 3) and arr.dtype == np.uint16
    assert (np.diff(arr.astype(int), axis=2) == 150).all()  # planted: +150 DN per band index
