"""Several users per account: invitations by e-mail, account roles, agencies' sub-account users."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session

from adstack.accounts.models import Invitation
from adstack.core.timeutil import utcnow
from tests.support import Api, expect

API = "/api/v1"
TOKEN = r"ain_[A-Za-z0-9_-]+"


def _campaign(api: Api, headers: dict[str, str], **extra: object) -> int:
    return api.client.post(
        f"{API}/campaigns",
        headers=headers,
        json={
            **extra,
            "objective": "performance",
            "name": "Spring launch",
            "promotion_type": "app_download",
            "package_name": "com.example.spring",
        },
    ).status_code


def test_an_invited_operator_edits_campaigns_and_a_viewer_only_reads(api: Api) -> None:
    owner = api.approved_account()
    operator = api.member(owner, "operator")
    viewer = api.member(owner, "viewer")
    assert operator.account_id == viewer.account_id == owner.account_id
    me = expect(api.client.get(f"{API}/auth/me", headers=viewer.headers), 200)
    assert me["account_role"] == "viewer"

    assert _campaign(api, operator.headers) == 201
    refused = api.client.post(f"{API}/campaigns", headers=viewer.headers, json={"name": "x"})
    assert refused.status_code == 403
    field = refused.json()["error"]["fields"][0]
    assert field["field"] == "role" and field["rule"] == "permission:operate" and "account operator" in field["limit"]
    listed = expect(api.client.get(f"{API}/campaigns", headers=viewer.headers), 200)
    assert [c["name"] for c in listed["items"]] == ["Spring launch"]

    # Owners manage users; an operator cannot invite or change roles.
    assert (
        api.client.post(f"{API}/invitations", headers=operator.headers, json={"email": "x@example.com"}).status_code
        == 403
    )
    assert (
        api.client.put(
            f"{API}/users/{viewer.user_id}/account-role", headers=operator.headers, json={"account_role": "owner"}
        ).status_code
        == 403
    )
    promoted = expect(
        api.client.put(
            f"{API}/users/{viewer.user_id}/account-role", headers=owner.headers, json={"account_role": "operator"}
        ),
        200,
    )
    assert promoted["account_role"] == "operator"
    assert _campaign(api, viewer.headers) == 201  # the same token, the new role
    users = expect(api.client.get(f"{API}/users", headers=viewer.headers), 200)
    assert {u["email"] for u in users} == {owner.email, operator.email, viewer.email}


def test_the_invitation_mail_is_single_use_and_a_used_or_revoked_token_is_refused(api: Api) -> None:
    owner = api.approved_account()
    invited = expect(
        api.client.post(
            f"{API}/invitations",
            headers=owner.headers,
            json={"email": "New.Colleague@Example.com", "account_role": "operator"},
        ),
        201,
    )
    assert invited["status"] == "pending" and invited["email"] == "new.colleague@example.com"
    token = api.mailed("new.colleague@example.com", TOKEN)
    # A new user needs a password, and a weak one is refused naming the field.
    missing = api.client.post(f"{API}/invitations/accept", json={"token": token})
    assert missing.status_code == 422 and missing.json()["error"]["fields"][0]["field"] == "password"
    user = expect(
        api.client.post(
            f"{API}/invitations/accept",
            json={"token": token, "password": "a colleague's password", "name": "Chen Jing"},
        ),
        200,
    )
    assert user["account_id"] == owner.account_id and user["account_role"] == "operator"
    again = api.client.post(f"{API}/invitations/accept", json={"token": token, "password": "another password 1"})
    assert again.status_code == 422 and again.json()["error"]["fields"][0]["rule"] == "valid_invitation"
    listed = expect(api.client.get(f"{API}/invitations", headers=owner.headers), 200)
    assert [i["status"] for i in listed] == ["accepted"]
    assert api.client.delete(f"{API}/invitations/{invited['id']}", headers=owner.headers).status_code == 409

    second = expect(
        api.client.post(f"{API}/invitations", headers=owner.headers, json={"email": "second@example.com"}), 201
    )
    assert second["account_role"] == "viewer"
    revoked = expect(api.client.delete(f"{API}/invitations/{second['id']}", headers=owner.headers), 200)
    assert revoked["status"] == "revoked"
    refused = api.client.post(
        f"{API}/invitations/accept",
        json={"token": api.mailed("second@example.com", TOKEN), "password": "second password 12"},
    )
    assert refused.status_code == 422
    assert (
        api.client.post(
            f"{API}/auth/login", json={"email": "second@example.com", "password": "second password 12"}
        ).status_code
        == 401
    )


def test_an_expired_invitation_is_refused_and_a_new_one_replaces_the_old(api: Api, session: Session) -> None:
    owner = api.approved_account()
    expect(api.client.post(f"{API}/invitations", headers=owner.headers, json={"email": "late@example.com"}), 201)
    first = api.mailed("late@example.com", TOKEN)
    session.execute(update(Invitation).values(expires_at=utcnow() - timedelta(seconds=1)))
    session.commit()
    listed = expect(api.client.get(f"{API}/invitations", headers=owner.headers), 200)
    assert [i["status"] for i in listed] == ["expired"]
    assert (
        api.client.post(f"{API}/invitations/accept", json={"token": first, "password": "late password 123"}).status_code
        == 422
    )
    expect(api.client.post(f"{API}/invitations", headers=owner.headers, json={"email": "late@example.com"}), 201)
    second = api.mailed("late@example.com", TOKEN)
    assert second != first
    expect(api.client.post(f"{API}/invitations/accept", json={"token": second, "password": "late password 123"}), 200)


def test_accept_links_a_user_of_no_account_and_refuses_a_user_of_another(api: Api) -> None:
    owner = api.approved_account()
    other = api.approved_account()
    # Already a user of another account: one user acts for one account.
    expect(api.client.post(f"{API}/invitations", headers=owner.headers, json={"email": other.email}), 201)
    refused = api.client.post(f"{API}/invitations/accept", json={"token": api.mailed(other.email, TOKEN)})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "user_of_another_account"
    # A member is not invited twice.
    colleague = api.member(owner, "viewer")
    twice = api.client.post(f"{API}/invitations", headers=owner.headers, json={"email": colleague.email})
    assert twice.status_code == 409 and twice.json()["error"]["fields"][0]["field"] == "email"


def test_agency_users_see_sub_accounts_and_sub_accounts_have_their_own_users(api: Api) -> None:
    admin = api.admin()
    agency = api.approved_account(admin, type="agency")
    sub = api.sub_account(agency, admin)
    sibling = api.sub_account(agency, admin)
    # The agency's owner invites a user into its sub-account; that user sees only the sub-account.
    sub_user = api.member(agency, "operator", account_id=sub)
    assert sub_user.account_id == sub
    assert _campaign(api, sub_user.headers) == 201
    seen = expect(api.client.get(f"{API}/accounts", headers=sub_user.headers), 200)
    assert [a["id"] for a in seen] == [sub]
    assert api.client.get(f"{API}/accounts/{sibling}", headers=sub_user.headers).status_code == 404
    # A viewer of the agency sees every sub-account but edits none.
    agency_viewer = api.member(agency, "viewer")
    seen = {a["id"] for a in expect(api.client.get(f"{API}/accounts", headers=agency_viewer.headers), 200)}
    assert seen == {agency.account_id, sub, sibling}
    assert _campaign(api, agency_viewer.headers, account_id=sub) == 403
    assert _campaign(api, agency.headers, account_id=sibling) == 201
    # The sub-account's own user cannot invite into the agency, nor name a sibling.
    foreign = api.client.post(
        f"{API}/invitations", headers=sub_user.headers, json={"email": "x@example.com", "account_id": agency.account_id}
    )
    assert foreign.status_code == 403  # an operator manages no users
    owner_of_sub = api.member(agency, "owner", account_id=sub)
    assert (
        api.client.post(
            f"{API}/invitations", headers=owner_of_sub.headers, json={"email": "x@example.com", "account_id": sibling}
        ).status_code
        == 404
    )
    # The agency's owner manages the sub-account's users; the agency's viewer does not.
    assert (
        api.client.post(f"{API}/users/{sub_user.user_id}/deactivate", headers=agency_viewer.headers).status_code == 403
    )
    expect(api.client.post(f"{API}/users/{sub_user.user_id}/deactivate", headers=agency.headers), 200)
    assert api.client.get(f"{API}/auth/me", headers=sub_user.headers).status_code == 401
