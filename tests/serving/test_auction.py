"""Ranking: reserved tiers before the auction, the auction by eCPM, and the clearing price."""

from __future__ import annotations

import math
from datetime import timedelta
from decimal import Decimal

from fastapi.testclient import TestClient

from adstack.core.settings import Settings
from adstack.serving.counters import MemoryCounters
from adstack.serving.engine import DecisionEngine, Floor, ServingState
from adstack.serving.fx import FxRates
from adstack.serving.prediction import DEFAULT_CTR_PRIORS, RateModel
from adstack.serving.ranking import MinimumPrices, clearing_price_micros
from adstack.serving.snapshot import AccountSnap, AdSpaceSnap, Schedule, Spend
from tests.serving.support import NOW, PUBLISHER_ID, SPACE_ID, creative, engine, group, request, snapshot

INTERSTITIAL_CTR = DEFAULT_CTR_PRIORS["interstitial"].mean


def decide(eng: DecisionEngine, **fields):
    req = request(**fields)
    return eng.decide(req, space=eng.state.snapshot.ad_spaces.get(SPACE_ID))


def test_auction_orders_by_ecpm_across_bid_types() -> None:
    rates = RateModel()
    ctr, cvr = rates.rates("interstitial", 0, 0, 0)
    cpm = group(1, bid_type="cpm", bid_micros=3_000_000)  # eCPM 3.00
    cpc = group(2, bid_type="cpc", bid_micros=100_000)  # eCPM 0.10 x CTR x 1000
    cpa = group(3, bid_type="cpa", bid_micros=2_000_000)  # eCPM 2.00 x CTR x CVR x 1000
    expected = sorted([(3_000_000, 1), (100_000 * ctr * 1000, 2), (2_000_000 * ctr * cvr * 1000, 3)], reverse=True)
    eng = engine(snapshot([cpm, cpc, cpa]))
    decisions = decide(eng, count=3)
    assert [d.ad_group.id for d in decisions] == [g for _, g in expected]
    assert [round(d.ecpm_usd_micros) for d in decisions] == [round(e) for e, _ in expected]


def test_second_price_charges_the_runner_up_in_the_winners_bid_unit() -> None:
    winner = group(1, bid_type="cpc", bid_micros=200_000)  # eCPM = 0.20 x CTR x 1000
    runner_up = group(2, bid_type="cpm", bid_micros=3_000_000)
    eng = engine(snapshot([winner, runner_up]))
    first, second = decide(eng, count=2)
    assert (first.ad_group.id, second.ad_group.id) == (1, 2)
    # The CPC that would have tied the runner-up's 3.00 CPM: 3.00 / (1000 x CTR), rounded up to a micro.
    assert first.price_micros == math.ceil(3_000_000 / (1000 * INTERSTITIAL_CTR))
    assert first.price_micros < winner.bid_micros
    # The last ranked pays the floor (here none), never more than its bid.
    assert 1 <= second.price_micros <= runner_up.bid_micros


def test_reserve_price_is_the_floor_and_the_price_when_alone() -> None:
    spaces = [AdSpaceSnap(SPACE_ID, PUBLISHER_ID, "space", "interstitial", reserve_price_micros=1_500_000)]
    alone = engine(snapshot([group(1, bid_type="cpm", bid_micros=2_000_000)], spaces=spaces))
    (decision,) = decide(alone)
    assert decision.price_micros == 1_500_000
    below = engine(snapshot([group(1, bid_type="cpm", bid_micros=1_000_000)], spaces=spaces))
    assert decide(below) == []


def test_a_candidates_own_floor_sets_its_price_and_a_fixed_one_is_paid_whoever_follows() -> None:
    """`floor_of` (an exchange's deals): each candidate is priced against its own floor; None keeps it out."""
    winner, runner_up = group(1, bid_micros=5_000_000), group(2, bid_micros=2_000_000)
    floors = {1: Floor(3_000_000), 2: Floor(500_000)}
    eng = engine(snapshot([winner, runner_up]))
    spaced = eng.state.snapshot.ad_spaces.get(SPACE_ID)
    (decision,) = eng.decide(request(floor_micros=500_000), space=spaced, floor_of=lambda g, _: floors[g.id])
    assert (decision.ad_group.id, decision.price_micros) == (1, 3_000_000)  # its floor, above the runner-up
    floors[1] = Floor(1_250_000, fixed=True)
    (decision,) = eng.decide(request(floor_micros=500_000), space=spaced, floor_of=lambda g, _: floors[g.id])
    assert (decision.price_micros, decision.bid_usd_cpm_micros) == (1_250_000, 1_250_000)  # not the 2.00 after it
    (decision,) = eng.decide(request(floor_micros=500_000), space=spaced,
                             floor_of=lambda g, _: None if g.id == 1 else floors[g.id])
    assert (decision.ad_group.id, decision.price_micros) == (2, 500_000)


def test_first_price_charges_the_bid() -> None:
    eng = engine(snapshot([group(1, bid_micros=2_000_000), group(2, bid_micros=1_000_000)]), auction_type="first_price")
    (decision,) = decide(eng)
    assert (decision.ad_group.id, decision.price_micros) == (1, 2_000_000)


