"""API keys: scopes (read, write, finance), an expiry, and no key made, listed or revoked by a key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session

from adstack.accounts.models import AccessToken
from adstack.core.timeutil import utcnow
from tests.support import Api, expect

API = "/api/v1"
CAMPAIGN = {
    "objective": "performance",
    "name": "Key campaign",
    "promotion_type": "app_download",
    "package_name": "com.example.keys",
}


def test_a_read_key_reads_and_is_refused_writes_naming_the_missing_scope(api: Api) -> None:
    owner = api.approved_account()
    expect(api.client.post(f"{API}/campaigns", headers=owner.headers, json=CAMPAIGN), 201)
    read = api.api_key(owner, "read")
    assert expect(api.client.get(f"{API}/campaigns", headers=read.headers), 200)["total"] == 1
    refused = api.client.post(f"{API}/campaigns", headers=read.headers, json=CAMPAIGN)
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "missing_scope" and "write" in error["message"]
    assert error["fields"] == [{"field": "scope", "rule": "key_scope", "limit": "write", "actual": ["read"]}]

    write = api.api_key(owner, "write")
    expect(api.client.post(f"{API}/campaigns", headers=write.headers, json=CAMPAIGN), 201)
    assert expect(api.client.get(f"{API}/campaigns", headers=write.headers), 200)["total"] == 2  # any key reads
    # Money needs the finance scope, even for a key that writes.
    money = api.client.post(f"{API}/finance/top-up-requests", headers=write.headers, data={})
    assert money.status_code == 403 and money.json()["error"]["fields"][0]["limit"] == "finance"
    finance = api.api_key(owner, "finance")
    assert (
        api.client.post(f"{API}/finance/top-up-requests", headers=finance.headers, data={}).status_code == 422
    )  # past the gate, to the form's own checks


def test_keys_cannot_make_list_or_revoke_keys(api: Api) -> None:
    owner = api.approved_account()
    key = api.api_key(owner, "read", "write", "finance")
    for method, path, body in (
        ("POST", "/auth/api-keys", {"name": "successor", "scopes": ["read"]}),
        ("GET", "/auth/api-keys", None),
        ("DELETE", "/auth/api-keys/1", None),
        ("POST", "/invitations", {"email": "x@example.com"}),
        ("POST", "/auth/password", {"current_password": "x", "new_password": "y" * 12}),
    ):
        refused = api.client.request(method, f"{API}{path}", headers=key.headers, json=body)
        assert refused.status_code == 403, (method, path, refused.text)
        assert refused.json()["error"]["code"] == "session_required"
    listed = expect(api.client.get(f"{API}/auth/api-keys", headers=owner.headers), 200)
    assert [k["scopes"] for k in listed] == [["finance", "read", "write"]]


def test_a_key_expires_and_a_revoked_key_stops(api: Api, session: Session) -> None:
    owner = api.approved_account()
    created = expect(
        api.client.post(
            f"{API}/auth/api-keys",
            headers=owner.headers,
            json={"name": "nightly export", "scopes": ["read"], "expires_in_days": 7},
        ),
        201,
    )
    expires = datetime.fromisoformat(created["expires_at"].replace("Z", "+00:00"))
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    assert abs(expires - (datetime.now(UTC) + timedelta(days=7))) < timedelta(minutes=1)
    headers = {"Authorization": f"Bearer {created['key']}"}
    expect(api.client.get(f"{API}/auth/me", headers=headers), 200)
    # Seven days pass.
    session.execute(
        update(AccessToken).where(AccessToken.id == created["id"]).values(expires_at=utcnow() - timedelta(seconds=1))
    )
    session.commit()
    assert api.client.get(f"{API}/auth/me", headers=headers).status_code == 401

    other = api.api_key(owner, "read")
    expect(api.client.get(f"{API}/auth/me", headers=other.headers), 200)
    key_id = expect(api.client.get(f"{API}/auth/api-keys", headers=owner.headers), 200)[-1]["id"]
    expect(api.client.delete(f"{API}/auth/api-keys/{key_id}", headers=owner.headers), 200)
    assert api.client.get(f"{API}/auth/me", headers=other.headers).status_code == 401


def test_a_key_gets_no_scope_beyond_its_users_role_and_expiry_is_bounded(api: Api) -> None:
    owner = api.approved_account()
    viewer = api.member(owner, "viewer")
    too_much = api.client.post(
        f"{API}/auth/api-keys", headers=viewer.headers, json={"name": "x", "scopes": ["read", "write"]}
    )
    assert too_much.status_code == 422
    field = too_much.json()["error"]["fields"][0]
    assert field["field"] == "scopes" and field["limit"] == ["read"] and field["actual"] == ["write"]
    expect(api.client.post(f"{API}/auth/api-keys", headers=viewer.headers, json={"name": "x", "scopes": ["read"]}), 201)
    for days in (0, 366):
        refused = api.client.post(
            f"{API}/auth/api-keys", headers=owner.headers, json={"name": "x", "expires_in_days": days}
        )
        assert refused.status_code == 422, refused.text
    # An operator's write key, after the operator is made a viewer, writes no more: the role bounds the key.
    operator = api.member(owner, "operator")
    key = api.api_key(operator, "write")
    expect(api.client.post(f"{API}/campaigns", headers=key.headers, json=CAMPAIGN), 201)
    expect(
        api.client.put(
            f"{API}/users/{operator.user_id}/account-role", headers=owner.headers, json={"account_role": "viewer"}
        ),
        200,
    )
    assert api.client.post(f"{API}/campaigns", headers=key.headers, json=CAMPAIGN).status_code == 403
