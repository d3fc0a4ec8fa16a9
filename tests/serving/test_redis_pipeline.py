"""Shared counters awaited from the event loop: a decision waiting on Redis never stops other requests, concurrent
decisions share round trips, and the answers are the ones the blocking path gives."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis

from adstack.serving.counters import Claim, Hold, RedisCounters
from adstack.serving.redis_pipeline import PipelinedRedis
from adstack.serving.snapshot import Schedule
from tests.serving.support import NOW, SHARED_REDIS_URL, engine, group, redis_available, request, snapshot
from tests.support import run_async

REDIS_URL = SHARED_REDIS_URL


pytestmark = pytest.mark.skipif(not redis_available(), reason="no Redis on 127.0.0.1:6379")


class SlowRedis:
    """A TCP relay on loopback in front of Redis that holds each of Redis's answers back for `delay` seconds,
    as a busy or distant Redis would; it counts the reads it relays from the client (about one per round trip)."""

    def __init__(self, delay: float):
        self.delay = delay
        self.client_reads = 0
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", 6379))
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket, from_client: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if from_client:
                    self.client_reads += 1
                else:
                    time.sleep(self.delay)
                target.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, target):
                with contextlib.suppress(OSError):
                    end.close()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()


@pytest.fixture
def slow_redis() -> Iterator[SlowRedis]:
    relay = SlowRedis(delay=0.05)
    yield relay
    relay.close()


def _counters(url: str) -> RedisCounters:
    return RedisCounters(url, prefix=f"adstack:test:{uuid.uuid4().hex}:")


def test_the_event_loop_runs_other_work_while_a_reservation_waits_on_redis(slow_redis: SlowRedis) -> None:
    counters = _counters(slow_redis.url)

    async def scenario() -> tuple[int, int]:
        ticks = 0
        stop = False

        async def ticker() -> None:
            nonlocal ticks
            while not stop:
                ticks += 1
                await asyncio.sleep(0.005)

        running = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        before = ticks
        for _ in range(3):  # 3 round trips of at least 50 ms each
            assert await counters.reserve_async([Claim("spend", 1, cap=100)]) == -1
        stop = True
        await running
        return before, ticks

    before, after = run_async(scenario)
    # 150 ms of waiting on Redis: a loop blocked by it would have ticked once or twice.
    assert after - before >= 10
    counters.close()


def test_concurrent_reservations_share_round_trips_and_respect_the_cap(slow_redis: SlowRedis) -> None:
    counters = _counters(slow_redis.url)

    async def scenario() -> list[int]:
        return list(await asyncio.gather(*(counters.reserve_async([Claim("day", 10, cap=305)]) for _ in range(40))))

    started = time.monotonic()
    answers = run_async(scenario)
    elapsed = time.monotonic() - started
    assert answers.count(-1) == 30 and answers.count(0) == 10  # 30 x 10 fit under 305, the other 10 are refused
    assert counters.get_many(["day"]) == [300]
    # One round trip each would take 40 x 50 ms and 40 reads; shared pipelines take a few (with the connection's
    # greeting and the script's first load).
    assert elapsed < 1.0, elapsed
    assert slow_redis.client_reads < 20
    counters.close()


def test_awaited_and_blocking_reservations_book_alike() -> None:
    counters = _counters(REDIS_URL)
    claims = [Claim("d:1:2026-12-02", 400, cap=1_000), Claim("a:9", 400, cap=5_000)]

    async def scenario() -> tuple[int, list[int], bool, bool]:
        failed = await counters.reserve_async(claims, Hold("imp-1", time.time() + 60))
        held = await counters.get_many_async(["d:1:2026-12-02", "a:9"])
        released = await counters.release_held_async("imp-1")
        again = await counters.release_held_async("imp-1")
        return failed, held, released, again

    failed, held, released, again = run_async(scenario)
    assert (failed, held, released, again) == (-1, [400, 400], True, False)
    assert counters.get_many(["d:1:2026-12-02", "a:9"]) == [0, 0]
    assert counters.outstanding().reservations == 0
    counters.close()


def test_scripts_are_loaded_again_after_redis_forgets_them() -> None:
    counters = _counters(REDIS_URL)

    async def reserve() -> int:
        return await counters.reserve_async([Claim("k", 1, cap=10)])

    assert run_async(reserve) == -1
    redis.Redis.from_url(REDIS_URL).script_flush()
    assert run_async(reserve) == -1
    assert counters.get_many(["k"]) == [2]
    counters.close()


def test_an_unreachable_redis_serves_nothing_rather_than_spend_blind() -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there
    booking = (NOW - timedelta(days=1), NOW + timedelta(days=1))
    groups = [
        group(1, bid_type="cpt", bid_micros=1, schedule=Schedule(booked_slots=(booking,))),
        group(
            2,
            bid_type="guaranteed_cpm",
            bid_micros=10_000,
            booked_impressions=1_000_000,
            schedule=Schedule(start=booking[0], end=booking[1]),
        ),
        group(3),
    ]
    eng = engine(snapshot(groups), counters=_counters(f"redis://127.0.0.1:{port}/0"))

    assert run_async(lambda: eng.decide_async(request(count=3))) == []
    assert eng.decide(request(count=3)) == []


def test_the_awaited_decision_reserves_what_the_blocking_one_does() -> None:
    blocking = engine(snapshot([group(1, bid_micros=2_000_000)]), counters=_counters(REDIS_URL))
    awaited = engine(snapshot([group(1, bid_micros=2_000_000)]), counters=_counters(REDIS_URL))

    first = blocking.decide(request())
    second = run_async(lambda: awaited.decide_async(request()))
    assert [d.ad_group.id for d in first] == [d.ad_group.id for d in second] == [1]
    assert first[0].claims == second[0].claims
    keys = [c.key for c in first[0].claims]
    assert blocking.counters.get_many(keys) == awaited.counters.get_many(keys)


def test_the_database_and_password_in_the_url_are_the_ones_used() -> None:
    """The connection selects the URL's database (and authenticates when it names a password) before any command."""
    key = f"adstack:test:{uuid.uuid4().hex}"
    pipelined = PipelinedRedis("redis://127.0.0.1:6379/13", socket_timeout=1.0, socket_connect_timeout=1.0)

    async def scenario() -> object:
        await pipelined.execute("SET", key, "in 13")
        return await pipelined.execute("GET", key)

    try:
        assert run_async(scenario) == b"in 13"
        assert redis.Redis.from_url("redis://127.0.0.1:6379/13").get(key) == b"in 13"
        assert redis.Redis.from_url("redis://127.0.0.1:6379/0").get(key) is None
    finally:
        pipelined.close()
        redis.Redis.from_url("redis://127.0.0.1:6379/13").delete(key)

    wrong = PipelinedRedis("redis://:not-the-password@127.0.0.1:6379/0", socket_timeout=1.0,
                           socket_connect_timeout=1.0)
    with pytest.raises(redis.exceptions.ResponseError):  # Redis refuses AUTH without a configured password
        run_async(lambda: wrong.execute("PING"))
    wrong.close()


