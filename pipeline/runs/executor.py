"""Where the per-AOI tasks of a run execute: in this process (``serial``) or on dask.distributed.

Both executors take a picklable, importable function and a list of items and return one result
per item, in order. A task that raises (or whose worker dies) yields the exception object in its
slot instead of breaking the other tasks. dask is an optional extra, imported only here and only
when the ``dask`` executor is chosen.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Protocol, Sequence

from ..errors import MissingOptionalDependency, UsageError

log = logging.getLogger(__name__)

__all__ = ["Executor", "SerialExecutor", "DaskExecutor", "EXECUTORS", "get_executor"]


class Executor(Protocol):
    name: str

    def map(self, fn: Callable[..., Any], items: Sequence[Any], *args: Any) -> list[Any]:
        """``[fn(item, *args) for item in items]``, an exception object in place of a failed call."""
        ...

    def close(self) -> None:
        ...


class SerialExecutor:
    """Run tasks one after another in this process."""

    name = "serial"

    def map(self, fn, items, *args):
        out = []
        for item in items:
            try:
                out.append(fn(item, *args))
            except Exception as exc:  # one failed AOI must not stop the others
                log.error("task %r failed: %s", item, exc, exc_info=True)
                out.append(exc)
        return out

    def as_completed(self, fn, items, *args):
        """Yield ``(item, fn(item, *args))`` as each finishes (here: in order), an exception
        object in place of a failed result; only one result is held at a time."""
        for item in items:
            try:
                yield item, fn(item, *args)
            except Exception as exc:
                log.error("task %r failed: %s", item, exc, exc_info=True)
                yield item, exc

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _import_distributed():
    try:
        import distributed
    except ImportError as exc:
        raise MissingOptionalDependency(
            "the dask executor needs dask.distributed: pip install 's2watch[dask]'"
        ) from exc
    # distributed installs its own stderr handler at import; route its records through the
    # handlers the CLI configured instead (plain or JSON lines), warnings only unless debugging
    dlog = logging.getLogger("distributed")
    for h in list(dlog.handlers):
        dlog.removeHandler(h)
    dlog.propagate = True
    if not logging.getLogger("pipeline").isEnabledFor(logging.DEBUG):
        dlog.setLevel(logging.WARNING)
    return distributed


class DaskExecutor:
    """Run tasks on a dask.distributed cluster, one task per item.

    Parameters
    ----------
    scheduler : str or None
        ``tcp://HOST:PORT`` of a running scheduler; None starts a LocalCluster of ``n_workers``
        single-threaded worker processes (closed again by :meth:`close`).
    n_workers : int
        LocalCluster size.
    timeout : float
        Seconds to wait for the scheduler to answer.

    Raises
    ------
    MissingOptionalDependency
        When dask.distributed is not installed.
    UsageError
        When the scheduler cannot be reached.
    """

    name = "dask"

    def __init__(self, *, scheduler: str | None = None, n_workers: int = 2, timeout: float = 30.0):
        distributed = _import_distributed()
        self._cluster = None
        try:
            if scheduler is None:
                self._cluster = distributed.LocalCluster(
                    n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                    dashboard_address=None, scheduler_kwargs={"dashboard": False}, silence_logs=logging.WARNING,
                )
                self.client = distributed.Client(self._cluster, timeout=timeout)
            else:
                self.client = distributed.Client(scheduler, timeout=timeout)
        except OSError as exc:
            if self._cluster is not None:
                self._cluster.close()
            raise UsageError(f"cannot reach the dask scheduler {scheduler}: {exc}; check --scheduler") from exc
        log.info("dask executor: %s", self.client.scheduler.address if scheduler is None else scheduler)

    def _submit(self, fn, items: list, args: tuple) -> list:
        return self.client.map(fn, items, *[[a] * len(items) for a in args], pure=False)

    def map(self, fn, items, *args):
        if not items:
            return []
        futures = self._submit(fn, list(items), args)
        out = []
        for item, fut in zip(items, futures):
            try:
                out.append(fut.result())
            except Exception as exc:  # task error or a worker that died
                log.error("task %r failed on the cluster: %s", item, exc)
                out.append(exc)
        return out

    def as_completed(self, fn, items, *args):
        """Yield ``(item, result)`` in the order tasks finish on the cluster, each result fetched
        and released in turn (a large AOI's tiles are not all held at once)."""
        from distributed import as_completed

        items = list(items)
        if not items:
            return
        futures = self._submit(fn, items, args)
        index = {f.key: i for i, f in enumerate(futures)}
        for fut in as_completed(futures):
            item = items[index[fut.key]]
            try:
                yield item, fut.result()
            except Exception as exc:  # task error or a worker that died
                log.error("task %r failed on the cluster: %s", item, exc)
                yield item, exc
            fut.release()

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


EXECUTORS: dict[str, Callable[..., Executor]] = {"serial": SerialExecutor, "dask": DaskExecutor}
"""Executors by name."""


def get_executor(name: str = "serial", **options: Any) -> Executor:
    """Build the executor called ``name`` (``scheduler=`` and ``n_workers=`` go to dask).

    Raises
    ------
    UsageError
        For an unknown name, listing the valid ones.
    """
    try:
        factory = EXECUTORS[name]
    except KeyError:
        raise UsageError(f"unknown executor {name!r}; use one of {', '.join(EXECUTORS)}") from None
    if name == "serial":
        if options.get("scheduler"):
            raise UsageError("--scheduler needs --executor dask")
        return factory()
    return factory(**options)
