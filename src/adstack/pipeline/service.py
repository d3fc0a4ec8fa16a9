"""The pipeline: the event log and the consumers that apply it, run as background threads of one process.

Endpoints append and answer; `Pipeline.start` runs every consumer in a loop that reads a batch, applies it and
moves that consumer's checkpoint, and a sweeper gives back budget reservations that expired unshown. On the
embedded log exactly one process runs the consumers (it holds `consumers.lock` in the log directory); the
others only append. `drain()` applies everything appended so far, in the calling thread.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from adstack.core.settings import Settings
from adstack.core.timeutil import utcnow
from adstack.events.remote import OwnerLock
from adstack.events.service import embedded_store_id, get_event_store
from adstack.pipeline import records
from adstack.pipeline.consumers import Billing, Consumer, Context, StoreEvents, Touchpoints
from adstack.pipeline.jetstream import STORE_CLAIM_KEY, JetStreamLog, claim_bucket
from adstack.pipeline.log import EventLog, LocalLog, LogUnavailable, disk_free_bytes
from adstack.pipeline.metrics import PipelineMetrics
from adstack.pipeline.models import ConsumerLag, PipelineStatus
from adstack.pipeline.postbacks import Postbacks
from adstack.serving.counters import Counters

log = logging.getLogger("adstack.pipeline")

CONSUMER_NAMES = ("billing", "touchpoints", "events", "postbacks")
LINGER_SECONDS = 0.25
SWEEP_SECONDS = 1.0
SLOT_CHECK_SECONDS = 30.0
ROOM_RECHECK_SECONDS = 1.0
ROOM_MARGIN = 4
# How long a stopping process waits for its consumers' batches in hand; a batch not done by then is abandoned
# unacknowledged, and applied again (once, by id) by whichever process reads it next.
STOP_SECONDS = 5.0


_heap_frozen = threading.Event()
YOUNG_COLLECTION_OBJECTS = 10_000


def freeze_startup_heap() -> None:
    """Exempt what the process built before its consumers start (modules, metadata, settings: hundreds of
    thousands of objects) from the garbage collector's full passes, once per process. Applying a batch makes
    and drops enough objects to trigger such passes, and each would otherwise walk that whole heap again: a
    fifth of billing's CPU time.

    And collect the young generation every YOUNG_COLLECTION_OBJECTS allocations instead of every 700: a batch
    allocates tens of thousands of short-lived objects, and with the startup heap frozen the long-lived one is
    small, so the default thresholds ran a full pass every few thousand records (a tenth of billing's CPU)."""
    if not _heap_frozen.is_set():
        _heap_frozen.set()
        gc.collect()
        gc.freeze()
        young, middle, old = gc.get_threshold()
        gc.set_threshold(max(young, YOUNG_COLLECTION_OBJECTS), middle, old)


class EventStoreElsewhere(RuntimeError):
    """The stream's events load into an embedded event store in another data dir: this process must not consume."""


def log_directory(settings: Settings) -> Path:
    return settings.data_dir / "events" / "log"


def open_log(settings: Settings) -> EventLog:
    if settings.nats_url:
        return JetStreamLog(settings.nats_url, CONSUMER_NAMES, stream=settings.nats_stream,
                            subject_prefix=f"adstack.{settings.nats_stream.lower()}",
                            max_age_seconds=settings.nats_max_age_seconds, max_bytes=settings.nats_max_bytes,
                            replicas=settings.nats_replicas, ack_wait_seconds=settings.nats_ack_wait_seconds)
    return LocalLog(log_directory(settings), CONSUMER_NAMES)


class Pipeline:
    def __init__(self, settings: Settings, session_factory: Callable[[], Session], *,
                 counters: Callable[[], Counters | None] = lambda: None, log_: EventLog | None = None,
                 stop_seconds: float = STOP_SECONDS):
        self.settings = settings
        self.stop_seconds = stop_seconds
        self.log = log_ or open_log(settings)
        self.metrics = PipelineMetrics()
        if isinstance(self.log, LocalLog):
            self.log.committer.observe = self.metrics.observe_group
        context = Context(session_factory=session_factory, secret=settings.resolved_secret_key,
                          store=lambda: get_event_store(settings), counters=counters)
        self.counters = counters
        self.session_factory = session_factory
        self._slots_appended: set[str] = set()
        self.postbacks = Postbacks(context)
        self.consumers: list[Consumer] = [Billing(context), Touchpoints(context), StoreEvents(context), self.postbacks]
        self.batch_events = settings.pipeline_batch_events
        self._locks = {c.name: threading.Lock() for c in self.consumers}
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._owner: OwnerLock | None = None
        self._store_claimed = False
        self._claim_warned = float("-inf")
        self._start_lock = threading.Lock()
        self._free_bytes: tuple[int, float] = (0, float("-inf"))  # (free bytes, when asked)
        # Run once this process starts the consumers (at start-up, or on taking over from a process that died):
        # work that belongs beside them, such as attribution.
        self.on_start: list[Callable[[], None]] = []
        # Run first when the process stops, while the log is still open: the same work, stopped.
        self.on_stop: list[Callable[[], None]] = []
        self._closing = threading.Event()

    # ---------- appending ----------

    def check_room(self) -> None:
        """Refuse before appending when the log's disk is nearly full: nothing is acknowledged unstored."""
        minimum = self.settings.log_min_free_bytes
        if not minimum or not isinstance(self.log, LocalLog):
            return
        free, checked_at = self._free_bytes
        now = time.monotonic()
        # Every request asks; the disk is asked again after a while, and every time once it is within a few
        # multiples of the limit.
        if now - checked_at > ROOM_RECHECK_SECONDS or free < ROOM_MARGIN * minimum:
            with contextlib.suppress(OSError):
                free = disk_free_bytes(self.log.directory)
                self._free_bytes = (free, now)
        if free < minimum:
            raise LogUnavailable("the event log's disk is full")

    async def ready(self) -> None:
        """Raise LogUnavailable when the log could not take an append now: its disk nearly full (the local log), or
        the server unreachable or the stream full (JetStream)."""
        self.check_room()
        await self.log.probe_async()

    async def append(self, record: dict[str, Any]) -> None:
        self.check_room()
        await self.log.append_async(record)
        self.metrics.count_appended(record["k"])

    def append_many(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        self.check_room()
        self.log.append(records)
        for record in records:
            self.metrics.count_appended(record["k"])

    # ---------- consuming ----------

    def step(self, consumer: Consumer) -> int:
        """Apply one batch for one consumer; how many records it held."""
        with self._locks[consumer.name]:
            batch = self.log.read(consumer.name, self.batch_events)
            if not batch.records:
                return 0
            started = time.perf_counter()
            consumer.apply(batch.records)
            self.log.commit(consumer.name, batch)
            self.metrics.applied.labels(consumer.name).inc(len(batch.records))
            self.metrics.batch_seconds.labels(consumer.name).observe(time.perf_counter() - started)
            return len(batch.records)

    def drain(self) -> int:
        """Apply everything appended so far, for every consumer."""
        total = 0
        for consumer in self.consumers:
            while (applied := self.step(consumer)) > 0:
                total += applied
        self.expire_reservations()
        return total

    def catch_up(self, name: str) -> datetime:
        """Apply what one consumer has pending when this process may run it; then the watermark: every record
        appended before it has been applied by that consumer (in whichever process runs it)."""
        if (self._owner is not None and self._owner.held) or not isinstance(self.log, LocalLog):
            consumer = next(c for c in self.consumers if c.name == name)
            while not self._closing.is_set() and self.step(consumer):
                pass
        now = utcnow()
        try:
            lag = self.log.lag(name)
        except Exception:  # the log cannot say: claim nothing newer than a minute ago
            log.warning("could not read the lag of %s", name, exc_info=True)
            return now - timedelta(minutes=1)
        return now - timedelta(seconds=lag.seconds) if lag.events else now

    def expire_reservations(self) -> int:
        counters = self.counters()
        if counters is None:
            return 0
        try:
            return counters.expire(time.time())
        except Exception:
            log.warning("could not expire reservations", exc_info=True)
            return 0

    def _run(self, consumer: Consumer) -> None:
        while not self._stop.is_set():
            try:
                if self.step(consumer) >= self.batch_events:
                    continue  # behind: the next batch is already waiting
            except Exception:  # the log keeps everything; the batch is tried again from its checkpoint
                log.exception("consumer %s failed; retrying its batch", consumer.name)
                self._stop.wait(1.0)
                continue
            # Linger so records gather into a batch: a batch's fixed costs (a transaction, the checkpoint's fsync)
            # are paid per batch, and a consumer applying one record at a time would starve the request thread.
            self._stop.wait(LINGER_SECONDS)

    def bill_due_slots(self, now: datetime | None = None) -> int:
        """Append each started CPT slot once per process; billing charges each slot once across restarts."""
        from adstack.campaigns.cpt import due_slots

        with self.session_factory() as session:
            due = due_slots(session, now=now or utcnow())
        fresh = [records.cpt_slot(booking_id=d.booking_id, account_id=d.account_id, campaign_id=d.campaign_id,
                                  ad_group_id=d.ad_group_id, ad_space_id=d.ad_space_id, starts_at=d.slot.start,
                                  amount_micros=d.amount_micros, publisher_id=d.publisher_id,
                                  placement_type=d.placement_type) for d in due]
        fresh = [r for r in fresh if r["id"] not in self._slots_appended]
        self.append_many(fresh)
        self._slots_appended.update(r["id"] for r in fresh)
        return len(fresh)

    def _sweep(self) -> None:
        last_slots = 0.0
        while not self._stop.wait(SWEEP_SECONDS):
            self.expire_reservations()
            if time.monotonic() - last_slots >= SLOT_CHECK_SECONDS:
                last_slots = time.monotonic()
                try:
                    self.bill_due_slots()
                except Exception:
                    log.exception("billing started CPT slots failed; will retry")

    def take_ownership(self) -> bool:
        """Whether this process runs the consumers: JetStream shares the work between processes, where the event
        store allows it (`claim_store`); on the local log one process runs them."""
        if not isinstance(self.log, LocalLog):
            return self.claim_store()
        if self._owner is None:
            self._owner = OwnerLock(self.log.directory / "consumers.lock")
        return self._owner.try_acquire()

    def claim_store(self) -> bool:
        """On NATS with the embedded event store (no ClickHouse server), consumers run only with the data dir whose
        store the stream's events load into: billing, the event store's consumer and attribution all append to the
        store of their own data dir, so processes with data dirs of their own would split the events between stores
        and each report would miss what the others loaded. The first data dir to run consumers claims the stream
        (in JetStream, so every machine sees it); processes with that data dir share the consumers as usual, any
        other is refused (EventStoreElsewhere). False when the log cannot be asked now."""
        if self._store_claimed or self.settings.clickhouse_url or not isinstance(self.log, JetStreamLog):
            return True
        data_dir = str(self.settings.data_dir.resolve())
        mine = {"id": embedded_store_id(self.settings), "host": socket.gethostname(), "data_dir": data_dir}
        try:
            held = self.log.claim_store(mine)
        except LogUnavailable:
            if time.monotonic() - self._claim_warned > 60:  # asked again every second meanwhile
                self._claim_warned = time.monotonic()
                log.warning("could not learn where the event store is; the consumers start once the log answers",
                            exc_info=True)
            return False
        if held.get("id") != mine["id"]:
            raise EventStoreElsewhere(
                f"the events of NATS stream {self.log.stream} load into the embedded event store in "
                f"{held.get('data_dir', '?')} on {held.get('host', '?')}, not into this data dir ({data_dir} on "
                f"{mine['host']}): consumers here would put events in a store no report reads. Run every adstack "
                f"pipeline with that data dir, or set ADSTACK_CLICKHOUSE_URL on every process. If that store is gone "
                f"for good, delete key {STORE_CLAIM_KEY} of key-value bucket {claim_bucket(self.log.stream)}.")
        self._store_claimed = True
        return True

    def start(self) -> bool:
        """Run the consumers in background threads if this process may; False when another process runs them
        (or, on NATS, the log cannot be reached yet)."""
        with self._start_lock:
            return self._start()

    def start_eventually(self) -> None:
        """Start now, or, on NATS, keep trying every second while the log cannot be reached (a serving process
        started before its NATS server); on the local log a process that does not run the consumers leaves them to
        the one that does."""
        if self.start() or isinstance(self.log, LocalLog):
            return

        def keep_trying() -> None:
            while not self._stop.wait(1.0):
                try:
                    if self.start():
                        return
                except EventStoreElsewhere:
                    log.exception("this process does not run the pipeline's consumers")
                    return

        threading.Thread(target=keep_trying, name="adstack-pipeline-start", daemon=True).start()

    def _start(self) -> bool:
        if self._threads:
            return True
        if not self.take_ownership():
            return False
        freeze_startup_heap()
        self._stop.clear()
        for consumer in self.consumers:
            thread = threading.Thread(target=self._run, args=(consumer,), name=f"adstack-consumer-{consumer.name}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)
        sweeper = threading.Thread(target=self._sweep, name="adstack-reservation-sweeper", daemon=True)
        sweeper.start()
        self._threads.append(sweeper)
        for started in self.on_start:
            started()
        return True

    def stop(self) -> None:
        """Take no new batch; wait for those in hand up to `stop_seconds` (STOP_SECONDS unless given) in all (an
        orchestrator's grace period is about 30 s, and the rest of the process stops after this)."""
        self._stop.set()
        deadline = time.monotonic() + self.stop_seconds
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("%s did not finish its batch in time; the batch is applied again when next read",
                            thread.name)
        self._threads = []

    def close(self) -> None:
        self._closing.set()  # a catch-up in progress takes no further batch
        for stopped in self.on_stop:
            try:
                stopped()
            except Exception:
                log.exception("stopping the work beside the consumers failed")
        self.stop()
        self.log.close()
        if self._owner is not None:
            self._owner.release()

    # ---------- observing ----------

    def lag(self) -> dict[str, tuple[int, float]]:
        out = {}
        for consumer in self.consumers:
            try:
                lag = self.log.lag(consumer.name)
            except Exception:
                log.warning("could not read the lag of %s", consumer.name, exc_info=True)
                continue
            out[consumer.name] = (lag.events, lag.seconds)
        return out

    def status(self, *, pending_postbacks: int) -> PipelineStatus:
        """What platform staff watch: each consumer's lag and the money held by outstanding reservations."""
        counters = self.counters()
        held = counters.outstanding() if counters is not None else None
        return PipelineStatus(
            consumers=[ConsumerLag(name=name, lag_events=events, lag_seconds=round(seconds, 3))
                       for name, (events, seconds) in self.lag().items()],
            reservations_outstanding=held.reservations if held else 0, reserved_micros=held.micros if held else 0,
            pending_postbacks=pending_postbacks)


def pending_postbacks(session: Session) -> int:
    from sqlalchemy import func, select

    from adstack.attribution.models import Postback

    return int(session.scalar(select(func.count()).select_from(Postback).where(Postback.status == "pending")) or 0)
