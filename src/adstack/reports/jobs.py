"""Report jobs: a report too long to run at once, written to a CSV or XLSX file in the background, by date chunks
so its progress shows; sorted otherwise than by time, the chunks are merged into the report's order. A job that
finds the event store unavailable (its owner process restarting) goes back to the queue and is tried again
later; it fails only when the store stays away through every retry."""

from __future__ import annotations

import heapq
import logging
import pickle
import secrets
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import date, timedelta
from itertools import islice
from operator import itemgetter
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from adstack.accounts.models import Principal
from adstack.core.errors import NotFound
from adstack.core.settings import Settings
from adstack.core.timeutil import utcnow
from adstack.events.remote import StoreUnavailable
from adstack.events.service import EventStore
from adstack.reports import query as sql
from adstack.reports.downloads import _table, file_label
from adstack.reports.export import CsvWriter, TableWriter, XlsxWriter
from adstack.reports.models import (
    Dimension,
    ExportFormat,
    Granularity,
    JobStatus,
    ReportJob,
    ReportJobCreate,
    ReportQuery,
)
from adstack.reports.service import (
    JOB_MAX_DAYS,
    _by_source,
    _columns,
    _fetch,
    _finish,
    _prepare,
    _Prepared,
    _row,
    _store,
)

log = logging.getLogger("adstack.reports")

JOB_FILE_TTL = timedelta(days=7)
JOB_CHUNKS = 20
# Waits before each retry of a job the event store could not serve: an owner restarting is back within seconds,
# one that is not after about four minutes is down, and the job fails saying so.
STORE_RETRY_DELAYS_S = (2.0, 5.0, 15.0, 30.0, 60.0, 120.0)


def _later(delay_s: float, work: Callable[[], None]) -> None:
    timer = threading.Timer(delay_s, work)
    timer.name, timer.daemon = "adstack-report-job-retry", True  # a stopping process leaves the job queued
    timer.start()


# ---------- report jobs ----------


def create_job(session: Session, principal: Principal, body: ReportJobCreate) -> ReportJob:
    """Validate and queue a report job; run it with run_job (the API schedules it in the background)."""
    query = ReportQuery.model_validate(body.model_dump(exclude={"format"}) | {"limit": 10_000})
    _prepare(session, principal, query, max_days=JOB_MAX_DAYS)
    job = ReportJob(user_id=principal.user_id, role=principal.role, account_id=principal.account_id,
                    query=body.model_dump(mode="json", exclude={"format"}), format=body.format.value,
                    status=JobStatus.QUEUED.value)
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, principal: Principal, job_id: int) -> ReportJob:
    job = session.get(ReportJob, job_id)
    if job is None or (job.user_id != principal.user_id and not principal.is_platform):
        raise NotFound(f"report job {job_id} not found")
    return job


def list_jobs(session: Session, principal: Principal, *, limit: int = 50, offset: int = 0) -> list[ReportJob]:
    stmt = select(ReportJob).where(ReportJob.user_id == principal.user_id)
    return list(session.scalars(stmt.order_by(ReportJob.id.desc()).limit(limit).offset(offset)))


def job_file(settings: Settings, job: ReportJob) -> Path:
    if job.status != JobStatus.DONE.value or not job.file_name:
        raise NotFound("the report file is not ready")
    if job.expires_at is not None and job.expires_at <= utcnow():
        raise NotFound("the report file has expired; run the job again")
    path = reports_dir(settings) / job.file_name
    if not path.exists():
        raise NotFound("the report file has expired; run the job again")
    return path


