"""The documented postback answered as raw ASGI, ahead of the framework.

A partner's postback is the attribution side's busiest request, and the documented form (a GET whose query names
the partner, and the `app` and `sig` of the app's postback URL) needs nothing but its query string. Here such a
request is read and checked by the same `receiver` functions the route uses and appended to the event log. Any
other request (a body, no `app`, anything the checks refuse) declines, and the FastAPI route answers it with its
message and keeps a refusal for inspection.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from adstack.apps.partners import POSTBACK_PATH
from adstack.attribution.receiver import (
    ACCEPTED,
    RETRY_AFTER_SECONDS,
    UNAVAILABLE,
    Refused,
    acknowledge,
    check,
    merge_fields,
    parse_query,
)
from adstack.core.timeutil import utcnow
from adstack.pipeline.service import Pipeline

Scope = dict[str, Any]
FastHandler = Callable[[Scope, Any, Any], Awaitable[bool]]
MAX_QUERY_BYTES = 16 * 1024
_JSON = (b"content-type", b"application/json")
_ACCEPTED = orjson.dumps(ACCEPTED)
_UNAVAILABLE = orjson.dumps(UNAVAILABLE)


def _has_body(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if (name == b"content-length" and value.strip() not in (b"", b"0")) or name == b"transfer-encoding":
            return True
    return False


def routes(secret: bytes, pipeline: Callable[[], Pipeline]) -> dict[str, FastHandler]:
    async def postback(scope: Scope, receive: Any, send: Any) -> bool:
        raw: bytes = scope.get("query_string", b"")
        if scope.get("method") != "GET" or len(raw) > MAX_QUERY_BYTES or _has_body(scope):
            return False
        received_at = utcnow()
        started = time.perf_counter()
        try:
            fields = merge_fields(parse_query(raw.decode("latin-1")), b"", "")
            partner, parsed, app_id = check(fields, secret)
        except Refused:
            return False
        if app_id is None:
            return False
        log = pipeline()
        stored = await acknowledge(log, app_id=app_id, partner=partner, parsed=parsed, method="GET", fields=fields,
                                   received_at=received_at)
        body = _ACCEPTED if stored else _UNAVAILABLE
        headers = [_JSON, (b"content-length", str(len(body)).encode())]
        if not stored:
            headers.append((b"retry-after", RETRY_AFTER_SECONDS.encode()))
        await send({"type": "http.response.start", "status": 200 if stored else 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        log.metrics.observe_latency("postback", time.perf_counter() - started)
        return True

    return {POSTBACK_PATH: postback}
