"""The console's app page says what to fill in while a partner link cannot be shown, in both languages."""

from __future__ import annotations

import html

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from adstack.apps.models import App
from adstack.apps.partners import SPECS
from adstack.console.pages.apps import LINK_ID_LABELS
from tests.console.support import post_form, register


def test_every_partner_tracker_label_is_marked_for_translation() -> None:
    assert {partner: spec.link_id_label for partner, spec in SPECS.items() if spec.link_id_label} == LINK_ID_LABELS


def test_a_missing_tracker_id_is_named_not_printed_as_none(client: TestClient, session: Session) -> None:
    register(client, 77)
    created = post_form(
        client,
        "/console/apps",
        "/console/apps",
        {
            "name": "Kopi Wallet",
            "package_name": "com.kopi.wallet",
            "store": "google_play",
            "partner": "appmetrica",
            "click_lookback_days": "7",
            "view_through_enabled": "on",
        },
    )
    assert created.status_code == 303, created.text[-1500:]
    app_id = session.scalar(select(App.id))
    page = client.get(f"/console/apps/{app_id}?partner=appmetrica")
    text = html.unescape(page.text)
    assert "None" not in text
    assert 'id="tracking-link-missing"' in text and 'id="tracking-link"' not in text
    assert "Partner app or link id: AppMetrica tracker id" in text
    assert 'id="view-through-link"' not in text

    client.cookies.set("adstack_lang", "zh")
    chinese = html.unescape(client.get(f"/console/apps/{app_id}?partner=appmetrica").text)
    assert "None" not in chinese
    assert "合作方应用或链接 ID：AppMetrica 跟踪器 ID" in chinese and "尚无链接" in chinese
    client.cookies.set("adstack_lang", "en")

    # AppsFlyer needs no tracker id: both links are shown.
    flyer = html.unescape(client.get(f"/console/apps/{app_id}?partner=appsflyer").text)
    assert 'id="tracking-link"' in flyer and 'id="tracking-link-missing"' not in flyer
    assert "impression.appsflyer.com/com.kopi.wallet" in flyer.split('id="view-through-link">')[1]

    saved = post_form(
        client,
        f"/console/apps/{app_id}",
        f"/console/apps/{app_id}/edit",
        {
            "name": "Kopi Wallet",
            "store": "google_play",
            "partner": "appmetrica",
            "partner_link_id": "1019409635088005254",
            "click_lookback_days": "7",
            "view_through_hours": "24",
            "reattribution_window_days": "90",
            "view_through_enabled": "on",
        },
    )
    assert saved.status_code == 303, saved.text[-1500:]
    filled = html.unescape(client.get(f"/console/apps/{app_id}?partner=appmetrica").text)
    assert 'id="tracking-link-missing"' not in filled
    assert "redirect.appmetrica.yandex.com/serve/1019409635088005254" in filled
    assert "impression.appmetrica.yandex.com/serve/1019409635088005254" in filled
