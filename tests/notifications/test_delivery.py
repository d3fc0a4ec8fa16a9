"""Notifications end to end: a rejection reaches a real SMTP server on loopback (aiosmtpd), a signed webhook
reaches a receiver on loopback that checks the signature as Stripe's scheme says, and a receiver that first
answers 500 is tried again."""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from adstack.app import create_app
from adstack.core.settings import Settings
from adstack.notifications.worker import FORBIDDEN_DESTINATION
from tests.campaigns.helpers import ad_group, campaign
from tests.console.support import sign_in
from tests.support import Api, expect

SIGNATURE_TOLERANCE_S = 300


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.port = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd calls it by name
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    handler = Inbox()
    handler.port = _free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=handler.port)
    controller.start()
    try:
        yield handler
    finally:
        controller.stop()


class Receiver:
    """A webhook receiver: answers the first `failures` requests 500, then checks each signature itself."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.secret = ""
        self.received: list[tuple[int, dict[str, str], bytes, bool]] = []  # (answer, headers, body, verified)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                verified = receiver.verify(self.headers.get("Adstack-Signature", ""), body)
                answer = 500 if len(receiver.received) < receiver.failures else (200 if verified else 400)
                receiver.received.append((answer, dict(self.headers), body, verified))
                self.send_response(answer)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/adstack"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def verify(self, header: str, body: bytes) -> bool:
        """Stripe's manual verification: split `t=...,v1=...`, HMAC-SHA256 over "<t>.<body>", compare."""
        parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
        if "t" not in parts or "v1" not in parts or not parts["t"].isdigit():
            return False
        expected = hmac.new(self.secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
        fresh = abs(time.time() - int(parts["t"])) <= SIGNATURE_TOLERANCE_S
        return fresh and hmac.compare_digest(expected, parts["v1"])


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    stand_in = Receiver(failures=1)
    try:
        yield stand_in
    finally:
        stand_in.server.shutdown()
        stand_in.server.server_close()


@pytest.fixture
def live_api(settings: Settings, session: Session, inbox: Inbox) -> Iterator[Api]:
    live = settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": inbox.port,
            "webhook_allowed_networks": "127.0.0.0/8",  # the receiver is on loopback, refused by default
            "webhook_retry_base_s": 0.3,
            "notification_interval_s": 0.2,
        }
    )
    with TestClient(create_app(live), raise_server_exceptions=False) as client:
        yield Api(client, session)


