"""`POST /openrtb2/bid` served as raw ASGI ahead of the framework, like `POST /v1/ads` (`serving/fastpath.py`).

It does what the route (`serving/api.py`) does, in the same order: the body within the same 256 KB cap (gzip
inflated, the cap on the inflated size), decoded by the same msgspec model, bid on by the same `bid`, with
`tmax` counted from the moment the request reaches it (a minimum `tmax` is 204 at once, an answer ready too late
is withdrawn and 204). Anything that would not be a 200 or a 204 (a body that cannot be read, inflated or
decoded, a declared or actual size over the cap, an unknown Content-Encoding, a form body) and anything unusual
(another method, no serving runtime yet) goes to the route, with what was read replayed, so every refusal keeps
the one error shape the route gives.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable
from typing import Any

import anyio
import orjson
from starlette.exceptions import HTTPException as StarletteHTTPException

from adstack.core.http import StrictTransportSecurity
from adstack.core.settings import Settings
from adstack.core.timeutil import utcnow
from adstack.pipeline.metrics import PipelineMetrics
from adstack.serving import openrtb
from adstack.serving.fastpath import replay, replay_rest
from adstack.serving.runtime import ServingRuntime

MAX_BID_REQUEST_BYTES = 256 * 1024  # as the route's
JSON_HEADERS = [(b"content-type", b"application/json")]
_FORM_TYPES = (b"multipart/form-data", b"application/x-www-form-urlencoded")
log = logging.getLogger("adstack.serving.api")  # the route's logger: one place to look for failed bids


def _late_body(message: str) -> Callable[[], Any]:
    """The body did not arrive within the body deadline: the route refuses it as the body limits would."""

    async def receive() -> Any:
        raise StarletteHTTPException(408, message, headers={"Connection": "close"})

    return receive


def bid_route(runtime: Callable[[], ServingRuntime | None], metrics: Callable[[], PipelineMetrics | None],
              settings: Settings) -> Callable[[dict[str, Any], Any, Any], Any]:
    # The same header the middleware would add to an https answer (this answer does not pass through it).
    hsts = StrictTransportSecurity(None, always=settings.hsts, max_age=settings.hsts_max_age,
                                   trusted_proxies=settings.trusted_proxies)
    body_deadline_s = settings.body_deadline_s
    limit = MAX_BID_REQUEST_BYTES

    async def handle(scope: dict[str, Any], receive: Any, send: Any) -> Any:
        started = time.monotonic()
        timer = time.perf_counter()
        serving = runtime()
        if scope.get("method") != "POST" or serving is None:
            return False
        encoding = b"identity"
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                if not value.isdigit() or int(value) > limit:
                    return False  # the route refuses an oversized declaration before reading
            elif name == b"content-encoding":
                encoding = value.strip().lower()
            elif name == b"content-type" and value.lower().startswith(_FORM_TYPES):
                return False  # form bodies have their own caps, in the middleware
        if encoding not in (b"", b"identity", b"gzip"):
            return False
        chunks: list[bytes] = []
        size = 0
        more = True
        with anyio.move_on_after(body_deadline_s):
            while more and size <= limit:
                message = await receive()
                if message["type"] != "http.request":
                    return True  # the client went away: nothing to answer
                chunk = message.get("body", b"")
                size += len(chunk)
                chunks.append(chunk)
                more = bool(message.get("more_body", False))
        raw = b"".join(chunks)
        if size > limit:  # the route refuses it, reading on if more is coming
            return replay_rest(raw, receive) if more else replay(raw)
        if more:
            return _late_body("the request body was not received in time")
        body = raw
        if encoding == b"gzip":
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                body = inflater.decompress(raw, limit + 1)
            except zlib.error:
                return replay(raw)
            if len(body) > limit or inflater.unconsumed_tail or not inflater.eof or inflater.unused_data:
                return replay(raw)
        try:
            parsed = openrtb.parse_bid_request(body)
        except openrtb.BadBidRequest:
            return replay(raw)  # the route answers with its 400
        extra = [(b"strict-transport-security", hsts.value)] if hsts._https(scope) else []
        content = await answer(serving, parsed, started)
        if content is None:
            await send({"type": "http.response.start", "status": 204, "headers": extra})
            await send({"type": "http.response.body", "body": b""})
        else:
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", str(len(content)).encode()), *JSON_HEADERS, *extra]})
            await send({"type": "http.response.body", "body": content})
        observed = metrics()
        if observed is not None:
            observed.observe_latency("bid", time.perf_counter() - timer)
        return True

    return handle


async def answer(runtime: ServingRuntime, parsed: openrtb.BidRequest, started: float) -> bytes | None:
    """The encoded bid response, or None for a 204; the route answers with it too."""
    tmax = parsed.tmax or 0
    if tmax and tmax < runtime.settings.openrtb_min_tmax_ms:
        return None  # no time to bid well: say so at once
    due = started + tmax / 1000 if tmax else None
    decisions: list[Any] = []
    try:
        made = await openrtb.bid(runtime, parsed, now=utcnow(), started=started,
                                 deadline=due - openrtb.DEADLINE_MARGIN_MS / 1000 if due else None)
        if made is None:
            return None
        answer, decisions = made
        content = orjson.dumps(answer)
    except Exception:  # never a 500 to an exchange: no bid, and whatever was reserved goes back
        log.exception("OpenRTB bid request %s failed", parsed.id)
        await openrtb.withdraw(runtime, decisions)
        return None
    if due is not None and time.monotonic() > due:
        await openrtb.withdraw(runtime, decisions)
        return None
    return content
