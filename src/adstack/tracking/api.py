"""Public tracking endpoints (/t/imp, /t/click, /t/video), protected by signed tokens, and the invalid-traffic
view for platform staff."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import Response

from adstack.core.deps import CurrentPrincipal, Limit, Offset, SessionDep
from adstack.core.errors import Forbidden
from adstack.core.http import answers_any_text
from adstack.pipeline import records
from adstack.tracking import fastpath, service
from adstack.tracking.handlers import Answer, Tracker
from adstack.tracking.models import InvalidTrafficRead, InvalidTrafficSummary
from adstack.tracking.tokens import MAX_TOKEN_LENGTH
from adstack.tracking.urls import VideoEvent

public_router = APIRouter(tags=["tracking"])
router = APIRouter(prefix="/api/v1/tracking", tags=["tracking"])

Token = Annotated[str, Query(min_length=1, max_length=MAX_TOKEN_LENGTH, description="The signed tracking token.")]
PixelFormat = Annotated[str | None, Query(pattern=r"^gif$", description="`gif` answers a 1x1 GIF instead of 204.")]
# Filled in by exchanges, so never refused: what cannot be read is recorded as an unknown price.
AuctionPrice = Annotated[str | None, Query(description=(
    "The exchange's clearing price (OpenRTB `${AUCTION_PRICE}`, CPM in `cur`), recorded as the impression's "
    "media cost; an unsubstituted macro, a negative or unreadable value is kept as unknown."))]
PriceCurrency = Annotated[str | None, Query(description="Currency of `ap` (the bid's); USD when absent.")]


def tracker(request: Request) -> Tracker:
    found: Tracker = request.app.state.tracker
    return found


def client_of(request: Request) -> records.Client:
    return records.Client(request.client.host if request.client else "", request.headers.get("user-agent", ""))


def to_response(answer: Answer) -> Response:
    return Response(answer.body or None, status_code=answer.status, headers=dict(answer.headers()))


# The routes below document the endpoints and serve what the fast path (`fastpath.py`) passes on: requests
# whose parameters it does not recognise get the framework's validation and its 422.


@public_router.get("/t/imp", summary="Count an impression", status_code=204,
                   responses={200: {"content": {"image/gif": {}}, "description": "a 1x1 GIF with fmt=gif"},
                              400: {"description": "Forged, altered or expired token (counted as invalid)"},
                              503: {"description": "The event log cannot store it now; retry after Retry-After"}})
@answers_any_text
async def track_impression(request: Request, t: Token, fmt: PixelFormat = None, ap: AuctionPrice = None,
                           cur: PriceCurrency = None) -> Response:
    """Acknowledged once the impression is durable in the event log; it is counted, billed (CPM) and its
    reservation settled by the pipeline's consumers."""
    return to_response(await tracker(request).impression(t, gif=fmt == "gif", auction_price=ap, currency=cur,
                                                          client=client_of(request)))


@public_router.get("/t/click", summary="Count a click and send the user to the creative's click URL",
                   status_code=302, responses={302: {"description": (
                       "Redirect to the creative's click URL, or to the app's measurement-partner link that "
                       "redirects there (docs/partners.md)")},
                                               200: {"content": {"text/html": {}}, "description": (
                                                   "The ad has a deeplink: a page that tries it and falls back "
                                                   "to the click URL")},
                                               204: {"description": "Counted; the ad has no destination"},
                                               400: {"description": "Forged, altered or expired token"},
                                               503: {"description": "The event log cannot store it now"}})
@answers_any_text
async def track_click(request: Request, t: Token) -> Response:
    return to_response(await tracker(request).click(t, client=client_of(request)))


@public_router.get("/t/video", summary="Count video progress", status_code=204,
                   responses={400: {"description": "Forged, altered or expired token"},
                              503: {"description": "The event log cannot store it now"}})
@answers_any_text
async def track_video(request: Request, t: Token, e: VideoEvent, fmt: PixelFormat = None) -> Response:
    return to_response(await tracker(request).video(t, e.value, gif=fmt == "gif", client=client_of(request)))


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

    def start(app: FastAPI) -> None:
        app.state.tracker = Tracker(app.state.pipeline, app.state.settings.resolved_secret_key,
                                    app.state.click_destinations)
        fast_paths = getattr(app, "fast_paths", None)
        if fast_paths is not None:
            fast_paths.update(fastpath.routes(app.state.tracker, lambda: app.state.pipeline.metrics))

    app.state.on_startup.insert(0, start)
