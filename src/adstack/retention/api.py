"""Installs the retention worker where the pipeline's consumers run (see service.py), and its figures on
`GET /metrics`; no routes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from adstack.retention.service import RetentionWorker


def install(app: FastAPI) -> None:
    worker = RetentionWorker(app.state.session_factory, app.state.settings)
    app.state.retention = worker
    if app.state.settings.environment != "test":  # tests prune when they mean to
        app.state.pipeline.on_start.append(worker.start)

    def figures() -> Iterator[Any]:
        removed = CounterMetricFamily("adstack_retention_removed", "Rows removed past their retention by this "
                                      "process, by table.", labels=["table"])
        for table, count in worker.removed.items():
            removed.add_metric([table], count)
        yield removed
        if worker.last_run_at is not None:
            yield GaugeMetricFamily("adstack_retention_last_run_timestamp_seconds", "When this process last "
                                    "pruned (Unix time).", value=worker.last_run_at.timestamp())

    app.state.pipeline.metrics.watch(figures)

    def stop(app: FastAPI) -> None:
        worker.stop()

    app.state.on_shutdown.append(stop)
