"""Every console form, sent with the invalid values people type (an empty name, a bid of "abc", an end before the
start, a frequency cap of -1, a web address that is not one...), answers with a sentence beside each input at
fault, in English and in Chinese, and never with a field code, a pattern, an API path or micros."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from fastapi.testclient import TestClient

from tests.campaigns.helpers import approved_ad_group, campaign
from tests.console.html_forms import as_data, form_fields, with_values
from tests.console.support import sign_in
from tests.support import Actor, Api, expect

MACHINE_TALK = re.compile(
    r"/api/v\d|\^|\\[dws]|micros\b|_micros|String should|Input should|Value error|"
    r"\(limit: |\b(GET|POST|PUT|PATCH|DELETE) /|pydantic|Traceback|\{'"
)
# A field's code (click_url, frequency_cap_per_day): people read labels, never these.
FIELD_CODE = re.compile(r"\b[a-z]+(?:_[a-z0-9]+)+\b")
# Latin words allowed in a Chinese sentence: web schemes, ids' names, the currency.
LATIN_IN_CHINESE = {
    "http",
    "https",
    "GAID",
    "MD5",
    "SHA",
    "URL",
    "ID",
    "IDs",
    "TXT",
    "PDF",
    "PNG",
    "JPEG",
    "USD",
    "e-mail",
    "API",
    "CPM",
    "CPC",
}


@dataclass
class Setting:
    """What the forms are tried on: an advertiser with a campaign and an approved ad group, and an admin."""

    advertiser: Actor
    admin: Actor
    agency: Actor  # with one sub-account
    campaign_id: int
    ad_group_id: int
    app_id: int


@dataclass
class Case:
    name: str
    who: str  # "visitor", "advertiser", "agency" or "admin"
    page: Callable[[Setting], str]
    action: Callable[[Setting], str]
    values: dict[str, str]
    inputs: tuple[str, ...]  # ids of the inputs that must each show a message
    form_id: str | None = None
    files: dict[str, tuple[str, bytes, str]] = field(default_factory=dict)


CASES = [
    Case(
        "registration",
        "visitor",
        lambda s: "/console/register",
        lambda s: "/console/register",
        {
            "company_name": "",
            "contact_email": "not-an-email",
            "email": "new-user@example.com",
            "password": "correct horse battery",
            "accept_agreement": "on",
        },
        ("company_name", "contact_email"),
    ),
    Case(
        "campaign",
        "advertiser",
        lambda s: "/console/ads/new",
        lambda s: "/console/ads/new",
        {"name": "", "promotion_type": "non_download", "landing_kind": "h5", "landing_url": "not a web address"},
        ("name", "landing_url"),
        form_id="campaign-form",
    ),
    Case(
        "ad group",
        "advertiser",
        lambda s: f"/console/ads/campaigns/{s.campaign_id}/ad-groups/new",
        lambda s: f"/console/ads/campaigns/{s.campaign_id}/ad-groups/new",
        {
            "name": "",
            "bid": "abc",
            "start_at": "2031-05-02T10:00",
            "end_at": "2031-05-01T10:00",
            "frequency_cap_per_day": "-1",
        },
        ("name", "bid", "end_at", "frequency_cap_per_day"),
        form_id="ad-group-form",
    ),
    Case(
        "creative",
        "advertiser",
        lambda s: f"/console/ads/ad-groups/{s.ad_group_id}/creatives/new",
        lambda s: f"/console/ads/ad-groups/{s.ad_group_id}/creatives/new",
        {"name": "", "click_url": "not a web address", "language": "zz"},
        ("name", "click_url", "language"),
        form_id="creative-form",
    ),
    Case(
        "audience upload",
        "advertiser",
        lambda s: "/console/audiences",
        lambda s: "/console/audiences",
        {"name": ""},
        ("a-name", "a-file"),
        form_id="upload-audience",
    ),
    Case(
        "label audience",
        "advertiser",
        lambda s: "/console/audiences/labels/new",
        lambda s: "/console/audiences/labels/new",
        {"name": ""},
        ("l-name",),
    ),
    Case(
        "top-up request",
        "advertiser",
        lambda s: "/console/finance",
        lambda s: "/console/finance/top-up-requests",
        {"request_amount": "abc"},
        ("request_amount", "proof"),
    ),
    Case(
        "app",
        "advertiser",
        lambda s: "/console/apps",
        lambda s: "/console/apps",
        {"name": "", "package_name": "com.example.game", "click_lookback_days": "-1"},
        ("name", "click_lookback_days"),
    ),
    Case(
        "app settings",
        "advertiser",
        lambda s: f"/console/apps/{s.app_id}",
        lambda s: f"/console/apps/{s.app_id}/edit",
        {"name": "", "view_through_hours": "-1"},
        ("name", "view_through_hours"),
    ),
    Case(
        "connector",
        "advertiser",
        lambda s: "/console/connectors",
        lambda s: "/console/connectors",
        {"name": "", "api_token": ""},
        ("name", "api_token"),
    ),
    Case(
        "invitation",
        "advertiser",
        lambda s: "/console/users",
        lambda s: "/console/users/invite",
        {"email": "not-an-email"},
        ("invite-email",),
    ),
    Case(
        "account",
        "advertiser",
        lambda s: f"/console/accounts/{s.advertiser.account_id}",
        lambda s: f"/console/accounts/{s.advertiser.account_id}/edit",
        {"contact_email": "not-an-email", "low_balance_threshold": "abc"},
        ("edit_contact_email", "edit_threshold"),
    ),
    Case(
        "password",
        "advertiser",
        lambda s: "/console/security",
        lambda s: "/console/security/password",
        {"current_password": "not the password", "new_password": "a new password 1"},
        ("current_password",),
    ),
    Case(
        "new password",
        "advertiser",
        lambda s: "/console/security",
        lambda s: "/console/security/password",
        {"current_password": "correct horse battery", "new_password": "short"},
        ("new_password",),
    ),
    Case(
        "sub-account",
        "agency",
        lambda s: f"/console/accounts/{s.agency.account_id}",
        lambda s: f"/console/accounts/{s.agency.account_id}/sub-accounts",
        {"company_name": "", "contact_email": "not-an-email"},
        ("sub_company_name", "sub_contact_email"),
    ),
    Case(
        "transfer",
        "agency",
        lambda s: "/console/finance",
        lambda s: "/console/finance/transfers",
        {"transfer_amount": "abc"},
        ("transfer_amount",),
    ),
    Case(
        "top-up",
        "admin",
        lambda s: "/console/finance",
        lambda s: "/console/finance/top-ups",
        {"amount": "abc"},
        ("amount",),
    ),
    Case(
        "credit line",
        "admin",
        lambda s: "/console/finance/credit-lines",
        lambda s: "/console/finance/credit-lines",
        {"limit": "abc", "starts_on": "2031-05-02", "ends_on": "2031-05-01"},
        ("limit", "ends_on"),
    ),
    Case(
        "publisher",
        "admin",
        lambda s: "/console/admin/inventory",
        lambda s: "/console/admin/inventory/publishers",
        {"name": "", "app_package": "com.example.app", "country": "ID"},
        ("p-name",),
    ),
    Case(
        "ad space",
        "admin",
        lambda s: "/console/admin/inventory",
        lambda s: "/console/admin/inventory/ad-spaces",
        {"space_name": "", "reserve_price": "abc"},
        ("s-name", "s-reserve"),
    ),
    Case(
        "announcement",
        "admin",
        lambda s: "/console/announcements",
        lambda s: "/console/announcements",
        {"title": "", "body": ""},
        ("title",),
    ),
]


def messages_beside(html: str, input_id: str) -> list[str] | None:
    """The messages in the field box (`<div class="field">`) that holds the input; None without the input."""
    at = html.find(f'id="{input_id}"')
    if at < 0:
        return None
    start = html.rfind('<div class="field"', 0, at)
    ends = [i for i in (html.find('<div class="field', at), html.find("</form>", at)) if i >= 0]
    box = html[start : min(ends)]
    return [
        re.sub(r"<[^>]+>", "", m).strip() for m in re.findall(r'<div class="error-text"[^>]*>(.*?)</div>', box, re.S)
    ]


def problems_of(message: str, language: str) -> list[str]:
    found = []
    if not message:
        found.append("empty")
    if MACHINE_TALK.search(message):
        found.append(f"machine talk: {MACHINE_TALK.search(message).group(0)}")  # type: ignore[union-attr]
    if FIELD_CODE.search(message):
        found.append(f"field code: {FIELD_CODE.search(message).group(0)}")  # type: ignore[union-attr]
    if language == "zh":
        if not re.search(r"[\u4e00-\u9fff]", message):
            found.append("no Chinese")
        words = re.findall(r"[A-Za-z][A-Za-z-]{2,}", re.sub(r"\S+@\S+|https?://", "", message))  # an example address
        english = [w for w in words if w not in LATIN_IN_CHINESE]
        if english:
            found.append(f"English: {english}")
    return found


@pytest.fixture
def setting(api: Api) -> Setting:
    admin = api.admin()
    advertiser = api.approved_account(admin, email="refusals@example.com")
    camp = campaign(api, advertiser)
    group = approved_ad_group(api, advertiser, admin, camp["id"])
    agency = api.approved_account(admin, type="agency", email="refusals-agency@example.com")
    api.sub_account(agency, admin, company_name="Refusals Sub Ltd.")
    app = expect(
        api.client.post(
            "/api/v1/apps", headers=advertiser.headers, json={"name": "Game", "package_name": "com.example.game"}
        ),
        201,
    )
    return Setting(advertiser, admin, agency, camp["id"], group["id"], app["id"])


@pytest.mark.parametrize("language", ["en", "zh"])
def test_every_form_says_what_is_wrong_beside_each_input(client: TestClient, setting: Setting, language: str) -> None:
    clients: dict[str, TestClient] = {}
    for who, email, password in (
        ("advertiser", setting.advertiser.email, "correct horse battery"),
        ("agency", setting.agency.email, "correct horse battery"),
        ("admin", setting.admin.email, "admin-password"),
        ("visitor", None, None),
    ):
        browser = TestClient(client.app, raise_server_exceptions=False)
        browser.cookies.set("adstack_lang", language, path="/console")
        if email is not None:
            assert sign_in(browser, email, str(password)).status_code == 303, who
        clients[who] = browser
    failures: list[str] = []
    for case in CASES:
        browser = clients[case.who]
        page = browser.get(case.page(setting))
        assert page.status_code == 200, (case.name, page.status_code)
        action, fields = form_fields(page.text, case.form_id, action=case.action(setting))
        answer = browser.post(
            action, data=as_data(with_values(fields, **case.values)), files=case.files or None, follow_redirects=False
        )
        if not 400 <= answer.status_code < 500:
            failures.append(f"{case.name}: answered {answer.status_code}")
            continue
        for input_id in case.inputs:
            beside = messages_beside(answer.text, input_id)
            if beside is None:
                failures.append(f"{case.name}: the answer has no input {input_id}")
                continue
            if not beside:
                failures.append(f"{case.name}: no message beside {input_id}")
            for message in beside:
                for problem in problems_of(message, language):
                    failures.append(f"{case.name}: {input_id}: {problem} in {message!r}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("en", "The file has 999 distinct valid ids; at least 1,000 are needed."),
        ("zh", "文件中有 999 个不重复的有效 ID，至少需要 1,000 个。"),
    ],
)
def test_a_refused_audience_file_is_told_beside_the_file_input(
    client: TestClient, api: Api, language: str, expected: str
) -> None:
    api.approved_account(email="audience-refusal@example.com")
    client.cookies.set("adstack_lang", language, path="/console")
    sign_in(client, "audience-refusal@example.com", "correct horse battery")
    page = client.get("/console/audiences")
    action, fields = form_fields(page.text, "upload-audience")
    few = b"\n".join(str(uuid.UUID(int=i + 1)).encode() for i in range(999))
    answer = client.post(
        action,
        data=as_data(with_values(fields, name="Few", id_type="gaid")),
        files={"file": ("few.txt", few, "text/plain")},
    )
    assert answer.status_code == 422
    assert messages_beside(answer.text, "a-file") == [expected]
    assert messages_beside(answer.text, "a-name") == []
    # The name typed stays; no field code anywhere on the page.
    assert 'value="Few"' in answer.text and "<code>" not in answer.text


def test_an_audience_file_that_is_not_txt_is_refused_beside_the_file_input(client: TestClient, api: Api) -> None:
    api.approved_account(email="audience-csv@example.com")
    sign_in(client, "audience-csv@example.com", "correct horse battery")
    page = client.get("/console/audiences")
    action, fields = form_fields(page.text, "upload-audience")
    ids = b"\n".join(str(uuid.UUID(int=i + 1)).encode() for i in range(1000))
    answer = client.post(action, data=as_data(with_values(fields, name="Sheet", id_type="gaid")),
                         files={"file": ("ids.csv", ids, "text/csv")})
    assert answer.status_code == 422
    assert len(messages_beside(answer.text, "a-file")) == 1
    owner = api.login("audience-csv@example.com", "correct horse battery")
    assert api.client.get("/api/v1/audiences", headers=owner.headers).json()["total"] == 0