def test_a_late_answer_fails_the_waiting_requests_and_the_next_request_connects_again() -> None:
    relay = SlowRedis(delay=0.6)
    pipelined = PipelinedRedis(relay.url, socket_timeout=0.2, socket_connect_timeout=1.0)

    async def scenario() -> tuple[list[object], object]:
        late = await asyncio.gather(*(pipelined.execute("PING") for _ in range(3)), return_exceptions=True)
        relay.delay = 0.0
        return late, await pipelined.execute("PING")

    try:
        late, again = run_async(scenario)
        assert all(isinstance(answer, redis.exceptions.TimeoutError) for answer in late), late
        assert again == b"PONG"
    finally:
        pipelined.close()
        relay.close()


def test_concurrent_commands_resolve_in_the_order_redis_answers_them() -> None:
    key = f"adstack:test:{uuid.uuid4().hex}"
    pipelined = PipelinedRedis(REDIS_URL, socket_timeout=1.0, socket_connect_timeout=1.0)

    async def scenario() -> list[object]:
        return list(await asyncio.gather(*(pipelined.execute("INCR", key) for _ in range(200))))

    try:
        assert run_async(scenario) == list(range(1, 201))
    finally:
        pipelined.close()
        redis.Redis.from_url(REDIS_URL).delete(key)


def test_a_host_no_resolver_takes_fails_the_request_at_once() -> None:
    """Whatever stops the connection (here an empty DNS label, a UnicodeError rather than an OSError) fails the
    waiting request with a ConnectionError; none waits forever for a connection that will never come."""
    pipelined = PipelinedRedis("redis://a..b/0", socket_timeout=0.25, socket_connect_timeout=0.5)

    async def scenario() -> None:
        await asyncio.wait_for(pipelined.execute("PING"), 3)

    with pytest.raises(redis.exceptions.ConnectionError):
        run_async(scenario)
    pipelined.close()
