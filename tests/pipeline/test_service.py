"""Stopping the pipeline: no new batch is taken, and a batch still in hand after the stop's bound is abandoned
unacknowledged, so it is read again."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from adstack.core.db import make_session_factory
from adstack.core.settings import Settings
from adstack.pipeline.log import LocalLog
from adstack.pipeline.service import CONSUMER_NAMES, Pipeline

# The bound of these tests' stops, shorter than the product's: what a stop abandons after it is the same.
STOP_SECONDS = 0.5


class Stuck:
    """A consumer whose batch takes longer than any stop may wait."""

    name = "billing"

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def apply(self, records: list[dict[str, Any]]) -> None:
        self.started.set()
        self.release.wait(60)


def test_a_stop_abandons_a_batch_it_cannot_wait_for_and_the_batch_is_read_again(
        settings: Settings, db: Engine, tmp_path: Path) -> None:
    log = LocalLog(tmp_path / "log", CONSUMER_NAMES)
    pipeline = Pipeline(settings, make_session_factory(db), log_=log, stop_seconds=STOP_SECONDS)
    stuck = Stuck()
    pipeline.consumers = [stuck]
    pipeline._locks = {stuck.name: threading.Lock()}
    try:
        pipeline.append_many([{"id": "invalid:1", "k": "invalid", "ts": 1_700_000_000_000}])
        assert pipeline.start()
        assert stuck.started.wait(10)
        started = time.monotonic()
        pipeline.stop()
        assert time.monotonic() - started < STOP_SECONDS + 1
        again = LocalLog(tmp_path / "log", CONSUMER_NAMES)
        try:
            assert [r["id"] for r in again.read("billing", 10).records] == ["invalid:1"]
        finally:
            again.close()
    finally:
        stuck.release.set()
        pipeline.close()
