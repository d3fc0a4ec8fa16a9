"""Precedence, lookback edges and re-attribution through served ads, the receiver and the ledger.

Ads are served and clicked in the past (the pipeline records each touch at its receipt time), so every partner
time lies before the postback's receipt: a time further ahead is clamped to receipt."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from adstack.core.settings import Settings
from adstack.core.timeutil import utcnow
from adstack.core.vocabulary import Partner
from tests.attribution import partners
from tests.attribution.helpers import new_gaid, scenario
from tests.support import Api, expect


def _send(api: Api, template: str, conversion: partners.Conversion) -> None:
    expect(api.client.get(partners.url(Partner.APPSFLYER, template, conversion)), 200)


def test_click_beats_impression_and_lookback_edges(api: Api, settings: Settings) -> None:
    s = scenario(api, settings)
    template = s.integration()["postback_url_template"]
    served = utcnow() - timedelta(days=8)
    both, view_only, inside, outside = (new_gaid() for _ in range(4))
    s.impression(both, at=served)
    s.click(both, at=served + timedelta(seconds=1))
    s.impression(view_only, at=served)
    s.click(inside, at=served)
    s.click(outside, at=served)
    _send(api, template, partners.Conversion(at=served + timedelta(hours=2), gaid=both))
    _send(api, template, partners.Conversion(at=served + timedelta(hours=2), gaid=view_only))
    # Matched by device only: the partner did not pass the click id on.
    _send(api, template, partners.Conversion(at=served + timedelta(days=6, hours=23), gaid=inside))
    _send(api, template, partners.Conversion(at=served + timedelta(days=7, hours=1), gaid=outside))
    rows = {r["occurred_at"][:16] + str(r["attribution_type"]): r for r in s.conversions()}
    kinds = sorted((r["attribution_type"], r["match_type"], r["touch_kind"]) for r in rows.values())
    assert kinds == sorted(
        [
            ("click", "gaid", "click"),
            ("view", "gaid", "impression"),
            ("click", "gaid", "click"),
            ("organic", "none", ""),
        ]
    )
    inside_row = next(r for r in rows.values() if (r["click_to_install_seconds"] or 0) > 6 * 86400)
    assert inside_row["click_to_install_seconds"] <= 7 * 86400


def test_reinstall_within_90_days_is_not_a_new_install_but_past_90_days_is(api: Api, settings: Settings) -> None:
    s = scenario(api, settings)
    template = s.integration()["postback_url_template"]
    clicked = utcnow() - timedelta(hours=2)
    returning, lapsed = new_gaid(), new_gaid()
    _send(api, template, partners.Conversion(at=clicked - timedelta(days=89), gaid=returning))
    _send(api, template, partners.Conversion(at=clicked - timedelta(days=91), gaid=lapsed))
    before = s.balance_micros()
    for gaid in (returning, lapsed):
        click_id = s.click(gaid, at=clicked)
        _send(api, template, partners.Conversion(at=clicked + timedelta(hours=1), click_id=click_id, gaid=gaid))
    rows = s.conversions()
    reinstall = [r for r in rows if r["is_reinstall"]]
    assert len(reinstall) == 1
    assert reinstall[0]["attribution_type"] == "organic"  # keeps the original install's attribution
    assert reinstall[0]["charged_micros"] == 0
    new_install = next(r for r in rows if not r["is_reinstall"] and r["attribution_type"] == "click")
    assert new_install["charged_micros"] == 2_000_000
    assert s.balance_micros() == before - 2_000_000


def test_view_through_off_and_per_app_lookback(api: Api, settings: Settings) -> None:
    s = scenario(api, settings, view_through_enabled=False, click_lookback_days=1)
    template = s.integration()["postback_url_template"]
    assert any("leave view-through attribution off" in step for step in s.integration()["steps"])
    served = utcnow() - timedelta(days=3)
    viewed, clicked = new_gaid(), new_gaid()
    s.impression(viewed, at=served)
    click_id = s.click(clicked, at=served)
    _send(api, template, partners.Conversion(at=served + timedelta(hours=1), gaid=viewed))
    _send(api, template, partners.Conversion(at=served + timedelta(days=2), click_id=click_id, gaid=clicked))
    assert {r["attribution_type"] for r in s.conversions()} == {"organic"}


def test_click_injection_is_flagged_and_not_billed(api: Api, settings: Settings) -> None:
    s = scenario(api, settings)
    template = s.integration()["postback_url_template"]
    gaid = new_gaid()
    before = s.balance_micros()
    clicked = utcnow() - timedelta(hours=1)
    click_id = s.click(gaid, at=clicked)
    _send(api, template, partners.Conversion(at=clicked + timedelta(seconds=3), click_id=click_id, gaid=gaid))
    (row,) = s.conversions()
    assert row["attribution_type"] == "click" and row["fraud_flags"] == ["click_injection"]
    assert row["charged_micros"] == 0 and s.balance_micros() == before


def test_cpa_on_an_in_app_event_charges_once_per_install(api: Api, settings: Settings) -> None:
    s = scenario(api, settings, conversion_event="PURCHASE", bid_micros=5_000_000, currency="INR")
    template = s.integration()["postback_url_template"]
    gaid = new_gaid()
    clicked = utcnow() - timedelta(hours=4)
    click_id = s.click(gaid, at=clicked)
    before = s.balance_micros()
    _send(api, template, partners.Conversion(at=clicked + timedelta(hours=1), click_id=click_id, gaid=gaid))
    for hours, amount in ((2, "1.99"), (3, "4.99")):
        _send(
            api,
            template,
            partners.Conversion(
                at=clicked + timedelta(hours=hours),
                event="af_purchase",
                click_id=click_id,
                gaid=gaid,
                revenue=Decimal(amount),
                currency="USD",
            ),
        )
    rows = s.conversions(event="PURCHASE")
    assert sorted(r["revenue_micros"] for r in rows) == [165_170_000, 414_170_000]  # USD → INR at 83
    assert sorted(r["charged_micros"] for r in rows) == [0, 5_000_000]
    assert s.balance_micros() == before - 5_000_000
