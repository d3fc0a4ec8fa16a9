"""The event store: append-only, durable on acknowledgement, each event_id counted once.

Writers call `get_event_store(settings).append(events)`. The events go to the write-ahead journal
(fsynced) and a loader drains the journal into ClickHouse in batches: embedded chDB under the data dir
by default, or a ClickHouse server when `settings.clickhouse_url` is set. Readers call `flush()` first
when they need everything appended so far (reports do), or rely on the background loader, which runs
in a served process.

Counting each id once is the loader's job, not the reader's: before a batch is inserted its ids are
looked up in `event_ids` (every id ever loaded, sorted by id) and the ones already there are left out.
So the raw table and the rollups fed from it hold each event once, and reports read the rollup
without FINAL or a second pass. A crash between the lookup and the insert is covered by the journal's
in-flight record: the same rows are inserted again with the same deduplication token, which ClickHouse
ignores in every table the first attempt already reached.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC
from pathlib import Path
from typing import Any

import orjson

from adstack.core.settings import Settings
from adstack.core.timeutil import as_utc
from adstack.events.engines import EMBEDDED_LOCK, ChdbEngine, ClickHouseServerEngine, Engine, QueryResult
from adstack.events.journal import InFlight, Journal
from adstack.events.models import Event, EventType
from adstack.events.remote import OwnerLock, QueryServer, StoreUnavailable, remote_query
from adstack.events.schema import EVENT_IDS_TABLE, EVENTS_TABLE, ddl, upgrade

log = logging.getLogger("adstack.events")

MAX_EVENT_ID_LENGTH = 200
LOAD_BATCH_EVENTS = 50_000
_EVENT_TYPES = frozenset(t.value for t in EventType)


def event_record(event: Event) -> dict[str, Any]:
    """The journal's (and the raw table's) JSON shape of an event; refuses records no writer should send."""
    if not event.event_id or len(event.event_id) > MAX_EVENT_ID_LENGTH:
        raise ValueError(f"event_id must have 1..{MAX_EVENT_ID_LENGTH} characters")
    if str(event.event_type) not in _EVENT_TYPES:
        raise ValueError(f"unknown event type {event.event_type!r}")
    if event.account_id < 0 or (event.account_id == 0 and event.event_type != EventType.AD_REQUEST):
        raise ValueError("account_id must be positive (0 only for the platform's ad requests)")
    if event.media_cost_micros is not None and event.media_cost_micros < 0:
        raise ValueError("media_cost_micros cannot be negative")
    occurred = event.occurred_at if event.occurred_at.tzinfo is UTC else as_utc(event.occurred_at)
    return {
        "event_id": event.event_id,
        "event_type": str(event.event_type),
        # The UTC isoformat cut before its "+00:00": cheaper than strftime, or than formatting a naive copy.
        "occurred_at": occurred.isoformat(" ", "milliseconds")[:23],
        "account_id": event.account_id,
        "campaign_id": event.campaign_id,
        "ad_group_id": event.ad_group_id,
        "creative_id": event.creative_id,
        "ad_space_id": event.ad_space_id,
        "publisher_id": event.publisher_id,
        "placement_type": event.placement_type,
        "country": event.country.upper(),
        "objective": event.objective,
        "app_package": event.app_package,
        "device_hash": event.device_hash & 0xFFFF_FFFF_FFFF_FFFF,
        "conversion_event": event.conversion_event,
        "attribution_type": event.attribution_type,
        "partner": event.partner,
        "revenue_micros": event.revenue_micros,
        "cost_micros": event.cost_micros,
        "media_cost_micros": event.media_cost_micros,
        "attrs": {str(k): str(v) for k, v in event.attrs.items()} if event.attrs else {},
    }


class EventStore:
    """One store per location (a data dir with chDB, or a ClickHouse server), shared by the process."""

    def __init__(self, *, journal_dir: Path, chdb_path: Path | None = None, clickhouse_url: str | None = None,
                 batch_events: int = LOAD_BATCH_EVENTS, may_own: bool = True):
        if (chdb_path is None) == (clickhouse_url is None):
            raise ValueError("name exactly one of chdb_path and clickhouse_url")
        self.journal = Journal(journal_dir)
        self.chdb_path = chdb_path
        self.clickhouse_url = clickhouse_url
        self.batch_events = batch_events
        self._engine: Engine | None = None
        # Embedded stores share the process's chDB lock: one lock, so taking the chDB slot from another
        # store can never deadlock with that store's own work.
        self._lock = EMBEDDED_LOCK if chdb_path is not None else threading.RLock()
        self._loader: threading.Thread | None = None
        self._stop = threading.Event()
        self._closed = False
        # Several processes may share an embedded store: the owner opens chDB and answers the others' reads.
        self._owner = OwnerLock(chdb_path.parent / "chdb.owner") if chdb_path is not None else None
        self._socket = chdb_path.parent / "store.sock" if chdb_path is not None else None
        self._server: QueryServer | None = None
        # An embedded store's owner loads it and answers every process's reads. A serving process whose pipeline
        # runs in another process leaves that to it: loading would take CPU from the requests it serves.
        self.may_own = may_own

    @property
    def embedded(self) -> bool:
        return self.chdb_path is not None

    # ---------- engine ----------

    def engine(self) -> Engine:
        """The open engine; an embedded store takes the process's one chDB slot from any other store."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the event store is closed")
            if self._engine is not None:
                return self._engine
            if self.chdb_path is not None:
                assert self._owner is not None and self._socket is not None
                if not self.may_own:
                    raise StoreUnavailable("the process that runs the pipeline owns the embedded event store")
                if not self._owner.try_acquire():
                    raise StoreUnavailable("another process owns the embedded event store")
                _release_embedded_slot(except_for=self)
                engine: Engine = ChdbEngine(self.chdb_path)
                _registry.embedded_owner = self
            else:
                assert self.clickhouse_url is not None
                engine = ClickHouseServerEngine(self.clickhouse_url)
            # Upgrade what an earlier version made first: creating a view that exists still checks its query.
            columns: dict[str, set[str]] = {}
            for table, column in engine.query(
                    "SELECT table, name FROM system.columns WHERE database = currentDatabase()").rows:
                columns.setdefault(table, set()).add(column)
            for statement in [*upgrade(columns), *ddl()]:
                engine.command(statement)
            self._engine = engine
            if self._socket is not None and self._server is None:
                self._server = QueryServer(self._socket, self._answer_bound)
            return engine

    def owns(self) -> bool:
        """Whether this process runs the store's engine (always, for a ClickHouse server)."""
        if self._owner is None or self._engine is not None:
            return True
        return self.may_own and self._owner.try_acquire()

    def _answer_bound(self, sql: str, bound: dict[str, str], fresh: bool) -> QueryResult:
        with self._lock:
            engine = self.engine()
            if fresh and self.journal.pending_bytes():
                self._drain()
            assert isinstance(engine, ChdbEngine)
            return engine.query_bound(sql, bound)

    def _suspend(self) -> None:
        """Load what is pending and close the engine; the next use reopens it."""
        with self._lock:
            if self._engine is None:
                return
            try:
                self._drain()
            finally:
                if self._server is not None:
                    self._server.close()
                    self._server = None
                self._engine.close()
                self._engine = None
                self.journal.close()  # file handles too; the next append opens a fresh segment
                if self._owner is not None:
                    self._owner.release()

    # ---------- writing ----------

    def append(self, events: Sequence[Event]) -> None:
        """Durably record events: when this returns they survive a crash. Ids seen before count once."""
        if not events:
            return
        if self._closed:
            raise RuntimeError("the event store is closed")
        payload = bytearray()
        for event in events:
            # Each line joins the payload at once, and its memory serves the next: thousands of lines kept apart
            # until joined cost twice as much again as serialising them.
            payload += orjson.dumps(event_record(event), option=orjson.OPT_APPEND_NEWLINE)
        self.journal.append(bytes(payload))
        for listener in tuple(_listeners):
            listener(events)

    def flush(self) -> None:
        """Load everything appended so far, so queries see it (in another process: the owner does it)."""
        if not self.owns():
            remote_query(self._socket_path(), "SELECT 1", None, fresh=True)
            return
        with self._lock:
            self.engine()
            self._drain()

    def pending_bytes(self) -> int:
        return self.journal.pending_bytes()

    def _drain(self) -> None:
        engine = self._engine
        assert engine is not None
        with self.journal.loader_lock():
            self._recover(engine)
            while True:
                batch = self.journal.read_batch(self.batch_events)
                if not batch.lines:
                    return
                rows = _unique_rows(batch.lines)
                existing = self._existing_ids(engine, [r[0] for r in rows])
                inflight = InFlight(token=uuid.uuid4().hex, start=batch.start, end=batch.end,
                                    skipped_ids=sorted(existing))
                self.journal.begin(inflight)
                self._insert(engine, rows, existing, inflight.token)
                self.journal.finish(inflight)

    def _recover(self, engine: Engine) -> None:
        """Redo an insert a crash interrupted, with the same rows and token, so it lands exactly once."""
        inflight = self.journal.inflight()
        if inflight is None:
            return
        done = self.journal.checkpoint()
        segments = set(self.journal.segments())
        unfinished = {name: end for name, end in inflight.end.items()
                      if name in segments and done.get(name, 0) < end}
        if unfinished:
            lines = self.journal.read_ranges(inflight.start, inflight.end)
            log.warning("redoing an interrupted event load of %d lines", len(lines))
            self._insert(engine, _unique_rows(lines), set(inflight.skipped_ids), inflight.token)
        self.journal.finish(inflight)

    @staticmethod
    def _existing_ids(engine: Engine, ids: list[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(ids), 10_000):
            chunk = ids[start:start + 10_000]
            result = engine.query(
                f"SELECT event_id FROM {EVENT_IDS_TABLE} WHERE event_id IN {{ids:Array(String)}}", {"ids": chunk})  # noqa: S608
            found.update(row[0] for row in result.rows)
        return found

    @staticmethod
    def _insert(engine: Engine, rows: list[tuple[str, bytes]], skip: set[str], token: str) -> None:
        payload = b"\n".join(line for event_id, line in rows if event_id not in skip)
        if payload:
            engine.insert_json_rows(EVENTS_TABLE, payload, token=token)

    # ---------- reading ----------

    def query(self, sql: str, params: Mapping[str, Any] | None = None, *, fresh: bool = True) -> QueryResult:
        """Run a read over the store's tables; `fresh` loads pending events first (read-your-writes)."""
        if not self.owns():
            return remote_query(self._socket_path(), sql, params, fresh=fresh)
        with self._lock:
            engine = self.engine()
            if fresh and self.journal.pending_bytes():
                self._drain()
            return engine.query(sql, params)

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        with self._lock:
            self.engine().command(sql, params)

    # ---------- lifecycle ----------

    def start_loader(self, interval_seconds: float = 1.0) -> None:
        """Drain the journal in the background, so reports stay current without explicit flushes."""
        with self._lock:
            if self._loader is not None and self._loader.is_alive():
                return
            self._stop.clear()
            self._loader = threading.Thread(target=self._run_loader, args=(interval_seconds,),
                                            name="adstack-event-loader", daemon=True)
            self._loader.start()

    def _socket_path(self) -> Path:
        assert self._socket is not None
        return self._socket

    def _run_loader(self, interval_seconds: float) -> None:
        while not self._stop.wait(interval_seconds):
            try:
                if self.owns():  # a waiting process takes over a dead owner
                    self.engine()  # opened at once: the other processes' reads come to the owner
                    if self.journal.pending_bytes():
                        self.flush()
            except Exception:  # keep loading later; the journal still holds everything
                log.exception("event load failed; will retry")

    def stop_loader(self) -> None:
        self._stop.set()
        loader = self._loader
        if loader is not None:
            loader.join(timeout=30)
        self._loader = None

    def close(self) -> None:
        """Load what is pending, then release the engine and the journal."""
        self.stop_loader()
        with self._lock:
            if self._closed:
                return
            try:
                if self._engine is not None or (self.journal.pending_bytes() and self.owns()):
                    self.engine()
                    self._suspend()
            finally:
                self._closed = True
                self.journal.close()
                if self._server is not None:
                    self._server.close()
                    self._server = None
                if self._owner is not None:
                    self._owner.release()
                if _registry.embedded_owner is self:
                    _registry.embedded_owner = None


def _unique_rows(lines: list[bytes]) -> list[tuple[str, bytes]]:
    """(event_id, line) pairs, the first of each id only, in journal order."""
    seen: set[str] = set()
    rows: list[tuple[str, bytes]] = []
    for line in lines:
        event_id = orjson.loads(line)["event_id"]
        if event_id not in seen:
            seen.add(event_id)
            rows.append((event_id, line))
    return rows


# ---------- process-wide access ----------


class _Registry:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stores: dict[str, EventStore] = {}
        self.embedded_owner: EventStore | None = None


_registry = _Registry()


def _release_embedded_slot(*, except_for: EventStore) -> None:
    owner = _registry.embedded_owner
    if owner is not None and owner is not except_for:
        owner._suspend()
        _registry.embedded_owner = None


EventListener = Callable[[Sequence[Event]], None]
_listeners: list[EventListener] = []


def add_listener(listener: EventListener) -> None:
    """Called with every batch once it is durable (e.g. serving learns click and conversion rates from it).
    Listeners must be quick and must not raise."""
    if listener not in _listeners:
        _listeners.append(listener)


def remove_listener(listener: EventListener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def store_location(settings: Settings) -> str:
    if settings.clickhouse_url:
        return f"{settings.clickhouse_url}#{settings.data_dir.resolve()}"
    return str(settings.data_dir.resolve())


def get_event_store(settings: Settings) -> EventStore:
    """The process's store for these settings (one per data dir or ClickHouse server)."""
    key = store_location(settings)
    with _registry.lock:
        store = _registry.stores.get(key)
        if store is None or store._closed:
            events_dir = settings.data_dir / "events"
            if settings.clickhouse_url:
                store = EventStore(journal_dir=events_dir / "journal", clickhouse_url=settings.clickhouse_url)
            else:
                store = EventStore(journal_dir=events_dir / "journal", chdb_path=events_dir / "chdb",
                                   may_own=settings.pipeline_in_process)
            _registry.stores[key] = store
        elif settings.pipeline_in_process:
            store.may_own = True  # this process runs the pipeline after all (`adstack pipeline`)
        return store


STORE_ID_FILE = "store.id"


def embedded_store_id(settings: Settings) -> str:
    """The id of the embedded store under this data dir, made on first use: it travels with the data dir, so the
    one store keeps its id when its files move to another machine, and a new data dir is another store."""
    events_dir = settings.data_dir / "events"
    path = events_dir / STORE_ID_FILE
    if not path.exists():
        events_dir.mkdir(parents=True, exist_ok=True)
        # Written aside, then linked into place: processes starting together all read the one that won.
        draft = events_dir / f".{STORE_ID_FILE}.{uuid.uuid4().hex}"
        try:
            draft.write_text(uuid.uuid4().hex)
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink(missing_ok=True)
    return path.read_text().strip()


def close_event_store(settings: Settings) -> None:
    with _registry.lock:
        store = _registry.stores.pop(store_location(settings), None)
    if store is not None:
        store.close()


def close_all_event_stores() -> None:
    with _registry.lock:
        stores = list(_registry.stores.values())
        _registry.stores.clear()
    for store in stores:
        store.close()


# An embedded engine still open when the interpreter finalises crashes the process (exit status 139) after its
# work is done; closing every store first also loads what is pending.
atexit.register(close_all_event_stores)
