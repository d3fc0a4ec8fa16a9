"""Who decides attribution, one charge per conversion, bounded times and tolerant reading, through the real
receiver `/track/m3rd/v1.0` and the attributor. Clicks are recorded as touchpoints directly, so these tests do
not depend on how the tracking path delivers them."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import pytest

from adstack.attribution import service
from adstack.attribution.rules import TouchKind
from adstack.core.settings import Settings
from adstack.core.timeutil import utcnow
from adstack.core.vocabulary import Partner
from adstack.tracking.devices import normalise_gaid
from tests.attribution import partners
from tests.attribution.helpers import PACKAGE, UNREPLACED_CLICK_ID_MACROS, Scenario, new_gaid, scenario
from tests.support import Api, expect


def _click(s: Scenario, gaid: str | None, at: datetime | None = None) -> str:
    """A click on the scenario's ad, stored as the tracking path stores it (by default five minutes ago, long
    enough before a postback now to be no click injection); returns our signed click id."""
    at = at or utcnow() - timedelta(minutes=5)
    urls = s.serve(gaid, issued_at=at)
    service.record_touch(
        s.api.session,
        kind=TouchKind.CLICK,
        touch_id=urls.click_id,
        impression_id="imp",
        account_id=s.account_id,
        campaign_id=s.campaign["id"],
        ad_group_id=s.ad_group["id"],
        creative_id=1,
        ad_space_id=2,
        publisher_id=3,
        bid_type="cpa",
        price_micros=0,
        country="ID",
        placement_type="banner",
        app_package=PACKAGE,
        gaid=normalise_gaid(gaid),
        occurred_at=at,
    )
    s.api.session.commit()
    return urls.click_id


def _base(s: Scenario) -> str:
    template: str = s.integration()["postback_url_template"]
    return (
        template.split("?")[0].replace("http://testserver", "") + "?" + "&".join(template.split("?")[1].split("&")[:3])
    )  # partner, app, sig


def _send(s: Scenario, fields: dict[str, Any], status: int = 200) -> Any:
    return expect(s.api.client.get(f"{_base(s)}&{urlencode(fields)}"), status)


def _only(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    found = [r for r in rows if all(r[k] == v for k, v in match.items())]
    assert len(found) == 1, rows
    return found[0]


def test_partner_verdicts_decide_and_are_recorded_beside_ours(api: Api, settings: Settings) -> None:
    s = scenario(api, settings, partner=Partner.BRANCH, partner_link_id="example.app.link/abc")
    before = s.balance_micros()
    ours, organic = new_gaid(), new_gaid()
    at = utcnow()
    click_ours = _click(s, ours)
    click_organic = _click(s, organic)
    _send(
        s,
        {
            "id": "b1",
            "name": "install",
            "click_id": click_ours,
            "aaid": ours,
            "attributed": "1",
            "event_timestamp": int(at.timestamp() * 1000),
        },
    )
    # Branch says the install is not attributed: kept, organic, never billed, though our click matches.
    _send(
        s,
        {
            "id": "b2",
            "name": "install",
            "click_id": click_organic,
            "aaid": organic,
            "attributed": "0",
            "event_timestamp": int(at.timestamp() * 1000),
        },
    )
    rows = s.conversions()
    paid = _only(rows, click_id=click_ours)
    assert (paid["attribution_type"], paid["partner_verdict"], paid["own_verdict"]) == (
        "click",
        "attributed",
        "attributed",
    )
    assert paid["charged_micros"] == 2_000_000 and paid["verdicts_disagree"] is False
    kept = _only(rows, click_id=click_organic)
    assert (kept["attribution_type"], kept["campaign_id"], kept["charged_micros"]) == ("organic", 0, 0)
    assert (kept["partner_verdict"], kept["own_verdict"], kept["verdicts_disagree"]) == ("organic", "attributed", True)
    assert kept["verdict_source"] == "partner" and kept["verdict_reason"] == "attributed=0"
    assert s.balance_micros() == before - 2_000_000
    agreement = expect(api.client.get("/api/v1/attribution/verdict-agreement", headers=s.advertiser.headers), 200)
    assert agreement == [
        {
            "partner": "branch",
            "conversions": 2,
            "with_partner_verdict": 2,
            "disagreements": 1,
            "disagreement_rate": 0.5,
            "partner_attributed_own_organic": 0,
            "partner_unattributed_own_attributed": 1,
        }
    ]
    other = api.approved_account(s.admin)
    assert expect(api.client.get("/api/v1/attribution/verdict-agreement", headers=other.headers), 200) == []


def test_other_network_rejected_and_adstack_authority(api: Api, settings: Settings) -> None:
    s = scenario(api, settings, partner=Partner.APPSFLYER)
    at = utcnow()
    other, blocked = new_gaid(), new_gaid()
    for gaid, extra in ((other, {"media_source": "othernetwork_int"}), (blocked, {"blocked_reason": "bots"})):
        click_id = _click(s, gaid)
        _send(s, {"clickid": click_id, "advertising_id": gaid, "event_time": at.strftime("%Y-%m-%d %H:%M:%S"), **extra})
    rows = s.conversions()
    by_gaid = {r["verdict_reason"]: r for r in rows}
    moved = by_gaid["network=othernetwork_int"]
    assert (moved["attribution_type"], moved["partner_verdict"], moved["charged_micros"]) == (
        "other",
        "other_network",
        0,
    )
    rejected = by_gaid["blocked_reason=bots"]
    assert (rejected["attribution_type"], rejected["fraud_flags"]) == ("other", ["partner_rejected"])
    # The same device's purchase bills nothing: the flag travels with the device.
    _send(
        s,
        {
            "advertising_id": blocked,
            "event_name": "af_purchase",
            "event_revenue": "5",
            "event_time": (at + timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M:%S"),
        },
    )
    purchase = _only(s.conversions(event="PURCHASE"))
    assert "partner_rejected" in purchase["fraud_flags"] and purchase["charged_micros"] == 0
    # An app whose own rules decide records the partner's verdict but attributes by our touch.
    expect(
        api.client.patch(
            f"/api/v1/apps/{s.app['id']}", headers=s.advertiser.headers, json={"attribution_authority": "adstack"}
        ),
        200,
    )
    mine = new_gaid()
    click_id = _click(s, mine)
    _send(
        s,
        {
            "clickid": click_id,
            "advertising_id": mine,
            "media_source": "othernetwork_int",
            "event_time": at.strftime("%Y-%m-%d %H:%M:%S"),
        },
    )
    row = _only(s.conversions(), click_id=click_id)
    assert (row["attribution_type"], row["verdict_source"], row["verdicts_disagree"]) == ("click", "adstack", True)


def test_click_injection_then_purchase_bills_nothing(api: Api, settings: Settings) -> None:
    s = scenario(api, settings, partner=Partner.APPSFLYER, conversion_event="PURCHASE")
    gaid = new_gaid()
    clicked = utcnow()
    click_id = _click(s, gaid, clicked)
    before = s.balance_micros()
    _send(
        s,
        {
            "clickid": click_id,
            "advertising_id": gaid,
            "is_attributed": "true",
            "event_time": (clicked + timedelta(seconds=3)).strftime("%Y-%m-%d %H:%M:%S"),
        },
    )
    _send(
        s,
        {
            "clickid": click_id,
            "advertising_id": gaid,
            "event_name": "af_purchase",
            "event_revenue": "9.99",
            "is_attributed": "true",
            "event_time": (clicked + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S"),
        },
    )
    rows = s.conversions()
    assert _only(rows, conversion_event="INSTALL")["fraud_flags"] == ["click_injection"]
    purchase = _only(rows, conversion_event="PURCHASE")
    assert purchase["fraud_flags"] == ["click_injection"] and purchase["charged_micros"] == 0
    assert s.balance_micros() == before


def test_one_charge_per_click_and_per_device(api: Api, settings: Settings) -> None:
    s = scenario(api, settings, partner=Partner.APPMETRICA, partner_link_id="1019409635088005254")
    before = s.balance_micros()
    at = utcnow()
    click_id = _click(s, None)
    for transaction in ("t1", "t2"):  # the same click's install twice, no GAID, two event ids
        _send(
            s,
            {
                "ext": click_id,
                "transaction_id": transaction,
                "touch_type": "click",
                "conversion_timestamp": int(at.timestamp()),
            },
        )
    shared = _click(s, None)
    for transaction, gaid in (("t3", new_gaid()), ("t4", new_gaid())):  # one click id on two devices
        _send(
            s,
            {
                "ext": shared,
                "gaid": gaid,
                "transaction_id": transaction,
                "touch_type": "click",
                "conversion_timestamp": int(at.timestamp()),
            },
        )
    rows = s.conversions()
    assert len(rows) == 4
    assert sorted(r["charged_micros"] for r in rows) == [0, 0, 2_000_000, 2_000_000]
    assert s.balance_micros() == before - 4_000_000


def test_future_time_is_clamped_and_charged_on_receipt(api: Api, settings: Settings) -> None:
    s = scenario(api, settings, partner=Partner.BRANCH, partner_link_id="example.app.link/abc")
    gaid = new_gaid()
    click_id = _click(s, gaid, utcnow() - timedelta(hours=1))  # long enough before receipt: no click injection
    ahead = utcnow() + timedelta(days=7)
    _send(
        s,
        {
            "id": "f1",
            "name": "install",
            "click_id": click_id,
            "aaid": gaid,
            "attributed": "1",
            "event_timestamp": int(ahead.timestamp() * 1000),
        },
    )
    (row,) = s.conversions()
    occurred = datetime.fromisoformat(row["occurred_at"])
    assert occurred < utcnow() + timedelta(minutes=1)
    assert row["occurred_at"] == row["received_at"] and "future_time_clamped" in row["data_flags"]
    assert row["charged_micros"] == 2_000_000


def test_unreadable_field_is_stored_flagged_and_answered_200(api: Api, settings: Settings) -> None:
    s = scenario(api, settings, partner=Partner.APPSFLYER)
    gaid = new_gaid()
    out = _send(
        s,
        {
            "advertising_id": gaid,
            "event_name": "af_purchase",
            "event_revenue": "lots",
            "event_revenue_currency": "US Dollar",
        },
    )
    assert out == {"status": "ok"}
    comma = _send(s, {"advertising_id": gaid, "event_name": "af_login", "event_revenue": "1,99"})
    assert comma == {"status": "ok"}
    assert len(s.postbacks()) == 2
    rows = s.conversions()
    purchase = _only(rows, conversion_event="PURCHASE")
    assert purchase["revenue"] == "" and purchase["attribution_type"] == "organic"
    assert set(purchase["data_flags"]) == {
        "unreadable:event_revenue:decimal",
        "unreadable:event_revenue_currency:currency",
    }
    login = _only(rows, conversion_event="LOGIN")
    assert login["revenue"] == "1.99" and login["revenue_micros"] == 1_990_000


def test_the_guides_appmetrica_url_is_accepted(api: Api, settings: Settings) -> None:
    s = scenario(api, settings, partner=Partner.APPMETRICA, partner_link_id="1019409635088005254")
    gaid = new_gaid()
    click_id = _click(s, gaid)
    # Exactly as the integration guide writes it: no app, no signature.
    expect(api.client.get(f"/track/m3rd/v1.0?partner=appmetrica&ext={click_id}&gaid={gaid}"), 200)
    other = new_gaid()
    _click(s, other)
    expect(api.client.get(f"/track/m3rd/v1.0?partner=appmetrica&ext=&gaid={other}"), 200)  # device's touch
    refused = expect(api.client.get(f"/track/m3rd/v1.0?partner=appmetrica&ext=&gaid={new_gaid()}"), 400)
    assert refused["error"]["code"] == "missing_app"
    rows = s.conversions()
    assert {(r["attribution_type"], r["match_type"]) for r in rows} == {("click", "click_id"), ("click", "gaid")}
    # Every unsigned conversion says so, charged or not.
    assert all("unsigned_not_charged" in r["data_flags"] for r in rows)


def test_a_package_alone_names_no_app_and_other_partners_need_the_signed_url(api: Api, settings: Settings) -> None:
    """A published package is no secret: without our click id or a touch of the device, an unsigned postback
    could write installs and revenue into any advertiser's reports. Only AppMetrica's guide URL may go unsigned,
    and the app id is read as the integration page writes it."""
    s = scenario(api, settings, partner=Partner.APPMETRICA, partner_link_id="1019409635088005254")
    forged = f"/track/m3rd/v1.0?partner=appmetrica&package={PACKAGE}&gaid={new_gaid()}&event_name=purchase"
    assert expect(api.client.get(forged + "&revenue=999999&currency=USD"), 400)["error"]["code"] == "missing_app"
    appsflyer = scenario(api, settings, partner=Partner.APPSFLYER)
    unsigned = f"/track/m3rd/v1.0?partner=appsflyer&app_id={PACKAGE}&advertising_id={new_gaid()}"
    assert expect(api.client.get(unsigned), 400)["error"]["code"] == "missing_app"
    signed = appsflyer.integration()["postback_url_template"]
    app_id = str(appsflyer.app["id"])
    padded = signed.replace(f"app={app_id}&", f"app=0{app_id}&").split("?", 1)[1]
    assert f"app=0{app_id}&" in padded
    assert expect(api.client.get(f"/track/m3rd/v1.0?{padded}"), 400)["error"]["code"] == "missing_app"
    assert s.conversions() == []


def test_only_a_postback_to_the_apps_signed_url_is_charged(api: Api, settings: Settings) -> None:
    s = scenario(api, settings, partner=Partner.APPMETRICA, partner_link_id="1019409635088005254")
    bare, signed = new_gaid(), new_gaid()
    bare_click, signed_click = _click(s, bare), _click(s, signed)
    expect(api.client.get(f"/track/m3rd/v1.0?partner=appmetrica&ext={bare_click}&gaid={bare}"), 200)
    _send(s, {"ext": signed_click, "gaid": signed})
    rows = {r["click_id"]: r for r in s.conversions()}
    assert rows[bare_click]["charged_micros"] == 0 and rows[bare_click]["attribution_type"] == "click"
    assert rows[signed_click]["charged_micros"] == 2_000_000
    assert "unsigned_not_charged" not in rows[signed_click]["data_flags"]


def test_the_guides_url_finds_a_click_the_pipeline_has_not_applied_yet(api: Api, settings: Settings) -> None:
    s = scenario(api, settings, partner=Partner.APPMETRICA)
    api.client.app.state.pipeline.stop()  # type: ignore[attr-defined]  # the consumers lag behind
    gaid = new_gaid()
    click_id = s.click(gaid, at=utcnow() - timedelta(minutes=5))
    expect(api.client.get(f"/track/m3rd/v1.0?partner=appmetrica&ext={click_id}&gaid={gaid}"), 200)
    (row,) = s.conversions()
    assert (row["attribution_type"], row["match_type"], row["click_id"]) == ("click", "click_id", click_id)


def test_appmetrica_named_event_with_price(api: Api, settings: Settings) -> None:
    s = scenario(api, settings, partner=Partner.APPMETRICA, partner_link_id="1019409635088005254")
    template = s.integration()["postback_url_template"]
    assert "event_name={conversion_event_name}" in template and "price={price}" in template
    gaid = new_gaid()
    click_id = _click(s, gaid)
    at = utcnow()
    install = partners.Conversion(at=at, click_id=click_id, gaid=gaid)
    expect(api.client.get(partners.url(Partner.APPMETRICA, template, install)), 200)
    purchase = partners.Conversion(
        at=at + timedelta(hours=1),
        event="purchase",
        click_id=click_id,
        gaid=gaid,
        revenue=Decimal("4.99"),
        currency="USD",
        params={"sku": "gold"},
    )
    expect(api.client.get(partners.url(Partner.APPMETRICA, template, purchase)), 200)
    row = _only(s.conversions(), conversion_event="PURCHASE")
    assert (row["source_event_name"], row["revenue_micros"], row["attribution_type"]) == (
        "purchase",
        4_990_000,
        "click",
    )


def test_dedupe_by_event_id_or_identifying_fields(api: Api, settings: Settings) -> None:
    adjust = scenario(api, settings, partner=Partner.ADJUST, partner_link_id="abc123")
    gaid = new_gaid()
    second = utcnow().replace(microsecond=0)
    for milli in (120, 870):  # two identical ad-revenue events within one second
        out = _send(
            adjust,
            {
                "activity_kind": "ad_revenue",
                "gps_adid": gaid,
                "adid": "a1",
                "created_at": int(second.timestamp()),
                "created_at_milli": int(second.timestamp()) * 1000 + milli,
                "revenue_float": "0.01",
            },
        )
        assert out == {"status": "ok"}
    assert len(adjust.postbacks()) == 2  # two events, not a retry
    flyer = scenario(api, settings, partner=Partner.APPSFLYER)
    fields = {"advertising_id": gaid, "event_name": "af_login", "event_time": "2025-01-01 12:00:00.123"}
    assert _send(flyer, fields) == {"status": "ok"}
    assert _send(flyer, {**fields, "ip": "10.0.0.1"}) == {"status": "ok"}  # a retry with one more field
    assert len(flyer.postbacks()) == 1
    assert len(adjust.conversions(event="AD_REVENUE")) == 2


def test_two_events_of_one_device_in_one_second_keep_both_revenues(api: Api, settings: Settings) -> None:
    """Adjust's `created_at` and MyTracker's `mt_event_ts` are whole seconds and neither sends an event id: two
    events differing only in revenue were stored as one. A partner's retry resends the same postback: still one."""
    second = int((utcnow() - timedelta(minutes=1)).timestamp())
    cases = (
        (Partner.ADJUST, "AD_REVENUE", "revenue_float", ("0.0150", "0.0420"),
         lambda click, gaid: {"activity_kind": "ad_revenue", "label": click, "gps_adid": gaid, "currency": "USD",
                              "created_at": second}),
        (Partner.MYTRACKER, "PURCHASE", "revenue", ("4.99", "19.99"),
         lambda click, gaid: {"clickid": click, "gaid": gaid, "event": "purchase", "currency": "USD",
                              "event-time": second}),
    )
    for partner, event, field, amounts, fields in cases:
        s = scenario(api, settings, partner=partner)
        gaid = new_gaid()
        click = _click(s, gaid, utcnow() - timedelta(hours=1))
        for amount in amounts:
            _send(s, {**fields(click, gaid), field: amount})
        _send(s, {**fields(click, gaid), field: amounts[0] + "0"})  # the first one's retry, spelt otherwise
        rows = [r for r in s.conversions() if r["conversion_event"] == event]
        assert sorted(Decimal(r["revenue"]) for r in rows) == sorted(map(Decimal, amounts)), partner
        assert len(s.postbacks()) == 2, partner


