"""Every ad request is recorded, filled or not, so platform staff see requests and fill rate per ad space."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from adstack.events.service import get_event_store
from tests.serving.test_api import GAID, ad_request, ads_now, eventually, setup_serving_ad
from tests.support import Actor, Api, expect


def _report(api: Api, actor: Actor, **params: Any) -> Any:
    today = datetime.now(UTC).date().isoformat()
    return api.client.get(
        "/api/v1/reports",
        headers=actor.headers,
        params={"start_date": today, "end_date": today, "time_zone": "UTC", **params},
    )


def test_filled_and_unfilled_ad_requests_make_the_fill_rate_recomputable_from_raw_events(api: Api) -> None:
    made = setup_serving_ad(api)
    client, admin, advertiser = api.client, made["admin"], made["actor"]
    space_id = made["space"]["id"]
    assert eventually(lambda: bool(ads_now(client, space_id)))  # one filled request on the way
    for _ in range(2):
        assert expect(ad_request(client, space_id), 200)["ads"]
    for _ in range(3):  # India is not targeted: answered, unfilled
        assert expect(ad_request(client, space_id, country="IN"), 200)["ads"] == []
    client.app.state.serving.flush_events()  # type: ignore[attr-defined]
    store = get_event_store(client.app.state.settings)  # type: ignore[attr-defined]
    store.flush()

    raw = store.query(
        "SELECT count(), countIf(attrs['filled'] = '1') FROM events "
        "WHERE event_type = 'ad_request' AND ad_space_id = {space:UInt64}",
        {"space": space_id},
    ).rows
    total, filled = int(raw[0][0]), int(raw[0][1])
    # The polls before the ad reached serving may add unfilled requests of their own.
    assert filled >= 3 and total - filled >= 3
    body = expect(
        _report(
            api, admin, dimensions="ad_space", metrics=["ad_requests", "filled_ad_requests", "fill_rate", "impressions"]
        ),
        200,
    )
    (row,) = [r for r in body["rows"] if r["ad_space_id"] == space_id]
    assert (row["ad_requests"], row["filled_ad_requests"]) == (total, filled)
    assert row["fill_rate"] == f"{filled / total:.6f}"
    by_country = expect(_report(api, admin, dimensions="country", metrics=["ad_requests", "fill_rate"]), 200)
    assert {r["country"]: r["ad_requests"] for r in by_country["rows"]}["IN"] == 3

    # Ad requests belong to no campaign: a demand report never grows a campaign "0" row from them.
    campaigns = expect(_report(api, admin, dimensions="campaign", metrics=["impressions"]), 200)
    assert all(r["campaign_id"] for r in campaigns["rows"])
    refused = _report(api, admin, dimensions="campaign", metrics=["fill_rate"])
    assert refused.status_code == 422
    assert refused.json()["error"]["fields"][0]["rule"] == "supply_dimensions"
    # Supply figures are the platform's, not an advertiser's.
    forbidden = _report(api, advertiser, metrics=["ad_requests"])
    assert forbidden.status_code == 403 and forbidden.json()["error"]["fields"][0]["rule"] == "platform_only"


def test_each_exchange_imp_is_an_ad_request_bid_on_or_not_and_keeps_no_device_id(api: Api) -> None:
    made = setup_serving_ad(api)
    client, admin = api.client, made["admin"]
    space_id = made["space"]["id"]
    assert eventually(lambda: bool(ads_now(client, space_id)))

    def bid_request(request_id: str) -> dict[str, Any]:
        return {
            "id": request_id,
            "at": 2,
            "cur": ["USD"],
            "tmax": 500,
            "app": {"id": "a1", "bundle": "com.mi.browser", "publisher": {"id": "p1"}},
            "device": {
                "ifa": GAID,
                "os": "android",
                "ua": "Mozilla/5.0 (Linux; Android 13)",
                "geo": {"country": "IDN"},
            },
            "imp": [
                {"id": "1", "tagid": str(space_id), "bidfloor": 0.05, "banner": {"w": 640, "h": 100}},
                {"id": "2", "tagid": str(space_id), "bidfloor": 0.05, "banner": {"w": 728, "h": 90}},
            ],
        }

    answers = [client.post("/openrtb2/bid", json=bid_request(f"fill-{n}")) for n in range(3)]
    bids = sum(len(seat["bid"]) for a in answers if a.status_code == 200 for seat in a.json()["seatbid"])
    assert bids >= 1  # the 640x100 imp is ours to fill; nothing fits 728x90
    client.app.state.serving.flush_events()  # type: ignore[attr-defined]
    store = get_event_store(client.app.state.settings)  # type: ignore[attr-defined]
    store.flush()
    rows = store.query(
        "SELECT count(), countIf(attrs['filled'] = '1'), max(device_hash) FROM events "
        "WHERE event_type = 'ad_request' AND attrs['source'] = 'openrtb'"
    ).rows
    assert (int(rows[0][0]), int(rows[0][1]), int(rows[0][2])) == (6, bids, 0)
    body = expect(_report(api, admin, dimensions="ad_space", metrics=["ad_requests", "filled_ad_requests"]), 200)
    (row,) = [r for r in body["rows"] if r["ad_space_id"] == space_id]
    sdk = store.query(
        "SELECT count() FROM events WHERE event_type = 'ad_request' AND ad_space_id = {s:UInt64} "
        "AND attrs['source'] != 'openrtb'",
        {"s": space_id},
    ).rows
    assert row["ad_requests"] == 6 + int(sdk[0][0])
