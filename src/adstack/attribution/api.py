"""The postback receiver (public, signed per app), conversions, stored and rejected postbacks, FX rates."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, FastAPI, Path, Query, Request, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from adstack.apps.partners import POSTBACK_PATH
from adstack.attribution import fastpath, service
from adstack.attribution.models import (
    ConversionRead,
    FxRateIn,
    FxRateRead,
    PostbackAccepted,
    PostbackRead,
    PostbackStatus,
    ProcessResult,
    RejectedPostback,
    RejectedPostbackRead,
    VerdictAgreement,
)
from adstack.attribution.postback_fields import (
    ParsedPostback,
    present,
)
from adstack.attribution.receiver import (
    ACCEPTED,
    RETRY_AFTER_SECONDS,
    UNAVAILABLE,
    Refused,
    acknowledge,
    check,
    merge_fields,
)
from adstack.attribution.rules import AttributionType
from adstack.attribution.worker import PostbackWorker
from adstack.core.deps import (
    AccountManagerPrincipal,
    CurrentPrincipal,
    IdPath,
    Limit,
    Offset,
    OptionalId,
    SessionDep,
)
from adstack.core.errors import Forbidden
from adstack.core.http import error_body, json_response
from adstack.core.timeutil import search_bound, utcnow
from adstack.core.vocabulary import ConversionEvent, Partner

MAX_BODY_BYTES = 64 * 1024

router = APIRouter(prefix="/api/v1", tags=["attribution"])
public_router = APIRouter(tags=["postbacks"])


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdecimal() and int(declared) > MAX_BODY_BYTES:
        raise Refused(413, "payload_too_large", f"a postback body may have at most {MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise Refused(413, "payload_too_large", f"a postback body may have at most {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


_RECEIVER_DOC = dict(
    response_model=PostbackAccepted,
    summary="Receive an install or in-app event postback from a measurement partner",
    description="Fields in the partner's own names, in the query, a URL-encoded form or a JSON body. "
                "Answers 200 once the postback is durable in the event log; a partner's retry answers 200 as "
                "well and is stored and attributed once.",
    responses={400: {"description": "No partner, or no app can be identified (kept for inspection)"},
               403: {"description": "The app signature does not match"},
               413: {"description": "A body past the postback's byte limit"},
               415: {"description": "A body that is neither a URL-encoded form nor a JSON object"},
               422: {"description": "A field the partner's format cannot hold (named in the error)"},
               503: {"description": "The event log cannot store it now; retry after Retry-After"}},
)


@public_router.get(POSTBACK_PATH, operation_id="receive_postback_get", **_RECEIVER_DOC)  # type: ignore[arg-type]
@public_router.post(POSTBACK_PATH, operation_id="receive_postback_post", **_RECEIVER_DOC)  # type: ignore[arg-type]
async def receive_postback(request: Request) -> Response:
    received_at = utcnow()
    query = list(request.query_params.multi_items())
    content_type = request.headers.get("content-type", "").lower()
    body = b""
    partner_text = request.query_params.get("partner", "")
    try:
        body = await _read_body(request)
        fields = merge_fields(query, body, content_type)
        partner_text = present(fields.get("partner")) or ""
        partner, parsed, app_id = check(fields, request.app.state.settings.resolved_secret_key)
        signed = app_id is not None
        if app_id is None:
            # The guide's URL (partner, ext, gaid): the app comes from our signed click id, or the package and the
            # device's touches. `app` + `sig` stays the stronger form.
            found = await run_in_threadpool(_identify_app, request, partner, parsed)
            if found is None:
                raise Refused(400, "missing_app", "no app could be identified: add `app` and `sig` from the app's "
                               "integration page, or send our click id, or the package and GAID", "app",
                               "required")
            app_id = found
    except Refused as refusal:
        await run_in_threadpool(_keep_rejected, request, partner_text, refusal, body, content_type)
        return json_response(error_body(refusal.code, refusal.message, refusal.fields()), refusal.status)

    if not await acknowledge(request.app.state.pipeline, app_id=app_id, partner=partner, parsed=parsed,
                             method=request.method, fields=fields, received_at=received_at, signed=signed):
        return json_response(UNAVAILABLE, 503, headers={"Retry-After": RETRY_AFTER_SECONDS})
    return json_response(ACCEPTED)


def _identify_app(request: Request, partner: Partner, parsed: ParsedPostback) -> int | None:
    def look_up() -> int | None:
        with request.app.state.session_factory() as session:
            return service.identify_app(session, secret=request.app.state.settings.resolved_secret_key,
                                        partner=partner, parsed=parsed)

    found = look_up()
    pipeline = getattr(request.app.state, "pipeline", None)
    if found is None and pipeline is not None:
        # The click may still wait in the event log: apply pending touches once and look again.
        pipeline.catch_up("touchpoints")
        found = look_up()
    return found


# Seconds between writes of a minute's overflow counts: a flood costs one statement a second, not one a request.
REJECTED_FLUSH_SECONDS = 1.0


class _RejectedBudget:
    """Refused postbacks kept row by row up to a number per minute of receipt (per process); beyond it they are
    counted per minute and reason, and each count is kept as one row whose message gives it, rewritten at most
    every REJECTED_FLUSH_SECONDS. Counts not yet written when the process stops are lost; rows never are."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.flushing = threading.Lock()
        self.minute: datetime | None = None
        self.kept = 0
        self.counts: dict[tuple[datetime, str], int] = {}
        self.dirty: set[tuple[datetime, str]] = set()
        self.row_ids: dict[tuple[datetime, str], int] = {}
        self.flushed_at = 0.0

    def admit(self, now: datetime, reason: str, per_minute: int) -> tuple[bool, bool]:
        """(keep this one as a row, time to write the counts)."""
        minute = now.replace(second=0, microsecond=0)
        with self.lock:
            rolled = minute != self.minute
            if rolled:
                self.minute, self.kept = minute, 0
            if self.kept < per_minute:
                self.kept += 1
                return True, rolled and bool(self.dirty)
            key = (minute, reason[:40])
            self.counts[key] = self.counts.get(key, 0) + 1
            self.dirty.add(key)
            due = rolled or time.monotonic() - self.flushed_at >= REJECTED_FLUSH_SECONDS
            return False, due

    def flush(self, session: Session) -> None:
        if not self.flushing.acquire(blocking=False):
            return  # another thread is writing them
        try:
            with self.lock:
                todo = {key: self.counts[key] for key in self.dirty}
                self.dirty.clear()
                self.flushed_at = time.monotonic()
            for (minute, reason), count in todo.items():
                message = (f"{count} more refused postbacks ({reason}) received in the minute from "
                           f"{minute:%Y-%m-%d %H:%M} UTC: counted, not kept")[:500]
                row_id = self.row_ids.get((minute, reason))
                row = session.get(RejectedPostback, row_id) if row_id is not None else None
                if row is None:
                    row = service.reject_postback(session, partner="", reason=reason, message=message, method="",
                                                  query="", content_type="", body=b"", client_ip="")
                    session.flush()
                    self.row_ids[(minute, reason)] = row.id
                else:
                    row.message = message
            session.commit()
            with self.lock:
                current = self.minute
                for key in [k for k in self.counts if current is not None and k[0] < current - timedelta(minutes=1)]:
                    if key not in self.dirty:
                        self.counts.pop(key, None)
                        self.row_ids.pop(key, None)
        finally:
            self.flushing.release()


