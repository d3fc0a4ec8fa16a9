"""Sign-in protection, passwords, e-mail verification and reset over SMTP on loopback, sessions, deactivation."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from adstack.accounts.models import Role
from adstack.app import create_app
from adstack.console.web import SESSION_COOKIE
from adstack.core.settings import Settings
from tests.console.support import sign_in
from tests.support import Api, auth, expect

TOKEN = re.compile(r"token=(aet_[A-Za-z0-9_-]+)")


class Inbox:
    """An aiosmtpd handler that keeps every message it is sent."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd calls it by name
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"

    def to(self, address: str) -> list[Message]:
        return [m for m in self.messages if m["To"] == address]

    def token(self, address: str) -> str:
        body = self.to(address)[-1].get_payload(decode=True)
        assert isinstance(body, bytes)
        match = TOKEN.search(body.decode())
        assert match, body
        return match.group(1)


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    handler = Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    handler.port = port  # type: ignore[attr-defined]
    try:
        yield handler
    finally:
        controller.stop()


@pytest.fixture
def secure_api(settings: Settings, session: Session, inbox: Inbox) -> Iterator[Api]:
    """The platform as in production: e-mail verification required, mail sent over SMTP to the inbox."""
    live = settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": inbox.port,  # type: ignore[attr-defined]
            "require_email_verification": True,
        }
    )
    with TestClient(create_app(live), raise_server_exceptions=False) as client:
        yield Api(client, session)


def _register(api: Api, **overrides: Any) -> dict[str, Any]:
    body = api.registration(**overrides)
    response = api.client.post("/api/v1/auth/register", json=body)
    assert response.status_code == 202, response.text
    return body


# ---------- rate limits ----------


def test_brute_force_gets_429_after_the_limit_even_with_the_right_password(api: Api) -> None:
    victim = api.register()
    statuses = [
        api.client.post("/api/v1/auth/login", json={"email": victim.email, "password": f"guess {n}"}).status_code
        for n in range(15)
    ]
    assert statuses[:10] == [401] * 10 and set(statuses[10:]) == {429}
    refused = api.client.post("/api/v1/auth/login", json={"email": victim.email, "password": "correct horse battery"})
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 0
    assert refused.json()["error"]["code"] == "too_many_requests"
    # Another user from the same address is not locked out by one account's failures.
    api.register()


def test_failed_sign_ins_from_one_ip_are_limited_across_accounts(api: Api) -> None:
    statuses = [
        api.client.post("/api/v1/auth/login", json={"email": f"nobody{n}@example.com", "password": "x"}).status_code
        for n in range(32)
    ]
    assert statuses[:30] == [401] * 30 and set(statuses[30:]) == {429}


def test_registration_and_reset_are_rate_limited(api: Api) -> None:
    body = api.registration()
    statuses = [api.client.post("/api/v1/auth/register", json=body).status_code for _ in range(4)]
    assert statuses == [202, 202, 202, 429]
    resets = [
        api.client.post("/api/v1/auth/password-reset", json={"email": "someone@example.com"}).status_code
        for _ in range(4)
    ]
    assert resets == [202, 202, 202, 429]


def test_console_sign_in_is_rate_limited(api: Api) -> None:
    victim = api.register()
    for _ in range(10):
        assert sign_in(api.client, victim.email, "wrong password").status_code == 401
    refused = sign_in(api.client, victim.email, "correct horse battery")
    assert refused.status_code == 429 and "Retry-After" in refused.headers


# ---------- password policy ----------


@pytest.mark.parametrize(
    ("password", "rule", "limit"),
    [
        ("12345678", "string_too_short", 10),
        ("password", "string_too_short", 10),
        ("1234567890", "common_password", 10_000),
        ("QwertyUIOP", "common_password", 10_000),
    ],
)
def test_short_and_common_passwords_are_refused(api: Api, password: str, rule: str, limit: int) -> None:
    error = expect(api.client.post("/api/v1/auth/register", json=api.registration(password=password)), 422)["error"]
    assert {"field": "password", "rule": rule, "limit": limit} in [
        {k: f.get(k) for k in ("field", "rule", "limit")} for f in error["fields"]
    ]


# ---------- registration and verification ----------


