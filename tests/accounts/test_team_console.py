"""The console's Users page: invite by e-mail, accept from the mailed link, change a role, revoke; API keys with
scopes and an expiry on the account page; in English and Chinese."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from tests.console.support import csrf_from, post_form, sign_in
from tests.support import Api, expect

TOKEN = r"ain_[A-Za-z0-9_-]+"


def _console(api: Api, email: str, password: str, language: str = "en") -> TestClient:
    browser = TestClient(api.client.app, headers={"Accept-Language": language})
    assert sign_in(browser, email, password).status_code in (302, 303)
    return browser


def test_an_owner_invites_from_the_console_and_the_colleague_accepts_from_the_mail(api: Api) -> None:
    owner = api.approved_account()
    browser = _console(api, owner.email, "correct horse battery")
    sent = post_form(
        browser, "/console/users", "/console/users/invite", {"email": "mei@example.com", "account_role": "operator"}
    )
    assert sent.status_code in (302, 303), sent.text[:500]
    page = browser.get("/console/users")
    assert 'data-invitation="mei@example.com"' in page.text

    # The mailed link opens the acceptance page, signed out.
    token = api.mailed("mei@example.com", TOKEN)
    stranger = TestClient(api.client.app)
    form = stranger.get(f"/console/invitations/accept?token={token}")
    assert form.status_code == 200 and token in form.text
    weak = stranger.post(
        "/console/invitations/accept", data={"token": token, "password": "short", "csrf_token": csrf_from(form.text)}
    )
    assert weak.status_code == 422
    accepted = stranger.post(
        "/console/invitations/accept",
        data={"token": token, "password": "mei's long password", "name": "Mei", "csrf_token": csrf_from(form.text)},
    )
    assert accepted.status_code == 200 and 'data-notice="invitation_accepted"' in accepted.text
    mei = api.login("mei@example.com", "mei's long password")
    assert expect(api.client.get("/api/v1/auth/me", headers=mei.headers), 200)["account_role"] == "operator"

    # The owner makes her a viewer; she can no longer create a campaign.
    page = browser.get("/console/users")
    assert 'data-user="mei@example.com" data-role="operator"' in page.text
    changed = post_form(browser, "/console/users", f"/console/users/{mei.user_id}/role", {"account_role": "viewer"})
    assert changed.status_code in (302, 303)
    assert 'data-user="mei@example.com" data-role="viewer"' in browser.get("/console/users").text
    assert api.client.post("/api/v1/campaigns", headers=mei.headers, json={}).status_code == 403

    # A viewer sees the list but no management controls.
    viewer_browser = _console(api, "mei@example.com", "mei's long password")
    page = viewer_browser.get("/console/users")
    assert page.status_code == 200 and 'id="invite"' not in page.text
    assert (
        post_form(
            viewer_browser,
            "/console/users",
            "/console/users/invite",
            {"email": "x@example.com", "account_role": "owner"},
        ).status_code
        == 403
    )


def test_revoking_from_the_console_spends_the_link_and_the_page_speaks_chinese(api: Api) -> None:
    owner = api.approved_account()
    browser = _console(api, owner.email, "correct horse battery", "zh-CN")
    post_form(
        browser, "/console/users", "/console/users/invite", {"email": "lin@example.com", "account_role": "viewer"}
    )
    page = browser.get("/console/users")
    assert "邀请同事" in page.text and "待接受的邀请" in page.text
    invitation_id = re.search(r"/console/invitations/(\d+)/revoke", page.text)
    assert invitation_id is not None
    post_form(browser, "/console/users", f"/console/invitations/{invitation_id.group(1)}/revoke")
    assert 'data-invitation="lin@example.com"' not in browser.get("/console/users").text
    assert (
        api.client.post(
            "/api/v1/invitations/accept",
            json={"token": api.mailed("lin@example.com", TOKEN), "password": "lin's long password"},
        ).status_code
        == 422
    )


def test_console_keys_have_scopes_and_an_expiry(api: Api) -> None:
    owner = api.approved_account()
    browser = _console(api, owner.email, "correct horse battery")
    made = post_form(
        browser,
        "/console/account",
        "/console/api-keys",
        {"name": "exporter", "scope_read": "on", "scope_finance": "on", "expires_in_days": "30"},
    )
    assert made.status_code == 200
    key = re.search(r'id="new-key"[^>]*>\s*(ask_[A-Za-z0-9_-]+)', made.text)
    assert key is not None
    assert 'data-key="exporter" data-scopes="finance,read"' in made.text
    listed = expect(api.client.get("/api/v1/auth/api-keys", headers=owner.headers), 200)
    assert listed[0]["scopes"] == ["finance", "read"]
    headers = {"Authorization": f"Bearer {key.group(1)}"}
    assert api.client.post("/api/v1/campaigns", headers=headers, json={}).status_code == 403
    too_long = post_form(browser, "/console/account", "/console/api-keys", {"name": "x", "expires_in_days": "400"})
    assert too_long.status_code == 422


def test_the_console_log_marks_on_behalf_edits(api: Api) -> None:
    admin = api.admin()
    advertiser = api.approved_account(admin)
    expect(
        api.client.post(
            "/api/v1/campaigns",
            headers=admin.headers,
            json={
                "account_id": advertiser.account_id,
                "objective": "performance",
                "name": "Set up by support",
                "promotion_type": "app_download",
                "package_name": "com.example.support",
            },
        ),
        201,
    )
    browser = _console(api, advertiser.email, "correct horse battery")
    page = browser.get("/console/logs")
    assert page.status_code == 200 and "data-on-behalf" in page.text
