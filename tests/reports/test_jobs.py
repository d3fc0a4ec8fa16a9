"""Report jobs that meet an event store whose owner process is restarting: queued again and retried, not failed;
and jobs with several serving processes: each run by exactly one, a dead process's job taken over once its lease
lapsed, a live one's never."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from adstack.accounts.models import Principal, Role
from adstack.core.db import make_session_factory
from adstack.core.settings import Settings
from adstack.core.timeutil import utcnow
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


# ---------- several processes ----------


def _factory(session: Session) -> sessionmaker[Session]:
    return make_session_factory(session.get_bind())  # type: ignore[arg-type]


def _files(settings: Settings) -> set[Path]:
    return set(jobs.reports_dir(settings).iterdir())


def _set(session: Session, job_id: int, **values: Any) -> None:
    session.execute(update(ReportJob).where(ReportJob.id == job_id).values(**values))
    session.commit()


def _assert_done_once(session: Session, settings: Settings, job_id: int, before: set[Path]) -> ReportJob:
    """The job finished, and its row names the one file that was written."""
    job = _job(session, job_id)
    assert [p.name for p in _files(settings) - before] == [job.file_name]
    assert (job.status, job.percent_done, job.error) == (JobStatus.DONE.value, 100, None)
    assert job.lease_until is None
    return job


def test_two_runners_racing_on_one_job_run_it_once(
        api: Api, session: Session, settings: Settings, store: EventStore) -> None:
    job_id = _queued_job(api, session)
    before = _files(settings)
    factory = _factory(session)
    start = threading.Barrier(2)
    ran: list[bool] = []

    def runner() -> None:
        start.wait()
        ran.append(jobs.run_job(factory, job_id, settings=settings, store=store))

    threads = [threading.Thread(target=runner) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    _assert_done_once(session, settings, job_id, before)
    assert sorted(ran) == [False, True]


def test_a_job_with_a_live_lease_is_not_taken_by_another_process(
        api: Api, session: Session, settings: Settings, store: EventStore) -> None:
    job_id = _queued_job(api, session)
    factory = _factory(session)
    token = jobs.claim_job(session, job_id)  # another process runs it
    assert token is not None
    before = _files(settings)
    assert jobs.resume_jobs(factory) == []
    assert jobs.run_claimable(factory, settings=settings, store=store) == []
    assert jobs.run_job(factory, job_id, settings=settings, store=store) is False
    assert jobs.claim_job(session, job_id) is None
    job = _job(session, job_id)
    assert (job.status, job.lease_token) == (JobStatus.RUNNING.value, token)
    assert _files(settings) == before


def test_a_job_whose_runner_died_is_taken_over_once_its_lease_lapsed(
        api: Api, session: Session, settings: Settings, store: EventStore) -> None:
    job_id = _queued_job(api, session)
    factory = _factory(session)
    # A process claimed it, reported some progress and was killed.
    assert jobs.claim_job(session, job_id) is not None
    _set(session, job_id, percent_done=40)
    assert jobs.resume_jobs(factory) == []
    _set(session, job_id, lease_until=utcnow() - timedelta(seconds=1))
    before = _files(settings)
    assert jobs.resume_jobs(factory) == [job_id]
    assert jobs.run_claimable(factory, settings=settings, store=store) == [job_id]
    _assert_done_once(session, settings, job_id, before)


def test_a_runner_that_stalled_past_its_lease_leaves_the_job_to_the_process_that_took_it_over(
        api: Api, session: Session, settings: Settings, store: EventStore) -> None:
    job_id = _queued_job(api, session)
    factory = _factory(session)
    before = _files(settings)
    taken_over: list[bool] = []

    def stall(_percent: int) -> None:
        if taken_over:
            return
        # This runner stops answering for longer than its lease; another process's sweep takes the job and
        # finishes it before this one goes on.
        _set(session, job_id, lease_until=utcnow() - timedelta(seconds=1))
        taken_over.append(jobs.run_job(factory, job_id, settings=settings, store=store))

    assert jobs.run_job(factory, job_id, settings=settings, store=store, on_progress=stall) is True
    assert taken_over == [True]
    _assert_done_once(session, settings, job_id, before)


def test_a_long_chunk_keeps_its_lease(
        api: Api, session: Session, settings: Settings, store: EventStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "LEASE_S", 1.5)
    monkeypatch.setattr(jobs, "RENEW_EVERY_S", 0.1)
    job_id = _queued_job(api, session)
    factory = _factory(session)
    claims: list[str | None] = []

    class SlowStore:
        def query(self, *args: Any, **kwargs: Any) -> Any:
            if not claims:
                time.sleep(4.0)  # one chunk, well past the lease
                with factory() as other:
                    claims.append(jobs.claim_job(other, job_id))
            return store.query(*args, **kwargs)

        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

    before = _files(settings)
    assert jobs.run_job(factory, job_id, settings=settings, store=SlowStore()) is True  # type: ignore[arg-type]
    assert claims == [None]
    _assert_done_once(session, settings, job_id, before)


def test_a_job_waiting_for_the_event_store_is_held_for_its_own_retry(
        api: Api, session: Session, settings: Settings, store: EventStore,
        retries: list[tuple[float, Callable[[], None]]]) -> None:
    job_id = _queued_job(api, session)
    factory = _factory(session)
    before = _files(settings)
    jobs.run_job(factory, job_id, settings=settings, store=RestartingStore(store, outages=1))  # type: ignore[arg-type]
    assert _job(session, job_id).status == JobStatus.QUEUED.value
    # Another process's sweep leaves it to the retry this process scheduled.
    assert jobs.resume_jobs(factory) == []
    assert jobs.run_job(factory, job_id, settings=settings, store=store) is False
    retries.pop()[1]()
    _assert_done_once(session, settings, job_id, before)


def test_a_job_left_queued_by_a_process_that_died_while_waiting_for_the_store_is_taken_over(
        api: Api, session: Session, settings: Settings, store: EventStore,
        retries: list[tuple[float, Callable[[], None]]]) -> None:
    job_id = _queued_job(api, session)
    factory = _factory(session)
    before = _files(settings)
    jobs.run_job(factory, job_id, settings=settings, store=RestartingStore(store, outages=1))  # type: ignore[arg-type]
    retries.clear()  # the process dies before its retry
    _set(session, job_id, lease_until=utcnow() - timedelta(seconds=1))
    assert jobs.run_claimable(factory, settings=settings, store=store) == [job_id]
    _assert_done_once(session, settings, job_id, before)


def test_a_serving_process_picks_up_an_orphaned_job_while_it_runs_and_leaves_a_held_one(
        api: Api, session: Session, settings: Settings, store: EventStore) -> None:
    held_id = _queued_job(api, session)
    held = jobs.claim_job(session, held_id)  # a live process runs this one
    orphan_id = _queued_job(api, session)
    assert jobs.claim_job(session, orphan_id) is not None
    _set(session, orphan_id, lease_until=utcnow() - timedelta(seconds=1))  # and this one's process died
    before = _files(settings)
    # Not at start: this app has been running since the client was made.
    api.client.app.state.report_jobs.wake()  # type: ignore[attr-defined]
    deadline = time.monotonic() + 60
    while _job(session, orphan_id).status != JobStatus.DONE.value and time.monotonic() < deadline:
        time.sleep(0.05)
    _assert_done_once(session, settings, orphan_id, before)
    job = _job(session, held_id)
    assert (job.status, job.lease_token) == (JobStatus.RUNNING.value, held)
