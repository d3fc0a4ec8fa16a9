"""Tracking requests served as raw ASGI, ahead of the framework.

`/t/imp`, `/t/click` and `/t/video` are the busiest requests an ad server answers, and each needs only its query
string: a profile of the FastAPI route showed most of the time in middleware, routing and parameter validation
around a handler that checks an HMAC and appends one record. Here a well-formed request is answered directly with
the same `handlers.Tracker` the routes use; anything this path does not recognise (a missing or repeated `t`, an
unknown `fmt` or `e`, another method) declines, and the FastAPI route answers it with its usual validation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from adstack.pipeline import records
from adstack.pipeline.metrics import PipelineMetrics
from adstack.tracking.handlers import UNAVAILABLE, Answer, Tracker
from adstack.tracking.tokens import MAX_TOKEN_LENGTH
from adstack.tracking.urls import VideoEvent

log = logging.getLogger("adstack.tracking")

Scope = dict[str, Any]
FastHandler = Callable[[Scope, Any, Any], Awaitable[bool]]
VIDEO_EVENTS = frozenset(e.value for e in VideoEvent)
MAX_QUERY_BYTES = 4096


def _query(scope: Scope) -> dict[str, str] | None:
    """The query parameters, each at most once; None when anything is unusual (the route then decides)."""
    raw: bytes = scope.get("query_string", b"")
    if len(raw) > MAX_QUERY_BYTES:
        return None
    try:
        pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True, strict_parsing=False, encoding="utf-8",
                          errors="strict")
    except (UnicodeDecodeError, ValueError):
        return None
    out: dict[str, str] = {}
    for key, value in pairs:
        if key in out:
            return None
        out[key] = value
    token = out.get("t", "")
    if not 1 <= len(token) <= MAX_TOKEN_LENGTH or out.get("fmt", "gif") != "gif":
        return None
    return out


def _client(scope: Scope) -> records.Client:
    agent = ""
    for name, value in scope.get("headers", ()):
        if name == b"user-agent":
            agent = value.decode("latin-1")
            break
    client = scope.get("client")
    return records.Client(client[0] if client else "", agent)


async def _send(send: Any, answer: Answer) -> None:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers()]
    headers.append((b"content-length", str(len(answer.body)).encode()))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})


def routes(tracker: Tracker, metrics: Callable[[], PipelineMetrics]) -> dict[str, FastHandler]:
    async def serve(endpoint: str, scope: Scope, send: Any,
                    answer: Callable[[dict[str, str], records.Client], Awaitable[Answer] | None]) -> bool:
        if scope.get("method") != "GET":
            return False
        query = _query(scope)
        if query is None:
            return False
        pending = answer(query, _client(scope))
        if pending is None:
            return False
        started = time.perf_counter()
        try:
            result = await pending
        except Exception:  # never a 500 for a pixel: the sender retries, and a retry counts once
            log.exception("tracking request failed")
            result = UNAVAILABLE
        await _send(send, result)
        metrics().observe_latency(endpoint, time.perf_counter() - started)
        return True

    async def impression(scope: Scope, receive: Any, send: Any) -> bool:
        return await serve("impression", scope, send, lambda q, c: tracker.impression(
            q["t"], gif="fmt" in q, auction_price=q.get("ap"), currency=q.get("cur"), client=c))

    async def click(scope: Scope, receive: Any, send: Any) -> bool:
        return await serve("click", scope, send, lambda q, c: tracker.click(q["t"], client=c))

    async def video(scope: Scope, receive: Any, send: Any) -> bool:
        return await serve("video", scope, send, lambda q, c: tracker.video(q["t"], q["e"], gif="fmt" in q, client=c)
                           if q.get("e") in VIDEO_EVENTS else None)

    return {"/t/imp": impression, "/t/click": click, "/t/video": video}
