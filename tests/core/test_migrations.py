"""The migrations and the models describe the same schema, on SQLite and on PostgreSQL; a database migrated by
an earlier release reaches the newest schema with its rows; a schema that is not the newest is refused."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, MetaData, Table, text
from sqlalchemy.orm import Session

from adstack.accounts import users
from adstack.accounts.models import Role
from adstack.app import create_app
from adstack.core import bootstrap
from adstack.core.bootstrap import MIGRATIONS_DIR, SchemaOutOfDate, alembic_config, check_schema, migrate
from adstack.core.db import Base, import_all_models, make_engine
from adstack.core.settings import Settings
from tests.support import auth, expect

# A revision a database has run is never run there again: once released, its file must not change (add a new
# revision instead). Add each revision here when it is released.
RELEASED = {
    "0001_initial_initial_schema.py": "e3154a4e35dabc70397c1bcc72556da61f35c1cbed905ab20eaf2cfd746e7914",
    "0002_leases_partner_time_generation.py": "af9543f8a2598c634b101ef40c5dcb562b15d32f1509792ba33ddd3c691772ed",
}
FIRST_RELEASE = "0001_initial"
NOW = datetime(2026, 11, 2, 8, 30, tzinfo=UTC)


def test_migrated_schema_matches_models(engine: Engine) -> None:
    import_all_models()
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_released_revisions_are_never_edited() -> None:
    versions = MIGRATIONS_DIR / "versions"
    edited = {name for name, digest in RELEASED.items()
              if hashlib.sha256((versions / name).read_bytes()).hexdigest() != digest}
    assert edited == set(), "a released revision was edited: put it back and add a new revision for the change"


def _value(column: Any) -> Any:
    """Something a NOT NULL column of that type takes."""
    kind = column.type.python_type
    if kind is bool:
        return False
    if kind is int:
        return 0
    if kind is str:
        return "x"
    if kind is datetime:
        return NOW
    if kind is Decimal:
        return Decimal(0)
    if kind is bytes:
        return b""
    return {}  # JSON


def _insert(connection: Connection, table: Table, **values: Any) -> int:
    row = {c.name: _value(c) for c in table.columns
           if not c.nullable and c.name not in values and not (c.primary_key and c.name == "id")}
    result = connection.execute(table.insert().values(**row, **values))
    return int(result.inserted_primary_key[0]) if "id" in table.columns else 0


@dataclass
class OldRows:
    admin_email: str
    account_id: int
    audience_ids: list[int]
    publisher_id: int
    ad_space_ids: list[int]
    report_job_id: int
    conversion_id: int


def _rows_of_the_first_release(url: str) -> OldRows:
    """A database the first release migrated and used: an admin, audiences with their uploads and segments,
    publishers and ad spaces, a report job and a conversion."""
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            admin = users.create_admin(session, email="operator@example.org", password="admin-password",
                                       role=Role.ADMIN)
            session.commit()
            admin_id = admin.id
        tables = MetaData()
        with engine.begin() as connection:
            tables.reflect(connection)
            t = tables.tables
            account_id = _insert(connection, t["accounts"], type="advertiser", currency="USD")
            audience_ids = [
                _insert(connection, t["audiences"], account_id=account_id, name=f"buyers {n}", kind="uploaded",
                        region_code="SG", id_type="gaid", key_space="md5", status="ready", size=3)
                for n in range(3)
            ]
            for audience_id in audience_ids:
                _insert(connection, t["audience_uploads"], audience_id=audience_id)
                _insert(connection, t["audience_segments"], audience_id=audience_id, partition=0, data=b"\x00")
            publisher_id = _insert(connection, t["publishers"], name="News app", status="active")
            ad_space_ids = [_insert(connection, t["ad_spaces"], publisher_id=publisher_id, name=f"banner {n}",
                                    accepted_formats=[], sizes=[]) for n in range(2)]
            report_job_id = _insert(connection, t["report_jobs"], user_id=admin_id, role="admin", format="csv",
                                    status="failed", error="the event store was away")
            conversion_id = _insert(connection, t["conversions"], app_id=1, account_id=account_id)
    finally:
        engine.dispose()
    return OldRows("operator@example.org", account_id, audience_ids, publisher_id, ad_space_ids, report_job_id,
                   conversion_id)


@pytest.fixture
def first_release_url(fresh_database_url: str) -> str:
    """A database at the first release's schema, holding rows."""
    command.upgrade(alembic_config(fresh_database_url), FIRST_RELEASE)
    return fresh_database_url


def _settings(url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=url, data_dir=tmp_path / "data", secret_key="test-secret-key", environment="test",
                    public_base_url="http://testserver")


