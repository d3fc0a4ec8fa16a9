"""The event pipeline as platform staff watch it: each consumer's lag, money held by served ads, postbacks waiting."""

from __future__ import annotations

from fastapi import APIRouter, Response

from adstack.console.web import ConsoleRoute, PlatformDep, render
from adstack.pipeline.service import Pipeline, pending_postbacks

router = APIRouter(route_class=ConsoleRoute)


@router.get("/admin/pipeline")
def pipeline_status(visitor: PlatformDep) -> Response:
    pipeline: Pipeline = visitor.request.app.state.pipeline
    status = pipeline.status(pending_postbacks=pending_postbacks(visitor.session))
    return render(visitor, "pipeline/status.html", {"status": status})
