"""The OpenRTB 2.6 bidder over HTTP: every request of the shared corpus gets a valid response or a no-bid."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adstack.serving.engine import ServingState
from adstack.serving.fx import FxRates
from tests.serving.support import creative, group, snapshot

AUCTION_PRICE = "${AUCTION_PRICE}"


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


def bidders() -> list:
    """Ad groups that can buy open-exchange banners, video and native in any geography."""
    return [
        group(1, placement="banner", bid_micros=3_000_000, creatives=(
            creative(1, format="banner_300x250", width=300, height=250),
            creative(1, format="banner_728x90", width=728, height=90),
            creative(1, format="banner_300x600", width=300, height=600))),
        group(2, placement="interstitial", bid_micros=4_000_000, creatives=(
            creative(2, format="interstitial_video", width=640, height=480, video=True),)),
        group(3, placement="newsfeed", bid_micros=2_500_000, creatives=(
            creative(3, format="large_newsfeed_image", width=1200, height=628),)),
        group(4, placement="banner", bid_micros=5_000_000, targeting={"deal_ids": frozenset({"AB-Agency1-0001"})},
              creatives=(creative(4, format="banner_300x250", width=300, height=250),)),
        group(5, placement="interstitial", bid_micros=2_000_000, creatives=(
            creative(5, format="interstitial_image", width=1920, height=1080),)),
    ]


@pytest.fixture
def bidder(client: TestClient) -> TestClient:
    fx = FxRates({"USD": 1, "EUR": "1.10"})
    client.app.state.serving.engine.swap(ServingState.build(snapshot(bidders(), fx=fx)))  # type: ignore[attr-defined]
    return client


def floor_of(imp: dict[str, Any]) -> float:
    value = imp.get("bidfloor", 0)
    return float(value) if isinstance(value, int | float) else 0.0


def check_response(request: dict[str, Any], body: dict[str, Any]) -> int:
    """Validate against the OpenRTB 2.6 object model; returns the number of bids."""
    assert body["id"] == request["id"]
    assert isinstance(body.get("cur", "USD"), str) and len(body.get("cur", "USD")) == 3
    imps = {imp["id"]: imp for imp in request["imp"]}
    seen_imps: set[str] = set()
    bids = 0
    assert body["seatbid"], "a 200 carries at least one seatbid"
    for seatbid in body["seatbid"]:
        assert seatbid["bid"], "a seatbid carries at least one bid"
        for bid in seatbid["bid"]:
            bids += 1
            assert isinstance(bid["id"], str) and bid["id"]
            assert bid["impid"] in imps and bid["impid"] not in seen_imps
            seen_imps.add(bid["impid"])
            imp = imps[bid["impid"]]
            assert isinstance(bid["price"], float) and bid["price"] > 0
            if imp.get("bidfloorcur", "USD") == body.get("cur", "USD"):
                assert bid["price"] >= floor_of(imp)
            assert bid.get("adm") or bid.get("nurl")
            assert isinstance(bid["crid"], str) and bid["crid"]
            assert isinstance(bid["adomain"], list) and all(isinstance(d, str) and d for d in bid["adomain"])
            for url in ("nurl", "burl", "lurl"):
                assert bid[url].startswith("http") and AUCTION_PRICE in bid[url]
            if bid["mtype"] == 1:
                assert "banner" in imp and bid["adm"].startswith("<a ")
                sizes = _sizes(imp["banner"])
                assert not sizes or (bid["w"], bid["h"]) in sizes
            elif bid["mtype"] == 2:
                assert "video" in imp
                root = ET.fromstring(bid["adm"])
                assert root.tag == "VAST" and root.attrib["version"].startswith("4")
                assert root.find("./Ad/InLine/Impression") is not None
                assert root.find("./Ad/InLine/Creatives/Creative/Linear/MediaFiles/MediaFile") is not None
            elif bid["mtype"] == 4:
                assert "native" in imp
                native = json.loads(bid["adm"])
                assert native["ver"] == "1.2" and native["assets"] and native["link"]["url"]
            else:
                pytest.fail(f"unexpected mtype {bid['mtype']}")
    return bids


def _sizes(banner: dict[str, Any]) -> set[tuple[int, int]]:
    sizes = {(f["w"], f["h"]) for f in banner.get("format", [])}
    if "w" in banner and "h" in banner:
        sizes.add((banner["w"], banner["h"]))
    return sizes


def test_every_corpus_request_gets_a_valid_response_or_no_bid(bidder: TestClient, corpus_dir: Path) -> None:
    requests = corpus_requests(corpus_dir)
    assert len(requests) >= 60
    outcomes: dict[int, int] = {}
    total_bids = 0
    for name, request in requests:
        response = bidder.post("/openrtb2/bid", json=request)
        outcomes[response.status_code] = outcomes.get(response.status_code, 0) + 1
        assert response.status_code in (200, 204), f"{name}: {response.status_code} {response.text}"
        if response.status_code == 200:
            total_bids += check_response(request, response.json())
        else:
            assert response.content == b""
    # The catalogue above buys banners, video and native: a good share of the corpus is bid on.
    assert outcomes.get(200, 0) >= 20 and total_bids >= 20


def _banner_request(**overrides: Any) -> dict[str, Any]:
    request: dict[str, Any] = {"id": "r1", "imp": [{"id": "1", "banner": {"w": 300, "h": 250}}],
                               "app": {"bundle": "com.example.app"},
                               "device": {"ifa": "38400000-8cf0-11bd-b23e-10b96e40000d"}}
    request.update(overrides)
    return request


def test_malformed_json_is_400_with_the_reason(bidder: TestClient) -> None:
    response = bidder.post("/openrtb2/bid", content=b'{"id": "x", "imp": [',
                           headers={"content-type": "application/json"})
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
    imp = {"id": "1", "banner": {"w": 300, "h": 250},
           "pmp": {"private_auction": 1, "deals": [{"id": "AB-Agency1-0001", "bidfloor": 2.5}]}}
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
    engine.swap(ServingState.build(snapshot([group(1, placement="banner", targeting={"include_audiences": (9,)},
                                                   creatives=(creative(1, width=300, height=250),))])))
    engine.audiences = AudienceIndex([IndexedAudience(9, 1, KeySpace.MD5, frozenset([device_key(gaid)]))])
    assert client.post("/openrtb2/bid", json=_banner_request()).status_code == 200
    assert client.post("/openrtb2/bid", json=_banner_request(regs={"coppa": 1})).status_code == 204


def test_loss_notice_gives_the_reservation_back(client: TestClient) -> None:
    engine = client.app.state.serving.engine  # type: ignore[attr-defined]
    # 3.00 CPM alone above a 3.00 floor: 3,000 micros a bid; a budget of 3,000 allows one bid at a time.
    engine.swap(ServingState.build(snapshot([group(1, placement="banner", bid_micros=3_000_000, pacing="asap",
                                                   daily_budget_micros=3_000,
                                                   creatives=(creative(1, width=300, height=250),))])))
    request = _banner_request(imp=[{"id": "1", "banner": {"w": 300, "h": 250}, "bidfloor": 3.0}])
    bid = client.post("/openrtb2/bid", json=request).json()["seatbid"][0]["bid"][0]
    engine._blocked_until.clear()  # the refusal below would otherwise be remembered for the rest of the day
    assert client.post("/openrtb2/bid", json=request).status_code == 204
    engine._blocked_until.clear()
    lost = bid["lurl"].replace("${AUCTION_LOSS}", "102").replace(AUCTION_PRICE, "3.10")
    assert client.get(lost.split("testserver", 1)[1]).status_code == 204
    assert client.post("/openrtb2/bid", json=request).status_code == 200
