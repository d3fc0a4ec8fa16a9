"""What a won OpenRTB bid costs the advertiser, from `POST /openrtb2/bid` through the win and billing notices to
the ledger: on a first-price auction never more than the bid (nor than the clearing price the exchange reports),
on a fixed-price deal never more than the deal's price."""

from __future__ import annotations

import html
import math
import re
from typing import Any

import pytest
from sqlalchemy import select

from adstack.core.settings import Settings
from adstack.finance.models import EntryType, LedgerEntry
from tests.campaigns.helpers import approved_ad_group, campaign, ledger
from tests.serving.test_api import GAID, approved_creative, eventually
from tests.support import Actor, Api, expect

AUCTION_PRICE = "${AUCTION_PRICE}"
BANNER_PCTR = 0.006  # the banner placement's prior CTR: what a new ad group is predicted to do
MIN_CPC = 50_000  # 0.05 USD a click: 0.30 CPM at the banner pCTR, above the 0.10 CPM minimum


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"min_price_cpc_usd_micros": MIN_CPC})


def _advertiser(api: Api) -> tuple[Actor, Actor, int]:
    admin = api.admin()
    actor = api.approved_account(admin)
    ledger(api.session, actor.account_id, 100_000_000, EntryType.TOP_UP)
    return admin, actor, campaign(api, actor)["id"]


def _ad_group(api: Api, admin: Actor, actor: Actor, campaign_id: int, **values: Any) -> dict[str, Any]:
    """An open-exchange banner ad group (no ad space restriction) with an approved 640x100 creative."""
    group = approved_ad_group(api, actor, admin, campaign_id, placement_type="banner", **values)
    approved_creative(api, actor, admin, group["id"])
    return group


def _serving(api: Api, *groups: dict[str, Any]) -> bool:
    """Whether every one of these ad groups is in the serving snapshot with its creative, so each is a candidate."""
    snapshot = api.client.app.state.serving.state.snapshot  # type: ignore[attr-defined]
    live = {g.id for g in snapshot.by_ordinal if g.creatives}
    return all(group["id"] in live for group in groups)


def _request(**overrides: Any) -> dict[str, Any]:
    imp: dict[str, Any] = {"id": "1", "banner": {"w": 640, "h": 100}, "bidfloor": 0.2}
    imp.update(overrides.pop("imp", {}))
    request: dict[str, Any] = {"id": "r1", "imp": [imp], "app": {"bundle": "com.example.game"},
                               "device": {"ifa": GAID, "os": "android", "geo": {"country": "IDN"}}}
    request.update(overrides)
    return request


def _bid(api: Api, request: dict[str, Any]) -> dict[str, Any] | None:
    response = api.client.post("/openrtb2/bid", json=request)
    assert response.status_code in (200, 204), response.text
    return response.json()["seatbid"][0]["bid"][0] if response.status_code == 200 else None


def _local(url: str) -> str:
    return url.split("testserver", 1)[1]


def _win_and_bill(api: Api, bid: dict[str, Any], clearing: str) -> None:
    """The exchange's win notice and billing notice, each with its clearing price."""
    expect(api.client.get(_local(bid["nurl"].replace(AUCTION_PRICE, clearing))), 204)
    expect(api.client.get(_local(bid["burl"].replace(AUCTION_PRICE, clearing))), 204)


def _charges(api: Api, account_id: int) -> list[int]:
    api.settle()
    api.session.rollback()  # read what the pipeline committed since
    return [-amount for amount in api.session.scalars(select(LedgerEntry.amount_micros).where(
        LedgerEntry.account_id == account_id, LedgerEntry.entry_type == EntryType.CHARGE.value
    ).order_by(LedgerEntry.id))]


def _click(api: Api, bid: dict[str, Any]) -> None:
    link = re.search(r'<a href="([^"]+)"', bid["adm"])
    assert link is not None
    assert api.client.get(_local(html.unescape(link.group(1))), follow_redirects=False).status_code == 302


def _per_click(cpm: float) -> int:
    """A CPM in USD as the price of a click at the banner pCTR, in micros, rounded down as exact prices are."""
    return math.floor(cpm * 1_000_000 / (1000 * BANNER_PCTR))


def test_a_first_price_win_charges_the_advertiser_no_more_than_the_bid(api: Api, settings: Settings) -> None:
    """OpenRTB 2.6 §3.2.1 `at`=1: the exchange clears at our bid (the 0.60 CPM value less the margin, 0.48), so the
    advertiser pays that, not our own auction's second price (the 0.54 runner-up), which is above it. CPC: the
    click is charged the bid through the pCTR."""
    admin, actor, campaign_id = _advertiser(api)
    best = _ad_group(api, admin, actor, campaign_id, bid_type="cpc", bid_micros=100_000)  # 0.60 CPM at 0.6%
    runner_up = _ad_group(api, admin, actor, campaign_id, bid_type="cpc", bid_micros=90_000)  # 0.54 CPM
    assert eventually(lambda: _serving(api, best, runner_up))
    # Both bids before any click, which would move the predicted rates the prices go through.
    bid = _bid(api, _request(at=1))
    second = _bid(api, _request(at=2))
    assert bid is not None and second is not None
    price = bid["price"]
    assert price == pytest.approx(0.6 * (100 - settings.openrtb_first_price_margin_percent) / 100)  # 0.48
    assert second["price"] == pytest.approx(0.6)
    for won, clearing in ((bid, str(price)), (second, "0.5")):
        _win_and_bill(api, won, clearing)
        _click(api, won)
    charged, second_charged = _charges(api, actor.account_id)
    assert charged == _per_click(price) and charged * 1000 * BANNER_PCTR <= price * 1_000_000
    # On a second-price exchange our own auction's price stands: the runner-up's 0.54, below the 0.60 bid.
    assert second_charged == 90_000


