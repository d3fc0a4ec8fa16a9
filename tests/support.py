"""Helpers that drive the public API the way a client would: sign in, register, approve."""

from __future__ import annotations

import asyncio
import email
import email.policy
import itertools
import re
import socket
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from adstack.accounts import users
from adstack.accounts.models import Role

_counter = itertools.count(1)
MINIMAL_PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)


T = TypeVar("T")


@contextmanager
def scratch_database(server_url: str, prefix: str) -> Iterator[str]:
    """A new, empty database on the server `server_url` names, dropped afterwards (with whatever still uses it)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run_async(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """`asyncio.run` on a thread of its own: a browser test may have left an event loop running on this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def expect(response: Response, status: int) -> Any:
    assert response.status_code == status, f"{response.status_code} != {status}: {response.text}"
    return response.json() if response.content and "json" in response.headers.get("content-type", "") else None


@dataclass
class Actor:
    token: str
    user_id: int
    account_id: int | None
    email: str

    @property
    def headers(self) -> dict[str, str]:
        return auth(self.token)


class Api:
    """A thin client over the HTTP API for tests."""

    def __init__(self, client: TestClient, session: Session):
        self.client = client
        self.session = session

    def settle(self) -> int:
        """Apply everything the event log holds now (the pipeline's consumers otherwise lag a little)."""
        return int(self.client.app.state.pipeline.drain())  # type: ignore[attr-defined]

    def login(self, email: str, password: str) -> Actor:
        body = expect(self.client.post("/api/v1/auth/login", json={"email": email, "password": password}), 200)
        return Actor(body["access_token"], body["user_id"], body["account_id"], email)

    def admin(self, role: Role = Role.ADMIN) -> Actor:
        email = f"admin{next(_counter)}@example.org"
        users.create_admin(self.session, email=email, password="admin-password", role=role)
        self.session.commit()
        return self.login(email, "admin-password")

    def registration(self, **overrides: Any) -> dict[str, Any]:
        n = next(_counter)
        body: dict[str, Any] = {
            "email": f"user{n}@example.com",
            "password": "correct horse battery",
            "type": "advertiser",
            "company_name": f"Example Games (Singapore) Pte. Ltd. {n}",
            "contact_name": "Li Wei",
            "contact_email": f"ops{n}@example.com",
            "contact_phone": "+65 6000 0000",
            "country": "ID",  # Singapore has only operator-set settlement rules
            "settlement_entity": "Xiaomi Singapore",
            "currency": "USD",
            "time_zone": "Asia/Singapore",
            "accept_agreement": True,
        }
        body.update(overrides)
        return body

    def register(self, **overrides: Any) -> Actor:
        """Register, then sign in: registration answers alike for every address, so it carries no token."""
        body = self.registration(**overrides)
        response = self.client.post("/api/v1/auth/register", json=body)
        if response.status_code == 503:
            # SQLite has one writer: under the pipeline's background writes the server may answer 503 with
            # Retry-After, and a client tries again (the first attempt wrote nothing).
            time.sleep(float(response.headers.get("retry-after", "1")))
            response = self.client.post("/api/v1/auth/register", json=body)
        expect(response, 202)
        return self.login(body["email"], body["password"])

    def upload_document(self, actor: Actor, account_id: int, kind: str = "business_license") -> dict[str, Any]:
        """A small PDF qualification document: an account needs one before it is submitted for review."""
        body: dict[str, Any] = expect(
            self.client.post(
                f"/api/v1/accounts/{account_id}/documents",
                headers=actor.headers,
                data={"kind": kind},
                files={"file": (f"{kind}.pdf", MINIMAL_PDF, "application/pdf")},
            ),
            201,
        )
        return body

    def approved_account(self, admin: Actor | None = None, **overrides: Any) -> Actor:
        """Register, upload the documents, submit and approve: an advertiser (or agency) ready to create ads."""
        admin = admin or self.admin()
        actor = self.register(**overrides)
        assert actor.account_id is not None
        self.upload_document(actor, actor.account_id)
        if overrides.get("type") == "agency":
            self.upload_document(actor, actor.account_id, "getapps_shop_screenshot")
        expect(self.client.post(f"/api/v1/accounts/{actor.account_id}/submit", headers=actor.headers), 200)
        expect(
            self.client.post(
                f"/api/v1/accounts/{actor.account_id}/review", headers=admin.headers, json={"decision": "approve"}
            ),
            200,
        )
        return actor

    def sub_account(self, agency: Actor, admin: Actor, **overrides: Any) -> int:
        body = self.registration(**overrides)
        for key in ("email", "password", "accept_agreement"):
            body.pop(key)
        out = expect(self.client.post("/api/v1/accounts", headers=agency.headers, json=body), 201)
        self.upload_document(agency, out["id"])
        expect(self.client.post(f"/api/v1/accounts/{out['id']}/submit", headers=agency.headers), 200)
        expect(
            self.client.post(
                f"/api/v1/accounts/{out['id']}/review", headers=admin.headers, json={"decision": "approve"}
            ),
            200,
        )
        return int(out["id"])

    def mailed(self, to: str, pattern: str) -> str:
        """The newest match of `pattern` in mail sent to `to` (tests run without SMTP: mail lands in the outbox)."""
        outbox = self.client.app.state.settings.data_dir / "outbox"  # type: ignore[attr-defined]
        for path in sorted(outbox.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns, reverse=True):
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if message["To"] == to:
                body = message.get_body(preferencelist=("plain",))
                found = re.search(pattern, body.get_content() if body is not None else "")
                if found:
                    return found.group(0)
        raise AssertionError(f"no mail to {to} matching {pattern}")

    def member(
        self, owner: Actor, account_role: str, *, account_id: int | None = None, password: str = "colleague password 1"
    ) -> Actor:
        """A colleague invited by `owner` as `account_role`, accepted through the mailed token, and signed in."""
        n = next(_counter)
        email_address = f"colleague{n}@example.com"
        body: dict[str, Any] = {"email": email_address, "account_role": account_role}
        if account_id is not None:
            body["account_id"] = account_id
        expect(self.client.post("/api/v1/invitations", headers=owner.headers, json=body), 201)
        token = self.mailed(email_address, r"ain_[A-Za-z0-9_-]+")
        expect(self.client.post("/api/v1/invitations/accept", json={"token": token, "password": password}), 200)
        return self.login(email_address, password)

    def api_key(self, actor: Actor, *scopes: str, days: int = 30) -> Actor:
        """An API key of `actor` with `scopes`, as an actor of its own."""
        out = expect(
            self.client.post(
                "/api/v1/auth/api-keys",
                headers=actor.headers,
                json={"name": f"key {next(_counter)}", "scopes": list(scopes), "expires_in_days": days},
            ),
            201,
        )
        return Actor(out["key"], actor.user_id, actor.account_id, actor.email)


def closed_loopback_port() -> int:
    """A loopback port nothing listens on (bound, then closed): a server that is down."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