_rejected_budget = _RejectedBudget()


def _keep_rejected(request: Request, partner: str, refusal: Refused, body: bytes, content_type: str) -> None:
    per_minute = request.app.state.settings.rejected_postback_rows_per_minute
    keep, flush = _rejected_budget.admit(utcnow(), refusal.code, per_minute)
    if not keep and not flush:
        return
    with request.app.state.session_factory() as session:
        if keep:
            service.reject_postback(session, partner=partner, reason=refusal.code, message=refusal.message,
                                    method=request.method, query=request.url.query, content_type=content_type,
                                    body=body, client_ip=request.client.host if request.client else "")
            session.commit()
        if flush:
            _rejected_budget.flush(session)


# ---------- conversions and postbacks ----------


@router.get("/conversions", response_model=list[ConversionRead], summary="Installs and in-app events, "
            "attributed and organic, newest first")
def list_conversions(principal: CurrentPrincipal, session: SessionDep, app_id: OptionalId = None,
                     attribution_type: AttributionType | None = None,
                     event: ConversionEvent | None = None, limit: Limit = 50,
                     offset: Offset = 0) -> list[ConversionRead]:
    rows = service.list_conversions(session, principal, app_id=app_id,
                                    attribution_type=attribution_type.value if attribution_type else None,
                                    conversion_event=event.value if event else None, limit=limit, offset=offset)
    return [ConversionRead.model_validate(r) for r in rows]


