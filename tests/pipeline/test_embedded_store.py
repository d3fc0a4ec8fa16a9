"""NATS JetStream with the embedded event store (no ClickHouse server): consumers run only with the data dir whose
store the stream's events load into, so no consumer process with a data dir of its own takes a share of the events
into a store no report reads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from adstack.core.db import make_session_factory
from adstack.core.settings import Settings
from adstack.pipeline.service import EventStoreElsewhere, Pipeline
from tests.pipeline.jetstream_support import NATS_URL, drop_stream, nats_available, unique_stream

pytestmark = pytest.mark.skipif(not nats_available(), reason="no NATS server on 127.0.0.1:4222")


@pytest.fixture
def stream() -> Iterator[str]:
    name = unique_stream()
    yield name
    drop_stream(name)


def _on_nats(settings: Settings, stream: str, data_dir: Path, **more: object) -> Settings:
    return settings.model_copy(update={"data_dir": data_dir, "nats_url": NATS_URL, "nats_stream": stream, **more})


def test_consumers_run_only_beside_the_embedded_store(settings: Settings, db: Engine, tmp_path: Path,
                                                      stream: str) -> None:
    sessions = make_session_factory(db)
    first = Pipeline(_on_nats(settings, stream, tmp_path / "a"), sessions)
    beside = Pipeline(_on_nats(settings, stream, tmp_path / "a"), sessions)  # another process with that data dir
    elsewhere = Pipeline(_on_nats(settings, stream, tmp_path / "b"), sessions)  # a second machine's
    try:
        assert first.start()
        assert beside.start()  # JetStream shares each consumer's messages between them
        with pytest.raises(EventStoreElsewhere) as refused:
            elsewhere.start()
        message = str(refused.value)
        assert str((tmp_path / "a").resolve()) in message and str((tmp_path / "b").resolve()) in message
        assert "ADSTACK_CLICKHOUSE_URL" in message
        assert elsewhere.consumers and not elsewhere._threads  # nothing consumed there
        # With a ClickHouse server every process loads the one store.
        served = Pipeline(_on_nats(settings, stream, tmp_path / "b", clickhouse_url="http://127.0.0.1:9/x"), sessions)
        try:
            assert served.claim_store()
        finally:
            served.close()
    finally:
        for pipeline in (first, beside, elsewhere):
            pipeline.close()
