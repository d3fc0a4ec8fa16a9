"""Every partner's postbacks, in that partner's format, through the real receiver and attribution."""

from __future__ import annotations

import base64
from datetime import timedelta
from decimal import Decimal

import pytest

from adstack.core.settings import Settings
from adstack.core.timeutil import utcnow
from adstack.core.vocabulary import Partner
from tests.attribution import partners
from tests.attribution.helpers import new_gaid, scenario
from tests.support import Api, expect


def _forged_click_id() -> str:
    # Right length and layout, wrong signature.
    return base64.urlsafe_b64encode(b"\x01" + b"\x00" * 24).rstrip(b"=").decode()


@pytest.mark.parametrize("partner", list(Partner))
def test_partner_postbacks_are_attributed_deduplicated_and_converted(
    api: Api, settings: Settings, partner: Partner
) -> None:
    s = scenario(api, settings, partner=partner)
    names = partners.EVENT_NAMES[partner]
    if partner is Partner.ADJUST:  # Adjust sends event tokens; the app maps them
        expect(
            api.client.put(
                f"/api/v1/apps/{s.app['id']}/event-mappings",
                headers=s.advertiser.headers,
                json={"mappings": [{"source_name": token, "event": event} for event, token in names.items()]},
            ),
            200,
        )
    integration = s.integration()
    assert integration["partner"] == partner.value
    assert integration["steps"] and all(isinstance(step, str) for step in integration["steps"])
    template = integration["postback_url_template"]
    assert template.startswith("http://testserver/track/m3rd/v1.0?partner=" + partner.value)

    balance_before = s.balance_micros()
    gaid = new_gaid()
    # Clicked five days ago, so every partner time below lies before its receipt.
    clicked_at = utcnow() - timedelta(days=5)
    click_id = s.click(gaid, at=clicked_at)

    def send(conversion: partners.Conversion) -> None:
        out = expect(api.client.get(partners.url(partner, template, conversion)), 200)
        assert out == {"status": "ok"}

    install = partners.Conversion(at=clicked_at + timedelta(hours=1), click_id=click_id, gaid=gaid)
    send(install)
    send(install)  # the partner retries: stored and counted once
    purchase = partners.Conversion(
        at=clicked_at + timedelta(days=3),
        event=names["PURCHASE"],
        click_id=click_id,
        gaid=gaid,
        revenue=Decimal("9.20"),
        currency="EUR",
    )
    send(purchase)
    send(purchase)
    ad_revenue = partners.Conversion(
        at=clicked_at + timedelta(days=4),
        event=names["AD_REVENUE"],
        click_id=click_id,
        gaid=gaid,
        revenue=Decimal("0.015"),
        currency="USD",
    )
    send(ad_revenue)
    organic_gaid = new_gaid()
    send(partners.Conversion(at=clicked_at, gaid=organic_gaid))
    send(partners.Conversion(at=clicked_at + timedelta(hours=2), event=names["LOGIN"], gaid=organic_gaid))
    assert len(s.postbacks()) == 5  # seven sent, two of them retries
    forged_gaid = new_gaid()
    send(partners.Conversion(at=clicked_at + timedelta(hours=1), click_id=_forged_click_id(), gaid=forged_gaid))

    rows = s.conversions()
    by_device: dict[str, list[dict]] = {}
    for row in rows:
        by_device.setdefault(row["source_event_name"] + "|" + row["conversion_event"], []).append(row)
    installs = [r for r in rows if r["conversion_event"] == "INSTALL"]
    assert len(rows) == 6, rows
    assert len(installs) == 3

    attributed_install = next(r for r in installs if r["click_id"] == click_id)
    assert attributed_install["attribution_type"] == "click"
    assert attributed_install["match_type"] == "click_id"
    assert attributed_install["ad_group_id"] == s.ad_group["id"]
    assert 3590 <= attributed_install["click_to_install_seconds"] <= 3610
    assert attributed_install["fraud_flags"] == []
    assert attributed_install["charged_micros"] == 2_000_000

    purchase_row = next(r for r in rows if r["conversion_event"] == "PURCHASE")
    assert purchase_row["attribution_type"] == "click"
    assert purchase_row["install_conversion_id"] == attributed_install["id"]
    assert purchase_row["currency"] == "EUR"
    assert purchase_row["revenue_micros"] == 10_000_000  # 9.20 EUR at 0.92 EUR per USD, in the USD account
    assert purchase_row["revenue_usd_micros"] == 10_000_000

    ad_revenue_row = next(r for r in rows if r["conversion_event"] == "AD_REVENUE")
    assert ad_revenue_row["attribution_type"] == "click"
    assert ad_revenue_row["revenue_micros"] == 15_000

    login = next(r for r in rows if r["conversion_event"] == "LOGIN")
    assert login["attribution_type"] == "organic" and login["match_type"] == "none"
    organic_install = next(r for r in installs if r["id"] == login["install_conversion_id"])
    assert organic_install["attribution_type"] == "organic" and organic_install["charged_micros"] == 0

    forged = next(r for r in installs if r not in (attributed_install, organic_install))
    # A partner that sends a verdict credits us for the click it saw; the id was never ours, so no campaign is
    # named and nothing is billed. Without a verdict our rules call it organic.
    assert forged["attribution_type"] == ("click" if forged["partner_verdict"] == "attributed" else "organic")
    assert (forged["campaign_id"], forged["click_id"]) == (0, "")
    assert forged["fraud_flags"] == ["forged_click_id"]
    assert forged["charged_micros"] == 0

    # One CPA charge for the one attributed install, however often the partner retried.
    assert s.balance_micros() == balance_before - 2_000_000
    stored = expect(
        api.client.get(f"/api/v1/apps/{s.app['id']}/postbacks", headers=s.advertiser.headers, params={"limit": 100}),
        200,
    )
    assert len(stored) == 6
    assert {p["status"] for p in stored} == {"attributed"}