@router.get("/apps/{app_id}/postbacks", response_model=list[PostbackRead], tags=["apps"],
            summary="Postbacks received for an app, as stored, with their processing status")
def list_postbacks(app_id: IdPath, principal: CurrentPrincipal, session: SessionDep,
                   status: PostbackStatus | None = None, limit: Limit = 50,
                   offset: Offset = 0) -> list[PostbackRead]:
    rows = service.list_postbacks(session, principal, app_id=app_id, status=status.value if status else None,
                                  limit=limit, offset=offset)
    return [PostbackRead.model_validate(r) for r in rows]


@router.get("/postbacks/rejected", response_model=list[RejectedPostbackRead],
            summary="Refused postback requests, kept as received (platform staff)")
def list_rejected(principal: CurrentPrincipal, session: SessionDep,
                  reason: Annotated[str | None, Query(max_length=40, pattern=r"^[a-z_]+$")] = None,
                  limit: Limit = 50, offset: Offset = 0) -> list[RejectedPostbackRead]:
    if not principal.is_platform:
        raise Forbidden("rejected postbacks are visible to platform staff")
    rows, _ = service.list_rejected(session, reason=reason, limit=limit, offset=offset)
    return [RejectedPostbackRead.model_validate(r) for r in rows]


@router.post("/postbacks/process", response_model=ProcessResult,
             summary="Attribute stored postbacks now instead of waiting for the background worker "
                     "(platform staff)")
def process_now(principal: CurrentPrincipal, request: Request) -> ProcessResult:
    if not principal.is_platform:
        raise Forbidden("processing postbacks is for platform staff")
    worker: PostbackWorker = request.app.state.postback_worker
    return ProcessResult(processed=worker.drain())


@router.get("/attribution/verdict-agreement", response_model=list[VerdictAgreement],
            summary="Per partner: how often the partner's attribution verdict and adstack's own rules disagree")
def verdict_agreement(principal: CurrentPrincipal, session: SessionDep, app_id: OptionalId = None,
                      since: datetime | None = None, until: datetime | None = None) -> list[VerdictAgreement]:
    rows = service.verdict_agreement(session, principal, app_id=app_id, since=search_bound("since", since),
                                     until=search_bound("until", until))
    return [VerdictAgreement(**row) for row in rows]


# ---------- FX ----------

CurrencyPath = Annotated[str, Path(pattern=r"^[A-Z]{3}$", description="ISO 4217 code.")]


@router.get("/fx-rates", response_model=list[FxRateRead], tags=["fx"], summary="Units of each currency per USD")
def list_fx_rates(principal: CurrentPrincipal, session: SessionDep) -> list[FxRateRead]:
    return [FxRateRead.model_validate(r) for r in service.list_fx_rates(session)]


@router.put("/fx-rates/{currency}", response_model=FxRateRead, tags=["fx"],
            summary="Set a currency's rate (account managers)")
def set_fx_rate(currency: CurrencyPath, body: FxRateIn, principal: AccountManagerPrincipal,
                session: SessionDep) -> FxRateRead:
    row = service.set_fx_rate(session, principal, currency, body.units_per_usd)
    session.commit()
    return FxRateRead.model_validate(row)


# ---------- lifecycle ----------


def _route_first(app: FastAPI) -> None:
    """Move the public endpoints to the front of the route table: the router tries routes in order, and these
    are the busiest paths; their paths overlap no other route, so the order changes nothing else."""
    routes = app.router.routes
    ours = [r for r in routes if getattr(r, "original_router", None) is public_router or r in public_router.routes]
    if ours:
        routes[:] = ours + [r for r in routes if not any(r is o for o in ours)]


def install(app: FastAPI) -> None:
    _route_first(app)
    worker = PostbackWorker(app.state.session_factory, app.state.settings)
    app.state.postback_worker = worker

    def start(app: FastAPI) -> None:
        fast_paths = getattr(app, "fast_paths", None)
        if fast_paths is not None:
            fast_paths.update(fastpath.routes(app.state.settings.resolved_secret_key, lambda: app.state.pipeline))
        # With the event pipeline installed, the worker starts with its consumers (`Pipeline.on_start`).
        if getattr(app.state, "pipeline", None) is None:
            worker.start()  # its first pass attributes what a crash left

    app.state.on_startup.append(start)
    app.state.on_shutdown.append(lambda _app: worker.stop())
