"""Refunds: an in-app event with negative revenue as sent (a refund or a cancellation) is never charged and is
reported in `refunds`, never as another occurrence of its event or a CPA conversion, however its amount rounds
or whether an FX rate exists; an install with negative revenue is still an install, charged as one."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from adstack.core.settings import Settings
from adstack.core.timeutil import utcnow
from adstack.core.vocabulary import Partner
from tests.attribution.helpers import Scenario, new_gaid, scenario
from tests.support import Api, expect

METRICS = ["installs", "cpa_conversions", "in_app_events", "refunds", "event_purchase", "revenue_micros",
           "cost_micros"]


def _totals(s: Scenario) -> dict[str, Any]:
    s.process()
    today = utcnow().date()
    report = expect(s.api.client.get("/api/v1/reports", headers=s.advertiser.headers, params={
        "start_date": (today - timedelta(days=1)).isoformat(), "end_date": (today + timedelta(days=1)).isoformat(),
        "time_zone": "UTC", "metrics": METRICS}), 200)
    return {m: report["totals"][m] for m in METRICS}


def test_an_install_with_negative_revenue_is_still_charged(api: Api, settings: Settings) -> None:
    """Else an advertiser's own signed postbacks could add a revenue far below a micro and never pay for one."""
    s = scenario(api, settings, partner=Partner.APPSFLYER)  # CPA 2.00 per install
    before = s.balance_micros()
    for _ in range(3):
        gaid = new_gaid()
        click_id = s.click(gaid, at=utcnow() - timedelta(minutes=5))
        s.postback(clickid=click_id, advertising_id=gaid, is_attributed="true", event_revenue="-0.0000001",
                   event_revenue_currency="USD")
    assert all("negative_revenue" in r["data_flags"] for r in s.conversions())  # attributed by now
    assert before - s.balance_micros() == 6_000_000
    totals = _totals(s)
    assert (totals["installs"], totals["cpa_conversions"], totals["cost_micros"]) == (3, 3, 6_000_000)


@pytest.mark.parametrize(("revenue", "currency"), [
    ("-3", "USD"),
    ("-0.0000004", "USD"),  # rounds to 0 micros
    ("-20", "CHF"),  # no FX rate: no money in reports, still a refund
])
def test_a_negative_revenue_event_is_a_refund_in_billing_and_reports_alike(
        api: Api, settings: Settings, revenue: str, currency: str) -> None:
    s = scenario(api, settings, partner=Partner.APPSFLYER, conversion_event="PURCHASE", bid_micros=5_000_000)
    gaid = new_gaid()
    click_id = s.click(gaid, at=utcnow() - timedelta(minutes=5))
    s.postback(clickid=click_id, advertising_id=gaid, is_attributed="true")
    before = s.balance_micros()
    s.postback(clickid=click_id, advertising_id=gaid, is_attributed="true", event_name="af_purchase",
               event_revenue=revenue, event_revenue_currency=currency)
    [purchase] = [r for r in s.conversions() if r["conversion_event"] == "PURCHASE"]
    assert purchase["charged_micros"] == 0 and before == s.balance_micros()
    totals = _totals(s)
    assert (totals["refunds"], totals["in_app_events"], totals["event_purchase"], totals["cpa_conversions"],
            totals["cost_micros"]) == (1, 0, 0, 0, 0)
    assert totals["revenue_micros"] == (-3_000_000 if revenue == "-3" else 0)
