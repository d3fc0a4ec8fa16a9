"""The database, the secret key and uploaded documents are created readable by their owner only, whatever the
process umask."""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from adstack.core.db import make_engine
from adstack.core.private_files import create_private
from adstack.core.settings import Settings
from tests.support import Api, expect


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """umask 0: a file created with the default mode would come out world-readable."""
    previous = os.umask(0)
    yield
    os.umask(previous)


def test_private_files_are_0600_from_the_start_and_never_written_through(
    tmp_path: Path, permissive_umask: None
) -> None:
    with create_private(tmp_path / "new") as out:
        assert mode(tmp_path / "new") == 0o600  # before a byte is written
        out.write(b"x")
    (tmp_path / "planted").write_text("")
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    for existing in ("planted", "link"):
        with pytest.raises(FileExistsError):
            create_private(tmp_path / existing)
    assert not (tmp_path / "elsewhere").exists()


def test_the_secret_key_file_is_0600_and_kept(tmp_path: Path, permissive_umask: None) -> None:
    key = Settings(data_dir=tmp_path).resolved_secret_key
    assert mode(tmp_path / "secret.key") == 0o600
    assert Settings(data_dir=tmp_path).resolved_secret_key == key


def test_the_sqlite_database_and_its_wal_files_are_0600(tmp_path: Path, permissive_umask: None) -> None:
    database = tmp_path / "adstack.db"
    engine = make_engine(f"sqlite:///{database}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (x INTEGER)"))
        connection.execute(text("INSERT INTO t VALUES (1)"))
        modes = {path.name: mode(path) for path in tmp_path.iterdir()}
    engine.dispose()
    assert {"adstack.db", "adstack.db-wal", "adstack.db-shm"} <= set(modes)
    assert set(modes.values()) == {0o600}


def test_uploaded_documents_and_payment_proofs_are_0600(api: Api, settings: Settings, permissive_umask: None) -> None:
    adv = api.register()
    expect(
        api.client.post(
            f"/api/v1/accounts/{adv.account_id}/documents",
            headers=adv.headers,
            files={"file": ("license.pdf", b"%PDF-1.4\n" + b"0" * 100, "application/pdf")},
            data={"kind": "business_license"},
        ),
        201,
    )
    agency = api.approved_account(type="agency")
    expect(
        api.client.post(
            "/api/v1/finance/top-up-requests",
            headers=agency.headers,
            data={"account_id": str(agency.account_id), "amount_micros": "5000000"},
            files={"file": ("receipt.png", io.BytesIO(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64), "image/png")},
        ),
        201,
    )
    stored = [
        p for folder in ("documents", "payment-proofs") for p in (settings.data_dir / folder).rglob("*") if p.is_file()
    ]
    # The registrations' own qualification documents are among them.
    assert {p.relative_to(settings.data_dir).parts[0] for p in stored} == {"documents", "payment-proofs"}
    assert {mode(p) for p in stored} == {0o600}
