"""Counters: all claims or none, floors raised first, in memory and in Redis alike."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from adstack.serving.counters import Claim, Counters, GiveBack, Hold, MemoryCounters, RedisCounters
from tests.serving.support import SHARED_REDIS_URL as REDIS_URL
from tests.serving.support import redis_available


@pytest.fixture(params=["memory", "redis"])
def counters(request: pytest.FixtureRequest) -> Iterator[Counters]:
    if request.param == "memory":
        yield MemoryCounters()
        return
    if not redis_available():
        pytest.skip("no Redis on 127.0.0.1:6379")
    store = RedisCounters(REDIS_URL, prefix=f"adstack:test:{uuid.uuid4().hex}:")
    yield store
    store.close()


def test_reserve_applies_every_claim_or_none(counters: Counters) -> None:
    assert counters.reserve([Claim("day", 60, cap=100), Claim("total", 60, cap=1_000)]) == -1
    # The second reservation would pass the day cap: nothing changes, and the day claim is named.
    assert counters.reserve([Claim("total", 60, cap=1_000), Claim("day", 60, cap=100)]) == 1
    assert counters.get_many(["day", "total"]) == [60, 60]


def test_floor_is_raised_before_the_check(counters: Counters) -> None:
    assert counters.reserve([Claim("spend", 10, cap=100, floor=95)]) == 0
    assert counters.reserve([Claim("spend", 5, cap=100, floor=95)]) == -1
    assert counters.get_many(["spend"]) == [100]


def test_release_gives_back(counters: Counters) -> None:
    claims = [Claim("k", 40, cap=50)]
    assert counters.reserve(claims) == -1
    assert counters.reserve(claims) == 0
    counters.release(claims)
    assert counters.reserve(claims) == -1
    assert counters.get_many(["k", "unknown"]) == [40, 0]


def test_a_refund_is_given_back_once_and_never_below_what_is_held(counters: Counters) -> None:
    assert counters.refunds_through() is None  # new counters: no refund is on them yet
    assert counters.reserve([Claim("day", 900), Claim("total", 900)]) == -1
    assert counters.reserve([Claim("day", 50), Claim("total", 50)], Hold("shown-later", time.time() + 60)) == -1
    refund = GiveBack(7, (("day", 300), ("total", 980), ("never-claimed", 300)))
    assert counters.give_back([refund], through=9) == 1
    # 950 - 300 on the day; the total would go below the 50 the booked reservation holds.
    assert counters.get_many(["day", "total", "never-claimed"]) == [650, 50, 0]
    assert counters.refunds_through() == 9
    # Every process sharing the counters learns of the refund: only the first gives it back.
    assert counters.give_back([refund], through=9) == 0
    assert counters.get_many(["day", "total"]) == [650, 50]
    assert counters.release_held("shown-later")
    assert counters.get_many(["day", "total"]) == [600, 0]


def test_a_floor_read_before_a_refund_is_lowered_by_it(counters: Counters) -> None:
    assert counters.reserve([Claim("day", 0, floor=900, floor_as_of=5)]) == -1
    assert counters.give_back([GiveBack(7, (("day", 300),))], through=7) == 1
    # A state read before the refund still has the old figure: it no longer raises the counter back.
    assert counters.reserve([Claim("day", 300, cap=900, floor=900, floor_as_of=5)]) == -1
    assert counters.get_many(["day"]) == [900]
    # A figure read after it is the ledger's own, taken as it is.
    assert counters.give_back([GiveBack(8, (("day", 900),))], through=8) == 1
    assert counters.reserve([Claim("day", 0, floor=700, floor_as_of=8)]) == -1
    assert counters.get_many(["day"]) == [700]
