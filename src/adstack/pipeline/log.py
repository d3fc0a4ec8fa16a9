"""The event log: what tracking, notices and postbacks acknowledge, and what every consumer reads.

`EventLog` is the interface; `LocalLog` is the embedded default and `pipeline.jetstream.JetStreamLog` the one
for several machines. A record is a JSON object with at least `id` (the event's own id, so consumers drop
retries) and `k` (its kind); appending returns only once the record is durable.

`LocalLog` keeps the segment files of the write-ahead journal (`events.journal.Journal`: one segment per
writing process under an exclusive flock, torn tails never read, concurrent appends share one fsync) and adds
one checkpoint per consumer, so each consumer reads at its own pace and restarts from its last committed
offset. A segment is deleted once every consumer has read past it and no process writes to it any more.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from adstack.core.timeutil import utcnow
from adstack.events.journal import Journal, write_atomically

MAX_GROUP_RECORDS = 5_000


class LogUnavailable(Exception):
    """The log cannot store records now (disk full, broker unreachable): answer 503, acknowledge nothing."""


@dataclass
class LogBatch:
    """Records read by one consumer, and where its checkpoint moves once they are applied."""

    records: list[dict[str, Any]] = field(default_factory=list)
    position: dict[str, int] = field(default_factory=dict)  # LocalLog: segment -> byte offset after the batch
    handle: Any = None  # JetStreamLog: the messages to acknowledge


@dataclass(frozen=True)
class Lag:
    events: int
    seconds: float  # age of the oldest unread record, 0 when caught up


class EventLog(Protocol):
    def append(self, records: Sequence[dict[str, Any]]) -> None:
        """Store records durably; raise LogUnavailable when they could not all be stored."""
        ...

    async def append_async(self, record: dict[str, Any]) -> None: ...

    async def probe_async(self) -> None:
        """Raise LogUnavailable when appends could not be stored now (for a readiness probe)."""
        ...

    def read(self, consumer: str, max_records: int) -> LogBatch: ...

    def commit(self, consumer: str, batch: LogBatch) -> None: ...

    def lag(self, consumer: str) -> Lag: ...

    def close(self) -> None: ...


def encode(records: Sequence[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


class GroupCommitter:
    """Appends from many requests, one write and one fsync per group: a request waits for the group that holds
    its record, and the next group forms while the disk syncs."""

    def __init__(self, write: Any, *, name: str):
        self._write = write  # callable(bytes) that returns once the bytes are durable
        self.observe: Any = None  # callable(records in the group, seconds to make it durable), for metrics
        self._queue: queue.SimpleQueue[tuple[bytes, Any, asyncio.AbstractEventLoop | None] | None] = \
            queue.SimpleQueue()
        self._name = name
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _ensure_started(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                    self._thread.start()

    async def submit(self, data: bytes) -> None:
        self._ensure_started()
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queue.put((data, done, loop))
        await done

    def submit_sync(self, data: bytes) -> None:
        self._ensure_started()
        done: Future[None] = Future()
        self._queue.put((data, done, None))
        done.result()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            stop = False
            while len(group) < MAX_GROUP_RECORDS:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                group.append(item)
            error: BaseException | None = None
            started = time.perf_counter()
            try:
                self._write(b"".join(data for data, _, _ in group))
            except Exception as exc:
                error = exc
            if self.observe is not None:
                self.observe(len(group), time.perf_counter() - started)
            self._settle(group, error)
            if stop:
                return

    @staticmethod
    def _settle(group: list[Any], error: BaseException | None) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for _, done, loop in group:
            if loop is None:
                if error is None:
                    done.set_result(None)
                else:
                    done.set_exception(error)
            else:
                by_loop.setdefault(loop, []).append(done)
        for loop, futures in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop closed: its requests are gone anyway
                loop.call_soon_threadsafe(_resolve, futures, error)

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None


def _resolve(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for done in futures:
        if done.done():
            continue
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(LogUnavailable(str(error)))


class LocalLog:
    """The embedded log: journal segments on the local disk, one checkpoint file per consumer."""

    def __init__(self, directory: Path, consumers: Sequence[str], *, segment_bytes: int = 64 * 1024 * 1024):
        self.directory = directory
        self.consumers = tuple(consumers)
        self.journal = Journal(directory, segment_bytes=segment_bytes)
        self.committer = GroupCommitter(self._write, name="adstack-log-writer")
        self._collect_lock = threading.Lock()
        self._last_collect = 0.0

    # ---------- writing ----------

    def _write(self, data: bytes) -> None:
        try:
            self.journal.append(data)
        except OSError as exc:
            raise LogUnavailable(f"the event log could not store the records: {exc.strerror or exc}") from exc

    def append(self, records: Sequence[dict[str, Any]]) -> None:
        if records:
            self.committer.submit_sync(encode(records))

    async def append_async(self, record: dict[str, Any]) -> None:
        await self.committer.submit(orjson.dumps(record) + b"\n")

    async def probe_async(self) -> None:
        # The disk's free space is the pipeline's check (`Pipeline.check_room`), made before every append too.
        if not os.access(self.directory, os.W_OK):
            raise LogUnavailable(f"the event log's directory {self.directory} cannot be written")

    # ---------- reading ----------

    def _checkpoint_path(self, consumer: str) -> Path:
        return self.directory / f"consumer-{consumer}.json"

    def checkpoint(self, consumer: str) -> dict[str, int]:
        path = self._checkpoint_path(consumer)
        if not path.exists():
            return {}
        loaded: dict[str, int] = orjson.loads(path.read_bytes())
        return loaded

    def read(self, consumer: str, max_records: int) -> LogBatch:
        done = self.checkpoint(consumer)
        batch = LogBatch()
        for name in self.journal.segments():
            if len(batch.records) >= max_records:
                break
            offset = done.get(name, 0)
            lines, end = self.journal._read_lines(name, offset, max_records - len(batch.records))
            if end > offset:
                batch.position[name] = end
                batch.records.extend(orjson.loads(line) for line in lines)
        return batch

    def commit(self, consumer: str, batch: LogBatch) -> None:
        if not batch.position:
            return
        done = self.checkpoint(consumer)
        done.update(batch.position)
        live = set(self.journal.segments())
        write_atomically(self._checkpoint_path(consumer),
                         orjson.dumps({name: end for name, end in done.items() if name in live}))
        now = time.monotonic()
        if now - self._last_collect > 5:
            self._last_collect = now
            self.collect()

    def collect(self) -> None:
        """Delete segments every consumer has read to the end of and nobody writes to."""
        with self._collect_lock:
            checkpoints = [self.checkpoint(c) for c in self.consumers]
            for name in self.journal.segments():
                path = self.directory / name
                try:
                    size = path.stat().st_size
                except FileNotFoundError:
                    continue
                if name == self.journal._segment or Journal._in_use(path):
                    continue
                if all(c.get(name, 0) >= size for c in checkpoints):
                    path.unlink(missing_ok=True)

    def lag(self, consumer: str) -> Lag:
        done = self.checkpoint(consumer)
        events = 0
        oldest: float | None = None
        for name in self.journal.segments():
            offset = done.get(name, 0)
            try:
                with open(self.directory / name, "rb") as handle:
                    handle.seek(offset)
                    pending = handle.read()
            except FileNotFoundError:
                continue
            complete = pending[:pending.rfind(b"\n") + 1]
            count = complete.count(b"\n")
            if count and oldest is None:
                first = orjson.loads(complete[:complete.find(b"\n")])
                oldest = float(first.get("ts", 0)) / 1000
            events += count
        seconds = max(0.0, utcnow().timestamp() - oldest) if oldest else 0.0
        return Lag(events=events, seconds=seconds)

    def close(self) -> None:
        self.committer.stop()
        self.journal.close()


def disk_free_bytes(directory: Path) -> int:
    stats = os.statvfs(directory)
    return stats.f_bavail * stats.f_frsize
