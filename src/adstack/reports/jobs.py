"""Report jobs: a report too long to run at once, written to a CSV or XLSX file in the background, by date chunks
so its progress shows; sorted otherwise than by time, the chunks are merged into the report's order. A job that
finds the event store unavailable (its owner process restarting) goes back to the queue and is tried again
later; it fails only when the store stays away through every retry.

Every serving process may run jobs, so a job is claimed with one conditional UPDATE and held by a lease its runner
renews: of several processes trying at once exactly one runs it, and a job whose process died is taken over once
its lease lapsed, never while its runner is alive. A runner that finds its job taken over writes nothing more."""

from __future__ import annotations

import heapq
import logging
import pickle
import secrets
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import date, datetime, timedelta
from itertools import islice
from operator import itemgetter
from pathlib import Path
from typing import IO, Any

from sqlalchemy import ColumnElement, and_, or_, select, update
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
# One process runs a job at a time, holding it by a lease it renews every RENEW_EVERY_S while it works; a job
# whose process died (SIGKILL, a lost host) is taken over once LEASE_S has passed since its last renewal. Each
# process looks for such jobs, and for queued ones nobody started, every SWEEP_INTERVAL_S.
LEASE_S = 60.0
RENEW_EVERY_S = 15.0
SWEEP_INTERVAL_S = 30.0


def _later(delay_s: float, work: Callable[[], object]) -> None:
    timer = threading.Timer(delay_s, work)
    # A stopping process leaves the job queued; another takes it once this process's hold on it lapses.
    timer.name, timer.daemon = "adstack-report-job-retry", True
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


def _lapsed(now: datetime) -> ColumnElement[bool]:
    return or_(ReportJob.lease_until.is_(None), ReportJob.lease_until < now)


def _claimable(now: datetime) -> ColumnElement[bool]:
    """No live process holds the job: it is queued (and not waiting for its holder's retry), or it is running
    under a lease that lapsed, its process having died. A running job without a lease has no holder either."""
    return and_(ReportJob.status.in_([JobStatus.QUEUED.value, JobStatus.RUNNING.value]), _lapsed(now))


def claim_job(session: Session, job_id: int, *, reservation: str | None = None) -> str | None:
    """Take the job for this runner in one conditional UPDATE, so that of several processes trying at once
    exactly one gets it; `reservation` is the token of a queued job this runner holds for its retry. Returns the
    new lease token, or None when another runner holds the job or it is finished."""
    now = utcnow()
    free = _claimable(now)
    if reservation is not None:
        free = or_(free, and_(ReportJob.status == JobStatus.QUEUED.value, ReportJob.lease_token == reservation))
    token = secrets.token_hex(16)
    result = session.execute(
        update(ReportJob).where(ReportJob.id == job_id, free)
        .values(status=JobStatus.RUNNING.value, lease_token=token, lease_until=now + timedelta(seconds=LEASE_S),
                started_at=now, percent_done=0, row_count=0, file_name=None, error=None)
        .execution_options(synchronize_session=False))
    session.commit()
    return token if result.rowcount == 1 else None  # type: ignore[attr-defined]


def _held_write(session: Session, job_id: int, token: str, **values: Any) -> bool:
    """Write to the job's row only while this runner holds it; False once another process took it over."""
    result = session.execute(
        update(ReportJob).where(ReportJob.id == job_id, ReportJob.lease_token == token,
                                ReportJob.status == JobStatus.RUNNING.value)
        .values(**values).execution_options(synchronize_session=False))
    session.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]


class _LeaseLost(Exception):
    """Another process claimed the job: this runner stalled past its lease. It stops and writes nothing more."""


class _Lease:
    """Renews a runner's lease on a timer, since one chunk may take longer than LEASE_S, and notes when the job
    was taken over so the runner stops at its next step."""

    def __init__(self, factory: sessionmaker[Session], job_id: int, token: str):
        self._factory, self._job_id, self._token = factory, job_id, token
        self._stop = threading.Event()
        self.lost = False
        self._thread = threading.Thread(target=self._keep, name="adstack-report-job-lease", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)

    def check(self) -> None:
        if self.lost:
            raise _LeaseLost

    def _keep(self) -> None:
        while not self._stop.wait(RENEW_EVERY_S):
            try:
                with self._factory() as session:
                    held = _held_write(session, self._job_id, self._token,
                                       lease_until=utcnow() + timedelta(seconds=LEASE_S))
            except Exception:
                # The lease has room for a few misses; the next tick tries again.
                log.warning("report job %s: its lease could not be renewed", self._job_id, exc_info=True)
                continue
            if not held:
                self.lost = True
                return


def run_job(factory: sessionmaker[Session], job_id: int, *, settings: Settings, store: EventStore | None = None,
            on_progress: Callable[[int], None] | None = None, retries_done: int = 0,
            reservation: str | None = None) -> bool:
    """Claim the job and run it: by date chunks when the report is by day or hour, so progress can be reported.
    Returns whether this call ran it (not when another runner holds it or it is finished)."""
    with factory() as session:
        token = claim_job(session, job_id, reservation=reservation)
        if token is None:
            return False
        lease = _Lease(factory, job_id, token)
        lease.start()
        try:
            _run_claimed(factory, session, job_id, token, lease, settings=settings, store=store,
                         on_progress=on_progress, retries_done=retries_done)
        finally:
            lease.stop()
    return True


