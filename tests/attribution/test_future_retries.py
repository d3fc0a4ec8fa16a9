"""A partner's retry of a postback whose time lies ahead of its receipt (partners' clocks drift) that lost its
event id on the way is one conversion: in the conversions, the event store and the reports, as in billing. Two
events that differ (in revenue, or in a time far apart) stay two. Every report figure is recomputed from the raw
events and the ledger."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select

from adstack.core.settings import Settings
from adstack.core.timeutil import utcnow
from adstack.core.vocabulary import Partner
from adstack.events.service import get_event_store
from adstack.finance.models import LedgerEntry
from tests.attribution.helpers import Scenario, new_gaid, received_at, scenario
from tests.support import Api, expect

LINK = "1019409635088005254"
CPA = 3_000_000
METRICS = ["installs", "in_app_events", "event_purchase", "cpa_conversions", "revenue_micros", "cost_micros"]


def _send(s: Scenario, at: datetime | None = None, **fields: Any) -> None:
    """To the app's signed postback URL, received at `at` (default now)."""
    template: str = s.integration()["postback_url_template"]
    query = "&".join(template.split("?", 1)[1].split("&")[:3])  # partner, app, sig
    with received_at(at):
        expect(s.api.client.get(f"/track/m3rd/v1.0?{query}&{urlencode(fields)}"), 200)


def _stamp(at: datetime) -> str:
    return str(int(at.timestamp()))


def _figures(s: Scenario) -> dict[str, int]:
    """The report's totals, after checking each of them against the raw events and the ledger (the ad group pays
    per its conversion event)."""
    s.process()
    today = utcnow().date()
    report = expect(s.api.client.get("/api/v1/reports", headers=s.advertiser.headers, params={
        "start_date": (today - timedelta(days=1)).isoformat(), "end_date": (today + timedelta(days=1)).isoformat(),
        "account_ids": [s.account_id], "time_zone": "UTC", "metrics": METRICS}), 200)
    totals = {m: int(report["totals"][m]) for m in METRICS}
    store = get_event_store(s.settings)
    store.flush()
    raw = store.query(
        "SELECT event_type, conversion_event, count(), sum(revenue_micros), sum(cost_micros) FROM events "
        "WHERE account_id = {a:UInt64} AND attribution_type IN ('', 'click', 'view') "
        "GROUP BY event_type, conversion_event", {"a": s.account_id}).rows
    ledger = -int(s.api.session.scalar(select(func.coalesce(func.sum(LedgerEntry.amount_micros), 0)).where(
        LedgerEntry.account_id == s.account_id, LedgerEntry.entry_type == "charge")) or 0)
    cost = sum(int(r[4]) for r in raw if r[0] == "charge")
    assert cost == ledger
    assert totals == {
        "installs": sum(int(r[2]) for r in raw if r[0] == "install"),
        "in_app_events": sum(int(r[2]) for r in raw if r[0] == "in_app_event"),
        "event_purchase": sum(int(r[2]) for r in raw if r[0] == "in_app_event" and r[1] == "PURCHASE"),
        "cpa_conversions": sum(int(r[2]) for r in raw if r[1] == s.ad_group["conversion_event"] and r[0] != "charge"),
        "revenue_micros": sum(int(r[3]) for r in raw if r[0] != "charge"),
        "cost_micros": ledger,
    }
    return totals


def _purchases(s: Scenario) -> list[dict[str, Any]]:
    return [r for r in s.conversions() if r["conversion_event"] == "PURCHASE"]


def _set_up(api: Api, settings: Settings) -> tuple[Scenario, dict[str, str]]:
    """An app that pays per purchase, and an install attributed to our click; the purchase fields of that device."""
    s = scenario(api, settings, partner=Partner.APPMETRICA, partner_link_id=LINK, conversion_event="PURCHASE",
                 bid_micros=CPA)
    gaid = new_gaid()
    click = s.click(gaid, at=utcnow() - timedelta(hours=4))
    installed = utcnow() - timedelta(hours=3)
    _send(s, installed, ext=click, gaid=gaid, transaction_id="tx-install", conversion_timestamp=_stamp(installed))
    return s, {"ext": click, "gaid": gaid, "event_name": "purchase", "currency": "USD"}


