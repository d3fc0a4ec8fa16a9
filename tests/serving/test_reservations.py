"""Budget reservations end in exactly one way: billed (the actual charge replaces them), given back by a loss
notice in any process sharing the counters, or expired unshown."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest

from adstack.core.timeutil import utcnow
from adstack.finance.models import EntryType
from adstack.serving.counters import Counters, MemoryCounters, RedisCounters
from adstack.serving.engine import DecisionEngine
from tests.campaigns.helpers import ad_space, approved_ad_group, campaign, ledger, publisher
from tests.serving.support import NOW, engine, group, redis_available, request, served, snapshot
from tests.serving.support import SHARED_REDIS_URL as REDIS_URL
from tests.serving.test_api import ads_now, approved_creative, eventually
from tests.support import Api, expect

# A $1 daily budget; a lone bidder clears at the platform minimum CPM, so each served ad reserves a tenth of
# a cent and a thousand unshown ads fill the day.
DAILY = 1_000_000


@pytest.fixture(params=["memory", "redis"])
def shared(request: pytest.FixtureRequest) -> Iterator[tuple[Counters, Counters]]:
    """The counters of two serving processes: one dictionary in memory, or two clients of one Redis."""
    if request.param == "memory":
        one = MemoryCounters()
        yield one, one
        return
    if not redis_available():
        pytest.skip("no Redis on 127.0.0.1:6379")
    prefix = f"adstack:test:{uuid.uuid4().hex}:"
    first, second = RedisCounters(REDIS_URL, prefix=prefix), RedisCounters(REDIS_URL, prefix=prefix)
    yield first, second
    first.close()
    second.close()


def _engine(counters: Counters) -> DecisionEngine:
    eng = engine(
        snapshot([group(1, bid_micros=2_000_000, daily_budget_micros=DAILY, total_budget_micros=100 * DAILY,
                        pacing="standard")]),
        counters=counters,
    )
    eng.sdk_hold_seconds = 60
    return eng


def _fill(eng: DecisionEngine) -> list[str]:
    ids = []
    while True:
        req = request()
        decisions = eng.decide(req, space=eng.state.snapshot.ad_spaces.get(req.ad_space_id))
        if not decisions:
            return ids
        ids.append(decisions[0].impression_id)


def _per_ad(eng: DecisionEngine) -> int:
    req = request()
    decision = eng.decide(req, space=eng.state.snapshot.ad_spaces.get(req.ad_space_id))[0]
    eng.release(decision)
    return next(c.amount for c in decision.claims if c.key.startswith("d:"))


def test_unshown_ads_stop_blocking_once_their_hold_expires(shared: tuple[Counters, Counters]) -> None:
    counters, _ = shared
    eng = _engine(counters)
    per_ad = _per_ad(eng)
    prefetched = _fill(eng)
    assert per_ad > 0 and len(prefetched) == DAILY // per_ad  # the day is held by ads nobody has shown yet
    assert counters.outstanding().reservations == len(prefetched)
    assert counters.expire(NOW.timestamp() + 59) == 0  # not yet
    assert counters.expire(NOW.timestamp() + 61, limit=10_000) == len(prefetched)
    assert counters.outstanding().reservations == 0
    eng.swap(eng.state)  # forget the remembered refusal, as a snapshot refresh does
    assert served(eng, now=NOW + timedelta(seconds=61)) == [1]


def test_a_billed_ad_keeps_its_actual_charge_and_nothing_more(shared: tuple[Counters, Counters]) -> None:
    counters, _ = shared
    eng = _engine(counters)
    per_ad = _per_ad(eng)
    ids = _fill(eng)
    for impression_id in ids[:100]:  # shown and billed at half the reserved price
        assert counters.settle(impression_id, per_ad // 2)
    assert not counters.settle(ids[0], per_ad // 2)  # a replayed billing batch changes nothing
    counters.expire(NOW.timestamp() + 61, limit=10_000)
    day_key = next(k for k in _keys(eng) if k.startswith("d:"))
    assert counters.get_many([day_key]) == [100 * (per_ad // 2)]


def test_a_kept_reservation_stays_on_the_counters_past_its_expiry(shared: tuple[Counters, Counters]) -> None:
    counters, other = shared
    eng = _engine(counters)
    ids = _fill(eng)
    day_key = next(k for k in _keys(eng) if k.startswith("d:"))
    held = counters.get_many([day_key])[0]
    for impression_id in ids[:100]:  # shown CPA ads, from any process
        assert other.keep(impression_id)
        assert not other.keep(impression_id) and not counters.release_held(impression_id)
    assert counters.expire(NOW.timestamp() + 61, limit=10_000) == len(ids) - 100
    assert counters.get_many([day_key]) == [held * 100 // len(ids)]
    # The total budget's and the account's counters never expire: what a CPA ad reserved there is given back, and
    # billing charges its conversions against them.
    lasting = [k for k in _keys(eng) if k.startswith(("t:", "a:"))]
    assert lasting and counters.get_many(lasting) == [0] * len(lasting)


def test_a_loss_notice_in_another_process_gives_the_reservation_back(shared: tuple[Counters, Counters]) -> None:
    bidder_counters, other_counters = shared
    bidder = _engine(bidder_counters)
    ids = _fill(bidder)
    assert _fill(bidder) == []
    for impression_id in ids[:10]:  # the exchange's loss notices reach the other process
        assert other_counters.release_held(impression_id)
        assert not other_counters.release_held(impression_id)
    bidder.swap(bidder.state)
    assert len(_fill(bidder)) == 10
    assert other_counters.outstanding().reservations == len(ids)


def _keys(eng: DecisionEngine) -> list[str]:
    g = eng.state.snapshot.ad_groups[1]
    req = request()
    from adstack.serving import eligibility

    return [c.key for c in eng._claims(g, req, eng.state, eligibility.LocalTimes(req.now), 1)]


@pytest.mark.parametrize(("budget", "status"), [("daily_budget_micros", "daily_budget_reserved"),
                                               ("total_budget_micros", "budget_reserved")])
def test_an_ad_group_whose_budget_is_held_by_unshown_ads_does_not_read_eligible(
    api: Api, budget: str, status: str
) -> None:
    admin = api.admin()
    actor = api.approved_account(admin)
    ledger(api.session, actor.account_id, 100_000_000, EntryType.TOP_UP)
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
        campaign(api, actor)["id"],
        placement_type="banner",
        bid_type="cpc",
        bid_micros=300_000,
        ad_space_ids=[space["id"]],
        targeting={"countries": ["ID"]},
        **{"daily_budget_micros": None, "total_budget_micros": None, budget: 50_000},
        pacing="asap",
    )
    approved_creative(api, actor, admin, group["id"])
    client = api.client
    assert eventually(lambda: bool(ads_now(client, space["id"])))
    served = 1
    while served < 2_000 and ads_now(client, space["id"]):  # prefetched by an SDK, never shown
        served += 1
    assert 1 < served < 2_000
    read = expect(client.get(f"/api/v1/ad-groups/{group['id']}", headers=actor.headers), 200)
    assert read["serving_status"] == status, read["serving_reason"]
    assert "held by ads served" in read["serving_reason"]
    counters = client.app.state.serving.engine.counters  # type: ignore[attr-defined]
    assert counters.expire(utcnow().timestamp() + 31 * 60, limit=10_000) >= served - 1  # the SDK holds ran out
    read = expect(client.get(f"/api/v1/ad-groups/{group['id']}", headers=actor.headers), 200)
    assert read["serving_status"] == "eligible"
