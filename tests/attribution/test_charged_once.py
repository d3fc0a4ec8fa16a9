"""One CPA charge per click it was attributed to, and per device whichever form of its GAID a postback carries:
a conversion matched by device and one naming the click are the same click's, and a device's raw GAID, MD5 and
SHA1 are one device. A new click of ours after the re-attribution window is a new charge."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from adstack.core.settings import Settings
from adstack.core.timeutil import utcnow
from adstack.core.vocabulary import Partner
from tests.attribution.helpers import new_gaid, scenario
from tests.attribution.test_verdicts import _click, _send
from tests.support import Api

CPA = 2_000_000


def _at(minutes_ago: float) -> str:
    return (utcnow() - timedelta(minutes=minutes_ago)).strftime("%Y-%m-%d %H:%M:%S")


def _sha1(gaid: str) -> str:
    return hashlib.sha1(gaid.encode()).hexdigest()


def test_a_click_matched_by_device_and_then_named_is_charged_once(api: Api, settings: Settings) -> None:
    s = scenario(api, settings, partner=Partner.APPSFLYER)
    before = s.balance_micros()
    gaid, other = new_gaid(), new_gaid()
    click = _click(s, gaid)
    _send(s, {"advertising_id": gaid, "event_time": _at(2)})  # matched to the click by its device
    _send(s, {"clickid": click, "event_time": _at(2)})  # the same install, its click id only
    _send(s, {"clickid": click, "advertising_id": other, "event_time": _at(1)})  # the click again, another device
    rows = s.conversions()
    assert sum(r["charged_micros"] for r in rows) == CPA and s.balance_micros() == before - CPA


def test_a_purchase_is_charged_once_whether_it_names_the_device_or_the_click(api: Api, settings: Settings) -> None:
    s = scenario(api, settings, partner=Partner.APPSFLYER, conversion_event="PURCHASE")
    before = s.balance_micros()
    gaid = new_gaid()
    click = _click(s, gaid)
    _send(s, {"advertising_id": gaid, "event_time": _at(3)})
    _send(s, {"advertising_id": gaid, "event_name": "af_purchase", "event_revenue": "5", "event_time": _at(2)})
    s.conversions()  # across batches too
    _send(s, {"clickid": click, "event_name": "af_purchase", "event_revenue": "7", "event_time": _at(1)})
    rows = s.conversions()
    assert [r["charged_micros"] for r in rows if r["conversion_event"] == "PURCHASE"].count(CPA) == 1
    assert s.balance_micros() == before - CPA


def test_a_reinstall_is_one_device_in_any_gaid_form(api: Api, settings: Settings) -> None:
    for first, second in ((_sha1, str), (str, _sha1)):
        s = scenario(api, settings, partner=Partner.APPSFLYER)
        before = s.balance_micros()
        gaid = new_gaid()
        _click(s, gaid, utcnow() - timedelta(days=1, minutes=10))
        _send(s, {"advertising_id": first(gaid), "event_time": _at(24 * 60)})
        s.conversions()
        _click(s, gaid, utcnow() - timedelta(minutes=10))
        _send(s, {"advertising_id": second(gaid), "event_time": _at(1)})
        rows = s.conversions()
        assert sorted(r["is_reinstall"] for r in rows) == [False, True]
        assert s.balance_micros() == before - CPA


def test_an_event_finds_its_install_in_any_gaid_form(api: Api, settings: Settings) -> None:
    for across_batches in (False, True):
        s = scenario(api, settings, partner=Partner.APPSFLYER, conversion_event="PURCHASE")
        before = s.balance_micros()
        gaid = new_gaid()
        _click(s, gaid, utcnow() - timedelta(minutes=10))
        _send(s, {"advertising_id": _sha1(gaid), "event_time": _at(5)})
        if across_batches:
            s.conversions()
        _send(s, {"advertising_id": gaid, "event_name": "af_purchase", "event_revenue": "1", "event_time": _at(2)})
        [purchase] = [r for r in s.conversions() if r["conversion_event"] == "PURCHASE"]
        assert purchase["attribution_type"] == "click" and purchase["charged_micros"] == CPA
        assert s.balance_micros() == before - CPA


def test_a_new_click_after_the_reattribution_window_is_a_new_charge(api: Api, settings: Settings) -> None:
    s = scenario(api, settings, partner=Partner.APPSFLYER)
    before = s.balance_micros()
    gaid = new_gaid()
    _click(s, gaid, utcnow() - timedelta(days=100, minutes=5))
    _send(s, {"advertising_id": gaid, "event_time": _at(100 * 24 * 60)})
    s.conversions()
    _click(s, gaid, utcnow() - timedelta(minutes=5))
    _send(s, {"advertising_id": gaid, "event_time": _at(1)})
    rows = s.conversions()
    assert all(r["attribution_type"] == "click" and not r["is_reinstall"] for r in rows)
    assert sorted(r["charged_micros"] for r in rows) == [CPA, CPA] and s.balance_micros() == before - 2 * CPA
