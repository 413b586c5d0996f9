"""Unattended monitoring on top of detection.

- :mod:`~pipeline.runs.monitor`: ``run_monitor`` / ``monitor_aoi`` - new acquisitions only, object
  lifecycle, publishing of ``ROOT/<aoi-id>/`` (semantics in the module docstring);
- :mod:`~pipeline.runs.state`: the SQLite state (schema versioned, migrations);
- :mod:`~pipeline.runs.lock`: the per-AOI ``flock``;
- :mod:`~pipeline.runs.executor`: ``serial`` or ``dask`` executors;
- :mod:`~pipeline.runs.notify`: webhook alerts (Slack or generic JSON);
- :mod:`~pipeline.runs.logs`: progress bars on a terminal, plain lines otherwise.

Nothing is imported here, so ``import pipeline.runs.state`` stays light (dask is never imported
unless the dask executor is chosen).
"""