def test_a_retry_without_its_event_id_is_told_apart_from_another_event_by_its_revenue(
    api: Api, settings: Settings
) -> None:
    s = scenario(api, settings, partner=Partner.APPMETRICA, partner_link_id="1019409635088005254")
    gaid = new_gaid()
    click = _click(s, gaid)
    _send(s, {"ext": click, "gaid": gaid, "transaction_id": "tx-1"})
    at = int((utcnow() - timedelta(seconds=30)).timestamp())
    purchase = {"ext": click, "gaid": gaid, "event_name": "purchase", "currency": "USD", "conversion_timestamp": at}
    _send(s, {**purchase, "price": "5", "transaction_id": "tx-2"})
    _send(s, {**purchase, "price": "7"})  # another purchase in that second, without an event id
    _send(s, {**purchase, "price": "5.00"})  # the first one's retry, its event id lost
    purchases = [r for r in s.conversions() if r["conversion_event"] == "PURCHASE"]
    assert sorted(r["revenue_micros"] for r in purchases) == [5_000_000, 7_000_000]
    assert [p["status"] for p in s.postbacks()].count("duplicate") == 1


def test_unreplaced_macros_are_absent_not_forged(api: Api, settings: Settings) -> None:
    s = scenario(api, settings, partner=Partner.APPSFLYER)
    for n, macro in enumerate(UNREPLACED_CLICK_ID_MACROS):
        _send(s, {"clickid": macro, "advertising_id": new_gaid(), "event_time": f"2025-01-01 12:00:0{n}"})
    rows = s.conversions()
    assert len(rows) == 8
    assert all(r["fraud_flags"] == [] and r["click_id"] == "" for r in rows)


