"""Webhook alerts against a real HTTP server on 127.0.0.1: formats, retries, bounded failure."""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipeline.runs.notify import build_payload, is_slack_url, notify

pytestmark = pytest.mark.network_local

SUMMARY = {
    "aoi": "tartus-naval-facility",
    "aoi_name": "Tartus naval facility",
    "run_id": "20250101T000000Z-1",
    "changes": [
        {"id": "tartus-naval-facility-abc", "class": "new_structure", "status": "confirmed", "confidence": 0.9,
         "area_m2": 1200.0, "feature": "quay 1", "first_seen": "2024-09-11", "last_seen": "2024-09-16",
         "lon": 35.87, "lat": 34.91},
    ],
}


class _Server:
    """Answers POSTs with the scripted status codes (then 200), recording every body."""

    def __init__(self, codes=(), delay=0.0):
        self.codes = list(codes)
        self.delay = delay
        self.bodies: list[dict] = []
        self.paths: list[str] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                outer.bodies.append(json.loads(self.rfile.read(n)))
                outer.paths.append(self.path)
                if outer.delay:
                    time.sleep(outer.delay)
                code = outer.codes.pop(0) if outer.codes else 200
                self.send_response(code)
                if code == 429:
                    self.send_header("Retry-After", "0.05")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hooks/SECRETTOKEN12345"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_generic_json_is_posted():
    with _Server() as srv:
        assert notify(srv.url, SUMMARY, retries=0) is True
    assert srv.bodies == [{"event": "s2watch.new_confirmed_change", **SUMMARY}]


def test_slack_format_on_request_and_for_slack_urls():
    with _Server() as srv:
        assert notify(srv.url, SUMMARY, fmt="slack", retries=0)
    body = srv.bodies[0]
    assert set(body) == {"text", "blocks"}
    assert "1 new confirmed change(s) at Tartus naval facility" in body["text"]
    assert "new_structure on quay 1" in body["text"]
    assert is_slack_url("https://hooks.slack.com/services/T/B/X")
    assert not is_slack_url("http://127.0.0.1:9/hooks/x")
    assert "text" in build_payload(SUMMARY, url="https://hooks.slack.com/services/T/B/X")
    with pytest.raises(ValueError, match="unknown notify format 'xml'; use auto or one of json, slack"):
        build_payload(SUMMARY, fmt="xml")


def test_server_errors_are_retried_with_backoff_then_succeed():
    with _Server(codes=[500, 429, 503]) as srv:
        t0 = time.monotonic()
        assert notify(srv.url, SUMMARY, retries=3, backoff_s=0.05) is True
        took = time.monotonic() - t0
    assert len(srv.bodies) == 4
    assert took >= 0.05 + 0.05 + 0.2 - 0.01  # backoffs 0.05, Retry-After 0.05, 0.2


def test_client_errors_are_not_retried_and_token_never_logged(caplog):
    caplog.set_level(logging.DEBUG, logger="pipeline")
    with _Server(codes=[404]) as srv:
        assert notify(srv.url, SUMMARY, retries=3, backoff_s=0.01) is False
    assert len(srv.bodies) == 1
    assert "HTTP 404" in caplog.text and "SECRETTOKEN12345" not in caplog.text


def test_unreachable_or_slow_targets_fail_within_the_bound(caplog):
    caplog.set_level(logging.INFO, logger="pipeline")
    with _Server(delay=2.0) as srv:
        t0 = time.monotonic()
        assert notify(srv.url, SUMMARY, timeout_s=0.2, retries=1, backoff_s=0.05) is False
        assert time.monotonic() - t0 < 1.5
    # a port nobody listens on: connection refused, retried, then given up
    with _Server() as srv:
        dead = srv.url
    t0 = time.monotonic()
    assert notify(dead, SUMMARY, timeout_s=0.5, retries=2, backoff_s=0.01) is False
    assert time.monotonic() - t0 < 2.0
    assert "failed after 3 attempt(s)" in caplog.text and "the run goes on" in caplog.text
    assert "SECRETTOKEN12345" not in caplog.text
