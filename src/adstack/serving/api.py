"""The ad endpoints: the SDK's `POST /v1/ads` and the OpenRTB 2.6 bidder `POST /openrtb2/bid`.

Both are public (devices and exchanges call them); what they hand out is protected by the signed tracking tokens.
"""

from __future__ import annotations

import logging
import time
import zlib
from typing import Annotated

import orjson
from fastapi import APIRouter, FastAPI, Query, Request, Response

from adstack.core.errors import PayloadTooLarge
from adstack.core.http import answers_any_text, error_body, json_response
from adstack.core.timeutil import utcnow
from adstack.events.service import add_listener
from adstack.pipeline import records
from adstack.pipeline.log import LogUnavailable
from adstack.serving import fastpath, openrtb, service
from adstack.serving.models import AdRequestIn, AdResponseOut
from adstack.serving.openrtb import fastpath as openrtb_fastpath
from adstack.serving.openrtb.bidder import verify_loss_signature
from adstack.serving.runtime import ServingRuntime, observe_events

MAX_BID_REQUEST_BYTES = 256 * 1024
log = logging.getLogger(__name__)

public_router = APIRouter(tags=["serving"])

_BID_REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {
            "type": "object", "description": "An OpenRTB 2.6 BidRequest.",
            "required": ["id", "imp"],
            "properties": {"id": {"type": "string"}, "imp": {"type": "array", "items": {"type": "object"}}},
        }}},
    },
    "responses": {"204": {"description": "No bid."}, "400": {"description": "Not a bid request."},
                  "413": {"description": "A body past the bid request's byte limit, before or after inflating."}},
}


def _json(body: object) -> Response:
    return Response(content=orjson.dumps(body), media_type="application/json")


def runtime_of(request: Request) -> ServingRuntime:
    runtime: ServingRuntime = request.app.state.serving
    return runtime


@public_router.post("/v1/ads", response_model=AdResponseOut, summary="SDK ad request",
                    responses={404: {"description": "No active ad space has this id."},
                               413: {"description": "A body past 64 KB."}})
async def request_ads(body: AdRequestIn, request: Request) -> Response:
    """Fill an ad space: ads with assembled assets, signed tracking URLs and expanded third-party trackers."""
    return _json(await service.serve_sdk_request(runtime_of(request), body, now=utcnow()))


@public_router.post("/openrtb2/bid", summary="OpenRTB 2.6 bid request", openapi_extra=_BID_REQUEST_BODY)
async def openrtb_bid(request: Request) -> Response:
    """Bid on an exchange's request (see serving/openrtb). `tmax` counts from here: reading, inflating, decoding,
    deciding and encoding; an answer that would arrive late is withdrawn and 204."""
    started = time.monotonic()
    body = await _bid_request_body(request)
    parsed = openrtb.parse_bid_request(body)
    content = await openrtb_fastpath.answer(runtime_of(request), parsed, started)
    if content is None:
        return Response(status_code=204)
    return Response(content=content, media_type="application/json")


async def _bid_request_body(request: Request) -> bytes:
    """The body, inflated when `Content-Encoding: gzip`; the size limit applies to the inflated body too."""
    limit = MAX_BID_REQUEST_BYTES
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdecimal() and int(declared) > limit:
        raise PayloadTooLarge(f"a bid request may have at most {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"a bid request may have at most {limit} bytes")
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return bytes(body)
    if encoding != "gzip":
        raise openrtb.BadBidRequest(f"Content-Encoding: {encoding[:20]!r} is not accepted; gzip or identity",
                                    code="unsupported_encoding")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        inflated = inflater.decompress(bytes(body), limit + 1)
    except zlib.error as exc:
        raise openrtb.BadBidRequest(f"the gzip body cannot be inflated: {exc}", code="bad_gzip") from None
    if len(inflated) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"a bid request may have at most {limit} bytes once inflated")
    if not inflater.eof:
        raise openrtb.BadBidRequest("the gzip body is truncated", code="bad_gzip")
    if inflater.unused_data:
        raise openrtb.BadBidRequest("the gzip body has data after its end", code="bad_gzip")
    return inflated


