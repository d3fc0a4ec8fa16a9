"""A postback to the guide's bare AppMetrica URL (no `app`, no `sig`) is reported apart, as unverified, and never
charged. Anyone who saw a click id (the publisher's SDK receives it with the ad) can send one, so whatever it says
must never keep the app's signed postbacks from being attributed and charged, nor change the figures they make."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest

from adstack.core.settings import Settings
from adstack.core.timeutil import utcnow
from adstack.core.vocabulary import Partner
from tests.attribution.helpers import Scenario, new_gaid, received_at, scenario
from tests.support import Api, expect

HOLD_SECONDS = 1
LINK = "1019409635088005254"
METRICS = ["installs", "unverified_installs", "in_app_events", "refunds", "unverified_in_app_events",
           "revenue_micros", "cost_micros"]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"unsigned_postback_hold_seconds": HOLD_SECONDS})


def _bare(s: Scenario, **fields: Any) -> None:
    expect(s.api.client.get(f"/track/m3rd/v1.0?{urlencode({'partner': 'appmetrica', **fields})}"), 200)


def _signed(s: Scenario, **fields: Any) -> None:
    template: str = s.integration()["postback_url_template"]
    query = "&".join(template.split("?", 1)[1].split("&")[:3])  # partner, app, sig
    expect(s.api.client.get(f"/track/m3rd/v1.0?{query}&{urlencode(fields)}"), 200)


def _past_the_hold() -> None:
    time.sleep(HOLD_SECONDS + 0.2)


def _totals(s: Scenario) -> dict[str, Any]:
    today = utcnow().date()
    report = expect(s.api.client.get("/api/v1/reports", headers=s.advertiser.headers, params={
        "start_date": (today - timedelta(days=1)).isoformat(), "end_date": (today + timedelta(days=1)).isoformat(),
        "account_ids": [s.account_id], "time_zone": "UTC", "metrics": METRICS}), 200)
    return {m: report["totals"][m] for m in METRICS}


def test_the_signed_copy_of_a_bare_postback_sent_with_it_is_the_one_attributed(api: Api, settings: Settings) -> None:
    s = scenario(api, settings, partner=Partner.APPMETRICA, partner_link_id=LINK)
    gaid = new_gaid()
    click_id = s.click(gaid, at=utcnow() - timedelta(minutes=5))
    before = s.balance_micros()
    _bare(s, ext=click_id, gaid=gaid)
    _signed(s, ext=click_id, gaid=gaid)
    assert len(s.conversions()) == 1  # the signed copy at once; the bare one waits for the hold
    _past_the_hold()
    [row] = s.conversions()
    assert row["charged_micros"] == 2_000_000 and "unsigned_not_charged" not in row["data_flags"]
    assert before - s.balance_micros() == 2_000_000
    statuses = sorted((p["status"], bool(p["fields"].get("sig"))) for p in s.postbacks())
    assert statuses == [("attributed", True), ("duplicate", False)]
    assert _totals(s) | {"cost_micros": None} == {"installs": 1, "unverified_installs": 0, "in_app_events": 0,
                                                  "refunds": 0, "unverified_in_app_events": 0, "revenue_micros": 0,
                                                  "cost_micros": None}


def test_a_bare_install_sent_first_never_keeps_the_signed_install_from_being_charged(api: Api,
                                                                                       settings: Settings) -> None:
    """The bare URL right after the click (which looks like click injection) and attributed before the real
    install: neither a prior install nor a fraud flag for the signed postback that follows, under another key."""
    s = scenario(api, settings, partner=Partner.APPMETRICA, partner_link_id=LINK)
    gaid = new_gaid()
    clicked = utcnow() - timedelta(minutes=5)
    click_id = s.click(gaid, at=clicked)
    with received_at(clicked + timedelta(seconds=2)):
        _bare(s, ext=click_id, gaid=gaid)
    [unverified] = s.conversions()
    assert unverified["charged_micros"] == 0 and "unsigned_not_charged" in unverified["data_flags"]
    assert unverified["fraud_flags"] == ["click_injection"]
    before = s.balance_micros()
    _signed(s, ext=click_id, gaid=gaid, transaction_id="tx-1", touch_type="click",
            conversion_timestamp=str(int(utcnow().timestamp())))
    rows = {bool(r["data_flags"]) and "unsigned_not_charged" in r["data_flags"]: r for r in s.conversions()}
    signed = rows[False]
    assert (signed["charged_micros"], signed["is_reinstall"], signed["fraud_flags"]) == (2_000_000, False, [])
    assert before - s.balance_micros() == 2_000_000
    # The report counts the signed install as ours and the bare one apart, never both as installs.
    totals = _totals(s)
    assert (totals["installs"], totals["unverified_installs"], totals["cost_micros"]) == (1, 1, 2_000_000)


def test_a_signed_copy_after_the_bare_one_was_attributed_is_still_charged(api: Api, settings: Settings) -> None:
    """The same fields, so the same dedupe key: the bare copy is stored apart and cannot take the signed one's
    place, however late the signed copy comes (a partner's retry, a consumer's backlog)."""
    s = scenario(api, settings, partner=Partner.APPMETRICA, partner_link_id=LINK)
    gaid = new_gaid()
    click_id = s.click(gaid, at=utcnow() - timedelta(minutes=5))
    _bare(s, ext=click_id, gaid=gaid)
    _past_the_hold()
    assert [r["charged_micros"] for r in s.conversions()] == [0]
    _signed(s, ext=click_id, gaid=gaid)
    assert sorted(r["charged_micros"] for r in s.conversions()) == [0, 2_000_000]


def test_unsigned_revenue_is_unverified_and_a_refund_is_never_charged(api: Api, settings: Settings) -> None:
    s = scenario(api, settings, partner=Partner.APPMETRICA, partner_link_id=LINK, conversion_event="PURCHASE",
                 bid_micros=5_000_000)
    gaid = new_gaid()
    click_id = s.click(gaid, at=utcnow() - timedelta(minutes=5))
    _signed(s, ext=click_id, gaid=gaid, transaction_id="tx-install", touch_type="click")
    # Anyone with the click id: a bare purchase with a huge negative revenue.
    _bare(s, ext=click_id, gaid=gaid, event_name="purchase", transaction_id="tx-forged", price="-999999999",
          currency="USD")
    # The app's own refund of a purchase that was never charged here.
    _signed(s, ext=click_id, gaid=gaid, event_name="purchase", transaction_id="tx-refund", price="-3",
            currency="USD", touch_type="click")
    _past_the_hold()
    purchases = [r for r in s.conversions() if r["conversion_event"] == "PURCHASE"]
    assert sorted((r["revenue_micros"], r["charged_micros"]) for r in purchases) == [
        (-999_999_999_000_000, 0), (-3_000_000, 0)]
    totals = _totals(s)
    assert totals["revenue_micros"] == -3_000_000  # the app's refund only
    # A refund is not another purchase; the bare one is set aside whatever its sign.
    assert (totals["in_app_events"], totals["refunds"], totals["unverified_in_app_events"], totals["cost_micros"]) \
        == (0, 1, 1, 0)


def test_unsigned_postbacks_judged_organic_stay_out_of_the_organic_figures(api: Api, settings: Settings) -> None:
    s = scenario(api, settings, partner=Partner.APPMETRICA, partner_link_id=LINK)
    gaid = new_gaid()
    click_id = s.click(gaid, at=utcnow() - timedelta(minutes=5))
    # AppMetrica's empty touch type: "not attributed to this tracker", i.e. organic.
    _bare(s, ext=click_id, gaid=gaid, touch_type="")
    _bare(s, ext=click_id, gaid=gaid, touch_type="", event_name="purchase", price="999999", currency="USD")
    _past_the_hold()
    assert {r["attribution_type"] for r in s.conversions()} == {"organic"}
    today = utcnow().date()
    metrics = ["organic_installs", "organic_in_app_events", "organic_revenue_micros", "unverified_installs",
               "unverified_in_app_events"]
    report = expect(s.api.client.get("/api/v1/reports", headers=s.advertiser.headers, params={
        "start_date": (today - timedelta(days=1)).isoformat(), "end_date": (today + timedelta(days=1)).isoformat(),
        "account_ids": [s.account_id], "time_zone": "UTC", "metrics": metrics}), 200)
    assert [report["totals"][m] for m in metrics] == [0, 0, 0, 1, 1]


def test_unsigned_postbacks_add_no_device_to_a_converted_audience(api: Api, settings: Settings) -> None:
    from adstack.audiences import profiles

    s = scenario(api, settings, partner=Partner.APPMETRICA, partner_link_id=LINK)
    clicker, victim = new_gaid(), new_gaid()
    click_id = s.click(clicker, at=utcnow() - timedelta(minutes=5))
    _bare(s, ext=click_id, gaid=victim, event_name="purchase")  # anyone's device, with someone's click id
    _past_the_hold()
    assert len(s.conversions()) == 1
    profiles.record_device_profile(api.session, gaid=victim, installed_packages=[], usage=None, seen_at=utcnow(),
                                   country="SG")
    api.session.commit()
    body = {"name": "Buyers", "region_code": "SG",
            "rule": {"conditions": [{"kind": "converted", "app_ids": [s.app["id"]], "events": ["PURCHASE"]}]}}
    made = expect(api.client.post("/api/v1/audiences/labels", headers=s.advertiser.headers, json=body), 201)
    refreshed = expect(api.client.post(f"/api/v1/audiences/{made['id']}/refresh", headers=s.advertiser.headers), 200)
    assert refreshed["size"] == 0


def test_unsigned_copies_cannot_crowd_a_signed_original_out_of_the_retry_check(api: Api, settings: Settings) -> None:
    s = scenario(api, settings, partner=Partner.APPMETRICA, partner_link_id=LINK, conversion_event="PURCHASE",
                 bid_micros=5_000_000)
    gaid = new_gaid()
    click_id = s.click(gaid, at=utcnow() - timedelta(minutes=5))
    at = str(int(utcnow().timestamp()))
    _signed(s, ext=click_id, gaid=gaid, transaction_id="tx-install", touch_type="click")
    for n in range(21):
        _bare(s, ext=click_id, gaid=gaid, event_name="purchase", conversion_timestamp=at, transaction_id=f"tx-{n}")
    _past_the_hold()
    purchase = {"ext": click_id, "gaid": gaid, "event_name": "purchase", "conversion_timestamp": at,
                "touch_type": "click", "price": "5", "currency": "USD"}
    _signed(s, **purchase, transaction_id="tx-p")
    _signed(s, **purchase)  # the partner's retry, without its event id
    s.conversions()
    assert [p["status"] for p in s.postbacks()].count("duplicate") == 1  # the retry
    totals = _totals(s)
    assert (totals["in_app_events"], totals["revenue_micros"], totals["unverified_in_app_events"]) == (
        1, 5_000_000, 21)