@pytest.fixture
def served(first_release_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, OldRows, Engine]]:
    old = _rows_of_the_first_release(first_release_url)
    settings = _settings(first_release_url, tmp_path)
    migrate(settings)  # what `adstack migrate`, serve and pipeline do at start
    engine = make_engine(first_release_url)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client, old, engine
    engine.dispose()


def _count(engine: Engine, table: str) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(text(f"SELECT count(*) FROM {table}")) or 0)


def test_a_database_of_the_first_release_is_migrated_with_its_rows_and_served(
        served: tuple[TestClient, OldRows, Engine]) -> None:
    client, old, engine = served
    token = expect(client.post("/api/v1/auth/login", json={"email": old.admin_email,
                                                           "password": "admin-password"}), 200)["access_token"]

    page = expect(client.get("/api/v1/audiences", headers=auth(token)), 200)
    assert sorted(a["id"] for a in page["items"]) == old.audience_ids
    jobs = expect(client.get("/api/v1/reports/jobs", headers=auth(token)), 200)
    assert [(j["id"], j["status"], j["error"]) for j in jobs] == [(old.report_job_id, "failed",
                                                                   "the event store was away")]
    expect(client.get(f"/api/v1/reports/jobs/{old.report_job_id}", headers=auth(token)), 200)

    with engine.connect() as connection:
        generations = connection.execute(text("SELECT generation FROM audiences")).scalars().all()
        assert len(set(generations)) == 3 and all(len(g) == 32 for g in generations)
        assert connection.scalar(text("SELECT partner_time FROM conversions WHERE id = :id"),
                                 {"id": old.conversion_id}) is None
        ad_spaces = connection.execute(text("SELECT id, publisher_id FROM ad_spaces ORDER BY id")).all()
        assert [tuple(r) for r in ad_spaces] == [(i, old.publisher_id) for i in old.ad_space_ids]
    # the children of the rebuilt audiences table are all there (a rebuild with foreign keys on deletes them)
    assert _count(engine, "audience_uploads") == 3
    assert _count(engine, "audience_segments") == 3
    check_schema(engine)


def test_after_the_migration_a_deleted_id_is_not_given_again(served: tuple[TestClient, OldRows, Engine]) -> None:
    client, old, engine = served
    token = expect(client.post("/api/v1/auth/login", json={"email": old.admin_email,
                                                           "password": "admin-password"}), 200)["access_token"]
    last_audience = old.audience_ids[-1]
    expect(client.delete(f"/api/v1/audiences/{last_audience}", headers=auth(token)), 204)

    tables = MetaData()
    with engine.begin() as connection:
        tables.reflect(connection)
        t = tables.tables
        connection.execute(text("DELETE FROM ad_spaces WHERE id = :id"), {"id": old.ad_space_ids[-1]})
        audience_id = _insert(connection, t["audiences"], account_id=old.account_id, name="buyers again",
                              kind="uploaded", region_code="SG", key_space="md5", status="ready")
        ad_space_id = _insert(connection, t["ad_spaces"], publisher_id=old.publisher_id, name="banner again",
                              accepted_formats=[], sizes=[])
        connection.execute(text("DELETE FROM ad_spaces"))
        connection.execute(text("DELETE FROM publishers"))
        publisher_id = _insert(connection, t["publishers"], name="Other app", status="active")
    assert audience_id > last_audience
    assert ad_space_id > old.ad_space_ids[-1]
    assert publisher_id > old.publisher_id


def test_a_database_short_of_the_newest_revision_is_refused_naming_migrate(first_release_url: str) -> None:
    engine = make_engine(first_release_url)
    try:
        with pytest.raises(SchemaOutOfDate, match=r"is at schema revision 0001_initial, not .*adstack migrate"):
            check_schema(engine)
    finally:
        engine.dispose()


def test_migrate_refuses_to_start_when_the_upgrade_left_the_schema_behind(
        first_release_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bootstrap, "upgrade", lambda url: None)
    with pytest.raises(SchemaOutOfDate, match="adstack migrate"):
        migrate(_settings(first_release_url, tmp_path))


def test_a_database_a_newer_version_migrated_is_refused_before_the_upgrade(
        fresh_database_url: str, tmp_path: Path) -> None:
    command.upgrade(alembic_config(fresh_database_url), "head")
    engine = make_engine(fresh_database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '0999'"))
    finally:
        engine.dispose()
    with pytest.raises(SchemaOutOfDate, match="revision 0999, which this version of adstack does not know"):
        migrate(_settings(fresh_database_url, tmp_path))