def test_bids_in_other_currencies_compete_in_usd_and_pay_in_their_own() -> None:
    fx = FxRates({"USD": 1, "INR": "0.012"})
    rupees = group(1, bid_type="cpm", bid_micros=200_000_000, account_id=2, currency="INR")  # 2.40 USD
    dollars = group(2, bid_type="cpm", bid_micros=2_000_000)
    snap = snapshot(
        [rupees, dollars],
        accounts=[AccountSnap(1, available_micros=10**12), AccountSnap(2, currency="INR", available_micros=10**12)],
        fx=fx,
    )
    (decision,) = decide(engine(snap))
    assert decision.ad_group.id == 1
    # Pays the runner-up's 2.00 USD, in rupees: 2.00 / 0.012.
    assert decision.price_micros == math.ceil(2_000_000 / 0.012)


def test_reserved_tiers_come_before_the_auction() -> None:
    booking = (NOW - timedelta(days=1), NOW + timedelta(days=1))
    cpt = group(1, bid_type="cpt", bid_micros=1, schedule=Schedule(booked_slots=(booking,)))
    guaranteed = group(
        2,
        bid_type="guaranteed_cpm",
        bid_micros=10_000,
        booked_impressions=1_000_000,
        schedule=Schedule(start=booking[0], end=booking[1]),
    )
    performance = group(3, bid_type="cpm", bid_micros=50_000_000)
    eng = engine(snapshot([performance, guaranteed, cpt]))
    decisions = decide(eng, count=3)
    assert [(d.ad_group.id, d.tier) for d in decisions] == [(1, "cpt"), (2, "guaranteed_cpm"), (3, "auction")]
    assert decisions[1].price_micros == 10_000  # the booked CPM


def test_guaranteed_booking_is_delivered_evenly() -> None:
    # 100 impressions over 100 hours: about one an hour (plus an hour of slack), however much traffic comes.
    start = NOW - timedelta(hours=10)
    guaranteed = group(
        1,
        bid_type="guaranteed_cpm",
        bid_micros=1,
        booked_impressions=100,
        schedule=Schedule(start=start, end=start + timedelta(hours=100)),
    )
    eng = engine(snapshot([guaranteed]))
    delivered = sum(len(decide(eng)) for _ in range(100))
    assert 10 <= delivered <= 12


def test_concurrent_cpt_bookings_share_the_slot_evenly() -> None:
    booking = ((NOW - timedelta(hours=1), NOW + timedelta(hours=1)),)
    eng = engine(snapshot([group(g, bid_type="cpt", schedule=Schedule(booked_slots=booking)) for g in (1, 2, 3)]))
    shown = [decide(eng)[0].ad_group.id for _ in range(30)]
    assert {g: shown.count(g) for g in (1, 2, 3)} == {1: 10, 2: 10, 3: 10}


def test_one_ad_per_ad_group_per_response() -> None:
    eng = engine(snapshot([group(1, bid_micros=3_000_000), group(2, bid_micros=2_000_000)]))
    assert [d.ad_group.id for d in decide(eng, count=5)] == [1, 2]


def test_early_stop_finds_the_same_winners_as_a_full_auction() -> None:
    # Observed rates that reverse the prior order: the best-first numbering is stale, the result must not be.
    groups = [group(g, bid_type="cpc", bid_micros=100_000 + g * 1_000, campaign_id=1) for g in range(1, 40)]
    snap = snapshot(groups)
    from adstack.serving.prediction import Outcomes

    leaves = {
        ("interstitial", 1, g.id, g.creatives[0].id): Outcomes(impressions=10_000, clicks=10 * (40 - g.id))
        for g in groups
    }
    rates = RateModel(leaves)
    eng = DecisionEngine(ServingState.build(snap, rates), counters=MemoryCounters())
    best = max(groups, key=lambda g: g.bid_micros * rates.rates("interstitial", 1, g.id, g.creatives[0].id)[0])
    (decision,) = decide(eng)
    assert decision.ad_group.id == best.id == 1


def test_clearing_price_is_never_above_the_bid() -> None:
    price = clearing_price_micros(
        bid_type="cpc",
        bid_micros=100,
        currency="USD",
        winner_ecpm=5_000.0,
        runner_up_ecpm=4_999.0,
        floor_ecpm=0.0,
        pctr=0.0001,
        pcvr=0.1,
        fx=FxRates(),
    )
    assert price == 100


# ---------- the platform minimum ----------


def test_lone_cpc_bidder_on_a_space_without_reserve_pays_at_least_the_minimum_per_click() -> None:
    # One $1 CPC bidder, no runner-up, no reserve: the second price alone would clear at one micro a click.
    eng = engine(snapshot([group(1, bid_type="cpc", bid_micros=1_000_000)]))
    prices = [decision.price_micros for _ in range(300) for decision in decide(eng)]
    assert len(prices) == 300
    assert min(prices) >= 10_000  # 0.01 USD, the default CPC minimum
    assert max(prices) <= 1_000_000
    # A click is billed the token's price, so 300 clicks bill at least 3.00 USD (the demo billed 0.0003).
    assert sum(prices) >= 300 * 10_000


