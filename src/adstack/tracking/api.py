"""Public tracking endpoints (/t/imp, /t/click, /t/video), protected by signed tokens, and the invalid-traffic
view for platform staff."""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import ORJSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from adstack.core.deps import CurrentPrincipal, Limit, Offset, SessionDep
from adstack.core.errors import Forbidden
from adstack.core.http import error_body
from adstack.core.timeutil import utcnow
from adstack.pipeline import records
from adstack.pipeline.log import LogUnavailable
from adstack.pipeline.service import Pipeline
from adstack.tracking import service
from adstack.tracking.models import InvalidTrafficRead, InvalidTrafficSummary
from adstack.tracking.tokens import MAX_TOKEN_LENGTH, TokenError, new_click_id
from adstack.tracking.urls import VideoEvent

public_router = APIRouter(tags=["tracking"])
router = APIRouter(prefix="/api/v1/tracking", tags=["tracking"])

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = {"Cache-Control": "no-store, max-age=0"}
Token = Annotated[str, Query(min_length=1, max_length=MAX_TOKEN_LENGTH, description="The signed tracking token.")]
PixelFormat = Annotated[str | None, Query(pattern=r"^gif$", description="`gif` answers a 1x1 GIF instead of 204.")]
# Filled in by exchanges, so never refused: what cannot be read is recorded as an unknown price.
AuctionPrice = Annotated[str | None, Query(description=(
    "The exchange's clearing price (OpenRTB `${AUCTION_PRICE}`, CPM in `cur`), recorded as the impression's "
    "media cost; an unsubstituted macro, a negative or unreadable value is kept as unknown."))]
PriceCurrency = Annotated[str | None, Query(description="Currency of `ap` (the bid's); USD when absent.")]


RETRY_AFTER_SECONDS = "5"


def _pipeline(request: Request) -> Pipeline:
    pipeline: Pipeline = request.app.state.pipeline
    return pipeline


def _unavailable(error: LogUnavailable) -> ORJSONResponse:
    """Nothing was stored, so nothing is acknowledged: the client (or exchange) tries again later."""
    return ORJSONResponse(error_body("unavailable", "tracking is temporarily unavailable; retry later"),
                          status_code=503, headers={**NO_STORE, "Retry-After": RETRY_AFTER_SECONDS})


async def _refuse(request: Request, *, kind: str, token: str, error: TokenError) -> Response:
    record = records.invalid(kind=kind, reason=error.reason, message=error.message, token=token,
                             client_ip=request.client.host if request.client else "",
                             user_agent=request.headers.get("user-agent", ""))
    try:
        await _pipeline(request).append(record)
    except LogUnavailable as unavailable:
        return _unavailable(unavailable)
    code = {"expired": "expired_token", "bad_signature": "invalid_signature"}.get(error.reason, "malformed_token")
    return ORJSONResponse(error_body(code, error.message, [{"field": "t", "rule": error.reason,
                                                            "message": error.message}]),
                          status_code=400, headers=NO_STORE)


def _client(request: Request) -> records.Client:
    return records.Client(request.client.host if request.client else "", request.headers.get("user-agent", ""))


def _secret(request: Request) -> bytes:
    secret: bytes = request.app.state.settings.resolved_secret_key
    return secret


@public_router.get("/t/imp", summary="Count an impression", status_code=204,
                   responses={200: {"content": {"image/gif": {}}, "description": "a 1x1 GIF with fmt=gif"},
                              400: {"description": "Forged, altered or expired token (counted as invalid)"},
                              503: {"description": "The event log cannot store it now; retry after Retry-After"}})
async def track_impression(request: Request, t: Token, fmt: PixelFormat = None, ap: AuctionPrice = None,
                           cur: PriceCurrency = None) -> Response:
    """Acknowledged once the impression is durable in the event log; it is counted, billed (CPM) and its
    reservation settled by the pipeline's consumers."""
    try:
        claims = service.verify(t, _secret(request), now=utcnow())
    except TokenError as error:
        return await _refuse(request, kind="imp", token=t, error=error)
    try:
        await _pipeline(request).append(records.impression(claims, t, auction_price=ap, currency=cur,
                                                                    client=_client(request)))
    except LogUnavailable as unavailable:
        return _unavailable(unavailable)
    if fmt == "gif":
        return Response(PIXEL, media_type="image/gif", headers=NO_STORE)
    return Response(status_code=204, headers=NO_STORE)


@public_router.get("/t/click", summary="Count a click and redirect to the landing page or tracking link",
                   status_code=302, responses={302: {"description": "Redirect to the destination"},
                                               204: {"description": "Counted; the ad has no destination"},
                                               400: {"description": "Forged, altered or expired token"},
                                               503: {"description": "The event log cannot store it now"}})
async def track_click(request: Request, t: Token) -> Response:
    secret = _secret(request)
    now = utcnow()
    try:
        claims = service.verify(t, secret, now=now)
    except TokenError as error:
        return await _refuse(request, kind="click", token=t, error=error)
    click_id = new_click_id(claims.impression_id, claims.issued_at, secret)
    try:
        await _pipeline(request).append(records.click(claims, click_id, t, _client(request)))
    except LogUnavailable as unavailable:
        return _unavailable(unavailable)
    destinations: service.DestinationCache = request.app.state.click_destinations
    known, template = destinations.cached(claims)
    if not known:
        template = await run_in_threadpool(destinations.load, claims)
    destination = service.expand_destination(template, claims, click_id=click_id, now=now)
    if destination is None:
        return Response(status_code=204, headers=NO_STORE)
    return RedirectResponse(destination, status_code=302, headers=NO_STORE)


@public_router.get("/t/video", summary="Count video progress", status_code=204,
                   responses={400: {"description": "Forged, altered or expired token"},
                              503: {"description": "The event log cannot store it now"}})
async def track_video(request: Request, t: Token, e: VideoEvent, fmt: PixelFormat = None) -> Response:
    try:
        claims = service.verify(t, _secret(request), now=utcnow())
    except TokenError as error:
        return await _refuse(request, kind="video", token=t, error=error)
    try:
        await _pipeline(request).append(records.video(claims, t, e.value, _client(request)))
    except LogUnavailable as unavailable:
        return _unavailable(unavailable)
    if fmt == "gif":
        return Response(PIXEL, media_type="image/gif", headers=NO_STORE)
    return Response(status_code=204, headers=NO_STORE)


@router.get("/invalid", response_model=InvalidTrafficSummary,
            summary="Refused tracking requests: forged, altered or expired tokens")
def invalid_traffic(principal: CurrentPrincipal, session: SessionDep, limit: Limit = 50,
                    offset: Offset = 0) -> InvalidTrafficSummary:
    if not principal.is_platform:
        raise Forbidden("invalid traffic is visible to platform staff")
    rows, by_reason = service.invalid_traffic(session, account_ids=None, limit=limit, offset=offset)
    return InvalidTrafficSummary(total=sum(by_reason.values()), by_reason=by_reason,
                                 items=[InvalidTrafficRead.model_validate(r) for r in rows])


def _route_first(app: FastAPI) -> None:
    """Move the public endpoints to the front of the route table: the router tries routes in order, and these
    are the busiest paths; their paths overlap no other route, so the order changes nothing else."""
    routes = app.router.routes
    ours = [r for r in routes if getattr(r, "original_router", None) is public_router or r in public_router.routes]
    if ours:
        routes[:] = ours + [r for r in routes if not any(r is o for o in ours)]


def install(app: FastAPI) -> None:
    _route_first(app)
    app.state.click_destinations = service.DestinationCache(app.state.session_factory)
