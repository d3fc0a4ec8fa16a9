"""Counters: all claims or none, floors raised first, in memory and in Redis alike."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from adstack.serving.counters import Claim, Counters, MemoryCounters, RedisCounters
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
