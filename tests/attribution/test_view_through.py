"""A view-through install the partner credits by the click id our view-through link carried: the link fired on
every impression carries the click id a later click would carry (serving.impression_monitors), so a postback that
returns it names the impression. The install is a view-through under the impression's campaign and ad group, charged
once per impression like a click-through once per click, within the view-through window and only with
view-through on; a click of that id before the install beats it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest

from adstack.core.settings import Settings
from adstack.core.timeutil import utcnow
from adstack.core.vocabulary import Partner
from tests.attribution.helpers import Scenario, new_gaid, received_at, scenario
from tests.support import Api, expect

CPA = 2_000_000


def _ms(at: datetime) -> str:
    return str(int(at.timestamp() * 1000))


def _s(at: datetime) -> str:
    return str(int(at.timestamp()))


# The install postback each partner sends for a view-through credited by our click id, as its template fills it.
INSTALLS: dict[Partner, Callable[[str, str | None, datetime], dict[str, Any]]] = {
    Partner.AIRBRIDGE: lambda click_id, gaid, at: {
        "click_id": click_id, "event": "airbridge.install", "event_uuid": f"u-{click_id}", "event_ts": _ms(at),
        **({"gaid": gaid} if gaid else {})},
    Partner.TENJIN: lambda click_id, gaid, at: {
        "click_id": click_id, "created_at": _s(at), **({"advertising_id": gaid} if gaid else {})},
    Partner.MYTRACKER: lambda click_id, gaid, at: {
        "clickid": click_id, "event-time": _s(at), **({"gaid": gaid} if gaid else {})},
    # AppsFlyer's verdict, without the GAID: only the click id names our touch.
    Partner.APPSFLYER: lambda click_id, gaid, at: {
        "clickid": click_id, "media_source": "adstack_int", "attributed_touch_type": "impression",
        "install_unix_ts": _s(at), **({"advertising_id": gaid} if gaid else {})},
}


def _conversion(s: Scenario, event: str = "INSTALL") -> dict[str, Any]:
    [row] = [r for r in s.conversions() if r["conversion_event"] == event]
    return row


@pytest.mark.parametrize("partner", list(INSTALLS))
def test_a_view_through_credited_by_the_impressions_click_id_is_ours_and_charged(
        api: Api, settings: Settings, partner: Partner) -> None:
    s = scenario(api, settings, partner=partner)
    before = s.balance_micros()
    gaid = new_gaid()
    seen = s.impression(gaid, at=utcnow() - timedelta(hours=2))
    s.postback(**INSTALLS[partner](seen.click_id, gaid if partner is not Partner.APPSFLYER else None,
                                   utcnow() - timedelta(hours=1)))
    row = _conversion(s)
    assert (row["attribution_type"], row["match_type"], row["touch_kind"]) == ("view", "click_id", "impression")
    assert (row["campaign_id"], row["ad_group_id"]) == (s.campaign["id"], s.ad_group["id"])
    assert row["click_id"] == seen.click_id and row["touch_id"] != seen.click_id  # the impression's own id
    assert row["charged_micros"] == CPA and before - s.balance_micros() == CPA
    assert "device_match_without_partner_credit" not in row["data_flags"]


@pytest.mark.parametrize("partner", [Partner.AIRBRIDGE, Partner.APPSFLYER])
def test_outside_the_view_through_window_or_with_view_through_off_it_is_not_charged(
        api: Api, settings: Settings, partner: Partner) -> None:
    for app_settings, seen_ago in (({}, timedelta(hours=26)), ({"view_through_enabled": False}, timedelta(hours=2))):
        s = scenario(api, settings, partner=partner, **app_settings)
        before = s.balance_micros()
        seen = s.impression(None, at=utcnow() - seen_ago)
        s.postback(**INSTALLS[partner](seen.click_id, None, utcnow() - timedelta(hours=1)))
        row = _conversion(s)
        assert row["touch_kind"] == "" and row["campaign_id"] == 0, app_settings
        assert row["charged_micros"] == 0 and s.balance_micros() == before, app_settings


@pytest.mark.parametrize("partner", [Partner.AIRBRIDGE, Partner.APPSFLYER])
def test_a_click_of_the_same_id_beats_the_impression(api: Api, settings: Settings, partner: Partner) -> None:
    s = scenario(api, settings, partner=partner)
    before = s.balance_micros()
    gaid = new_gaid()
    seen_at = utcnow() - timedelta(hours=3)
    urls = s.serve(gaid, issued_at=seen_at)
    with received_at(seen_at):
        expect(api.client.get(urls.impression_url), 204)
    with received_at(seen_at + timedelta(minutes=1)):
        assert api.client.get(urls.click_url, follow_redirects=False).status_code == 302
    s.postback(**INSTALLS[partner](urls.click_id, None, utcnow() - timedelta(hours=1)))
    row = _conversion(s)
    assert (row["attribution_type"], row["match_type"], row["touch_kind"], row["touch_id"]) == (
        "click", "click_id", "click", urls.click_id)
    assert row["charged_micros"] == CPA and before - s.balance_micros() == CPA


def test_an_impression_found_by_device_and_then_by_its_click_id_is_charged_once(
        api: Api, settings: Settings) -> None:
    s = scenario(api, settings, partner=Partner.APPSFLYER)
    before = s.balance_micros()
    gaid = new_gaid()
    seen = s.impression(gaid, at=utcnow() - timedelta(hours=2))
    install_at = utcnow() - timedelta(hours=1)
    s.postback(advertising_id=gaid, install_unix_ts=_s(install_at))  # no verdict: matched to the impression
    s.conversions()
    s.postback(**INSTALLS[Partner.APPSFLYER](seen.click_id, None, install_at))  # the same install by its click id
    rows = s.conversions()
    assert [(r["touch_kind"], r["is_reinstall"]) for r in sorted(rows, key=lambda r: r["id"])] == [
        ("impression", False), ("impression", True)]  # one install, as for a click matched then named
    assert sum(r["charged_micros"] for r in rows) == CPA and before - s.balance_micros() == CPA


def test_an_event_after_a_view_through_is_charged_once_under_the_impression(api: Api, settings: Settings) -> None:
    s = scenario(api, settings, partner=Partner.AIRBRIDGE, conversion_event="PURCHASE")
    before = s.balance_micros()
    gaid = new_gaid()
    seen = s.impression(gaid, at=utcnow() - timedelta(hours=3))
    s.postback(**INSTALLS[Partner.AIRBRIDGE](seen.click_id, gaid, utcnow() - timedelta(hours=2)))
    for n, ago in enumerate((timedelta(hours=1), timedelta(minutes=30))):  # one by click id, one by device
        named = {"click_id": seen.click_id} if n == 0 else {"gaid": gaid}
        s.postback(event="airbridge.ecommerce.order.completed", event_uuid=f"p-{n}", event_ts=_ms(utcnow() - ago),
                   revenue="5", currency="USD", **named)
    purchases = [r for r in s.conversions() if r["conversion_event"] == "PURCHASE"]
    assert [(r["attribution_type"], r["campaign_id"]) for r in purchases] == [("view", s.campaign["id"])] * 2
    assert sorted(r["charged_micros"] for r in purchases) == [0, CPA] and before - s.balance_micros() == CPA


def test_a_bare_appmetrica_postback_finds_its_app_by_the_impressions_click_id(api: Api, settings: Settings) -> None:
    s = scenario(api, settings, partner=Partner.APPMETRICA)
    seen = s.impression(None, at=utcnow() - timedelta(hours=2))
    expect(api.client.get(f"/track/m3rd/v1.0?{urlencode({'partner': 'appmetrica', 'ext': seen.click_id})}"), 200)
    row = _conversion(s)
    assert (row["attribution_type"], row["touch_kind"], row["campaign_id"]) == ("view", "impression",
                                                                                s.campaign["id"])
    assert row["charged_micros"] == 0 and "unsigned_not_charged" in row["data_flags"]
