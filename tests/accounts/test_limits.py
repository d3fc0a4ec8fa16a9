"""Sign-in protection while its shared store (Redis) is down: attempts cannot be counted, so they are refused
as briefly unavailable (503 with Retry-After), never answered 500 and never let through unlimited."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from adstack.accounts.limits import AuthLimiter
from adstack.core.settings import Settings
from tests.console.support import csrf_from, registration_form, sign_in
from tests.support import Actor, Api, closed_loopback_port

PASSWORD = "correct horse battery"


@pytest.fixture
def settings(db: Any, database_url: str, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=database_url, secret_key="test-secret-key",
                    environment="test", public_base_url="http://testserver", unsigned_postback_hold_seconds=0,
                    redis_url=f"redis://127.0.0.1:{closed_loopback_port()}/0")


@contextmanager
def counted_in_memory(client: TestClient) -> Iterator[None]:
    """Sign in with the limits counted in memory meanwhile, to reach the pages behind sign-in."""
    state = client.app.state  # type: ignore[attr-defined]
    shared = state.auth_limiter
    state.auth_limiter = AuthLimiter(state.settings.model_copy(update={"redis_url": None}))
    try:
        yield
    finally:
        state.auth_limiter = shared


def unavailable(response: Response) -> bool:
    assert response.status_code == 503, f"{response.status_code}: {response.text[:300]}"
    assert int(response.headers["retry-after"]) > 0
    return True


def test_the_api_refuses_what_it_cannot_count(api: Api) -> None:
    client = api.client
    with counted_in_memory(client):
        actor = api.register()
    answers = {
        "login": client.post("/api/v1/auth/login", json={"email": actor.email, "password": PASSWORD}),
        "register": client.post("/api/v1/auth/register", json=api.registration()),
        "resend": client.post("/api/v1/auth/verify-email/resend", headers=actor.headers),
        "password": client.post("/api/v1/auth/password", headers=actor.headers,
                                json={"current_password": "wrong password", "new_password": "another passphrase"}),
        "reset": client.post("/api/v1/auth/password-reset", json={"email": actor.email}),
        "reset confirm": client.post("/api/v1/auth/password-reset/confirm",
                                     json={"token": "aet_" + "x" * 40, "new_password": "another passphrase"}),
    }
    for name, response in answers.items():
        assert unavailable(response), name
        assert response.json()["error"]["code"] == "unavailable", name


def _console_post(client: TestClient, page: str, action: str, data: dict[str, str], **extra: Any) -> Response:
    form = {**data, "csrf_token": csrf_from(client.get(page).text)}
    return client.post(action, data=form, follow_redirects=False, **extra)


def test_the_console_refuses_what_it_cannot_count(api: Api) -> None:
    client = api.client
    with counted_in_memory(client):
        actor: Actor = api.register()
    assert unavailable(sign_in(client, actor.email, PASSWORD))
    assert unavailable(_console_post(client, "/console/register", "/console/register", registration_form(90)))
    assert unavailable(_console_post(client, "/console/forgot-password", "/console/forgot-password",
                                     {"email": actor.email}))
    assert unavailable(_console_post(client, "/console/sign-in", "/console/reset-password",
                                     {"token": "aet_" + "x" * 40, "new_password": "another passphrase"}))
    with counted_in_memory(client):
        assert sign_in(client, actor.email, PASSWORD).status_code == 303
    assert unavailable(_console_post(client, "/console/security", "/console/security/password",
                                     {"current_password": "wrong password", "new_password": "another passphrase"}))
    page = client.post("/console/security/verify-email", data={"csrf_token": csrf_from(client.get(
        "/console/security").text)}, follow_redirects=False)
    assert unavailable(page)
    assert "<html" in page.text  # a console page, not the API's JSON
