"""The event log on NATS JetStream, for several serving and consumer processes on several machines.

- One stream (`ADSTACK_EVENTS`, file storage) with a subject per record kind and partition,
  `adstack.events.<kind>.<partition>`: the partition is a hash of the account (tracking, billing) so a deployment
  can later pin consumers to partitions without changing what is written.
- The stream keeps records by age (limits retention, `max_age`, 7 days unless set) whether or not they were
  applied, and refuses appends once full (`max_bytes`, discard new) rather than drop records not yet applied; see
  docs/architecture.md for why not interest retention. The stream is created with the settings; an existing
  stream keeps what an operator set on it, and only the settings given explicitly (and a missing subject) are
  applied to it at start-up.
- Appends publish with the record id as `Nats-Msg-Id`: the server drops a repeat within its duplicate window, and
  acknowledges only what its file store holds, so a 200/204 means stored.
- Each consumer is a durable pull consumer with explicit acks. Processes running the same consumer share its
  messages; a batch not acknowledged in time (its process died) is delivered again, and the consumers are
  idempotent by id, so it applies once.

nats-py is asyncio-only; this class runs one event loop in a background thread and exposes the same blocking
interface as `LocalLog`, plus `append_async` for request handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
import zlib
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

import orjson

from adstack.core.timeutil import utcnow
from adstack.pipeline.log import Lag, LogBatch, LogUnavailable

STREAM = "ADSTACK_EVENTS"
SUBJECT_PREFIX = "adstack.events"
PARTITIONS = 16
PUBLISH_TIMEOUT_SECONDS = 5.0
ACK_WAIT_SECONDS = 30.0
CLOSE_TIMEOUT_SECONDS = 2.0
# Readiness: asked of the server at most once a second, however often probes come; a stream within this much of
# its size limit counts as full (a record is up to a couple of KB).
PROBE_SECONDS = 1.0
PROBE_TIMEOUT_SECONDS = 2.0
PROBE_ROOM_BYTES = 64 * 1024
DUPLICATE_WINDOW_SECONDS = 120.0
# Longer than a consumer should ever lag: a record older than this is deleted whether or not it was applied.
DEFAULT_MAX_AGE_SECONDS = 7 * 24 * 3600


# Which data dir's embedded event store this stream's events go to (see `JetStreamLog.claim_store`).
STORE_CLAIM_KEY = "embedded-event-store"


def claim_bucket(stream: str) -> str:
    return f"{stream}_STORE"


def subject_for(record: dict[str, Any], prefix: str = SUBJECT_PREFIX) -> str:
    """Partitioned by account (billing locks one wallet per account), else by the record's own id."""
    owner = str(record.get("a") or record.get("account_id") or record["id"])
    return f"{prefix}.{record['k']}.{zlib.crc32(owner.encode()) % PARTITIONS}"