def test_registration_answers_alike_for_a_taken_email_and_tells_the_owner(secure_api: Api, inbox: Inbox) -> None:
    body = _register(secure_api)
    first = secure_api.client.post("/api/v1/auth/register", json=api_body(secure_api, email="fresh@example.com"))
    taken = secure_api.client.post("/api/v1/auth/register", json=api_body(secure_api, email=body["email"]))
    assert (first.status_code, first.json()) == (taken.status_code, taken.json())
    assert set(first.headers) == set(taken.headers)
    subjects = [m["Subject"] for m in inbox.to(body["email"])]
    assert subjects == ["Verify your adstack e-mail address", "Someone tried to register with your e-mail address"]
    # The second registration changed nothing: the first password still signs in.
    secure_api.login(body["email"], body["password"])


def api_body(api: Api, **overrides: Any) -> dict[str, Any]:
    return api.registration(**overrides)


def test_unverified_account_cannot_be_submitted_until_the_mailed_link_is_used(secure_api: Api, inbox: Inbox) -> None:
    body = _register(secure_api)
    actor = secure_api.login(body["email"], body["password"])
    url = f"/api/v1/accounts/{actor.account_id}/submit"
    secure_api.upload_document(actor, actor.account_id)
    refused = expect(secure_api.client.post(url, headers=actor.headers), 409)
    assert refused["error"]["code"] == "email_not_verified"
    token = inbox.token(body["email"])
    expect(secure_api.client.post("/api/v1/auth/verify-email", json={"token": token}), 200)
    assert expect(secure_api.client.post(url, headers=actor.headers), 200)["review_status"] == "under_review"
    # Single use.
    expect(secure_api.client.post("/api/v1/auth/verify-email", json={"token": token}), 422)


# ---------- password change and reset ----------


def test_password_change_needs_the_current_password_and_signs_out_other_sessions(api: Api) -> None:
    actor = api.register()
    other = api.login(actor.email, "correct horse battery")
    wrong = expect(
        api.client.post(
            "/api/v1/auth/password",
            headers=actor.headers,
            json={"current_password": "not it", "new_password": "a brand new secret"},
        ),
        422,
    )
    assert wrong["error"]["fields"][0]["field"] == "current_password"
    common = expect(
        api.client.post(
            "/api/v1/auth/password",
            headers=actor.headers,
            json={"current_password": "correct horse battery", "new_password": "qwertyuiop"},
        ),
        422,
    )
    assert common["error"]["fields"][0]["rule"] == "common_password"
    out = expect(
        api.client.post(
            "/api/v1/auth/password",
            headers=actor.headers,
            json={"current_password": "correct horse battery", "new_password": "a brand new secret"},
        ),
        200,
    )
    assert out == {"signed_out_sessions": 1}
    assert api.client.get("/api/v1/auth/me", headers=other.headers).status_code == 401
    assert api.client.get("/api/v1/auth/me", headers=actor.headers).status_code == 200
    api.login(actor.email, "a brand new secret")


def test_password_reset_over_smtp_end_to_end(secure_api: Api, inbox: Inbox) -> None:
    body = _register(secure_api)
    actor = secure_api.login(body["email"], body["password"])
    expect(secure_api.client.post("/api/v1/auth/password-reset", json={"email": body["email"]}), 202)
    unknown = expect(secure_api.client.post("/api/v1/auth/password-reset", json={"email": "no@example.com"}), 202)
    assert unknown["message"] and inbox.to("no@example.com") == []
    token = inbox.token(body["email"])
    assert inbox.to(body["email"])[-1]["Subject"] == "Reset your adstack password"
    short = expect(
        secure_api.client.post("/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": "short"}),
        422,
    )
    assert short["error"]["fields"][0] == {
        **short["error"]["fields"][0],
        "field": "new_password",
        "rule": "string_too_short",
        "limit": 10,
    }
    expect(
        secure_api.client.post(
            "/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": "reset to something long"}
        ),
        204,
    )
    assert secure_api.client.get("/api/v1/auth/me", headers=actor.headers).status_code == 401
    secure_api.login(body["email"], "reset to something long")
    again = secure_api.client.post(
        "/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": "another long password"}
    )
    assert again.status_code == 422 and again.json()["error"]["fields"][0]["rule"] == "valid_link"