def test_a_partners_reattribution_is_recorded_as_a_reinstall_and_not_charged(api: Api, settings: Settings) -> None:
    """Adjust's `activity_kind=reattribution`: the app was installed before, whether or not we saw that install."""
    s = scenario(api, settings, partner=Partner.ADJUST)
    before = s.balance_micros()
    first, again = new_gaid(), new_gaid()
    first_click, again_click = _click(s, first), _click(s, again)
    _send(s, {"activity_kind": "install", "click_id": first_click, "gps_adid": first})
    _send(s, {"activity_kind": "reattribution", "click_id": again_click, "gps_adid": again})
    rows = {r["click_id"]: r for r in s.conversions()}
    installed, returned = rows[first_click], rows[again_click]
    assert (installed["is_reinstall"], installed["charged_micros"]) == (False, 2_000_000)
    assert (returned["is_reinstall"], returned["charged_micros"]) == (True, 0)
    assert "partner_reattribution" in returned["data_flags"]
    assert s.balance_micros() == before - 2_000_000


def test_a_postback_named_reinstall_is_a_reinstall_for_every_partner(api: Api, settings: Settings) -> None:
    """Singular's `reinstall` was charged as a new install while Kochava's was a reinstall."""
    for partner, click_field, gaid_field, fields in (
        (Partner.SINGULAR, "cl", "aifa", {"evtname": "reinstall", "is_ours": "1"}),
        (Partner.KOCHAVA, "click_id", "adid", {"event_name": "reinstall"}),
        (Partner.AIRBRIDGE, "click_id", "gaid", {"event": "airbridge.reinstall"}),
    ):
        s = scenario(api, settings, partner=partner)
        before = s.balance_micros()
        gaid = new_gaid()
        _send(s, {click_field: _click(s, gaid), gaid_field: gaid, **fields})
        (row,) = s.conversions()
        assert (row["conversion_event"], row["is_reinstall"], row["charged_micros"]) == ("INSTALL", True, 0), partner
        assert "partner_reattribution" in row["data_flags"] and s.balance_micros() == before, partner


