"""Public tracking endpoints (/t/imp, /t/click, /t/video), protected by signed tokens, and the invalid-traffic
view for platform staff."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import ORJSONResponse, RedirectResponse, Response

from adstack.core.deps import CurrentPrincipal, Limit, Offset, SessionDep, SettingsDep
from adstack.core.errors import Forbidden
from adstack.core.http import error_body
from adstack.core.timeutil import utcnow
from adstack.events.models import Event
from adstack.events.service import get_event_store
from adstack.tracking import service
from adstack.tracking.auction_price import parse_auction_price, parse_price_currency
from adstack.tracking.models import InvalidTrafficRead, InvalidTrafficSummary
from adstack.tracking.tokens import MAX_TOKEN_LENGTH, TokenError, TrackingClaims
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


def _refuse(request: Request, session: SessionDep, settings: SettingsDep, *, kind: str, token: str,
            error: TokenError) -> ORJSONResponse:
    now = utcnow()
    events = service.record_invalid(session, kind=kind, error=error, token=token,
                                    client_ip=request.client.host if request.client else "",
                                    user_agent=request.headers.get("user-agent", ""),
                                    secret=settings.resolved_secret_key, now=now)
    _append(settings, events)
    session.commit()
    code = {"expired": "expired_token", "bad_signature": "invalid_signature"}.get(error.reason, "malformed_token")
    return ORJSONResponse(error_body(code, error.message, [{"field": "t", "rule": error.reason,
                                                            "message": error.message}]),
                          status_code=400, headers=NO_STORE)


def _append(settings: SettingsDep, events: list[Event]) -> None:
    # Before the commit: a failure after it is retried by the client with the same ids, counted once.
    if events:
        get_event_store(settings).append(events)


def _claims(token: str, settings: SettingsDep) -> TrackingClaims:
    return service.verify(token, settings.resolved_secret_key, now=utcnow())


def _usd_per_unit(request: Request, session: SessionDep) -> Mapping[str, Decimal]:
    """The FX table the bidder priced the bid with: the serving snapshot's, or read afresh without one."""
    runtime = getattr(request.app.state, "serving", None)
    if runtime is not None:
        rates: Mapping[str, Decimal] = runtime.state.fx.usd_per_unit
        return rates
    from adstack.serving.loader import load_fx

    return load_fx(session).usd_per_unit


@public_router.get("/t/imp", summary="Count an impression", status_code=204,
                   responses={200: {"content": {"image/gif": {}}, "description": "a 1x1 GIF with fmt=gif"},
                              400: {"description": "Forged, altered or expired token (counted as invalid)"}})
def track_impression(request: Request, session: SessionDep, settings: SettingsDep, t: Token,
                     fmt: PixelFormat = None, ap: AuctionPrice = None, cur: PriceCurrency = None) -> Response:
    try:
        claims = _claims(t, settings)
    except TokenError as error:
        return _refuse(request, session, settings, kind="imp", token=t, error=error)
    price = parse_auction_price(ap)
    media_cost = None if price is None else service.exchange_media_cost(
        session, claims, auction_price=price, price_currency=parse_price_currency(cur),
        usd_per_unit=_usd_per_unit(request, session))
    outcome = service.track_impression(session, claims, now=utcnow(), media_cost_micros=media_cost)
    _append(settings, outcome.events)
    session.commit()
    if fmt == "gif":
        return Response(PIXEL, media_type="image/gif", headers=NO_STORE)
    return Response(status_code=204, headers=NO_STORE)


@public_router.get("/t/click", summary="Count a click and redirect to the landing page or tracking link",
                   status_code=302, responses={302: {"description": "Redirect to the destination"},
                                               204: {"description": "Counted; the ad has no destination"},
                                               400: {"description": "Forged, altered or expired token"}})
def track_click(request: Request, session: SessionDep, settings: SettingsDep, t: Token) -> Response:
    try:
        claims = _claims(t, settings)
    except TokenError as error:
        return _refuse(request, session, settings, kind="click", token=t, error=error)
    outcome = service.track_click(session, claims, secret=settings.resolved_secret_key, now=utcnow())
    _append(settings, outcome.events)
    session.commit()
    if outcome.destination is None:
        return Response(status_code=204, headers=NO_STORE)
    return RedirectResponse(outcome.destination, status_code=302, headers=NO_STORE)


@public_router.get("/t/video", summary="Count video progress", status_code=204,
                   responses={400: {"description": "Forged, altered or expired token"}})
def track_video(request: Request, session: SessionDep, settings: SettingsDep, t: Token, e: VideoEvent,
                fmt: PixelFormat = None) -> Response:
    try:
        claims = _claims(t, settings)
    except TokenError as error:
        return _refuse(request, session, settings, kind="video", token=t, error=error)
    outcome = service.track_video(session, claims, e, now=utcnow())
    _append(settings, outcome.events)
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
