"""The SDK endpoint against the real control plane: what the console sets up is what serves, and changes reach
serving within seconds without a restart."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi.testclient import TestClient

from adstack.finance.models import EntryType
from tests.campaigns.helpers import ad_space, approved_ad_group, campaign, ledger, png, publisher
from tests.support import Actor, Api, expect

GAID = "38400000-8cf0-11bd-b23e-10b96e40000d"


def eventually(check: Callable[[], bool], *, within: float = 20.0) -> bool:
    """Poll until `check` holds: the background refresher runs every second."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


def approved_creative(api: Api, actor: Actor, admin: Actor, ad_group_id: int) -> dict[str, Any]:
    media = expect(
        api.client.post("/api/v1/media", headers=actor.headers, files={"file": ("banner.png", png(640, 100))}), 201
    )
    created = expect(
        api.client.post(
            "/api/v1/creatives",
            headers=actor.headers,
            json={
                "ad_group_id": ad_group_id,
                "name": "Home banner",
                "format": "image_640x100",
                "materials": {"images": [media["id"]]},
                "click_url": "https://example.com/app",
                "impression_urls": ["https://monitor.example.org/imp?click={click_id}&device={gaid}&ts={timestamp}"],
            },
        ),
        201,
    )
    expect(api.client.post(f"/api/v1/creatives/{created['id']}/submit", headers=actor.headers), 200)
    return expect(
        api.client.post(
            f"/api/v1/creatives/{created['id']}/review", headers=admin.headers, json={"decision": "approve"}
        ),
        200,
    )


def setup_serving_ad(api: Api) -> dict[str, Any]:
    admin = api.admin()
    actor = api.approved_account(admin)
    ledger(api.session, actor.account_id, 100_000_000, EntryType.TOP_UP)
    pub = publisher(api, admin)
    space = ad_space(
        api,
        admin,
        pub["id"],
        placement_type="banner",
        accepted_formats=["image_640x100"],
        sizes=["640x100"],
        reserve_price_micros=100_000,
    )
    # Categorised, as exchanges that block categories (`bcat`) need an ad to be.
    camp = campaign(api, actor, iab_categories=["IAB19-6"])
    group = approved_ad_group(
        api,
        actor,
        admin,
        camp["id"],
        placement_type="banner",
        bid_type="cpc",
        bid_micros=300_000,
        ad_space_ids=[space["id"]],
        targeting={"countries": ["ID"]},
    )
    creative = approved_creative(api, actor, admin, group["id"])
    return {"admin": admin, "actor": actor, "space": space, "group": group, "creative": creative}


def ads_now(client: TestClient, space_id: int) -> list[Any]:
    """The ads served now; none while the new ad space has not reached the snapshot (404)."""
    response = ad_request(client, space_id)
    return [] if response.status_code == 404 else list(expect(response, 200)["ads"])


def ad_request(client: TestClient, space_id: int, **device: Any) -> Any:
    body = {
        "ad_space_id": space_id,
        "count": 2,
        "device": {
            "gaid": GAID,
            "country": "ID",
            "os_version": "13",
            "model": "Redmi Note 12",
            "language": "id",
            "network": "wifi",
            **device,
        },
        "app": {"package": "com.mi.browser", "installed_packages": ["com.whatsapp"]},
    }
    return client.post("/v1/ads", json=body)


def test_an_approved_ad_serves_with_assets_and_signed_tracking(api: Api) -> None:
    made = setup_serving_ad(api)
    client = api.client
    space_id = made["space"]["id"]
    assert eventually(lambda: bool(ads_now(client, space_id)))
    body = expect(ad_request(client, space_id), 200)
    (ad,) = body["ads"]
    assert (ad["ad_group_id"], ad["creative_id"]) == (made["group"]["id"], made["creative"]["id"])
    assert ad["title"] == ""  # the guide's 640x100 banner is an image alone
    assert ad["image_url"].startswith("http://testserver/media/") and (ad["width"], ad["height"]) == (640, 100)
    assert ad["landing_url"] == "https://example.com/app"
    assert urlsplit(ad["click_url"]).path == "/t/click" and "t" in parse_qs(urlsplit(ad["click_url"]).query)
    ours, monitor = ad["tracking"]["impression"]
    assert urlsplit(ours).path == "/t/imp"
    query = parse_qs(urlsplit(monitor).query)
    assert query["device"] == [GAID] and query["click"][0] and query["ts"][0].isdigit()
    # The impression pixel is accepted by tracking: the token verifies.
    assert client.get(ours.split("testserver", 1)[1]).status_code in (200, 204)
    # Another country is not targeted.
    assert expect(ad_request(client, space_id, country="IN"), 200)["ads"] == []


