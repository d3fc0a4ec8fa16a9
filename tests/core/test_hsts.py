"""Strict-Transport-Security over https only: direct TLS, a trusted proxy's X-Forwarded-Proto, or the setting."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from adstack.app import create_app
from adstack.core.settings import Settings


def _client(tmp_path: Path, database_url: str, address: str, **values: object) -> TestClient:
    settings = Settings(
        data_dir=tmp_path / "data", database_url=database_url, secret_key="k", environment="test", **values
    )  # type: ignore[arg-type]
    return TestClient(create_app(settings), client=(address, 50000))


def test_hsts_only_when_the_request_came_over_https(tmp_path: Path, database_url: str, db: object) -> None:
    https = {"X-Forwarded-Proto": "https"}
    behind = _client(tmp_path, database_url, "10.0.0.5", trusted_proxies="10.0.0.0/8")
    header = behind.get("/healthz", headers=https).headers.get("strict-transport-security")
    assert header == "max-age=31536000; includeSubDomains"
    assert "strict-transport-security" not in behind.get("/healthz").headers  # plain http behind the proxy
    assert "strict-transport-security" not in behind.get("/healthz", headers={"X-Forwarded-Proto": "http"}).headers
    # Anyone else claiming https is not believed.
    direct = _client(tmp_path, database_url, "203.0.113.9", trusted_proxies="10.0.0.0/8")
    assert "strict-transport-security" not in direct.get("/healthz", headers=https).headers
    tls = TestClient(direct.app, base_url="https://testserver", client=("203.0.113.9", 50000))
    assert "strict-transport-security" in tls.get("/healthz").headers
    always = _client(tmp_path, database_url, "203.0.113.9", hsts=True, hsts_max_age=600)
    assert always.get("/api/v1/nothing-here").headers["strict-transport-security"] == "max-age=600; includeSubDomains"
