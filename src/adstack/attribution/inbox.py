"""Group commit for the postback inbox: concurrent postbacks share one transaction and one commit.

Each request hands its row to the writer thread and waits; the writer takes every row queued so far, inserts
them (ON CONFLICT DO NOTHING, so a retry stays one row), commits once, and only then answers each request
with whether its row was new. A request is answered 200 only after the commit that holds its row, and a
burst of postbacks costs one commit instead of one each, without writers queueing on the database lock.

On SQLite the attributor takes `WRITE_LOCK` for its transactions too, so the two writers hand the database
over in turn instead of sleeping in SQLite's busy handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine

from adstack.attribution.adapters import ParsedPostback
from adstack.attribution.service import IncomingPostback, accept_postbacks
from adstack.core.vocabulary import Partner

log = logging.getLogger("adstack.attribution")

MAX_BATCH = 500
WRITE_LOCK = threading.Lock()


@dataclass
class _Item:
    app_id: int
    partner: Partner
    parsed: ParsedPostback
    method: str
    fields: dict[str, str]
    received_at: datetime
    done: Future[bool]


class PostbackInbox:
    def __init__(self, engine: Engine):
        self.engine = engine
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.last_put = 0.0  # monotonic time of the last postback received

    def busy(self, within_seconds: float = 0.05) -> bool:
        """Whether postbacks are arriving right now."""
        return time.monotonic() - self.last_put < within_seconds

    async def put(self, *, app_id: int, partner: Partner, parsed: ParsedPostback, method: str,
                  fields: dict[str, str], received_at: datetime) -> bool:
        """Store one postback durably; True when it is new, False for a retry of a stored one."""
        self._ensure_started()
        self.last_put = time.monotonic()
        done: Future[bool] = Future()
        self._queue.put(_Item(app_id, partner, parsed, method, fields, received_at, done))
        return await asyncio.wrap_future(done)

    def _ensure_started(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="adstack-postback-inbox", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[_Item]) -> None:
        incoming = [IncomingPostback(i.app_id, i.partner, i.parsed.dedupe_key, i.method, i.fields, i.received_at)
                    for i in batch]
        try:
            with WRITE_LOCK if self.engine.dialect.name == "sqlite" else contextlib.nullcontext(), \
                    self.engine.begin() as connection:
                results = accept_postbacks(connection, incoming)
        except Exception as exc:  # nothing of this batch is stored: every sender hears so and retries
            log.exception("storing %d postbacks failed", len(batch))
            for item in batch:
                item.done.set_exception(exc)
            return
        for item, new in zip(batch, results, strict=True):
            item.done.set_result(new)

    def stop(self) -> None:
        """Store what is queued, then end the writer."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None