def test_console_password_reset_and_change(secure_api: Api, inbox: Inbox) -> None:
    body = _register(secure_api)
    client = secure_api.client
    page = client.get("/console/forgot-password")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    sent = client.post(
        "/console/forgot-password", data={"email": body["email"], "csrf_token": csrf}, follow_redirects=False
    )
    assert sent.status_code == 303
    token = inbox.token(body["email"])
    form = client.get(f"/console/reset-password?token={token}")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    done = client.post(
        "/console/reset-password",
        data={"token": token, "new_password": "console reset pass", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"].endswith("notice=password_reset")
    assert sign_in(client, body["email"], "console reset pass").status_code == 303
    security = client.get("/console/security")
    assert security.status_code == 200 and 'id="sessions"' in security.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', security.text).group(1)  # type: ignore[union-attr]
    changed = client.post(
        "/console/security/password",
        data={"current_password": "console reset pass", "new_password": "changed in the console", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert changed.status_code == 303
    secure_api.login(body["email"], "changed in the console")


# ---------- sessions, token kinds and deactivation ----------


def test_sessions_are_listed_and_revocable(api: Api) -> None:
    actor = api.register()
    other = api.login(actor.email, "correct horse battery")
    sessions = expect(api.client.get("/api/v1/auth/sessions", headers=actor.headers), 200)
    assert len(sessions) == 2 and [s["current"] for s in sessions] == [True, False]
    assert sessions[0]["client_ip"] == "testclient"
    stranger = api.register()
    assert api.client.delete(f"/api/v1/auth/sessions/{sessions[1]['id']}", headers=stranger.headers).status_code == 404
    expect(api.client.delete(f"/api/v1/auth/sessions/{sessions[1]['id']}", headers=actor.headers), 200)
    assert api.client.get("/api/v1/auth/me", headers=other.headers).status_code == 401
    assert len(expect(api.client.get("/api/v1/auth/sessions", headers=actor.headers), 200)) == 1


def test_console_cookie_is_no_bearer_token_and_bearer_token_no_cookie(api: Api) -> None:
    actor = api.register()
    assert sign_in(api.client, actor.email, "correct horse battery").status_code == 303
    cookie = api.client.cookies.get(SESSION_COOKIE)
    assert cookie
    refused = api.client.get("/api/v1/auth/me", headers=auth(cookie))
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_token"
    api.client.cookies.clear()
    fresh = TestClient(api.client.app, cookies={SESSION_COOKIE: actor.token})
    page = fresh.get("/console/account", follow_redirects=False)
    assert page.status_code in (302, 303) and "/console/sign-in" in page.headers["location"]


def test_deactivated_user_tokens_and_keys_stop_working(api: Api) -> None:
    admin = api.admin()
    actor = api.approved_account(admin)
    key = expect(api.client.post("/api/v1/auth/api-keys", headers=actor.headers, json={"name": "ci"}), 201)["key"]
    other = api.register()
    # Another account's owner manages its own users only: this one answers as if missing.
    assert api.client.post(f"/api/v1/users/{actor.user_id}/deactivate", headers=other.headers).status_code == 404
    manager = api.admin(Role.ACCOUNT_MANAGER)
    out = expect(api.client.post(f"/api/v1/users/{actor.user_id}/deactivate", headers=manager.headers), 200)
    assert out["is_active"] is False
    for token in (actor.token, key):
        assert api.client.get("/api/v1/auth/me", headers=auth(token)).status_code == 401
    wrong = api.client.post("/api/v1/auth/login", json={"email": actor.email, "password": "correct horse battery"})
    assert wrong.status_code == 401
    expect(api.client.post(f"/api/v1/users/{actor.user_id}/activate", headers=manager.headers), 200)
    api.login(actor.email, "correct horse battery")


def test_agency_deactivates_its_sub_accounts_users_only(api: Api, session: Session) -> None:
    from adstack.accounts import users as account_users

    admin = api.admin()
    agency = api.approved_account(admin, type="agency")
    sub = api.sub_account(agency, admin)
    user = account_users.create_user(
        session, email="sub-user@example.com", password="sub user password", role=Role.ADVERTISER, account_id=sub
    )
    session.commit()
    stranger_agency = api.approved_account(admin, type="agency")
    assert api.client.post(f"/api/v1/users/{user.id}/deactivate", headers=stranger_agency.headers).status_code == 404
    expect(api.client.post(f"/api/v1/users/{user.id}/deactivate", headers=agency.headers), 200)
    listed = expect(api.client.get("/api/v1/users", headers=agency.headers), 200)
    assert {u["email"] for u in listed} == {agency.email, "sub-user@example.com"}