def test_a_second_install_on_the_same_click_without_the_gaid_is_a_reinstall(api: Api, settings: Settings) -> None:
    s = scenario(api, settings, partner=Partner.APPMETRICA, partner_link_id="1019409635088005254")
    gaid = new_gaid()
    click = _click(s, gaid)
    _send(s, {"ext": click, "gaid": gaid, "transaction_id": "tx-1"})
    _send(s, {"ext": click, "transaction_id": "tx-3"})  # the same click, the device id left out
    rows = sorted(s.conversions(), key=lambda r: r["id"])
    assert [(r["is_reinstall"], r["charged_micros"]) for r in rows] == [(False, 2_000_000), (True, 0)]


def test_an_install_is_judged_no_later_than_its_postback_arrived(api: Api, settings: Settings) -> None:
    """A partner time five minutes ahead (within the clock-skew tolerance, so kept) made a click two seconds
    before the postback look like 302 s of click-to-install, past the click-injection threshold."""
    s = scenario(api, settings, partner=Partner.APPMETRICA, partner_link_id="1019409635088005254")
    before = s.balance_micros()
    gaid = new_gaid()
    click = _click(s, gaid, utcnow() - timedelta(seconds=2))
    ahead = int((utcnow() + timedelta(minutes=5)).timestamp())
    _send(s, {"ext": click, "gaid": gaid, "transaction_id": "tx-1", "conversion_timestamp": ahead})
    (row,) = s.conversions()
    assert "click_injection" in row["fraud_flags"] and row["charged_micros"] == 0
    assert row["click_to_install_seconds"] < 10 and "click_to_install_to_receipt" in row["data_flags"]
    assert s.balance_micros() == before