def _until(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting for the notification worker")


def test_rejection_mails_the_contact_and_a_signed_webhook_is_retried_until_delivered(
    live_api: Api, inbox: Inbox, receiver: Receiver
) -> None:
    api = live_api
    admin = api.admin()
    adv = api.approved_account(admin)
    created = expect(
        api.client.post(
            "/api/v1/webhooks", headers=adv.headers, json={"url": receiver.url, "event_types": ["review.rejected"]}
        ),
        201,
    )
    receiver.secret = created["secret"]
    assert created["secret"].startswith("whsec_")
    listed = expect(api.client.get("/api/v1/webhooks", headers=adv.headers), 200)
    assert [e["id"] for e in listed] == [created["id"]] and "secret" not in listed[0]  # shown once only

    group = ad_group(api, adv, campaign(api, adv)["id"], name="Jakarta installs")
    expect(api.client.post(f"/api/v1/ad-groups/{group['id']}/submit", headers=adv.headers), 200)
    expect(
        api.client.post(
            f"/api/v1/ad-groups/{group['id']}/review",
            headers=admin.headers,
            json={"decision": "reject", "reasons": ["The landing page cannot be opened"]},
        ),
        200,
    )

    # The e-mail, to the account's contact person (guide 1.3), through the SMTP server.
    contact = expect(api.client.get(f"/api/v1/accounts/{adv.account_id}", headers=adv.headers), 200)["contact_email"]
    mail = _until(lambda: next((m for m in inbox.messages if "did not pass review" in _text(m)), None))
    assert mail["To"] == contact
    assert "Jakarta installs" in _text(mail) and "The landing page cannot be opened" in _text(mail)
    assert "未通过审核" in _text(mail)

    # The webhook: the first try answered 500, the retry was verified and accepted.
    _until(lambda: any(answer == 200 for answer, *_ in receiver.received))
    assert [answer for answer, *_ in receiver.received] == [500, 200]
    assert all(verified for *_, verified in receiver.received)
    first, second = receiver.received[0][2], receiver.received[1][2]
    assert first == second  # the same signed body on every try
    event = json.loads(second)
    assert event["type"] == "review.rejected" and event["account_id"] == adv.account_id
    assert event["data"]["object_type"] == "ad_group" and event["data"]["object_id"] == group["id"]
    assert event["data"]["reasons"] == ["The landing page cannot be opened"]
    # The receiver has answered; the worker records the answer a moment later.
    def recorded() -> list[dict[str, Any]] | None:
        listed = expect(api.client.get(f"/api/v1/webhooks/{created['id']}/deliveries", headers=adv.headers), 200)
        return listed if all(d["status"] != "pending" for d in listed) else None

    deliveries = _until(recorded)
    assert [(d["status"], d["attempts"]) for d in deliveries] == [("delivered", 2)]
    assert [a["status_code"] for a in deliveries[0]["attempt_log"]] == [500, 200]

    # A receiver that does not hold the secret cannot be fooled: the signature depends on it.
    receiver.secret = "whsec_wrong"
    assert not receiver.verify(receiver.received[1][1]["Adstack-Signature"], second)


def test_the_notification_list_in_the_console_in_both_languages(live_api: Api) -> None:
    api = live_api
    admin = api.admin()
    adv = api.approved_account(admin)
    group = ad_group(api, adv, campaign(api, adv)["id"], name="Delhi banner")
    expect(api.client.post(f"/api/v1/ad-groups/{group['id']}/submit", headers=adv.headers), 200)
    expect(
        api.client.post(
            f"/api/v1/ad-groups/{group['id']}/review",
            headers=admin.headers,
            json={"decision": "reject", "reasons": ["Blurred image"]},
        ),
        200,
    )
    listed = expect(api.client.get("/api/v1/notifications?unread=true", headers=adv.headers), 200)
    rejected = next(n for n in listed if n["event_type"] == "review.rejected")
    assert rejected["data"]["object_name"] == "Delhi banner" and rejected["read_at"] is None

    assert sign_in(api.client, adv.email, "correct horse battery").status_code == 303
    page = api.client.get("/console/notifications")
    assert page.status_code == 200
    assert 'The ad group "Delhi banner" did not pass review: Blurred image' in html.unescape(page.text)
    assert f'data-notification="{rejected["id"]}" data-read="no"' in page.text
    api.client.cookies.set("adstack_lang", "zh")
    zh = api.client.get("/console/notifications")
    api.client.cookies.delete("adstack_lang")
    assert "广告组“Delhi banner”未通过审核：Blurred image" in html.unescape(zh.text) and "通知" in zh.text

    # Marking read is per user, and another tenant cannot touch it.
    other = api.approved_account(admin)
    expect(api.client.post(f"/api/v1/notifications/{rejected['id']}/read", headers=other.headers), 404)
    expect(api.client.post(f"/api/v1/notifications/{rejected['id']}/read", headers=adv.headers), 204)
    after = expect(api.client.get("/api/v1/notifications?unread=true", headers=adv.headers), 200)
    assert rejected["id"] not in [n["id"] for n in after]


def test_webhook_endpoints_are_the_accounts_own(live_api: Api) -> None:
    api = live_api
    admin = api.admin()
    adv, other = api.approved_account(admin), api.approved_account(admin)
    made = expect(
        api.client.post("/api/v1/webhooks", headers=adv.headers, json={"url": "https://hooks.example.com/adstack"}), 201
    )
    assert expect(api.client.get("/api/v1/webhooks", headers=other.headers), 200) == []
    expect(api.client.delete(f"/api/v1/webhooks/{made['id']}", headers=other.headers), 404)
    refused = expect(api.client.post("/api/v1/webhooks", headers=adv.headers, json={"url": "ftp://example.com/x"}), 422)
    assert refused["error"]["fields"][0]["field"].startswith("url")
    expect(
        api.client.post(
            "/api/v1/webhooks",
            headers=admin.headers,
            json={"url": "https://hooks.example.com/x", "account_id": adv.account_id},
        ),
        403,
    )
    expect(api.client.delete(f"/api/v1/webhooks/{made['id']}", headers=adv.headers), 204)
    assert expect(api.client.get("/api/v1/webhooks", headers=adv.headers), 200) == []


def _text(message: Message) -> str:
    payload = message.get_payload(decode=True)
    body = payload.decode("utf-8") if isinstance(payload, bytes) else str(message.get_payload())
    return f"{message['Subject']}\n{body}"


@pytest.mark.parametrize("allowed_to_imports", ["", "127.0.0.0/8"])
def test_without_the_operator_allow_list_a_loopback_receiver_is_refused_and_the_try_recorded(
    api: Api, receiver: Receiver, settings: Settings, allowed_to_imports: str
) -> None:
    """The guarded client refuses special-purpose addresses: an endpoint cannot be used to reach inside. One
    written as such an address, in any notation, is refused when it is made; a name is checked at each delivery
    (what it resolves to may change), which the endpoint made past the first check stands in for here. A network
    the operator allows to imports and connectors (an HDFS cluster) stays closed to webhooks, whose attempt log
    would otherwise map its services."""
    settings.outbound_allowed_networks = allowed_to_imports
    from adstack.accounts import auth
    from adstack.core.outbound import OutboundPolicy, parse_networks
    from adstack.core.security import Encryptor
    from adstack.notifications import service
    from adstack.notifications.models import WebhookEndpointIn

    admin = api.admin()
    adv = api.approved_account(admin)
    port = receiver.url.split(":")[2].split("/")[0]
    for written in (receiver.url, f"http://2130706433:{port}/x", f"http://[::ffff:127.0.0.1]:{port}/x",
                    f"http://api.localhost:{port}/x", "http://169.254.169.254/latest/meta-data/"):
        refused = expect(api.client.post("/api/v1/webhooks", headers=adv.headers, json={"url": written}), 422)
        assert [(f["field"], f["rule"]) for f in refused["error"]["fields"]] == [("url", "public_address")], written
    endpoint, _ = service.create_endpoint(
        api.session, auth.authenticate(api.session, adv.token), WebhookEndpointIn(url=receiver.url),
        lambda s, p, a: adv.account_id or 0, Encryptor(settings.resolved_secret_key),
        OutboundPolicy(allowed_networks=parse_networks("127.0.0.0/8")))
    api.session.commit()
    created = {"id": endpoint.id}
    group = ad_group(api, adv, campaign(api, adv)["id"])
    expect(api.client.post(f"/api/v1/ad-groups/{group['id']}/submit", headers=adv.headers), 200)
    expect(
        api.client.post(f"/api/v1/ad-groups/{group['id']}/review", headers=admin.headers, json={"decision": "approve"}),
        200,
    )
    api.client.app.state.notifications.drain()  # type: ignore[attr-defined]
    deliveries = _until(
        lambda: [
            d
            for d in expect(api.client.get(f"/api/v1/webhooks/{created['id']}/deliveries", headers=adv.headers), 200)
            if d["attempt_log"]
        ]
    )
    assert receiver.received == []
    first = deliveries[0]
    # The policy refuses the address itself: the delivery fails at once rather than asking again and again.
    assert first["status"] == "failed"
    assert [(a["status_code"], a["error"]) for a in first["attempt_log"]] == [(None, FORBIDDEN_DESTINATION)]
    assert first["next_attempt_at"] is None
