"""The finance page's three forms (top-up, top-up request, transfer) share the service's field names: a refused
form keeps what was typed in it, and its refusal shows in it alone."""

from __future__ import annotations

import html
import re

from fastapi.testclient import TestClient

from tests.console.html_forms import as_data, form_fields, with_values
from tests.console.support import sign_in
from tests.support import Api

FORMS = {"top_up": "/console/finance/top-ups", "top_up_request": "/console/finance/top-up-requests",
         "transfer": "/console/finance/transfers"}


def _browser(client: TestClient, email: str, password: str) -> TestClient:
    browser = TestClient(client.app, raise_server_exceptions=False)
    assert sign_in(browser, email, password).status_code == 303
    return browser


def _form_html(page: str, action: str) -> str:
    match = re.search(rf'<form[^>]*action="{re.escape(action)}".*?</form>', page, re.S)
    assert match, action
    return match.group(0)


def _messages(form_html: str) -> list[str]:
    return [html.unescape(m) for m in re.findall(r'class="error-text"[^>]*>(.*?)</div>', form_html, re.S)]


def test_a_refused_transfer_keeps_its_values_and_says_why_in_its_own_form(client: TestClient, api: Api) -> None:
    admin = api.admin()
    agency = api.approved_account(admin, type="agency", email="keeps@example.com")
    api.sub_account(agency, admin)
    second = api.sub_account(agency, admin)
    browser = _browser(client, "keeps@example.com", "correct horse battery")
    action, fields = form_fields(browser.get("/console/finance").text, action=FORMS["transfer"])
    # Nothing to reclaim: the sub-account has no balance.
    refused = browser.post(action, data=as_data(with_values(
        fields, kind="reclaim", sub_account_id=str(second), transfer_amount="3.25", transfer_remarks="pull back")))
    assert refused.status_code in (409, 422), refused.text[-800:]
    _, again = form_fields(refused.text, action=FORMS["transfer"])
    kept = {k: v for k, v in again if k in ("kind", "sub_account_id", "transfer_amount", "transfer_remarks")}
    assert kept == {"kind": "reclaim", "sub_account_id": str(second), "transfer_amount": "3.25",
                    "transfer_remarks": "pull back"}
    assert len(_messages(_form_html(refused.text, FORMS["transfer"]))) == 1
    assert _messages(_form_html(refused.text, FORMS["top_up_request"])) == []
    _, request_fields = form_fields(refused.text, action=FORMS["top_up_request"])
    assert dict(request_fields).get("request_amount") == ""


def test_a_refused_top_up_request_keeps_its_values_in_its_own_form(client: TestClient, api: Api) -> None:
    admin = api.admin()
    agency = api.approved_account(admin, type="agency", email="keeps2@example.com")
    sub = api.sub_account(agency, admin)
    browser = _browser(client, "keeps2@example.com", "correct horse battery")
    action, fields = form_fields(browser.get("/console/finance").text, action=FORMS["top_up_request"])
    refused = browser.post(action, data=as_data(with_values(
        fields, request_account_id=str(sub), request_amount="0", request_remarks="wire 42")))
    assert refused.status_code == 422
    _, again = form_fields(refused.text, action=FORMS["top_up_request"])
    assert {k: v for k, v in again if k.startswith("request_")} == {
        "request_account_id": str(sub), "request_amount": "0", "request_remarks": "wire 42"}
    assert _messages(_form_html(refused.text, FORMS["top_up_request"]))
    assert _messages(_form_html(refused.text, FORMS["transfer"])) == []
    _, transfer_fields = form_fields(refused.text, action=FORMS["transfer"])
    assert dict(transfer_fields)["kind"] == "transfer" and dict(transfer_fields)["transfer_amount"] == ""

