"""Served ads carry the promoted app's view-through link beside our impression pixel, filled per impression."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from adstack.core.settings import Settings
from adstack.core.timeutil import utcnow
from adstack.tracking.tokens import decode_token, new_click_id
from tests.serving.test_api import GAID, ad_request, ads_now, eventually, setup_serving_ad
from tests.support import Api, expect


def _impression_trackers(api: Api, space_id: int) -> list[str]:
    ads = ads_now(api.client, space_id)
    return list(ads[0]["tracking"]["impression"]) if ads else []


def test_served_ads_fire_the_partners_view_through_link(api: Api, settings: Settings) -> None:
    made = setup_serving_ad(api)
    actor, space_id, group = made["actor"], made["space"]["id"], made["group"]
    app: dict[str, Any] = expect(
        api.client.post(
            "/api/v1/apps",
            headers=actor.headers,
            json={"package_name": "com.example.game", "name": "Example Game", "partner": "appmetrica"},
        ),
        201,
    )
    # No tracker id yet: no link to fire, only our pixel and the creative's monitor.
    assert eventually(lambda: len(_impression_trackers(api, space_id)) == 2)
    expect(
        api.client.patch(
            f"/api/v1/apps/{app['id']}", headers=actor.headers, json={"partner_link_id": "1019409635088005254"}
        ),
        200,
    )
    assert eventually(lambda: len(_impression_trackers(api, space_id)) == 3)

    (ad,) = expect(ad_request(api.client, space_id), 200)["ads"]
    ours, _monitor, view = ad["tracking"]["impression"]
    assert urlsplit(ours).path == "/t/imp"
    link = urlsplit(view)
    assert (link.hostname, link.path) == ("impression.appmetrica.yandex.com", "/serve/1019409635088005254")
    query = parse_qs(link.query)
    assert query["google_aid"] == [GAID]
    assert (query["c"], query["adgroup"], query["creative"]) == (
        [str(group["campaign_id"])],
        [str(group["id"])],
        [str(made["creative"]["id"])],
    )
    assert query["site_id"] == [str(made["space"]["publisher_id"])]
    # The click id is the one a click on this impression carries. AppMetrica documents no parameter to send
    # a click on to our click URL, so the click goes straight to the creative's click URL (docs/partners.md).
    clicked = api.client.get(ad["click_url"].split("testserver", 1)[1], follow_redirects=False)
    assert clicked.status_code == 302 and clicked.headers["location"] == made["creative"]["click_url"]
    claims = decode_token(parse_qs(urlsplit(ad["click_url"]).query)["t"][0], settings.resolved_secret_key, now=utcnow())
    assert query["click_id"] == [new_click_id(claims.impression_id, claims.issued_at, settings.resolved_secret_key)]
    assert "{" not in view and "}" not in view

    # View-through off for the app: the link is no longer fired.
    expect(
        api.client.patch(f"/api/v1/apps/{app['id']}", headers=actor.headers, json={"view_through_enabled": False}), 200
    )
    assert eventually(lambda: len(_impression_trackers(api, space_id)) == 2)
