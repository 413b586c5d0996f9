"""Progress reporting for runs: a rich progress bar on a terminal, plain log lines otherwise.

``cli/main.py`` configures the handlers (plain text or ``--log-json``). Under cron stderr is not a
terminal, so progress becomes ordinary INFO records (``stage``/``aoi`` attributes included, which
the JSON formatter emits as fields) and nothing depends on ``TERM``, ``HOME`` or the locale.
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from typing import Iterator

__all__ = ["interactive", "progress"]


def interactive() -> bool:
    """True when progress bars make sense: stderr is a terminal, ``TERM`` is not ``dumb`` and no
    handler writes JSON."""
    try:
        tty = sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
    if not tty or os.environ.get("TERM", "dumb") == "dumb":
        return False
    for h in logging.getLogger().handlers:
        if type(h.formatter).__name__ == "_JsonFormatter":
            return False
    return True


class _Reporter:
    def __init__(self, log: logging.Logger, description: str, total: int, aoi: str | None, bar):
        self.log, self.description, self.total, self.aoi, self.bar = log, description, total, aoi, bar
        self.done = 0
        self._task = bar.add_task(description, total=total) if bar is not None else None

    def advance(self, what: str = "", *, stage: str = "") -> None:
        """One step done (``what`` says which)."""
        self.done += 1
        if self.bar is not None:
            self.bar.update(self._task, advance=1, description=f"{self.description} {what}".strip())
        extra = {"stage": stage or self.description}
        if self.aoi:
            extra["aoi"] = self.aoi
        level = logging.DEBUG if self.bar is not None else logging.INFO
        self.log.log(level, "%s %d/%d %s", self.description, self.done, self.total, what, extra=extra)


@contextmanager
def progress(log: logging.Logger, description: str, total: int, *, aoi: str | None = None) -> Iterator[_Reporter]:
    """Report ``total`` steps: a rich bar when :func:`interactive`, else one log line per step.

    Examples
    --------
    >>> with progress(log, "acquisitions", 3, aoi="tartus-port") as p:   # doctest: +SKIP
    ...     for a in acqs:
    ...         work(a); p.advance(a.id)
    """
    bar = None
    if interactive() and log.isEnabledFor(logging.INFO) and total > 1:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True)
    if bar is None:
        yield _Reporter(log, description, total, aoi, None)
        return
    with bar:
        yield _Reporter(log, description, total, aoi, bar)
