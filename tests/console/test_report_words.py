"""Data analysis in words people read: where conversions came from in the visitor's language (the API keeps
its codes), and a day that is no date refused on its field as typed."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime

from fastapi.testclient import TestClient

from adstack.core.settings import Settings
from adstack.events.models import Event, EventType
from adstack.events.service import get_event_store
from tests.console.support import sign_in
from tests.support import Api, expect

AT = datetime(2025, 5, 20, 6, tzinfo=UTC)
DAY = {"start_date": "2025-05-20", "end_date": "2025-05-20"}


def _browser(client: TestClient, email: str, lang: str) -> TestClient:
    browser = TestClient(client.app, raise_server_exceptions=False)
    browser.cookies.set("adstack_lang", lang, path="/console")
    assert sign_in(browser, email, "correct horse battery").status_code == 303
    return browser


def _rows(page: str) -> list[str]:
    body = page.split('id="report-table"')[1].split("<tbody>")[1].split("</tbody>")[0]
    return [re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", tr))).strip()
            for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)]


def test_sources_are_told_in_the_visitors_language(client: TestClient, api: Api, settings: Settings) -> None:
    adv = api.approved_account(email="words@example.com")
    store = get_event_store(settings)
    store.append([
        Event(event_id="i1", event_type=EventType.IMPRESSION, occurred_at=AT, account_id=adv.account_id,
              campaign_id=1),
        Event(event_id="o1", event_type=EventType.INSTALL, occurred_at=AT, account_id=adv.account_id,
              conversion_event="INSTALL", attribution_type="organic"),
        Event(event_id="x1", event_type=EventType.INSTALL, occurred_at=AT, account_id=adv.account_id,
              conversion_event="INSTALL", attribution_type="other")])
    store.flush()
    params = {**DAY, "dimensions": "campaign", "metrics": ["impressions", "organic_installs", "other_installs"]}
    expected = {"en": ("Ads", "Organic", "Other sources"), "zh": ("广告", "自然量", "其他来源")}
    for lang, (ads, organic, other) in expected.items():
        rows = _rows(_browser(client, "words@example.com", lang).get("/console/reports", params=params).text)
        assert len(rows) == 3, rows
        assert any(f" {ads} " in r for r in rows) and any(organic in r for r in rows) and any(other in r for r in rows)
        if lang == "zh":
            assert not any(re.search(r"\b(ads|organic|other|Organic|Other sources)\b", r) for r in rows), rows
    body = expect(api.client.get("/api/v1/reports", params=params, headers=adv.headers), 200)
    assert sorted(r["source"] for r in body["rows"]) == ["ads", "organic", "other"]


def test_a_day_that_is_no_date_is_refused_on_its_field(client: TestClient, api: Api) -> None:
    api.approved_account(email="words2@example.com")
    for lang, sentence in (("en", "From is not a date: write it as year-month-day, like 2025-05-20."),
                           ("zh", "不是有效日期")):
        page = _browser(client, "words2@example.com", lang).get(
            "/console/reports", params={"start_date": "2025-02-30", "end_date": "2025-03-01"})
        assert page.status_code == 422
        errors = dict(re.findall(r'data-error-for="(\w+)">(.*?)</div>', page.text))
        assert list(errors) == ["start_date"] and sentence in html.unescape(errors["start_date"]), errors
        assert re.search(r'id="start_date"[^>]*value="2025-02-30"', page.text)
        assert re.search(r'id="end_date"[^>]*value="2025-03-01"', page.text)
