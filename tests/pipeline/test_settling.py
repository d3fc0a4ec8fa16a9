"""How billing ends a bid's budget reservation, in the event log's order: a CPA ad's stands once it is shown, and a
loss notice after the bid's impression gives nothing back."""

from __future__ import annotations

from typing import Any

import pytest

from adstack.core.settings import Settings
from adstack.core.timeutil import utcnow
from adstack.serving.engine import ServingState
from tests.attribution.helpers import scenario
from tests.serving.support import creative, group, snapshot
from tests.serving.test_openrtb import _banner_request
from tests.support import Api, expect

AUCTION_PRICE = "${AUCTION_PRICE}"


class Exchange:
    """An exchange bidding one 300x250 impression at a 3.00 floor to one ad group of a real, funded account."""

    def __init__(self, api: Api, settings: Settings, *, bid_type: str, daily_budget_micros: int):
        s = scenario(api, settings, bid_type="cpc", bid_micros=300_000)
        serving = api.client.app.state.serving  # type: ignore[attr-defined]
        serving.refresh()  # the control plane's last change is taken now, not over the snapshot swapped in below
        self.engine = serving.engine
        self.engine.swap(ServingState.build(snapshot([group(
            s.ad_group["id"], account_id=s.account_id, campaign_id=s.campaign["id"], placement="banner",
            bid_type=bid_type, bid_micros=3_000_000 if bid_type == "cpm" else 200_000_000, pacing="asap",
            daily_budget_micros=daily_budget_micros,
            creatives=(creative(s.ad_group["id"], id=77, width=300, height=250),))])))
        self.api = api
        self.request = _banner_request(imp=[{"id": "1", "banner": {"w": 300, "h": 250}, "bidfloor": 3.0}])

    def bid(self) -> dict[str, Any] | None:
        self.engine._blocked_until.clear()  # a refusal is otherwise remembered for the rest of the day
        answer = self.api.client.post("/openrtb2/bid", json=self.request)
        return answer.json()["seatbid"][0]["bid"][0] if answer.status_code == 200 else None

    def notice(self, bid: dict[str, Any], name: str) -> None:
        url = bid[name].replace(AUCTION_PRICE, "3.00").replace("${AUCTION_LOSS}", "102")
        expect(self.api.client.get(url.split("testserver", 1)[1]), 204)

    def expire_every_hold(self) -> int:
        return int(self.engine.counters.expire(utcnow().timestamp() + 10**9, limit=10_000))


@pytest.mark.parametrize("ivt", [True, False])
def test_a_loss_notice_after_the_bids_impression_gives_nothing_back(api: Api, settings: Settings,
                                                                     ivt: bool) -> None:
    settings.ivt_enabled = ivt
    # 3.00 CPM alone at a 3.00 floor: 3,000 micros a bid, and a day's budget of one bid.
    exchange = Exchange(api, settings, bid_type="cpm", daily_budget_micros=3_000)
    first = exchange.bid()
    assert first is not None
    exchange.notice(first, "burl")  # shown and billed
    assert exchange.bid() is None  # the day is held
    exchange.notice(first, "lurl")  # a late or mistaken loss notice
    api.settle()
    assert exchange.bid() is None  # still held: the impression came first
    assert exchange.expire_every_hold() == 0  # and nothing is left booked to expire


def test_a_loss_notice_before_any_impression_gives_the_reservation_back(api: Api, settings: Settings) -> None:
    exchange = Exchange(api, settings, bid_type="cpm", daily_budget_micros=3_000)
    first = exchange.bid()
    assert first is not None and exchange.bid() is None
    exchange.notice(first, "lurl")
    api.settle()
    assert exchange.bid() is not None


def test_a_shown_cpa_ad_keeps_its_reservation_past_the_unshown_ads_expiry(api: Api, settings: Settings) -> None:
    exchange = Exchange(api, settings, bid_type="cpa", daily_budget_micros=100_000)
    bids = []
    while (bid := exchange.bid()) is not None and len(bids) < 10_000:
        bids.append(bid)
    assert 1 < len(bids) < 10_000  # the day's budget holds what these bids may cost
    shown = bids[: len(bids) // 2]
    for bid in shown:
        exchange.notice(bid, "burl")
    api.settle()
    # Only the unshown half expires; the shown half's expected cost stands as spend until conversions are charged.
    assert exchange.expire_every_hold() == len(bids) - len(shown)
    served_again = 0
    while exchange.bid() is not None and served_again < 10_000:
        served_again += 1
    assert served_again <= len(bids) - len(shown) + 1