def test_a_retry_without_its_event_id_is_matched_by_a_partner_time_a_little_ahead(
    api: Api, settings: Settings
) -> None:
    s = scenario(api, settings, partner=Partner.APPMETRICA, partner_link_id="1019409635088005254")
    gaid = new_gaid()
    click = _click(s, gaid)
    _send(s, {"ext": click, "gaid": gaid, "transaction_id": "tx-1"})
    ahead = int((utcnow() + timedelta(seconds=30)).timestamp())
    purchase = {"ext": click, "gaid": gaid, "event_name": "purchase", "price": "5", "currency": "USD",
                "conversion_timestamp": ahead}
    _send(s, {**purchase, "transaction_id": "tx-2"})
    _send(s, purchase)  # the partner's retry, its event id lost
    purchases = [r for r in s.conversions() if r["conversion_event"] == "PURCHASE"]
    assert [r["revenue_micros"] for r in purchases] == [5_000_000]
    assert sorted(p["status"] for p in s.postbacks()).count("duplicate") == 1


def test_revenue_within_its_cap_as_sent_but_past_it_once_converted_is_not_counted(
    api: Api, settings: Settings
) -> None:
    """999,999,999 GBP is under the cap of a billion units; in an INR account it is about 10^17 micros, so
    ninety such conversions would wrap the reports' 64-bit revenue sum."""
    s = scenario(api, settings, partner=Partner.APPMETRICA, partner_link_id="1019409635088005254", currency="INR")
    gaid = new_gaid()
    click = _click(s, gaid)
    _send(s, {"ext": click, "gaid": gaid, "transaction_id": "tx-1"})
    for n, price in enumerate(("999999999", "10")):
        _send(s, {"ext": click, "gaid": gaid, "event_name": "purchase", "price": price, "currency": "GBP",
                  "transaction_id": f"tx-p{n}"})
    purchases = {r["revenue"]: r for r in s.conversions() if r["conversion_event"] == "PURCHASE"}
    huge, small = purchases["999999999"], purchases["10"]
    assert (huge["revenue_micros"], huge["revenue_usd_micros"]) == (0, 0)
    assert "revenue_out_of_range" in huge["data_flags"]
    assert 0 < small["revenue_micros"] < 10**12 and "revenue_out_of_range" not in small["data_flags"]


