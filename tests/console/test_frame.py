"""The console frame over HTTP: sessions, CSRF, tenancy, languages and the operation log's client."""

from __future__ import annotations

import logging
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from adstack.accounts import auth, users
from adstack.accounts import service as accounts
from adstack.accounts.models import Account, User
from adstack.app import create_app
from adstack.console import api as console_api
from adstack.oplog.models import ChangeEvent
from adstack.review.models import ReviewStatus
from tests.console.support import csrf_from, post_form, register, sign_in


def _admin(session: Session, email: str = "reviewer@example.org") -> str:
    users.create_admin(session, email=email, password="admin-password")
    session.commit()
    return email


def test_registration_submits_for_review_and_sign_in_sets_a_safe_cookie(client: TestClient, session: Session):
    response = register(client, 1)
    assert response.status_code == 303, response.text[-2000:]
    assert response.headers["location"] == "/console/sign-in?notice=registered_check_mail"
    assert not any(c.startswith("adstack_session=") for c in response.headers.get_list("set-cookie"))
    signed_in = sign_in(client, "user1@example.com", "correct horse battery")
    cookie = next(c for c in signed_in.headers.get_list("set-cookie") if c.startswith("adstack_session="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain http in tests; see the https test below

    account = session.scalar(select(Account).where(Account.company_name == "Example Games (Singapore) Pte. Ltd. 1"))
    assert account is not None and account.review_status == ReviewStatus.UNDER_REVIEW
    assert (
        len(
            accounts.list_documents(
                session,
                auth.principal_for(session.scalars(select(User).where(User.account_id == account.id)).one()),
                account.id,
            )
        )
        == 1
    )
    page = client.get("/console/account", follow_redirects=True)
    assert "Under review" in page.text and account.company_name in page.text

    logged = session.scalars(select(ChangeEvent).where(ChangeEvent.account_id == account.id)).all()
    assert {(e.operation, e.client) for e in logged} >= {("create", "console"), ("submit", "console")}


def test_session_cookie_is_secure_over_https(settings, client: TestClient):
    secure_client = TestClient(client.app, base_url="https://testserver")
    register(secure_client, 2)
    response = sign_in(secure_client, "user2@example.com", "correct horse battery")
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("adstack_session="))
    assert "Secure" in cookie


def test_registration_errors_name_the_field_and_keep_what_was_typed(client: TestClient):
    response = register(client, 3, password="short", company_name="Acme（中国）Ltd")
    assert response.status_code == 422
    assert 'data-error-for="password"' in response.text
    assert "Acme（中国）Ltd" in response.text


def test_forms_without_the_csrf_token_are_refused(client: TestClient, session: Session):
    register(client, 4)
    account_id = session.scalar(select(Account.id))
    no_token = client.post(
        f"/console/accounts/{account_id}/edit", data={"contact_name": "Mallory"}, follow_redirects=False
    )
    assert no_token.status_code == 403
    wrong_token = client.post(
        f"/console/accounts/{account_id}/edit",
        data={"contact_name": "Mallory", "csrf_token": "forged"},
        follow_redirects=False,
    )
    assert wrong_token.status_code == 403
    assert session.get(Account, account_id).contact_name == "Li Wei"  # type: ignore[union-attr]

    page = client.get(f"/console/accounts/{account_id}")
    header = client.post(
        f"/console/accounts/{account_id}/edit",
        data={"contact_name": "Wang Fang"},
        headers={"X-CSRF-Token": csrf_from(page.text)},
        follow_redirects=False,
    )
    assert header.status_code == 303
    session.expire_all()
    assert session.get(Account, account_id).contact_name == "Wang Fang"  # type: ignore[union-attr]


def test_sign_in_form_also_needs_its_token(client: TestClient, session: Session):
    email = _admin(session)
    refused = client.post(
        "/console/sign-in", data={"email": email, "password": "admin-password"}, follow_redirects=False
    )
    assert refused.status_code == 403
    assert sign_in(client, email, "admin-password").status_code == 303


def test_an_advertiser_cannot_open_another_advertisers_pages(settings, client: TestClient, session: Session):
    register(client, 5)
    other = TestClient(client.app)
    register(other, 6)
    mine, theirs = session.scalars(select(Account.id).order_by(Account.id)).all()
    assert client.get(f"/console/accounts/{mine}").status_code == 200
    foreign = client.get(f"/console/accounts/{theirs}")
    missing = client.get("/console/accounts/999999")
    assert foreign.status_code == missing.status_code == 404
    assert "Example Games (Singapore) Pte. Ltd. 6" not in foreign.text
    page = client.get(f"/console/accounts/{mine}")
    posted = client.post(
        f"/console/accounts/{theirs}/edit", data={"contact_name": "x", "csrf_token": csrf_from(page.text)}
    )
    assert posted.status_code == 404
    assert client.get("/console/admin/review").status_code == 403


def test_signed_out_visitors_are_sent_to_sign_in(client: TestClient):
    response = client.get("/console/logs?q=abc", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/console/sign-in?next=/console/logs%3Fq%3Dabc"


def test_review_queue_approves_through_the_console_and_logs_it(client: TestClient, session: Session):
    register(client, 7)
    account_id = session.scalar(select(Account.id))
    admin_client = TestClient(client.app)
    sign_in(admin_client, _admin(session), "admin-password")
    queue = admin_client.get("/console/admin/review")
    assert f'data-review-row="account-{account_id}"' in queue.text
    rejected = post_form(
        admin_client,
        "/console/admin/review",
        f"/console/admin/review/account/{account_id}",
        {"decision": "reject", "reasons": "The information is incomplete or inconsistent"},
    )
    assert rejected.status_code == 303
    session.expire_all()
    assert session.get(Account, account_id).review_status == ReviewStatus.REJECTED  # type: ignore[union-attr]
    assert "The information is incomplete" in client.get(f"/console/accounts/{account_id}").text

    assert (
        post_form(client, f"/console/accounts/{account_id}", f"/console/accounts/{account_id}/submit").status_code
        == 303
    )
    assert (
        post_form(
            admin_client,
            "/console/admin/review",
            f"/console/admin/review/account/{account_id}",
            {"decision": "approve"},
        ).status_code
        == 303
    )
    session.expire_all()
    assert session.get(Account, account_id).review_status == ReviewStatus.APPROVED  # type: ignore[union-attr]
    log = admin_client.get("/console/logs?object_type=account")
    assert re.search(r'data-operation="approve" data-client="console"', log.text)
    csv = admin_client.get("/console/logs/export.csv?operation=reject")
    assert csv.headers["content-type"].startswith("text/csv")
    assert ",reject,review_status,under_review,rejected,reviewer@example.org,admin,console" in csv.text


def test_language_switch_is_remembered_on_the_user(client: TestClient, session: Session):
    register(client, 8)
    assert (
        post_form(client, "/console/account", "/console/language", {"language": "zh", "next": "/console/logs"}).headers[
            "location"
        ]
        == "/console/logs"
    )
    user = session.scalars(select(User).where(User.account_id.is_not(None))).one()
    session.refresh(user)
    assert user.locale == "zh"
    assert "操作日志" in client.get("/console/logs").text
    client.cookies.delete("adstack_lang", path="/console")
    client.cookies.clear()
    # A new sign-in on another browser follows the stored choice.
    fresh = TestClient(client.app)
    sign_in(fresh, user.email, "correct horse battery")
    assert "操作日志" in fresh.get("/console/logs").text


def test_open_redirects_are_refused_after_sign_in(client: TestClient, session: Session):
    email = _admin(session, "second@example.org")
    page = client.get("/console/sign-in?next=https://evil.example/")
    response = client.post(
        "/console/sign-in",
        data={
            "email": email,
            "password": "admin-password",
            "next": "https://evil.example/",
            "csrf_token": csrf_from(page.text),
        },
        follow_redirects=False,
    )
    assert response.headers["location"] == "/console/"


def test_assets_are_served_locally(client: TestClient):
    html = client.get("/console/sign-in").text
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources and all(s.startswith("/console/") for s in sources), sources
    assert client.get("/console/static/console.css").status_code == 200
    assert client.get("/console/vendor/not-a-whitelisted-file.js").status_code == 404
    csp = client.get("/console/sign-in").headers["content-security-policy"]
    assert "script-src 'self'" in csp


def test_unicode_digits_in_page_parameters_are_ignored_not_errors(client: TestClient, session: Session):
    """'²' passes str.isdigit() but not int(): every numeric parameter of the console's lists reads it as absent."""
    assert sign_in(client, _admin(session), "admin-password").status_code == 303
    for path in ("/console/ads", "/console/finance", "/console/logs", "/console/media-center", "/console/audiences",
                 "/console/apps", "/console/connectors", "/console/users"):
        for params in ({"q": "²"}, {"page": "²", "size": "①"}, {"account_id": "²"}, {"ids": "²"}):
            response = client.get(path, params=params)
            assert response.status_code < 500, (path, params, response.status_code)


def test_a_start_without_the_browser_libraries_says_which_are_missing(
    settings, tmp_path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    monkeypatch.setattr(console_api, "VENDOR_DIR", tmp_path / "node_modules")  # nothing installed there
    with caplog.at_level(logging.WARNING, logger="adstack.console"), TestClient(create_app(settings)):
        pass
    warnings = [r.getMessage() for r in caplog.records if r.name == "adstack.console"]
    assert len(warnings) == 1
    assert "htmx.min.js" in warnings[0] and "chart.umd.js" in warnings[0] and "scripts/setup.sh" in warnings[0]


def test_a_start_with_the_browser_libraries_installed_warns_of_nothing(
    settings, caplog: pytest.LogCaptureFixture
):
    assert console_api.missing_vendor_assets() == []  # scripts/setup.sh installed them
    with caplog.at_level(logging.WARNING, logger="adstack.console"), TestClient(create_app(settings)):
        pass
    assert [r.getMessage() for r in caplog.records if r.name == "adstack.console"] == []