def test_control_plane_changes_reach_serving_without_a_restart(api: Api) -> None:
    made = setup_serving_ad(api)
    client, actor = api.client, made["actor"]
    space_id, group_id = made["space"]["id"], made["group"]["id"]
    assert eventually(lambda: bool(ads_now(client, space_id)))
    runtime = client.app.state.serving  # type: ignore[attr-defined]
    rebuilds = runtime.rebuilds
    expect(client.patch(f"/api/v1/ad-groups/{group_id}", headers=actor.headers, json={"status": "paused"}), 200)
    assert eventually(lambda: ads_now(client, space_id) == [])
    expect(client.patch(f"/api/v1/ad-groups/{group_id}", headers=actor.headers, json={"status": "enabled"}), 200)
    assert eventually(lambda: bool(ads_now(client, space_id)))
    assert runtime.rebuilds >= rebuilds + 2  # rebuilt in the background, same process


def test_unapproved_or_paused_creatives_and_unknown_spaces_do_not_serve(api: Api) -> None:
    made = setup_serving_ad(api)
    client, actor = api.client, made["actor"]
    space_id = made["space"]["id"]
    assert eventually(lambda: bool(ads_now(client, space_id)))
    expect(
        client.post(
            f"/api/v1/creatives/{made['creative']['id']}/status", headers=actor.headers, json={"status": "paused"}
        ),
        200,
    )
    assert eventually(lambda: ads_now(client, space_id) == [])
    assert ad_request(client, 987_654).status_code == 404
    assert client.post("/v1/ads", json={"ad_space_id": 0}).status_code == 422


def test_an_android_locale_string_matches_language_targeting(api: Api) -> None:
    """Android's Locale.toString() gives "hi_IN"; an ad group targeting Hindi ("hi") is for that device."""
    made = setup_serving_ad(api)
    group_id = made["group"]["id"]
    expect(api.client.patch(f"/api/v1/ad-groups/{group_id}", headers=made["actor"].headers,
                            json={"targeting": {"countries": ["ID"], "languages": ["hi"]}}), 200)
    review = {"decision": "approve"}
    if expect(api.client.get(f"/api/v1/ad-groups/{group_id}", headers=made["actor"].headers), 200)[
            "review_status"] == "under_review":
        expect(api.client.post(f"/api/v1/ad-groups/{group_id}/review", headers=made["admin"].headers, json=review),
               200)
    space_id = made["space"]["id"]
    def hindi_served() -> bool:
        response = ad_request(api.client, space_id, language="hi_IN")
        return response.status_code == 200 and bool(response.json()["ads"])

    assert eventually(hindi_served)
    assert expect(ad_request(api.client, space_id, language="id_ID"), 200)["ads"] == []


def test_the_serving_process_saves_frequency_counts_in_its_data_directory(api: Api) -> None:
    """A restart of the one serving process reads its delivery counters back from the data directory."""
    from adstack.serving.counters import MemoryCounters

    made = setup_serving_ad(api)
    group_id, space_id = made["group"]["id"], made["space"]["id"]
    expect(api.client.patch(f"/api/v1/ad-groups/{group_id}", headers=made["actor"].headers,
                            json={"frequency_cap_per_day": 1}), 200)
    if expect(api.client.get(f"/api/v1/ad-groups/{group_id}", headers=made["actor"].headers), 200)[
            "review_status"] == "under_review":
        expect(api.client.post(f"/api/v1/ad-groups/{group_id}/review", headers=made["admin"].headers,
                               json={"decision": "approve"}), 200)
    runtime = api.client.app.state.serving  # type: ignore[attr-defined]
    assert eventually(lambda: any(g.frequency_cap == 1 for g in runtime.state.snapshot.ad_groups.values()))
    assert len(expect(ad_request(api.client, space_id), 200)["ads"]) == 1
    assert expect(ad_request(api.client, space_id), 200)["ads"] == []  # the cap of one is used
    runtime.save_delivery_counters()
    runtime.engine.counters = MemoryCounters()  # what a restarted process starts with
    assert len(expect(ad_request(api.client, space_id), 200)["ads"]) == 1  # without the saved counts: again
    runtime.engine.counters = MemoryCounters()
    runtime.load_delivery_counters()
    assert expect(ad_request(api.client, space_id), 200)["ads"] == []


def test_the_sdk_request_reads_network_in_any_case_and_numbers_only_as_numbers(api: Api) -> None:
    made = setup_serving_ad(api)
    client, space_id = api.client, made["space"]["id"]
    assert eventually(lambda: bool(ads_now(client, space_id)))
    assert expect(ad_request(client, space_id, network="4G"), 200)["ads"]
    refused = expect(client.post("/v1/ads", json={"ad_space_id": space_id, "count": "5"}), 422)
    assert [f["field"] for f in refused["error"]["fields"]] == ["count"]
