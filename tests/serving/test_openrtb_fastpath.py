"""`POST /openrtb2/bid` answers the same whether the raw-ASGI fast path or the documented route serves it."""

from __future__ import annotations

import gzip
import itertools
import json
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from redis.exceptions import ConnectionError as RedisConnectionError

from adstack.app import create_app
from adstack.core.settings import Settings
from adstack.serving.openrtb import fastpath
from tests.serving.test_openrtb_safety import banner_group, bid_request, serve

PATH = "/openrtb2/bid"
JSON = {"content-type": "application/json"}


def _recording(client: TestClient) -> list[bool]:
    """Whether the fast path answered each request itself (True) or passed it on to the route (False)."""
    app: Any = client.app
    handler = app.fast_paths[PATH]
    answered: list[bool] = []

    async def recording(scope: Any, receive: Any, send: Any) -> Any:
        outcome = await handler(scope, receive, send)
        answered.append(outcome is True)
        return outcome

    app.fast_paths[PATH] = recording
    return answered


def _comparable(response: Any) -> tuple[Any, ...]:
    """Status, headers and body, less what is drawn at random for each bid (ids, signed tokens in URLs)."""
    headers = {k: v for k, v in response.headers.items() if k != "date"}
    if response.status_code != 200:
        return response.status_code, headers, response.content
    answer = response.json()
    bids = answer["seatbid"][0]["bid"]
    kept = [{k: v for k, v in bid.items() if k not in ("id", "adm", "nurl", "lurl", "burl")} for bid in bids]
    headers.pop("content-length")
    return 200, headers, answer["id"], answer["cur"], kept, sorted(answer)


def _requests() -> list[tuple[str, bytes, dict[str, str]]]:
    valid = json.dumps(bid_request()).encode()
    return [
        ("valid", valid, JSON),
        ("invalid", json.dumps(bid_request(imp=[{"id": "1", "banner": {"w": "wide"}}])).encode(), JSON),
        ("gzip", gzip.compress(valid), {**JSON, "content-encoding": "gzip"}),
        ("no bid", json.dumps(bid_request(imp=[{"id": "1", "banner": {"w": 728, "h": 90}}])).encode(), JSON),
        ("below the minimum tmax", json.dumps(bid_request(tmax=1)).encode(), JSON),
    ]


def _both_ways(client: TestClient) -> tuple[list[bool], dict[str, Any], dict[str, Any]]:
    """The answers with the fast path in place, which requests it answered itself, and the route's answers."""
    serve(client, [banner_group()])
    answered = _recording(client)
    fast = {name: client.post(PATH, content=body, headers=headers) for name, body, headers in _requests()}
    app: Any = client.app
    del app.fast_paths[PATH]
    routed = {name: client.post(PATH, content=body, headers=headers) for name, body, headers in _requests()}
    return answered, fast, routed


def test_the_fast_path_and_the_route_answer_alike(client: TestClient, settings: Settings) -> None:
    assert settings.openrtb_min_tmax_ms > 1
    answered, fast, routed = _both_ways(client)
    assert answered == [True, False, True, True, True]  # a 400 is the route's to give
    assert [fast[n].status_code for n in fast] == [200, 400, 200, 204, 204]
    assert "strict-transport-security" not in fast["valid"].headers  # plain http
    for name in fast:
        assert _comparable(fast[name]) == _comparable(routed[name]), name


def test_https_answers_carry_hsts_either_way(settings: Settings) -> None:
    with TestClient(create_app(settings.model_copy(update={"hsts": True})), raise_server_exceptions=False) as client:
        answered, fast, routed = _both_ways(client)
    assert answered == [True, False, True, True, True]
    for name in fast:
        assert "strict-transport-security" in fast[name].headers, name
        assert _comparable(fast[name]) == _comparable(routed[name]), name


def test_a_withdrawal_redis_cannot_take_is_still_a_no_bid(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """An answer ready too late is withdrawn; when the counters cannot give its reservation back (Redis went
    down since it was made), the exchange still gets its 204 and the hold expires on its own."""
    serve(client, [banner_group()])
    engine: Any = client.app.state.serving.engine  # type: ignore[attr-defined]

    def redis_down(reservation_id: str) -> bool:
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(engine.counters, "release_held", redis_down)
    calls = itertools.count()

    class LateClock:
        """The request starts now; by the time its answer is ready an hour has passed."""

        perf_counter = staticmethod(time.perf_counter)

        @staticmethod
        def monotonic() -> float:
            return time.monotonic() + (3600 if next(calls) else 0)

    monkeypatch.setattr(fastpath, "time", LateClock)
    response = client.post(PATH, json=bid_request(tmax=500))
    assert response.status_code == 204, response.text[:300]
    assert next(calls) == 2  # the start, and the look at the clock that withdrew the bid