NoticeId = Annotated[str, Query(max_length=64, description="The bid id (our impression id).")]
NoticeText = Annotated[str | None, Query(max_length=64)]
# Filled in by the exchange, so never refused: as on the impression URL, what cannot be read is unknown.
NoticePrice = Annotated[str | None, Query(description=(
    "The clearing price (`${AUCTION_PRICE}`, CPM in the bid's currency); an unsubstituted macro, a negative or "
    "unreadable value is taken as unknown."))]


@public_router.get("/openrtb2/win", status_code=204, summary="OpenRTB win notice (nurl)")
@answers_any_text
async def win_notice(request: Request, i: NoticeId, p: NoticePrice = None) -> Response:
    """Acknowledged. What the exchange charged is recorded with the impression (`burl`), which is when it is
    owed, so `p` is accepted here and not stored twice; the bid's reservation waits for that billing notice."""
    return Response(status_code=204)


@public_router.get("/openrtb2/loss", status_code=204, summary="OpenRTB loss notice (lurl)",
                   responses={503: {"description": "The event log cannot store it now; retry after Retry-After"}})
@answers_any_text
async def loss_notice(request: Request, i: NoticeId, r: NoticeText = None, p: NoticePrice = None,
                      s: Annotated[str | None, Query(max_length=32, description="Our signature of the bid id.")] = None,
                      ) -> Response:
    """A lost bid gives its budget reservation back, whichever process made the bid: the notice is kept in the
    event log, and billing gives back the reservation booked under the bid id in the counters every serving process
    shares, in the log's order, so a notice after the bid's impression changes nothing. A billing notice the
    exchange fires for the bid afterwards is not billed (`lost_auction`). Only a notice signed as our `lurl`
    carries it (`s`) does either: an impression id is no secret (an SDK's publisher sees it), and a reservation
    released by anyone would let an ad group serve past its budget. Anything else is answered 204 and changes
    nothing, as an exchange expects. Loss reason 0 is "Bid Won" (OpenRTB 2.6, list 5.25): no loss."""
    if r is not None and r.strip() == "0":
        return Response(status_code=204)  # won: its reservation waits for the billing notice
    if s is None or not verify_loss_signature(request.app.state.settings.resolved_secret_key, i, s):
        return Response(status_code=204)
    try:
        await request.app.state.pipeline.append(records.loss(i, reason=r))
    except LogUnavailable:
        return json_response(error_body("unavailable", "the loss notice could not be stored; retry"), 503,
                             headers={"Retry-After": "5"})
    return Response(status_code=204)


def _serve_first(app: FastAPI) -> None:
    """Move the ad endpoints to the front of the route table: the router tries routes in order, and an ad request
    should not be compared against every path of the management API first (their paths overlap no other route,
    so the order changes nothing else)."""
    routes = app.router.routes
    ours = [r for r in routes if getattr(r, "original_router", None) is public_router or r in public_router.routes]
    if ours:
        routes[:] = ours + [r for r in routes if not any(r is o for o in ours)]


def install(app: FastAPI) -> None:
    _serve_first(app)
    # Predictions and dynamic-creative statistics learn from every durable impression, click and conversion.
    add_listener(observe_events)

    def start(app: FastAPI) -> None:
        runtime = ServingRuntime(app.state.settings, app.state.session_factory)
        app.state.serving = runtime
        runtime.start()

    def stop(app: FastAPI) -> None:
        runtime: ServingRuntime | None = getattr(app.state, "serving", None)
        if runtime is not None:
            runtime.stop()

    app.state.on_startup.append(start)
    app.state.on_shutdown.append(stop)
    fast_paths = getattr(app, "fast_paths", None)
    if fast_paths is not None:
        fast_paths["/v1/ads"] = fastpath.ads_route(
            lambda: getattr(app.state, "serving", None),
            lambda: app.state.pipeline.metrics if hasattr(app.state, "pipeline") else None)
        fast_paths["/openrtb2/bid"] = openrtb_fastpath.bid_route(
            lambda: getattr(app.state, "serving", None),
            lambda: app.state.pipeline.metrics if hasattr(app.state, "pipeline") else None, app.state.settings)
