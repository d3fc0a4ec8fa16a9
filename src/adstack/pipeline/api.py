"""`GET /metrics` (Prometheus text) and the pipeline's status for platform staff; installs the pipeline."""

from __future__ import annotations

import hmac
import ipaddress
import logging
import sys
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import GaugeMetricFamily

from adstack.core.deps import CurrentPrincipal, SessionDep
from adstack.core.errors import Forbidden, Unauthenticated, Unavailable
from adstack.core.http import error_body, json_response
from adstack.pipeline.log import LogUnavailable
from adstack.pipeline.metrics import LatencyMiddleware, PipelineMetrics
from adstack.pipeline.models import PipelineStatus
from adstack.pipeline.service import Pipeline, pending_postbacks
from adstack.serving.counters import Counters

log = logging.getLogger("adstack.pipeline")
public_router = APIRouter(tags=["pipeline"])
router = APIRouter(prefix="/api/v1/pipeline", tags=["pipeline"])


def pipeline_of(request: Request) -> Pipeline:
    pipeline: Pipeline = request.app.state.pipeline
    return pipeline


def _loopback(request: Request) -> bool:
    try:
        return request.client is not None and ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:
        return False


@public_router.get("/metrics", summary="Prometheus metrics", response_class=Response,
                   responses={200: {"content": {"text/plain": {}}}, 401: {"description": "No or wrong scrape token"}})
def metrics(request: Request) -> Response:
    """With `ADSTACK_METRICS_TOKEN` set, scrapers send it as a bearer token; without it only loopback may scrape."""
    token = request.app.state.settings.metrics_token
    if token:
        sent = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(sent.encode(), token.encode()):
            raise Unauthenticated("send the metrics token as a bearer token")
    elif not _loopback(request):
        raise Unauthenticated("metrics are served to loopback clients unless a metrics token is set")
    return Response(pipeline_of(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)


@public_router.get("/readyz", tags=["health"], summary="Readiness probe",
                   responses={503: {"description": "The event log cannot take appends now, so tracking and "
                                                   "postbacks would be answered 503; retry after Retry-After"}})
async def readyz(request: Request) -> Any:
    """For load balancers: whether this process can acknowledge tracking now, i.e. its event log takes appends (the
    local log's disk has room; the NATS server answers and the stream is not full). `/healthz` stays the liveness
    probe: a process that is not ready recovers on its own once the log does, and restarting it would not help."""
    try:
        await pipeline_of(request).ready()
    except LogUnavailable as exc:
        return json_response(error_body("unavailable", str(exc)), 503, headers={"Retry-After": "5"})
    return {"status": "ok"}


@router.get("/status", response_model=PipelineStatus, summary="Consumer lag and outstanding reservations")
def status(principal: CurrentPrincipal, session: SessionDep, request: Request) -> PipelineStatus:
    if not principal.is_platform:
        raise Forbidden("the pipeline's status is visible to platform staff")
    return pipeline_of(request).status(pending_postbacks=pending_postbacks(session))


def install(app: FastAPI) -> None:
    def counters() -> Counters | None:
        runtime = getattr(app.state, "serving", None)
        return runtime.engine.counters if runtime is not None else None

    pipeline = Pipeline(app.state.settings, app.state.session_factory, counters=counters)
    app.state.pipeline = pipeline
    postbacks = getattr(app.state, "postback_worker", None)
    if postbacks is not None:
        pipeline.postbacks.on_stored = postbacks.notify
        # Attribution runs where the consumers run: serving processes beside an `adstack pipeline` only append.
        pipeline.on_start.append(postbacks.start)
        # It reads the log (`catch_up`): stopped before the log closes, not after, when it would wait on it.
        pipeline.on_stop.append(postbacks.stop)

        def before_batch() -> datetime:
            # Postbacks acknowledged so far are stored first; then touches up to the watermark.
            pipeline.catch_up("postbacks")
            return pipeline.catch_up("touchpoints")

        postbacks.before_batch = before_batch
    app.add_middleware(LatencyMiddleware, metrics=lambda: getattr(app.state, "pipeline", None) and
                       app.state.pipeline.metrics)

    def gauges() -> Iterator[GaugeMetricFamily]:
        lag_events = GaugeMetricFamily("adstack_consumer_lag_events", "Records not yet applied, by consumer.",
                                       labels=["consumer"])
        lag_seconds = GaugeMetricFamily("adstack_consumer_lag_seconds", "Age of the oldest record not yet applied.",
                                        labels=["consumer"])
        for name, (events, seconds) in pipeline.lag().items():
            lag_events.add_metric([name], events)
            lag_seconds.add_metric([name], seconds)
        yield lag_events
        yield lag_seconds
        held = counters()
        try:
            outstanding = held.outstanding() if held is not None else None
        except Unavailable:  # Redis is down: the scrape still answers, without these two
            log.warning("outstanding reservations unavailable for /metrics", exc_info=True)
            outstanding = None
        if outstanding is not None:
            yield GaugeMetricFamily("adstack_reservations_outstanding", "Budget reservations not yet ended.",
                                    value=outstanding.reservations)
            yield GaugeMetricFamily("adstack_reserved_micros", "Money held by outstanding reservations.",
                                    value=outstanding.micros)
        try:
            with app.state.session_factory() as session:
                pending = pending_postbacks(session)
        except Exception:  # the database is unreachable: the scrape still answers
            return
        yield GaugeMetricFamily("adstack_postbacks_pending", "Postbacks received and not yet attributed.",
                                value=pending)

    pipeline.metrics.watch(gauges)

    def start(app: FastAPI) -> None:
        # The log's writer thread (and the consumers, when in process) share the interpreter with the request
        # loop: hand the GIL over sooner than the default 5 ms, so an acknowledgement waiting on its group's
        # fsync is not held behind the loop or a batch being applied.
        sys.setswitchinterval(0.0005)
        if app.state.settings.pipeline_in_process:
            pipeline.start_eventually()

    app.state.on_startup.append(start)
    app.state.on_shutdown.append(lambda _app: pipeline.close())


__all__ = ["PipelineMetrics", "install", "public_router", "router"]
