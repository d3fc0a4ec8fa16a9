"""An agency whose sub-accounts settle in two currencies: data analysis, the ad list's metric columns and the
media center work by default, each row's money in its own account's currency, never added up across currencies."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from fastapi.testclient import TestClient

from adstack.core.settings import Settings
from adstack.core.timeutil import utcnow
from adstack.events.models import Event, EventType
from adstack.events.service import get_event_store
from tests.console.support import sign_in
from tests.support import Api, expect


@dataclass
class TwoCurrencies:
    usd_sub: int
    inr_sub: int
    usd_campaign: int
    inr_campaign: int


def _browser(client: TestClient, email: str, lang: str = "en") -> TestClient:
    browser = TestClient(client.app, raise_server_exceptions=False)
    browser.cookies.set("adstack_lang", lang, path="/console")
    assert sign_in(browser, email, "correct horse battery").status_code == 303
    return browser


def _agency(api: Api, settings: Settings, email: str) -> TwoCurrencies:
    admin = api.admin()
    agency = api.approved_account(admin, type="agency", email=email)
    usd = api.sub_account(agency, admin, company_name="USD Sub")
    inr = api.sub_account(agency, admin, company_name="INR Sub", currency="INR", country="IN",
                          settlement_entity="Xiaomi India")
    campaigns = [expect(api.client.post("/api/v1/campaigns", headers=agency.headers, json={
        "account_id": account, "objective": "performance", "name": f"{name} camp", "promotion_type": "app_download",
        "package_name": "com.example.game"}), 201)["id"] for account, name in ((usd, "USD"), (inr, "INR"))]
    at = utcnow().replace(microsecond=0)
    store = get_event_store(settings)
    store.append([Event(event_id=f"{account}-i{n}", event_type=EventType.IMPRESSION, occurred_at=at,
                        account_id=account, campaign_id=campaign)
                  for account, campaign, count in ((usd, campaigns[0], 3), (inr, campaigns[1], 7))
                  for n in range(count)])
    store.append([Event(event_id="c-usd", event_type=EventType.CHARGE, occurred_at=at, account_id=usd,
                        campaign_id=campaigns[0], cost_micros=10_000_000),
                  Event(event_id="c-inr", event_type=EventType.CHARGE, occurred_at=at, account_id=inr,
                        campaign_id=campaigns[1], cost_micros=830_000_000)])
    store.flush()
    return TwoCurrencies(usd, inr, campaigns[0], campaigns[1])


def _text(fragment: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", fragment))).strip()


def _table(page: str, table_id: str) -> tuple[list[str], str]:
    table = page.split(f'id="{table_id}"')[1].split("</table>")[0]
    body = table.split("<tbody>")[1].split("</tbody>")[0]
    return [_text(tr) for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)], _text(table.split("<tfoot>")[1])


def test_the_default_report_has_a_row_per_account_in_its_currency(client: TestClient, api: Api,
                                                                   settings: Settings) -> None:
    subs = _agency(api, settings, "two-cur@example.com")
    for lang in ("en", "zh"):
        page = _browser(client, "two-cur@example.com", lang).get("/console/reports", params={
            "metrics": ["impressions", "cost_micros"]})
        assert page.status_code == 200 and 'id="report-errors"' not in page.text, page.text[-2000:]
        rows, totals = _table(page.text, "report-table")
        inr = [r for r in rows if "INR Sub" in r]
        usd = [r for r in rows if "USD Sub" in r]
        assert len(inr) == 1 and "₹830.00" in inr[0] and "$" not in inr[0], rows
        assert len(usd) == 1 and "$10.00" in usd[0] and "₹" not in usd[0], rows
        # Counts add up; money of two currencies does not.
        assert "10" in totals and "—" in totals and "$" not in totals and "₹" not in totals, totals
        assert 'id="mixed-currencies"' in page.text
        assert re.search(r'name="dimensions" value="account"\s+checked', page.text)
    assert subs.inr_sub != subs.usd_sub


def test_the_ad_list_shows_each_rows_metrics_in_its_currency(client: TestClient, api: Api,
                                                              settings: Settings) -> None:
    subs = _agency(api, settings, "two-cur2@example.com")
    page = _browser(client, "two-cur2@example.com").get("/console/ads/campaigns", params={
        "cols": ["impressions", "cost"]})
    assert page.status_code == 200

    def cells(campaign: int) -> dict[str, str]:
        row = re.search(rf'<tr id="row-campaigns-{campaign}".*?</tr>', page.text, re.S)
        assert row, campaign
        return {k: _text(v) for k, v in re.findall(r'data-column="(\w+)">(.*?)</td>', row.group(0), re.S)}

    assert cells(subs.inr_campaign) == {"account": "INR Sub", "impressions": "7", "cost": "₹830.00"}
    assert cells(subs.usd_campaign) == {"account": "USD Sub", "impressions": "3", "cost": "$10.00"}


def test_the_media_center_asks_for_one_account_and_shows_it(client: TestClient, api: Api,
                                                             settings: Settings) -> None:
    subs = _agency(api, settings, "two-cur3@example.com")
    for lang, sentence in (("en", "Your accounts settle in different currencies (INR, USD): choose one account."),
                           ("zh", "您的账户以不同币种结算（INR, USD）：请选择一个账户。")):
        browser = _browser(client, "two-cur3@example.com", lang)
        page = browser.get("/console/media-center")
        assert page.status_code == 200
        beside = re.findall(r'data-error-for="account_id"[^>]*>(.*?)</div>', page.text)
        assert [html.unescape(m) for m in beside] == [sentence]
        assert f'<option value="{subs.inr_sub}"' in page.text and "account_ids" not in page.text
    chosen = browser.get("/console/media-center", params={"account_id": subs.inr_sub})
    assert chosen.status_code == 200 and 'id="media-center"' in chosen.text and "data-error-for" not in chosen.text
