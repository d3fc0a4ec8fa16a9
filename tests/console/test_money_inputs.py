"""Money inputs: a pre-filled amount is the exact stored amount, so a form saved unchanged saves the same micros;
a typed comma is a thousands separator or refused, never dropped."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from adstack.accounts.models import Account
from adstack.console.i18n import Formatter
from tests.campaigns.helpers import approved_ad_group, campaign
from tests.console.html_forms import as_data, form_fields, with_values
from tests.console.support import sign_in
from tests.support import Api, expect


def _browser(client: TestClient, email: str, password: str = "correct horse battery", lang: str = "en"
             ) -> TestClient:
    browser = TestClient(client.app, raise_server_exceptions=False)
    browser.cookies.set("adstack_lang", lang, path="/console")
    assert sign_in(browser, email, password).status_code == 303
    return browser


def test_an_input_shows_the_exact_amount() -> None:
    amount = Formatter("en").amount
    assert [amount(m) for m in (15_000, 1, 1_500_000, 0, 123_456_789, 10**15, None)] == [
        "0.015", "0.000001", "1.50", "0.00", "123.456789", "1000000000.00", ""]


def test_renaming_an_ad_group_keeps_its_sub_cent_bid_and_budgets(client: TestClient, api: Api) -> None:
    admin = api.admin()
    adv = api.approved_account(admin, email="exact@example.com")
    group = approved_ad_group(api, adv, admin, campaign(api, adv)["id"], bid_micros=15_000,
                              daily_budget_micros=50_123_456, total_budget_micros=500_000_001)
    browser = _browser(client, "exact@example.com")
    url = f"/console/ads/ad-groups/{group['id']}/quick-edit"
    _, fields = form_fields(browser.get(url).text)
    assert {k: v for k, v in fields if k in ("bid", "daily_budget", "total_budget")} == {
        "bid": "0.015", "daily_budget": "50.123456", "total_budget": "500.000001"}
    saved = browser.post(url, data=as_data(with_values(fields, name="Renamed")), headers={"HX-Request": "true"})
    assert saved.status_code == 200, saved.text[-800:]
    after = expect(api.client.get(f"/api/v1/ad-groups/{group['id']}", headers=adv.headers), 200)
    assert (after["name"], after["bid_micros"], after["daily_budget_micros"], after["total_budget_micros"]) == (
        "Renamed", 15_000, 50_123_456, 500_000_001)


def test_the_edit_page_and_a_copy_keep_a_sub_cent_bid(client: TestClient, api: Api) -> None:
    admin = api.admin()
    adv = api.approved_account(admin, email="exact2@example.com")
    camp = campaign(api, adv)
    group = approved_ad_group(api, adv, admin, camp["id"], bid_micros=15_000)
    browser = _browser(client, "exact2@example.com")
    action, fields = form_fields(browser.get(f"/console/ads/ad-groups/{group['id']}/edit").text, "ad-group-form")
    assert dict(fields)["bid"] == "0.015"
    saved = browser.post(action, data=as_data(with_values(fields, name="Renamed")), follow_redirects=False)
    assert saved.status_code == 303, saved.text[-1500:]
    assert expect(api.client.get(f"/api/v1/ad-groups/{group['id']}", headers=adv.headers), 200)["bid_micros"] == 15_000
    copy_page = browser.get(f"/console/ads/campaigns/{camp['id']}/ad-groups/new", params={"copy_of": group["id"]})
    assert dict(form_fields(copy_page.text, "ad-group-form")[1])["bid"] == "0.015"


def test_the_low_balance_threshold_shows_exactly(client: TestClient, api: Api, session: Session) -> None:
    adv = api.approved_account(email="exact3@example.com")
    account = session.get(Account, adv.account_id)
    assert account is not None
    account.low_balance_threshold_micros = 1_234_567
    session.commit()
    page = _browser(client, "exact3@example.com").get(f"/console/accounts/{adv.account_id}")
    match = re.search(r'id="edit_threshold"[^>]*value="([^"]*)"', page.text)
    assert match and match.group(1) == "1.234567"


def _top_up(browser: TestClient, account_id: int, amount: str) -> tuple[int, list[str]]:
    action, fields = form_fields(browser.get("/console/finance").text, action="/console/finance/top-ups")
    response = browser.post(action, data=as_data(with_values(fields, account_id=str(account_id), amount=amount)),
                            follow_redirects=False)
    return response.status_code, re.findall(r'data-error-for="amount"[^>]*>(.*?)</div>', response.text)


def test_a_decimal_comma_is_refused_and_a_thousands_comma_taken(client: TestClient, api: Api) -> None:
    admin = api.admin()
    adv = api.approved_account(admin)

    def balance() -> int:
        path = f"/api/v1/finance/accounts/{adv.account_id}/balance"
        return int(expect(api.client.get(path, headers=adv.headers), 200)["balance_micros"])

    for lang, sentence in (("en", "Amount must be a number, like 12.50."), ("zh", "金额必须是数字")):
        browser = _browser(client, admin.email, "admin-password", lang=lang)
        for typed in ("1,5", "12,34", "1.500,25", "1,5000", "0,015", "0,500", "00,250"):
            status, messages = _top_up(browser, adv.account_id, typed)
            assert status == 422 and len(messages) == 1 and sentence in messages[0], (typed, messages)
    assert balance() == 0
    assert _top_up(browser, adv.account_id, "1,500.25")[0] == 303
    assert balance() == 1_500_250_000


def test_a_limit_below_a_cent_is_told_exactly(client: TestClient, api: Api) -> None:
    admin = api.admin()
    adv = api.approved_account(admin, email="limit@example.com")
    camp = campaign(api, adv)
    url = f"/console/ads/campaigns/{camp['id']}/ad-groups/new"
    for lang, sentence in (("en", "Bid must be at least $0.000001."), ("zh", "出价不能低于 US$0.000001。")):
        browser = _browser(client, "limit@example.com", lang=lang)
        action, fields = form_fields(browser.get(url).text, "ad-group-form")
        refused = browser.post(action, data=as_data(with_values(fields, name="G", bid="0.0000004")))
        assert refused.status_code == 422
        assert re.findall(r'data-error-for="bid_micros"[^>]*>(.*?)</div>', refused.text) == [sentence]
    browser = _browser(client, admin.email, "admin-password")
    action, fields = form_fields(browser.get("/console/finance").text, action="/console/finance/top-ups")
    refused = browser.post(action, data=as_data(with_values(fields, account_id=str(adv.account_id), amount="0")))
    assert refused.status_code == 422
    assert re.findall(r'data-error-for="amount_micros"[^>]*>(.*?)</div>', refused.text) == [
        "Amount must be at least $0.000001."]


def test_a_sub_cent_bid_is_shown_exactly_where_it_is_listed(client: TestClient, api: Api) -> None:
    admin = api.admin()
    adv = api.approved_account(admin, email="exact-list@example.com")
    camp = campaign(api, adv)
    group = approved_ad_group(api, adv, admin, camp["id"], bid_micros=15_000)
    browser = _browser(client, "exact-list@example.com")
    for page in ("/console/ads/ad-groups", f"/console/ads/ad-groups/{group['id']}",
                 f"/console/ads/campaigns/{camp['id']}"):
        text = browser.get(page).text
        assert "$0.015" in text and "$0.02" not in text, page