@pytest.mark.parametrize("partner", [Partner.TENJIN, Partner.MYTRACKER, Partner.AIRBRIDGE])
def test_a_partner_without_a_verdict_credits_us_only_by_returning_our_click_id(
    api: Api, settings: Settings, partner: Partner
) -> None:
    """Their postbacks carry no verdict: an install our click id comes back on is ours and billed; one matched
    only by the device, from a feed of all users, may be another network's, and is neither ours nor billed."""
    s = scenario(api, settings, partner=partner)
    template = s.integration()["postback_url_template"]
    clicked = utcnow() - timedelta(days=2)
    credited, elsewhere = new_gaid(), new_gaid()
    click_id = s.click(credited, at=clicked)
    s.click(elsewhere, at=clicked)
    before = s.balance_micros()
    for conversion in (partners.Conversion(at=clicked + timedelta(hours=1), click_id=click_id, gaid=credited),
                       partners.Conversion(at=clicked + timedelta(hours=1), gaid=elsewhere)):
        expect(api.client.get(partners.url(partner, template, conversion)), 200)
    rows = s.conversions()
    assert len(rows) == 2
    ours = next(r for r in rows if r["match_type"] == "click_id")
    theirs = next(r for r in rows if r is not ours)
    assert (ours["attribution_type"], ours["match_type"]) == ("click", "click_id")
    assert (theirs["attribution_type"], theirs["campaign_id"]) == ("other", 0)
    assert "device_match_without_partner_credit" in theirs["data_flags"]
    assert before - s.balance_micros() == 2_000_000  # one CPA charge: the credited install's