def _run_claimed(factory: sessionmaker[Session], session: Session, job_id: int, token: str, lease: _Lease, *,
                 settings: Settings, store: EventStore | None, on_progress: Callable[[int], None] | None,
                 retries_done: int) -> None:
    job = session.get(ReportJob, job_id)
    assert job is not None  # claimed a moment ago
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
                lease.check()
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
                percent = min(99, (index + 1) * 100 // len(ranges))
                # Each progress write renews the lease too.
                if not _held_write(session, job_id, token, percent_done=percent, row_count=written,
                                   lease_until=utcnow() + timedelta(seconds=LEASE_S)):
                    raise _LeaseLost
                if on_progress is not None:
                    on_progress(percent)
                if written >= row_limit:
                    break
            if merge:
                # One row of each chunk in memory at a time.
                merged = heapq.merge(*(_spilled(f) for f in sorted_parts), key=itemgetter(0))
                for _, cells in islice(merged, row_limit):
                    writer.write_rows([cells])
                    written += 1
                writer.write_rows(_spilled(tail))
        lease.check()
        whole = query.model_copy(update={"dimensions": [], "granularity": Granularity.TOTAL})
        sums = _fetch(_store(store), whole, scope=prepared.scope, metrics=prepared.metrics, sort=None, limit=None,
                      offset=0, params=prepared.params).totals
        totals = {m: sql.derive(sums, m) for m in prepared.metrics}
        result = _finish(session, prepared, [], totals, 0, limit=row_limit, offset=0)
        writer.write_rows([_table(result)[1][-1]])
        writer.close()
        if handle is not None:
            handle.close()
        finished_at = utcnow()
        if not _held_write(session, job_id, token, status=JobStatus.DONE.value, percent_done=100, row_count=written,
                           file_name=name, finished_at=finished_at, expires_at=finished_at + JOB_FILE_TTL,
                           lease_until=None):
            raise _LeaseLost
    except _LeaseLost:
        session.rollback()
        _discard(handle, path)
        log.warning("report job %s: another process took it over while this one stalled past its lease; this run "
                    "stops and leaves the job to it", job_id)
    except StoreUnavailable as exc:
        session.rollback()
        _discard(handle, path)
        if retries_done < len(STORE_RETRY_DELAYS_S):
            delay = STORE_RETRY_DELAYS_S[retries_done]
            log.warning("report job %s waits for the event store (%s); retry %d of %d in %s s", job_id, exc,
                        retries_done + 1, len(STORE_RETRY_DELAYS_S), delay)
            # Queued again but held for this process's retry: no other process takes it while the store is back
            # only after the delay, unless this one dies meanwhile and the hold lapses.
            held_until = utcnow() + timedelta(seconds=delay + LEASE_S)
            if _held_write(session, job_id, token, status=JobStatus.QUEUED.value, started_at=None, percent_done=0,
                           row_count=0, lease_until=held_until):
                _later(delay, lambda: run_job(factory, job_id, settings=settings, store=store,
                                              on_progress=on_progress, retries_done=retries_done + 1,
                                              reservation=token))
            return
        log.error("report job %s failed: the event store stayed unavailable (%s)", job_id, exc)
        _held_write(session, job_id, token, status=JobStatus.FAILED.value, finished_at=utcnow(), lease_until=None,
                    error=(f"the event store stayed unavailable through {retries_done + 1} attempts over "
                           f"{sum(STORE_RETRY_DELAYS_S):.0f} s; run the job again"))
    except Exception as exc:
        session.rollback()
        log.exception("report job %s failed", job_id)
        _discard(handle, path)
        _held_write(session, job_id, token, status=JobStatus.FAILED.value, finished_at=utcnow(), lease_until=None,
                    error=(exc.message if hasattr(exc, "message") else "the report could not be produced")[:1000])


def _discard(handle: IO[str] | None, path: Path) -> None:
    if handle is not None:
        handle.close()
    path.unlink(missing_ok=True)


def resume_jobs(factory: sessionmaker[Session]) -> list[int]:
    """Jobs no live process holds, to run: those a stopped process left queued, and those a process that died
    left running (their lease lapsed). run_job claims each; another process may claim it first."""
    with factory() as session:
        stmt = select(ReportJob.id).where(_claimable(utcnow()))
        return list(session.scalars(stmt.order_by(ReportJob.id)))


def run_claimable(factory: sessionmaker[Session], *, settings: Settings, store: EventStore | None = None,
                  stopping: Callable[[], bool] = lambda: False) -> list[int]:
    """Run, one after another, the jobs no live process holds (see resume_jobs); returns those this call ran."""
    ran = []
    for job_id in resume_jobs(factory):
        if stopping():
            break
        if run_job(factory, job_id, settings=settings, store=store):
            ran.append(job_id)
    return ran