def test_appmetrica_json_post_and_branch_form_post_are_read(api: Api, settings: Settings) -> None:
    s = scenario(api, settings, partner=Partner.APPMETRICA)
    gaid = new_gaid()
    at = utcnow() - timedelta(minutes=30)
    click_id = s.click(gaid, at=at - timedelta(hours=1))
    template = s.integration()["postback_url_template"]
    base = template.split("&ext=")[0]
    out = expect(
        api.client.post(
            base.replace("http://testserver", ""),
            json={
                "ext": click_id,
                "gaid": gaid.upper(),
                "event_name": "",
                "transaction_id": "98765",
                "event_datetime": at.strftime("%Y-%m-%d %H:%M:%S"),
            },
        ),
        200,
    )
    assert out == {"status": "ok"}
    branch = scenario(api, settings, partner=Partner.BRANCH)
    branch_base = branch.integration()["postback_url_template"].split("&id=")[0].replace("http://testserver", "")
    expect(
        api.client.post(
            branch_base,
            data={
                "id": "b-1",
                "name": "INSTALL",
                "event_timestamp": str(int(at.timestamp() * 1000)),
                "aaid": new_gaid(),
            },
        ),
        200,
    )
    rows = s.conversions()
    assert [(r["attribution_type"], r["match_type"]) for r in rows] == [("click", "click_id")]
    assert [r["attribution_type"] for r in branch.conversions()] == ["organic"]


def test_unreplaced_macros_count_as_missing(api: Api, settings: Settings) -> None:
    s = scenario(api, settings, partner=Partner.SINGULAR)
    gaid = new_gaid()
    clicked_at = utcnow() - timedelta(hours=2)
    s.click(gaid, at=clicked_at)
    template = s.integration()["postback_url_template"]
    # Singular attributed the install to us but did not know the click id: the macro arrives literally; the
    # device still names our click.
    conversion = partners.Conversion(at=clicked_at + timedelta(hours=1), gaid=gaid, attributed=True)
    expect(api.client.get(partners.url(Partner.SINGULAR, template, conversion)), 200)
    (row,) = s.conversions()
    assert row["click_id"] == ""
    assert (row["attribution_type"], row["match_type"]) == ("click", "gaid")


def test_conditional_mapping_counts_level_10_only(api: Api, settings: Settings) -> None:
    s = scenario(api, settings, partner=Partner.MYTRACKER)
    expect(
        api.client.put(
            f"/api/v1/apps/{s.app['id']}/event-mappings",
            headers=s.advertiser.headers,
            json={
                "mappings": [
                    {
                        "source_name": "level_up",
                        "event": "LEVEL_ACHIEVED",
                        "conditions": [{"param": "level", "op": "eq", "value": "10"}],
                    }
                ]
            },
        ),
        200,
    )
    template = s.integration()["postback_url_template"]
    gaid = new_gaid()
    now = utcnow()
    for level in ("5", "10"):
        conversion = partners.Conversion(at=now, event="level_up", gaid=gaid, params={"level": level})
        expect(api.client.get(partners.url(Partner.MYTRACKER, template, conversion)), 200)
    rows = s.conversions()
    assert [r["conversion_event"] for r in rows] == ["LEVEL_ACHIEVED"]
    stored = expect(api.client.get(f"/api/v1/apps/{s.app['id']}/postbacks", headers=s.advertiser.headers), 200)
    assert sorted(p["status"] for p in stored) == ["attributed", "unmapped"]


def test_garbage_and_unknown_partners_are_refused_and_kept(api: Api, settings: Settings) -> None:
    s = scenario(api, settings)
    template = s.integration()["postback_url_template"]
    query = template.split("?", 1)[1]
    error = expect(api.client.get("/track/m3rd/v1.0?partner=nobody&app=1&sig=x"), 400)["error"]
    assert error["code"] == "unknown_partner"
    assert expect(api.client.get("/track/m3rd/v1.0"), 400)["error"]["code"] == "missing_partner"
    for app in ("%C2%B2", "0", "99999999999999999999999"):  # superscript two, zero, beyond 64 bits
        assert (
            expect(api.client.get(f"/track/m3rd/v1.0?partner=appsflyer&app={app}"), 400)["error"]["code"]
            == "missing_app"
        )
    forged_sig = query.replace("sig=", "sig=X")
    assert expect(api.client.get(f"/track/m3rd/v1.0?{forged_sig}"), 403)["error"]["code"] == "bad_signature"
    own = query.split("&clickid")[0]
    # One unreadable field keeps the postback: stored with the field flagged, answered 200.
    expect(api.client.get(f"/track/m3rd/v1.0?{own}&event_name=af_purchase&event_revenue=lots"), 200)
    expect(
        api.client.post(
            f"/track/m3rd/v1.0?{own}", content=b"\x00\x01garbage", headers={"content-type": "application/octet-stream"}
        ),
        415,
    )
    expect(
        api.client.post(f"/track/m3rd/v1.0?{own}", content=b"{not json", headers={"content-type": "application/json"}),
        400,
    )
    kept = expect(api.client.get("/api/v1/postbacks/rejected", headers=s.admin.headers), 200)
    assert {r["reason"] for r in kept} >= {
        "unknown_partner",
        "missing_partner",
        "bad_signature",
        "unsupported_body",
        "malformed_json",
    }
    assert any("garbage" in r["body"] for r in kept)
    expect(api.client.get("/api/v1/postbacks/rejected", headers=s.advertiser.headers), 403)
    (kept_purchase,) = s.conversions()
    assert kept_purchase["data_flags"] == ["unreadable:event_revenue:decimal"]
