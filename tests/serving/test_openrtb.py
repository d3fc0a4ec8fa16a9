"""The OpenRTB 2.6 bidder over HTTP: every request of the shared corpus gets a valid response or a no-bid."""

from __future__ import annotations

import html
import json
import re
import xml.etree.ElementTree as ET
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from adstack.core.settings import Settings
from adstack.core.timeutil import utcnow
from adstack.serving.engine import ServingState
from adstack.serving.fx import FxRates
from adstack.tracking.tokens import decode_token
from tests.serving.support import creative, group, snapshot
from tests.serving.test_api import GAID, eventually, setup_serving_ad
from tests.support import Api, expect

AUCTION_PRICE = "${AUCTION_PRICE}"


PREBID_INVALID = Path(__file__).parent / "data" / "prebid-invalid"


def corpus_requests(corpus_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted((corpus_dir / "openrtb").rglob("*.json")):
        data = json.loads(path.read_text())
        if path.parent.name == "iab-2.6":
            if path.name.startswith("request-"):
                found.append((path.name, data))
        elif isinstance(data, dict) and isinstance(data.get("request"), dict):
            found.append((path.name, data["request"]))
    return found


def invalid_samples() -> list[tuple[str, bytes]]:
    """Prebid Server's invalid requests (vendored, see the NOTICE beside them), as the bytes Prebid was sent."""
    samples = []
    for path in sorted(PREBID_INVALID.glob("*.json")):
        data = json.loads(path.read_text())
        body = data["mockBidRequest"]
        samples.append((path.name, body.encode() if isinstance(body, str) else json.dumps(body).encode()))
    return samples


def iab_creative(group_id: int, width: int, height: int) -> Any:
    return creative(group_id, format=f"iab_banner_{width}x{height}", width=width, height=height)


def bidders() -> list:
    """Ad groups that can buy open-exchange banners in the IAB sizes, video and native in any geography."""
    return [
        group(
            1,
            placement="banner",
            bid_micros=3_000_000,
            categories=("IAB19-6",),
            creatives=tuple(
                iab_creative(1, w, h) for w, h in ((300, 250), (728, 90), (300, 600), (320, 50), (320, 100))
            ),
        ),
        group(
            2,
            placement="interstitial",
            bid_micros=4_000_000,
            categories=("IAB9-30",),
            creatives=(creative(2, format="interstitial_video", width=640, height=480, video=True),),
        ),
        group(
            3,
            placement="newsfeed",
            bid_micros=2_500_000,
            categories=("IAB1",),
            creatives=(creative(3, format="large_newsfeed_image", width=1200, height=628),),
        ),
        group(
            4,
            placement="banner",
            bid_micros=5_000_000,
            targeting={"deal_ids": frozenset({"AB-Agency1-0001"})},
            creatives=(creative(4, format="banner_300x250", width=300, height=250),),
        ),
        group(
            5,
            placement="interstitial",
            bid_micros=2_000_000,
            creatives=tuple(
                creative(5, format=f"iab_interstitial_{w}x{h}", width=w, height=h)
                for w, h in ((320, 480), (480, 320), (1024, 768), (768, 1024))
            ),
        ),
    ]


@pytest.fixture
def bidder(client: TestClient) -> TestClient:
    fx = FxRates({"USD": 1, "EUR": "1.10"})
    client.app.state.serving.engine.swap(ServingState.build(snapshot(bidders(), fx=fx)))  # type: ignore[attr-defined]
    return client


def floor_of(imp: dict[str, Any]) -> float:
    value = imp.get("bidfloor", 0)
    return float(value) if isinstance(value, int | float) else 0.0


def _urls_in(text: str) -> list[str]:
    return re.findall(r"https?://[^\s\"'<>\]]+", html.unescape(text))


def check_response(request: dict[str, Any], body: dict[str, Any]) -> int:
    """Validate a 200 against OpenRTB 2.6 (3.3 Bid Response, 4.3 macros), Native 1.2 and VAST 4.0; returns the
    number of bids. Source: https://github.com/InteractiveAdvertisingBureau/openrtb2.x/blob/main/2.6.md"""
    assert body["id"] == request["id"]  # 3.3.1: the id of the bid request
    currency = body.get("cur", "USD")
    assert isinstance(currency, str) and re.fullmatch(r"[A-Z]{3}", currency)
    if request.get("cur"):
        assert currency in request["cur"]
    imps = {imp["id"]: imp for imp in request["imp"]}
    seen_imps: set[str] = set()
    bids = 0
    assert body["seatbid"], "a 200 carries at least one seatbid"
    bid_ids: set[str] = set()
    for seatbid in body["seatbid"]:
        assert seatbid["bid"], "a seatbid carries at least one bid"
        for bid in seatbid["bid"]:
            bids += 1
            assert isinstance(bid["id"], str) and bid["id"] and bid["id"] not in bid_ids
            bid_ids.add(bid["id"])
            assert bid["impid"] in imps and bid["impid"] not in seen_imps
            seen_imps.add(bid["impid"])
            imp = imps[bid["impid"]]
            assert isinstance(bid["price"], float) and bid["price"] > 0
            if imp.get("bidfloorcur", "USD") == currency:
                assert bid["price"] >= floor_of(imp)
            assert bid.get("adm") or bid.get("nurl")
            assert isinstance(bid["crid"], str) and bid["crid"]
            assert isinstance(bid["adomain"], list) and all(isinstance(d, str) and d for d in bid["adomain"])
            assert bid["adomain"], "exchanges need adomain to apply badv"
            assert isinstance(bid["cat"], list) and all(re.fullmatch(r"IAB\d+(-\d+)?", c) for c in bid["cat"])
            assert not set(bid["cat"]) & set(request.get("bcat", []))
            assert not set(bid["adomain"]) & set(request.get("badv", []))
            assert isinstance(bid["attr"], list)
            if "bundle" in bid:
                assert bid["bundle"] not in request.get("bapp", [])
            for url in ("nurl", "burl", "lurl"):
                assert bid[url].startswith("http") and AUCTION_PRICE in bid[url]
            if imp.get("secure") == 1:
                for url in [bid["nurl"], bid["burl"], bid["lurl"], *_urls_in(bid["adm"])]:
                    assert url.startswith("https://"), url
            if bid["mtype"] == 1:
                assert "banner" in imp and bid["adm"].startswith("<a ")
                assert html.escape(bid["burl"], quote=True) in bid["adm"], "adm carries our impression pixel"
                sizes = _sizes(imp["banner"])
                assert (bid["w"], bid["h"]) in sizes if sizes else imp.get("instl") == 1
                battr = set(imp["banner"].get("battr", []))
            elif bid["mtype"] == 2:
                assert "video" in imp
                root = ET.fromstring(bid["adm"])
                assert root.tag == "VAST" and root.attrib["version"].startswith("4")
                impression = root.find("./Ad/InLine/Impression")
                assert impression is not None and impression.text == bid["burl"]  # the price rides on both
                media = root.find("./Ad/InLine/Creatives/Creative/Linear/MediaFiles/MediaFile")
                assert media is not None and media.attrib["type"] in imp["video"]["mimes"]
                battr = set(imp["video"].get("battr", []))
            elif bid["mtype"] == 4:
                assert "native" in imp
                native = json.loads(bid["adm"])
                assert native["ver"] == "1.2" and native["assets"] and native["link"]["url"]
                _check_native(imp["native"], native, bid["burl"])
                battr = set(imp["native"].get("battr", []))
            else:
                pytest.fail(f"unexpected mtype {bid['mtype']}")
            assert not battr & set(bid["attr"])
    return bids


def _check_native(native_imp: dict[str, Any], response: dict[str, Any], burl: str) -> None:
    spec = native_imp["request"]
    spec = json.loads(spec) if isinstance(spec, str) else spec
    spec = spec.get("native", spec)
    assets = {a.get("id", n): a for n, a in enumerate(spec["assets"])}
    for asset in spec["assets"]:
        if asset.get("required") == 1:
            assert any(a["id"] == asset.get("id", spec["assets"].index(asset)) for a in response["assets"])
    for answered in response["assets"]:
        asked = assets[answered["id"]]
        kind = next(k for k in ("title", "img", "video", "data") if k in answered)
        assert kind in asked
        if kind == "title" and asked["title"].get("len"):
            assert len(answered["title"]["text"]) <= asked["title"]["len"]
        if kind == "img" and "w" in answered["img"]:
            assert answered["img"]["w"] >= asked["img"].get("wmin", 0)
            assert answered["img"]["h"] >= asked["img"].get("hmin", 0)
        if kind == "video":
            assert ET.fromstring(answered["video"]["vasttag"]).tag == "VAST"
    trackers = [t for t in response["eventtrackers"] if t["event"] == 1]
    assert any(t["url"] == burl for t in trackers), "our impression tracker rides in eventtrackers"
    allowed = {m for t in spec.get("eventtrackers", []) if t.get("event") == 1 for m in t.get("methods", [])}
    assert all(t["method"] in allowed for t in trackers) if "eventtrackers" in spec else True


def _sizes(banner: dict[str, Any]) -> set[tuple[int, int]]:
    sizes = {(f["w"], f["h"]) for f in banner.get("format", []) if "w" in f and "h" in f}
    if "w" in banner and "h" in banner:
        sizes.add((banner["w"], banner["h"]))
    return sizes


def test_every_corpus_request_gets_a_valid_bid_or_no_bid(bidder: TestClient, corpus_dir: Path) -> None:
    requests = corpus_requests(corpus_dir)
    assert len(requests) >= 70
    outcomes: dict[int, int] = {}
    total_bids = 0
    bid_on: list[str] = []
    for name, request in requests:
        response = bidder.post("/openrtb2/bid", json=request)
        outcomes[response.status_code] = outcomes.get(response.status_code, 0) + 1
        assert response.status_code in (200, 204), f"{name}: {response.status_code} {response.text}"
        if response.status_code == 200:
            total_bids += check_response(request, response.json())
            bid_on.append(name)
        else:
            assert response.content == b""
    # With IAB-size banners, video and native in the catalogue, most of Prebid's valid samples are bought.
    valid = [n for n in bid_on if n.startswith("valid-")]
    assert len(valid) >= 40, (outcomes, sorted(set(n for n, _ in requests) - set(bid_on)))
    assert total_bids >= len(bid_on)


# Invalid only against Prebid's own bidder registry (appnexus's parameter schema; which core bidder names exist),
# which no bidder has.
NEEDS_PREBID_REGISTRY = {"invalid-whole__invalid-bidder-params.json", "invalid-whole__alias-unknown-core.json"}


def test_prebid_invalid_samples_never_get_a_bid(bidder: TestClient) -> None:
    samples = invalid_samples()
    assert len(samples) >= 100
    refused = 0
    for name, body in samples:
        response = bidder.post("/openrtb2/bid", content=body, headers={"content-type": "application/json"})
        if name in NEEDS_PREBID_REGISTRY:
            if response.status_code == 200:
                check_response(json.loads(body), response.json())
            continue
        assert response.status_code in (204, 400), f"{name}: {response.status_code} {response.text}"
        if response.status_code == 400:
            refused += 1
            error = response.json()["error"]
            assert error["message"], name
        else:
            assert response.content == b""
    assert refused >= 80  # most are refused with their reason, as Prebid refuses them


def _banner_request(**overrides: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "id": "r1",
        "imp": [{"id": "1", "banner": {"w": 300, "h": 250}}],
        "app": {"bundle": "com.example.app"},
        "device": {"ifa": "38400000-8cf0-11bd-b23e-10b96e40000d"},
    }
    request.update(overrides)
    return request


def test_malformed_json_is_400_with_the_reason(bidder: TestClient) -> None:
    response = bidder.post(
        "/openrtb2/bid", content=b'{"id": "x", "imp": [', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"
    assert "JSON" in response.json()["error"]["message"]
    for body in (b"[]", b'{"imp": []}', b'{"id": "x", "imp": []}', b'{"id": "x", "imp": [{"banner": {}}]}'):
        assert bidder.post("/openrtb2/bid", content=body).status_code == 400


def test_bid_floor_in_another_currency_is_converted(bidder: TestClient) -> None:
    imp = {"id": "1", "banner": {"w": 300, "h": 250}}
    assert bidder.post("/openrtb2/bid", json=_banner_request(imp=[{**imp, "bidfloor": 2.9}])).status_code == 200
    # 2.9 EUR is 3.19 USD: above the best open bid of 3.00 USD.
    high = _banner_request(imp=[{**imp, "bidfloor": 2.9, "bidfloorcur": "EUR"}])
    assert bidder.post("/openrtb2/bid", json=high).status_code == 204
    unknown = _banner_request(imp=[{**imp, "bidfloor": 0.1, "bidfloorcur": "XYZ"}])
    assert bidder.post("/openrtb2/bid", json=unknown).status_code == 204


def test_response_currency_follows_cur(bidder: TestClient) -> None:
    body = bidder.post("/openrtb2/bid", json=_banner_request(cur=["EUR"])).json()
    assert body["cur"] == "EUR"
    usd = bidder.post("/openrtb2/bid", json=_banner_request()).json()
    assert body["seatbid"][0]["bid"][0]["price"] < usd["seatbid"][0]["bid"][0]["price"]


def test_private_deal_is_bid_only_by_its_buyers(bidder: TestClient) -> None:
    imp = {
        "id": "1",
        "banner": {"w": 300, "h": 250},
        "pmp": {"private_auction": 1, "deals": [{"id": "AB-Agency1-0001", "bidfloor": 2.5}]},
    }
    bid = bidder.post("/openrtb2/bid", json=_banner_request(imp=[imp])).json()["seatbid"][0]["bid"][0]
    assert bid["dealid"] == "AB-Agency1-0001" and bid["crid"] and bid["price"] >= 2.5
    other = {**imp, "pmp": {"private_auction": 1, "deals": [{"id": "someone-else"}]}}
    assert bidder.post("/openrtb2/bid", json=_banner_request(imp=[other])).status_code == 204


def test_tmax_already_spent_means_no_bid(bidder: TestClient) -> None:
    assert bidder.post("/openrtb2/bid", json=_banner_request(tmax=5)).status_code == 204
    assert bidder.post("/openrtb2/bid", json=_banner_request(tmax=500)).status_code == 200


def test_coppa_requests_get_no_audience_targeted_ads(client: TestClient) -> None:

    from adstack.audiences.bitmaps import AudienceIndex, IndexedAudience
    from adstack.audiences.ids import KeySpace, device_key

    gaid = "38400000-8cf0-11bd-b23e-10b96e40000d"
    engine = client.app.state.serving.engine  # type: ignore[attr-defined]
    engine.swap(
        ServingState.build(
            snapshot(
                [
                    group(
                        1,
                        placement="banner",
                        targeting={"include_audiences": (9,)},
                        creatives=(creative(1, width=300, height=250),),
                    )
                ]
            )
        )
    )
    engine.audiences = AudienceIndex([IndexedAudience(9, 1, KeySpace.MD5, frozenset([device_key(gaid)]))])
    assert client.post("/openrtb2/bid", json=_banner_request()).status_code == 200
    assert client.post("/openrtb2/bid", json=_banner_request(regs={"coppa": 1})).status_code == 204


def test_loss_notice_gives_the_reservation_back(client: TestClient) -> None:
    engine = client.app.state.serving.engine  # type: ignore[attr-defined]
    # 3.00 CPM alone above a 3.00 floor: 3,000 micros a bid; a budget of 3,000 allows one bid at a time.
    engine.swap(
        ServingState.build(
            snapshot(
                [
                    group(
                        1,
                        placement="banner",
                        bid_micros=3_000_000,
                        pacing="asap",
                        daily_budget_micros=3_000,
                        creatives=(creative(1, width=300, height=250),),
                    )
                ]
            )
        )
    )
    request = _banner_request(imp=[{"id": "1", "banner": {"w": 300, "h": 250}, "bidfloor": 3.0}])
    bid = client.post("/openrtb2/bid", json=request).json()["seatbid"][0]["bid"][0]
    engine._blocked_until.clear()  # the refusal below would otherwise be remembered for the rest of the day
    assert client.post("/openrtb2/bid", json=request).status_code == 204
    engine._blocked_until.clear()
    lost = bid["lurl"].replace("${AUCTION_LOSS}", "102").replace(AUCTION_PRICE, "3.10").split("testserver", 1)[1]
    # The bid id is no secret: a notice without our signature, or with another bid's, gives nothing back.
    unsigned = re.sub(r"&s=[^&]*", "", lost)
    forged = re.sub(r"&s=[^&]*", "&s=" + "A" * 16, lost)
    for notice in (unsigned, forged):
        assert client.get(notice).status_code == 204
        assert client.post("/openrtb2/bid", json=request).status_code == 204, notice
        engine._blocked_until.clear()
    assert client.get(lost).status_code == 204
    client.app.state.pipeline.drain()  # type: ignore[attr-defined]  # billing gives it back in the log's order
    assert client.post("/openrtb2/bid", json=request).status_code == 200


# ---------- the exchange's clearing price ----------


def _priced_bid_request(space_id: int, corpus_dir: Path) -> dict[str, Any]:
    """The specification's mobile app request, for one of our ad spaces, from a device our ad group targets."""
    request: dict[str, Any] = json.loads((corpus_dir / "openrtb/iab-2.6/request-6_2_3-mobile.json").read_text())
    request["imp"][0].update(
        {"tagid": str(space_id), "bidfloor": 0.05, "banner": {**request["imp"][0]["banner"], "w": 640, "h": 100}}
    )
    request["device"].update({"ifa": GAID, "geo": {"country": "IDN"}})
    request["app"]["bundle"] = "com.mi.browser"  # the ad space's publisher's app
    return request


def _local(url: str) -> str:
    return url.split("testserver", 1)[1]


def test_a_fired_burl_brings_the_exchange_price_into_reports_as_media_cost_and_spend_stays_ours(
    api: Api, settings: Settings, corpus_dir: Path
) -> None:
    made = setup_serving_ad(api)
    client, admin, advertiser = api.client, made["admin"], made["actor"]
    request = _priced_bid_request(made["space"]["id"], corpus_dir)

    def bid_now() -> dict[str, Any] | None:
        response = client.post("/openrtb2/bid", json=request)
        return response.json()["seatbid"][0]["bid"][0] if response.status_code == 200 else None

    assert eventually(lambda: bid_now() is not None)
    bids = [bid_now() for _ in range(4)]
    assert all(b is not None for b in bids)
    won, *others = [b for b in bids if b is not None]
    assert f"&ap={AUCTION_PRICE}&cur=USD" in won["burl"]
    for _ in range(2):  # the exchange retries its billing notice: one impression, one media cost
        expect(client.get(_local(won["burl"].replace(AUCTION_PRICE, "0.85"))), 204)
    # The device renders adm and fires our pixel in it too: still the same one impression.
    pixels = [html.unescape(u) for u in re.findall(r'<img src="([^"]+)" width="1"', won["adm"])]
    assert pixels[0] == won["burl"]
    expect(client.get(_local(pixels[0].replace(AUCTION_PRICE, "0.85"))), 204)
    expect(client.get(_local(won["nurl"].replace(AUCTION_PRICE, "0.85"))), 204)
    for unfilled, other in zip(("${AUCTION_PRICE}", "-0.85", "zero"), others, strict=True):
        expect(client.get(_local(other["burl"].replace(AUCTION_PRICE, unfilled))), 204)
    token = parse_qs(urlsplit(won["burl"]).query)["t"][0]
    ours = decode_token(token, settings.resolved_secret_key, now=utcnow()).price_micros
    api.settle()
    balance = expect(
        client.get(f"/api/v1/finance/accounts/{advertiser.account_id}/balance", headers=advertiser.headers), 200
    )["balance_micros"]
    click = re.search(r'<a href="([^"]+)"', won["adm"])
    assert click is not None
    assert client.get(_local(html.unescape(click.group(1))), follow_redirects=False).status_code == 302
    api.settle()
    charged = (
        balance
        - expect(
            client.get(f"/api/v1/finance/accounts/{advertiser.account_id}/balance", headers=advertiser.headers), 200
        )["balance_micros"]
    )
    assert charged == ours > 0  # our own auction's price, whatever the exchange cleared at

    today = utcnow().date()
    for dimensions in ([], ["ad_space"]):  # the campaign rollup, then the one with the supply side
        body = expect(
            client.get(
                "/api/v1/reports",
                headers=admin.headers,
                params={
                    "start_date": (today - timedelta(days=1)).isoformat(),
                    "end_date": (today + timedelta(days=1)).isoformat(),
                    "account_ids": [advertiser.account_id],
                    "dimensions": dimensions,
                    "metrics": ["impressions", "cost_micros", "media_cost_micros", "media_cost_impressions"],
                },
            ),
            200,
        )
        assert body["totals"] == {
            "impressions": 4,
            "cost_micros": charged,
            "media_cost_micros": 850,
            "media_cost_impressions": 1,
        }
    refused = client.get(
        "/api/v1/reports",
        headers=advertiser.headers,
        params={"start_date": today.isoformat(), "end_date": today.isoformat(), "metrics": ["media_cost_micros"]},
    )
    assert refused.status_code == 403
    field = refused.json()["error"]["fields"][0]
    assert field == {
        "field": "metrics",
        "rule": "platform_only",
        "message": "visible to platform staff only",
        "limit": field["limit"],
        "actual": ["media_cost_micros"],
    }
    # The limit: the metrics this user may ask for.
    assert "impressions" in field["limit"] and "media_cost_micros" not in field["limit"]


@pytest.mark.parametrize("price", ["${AUCTION_PRICE}", "-1", "abc", "NaN", "1e9", "%FF", "9" * 500, ""])
def test_win_and_loss_notices_take_any_price_without_refusing(bidder: TestClient, price: str) -> None:
    bid = bidder.post("/openrtb2/bid", json=_banner_request()).json()["seatbid"][0]["bid"][0]
    assert bidder.get(_local(bid["nurl"].replace(AUCTION_PRICE, price))).status_code == 204
    lost = bid["lurl"].replace("${AUCTION_LOSS}", "102").replace(AUCTION_PRICE, price)
    assert bidder.get(_local(lost)).status_code == 204
    assert bidder.get(f"/openrtb2/win?i=unknown-bid&p={price}").status_code == 204


# ---------- the campaign's IAB categories, end to end ----------


def test_campaign_categories_are_checked_then_carried_on_bids_and_blocked_by_bcat(api: Api, corpus_dir: Path) -> None:
    from adstack.finance.models import EntryType
    from tests.campaigns.helpers import ad_space, approved_ad_group, campaign, ledger, publisher
    from tests.serving.test_api import approved_creative

    admin = api.admin()
    actor = api.approved_account(admin)
    ledger(api.session, actor.account_id, 100_000_000, EntryType.TOP_UP)
    refused = api.client.post(
        "/api/v1/campaigns",
        headers=actor.headers,
        json={
            "objective": "performance",
            "name": "Bad categories",
            "promotion_type": "app_download",
            "package_name": "com.example.game",
            "iab_categories": ["IAB27"],
        },
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["fields"][0]["field"].startswith("iab_categories")
    camp = campaign(api, actor, iab_categories=["iab9-30", "IAB9-30", "IAB1"])
    assert camp["iab_categories"] == ["IAB9-30", "IAB1"]
    space = ad_space(
        api,
        admin,
        publisher(api, admin)["id"],
        placement_type="banner",
        accepted_formats=["image_640x100"],
        sizes=["640x100"],
        reserve_price_micros=100_000,
    )
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
    approved_creative(api, actor, admin, group["id"])
    request = _priced_bid_request(space["id"], corpus_dir)
    assert eventually(lambda: api.client.post("/openrtb2/bid", json=request).status_code == 200)
    bid = api.client.post("/openrtb2/bid", json=request).json()["seatbid"][0]["bid"][0]
    assert bid["cat"] == ["IAB9-30", "IAB1"] and bid["cattax"] == 1 and bid["bundle"] == "com.example.game"
    for blocked in (["IAB9"], ["IAB1"], ["IAB9-30"]):
        assert api.client.post("/openrtb2/bid", json={**request, "bcat": blocked}).status_code == 204
    # The categories are part of what review approved: changing them sends the ad group back to review.
    changed = expect(
        api.client.patch(
            f"/api/v1/campaigns/{camp['id']}", headers=actor.headers, json={"iab_categories": ["IAB9-30"]}
        ),
        200,
    )
    assert changed["iab_categories"] == ["IAB9-30"] and "back to review" in (changed["notice"] or "")


def test_an_iab_size_creative_is_validated_like_any_material_and_bought_by_exchanges(
    api: Api, corpus_dir: Path
) -> None:
    from adstack.finance.models import EntryType
    from tests.campaigns.helpers import approved_ad_group, campaign, ledger, png

    admin = api.admin()
    actor = api.approved_account(admin)
    ledger(api.session, actor.account_id, 100_000_000, EntryType.TOP_UP)
    camp = campaign(api, actor, iab_categories=["IAB9-30"])
    group_ = approved_ad_group(
        api,
        actor,
        admin,
        camp["id"],
        placement_type="banner",
        bid_type="cpc",
        bid_micros=300_000,
        targeting={"countries": ["ID"]},
    )

    def upload(width: int, height: int) -> int:
        return int(
            expect(
                api.client.post(
                    "/api/v1/media", headers=actor.headers, files={"file": ("iab.png", png(width, height))}
                ),
                201,
            )["id"]
        )

    body = {
        "ad_group_id": group_["id"],
        "name": "IAB medium rectangle",
        "format": "iab_banner_300x250",
        "materials": {"images": [upload(320, 50)], "titles": ["Build your moon base"]},
        "click_url": "https://example.com/app",
    }
    wrong = api.client.post("/api/v1/creatives", headers=actor.headers, json=body)
    assert wrong.status_code == 422 and "images" in wrong.json()["error"]["fields"][0]["field"]
    body["materials"]["images"] = [upload(300, 250)]
    made = expect(api.client.post("/api/v1/creatives", headers=actor.headers, json=body), 201)
    expect(api.client.post(f"/api/v1/creatives/{made['id']}/submit", headers=actor.headers), 200)
    expect(
        api.client.post(f"/api/v1/creatives/{made['id']}/review", headers=admin.headers, json={"decision": "approve"}),
        200,
    )

    request: dict[str, Any] = json.loads((corpus_dir / "openrtb/iab-2.6/request-6_2_3-mobile.json").read_text())
    request["imp"][0]["banner"] = {"format": [{"w": 320, "h": 50}, {"w": 300, "h": 250}]}
    request["imp"][0].pop("tagid", None)
    request["device"].update({"ifa": GAID, "geo": {"country": "IDN"}})
    assert eventually(lambda: api.client.post("/openrtb2/bid", json=request).status_code == 200)
    response = api.client.post("/openrtb2/bid", json=request)
    assert check_response(request, response.json()) == 1
    bid = response.json()["seatbid"][0]["bid"][0]
    assert (bid["w"], bid["h"]) == (300, 250) and bid["crid"] == str(made["id"]) and bid["cat"] == ["IAB9-30"]
    # The uploaded file's type is what `mimes` is held to.
    request["imp"][0]["banner"]["mimes"] = ["image/jpeg", "image/gif"]
    assert api.client.post("/openrtb2/bid", json=request).status_code == 204
    request["imp"][0]["banner"]["mimes"] = ["image/jpeg", "image/png"]
    assert api.client.post("/openrtb2/bid", json=request).status_code == 200


def _medium_rectangle_request(corpus_dir: Path) -> dict[str, Any]:
    """The IAB 2.6 mobile example, asking for a 300x250 banner from a device in Indonesia."""
    request: dict[str, Any] = json.loads((corpus_dir / "openrtb/iab-2.6/request-6_2_3-mobile.json").read_text())
    request["imp"][0]["banner"] = {"format": [{"w": 300, "h": 250}]}
    request["imp"][0].pop("tagid", None)
    request["device"].update({"ifa": GAID, "geo": {"country": "IDN"}})
    return request


def _serving(api: Api, creative_ids: set[int]) -> bool:
    """Whether every one of these creatives is in the serving snapshot."""
    snapshot = api.client.app.state.serving.state.snapshot  # type: ignore[attr-defined]
    return creative_ids <= {c.id for g in snapshot.by_ordinal for c in g.creatives}


def test_banner_mimes_choose_among_the_candidates_not_after_the_winner(api: Api, corpus_dir: Path) -> None:
    """OpenRTB 2.6, 3.2.6 `mimes`: the file types the banner takes. An ad whose image is another type is not a
    candidate, so the next best ad with an allowed type bids rather than none."""
    from adstack.finance.models import EntryType
    from tests.campaigns.helpers import approved_ad_group, campaign, ledger
    from tests.media.samples import jpeg, png

    admin = api.admin()
    actor = api.approved_account(admin)
    ledger(api.session, actor.account_id, 100_000_000, EntryType.TOP_UP)
    camp = campaign(api, actor, iab_categories=["IAB9-30"])

    def creative_in(group_id: int, name: str, image: bytes) -> int:
        media = expect(api.client.post("/api/v1/media", headers=actor.headers, files={"file": (name, image)}), 201)
        body = {"ad_group_id": group_id, "name": name, "format": "iab_banner_300x250",
                "materials": {"images": [media["id"]], "titles": ["Build your moon base"]},
                "click_url": "https://example.com/app"}
        made = expect(api.client.post("/api/v1/creatives", headers=actor.headers, json=body), 201)
        expect(api.client.post(f"/api/v1/creatives/{made['id']}/submit", headers=actor.headers), 200)
        expect(api.client.post(f"/api/v1/creatives/{made['id']}/review", headers=admin.headers,
                               json={"decision": "approve"}), 200)
        return int(made["id"])

    groups = [approved_ad_group(api, actor, admin, camp["id"], placement_type="banner", bid_type="cpc",
                                bid_micros=bid, targeting={"countries": ["ID"]}) for bid in (900_000, 800_000)]
    png_creative = creative_in(groups[0]["id"], "rich.png", png(300, 250))
    jpeg_creative = creative_in(groups[1]["id"], "plain.jpg", jpeg(300, 250))

    request = _medium_rectangle_request(corpus_dir)
    assert eventually(lambda: _serving(api, {png_creative, jpeg_creative}))
    assert api.client.post("/openrtb2/bid", json=request).json()["seatbid"][0]["bid"][0]["crid"] == str(png_creative)
    request["imp"][0]["banner"]["mimes"] = ["image/jpg"]  # an alias of image/jpeg, as requests often write it
    response = api.client.post("/openrtb2/bid", json=request)
    assert response.status_code == 200 and check_response(request, response.json()) == 1
    assert response.json()["seatbid"][0]["bid"][0]["crid"] == str(jpeg_creative)
    request["imp"][0]["banner"]["mimes"] = ["image/gif"]
    assert api.client.post("/openrtb2/bid", json=request).status_code == 204


def test_wlang_allows_only_creatives_in_its_languages_and_bids_name_theirs(api: Api, corpus_dir: Path) -> None:
    """OpenRTB 2.6, 3.2.1 `wlang` (ISO 639-1) and `wlangb` (BCP 47): the languages allowed for creatives; 3.3.3
    Bid `language`, where "xx" is a creative without linguistic content. A creative declares its language in its
    materials; one that declares none cannot be shown where the exchange names languages."""
    from adstack.finance.models import EntryType
    from tests.campaigns.helpers import approved_ad_group, campaign, ledger
    from tests.media.samples import jpeg

    admin = api.admin()
    actor = api.approved_account(admin)
    ledger(api.session, actor.account_id, 100_000_000, EntryType.TOP_UP)
    camp = campaign(api, actor, iab_categories=["IAB9-30"])
    image = expect(api.client.post("/api/v1/media", headers=actor.headers,
                                   files={"file": ("ad.jpg", jpeg(300, 250))}), 201)["id"]

    def creative_in(group_id: int, language: str | None, expected: int = 201) -> Any:
        materials: dict[str, Any] = {"images": [image], "titles": ["Build your moon base"]}
        if language is not None:
            materials["language"] = language
        body = {"ad_group_id": group_id, "name": f"in {language}", "format": "iab_banner_300x250",
                "materials": materials, "click_url": "https://example.com/app"}
        made = expect(api.client.post("/api/v1/creatives", headers=actor.headers, json=body), expected)
        if expected != 201:
            return made
        expect(api.client.post(f"/api/v1/creatives/{made['id']}/submit", headers=actor.headers), 200)
        expect(api.client.post(f"/api/v1/creatives/{made['id']}/review", headers=admin.headers,
                               json={"decision": "approve"}), 200)
        return int(made["id"])

    groups = [approved_ad_group(api, actor, admin, camp["id"], placement_type="banner", bid_type="cpc",
                                bid_micros=bid, targeting={"countries": ["ID"]})
              for bid in (900_000, 800_000, 700_000, 600_000)]
    unknown = creative_in(groups[0]["id"], None)
    hindi = creative_in(groups[1]["id"], "HI")  # stored as ISO 639-1 writes it: hi
    english = creative_in(groups[2]["id"], "en")
    logo_only = creative_in(groups[3]["id"], "xx")
    refused = creative_in(groups[2]["id"], "zz", expected=422)["error"]["fields"][0]
    assert (refused["field"], refused["rule"]) == ("materials.language", "language_code")

    request = _medium_rectangle_request(corpus_dir)
    assert eventually(lambda: _serving(api, {unknown, hindi, english, logo_only}))

    def winner(**languages: Any) -> dict[str, Any] | None:
        body = {**request, **languages}
        response = api.client.post("/openrtb2/bid", json=body)
        if response.status_code == 204:
            return None
        assert response.status_code == 200 and check_response(body, response.json()) == 1
        bid: dict[str, Any] = response.json()["seatbid"][0]["bid"][0]
        return bid

    anything = winner()
    assert anything is not None and anything["crid"] == str(unknown) and "language" not in anything
    in_hindi = winner(wlang=["hi", "en"])
    assert in_hindi is not None and (in_hindi["crid"], in_hindi["language"]) == (str(hindi), "hi")
    in_english = winner(wlangb=["en-GB"])
    assert in_english is not None and (in_english["crid"], in_english["language"]) == (str(english), "en")
    # A creative without text fits any language; one the request allows only in unreadable codes, nothing does.
    in_french = winner(wlang=["fr"])
    assert in_french is not None and (in_french["crid"], in_french["language"]) == (str(logo_only), "xx")
    assert winner(wlang=["??"]) is None


def test_a_copied_campaign_keeps_its_categories_and_bids_where_the_exchange_sends_bcat(
    api: Api, corpus_dir: Path
) -> None:
    from adstack.finance.models import EntryType
    from tests.campaigns.helpers import ad_space, approved_ad_group, campaign, ledger, publisher
    from tests.serving.test_api import approved_creative

    admin = api.admin()
    actor = api.approved_account(admin)
    ledger(api.session, actor.account_id, 100_000_000, EntryType.TOP_UP)
    camp = campaign(api, actor, iab_categories=["IAB9-30"])
    space = ad_space(api, admin, publisher(api, admin)["id"], placement_type="banner",
                     accepted_formats=["image_640x100"], sizes=["640x100"], reserve_price_micros=100_000)
    group = approved_ad_group(api, actor, admin, camp["id"], placement_type="banner", bid_type="cpc",
                              bid_micros=300_000, ad_space_ids=[space["id"]], targeting={"countries": ["ID"]})
    approved_creative(api, actor, admin, group["id"])
    request = _priced_bid_request(space["id"], corpus_dir)  # the specification's request blocks IAB25, IAB7-39, ...
    assert request["bcat"] and "IAB9" not in request["bcat"]
    copy = expect(api.client.post(f"/api/v1/campaigns/{camp['id']}/copy", headers=actor.headers,
                                  json={"deep": True}), 201)
    expect(api.client.delete(f"/api/v1/campaigns/{camp['id']}", headers=actor.headers), 200)
    [copied_group] = expect(api.client.get("/api/v1/ad-groups", params={"campaign_id": copy["id"]},
                                           headers=actor.headers), 200)["items"]
    expect(api.client.post(f"/api/v1/ad-groups/{copied_group['id']}/submit", headers=actor.headers), 200)
    expect(api.client.post(f"/api/v1/ad-groups/{copied_group['id']}/review", headers=admin.headers,
                           json={"decision": "approve"}), 200)
    [copied_creative] = expect(api.client.get("/api/v1/creatives", params={"ad_group_id": copied_group["id"]},
                                              headers=actor.headers), 200)["items"]
    expect(api.client.post(f"/api/v1/creatives/{copied_creative['id']}/submit", headers=actor.headers), 200)
    expect(api.client.post(f"/api/v1/creatives/{copied_creative['id']}/review", headers=admin.headers,
                           json={"decision": "approve"}), 200)

    def copy_bids() -> bool:
        answer = api.client.post("/openrtb2/bid", json=request)
        return answer.status_code == 200 and answer.json()["seatbid"][0]["bid"][0]["crid"] == str(
            copied_creative["id"])

    assert eventually(copy_bids)
    bid = api.client.post("/openrtb2/bid", json=request).json()["seatbid"][0]["bid"][0]
    assert bid["cat"] == ["IAB9-30"]
