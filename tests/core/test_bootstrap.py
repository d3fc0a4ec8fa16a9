"""Migrating at start: every serve, pipeline and migrate process does it, often several at once on a fresh
database (a deployment starting `adstack pipeline` beside `adstack serve --workers 2`)."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from sqlalchemy import create_engine, inspect, text

from adstack.core.bootstrap import migrate
from adstack.core.settings import Settings

PROCESSES = 3


def _migrate(url: str, data_dir: str, start: object, outcomes: object) -> None:
    start.wait()  # type: ignore[attr-defined]
    try:
        migrate(Settings(database_url=url, data_dir=Path(data_dir), secret_key="test-secret-key"))
    except Exception as exc:  # reported to the test, which names it
        outcomes.put(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")  # type: ignore[attr-defined]
    else:
        outcomes.put("migrated")  # type: ignore[attr-defined]


def test_processes_migrating_a_fresh_database_together_all_succeed(fresh_database_url: str, tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    start, outcomes = context.Barrier(PROCESSES), context.Queue()
    workers = [context.Process(target=_migrate, args=(fresh_database_url, str(tmp_path), start, outcomes))
               for _ in range(PROCESSES)]
    for worker in workers:
        worker.start()
    try:
        results = [outcomes.get(timeout=240) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=30)
    assert results == ["migrated"] * PROCESSES
    engine = create_engine(fresh_database_url)
    try:
        assert "alembic_version" in inspect(engine).get_table_names()
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
    finally:
        engine.dispose()