def test_the_events_of_a_user_another_network_won_are_reported_as_other(api: Api, settings: Settings) -> None:
    """Tenjin's feed of all users: an install credited elsewhere (no click id of ours), then that user's purchase.
    The purchase was reported as organic."""
    s = scenario(api, settings, partner=Partner.TENJIN)
    gaid = new_gaid()
    _click(s, gaid, utcnow() - timedelta(hours=3))
    _send(s, {"advertising_id": gaid, "created_at": int((utcnow() - timedelta(hours=2)).timestamp())})
    _send(s, {"advertising_id": gaid, "event": "purchase", "revenue": "9.99", "currency": "USD",
              "created_at": int((utcnow() - timedelta(hours=1)).timestamp())})
    purchase = _only(s.conversions(), conversion_event="PURCHASE")
    assert (purchase["attribution_type"], purchase["campaign_id"], purchase["charged_micros"]) == ("other", 0, 0)
    metrics = ["organic_in_app_events", "other_in_app_events", "organic_revenue_micros", "other_revenue_micros",
               "organic_installs", "other_installs"]
    today = utcnow().date()
    report = expect(s.api.client.get("/api/v1/reports", headers=s.advertiser.headers, params={
        "start_date": (today - timedelta(days=1)).isoformat(), "end_date": (today + timedelta(days=1)).isoformat(),
        "time_zone": "UTC", "metrics": metrics}), 200)
    assert {m: report["totals"][m] for m in metrics} == {
        "organic_in_app_events": 0, "other_in_app_events": 1, "organic_revenue_micros": 0,
        "other_revenue_micros": 9_990_000, "organic_installs": 0, "other_installs": 1}


