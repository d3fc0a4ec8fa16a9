"""A postback to the guide's bare AppMetrica URL (no `app`, no `sig`) is reported but never charged; one sent
first must not keep the app's signed copy of the same conversion from being charged."""

from __future__ import annotations

import time
from datetime import timedelta
from urllib.parse import urlencode

import pytest

from adstack.core.settings import Settings
from adstack.core.timeutil import utcnow
from adstack.core.vocabulary import Partner
from tests.attribution.helpers import new_gaid, scenario
from tests.support import Api, expect

HOLD_SECONDS = 1


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"unsigned_postback_hold_seconds": HOLD_SECONDS})


def _signed_query(template: str) -> str:
    """partner, app and sig of the app's postback URL."""
    return "&".join(template.split("?", 1)[1].split("&")[:3])


def test_a_signed_copy_replaces_an_unsigned_postback_sent_before_it(api: Api, settings: Settings) -> None:
    s = scenario(api, settings, partner=Partner.APPMETRICA, partner_link_id="1019409635088005254")
    gaid = new_gaid()
    click_id = s.click(gaid, at=utcnow() - timedelta(minutes=5))
    before = s.balance_micros()
    # The same install twice: first to the guide's bare URL, then to the app's signed URL.
    expect(api.client.get(f"/track/m3rd/v1.0?{urlencode({'partner': 'appmetrica', 'ext': click_id, 'gaid': gaid})}"),
           200)
    signed = _signed_query(s.integration()["postback_url_template"])
    expect(api.client.get(f"/track/m3rd/v1.0?{signed}&{urlencode({'ext': click_id, 'gaid': gaid})}"), 200)

    [row] = s.conversions()
    assert row["charged_micros"] == 2_000_000
    assert "unsigned_not_charged" not in row["data_flags"]
    assert before - s.balance_micros() == 2_000_000
    [postback] = s.postbacks()
    assert postback["fields"].get("sig")  # the stored postback is the signed copy


def test_an_unsigned_postback_waits_for_the_hold_then_is_reported_uncharged(api: Api, settings: Settings) -> None:
    s = scenario(api, settings, partner=Partner.APPMETRICA, partner_link_id="1019409635088005254")
    gaid = new_gaid()
    click_id = s.click(gaid, at=utcnow() - timedelta(minutes=5))
    expect(api.client.get(f"/track/m3rd/v1.0?{urlencode({'partner': 'appmetrica', 'ext': click_id, 'gaid': gaid})}"),
           200)
    assert s.conversions() == []  # within the hold: a signed copy may still come
    assert [p["status"] for p in s.postbacks()] == ["pending"]
    time.sleep(HOLD_SECONDS + 0.2)
    [row] = s.conversions()
    assert row["attribution_type"] == "click" and row["charged_micros"] == 0
    assert "unsigned_not_charged" in row["data_flags"]
    # A signed copy after the unsigned one was attributed is the same conversion: counted and charged never twice.
    signed = _signed_query(s.integration()["postback_url_template"])
    expect(api.client.get(f"/track/m3rd/v1.0?{signed}&{urlencode({'ext': click_id, 'gaid': gaid})}"), 200)
    assert len(s.conversions()) == 1
