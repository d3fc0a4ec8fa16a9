"""Add a migration revision for the models' changes since the newest revision.

Revisions are added, never edited: a database already at a revision never runs that revision's file again, so a
change to it would never reach it. This script upgrades an empty SQLite database to the newest revision, lets
Alembic's autogenerate compare it with the models and writes the difference as the next revision
(`NNNN_<message>.py`, revising the current head).

Autogenerate finds added and removed tables, columns, indexes and constraints and changed types. Review what it
wrote before committing, and add by hand what it cannot see: values for a new NOT NULL column in existing rows,
data changes, and table options such as `sqlite_autoincrement` (a SQLite table rebuild,
`op.batch_alter_table(..., recreate="always", table_kwargs=...)`). tests/core/test_migrations.py checks that the
migrated schema matches the models on SQLite and PostgreSQL.

Usage: .venv/bin/python scripts/new_migration.py "what changed"
"""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory

from adstack.core.bootstrap import alembic_config, upgrade


def next_revision_id(script: ScriptDirectory) -> str:
    heads = script.get_heads()
    if len(heads) != 1:
        raise SystemExit(f"expected one head revision, found {heads}: merge them first")
    numbers = [int(m.group(1)) for rev in script.walk_revisions() if (m := re.match(r"(\d{4})", rev.revision))]
    return f"{max(numbers, default=0) + 1:04d}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("message", help="what the revision changes, e.g. 'report job leases'")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'current.db'}"
        config = alembic_config(url)
        upgrade(url)
        rev_id = next_revision_id(ScriptDirectory.from_config(config))
        script = command.revision(config, message=args.message, autogenerate=True, rev_id=rev_id)
    scripts = script if isinstance(script, list) else [script]
    for written in scripts:
        if written is not None:
            print(f"wrote {written.path}; review it, then run tests/core/test_migrations.py")


if __name__ == "__main__":
    main()
