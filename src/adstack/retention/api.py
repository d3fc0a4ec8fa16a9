"""Installs the retention worker where the pipeline's consumers run (see service.py); no routes."""

from __future__ import annotations

from fastapi import FastAPI

from adstack.retention.service import RetentionWorker


def install(app: FastAPI) -> None:
    worker = RetentionWorker(app.state.session_factory, app.state.settings)
    app.state.retention = worker
    if app.state.settings.environment != "test":  # tests prune when they mean to
        app.state.pipeline.on_start.append(worker.start)

    def stop(app: FastAPI) -> None:
        worker.stop()

    app.state.on_shutdown.append(stop)
