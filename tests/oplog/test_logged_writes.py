"""Writes that left no operation-log entry: webhook endpoints, settlement rules and an address an account
manager verifies."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from adstack.oplog.models import ChangeEvent
from tests.support import Actor, Api, expect


def _log(api: Api, actor: Actor, object_type: str) -> list[dict[str, Any]]:
    page = expect(api.client.get("/api/v1/operation-logs", headers=actor.headers,
                                 params={"object_type": object_type}), 200)
    return sorted(page["items"], key=lambda item: item["id"])


def _changes(entry: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {c["field"]: (c["old"], c["new"]) for c in entry["changes"]}


def test_webhook_endpoints_are_logged_on_their_account_without_the_secret(api: Api, session: Session) -> None:
    owner = api.approved_account()
    made = expect(api.client.post("/api/v1/webhooks", headers=owner.headers, json={
        "url": "https://hooks.example.com/adstack", "event_types": ["review.approved"]}), 201)
    expect(api.client.delete(f"/api/v1/webhooks/{made['id']}", headers=owner.headers), 204)
    created, deleted = _log(api, owner, "webhook_endpoint")
    assert (created["operation"], created["object_id"], created["account_id"]) == ("create", made["id"],
                                                                                   owner.account_id)
    assert _changes(created)["url"] == (None, "https://hooks.example.com/adstack")
    assert deleted["operation"] == "delete" and _changes(deleted)["url"] == ("https://hooks.example.com/adstack", None)
    session.expire_all()
    logged = " ".join(str(e.changes) for e in session.scalars(select(ChangeEvent)))
    assert "whsec_" not in logged and made["secret"] not in logged


def test_settlement_rules_are_logged(api: Api) -> None:
    manager = api.admin()
    rule = expect(api.client.post("/api/v1/settlement-rules", headers=manager.headers, json={
        "country": "SG", "entity": "Xiaomi Singapore", "currency": "USD", "contract_version": "SG v1"}), 201)
    expect(api.client.delete(f"/api/v1/settlement-rules/{rule['id']}", headers=manager.headers), 204)
    added, removed = _log(api, manager, "settlement_rule")
    assert (added["operation"], added["object_id"], added["object_name"]) == ("create", rule["id"],
                                                                             "SG Xiaomi Singapore USD")
    assert _changes(added)["contract_version"] == (None, "SG v1")
    assert removed["operation"] == "delete" and _changes(removed)["country"] == ("SG", None)


def test_an_address_an_account_manager_verifies_is_logged_once(api: Api) -> None:
    manager = api.admin()
    user = api.register()
    for _ in range(2):
        expect(api.client.post(f"/api/v1/users/{user.user_id}/verify-email", headers=manager.headers), 200)
    [verified] = [e for e in _log(api, manager, "user") if e["object_id"] == user.user_id]
    assert (verified["operation"], verified["account_id"]) == ("update", user.account_id)
    assert _changes(verified) == {"email_verified": (False, True)}