def test_minimum_is_per_bid_type_and_converted_to_the_account_currency() -> None:
    fx = FxRates({"USD": 1, "INR": "0.012"})
    minimums = MinimumPrices(cpc_usd_micros=20_000, cpm_usd_micros=150_000, cpa_usd_micros=500_000)
    cases = [
        ("cpm", 5_000_000, "USD", 150_000),
        ("cpc", 1_000_000, "USD", 20_000),
        ("cpa", 9_000_000, "USD", 500_000),
        ("cpc", 100_000_000, "INR", math.ceil(Decimal(20_000) / Decimal("0.012"))),
    ]
    for bid_type, bid, currency, expected in cases:
        lone = group(1, bid_type=bid_type, bid_micros=bid, currency=currency)
        snap = snapshot([lone], accounts=[AccountSnap(1, currency=currency, available_micros=10**12)], fx=fx)
        (decision,) = decide(engine(snap, minimum_prices=minimums))
        assert decision.price_micros == expected, bid_type
    # A runner-up above the minimum still sets the price.
    snap = snapshot([group(1, bid_micros=5_000_000), group(2, bid_micros=2_000_000)])
    assert decide(engine(snap, minimum_prices=minimums))[0].price_micros == 2_000_000


def test_a_bid_below_the_minimum_does_not_enter_the_auction() -> None:
    low = group(1, bid_type="cpm", bid_micros=50_000)  # 0.05 USD CPM, under the 0.10 minimum
    assert decide(engine(snapshot([low]))) == []
    assert [d.ad_group.id for d in decide(engine(snapshot([low, group(2, bid_micros=100_000)])))] == [2]
    assert decide(engine(snapshot([low]), minimum_prices=MinimumPrices(cpm_usd_micros=0)))[0].price_micros == 1


def test_minimums_come_from_the_settings() -> None:
    settings = Settings(
        min_price_cpc_usd_micros=30_000, min_price_cpm_usd_micros=200_000, min_price_cpa_usd_micros=1_000_000
    )
    assert MinimumPrices.from_settings(settings) == MinimumPrices(30_000, 200_000, 1_000_000)
    assert MinimumPrices.from_settings(Settings()) == MinimumPrices()


def test_first_price_exchange_bids_the_ecpm_less_the_margin_not_the_floor(client: TestClient) -> None:
    # A lone bidder: our own auction clears at the platform minimum, which would lose every first-price auction.
    cpm = group(1, placement="banner", bid_micros=3_000_000, creatives=(creative(1, width=300, height=250),))
    cpc = group(
        2, placement="banner", bid_type="cpc", bid_micros=2_000_000, creatives=(creative(2, width=300, height=250),)
    )
    engine_ = client.app.state.serving.engine  # type: ignore[attr-defined]
    banner_ctr = DEFAULT_CTR_PRIORS["banner"].mean
    for bidder, ecpm in ((cpm, 3_000_000), (cpc, 2_000_000 * banner_ctr * 1000)):
        engine_.swap(ServingState.build(snapshot([bidder])))
        prices = {}
        for at in (1, 2):
            body = {
                "id": f"r{at}",
                "at": at,
                "imp": [{"id": "1", "banner": {"w": 300, "h": 250}}],
                "app": {"bundle": "com.publisher.app"},
                "device": {"geo": {"country": "IND"}},
            }
            response = client.post("/openrtb2/bid", json=body)
            assert response.status_code == 200, response.text
            prices[at] = response.json()["seatbid"][0]["bid"][0]["price"]
        assert prices[2] == math.ceil(ecpm / 100) / 10_000  # in USD per 1,000, up to 0.0001
        # First price: the eCPM less the configured margin (serving/openrtb), still far above the minimum.
        margin = client.app.state.settings.openrtb_first_price_margin_percent  # type: ignore[attr-defined]
        assert prices[1] == math.ceil(ecpm * (100 - margin) / 100 / 100) / 10_000
        assert prices[1] > 0.0001


def test_a_restart_keeps_a_guaranteed_bookings_delivery_from_what_billing_counted() -> None:
    """Delivery counts live in memory; after a restart the ledger's billed impressions are where a booking
    stands, so it is not delivered a second time."""
    start = NOW - timedelta(hours=10)
    guaranteed = group(1, bid_type="guaranteed_cpm", bid_micros=1, booked_impressions=100,
                       schedule=Schedule(start=start, end=start + timedelta(hours=100)))
    fresh = engine(snapshot([guaranteed]))
    assert sum(len(decide(fresh)) for _ in range(100)) >= 10
    billed = snapshot([guaranteed], ledger_spend={1: Spend(total_micros=12, total_units=12)})
    restarted = engine(billed)  # new in-memory counters: only the ledger remembers the 12 shown
    assert sum(len(decide(restarted)) for _ in range(100)) == 0
