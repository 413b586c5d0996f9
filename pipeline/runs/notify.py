"""Webhook alerts for new confirmed change: Slack format or generic JSON, retried, never fatal.

:func:`notify` posts one summary; it returns ``False`` instead of raising when the target keeps
failing (the failure is logged with the URL's secrets masked), and its total time is bounded by
``timeout_s * (retries + 1)`` plus the backoff sleeps (at most ``max_backoff_s`` each).
Retried: connection errors, timeouts, HTTP 429 and 5xx. Not retried: other 4xx (a wrong URL or
token will not heal by itself).
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from typing import Sequence
from urllib.parse import urlsplit

from ..config import mask_url

log = logging.getLogger(__name__)

__all__ = ["notify", "build_payload", "FORMATS", "is_slack_url"]


def is_slack_url(url: str) -> bool:
    """True for Slack incoming-webhook-like URLs (``hooks.slack.com``, ``*.slack.com/services/...``)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return host == "hooks.slack.com" or (host.endswith("slack.com") and parts.path.startswith("/services/"))


def _generic(summary: dict) -> dict:
    return {"event": "s2watch.new_confirmed_change", **summary}


def _slack(summary: dict) -> dict:
    changes = summary.get("changes", [])
    head = f"s2watch: {len(changes)} new confirmed change(s) at {summary.get('aoi_name') or summary.get('aoi')}"
    lines = []
    for c in changes[:20]:
        where = f" on {c['feature']}" if c.get("feature") else ""
        lines.append(
            f"- {c['class']}{where}: {c['area_m2']:.0f} m2, confidence {c['confidence']:.2f}, "
            f"first seen {c.get('first_seen')} ({c['lat']:.5f}, {c['lon']:.5f}) id {c['id']}"
        )
    if len(changes) > 20:
        lines.append(f"... and {len(changes) - 20} more")
    if summary.get("report"):
        lines.append(f"report: {summary['report']}")
    text = head + ("\n" + "\n".join(lines) if lines else "")
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}


FORMATS = {"json": _generic, "slack": _slack}
"""Payload builders by name; ``auto`` picks ``slack`` for Slack-like URLs, else ``json``."""


def build_payload(summary: dict, *, fmt: str = "auto", url: str = "") -> dict:
    """The JSON body posted for ``summary`` (see :func:`pipeline.runs.monitor.alert_summary`)."""
    if fmt == "auto":
        fmt = "slack" if is_slack_url(url) else "json"
    try:
        return FORMATS[fmt](summary)
    except KeyError:
        raise ValueError(f"unknown notify format {fmt!r}; use auto or one of {', '.join(FORMATS)}") from None


def notify(
    url: str,
    summary: dict,
    *,
    fmt: str = "auto",
    timeout_s: float = 5.0,
    retries: int = 3,
    backoff_s: float = 0.5,
    max_backoff_s: float = 8.0,
) -> bool:
    """POST ``summary`` to ``url``; True on a 2xx answer, False after bounded retries.

    Parameters
    ----------
    url : str
        Webhook URL (may hold a token; only its masked form is logged).
    summary : dict
        JSON-able alert summary.
    fmt : {"auto", "slack", "json"}
    timeout_s : float
        Per attempt, seconds.
    retries : int
        Extra attempts after the first.
    backoff_s, max_backoff_s : float
        Sleep ``backoff_s * 2**attempt`` capped at ``max_backoff_s`` between attempts (a 429's
        ``Retry-After`` is honoured within the same cap).
    """
    body = json.dumps(build_payload(summary, fmt=fmt, url=url), default=str).encode("utf-8")
    shown = mask_url(url)
    last = ""
    for attempt in range(retries + 1):
        wait = min(max_backoff_s, backoff_s * (2**attempt))
        req = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json", "User-Agent": "s2watch"}
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                resp.read(1024)
                log.info("alert sent to %s (HTTP %d)", shown, resp.status)
                return True
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
            if exc.code != 429 and exc.code < 500:
                log.warning("alert to %s rejected with HTTP %d; not retrying (check the URL and its token)", shown, exc.code)
                return False
            ra = exc.headers.get("Retry-After") if exc.headers else None
            if ra:
                try:
                    wait = min(max_backoff_s, max(0.0, float(ra)))
                except ValueError:
                    pass
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            last = type(reason).__name__ if not str(reason) else str(reason)
        if attempt < retries:
            log.info("alert to %s failed (%s); retry %d/%d in %.1f s", shown, last, attempt + 1, retries, wait)
            time.sleep(wait)
    log.warning("alert to %s failed after %d attempt(s) (%s); the run goes on", shown, retries + 1, last)
    return False


def notify_all(urls: Sequence[str], summary: dict, **kw) -> dict[str, bool]:
    """:func:`notify` each URL; ``{masked url: delivered}``."""
    return {mask_url(u): notify(u, summary, **kw) for u in urls}