class JetStreamLog:
    def __init__(self, url: str, consumers: Sequence[str], *, stream: str = STREAM,
                 subject_prefix: str = SUBJECT_PREFIX, max_age_seconds: int | None = None,
                 max_bytes: int | None = None, replicas: int | None = None,
                 ack_wait_seconds: float = ACK_WAIT_SECONDS):
        self.url = url
        self.consumers = tuple(consumers)
        self.stream = stream
        self.subject_prefix = subject_prefix
        # None: the default when the stream is created, and whatever an existing stream has.
        self.max_age_seconds = max_age_seconds
        self.max_bytes = max_bytes
        self.replicas = replicas
        self.ack_wait_seconds = ack_wait_seconds
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="adstack-jetstream", daemon=True)
        self._thread.start()
        self._nc: Any = None
        self._js: Any = None
        self._subscriptions: dict[str, Any] = {}
        self._connect_lock = threading.Lock()
        self._closed = False
        self._probed: tuple[float, str | None] = (float("-inf"), None)  # (when, why appends would fail)

    # ---------- plumbing ----------

    def _call(self, coro: Any, timeout: float = 30.0) -> Any:
        if self._closed:  # the loop no longer runs: waiting for it would only run out the timeout
            coro.close()
            raise LogUnavailable("the event log (NATS JetStream) is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _ensure(self) -> Any:
        if self._js is not None and self._nc is not None and self._nc.is_connected:
            return self._js
        import nats

        # A few quick attempts: a request waiting for an unreachable log is answered 503, not held.
        self._nc = await nats.connect(self.url, connect_timeout=1, max_reconnect_attempts=2,
                                      reconnect_time_wait=0.2, allow_reconnect=True)
        js = self._nc.jetstream(timeout=PUBLISH_TIMEOUT_SECONDS)
        await self._ensure_stream(js)
        self._js = js
        return js

    async def _ensure_stream(self, js: Any) -> None:
        from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
        from nats.js.errors import NotFoundError

        subject = f"{self.subject_prefix}.>"
        try:
            info = await js.stream_info(self.stream)
        except NotFoundError:
            try:
                await js.add_stream(StreamConfig(
                    name=self.stream, subjects=[subject], storage=StorageType.FILE, retention=RetentionPolicy.LIMITS,
                    discard=DiscardPolicy.NEW, max_age=float(self.max_age_seconds or DEFAULT_MAX_AGE_SECONDS),
                    max_bytes=self.max_bytes or -1, num_replicas=self.replicas or 1,
                    duplicate_window=DUPLICATE_WINDOW_SECONDS))
                return
            except Exception as refused:  # another process created it just now, maybe with other settings
                try:
                    info = await js.stream_info(self.stream)
                except NotFoundError:
                    raise refused from None  # the server refused the settings (e.g. replicas without a cluster)
        # An existing stream keeps what an operator set on it through the JetStream API; only what this process was
        # explicitly given, and a subject it writes to, are applied.
        config = info.config
        wanted = {"max_age": None if self.max_age_seconds is None else float(self.max_age_seconds),
                  "max_bytes": self.max_bytes, "num_replicas": self.replicas}
        changed: dict[str, Any] = {name: value for name, value in wanted.items()
                                   if value is not None and getattr(config, name) != value}
        if subject not in (config.subjects or []):
            changed["subjects"] = [*(config.subjects or []), subject]
        if changed:
            await js.update_stream(config.evolve(**changed))

    # ---------- appending ----------

    async def _publish(self, records: Sequence[dict[str, Any]]) -> None:
        try:
            js = await self._ensure()
            acks = [js.publish(subject_for(r, self.subject_prefix), orjson.dumps(r), headers={"Nats-Msg-Id": r["id"]})
                    for r in records]
            await asyncio.gather(*acks)
        except Exception as exc:  # unreachable, timed out or refused: nothing is acknowledged to the client
            raise LogUnavailable(f"the event log (NATS JetStream) did not store the records: {exc}") from exc

    def append(self, records: Sequence[dict[str, Any]]) -> None:
        if records:
            try:
                self._call(self._publish(records), timeout=PUBLISH_TIMEOUT_SECONDS * 2)
            except TimeoutError as exc:
                raise LogUnavailable("the event log (NATS JetStream) did not answer in time") from exc

    async def append_async(self, record: dict[str, Any]) -> None:
        future: Future[None] = asyncio.run_coroutine_threadsafe(self._publish([record]), self._loop)
        try:
            await asyncio.wait_for(asyncio.wrap_future(future), PUBLISH_TIMEOUT_SECONDS * 2)
        except TimeoutError as exc:
            raise LogUnavailable("the event log (NATS JetStream) did not answer in time") from exc

    # ---------- readiness ----------

    async def _probe(self) -> str | None:
        try:
            js = await self._ensure()
            info = await js.stream_info(self.stream)
        except Exception as exc:
            return f"the event log (NATS JetStream) cannot be reached: {exc or type(exc).__name__}"
        limit = int(info.config.max_bytes or -1)
        if limit > 0 and int(info.state.bytes or 0) + PROBE_ROOM_BYTES > limit:
            return "the event log (NATS JetStream) is full: appends are refused until records age out"
        return None

    async def probe_async(self) -> None:
        when, problem = self._probed
        if time.monotonic() - when >= PROBE_SECONDS:
            if self._closed:
                problem = "the event log (NATS JetStream) is closed"
            else:
                future = asyncio.run_coroutine_threadsafe(self._probe(), self._loop)
                try:
                    problem = await asyncio.wait_for(asyncio.wrap_future(future), PROBE_TIMEOUT_SECONDS)
                except TimeoutError:
                    problem = "the event log (NATS JetStream) did not answer in time"
            self._probed = (time.monotonic(), problem)
        if problem is not None:
            raise LogUnavailable(problem)

    # ---------- the embedded event store's place ----------

    async def _claim_store(self, claim: dict[str, Any]) -> dict[str, Any]:
        from nats.js.api import StorageType
        from nats.js.errors import BucketNotFoundError, KeyWrongLastSequenceError

        js = await self._ensure()
        bucket = claim_bucket(self.stream)
        try:
            kv = await js.key_value(bucket)
        except BucketNotFoundError:  # two processes creating it at once is fine: the configs are the same
            kv = await js.create_key_value(bucket=bucket, history=1, storage=StorageType.FILE,
                                           replicas=self.replicas or 1,
                                           description=f"where the embedded event store of {self.stream} is")
        try:
            await kv.create(STORE_CLAIM_KEY, orjson.dumps(claim))  # only if no store has claimed the stream yet
            return claim
        except KeyWrongLastSequenceError:
            entry = await kv.get(STORE_CLAIM_KEY)
            held: dict[str, Any] = orjson.loads(entry.value or b"{}")
            return held

    def claim_store(self, claim: dict[str, Any]) -> dict[str, Any]:
        """Record `claim` (an embedded event store's id and place) as the one store this stream's events load into,
        unless one was recorded first; the claim that holds. Without it, consumer processes with data dirs of their
        own would each load part of the events into a store of their own, and every report would miss the rest."""
        try:
            held: dict[str, Any] = self._call(self._claim_store(claim), timeout=PUBLISH_TIMEOUT_SECONDS * 2)
        except Exception as exc:
            raise LogUnavailable(f"the event log (NATS JetStream) could not be asked where the event store is: "
                                 f"{exc or type(exc).__name__}") from exc
        return held

    # ---------- consuming ----------

    async def _subscription(self, consumer: str) -> Any:
        subscription = self._subscriptions.get(consumer)
        if subscription is None:
            from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
            from nats.js.errors import NotFoundError

            js = await self._ensure()
            durable = f"adstack-{consumer}"
            try:  # a consumer made with another ack wait takes the one set now
                existing = (await js.consumer_info(self.stream, durable)).config
            except NotFoundError:
                existing = None
            if existing is not None and existing.ack_wait != self.ack_wait_seconds:
                await js.add_consumer(self.stream, config=dataclasses.replace(existing, ack_wait=self.ack_wait_seconds))
            subscription = await js.pull_subscribe(
                f"{self.subject_prefix}.>", durable=durable, stream=self.stream,
                config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=self.ack_wait_seconds,
                                      deliver_policy=DeliverPolicy.ALL, max_ack_pending=100_000))
            self._subscriptions[consumer] = subscription
        return subscription

    async def _fetch(self, consumer: str, max_records: int) -> LogBatch:
        from nats.errors import TimeoutError as NatsTimeout

        subscription = await self._subscription(consumer)
        try:
            messages = await subscription.fetch(batch=max_records, timeout=0.2)
        except (TimeoutError, NatsTimeout):
            return LogBatch()
        return LogBatch(records=[orjson.loads(m.data) for m in messages], handle=messages)

    def read(self, consumer: str, max_records: int) -> LogBatch:
        batch: LogBatch = self._call(self._fetch(consumer, max_records))
        return batch

    async def _ack(self, messages: list[Any]) -> None:
        for message in messages:
            await message.ack()
        await self._nc.flush()

    def commit(self, consumer: str, batch: LogBatch) -> None:
        if batch.handle:
            self._call(self._ack(batch.handle))

    async def _lag(self, consumer: str) -> Lag:
        js = await self._ensure()
        await self._subscription(consumer)
        info = await js.consumer_info(self.stream, f"adstack-{consumer}")
        events = int(info.num_pending or 0) + int(info.num_ack_pending or 0)
        seconds = 0.0
        if events:
            oldest = (info.ack_floor.stream_seq or 0) + 1
            try:
                message = await js.get_msg(self.stream, seq=oldest)
                seconds = max(0.0, utcnow().timestamp() - float(orjson.loads(message.data).get("ts", 0)) / 1000)
            except Exception:  # purged or not yet readable: the count still says there is lag
                seconds = 0.0
        return Lag(events=events, seconds=seconds)

    def lag(self, consumer: str) -> Lag:
        lag: Lag = self._call(self._lag(consumer))
        return lag

    def close(self) -> None:
        """Close the connection at once. Every append and acknowledgement has been answered by then (each waits for
        the server), so there is nothing to drain; messages fetched and not acknowledged are delivered again after
        the ack wait. (Draining instead waited out its timeout on the pull subscriptions: 10 s of every stop.)"""
        if self._closed:
            return

        async def shut() -> None:
            if self._nc is not None:
                await self._nc.close()

        with contextlib.suppress(Exception):  # already closed or unreachable
            self._call(shut(), timeout=CLOSE_TIMEOUT_SECONDS)
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=CLOSE_TIMEOUT_SECONDS)
