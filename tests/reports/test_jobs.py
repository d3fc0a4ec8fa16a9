"""Report jobs that meet an event store whose owner process is restarting: queued again and retried, not failed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from sqlalchemy.orm import Session

from adstack.accounts.models import Principal, Role
from adstack.core.db import make_session_factory
from adstack.core.settings import Settings
from adstack.events.remote import StoreUnavailable
from adstack.events.service import EventStore
from adstack.reports import jobs
from adstack.reports.models import JobStatus, ReportJob, ReportJobCreate
from tests.support import Api


class RestartingStore:
    """The event store, unavailable for its first `outages` reads, as while its owner restarts."""

    def __init__(self, store: EventStore, outages: int):
        self._store = store
        self.outages = outages

    def query(self, *args: Any, **kwargs: Any) -> Any:
        if self.outages > 0:
            self.outages -= 1
            raise StoreUnavailable("the process that owns the event store does not answer: connection refused")
        return self._store.query(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@pytest.fixture
def retries(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, Callable[[], None]]]:
    """The retries a job schedules, run by the test instead of a timer."""
    scheduled: list[tuple[float, Callable[[], None]]] = []
    monkeypatch.setattr(jobs, "_later", lambda delay, work: scheduled.append((delay, work)), raising=False)
    return scheduled


def _queued_job(api: Api, session: Session) -> int:
    actor = api.approved_account()
    principal = Principal(user_id=actor.user_id, email=actor.email, role=Role.ADVERTISER,
                          account_id=actor.account_id)
    job = jobs.create_job(session, principal, ReportJobCreate.model_validate({
        "start_date": date(2025, 1, 1), "end_date": date(2025, 3, 31), "granularity": "day",
        "metrics": ["cost_micros", "impressions"]}))
    session.commit()
    return job.id


def _job(session: Session, job_id: int) -> ReportJob:
    session.expire_all()
    job = session.get(ReportJob, job_id)
    assert job is not None
    return job


def test_a_job_waits_in_the_queue_while_the_store_restarts(
        api: Api, session: Session, settings: Settings, store: EventStore,
        retries: list[tuple[float, Callable[[], None]]]) -> None:
    job_id = _queued_job(api, session)
    before = set(jobs.reports_dir(settings).iterdir())
    restarting = RestartingStore(store, outages=2)
    factory = make_session_factory(session.get_bind())  # type: ignore[arg-type]
    jobs.run_job(factory, job_id, settings=settings, store=restarting)  # type: ignore[arg-type]
    job = _job(session, job_id)
    assert (job.status, job.error, job.started_at, job.percent_done) == (JobStatus.QUEUED.value, None, None, 0)
    assert [delay for delay, _ in retries] == [jobs.STORE_RETRY_DELAYS_S[0]]
    retries.pop()[1]()
    assert _job(session, job_id).status == JobStatus.QUEUED.value
    assert [delay for delay, _ in retries] == [jobs.STORE_RETRY_DELAYS_S[1]]  # backing off
    retries.pop()[1]()
    job = _job(session, job_id)
    assert (job.status, job.percent_done, job.error) == (JobStatus.DONE.value, 100, None)
    assert retries == [] and jobs.job_file(settings, job).is_file()
    # No file of a failed attempt is left.
    assert [p.name for p in set(jobs.reports_dir(settings).iterdir()) - before] == [job.file_name]


def test_a_job_fails_saying_so_when_the_store_stays_away(
        api: Api, session: Session, settings: Settings, store: EventStore,
        retries: list[tuple[float, Callable[[], None]]]) -> None:
    job_id = _queued_job(api, session)
    before = set(jobs.reports_dir(settings).iterdir())
    gone = RestartingStore(store, outages=1_000)
    factory = make_session_factory(session.get_bind())  # type: ignore[arg-type]
    jobs.run_job(factory, job_id, settings=settings, store=gone)  # type: ignore[arg-type]
    while retries:
        retries.pop()[1]()
    job = _job(session, job_id)
    assert job.status == JobStatus.FAILED.value
    attempts = len(jobs.STORE_RETRY_DELAYS_S) + 1
    assert job.error == (f"the event store stayed unavailable through {attempts} attempts over "
                         f"{sum(jobs.STORE_RETRY_DELAYS_S):.0f} s; run the job again")
    assert gone.outages == 1_000 - attempts
    assert set(jobs.reports_dir(settings).iterdir()) == before
