"""`POST /v1/ads` served as raw ASGI ahead of the framework, like the tracking pixels (`tracking/fastpath.py`).

The body is read (within the same cap), decoded by the msgspec mirror of the route's model (`decode_ad_request`,
which takes only what the route's pydantic model takes, with the same values) and served by the same
`service.serve_sdk_request`. Anything that would not be a 200 (invalid JSON or fields, an unknown ad space, a
large or non-JSON body) is handed to the documented route with its body replayed, so every refusal keeps the one
error shape the route gives.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from adstack.core.errors import DomainError
from adstack.core.timeutil import utcnow
from adstack.pipeline.metrics import PipelineMetrics
from adstack.serving import service
from adstack.serving.models import decode_ad_request
from adstack.serving.runtime import ServingRuntime

MAX_BODY_BYTES = 64 * 1024
JSON_HEADERS = [(b"content-type", b"application/json")]


def replay(body: bytes) -> Callable[[], Any]:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _is_json(scope: dict[str, Any]) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return value.split(b";")[0].strip().lower() == b"application/json"
    return False


def ads_route(runtime: Callable[[], ServingRuntime | None], metrics: Callable[[], PipelineMetrics | None]
              ) -> Callable[[dict[str, Any], Any, Any], Any]:
    async def handle(scope: dict[str, Any], receive: Any, send: Any) -> Any:
        serving = runtime()
        if scope.get("method") != "POST" or serving is None or not _is_json(scope):
            return False
        started = time.perf_counter()
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return True  # the client went away: nothing to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
            if size > MAX_BODY_BYTES:
                break
        body = b"".join(chunks)
        if size > MAX_BODY_BYTES:  # past the cap, whole or still arriving: the route's body limit answers 413
            return replay_rest(body, receive) if more else replay(body)
        data = decode_ad_request(body)
        if data is None:
            return replay(body)  # the route validates it and answers, or refuses it with its own 4xx
        try:
            result = await service.serve_sdk_request(serving, data, now=utcnow())
        except (DomainError, ValueError):
            return replay(body)
        payload = orjson.dumps(result)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*JSON_HEADERS, (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})
        observed = metrics()
        if observed is not None:
            observed.observe_latency("ads", time.perf_counter() - started)
        return True

    return handle


def replay_rest(first: bytes, receive: Any) -> Callable[[], Any]:
    """A body past the cap and still arriving: give the route what was read, then the rest as it comes, so its
    own limit applies."""
    sent = False

    async def receive_rest() -> Any:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": first, "more_body": True}
        return await receive()

    return receive_rest