RETRIES = {
    # (the partner time's distance from now, how long after the first the retry comes)
    "a day ahead": (timedelta(days=1), timedelta(0)),
    "a day ahead, retried a minute later": (timedelta(days=1), timedelta(minutes=1)),
    "two hours ahead, retried once it is only minutes ahead": (timedelta(hours=2), timedelta(hours=1, minutes=55)),
    "an hour ago": (-timedelta(hours=1), timedelta(minutes=1)),
}


@pytest.mark.parametrize("case", list(RETRIES))
def test_a_retry_without_its_event_id_counts_once_everywhere(api: Api, settings: Settings, case: str) -> None:
    ahead, later = RETRIES[case]
    s, purchase = _set_up(api, settings)
    before = s.balance_micros()
    first = utcnow() - later  # receipts in the past: the retry's is now
    purchase |= {"price": "5", "conversion_timestamp": _stamp(first + ahead)}
    _send(s, first, **purchase, transaction_id="tx-1")
    if later:
        s.conversions()  # the first one attributed before its retry arrives
    _send(s, first + later, **purchase)  # the partner's retry, its event id lost
    [row] = _purchases(s)
    assert row["revenue_micros"] == 5_000_000 and row["charged_micros"] == CPA
    assert before - s.balance_micros() == CPA
    assert [p["status"] for p in s.postbacks()].count("duplicate") == 1
    assert _figures(s) == {"installs": 1, "in_app_events": 1, "event_purchase": 1, "cpa_conversions": 1,
                           "revenue_micros": 5_000_000, "cost_micros": CPA}


def test_an_install_retried_without_its_event_id_with_a_future_time_counts_once(
    api: Api, settings: Settings
) -> None:
    s = scenario(api, settings, partner=Partner.APPMETRICA, partner_link_id=LINK, bid_micros=CPA)
    gaid = new_gaid()
    click = s.click(gaid, at=utcnow() - timedelta(minutes=30))
    install = {"ext": click, "gaid": gaid, "conversion_timestamp": _stamp(utcnow() + timedelta(days=2))}
    _send(s, **install, transaction_id="tx-1")
    s.conversions()
    _send(s, **install)
    [row] = s.conversions()
    assert row["charged_micros"] == CPA and "future_time_clamped" in row["data_flags"]
    assert _figures(s) == {"installs": 1, "in_app_events": 0, "event_purchase": 0, "cpa_conversions": 1,
                           "revenue_micros": 0, "cost_micros": CPA}


@pytest.mark.parametrize(("price", "later"), [
    ("7", timedelta(0)),  # another purchase at that time
    ("5", timedelta(days=1)),  # another purchase a day later
])
def test_two_purchases_with_future_times_stay_two(api: Api, settings: Settings, price: str,
                                                  later: timedelta) -> None:
    s, purchase = _set_up(api, settings)
    ahead = utcnow() + timedelta(days=1)
    _send(s, **purchase, price="5", conversion_timestamp=_stamp(ahead), transaction_id="tx-1")
    s.conversions()
    _send(s, **purchase, price=price, conversion_timestamp=_stamp(ahead + later))  # no event id
    rows = _purchases(s)
    assert sorted(r["revenue_micros"] for r in rows) == sorted([5_000_000, int(price) * 1_000_000])
    assert "duplicate" not in [p["status"] for p in s.postbacks()]
    assert _figures(s) == {"installs": 1, "in_app_events": 2, "event_purchase": 2, "cpa_conversions": 2,
                           "revenue_micros": 5_000_000 + int(price) * 1_000_000, "cost_micros": CPA}
