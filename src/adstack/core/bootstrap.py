"""Migrate the control-plane database and seed operator-editable reference data."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from adstack.core.db import (
    create_private_sqlite_file,
    domain_modules,
    make_engine,
    make_session_factory,
    session_scope,
)
from adstack.core.settings import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# The PostgreSQL advisory lock every adstack process takes to migrate and seed: any fixed number ("adst").
MIGRATION_LOCK_KEY = 0x61647374


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


class SchemaOutOfDate(RuntimeError):
    """The database's schema is not the one this version of adstack was built for: it does not start."""


def upgrade(database_url: str) -> None:
    create_private_sqlite_file(database_url)
    command.upgrade(alembic_config(database_url), "head")


def _revisions(engine: Engine) -> tuple[set[str], set[str], set[str]]:
    """The database's revisions, this version's head revisions and every revision this version knows."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    script = ScriptDirectory.from_config(config)
    with engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    return current, set(script.get_heads()), {rev.revision for rev in script.walk_revisions()}


def _refuse_unknown(current: set[str], known: set[str]) -> None:
    if unknown := sorted(current - known):
        raise SchemaOutOfDate(f"the database is at schema revision {', '.join(unknown)}, which this version of "
                              f"adstack does not know (a newer version migrated it); run that version or a newer "
                              f"one")


def check_schema(engine: Engine) -> None:
    """Refuse to run on a schema other than the newest revision: every query on a missing column would fail."""
    current, heads, known = _revisions(engine)
    _refuse_unknown(current, known)
    if current != heads:
        raise SchemaOutOfDate(f"the database is at schema revision {', '.join(sorted(current)) or '(none)'}, not "
                          f"{', '.join(sorted(heads))}, which this version of adstack needs; run `adstack migrate`")


def seed(engine: Engine) -> None:
    """Each domain's service may define seed(session): idempotent inserts of default reference data."""
    factory = make_session_factory(engine)
    for module in domain_modules("service"):
        seeder = getattr(module, "seed", None)
        if seeder is not None:
            with session_scope(factory) as session:
                seeder(session)


@contextmanager
def migration_lock(database_url: str) -> Iterator[None]:
    """One process at a time migrates and seeds. Every serve, pipeline and migrate does both at start, and two
    upgrades of a fresh database both create the same tables: all but one failed (UniqueViolation on PostgreSQL,
    "table already exists" on SQLite). The next one in finds the schema current and the seeds present."""
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        # A connection of its own, outside any transaction. Closing it ends the session, which releases the lock,
        # also when the migration failed or the process died.
        engine = create_engine(database_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                yield
        finally:
            engine.dispose()
        return
    database = url.database if url.get_backend_name() == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        yield  # another database server, or one only this process sees
        return
    try:
        fd = os.open(f"{database}.migrate-lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileNotFoundError:
        yield  # no such directory: SQLite's own error to report
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released when closed, or when the process dies
        yield
    finally:
        os.close(fd)


def migrate(settings: Settings) -> None:
    url = settings.resolved_database_url
    with migration_lock(url):
        engine = make_engine(url)
        try:
            current, _heads, known = _revisions(engine)
            _refuse_unknown(current, known)  # the upgrade would only say it cannot locate the revision
            upgrade(url)
            check_schema(engine)
            seed(engine)
        finally:
            engine.dispose()
