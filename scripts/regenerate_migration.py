"""Regenerate the initial migration from the models.

Until the first release the schema has a single revision, rebuilt from the models with Alembic's
autogenerate against an empty SQLite database. After the first release, add ordinary revisions instead.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from alembic import command

from adstack.core.bootstrap import MIGRATIONS_DIR, alembic_config

REVISION = "0001_initial"


def main() -> None:
    versions = MIGRATIONS_DIR / "versions"
    versions.mkdir(exist_ok=True)
    for old in versions.glob("*.py"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'empty.db'}"
        command.revision(alembic_config(url), message="initial schema", autogenerate=True, rev_id=REVISION)
    path = next(versions.glob(f"{REVISION}_*.py"))
    text = path.read_text()
    text = re.sub(r"Create Date: .*", "Create Date: (regenerated from the models)", text)
    path.write_text(text)
    print(f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")


if __name__ == "__main__":
    main()
