"""The serving bench's warm-up: every body is sent before a measured run, so none pays for first sightings."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from datetime import UTC, datetime

from fastapi.testclient import TestClient

from adstack.bench.serving import (
    COUNTRIES,
    HTTP_CONNECTIONS,
    OPENRTB_MIN_BID_SHARE,
    SEED,
    _drive,
    _http_payloads,
    build_snapshot,
    device_pool,
)
from adstack.bench.serving_openrtb import bid_requests
from adstack.serving.openrtb.bidder import _ALPHA3
from adstack.serving.runtime import ServingState
from tests.support import run_async


async def _record_bodies(payload_count: int) -> list[bytes]:
    received: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                received.append(await reader.readexactly(length))
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    payloads, _ = _http_payloads([{"n": n} for n in range(payload_count)])
    async with server:
        done, failed = await _drive(port, payloads, 0.0, every=True)
    assert failed == 0
    assert done == len(received)
    return received


def test_the_warm_up_sends_every_body_even_when_its_time_is_up() -> None:
    count = HTTP_CONNECTIONS * 5 + 3  # shares that do not divide evenly
    received = run_async(lambda: _record_bodies(count))  # a browser test may have left a loop on this thread
    assert {json.loads(body)["n"] for body in received} == set(range(count))


def test_most_of_the_bench_bid_requests_get_a_bid(client: TestClient) -> None:
    """The bidder's throughput is measured on requests it bids on: a bench of no-bids (an uncategorised catalogue
    against the requests' `bcat`, say) would measure only the refusal."""
    now = datetime.now(UTC)
    rng = random.Random(SEED + 7)
    snapshot = build_snapshot(1_000, now)
    alpha3 = {two: three for three, two in _ALPHA3.items()}
    bodies = bid_requests(rng, snapshot, device_pool(rng, 200), 200, COUNTRIES, alpha3)
    engine = client.app.state.serving.engine  # type: ignore[attr-defined]
    engine.swap(ServingState.build(snapshot))
    statuses = Counter(client.post("/openrtb2/bid", json=body).status_code for body in bodies)
    assert set(statuses) <= {200, 204}
    assert statuses[200] >= OPENRTB_MIN_BID_SHARE * len(bodies), statuses
