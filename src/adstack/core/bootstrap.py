"""Migrate the control-plane database and seed operator-editable reference data."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from adstack.core.db import (
    create_private_sqlite_file,
    domain_modules,
    make_engine,
    make_session_factory,
    session_scope,
)
from adstack.core.settings import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str) -> None:
    create_private_sqlite_file(database_url)
    command.upgrade(alembic_config(database_url), "head")


def seed(engine: Engine) -> None:
    """Each domain's service may define seed(session): idempotent inserts of default reference data."""
    factory = make_session_factory(engine)
    for module in domain_modules("service"):
        seeder = getattr(module, "seed", None)
        if seeder is not None:
            with session_scope(factory) as session:
                seeder(session)


def migrate(settings: Settings) -> None:
    url = settings.resolved_database_url
    upgrade(url)
    engine = make_engine(url)
    try:
        seed(engine)
    finally:
        engine.dispose()