def reports_dir(settings: Settings) -> Path:
    path = settings.data_dir / "reports"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _chunks(start: date, end: date, pieces: int) -> Iterator[tuple[date, date]]:
    days = (end - start).days + 1
    step = max(1, -(-days // pieces))
    cursor = start
    while cursor <= end:
        last = min(end, cursor + timedelta(days=step - 1))
        yield cursor, last
        cursor = last + timedelta(days=1)


def _spilled(handle: IO[bytes]) -> Iterator[Any]:
    """What was pickled into one of the job's own temporary files, in order."""
    handle.seek(0)
    while True:
        try:
            yield pickle.load(handle)  # noqa: S301 - written by this job a moment ago, never from outside
        except EOFError:
            return


def run_job(factory: sessionmaker[Session], job_id: int, *, settings: Settings, store: EventStore | None = None,
            on_progress: Callable[[int], None] | None = None, retries_done: int = 0) -> None:
    """Run a queued job: by date chunks when the report is by day or hour, so progress can be reported."""
    with factory() as session:
        job = session.get(ReportJob, job_id)
        if job is None or job.status not in (JobStatus.QUEUED.value, JobStatus.RUNNING.value):
            return
        job.status, job.started_at, job.percent_done = JobStatus.RUNNING.value, utcnow(), 0
        session.commit()
        principal = Principal(user_id=job.user_id, email="", role=job.role, account_id=job.account_id, client="job")
        name = f"report-{job.id}-{secrets.token_hex(8)}.{job.format}"
        path = reports_dir(settings) / name
        handle: IO[str] | None = None
        try:
            query = ReportQuery.model_validate(job.query | {"limit": 10_000, "offset": 0})
            prepared = _prepare(session, principal, query, max_days=JOB_MAX_DAYS)
            row_limit = int(job.query.get("limit") or 1_000_000)
            columns = _columns(prepared)
            header = [file_label(c, prepared.scope.currency) for c in columns]
            writer: TableWriter
            if job.format == ExportFormat.CSV.value:
                handle = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115 - closed below
                writer = CsvWriter(handle, header)
            else:
                writer = XlsxWriter(path, header)
            by_time = bool({Dimension.DATE, Dimension.HOUR} & set(prepared.dims))
            ranges = list(_chunks(query.start_date, query.end_date, JOB_CHUNKS)) if by_time else [
                (query.start_date, query.end_date)]
            # The chunks follow each other in time: written one after another they are in the report's order only
            # when it is by time alone (no other sort, no organic rows, which come after every ad's). Otherwise
            # each chunk's first `row_limit` rows, in order, wait in a temporary file, and the files are merged.
            merge = len(ranges) > 1 and (prepared.sort is not None or _by_source(prepared.dims))
            key = sql.order_key(prepared.sort, [sql.DIMENSION_SQL[d][0] for d in prepared.dims],
                                _by_source(prepared.dims))
            written = 0
            with ExitStack() as spills:
                sorted_parts: list[IO[bytes]] = []
                tail = spills.enter_context(tempfile.TemporaryFile(dir=reports_dir(settings)))
                for index, (chunk_start, chunk_end) in enumerate(ranges):
                    part = query.model_copy(update={"start_date": chunk_start, "end_date": chunk_end})
                    part_prepared = _Prepared(part, prepared.scope, prepared.dims, prepared.metrics, prepared.sort,
                                              prepared.extras, prepared.params)
                    fetched = _fetch(_store(store), part, scope=prepared.scope, metrics=prepared.metrics,
                                     sort=prepared.sort, limit=row_limit if merge else row_limit - written, offset=0,
                                     params=prepared.params)
                    rows = [_row(prepared, values, by_source=fetched.by_source) for values in fetched.rows]
                    result = _finish(session, part_prepared, rows, {}, fetched.total_rows, limit=row_limit, offset=0)
                    # Rows keep their order; cells a partner reports and we have no row for follow them.
                    body = _table(result)[1][:-1]
                    if merge:
                        spill = spills.enter_context(tempfile.TemporaryFile(dir=reports_dir(settings)))
                        for values, cells in zip(fetched.rows, body[:len(rows)], strict=True):
                            pickle.dump((key(values), cells), spill)
                        for cells in body[len(rows):]:
                            pickle.dump(cells, tail)
                        sorted_parts.append(spill)
                    else:
                        writer.write_rows(body)
                        written += len(rows)
                    job.percent_done = min(99, (index + 1) * 100 // len(ranges))
                    job.row_count = written
                    session.commit()
                    if on_progress is not None:
                        on_progress(job.percent_done)
                    if written >= row_limit:
                        break
                if merge:
                    # One row of each chunk in memory at a time.
                    merged = heapq.merge(*(_spilled(f) for f in sorted_parts), key=itemgetter(0))
                    for _, cells in islice(merged, row_limit):
                        writer.write_rows([cells])
                        written += 1
                    writer.write_rows(_spilled(tail))
                    job.row_count = written
            whole = query.model_copy(update={"dimensions": [], "granularity": Granularity.TOTAL})
            sums = _fetch(_store(store), whole, scope=prepared.scope, metrics=prepared.metrics, sort=None, limit=None,
                          offset=0, params=prepared.params).totals
            totals = {m: sql.derive(sums, m) for m in prepared.metrics}
            result = _finish(session, prepared, [], totals, 0, limit=row_limit, offset=0)
            writer.write_rows([_table(result)[1][-1]])
            writer.close()
            if handle is not None:
                handle.close()
            job.status, job.percent_done, job.file_name = JobStatus.DONE.value, 100, name
            job.finished_at = utcnow()
            job.expires_at = job.finished_at + JOB_FILE_TTL
            session.commit()
        except StoreUnavailable as exc:
            session.rollback()
            if handle is not None:
                handle.close()
            path.unlink(missing_ok=True)
            job = session.get(ReportJob, job_id)
            if job is None:
                return
            if retries_done < len(STORE_RETRY_DELAYS_S):
                delay = STORE_RETRY_DELAYS_S[retries_done]
                log.warning("report job %s waits for the event store (%s); retry %d of %d in %s s", job_id, exc,
                            retries_done + 1, len(STORE_RETRY_DELAYS_S), delay)
                job.status, job.started_at, job.percent_done, job.row_count = JobStatus.QUEUED.value, None, 0, 0
                session.commit()
                _later(delay, lambda: run_job(factory, job_id, settings=settings, store=store,
                                              on_progress=on_progress, retries_done=retries_done + 1))
                return
            log.error("report job %s failed: the event store stayed unavailable (%s)", job_id, exc)
            job.status, job.finished_at = JobStatus.FAILED.value, utcnow()
            job.error = (f"the event store stayed unavailable through {retries_done + 1} attempts over "
                         f"{sum(STORE_RETRY_DELAYS_S):.0f} s; run the job again")
            session.commit()
        except Exception as exc:
            session.rollback()
            log.exception("report job %s failed", job_id)
            path.unlink(missing_ok=True)
            job = session.get(ReportJob, job_id)
            if job is not None:
                job.status, job.finished_at = JobStatus.FAILED.value, utcnow()
                job.error = (exc.message if hasattr(exc, "message") else "the report could not be produced")[:1000]
                session.commit()


def resume_jobs(factory: sessionmaker[Session]) -> list[int]:
    """Jobs a stopped process left queued or running, to start again."""
    with factory() as session:
        stmt = select(ReportJob.id).where(ReportJob.status.in_([JobStatus.QUEUED.value, JobStatus.RUNNING.value]))
        return list(session.scalars(stmt.order_by(ReportJob.id)))
