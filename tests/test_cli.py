"""The `adstack` command line: the settings its commands resolve, and what they tell an operator."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

import adstack.app
import adstack.core.bootstrap
import adstack.core.settings
import adstack.core.workers
from adstack import cli
from adstack.accounts.passwords import MIN_PASSWORD_LENGTH
from adstack.accounts.roles import PLATFORM_ROLES
from adstack.core.settings import Settings
from tests.serving.test_api import ads_now, eventually, setup_serving_ad
from tests.support import Api, expect

PUBLIC = "https://ads.example.com"


@pytest.fixture(autouse=True)
def _keep_process_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands set the process's settings; the tests after these get back what they had."""
    monkeypatch.setattr(adstack.core.settings, "_settings", adstack.core.settings._settings)


@pytest.fixture
def settings(db: Any, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """What `adstack serve --host 0.0.0.0 --port 8000` resolves with ADSTACK_PUBLIC_BASE_URL set."""
    for name, value in {"PUBLIC_BASE_URL": PUBLIC, "DATABASE_URL": database_url, "SECRET_KEY": "test-secret-key",
                        "ENVIRONMENT": "test", "UNSIGNED_POSTBACK_HOLD_SECONDS": "0"}.items():
        monkeypatch.setenv(f"ADSTACK_{name}", value)
    return cli._serving_settings(tmp_path / "data", "0.0.0.0", 8000)


def test_serve_builds_ads_and_integrations_on_the_public_base_url(api: Api, settings: Settings) -> None:
    assert settings.public_base_url == PUBLIC
    made = setup_serving_ad(api)
    space_id = made["space"]["id"]
    assert eventually(lambda: bool(ads_now(api.client, space_id)))
    (ad,) = ads_now(api.client, space_id)
    links = [ad["click_url"], ad["image_url"], *ad["tracking"]["impression"][:1]]
    assert all(link.startswith(PUBLIC + "/") for link in links), links
    assert urlsplit(ad["click_url"]).path == "/t/click"

    actor = made["actor"]
    app = expect(api.client.post("/api/v1/apps", headers=actor.headers,
                                 json={"package_name": "com.example.runner", "name": "Runner", "partner": "adjust"}),
                 201)
    integration = expect(api.client.get(f"/api/v1/apps/{app['id']}/integrations/adjust", headers=actor.headers), 200)
    assert integration["postback_url_template"].startswith(PUBLIC + "/track/"), integration["postback_url_template"]


@pytest.mark.parametrize(("host", "expected"), [("0.0.0.0", "http://127.0.0.1:8000"), ("::", "http://[::1]:8000"),
                                                ("10.1.2.3", "http://10.1.2.3:8000"),
                                                ("ads.internal", "http://ads.internal:8000")])
def test_without_a_public_base_url_links_use_an_address_clients_can_reach(
        host: str, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("ADSTACK_PUBLIC_BASE_URL", raising=False)
    assert cli._serving_settings(tmp_path, host, 8000).public_base_url == expected
    warned = "ADSTACK_PUBLIC_BASE_URL is unset" in capsys.readouterr().out
    assert warned == (host in ("0.0.0.0", "::"))


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_hands_the_public_base_url_to_the_app_and_its_workers(
        workers: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[Settings] = []
    handed: list[str] = []
    monkeypatch.setattr(adstack.core.bootstrap, "migrate", lambda settings: None)
    monkeypatch.setattr(adstack.app, "create_app", lambda settings: built.append(settings))
    monkeypatch.setattr("uvicorn.run", lambda *args, **kwargs: None)
    monkeypatch.setattr(adstack.core.workers, "serve_workers",
                        lambda spec, count: handed.append(Settings().public_base_url) or 0)
    # Set here, so that what the command writes into the environment is undone after the test.
    monkeypatch.setenv("ADSTACK_PUBLIC_BASE_URL", PUBLIC)
    monkeypatch.setenv("ADSTACK_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ADSTACK_REDIS_URL", "redis://127.0.0.1:6379/0")
    result = CliRunner().invoke(cli.app, ["serve", "--host", "0.0.0.0", "--port", "8000",
                                          "--workers", str(workers), "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert [s.public_base_url for s in built] + handed == [PUBLIC]


def _adstack(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "adstack.cli", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200", "ADSTACK_ARGON2_PROFILE": "CHEAPEST"})


def test_admin_create_names_the_password_rule_and_the_roles() -> None:
    shown = _adstack("admin", "create", "--help")
    assert shown.returncode == 0, shown.stderr
    assert f"At least {MIN_PASSWORD_LENGTH} characters" in shown.stdout
    assert all(role.value in shown.stdout for role in PLATFORM_ROLES)


def test_admin_create_refuses_an_unknown_role_listing_the_roles(tmp_path: Path) -> None:
    refused = _adstack("admin", "create", "--email", "ops@example.com", "--password", "a long passphrase",
                       "--role", "superuser", "--data-dir", str(tmp_path))
    assert refused.returncode == 2
    assert "Traceback" not in refused.stderr + refused.stdout
    assert "'superuser' is not one of 'admin', 'reviewer', 'account_manager'" in refused.stderr


def test_admin_create_holds_the_password_to_the_users_rule(tmp_path: Path) -> None:
    short = "x" * (MIN_PASSWORD_LENGTH - 1)
    refused = _adstack("admin", "create", "--email", "ops@example.com", "--password", short,
                       "--data-dir", str(tmp_path / "refused"))
    assert refused.returncode == 2 and f"at least {MIN_PASSWORD_LENGTH} characters" in refused.stderr
    assert not (tmp_path / "refused").exists()  # refused before anything is migrated
    created = _adstack("admin", "create", "--email", "ops@example.com", "--password", "a long passphrase",
                       "--role", "reviewer", "--data-dir", str(tmp_path / "made"))
    assert created.returncode == 0, created.stderr
    assert "created ops@example.com (reviewer)" in created.stdout


def test_migrate_stops_on_a_database_a_newer_version_migrated_saying_why(tmp_path: Path) -> None:
    migrated = _adstack("migrate", "--data-dir", str(tmp_path))
    assert migrated.returncode == 0, migrated.stderr
    engine = create_engine(Settings(data_dir=tmp_path).resolved_database_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0999'"))
    engine.dispose()
    refused = _adstack("migrate", "--data-dir", str(tmp_path))
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr + refused.stdout
    assert "revision 0999, which this version of adstack does not know" in " ".join(refused.stdout.split())
