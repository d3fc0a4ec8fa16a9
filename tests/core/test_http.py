"""A database whose schema is older than the code is no busy database: the answer says to migrate."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from adstack.accounts import users
from adstack.accounts.models import Role
from adstack.app import create_app
from adstack.core.bootstrap import alembic_config
from adstack.core.db import make_engine
from adstack.core.settings import Settings
from tests.support import auth, expect


@pytest.fixture
def migrated_url(fresh_database_url: str) -> str:
    command.upgrade(alembic_config(fresh_database_url), "head")
    return fresh_database_url


@contextmanager
def _serve(url: str, tmp_path: Path, *statements: str) -> Iterator[tuple[TestClient, str]]:
    """The app on a database that an admin signs in to, after the statements took part of its schema away."""
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            users.create_admin(session, email="operator@example.org", password="admin-password", role=Role.ADMIN)
            session.commit()
        with engine.begin() as connection:
            for statement in statements:
                connection.execute(text(statement))
    finally:
        engine.dispose()
    settings = Settings(database_url=url, data_dir=tmp_path / "data", secret_key="test-secret-key",
                        environment="test", public_base_url="http://testserver")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        body = expect(client.post("/api/v1/auth/login", json={"email": "operator@example.org",
                                                               "password": "admin-password"}), 200)
        yield client, body["access_token"]


def _assert_out_of_date(response: object, caplog: pytest.LogCaptureFixture) -> None:
    body = expect(response, 503)  # type: ignore[arg-type]
    assert body["error"]["code"] == "schema_out_of_date"
    assert "adstack migrate" in body["error"]["message"]
    assert "retry-after" not in response.headers  # type: ignore[attr-defined]
    assert any(r.levelno == logging.ERROR and "adstack migrate" in r.getMessage() for r in caplog.records)


def test_a_missing_column_is_answered_as_a_schema_to_migrate_not_as_busy(
        migrated_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with _serve(migrated_url, tmp_path, "ALTER TABLE audiences DROP COLUMN generation") as (client, token):
        _assert_out_of_date(client.get("/api/v1/audiences", headers=auth(token)), caplog)


def test_a_missing_table_is_answered_as_a_schema_to_migrate_not_as_busy(
        migrated_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with _serve(migrated_url, tmp_path, "DROP TABLE report_jobs") as (client, token):
        _assert_out_of_date(client.get("/api/v1/reports/jobs", headers=auth(token)), caplog)
