"""The one retry policy of every imagery source.

Only temporary failures are retried: HTTP 429 (waiting as long as the server's ``Retry-After``
asks), HTTP 5xx and connection errors, with exponential backoff and a bound. The policy is a
value; each transport gets it translated here, in one place:

* the sentinelhub client (:meth:`RetryPolicy.apply_to_shconfig`: ``max_download_attempts``,
  ``download_sleep_time``, ``max_retries`` for 429),
* GDAL's HTTP reads of COGs (:meth:`RetryPolicy.gdal_options`: ``GDAL_HTTP_MAX_RETRY``,
  ``GDAL_HTTP_RETRY_DELAY``),
* pystac-client's ``requests`` session (:meth:`RetryPolicy.urllib3_retry`),
* any other call (:func:`call_with_retry`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

log = logging.getLogger(__name__)

__all__ = ["RetryPolicy", "DEFAULT_RETRY", "call_with_retry"]

T = TypeVar("T")

TEMPORARY_STATUS = (429, 500, 502, 503, 504)
"""HTTP status codes worth retrying."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently temporary errors are retried.

    Attributes
    ----------
    attempts : int
        Total attempts for 5xx / connection errors (1 = no retry).
    backoff_s : float
        Sleep before the first retry, seconds; multiplied by ``factor`` each time.
    factor : float
        Backoff growth factor.
    max_sleep_s : float
        Upper bound of one sleep, seconds.
    max_429 : int
        Attempts of one request that keeps answering 429 before giving up (then QuotaError).
    """

    attempts: int = 4
    backoff_s: float = 2.0
    factor: float = 3.0
    max_sleep_s: float = 60.0
    max_429: int = 10

    def __post_init__(self):
        if self.attempts < 1 or self.max_429 < 1:
            raise ValueError(f"attempts and max_429 must be >= 1, got {self.attempts}, {self.max_429}")
        if self.backoff_s < 0 or self.factor < 1 or self.max_sleep_s < 0:
            raise ValueError("backoff_s and max_sleep_s must be >= 0 and factor >= 1")

    def sleeps(self) -> list[float]:
        """The sleeps between attempts, seconds (``attempts - 1`` values)."""
        return [min(self.backoff_s * self.factor**k, self.max_sleep_s) for k in range(self.attempts - 1)]

    def apply_to_shconfig(self, config) -> None:
        """Write this policy into a ``sentinelhub.SHConfig`` (modified in place)."""
        config.max_download_attempts = self.attempts
        config.download_sleep_time = self.backoff_s
        config.max_retries = self.max_429

    def gdal_options(self) -> dict[str, str]:
        """GDAL configuration options for HTTP retries of ``/vsicurl/`` reads."""
        return {
            "GDAL_HTTP_MAX_RETRY": str(self.attempts - 1),
            "GDAL_HTTP_RETRY_DELAY": f"{self.backoff_s:g}",
            "GDAL_HTTP_RETRY_CODES": ",".join(str(c) for c in TEMPORARY_STATUS),
        }

    def urllib3_retry(self):
        """A ``urllib3.Retry`` for ``requests`` sessions (pystac-client)."""
        from urllib3.util.retry import Retry

        return Retry(
            total=max(self.attempts - 1, 0) + self.max_429,
            connect=self.attempts - 1,
            read=self.attempts - 1,
            status=self.attempts - 1,
            backoff_factor=self.backoff_s / 2.0 if self.backoff_s else 0.0,
            backoff_max=self.max_sleep_s,
            status_forcelist=TEMPORARY_STATUS,
            allowed_methods=None,
            respect_retry_after_header=True,
            raise_on_status=False,
        )


DEFAULT_RETRY = RetryPolicy()


def call_with_retry(
    fn: Callable[[], T], *, policy: RetryPolicy = DEFAULT_RETRY, is_temporary: Callable[[BaseException], bool], what: str = "call"
) -> T:
    """Call ``fn()``; retry it per ``policy`` while it raises an exception ``is_temporary`` accepts.

    The last exception propagates unchanged after ``policy.attempts`` attempts.
    """
    sleeps = policy.sleeps()
    for attempt in range(policy.attempts):
        try:
            return fn()
        except Exception as exc:
            if attempt >= len(sleeps) or not is_temporary(exc):
                raise
            log.info("%s failed (%s); retry %d/%d in %.2f s", what, type(exc).__name__, attempt + 1, len(sleeps), sleeps[attempt])
            time.sleep(sleeps[attempt])
    raise AssertionError("unreachable")
