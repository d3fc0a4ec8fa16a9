"""Reports, downloads, report jobs, the overview and the media center."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, FastAPI, Query, Request, Response, status
from fastapi.responses import FileResponse

from adstack.core.background import Periodic
from adstack.core.deps import CurrentPrincipal, IdPath, Limit, Offset, OptionalId, SessionDep, SettingsDep
from adstack.events.service import get_event_store
from adstack.reports import downloads, filters, jobs, media, service
from adstack.reports import overview as account_overview
from adstack.reports.export import CSV_MEDIA_TYPE, XLSX_MEDIA_TYPE
from adstack.reports.models import (
    ExportFormat,
    MediaCenterQuery,
    MediaCenterRead,
    OverviewRead,
    ReportFilterChoices,
    ReportJob,
    ReportJobCreate,
    ReportJobRead,
    ReportQuery,
    ReportResult,
)

log = logging.getLogger("adstack.reports")

router = APIRouter(prefix="/api/v1", tags=["reports"])


class ReportDownloadQuery(ReportQuery):
    format: ExportFormat = ExportFormat.CSV


def _job_read(job: ReportJob) -> ReportJobRead:
    out = ReportJobRead.model_validate(job)
    if job.status == "done":
        out.download_url = f"/api/v1/reports/jobs/{job.id}/download"
    return out


@router.get("/reports", response_model=ReportResult, summary="Run a report (one page, with totals)")
def run_report(query: Annotated[ReportQuery, Query()], principal: CurrentPrincipal, session: SessionDep,
               settings: SettingsDep) -> ReportResult:
    return service.run_report(session, principal, query, store=get_event_store(settings))


@router.get("/reports/filters", response_model=ReportFilterChoices,
            summary="What a report can be filtered by: objectives, and the campaigns, ad groups, creatives, ad "
                    "spaces and publishers you can see")
def report_filters(principal: CurrentPrincipal, session: SessionDep) -> ReportFilterChoices:
    return filters.filter_choices(session, principal)


@router.get("/reports/download", summary="Download a report as CSV or XLSX (every row and the totals)",
            responses={200: {"content": {CSV_MEDIA_TYPE: {}, XLSX_MEDIA_TYPE: {}}}})
def download_report(query: Annotated[ReportDownloadQuery, Query()], principal: CurrentPrincipal,
                    session: SessionDep, settings: SettingsDep) -> Response:
    report_query = ReportQuery.model_validate(query.model_dump(exclude={"format"}))
    body = downloads.export_report(session, principal, report_query, query.format, store=get_event_store(settings))
    media_type = CSV_MEDIA_TYPE if query.format == ExportFormat.CSV else XLSX_MEDIA_TYPE
    filename = f"report-{query.start_date}-{query.end_date}.{query.format.value}"
    return Response(body, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@router.post("/reports/jobs", response_model=ReportJobRead, status_code=status.HTTP_202_ACCEPTED,
             summary="Start a report job for a large range; poll it, then download the file")
def create_job(body: ReportJobCreate, principal: CurrentPrincipal, session: SessionDep, settings: SettingsDep,
               request: Request, background: BackgroundTasks) -> ReportJobRead:
    job = jobs.create_job(session, principal, body)
    session.commit()
    background.add_task(jobs.run_job, request.app.state.session_factory, job.id, settings=settings,
                        store=get_event_store(settings))
    return _job_read(job)


@router.get("/reports/jobs", response_model=list[ReportJobRead], summary="Your report jobs, newest first")
def list_jobs(principal: CurrentPrincipal, session: SessionDep, limit: Limit = 50,
              offset: Offset = 0) -> list[ReportJobRead]:
    return [_job_read(j) for j in jobs.list_jobs(session, principal, limit=limit, offset=offset)]


@router.get("/reports/jobs/{job_id}", response_model=ReportJobRead, summary="A report job's status and progress")
def get_job(job_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> ReportJobRead:
    return _job_read(jobs.get_job(session, principal, job_id))


@router.get("/reports/jobs/{job_id}/download", summary="Download a finished report job's file",
            response_class=FileResponse, responses={200: {"content": {CSV_MEDIA_TYPE: {}, XLSX_MEDIA_TYPE: {}}}})
def download_job(job_id: IdPath, principal: CurrentPrincipal, session: SessionDep,
                 settings: SettingsDep) -> FileResponse:
    job = jobs.get_job(session, principal, job_id)
    path = jobs.job_file(settings, job)
    media_type = CSV_MEDIA_TYPE if job.format == ExportFormat.CSV.value else XLSX_MEDIA_TYPE
    return FileResponse(path, media_type=media_type, filename=f"report-{job.id}.{job.format}")


@router.get("/overview", response_model=OverviewRead, summary="Balance, today's spend, trends, review state")
def overview(principal: CurrentPrincipal, session: SessionDep, settings: SettingsDep,
             account_id: OptionalId = None,
             days: Annotated[int, Query(ge=1, le=90, description="Days of trend, today included.")] = 7,
             ) -> OverviewRead:
    return account_overview.overview(session, principal, account_id=account_id, days=days,
                                     store=get_event_store(settings))


@router.get("/media-center", response_model=MediaCenterRead,
            summary="Where the ads ran: per publisher app or ad space, searchable")
def media_center(query: Annotated[MediaCenterQuery, Query()], principal: CurrentPrincipal, session: SessionDep,
                 settings: SettingsDep) -> MediaCenterRead:
    return media.media_center(session, principal, query, store=get_event_store(settings))


def install(app: FastAPI) -> None:
    """Run the report jobs no live process holds: at start those a stopped process left behind, then every
    jobs.SWEEP_INTERVAL_S those a process that died left running (once their lease lapsed) or queued. Every
    serving process does this; the claim lets exactly one of them run each job."""
    settings, factory = app.state.settings, app.state.session_factory

    def sweep() -> None:
        if jobs.resume_jobs(factory):  # the event store is opened only for a job to run
            jobs.run_claimable(factory, settings=settings, store=get_event_store(settings),
                               stopping=lambda: sweeper.stopping)

    # A job running in this thread when the process stops is not waited for: its lease lapses and another
    # process takes it over.
    sweeper = Periodic("adstack-report-jobs", sweep, interval=jobs.SWEEP_INTERVAL_S, first=0.0, log=log,
                       failure="running report jobs failed; will retry", join_seconds=1.0)
    app.state.report_jobs = sweeper
    app.state.on_startup.append(lambda _app: sweeper.start())
    app.state.on_shutdown.append(lambda _app: sweeper.stop())
