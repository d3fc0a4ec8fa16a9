"""Alembic environment: the same migrations run on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import Connection, Engine, engine_from_config, event, pool

from adstack.core.db import Base, import_all_models
from adstack.core.settings import get_settings

config = context.config
import_all_models()
target_metadata = Base.metadata


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or get_settings().resolved_database_url


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def _sqlite_for_migrations(engine: Engine) -> None:
    """Foreign keys off, and each revision in one real transaction.

    A table rebuilt in batch mode (copied to a new table, the old one dropped) would with foreign keys on take
    the rows of its children with ON DELETE CASCADE along with it (DROP TABLE deletes its rows first); the
    references are checked once the migrations ran instead (`_check_foreign_keys`). The pysqlite driver begins a
    transaction only before INSERT/UPDATE/DELETE, so a revision that failed half way would leave its DDL behind;
    BEGIN is emitted by hand instead."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver's own transaction handling off
        dbapi_connection.execute("PRAGMA foreign_keys=OFF")  # no effect inside a transaction: before any
        dbapi_connection.execute("PRAGMA busy_timeout=30000")

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN")


def _check_foreign_keys(connection: Connection) -> None:
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    connection.commit()
    if broken:
        raise RuntimeError(f"the migrated database has rows whose references are broken: {broken[:10]}")


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is None:
        section = config.get_section(config.config_ini_section) or {}
        section["sqlalchemy.url"] = _url()
        engine = engine_from_config(section, prefix="sqlalchemy.", poolclass=pool.NullPool)
        if engine.dialect.name == "sqlite":
            _sqlite_for_migrations(engine)
        try:
            with engine.connect() as connection:
                _run(connection)
                if engine.dialect.name == "sqlite":
                    _check_foreign_keys(connection)
        finally:
            engine.dispose()
    else:
        _run(connectable)


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                      compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
