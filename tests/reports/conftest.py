"""Report tests share one event store per module (chDB starts once) and empty it after each test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from adstack.core.settings import Settings
from adstack.events.schema import DATA_TABLES
from adstack.events.service import EventStore, get_event_store


@pytest.fixture(scope="module")
def module_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reports-data")


@pytest.fixture
def settings(db: Engine, database_url: str, module_data_dir: Path) -> Settings:
    return Settings(
        data_dir=module_data_dir,
        database_url=database_url,
        secret_key="test-secret-key",
        environment="test",
        public_base_url="http://testserver",
    )


@pytest.fixture
def store(settings: Settings) -> Iterator[EventStore]:
    event_store = get_event_store(settings)
    yield event_store
    # Control-plane ids restart after each test, so the events of one test must not meet the next.
    event_store.flush()
    for table in DATA_TABLES:
        event_store.command(f"TRUNCATE TABLE {table}")