def test_a_postback_in_another_partners_name_is_kept_but_never_billed(api: Api, settings: Settings) -> None:
    """The signature names the app, not the partner: read by Singular's rules on an AppsFlyer app, a postback
    could pick the verdict fields that suit it."""
    s = scenario(api, settings, partner=Partner.APPSFLYER)
    gaid = new_gaid()
    click_id = s.click(gaid, at=utcnow() - timedelta(hours=3))
    signed = s.integration()["postback_url_template"].split("?", 1)[1]
    own = "&".join(p for p in signed.split("&") if p.split("=")[0] in ("app", "sig"))
    before = s.balance_micros()
    expect(api.client.get(f"/track/m3rd/v1.0?partner=singular&{own}&cl={click_id}&aifa={gaid}&is_ours=1"), 200)
    (row,) = s.conversions()
    assert "partner_mismatch_not_charged" in row["data_flags"] and row["charged_micros"] == 0
    assert s.balance_micros() == before


def test_a_refund_is_kept_negative_and_a_currency_without_a_rate_counts_no_money(api: Api, settings: Settings) -> None:
    """AppsFlyer takes af_revenue "positive or negative" (a refund); a currency with no FX rate cannot be counted
    in the account's money, and both say so in the conversion's data flags."""
    s = scenario(api, settings, partner=Partner.APPSFLYER)
    gaid = new_gaid()
    _send(s, {"advertising_id": gaid, "event_name": "af_purchase", "event_revenue": "-5",
              "event_revenue_currency": "USD"})
    _send(s, {"advertising_id": gaid, "event_name": "af_login", "event_revenue": "5",
              "event_revenue_currency": "XXX"})
    rows = s.conversions()
    refund = _only(rows, conversion_event="PURCHASE")
    assert refund["revenue_micros"] == -5_000_000 and "negative_revenue" in refund["data_flags"]
    unconvertible = _only(rows, conversion_event="LOGIN")
    assert unconvertible["revenue"] == "5" and unconvertible["currency"] == "XXX"
    assert unconvertible["revenue_micros"] == 0 and "revenue_without_fx_rate" in unconvertible["data_flags"]
    assert "negative_revenue" not in unconvertible["data_flags"]


def test_kochava_names_us_by_the_numeric_network_id_the_app_is_set_up_with(api: Api, settings: Settings) -> None:
    """Kochava knows a network by the numeric network_id of its click link, and the app is set up with that id as
    its partner network name. The verdict read the network name alone: Kochava's label for the id matched none of
    our names, so an install Kochava credited to us was another network's and never billed."""
    s = scenario(api, settings, partner=Partner.KOCHAVA, partner_network_name="48213")
    integration = s.integration()
    assert "network_id=48213" in integration["tracking_link_template"]
    assert "network_id={network_id}" in integration["postback_url_template"]
    before = s.balance_micros()
    label = "Xiaomi Global - Android"  # Kochava's name for network 48213, which adstack is never told
    install = {"event_name": "_install", "event_time": int(utcnow().timestamp())}
    ours, other, unnamed = new_gaid(), new_gaid(), new_gaid()
    click_ours, click_other, click_unnamed = _click(s, ours), _click(s, other), _click(s, unnamed)
    _send(s, {**install, "click_id": click_ours, "adid": ours, "network_id": "48213", "network_name": label})
    _send(s, {**install, "click_id": click_other, "adid": other, "network_id": "51007", "network_name": "Other Ads"})
    # Only the label: it names no network adstack knows, so Kochava's verdict is unknown and our click id decides.
    _send(s, {**install, "click_id": click_unnamed, "adid": unnamed, "network_name": label})
    rows = s.conversions()
    paid = _only(rows, click_id=click_ours)
    assert (paid["attribution_type"], paid["partner_verdict"], paid["verdict_reason"]) == (
        "click",
        "attributed",
        "network_id=48213",
    )
    assert paid["charged_micros"] == 2_000_000
    moved = _only(rows, click_id=click_other)
    assert (moved["attribution_type"], moved["partner_verdict"], moved["charged_micros"]) == (
        "other",
        "other_network",
        0,
    )
    undecided = _only(rows, click_id=click_unnamed)
    assert (undecided["attribution_type"], undecided["partner_verdict"], undecided["verdict_source"]) == (
        "click",
        "",
        "adstack",
    )
    assert s.balance_micros() == before - 4_000_000