def _booking(api: Api, **targeting: Any) -> Actor:
    """A brand advertiser's guaranteed CPM booking at 2.00 on open-exchange banners, once it serves."""
    admin = api.admin()
    actor = api.approved_account(admin)
    ledger(api.session, actor.account_id, 100_000_000, EntryType.TOP_UP)
    campaign_id = campaign(api, actor, objective="brand")["id"]
    booking = _ad_group(api, admin, actor, campaign_id, bid_type="guaranteed_cpm", bid_micros=2_000_000,
                        booked_impressions=100_000, targeting={"countries": ["ID"], **targeting})
    assert eventually(lambda: _serving(api, booking))
    return actor


def test_a_guaranteed_booking_bids_its_booked_cpm_on_a_first_price_exchange(api: Api) -> None:
    """A booking pays its booked 2.00 whoever bids, so on a first-price exchange it bids 2.00: the value less the
    margin (1.60) would have charged it more than the bid."""
    actor = _booking(api)
    bid = _bid(api, _request(at=1))
    assert bid is not None and bid["price"] == 2.0
    _win_and_bill(api, bid, "2.0")
    second = _bid(api, _request(at=2))  # a second-price exchange: the same bid, our booked price stands
    assert second is not None and second["price"] == 2.0
    _win_and_bill(api, second, "1.2")
    assert _charges(api, actor.account_id) == [2_000, 2_000]  # a thousandth of the CPM an impression


def test_an_impression_cleared_at_our_bid_costs_no_more_than_the_clearing_price_reported(api: Api) -> None:
    """On a first-price exchange and on a fixed-price deal the exchange charges what it reports on the billing
    notice (OpenRTB 2.6 §4.4 ${AUCTION_PRICE}, "the final price after discount"): the advertiser pays no more.
    On a second-price exchange our own price stands; an unreadable price leaves it too."""
    actor = _booking(api, deal_ids=["D1"])
    request = _request(at=1, imp={"pmp": {"private_auction": 1, "deals": [{"id": "D1", "bidfloor": 1.0}]}})
    for auction, clearing in ((request, "1.5"), (request, "2.5"), (request, "AUDIT"), (_fixed_deal(2.0), "1.75"),
                              ({**request, "at": 2}, "1.2")):
        bid = _bid(api, auction)
        assert bid is not None and bid["price"] == 2.0
        _win_and_bill(api, bid, clearing)
    # 2.5 is past our bid, so it is read as the bid (§4.4: in the bid's units); AUDIT is no price.
    assert _charges(api, actor.account_id) == [1_500, 2_000, 2_000, 1_750, 2_000]


def _fixed_deal(price: float, *, private: int = 1) -> dict[str, Any]:
    return _request(imp={"pmp": {"private_auction": private, "deals": [{"id": "D1", "bidfloor": price, "at": 3}]}})


def test_a_guaranteed_booking_bids_only_on_a_fixed_price_deal_at_its_booked_cpm(api: Api) -> None:
    """OpenRTB 2.6 §3.2.12 `at`=3: the deal's bidfloor is the agreed price. A booking charged 2.00 may not take a
    1.25 deal: it would pay more than the deal's price."""
    actor = _booking(api, deal_ids=["D1"])
    assert _bid(api, _fixed_deal(1.25)) is None
    bid = _bid(api, _fixed_deal(2.0))
    assert bid is not None and (bid["dealid"], bid["price"]) == ("D1", 2.0)
    _win_and_bill(api, bid, "2.0")
    assert _charges(api, actor.account_id) == [2_000]


def test_a_cpc_buyer_does_not_bid_on_a_fixed_price_deal_below_the_cpc_minimum(api: Api) -> None:
    """0.25 CPM is 0.0417 a click at the 0.6% banner pCTR, below the 0.05 CPC minimum: charging the minimum would
    cost 0.30 per 1,000 impressions, above the deal's price, so no bid is made. At 0.40 CPM (0.0667 a click) it
    bids, and a click is charged the deal's price through the pCTR, whatever the runner-up bids."""
    admin, actor, campaign_id = _advertiser(api)
    buyer = _ad_group(api, admin, actor, campaign_id, bid_type="cpc", bid_micros=100_000, targeting={
        "countries": ["ID"], "deal_ids": ["D1"]})  # worth 0.60 CPM
    other = _ad_group(api, admin, actor, campaign_id, bid_type="cpc", bid_micros=90_000)  # an open bidder, 0.54
    assert eventually(lambda: _serving(api, buyer, other))
    assert _bid(api, _fixed_deal(0.25)) is None

    bid = _bid(api, _fixed_deal(0.4, private=0))
    assert bid is not None and (bid["dealid"], bid["price"]) == ("D1", 0.4)
    _win_and_bill(api, bid, "0.4")
    _click(api, bid)
    (charged,) = _charges(api, actor.account_id)
    assert charged == _per_click(0.4) >= MIN_CPC and charged * 1000 * BANNER_PCTR <= 400_000
