"""Retention: how long the tables that grow with traffic keep their rows, and the pruning that holds them to it.

- Touchpoints: attribution looks for a touch within the app's click lookback (at most 30 days) or view-through
  window (at most 7 days) before the conversion, so clicks are kept `touchpoint_retention_days` (90; at least
  31) and impressions, a hundred for each click, `impression_touchpoint_retention_days` (30; at least 8, at most
  the clicks'). A touch is found by a postback that arrives within that time less the lookback after the
  conversion it reports; one reporting an older conversion, with no install of the device known, is attributed
  without its touch and not charged. The tokens touches come from expire within a day, so a pruned touch cannot
  be counted twice.
- Postbacks: kept as received `postback_retention_days` once processed (180; at least 30), so a partner's retry is
  still recognised, by its key or its fields, and support can read what was sent. A pending postback stays until
  it is attributed.
- Refused postbacks and invalid-traffic records are inspection aids, kept a shorter time.
- Webhook deliveries (with their attempts) and mail that was sent or given up on: `delivery_retention_days` (90),
  for an account to see what was sent where; a mail's body names people, and nothing reads either once settled.
  Pending ones stay until delivered or given up. The events they came from stay, so a condition already notified
  is never notified again.

Reports do not read these tables: they count from the event store and the ledger, which keep everything.
Rows go in chunks, each its own transaction, so pruning never holds the write lock for long; a table without an
index on its time is pruned from its oldest row on, through the primary key (rows are appended in time order),
and stops at the first row it must keep. Impressions go sooner than the clicks among them: their walk starts where
the last one stopped (a `RetentionCursor`) and passes the clicks it leaves. The newest row of a table always stays
(see `_below_newest`).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, case, delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from adstack.attribution.locks import WRITE_LOCK
from adstack.attribution.models import Postback, PostbackStatus, RejectedPostback, Touchpoint
from adstack.attribution.rules import TouchKind
from adstack.core.background import Periodic
from adstack.core.db import insert_many
from adstack.core.settings import Settings
from adstack.core.timeutil import utcnow
from adstack.notifications.models import DeliveryStatus, QueuedMail, WebhookDelivery
from adstack.retention.models import RetentionCursor
from adstack.tracking.models import InvalidTraffic, InvalidTrafficOverflow

log = logging.getLogger("adstack.retention")

CHUNK_ROWS = 5_000
Turn = Callable[[], AbstractContextManager[Any]]
Halt = Callable[[], bool]
RETENTION_SECONDS = 3_600.0
FIRST_RUN_SECONDS = 60.0  # after start: not in the way of a process warming up


def _table(model: Any) -> Table:
    return cast(Table, model.__table__)


def _below_newest(table: Table) -> ColumnElement[bool]:
    """Never the row with the highest id: SQLite gives a new row the highest id left plus one, so emptying a
    table would hand out ids again that other tables still hold (a conversion's postback id, say)."""
    return table.c.id < select(func.max(table.c.id)).scalar_subquery()


def _cursor(session: Session, name: str) -> int:
    return session.scalar(select(RetentionCursor.position).where(RetentionCursor.name == name)) or 0


def _advance_cursor(session: Session, name: str, position: int) -> None:
    """Move the cursor forward (never back: another process may have walked further)."""
    cursors = _table(RetentionCursor)
    insert_many(session.connection(), cursors, ("name", "position"), [(name, 0)], ignore_duplicates=True)
    session.execute(update(cursors).where(cursors.c.name == name, cursors.c.position < position)
                    .values(position=position))


def _walk(session: Session, table: Table, passed: ColumnElement[bool], turn: Turn, halt: Halt, *,
          removable: ColumnElement[bool] | None = None, cursor: str | None = None) -> int:
    """Walk the table by id while its rows are `passed` (old enough), deleting them, or only the `removable` among
    them and leaving the rest for a longer retention; stop at the first row that is not passed.

    Without a `cursor` the walk starts at the oldest row each run, and stops at once where nothing has aged. With
    one it starts after the highest id an earlier walk passed (kept in `retention_cursors`), so the rows it leaves
    are not read again; a row committed late with an id below the cursor is left to the longer retention, and so is
    a passed table's newest row (see `_below_newest`)."""
    ids = table.c.id
    flag = case((passed, 1), else_=0)
    position: int | None = _cursor(session, cursor) if cursor is not None else None  # None: from the first id
    if position is not None and position > (session.scalar(select(func.max(ids))) or 0):
        position = 0  # the table was emptied or restored from before the cursor: walk it again from the start
        with turn():
            session.execute(update(_table(RetentionCursor)).where(RetentionCursor.name == cursor).values(position=0))
            session.commit()
    removed = 0
    while not halt():
        after = [] if position is None else [ids > position]
        rows = session.execute(select(ids, flag).where(*after).order_by(ids).limit(CHUNK_ROWS)).all()
        session.rollback()  # the read's transaction: none is left open between chunks
        prefix = list(itertools.takewhile(lambda row: row[1] == 1, rows))
        if prefix:
            end = prefix[-1][0]
            # The condition again: a row committed late, with an id below those read, is not removed unread.
            condition = [*after, ids <= end, passed, _below_newest(table)]
            if removable is not None:
                condition.append(removable)
            with turn():
                removed += session.connection().execute(delete(table).where(*condition)).rowcount
                if cursor is not None:
                    _advance_cursor(session, cursor, end)
                session.commit()
            position = end
        if len(prefix) < CHUNK_ROWS:
            break
    return removed


def _prune_indexed(session: Session, table: Table, expired: ColumnElement[bool], turn: Turn, halt: Halt) -> int:
    """Delete the `expired` rows of a table with an index on its time, a chunk at a time."""
    ids = table.c.id
    removed = 0
    while not halt():
        chunk = select(ids).where(expired, _below_newest(table)).limit(CHUNK_ROWS).scalar_subquery()
        with turn():
            count = session.connection().execute(delete(table).where(ids.in_(chunk))).rowcount
            session.commit()
        removed += count
        if count < CHUNK_ROWS:
            break
    return removed


@dataclass(frozen=True)
class Pruned:
    impression_touchpoints: int  # before the clicks among them
    touchpoints: int
    postbacks: int
    rejected_postbacks: int
    invalid_traffic: int
    webhook_deliveries: int
    mail: int


def prune(session: Session, settings: Settings, *, now: datetime | None = None,
          turn: Turn = contextlib.nullcontext, halt: Halt = lambda: False) -> Pruned:
    """Remove what every table keeps past its retention; commits after each chunk, each written inside `turn()`
    (on SQLite, the turn of writers that share the database: see `RetentionWorker`). Stops between chunks once
    `halt()` is true."""
    now = now or utcnow()

    def before(days: int) -> datetime:
        return now - timedelta(days=days)

    touchpoints, postbacks = _table(Touchpoint), _table(Postback)
    rejected, invalid, overflow = _table(RejectedPostback), _table(InvalidTraffic), _table(InvalidTrafficOverflow)
    touches_expired = touchpoints.c.occurred_at < before(settings.touchpoint_retention_days)
    impressions_passed = touchpoints.c.occurred_at < before(settings.impression_touchpoint_retention_days)
    postbacks_expired = (postbacks.c.received_at < before(settings.postback_retention_days)) \
        & (postbacks.c.status != PostbackStatus.PENDING.value)
    rejected_expired = rejected.c.received_at < before(settings.rejected_postback_retention_days)
    invalid_expired = invalid.c.occurred_at < before(settings.invalid_traffic_retention_days)
    deliveries, mail = _table(WebhookDelivery), _table(QueuedMail)
    deliveries_expired = (deliveries.c.created_at < before(settings.delivery_retention_days)) \
        & (deliveries.c.status != DeliveryStatus.PENDING.value)
    mail_expired = (mail.c.created_at < before(settings.delivery_retention_days)) \
        & (mail.c.status != DeliveryStatus.PENDING.value)
    pruned = Pruned(
        impression_touchpoints=_walk(session, touchpoints, impressions_passed, turn, halt,
                                     removable=touchpoints.c.kind == TouchKind.IMPRESSION.value,
                                     cursor="impression_touchpoints"),
        touchpoints=_walk(session, touchpoints, touches_expired, turn, halt),
        postbacks=_walk(session, postbacks, postbacks_expired, turn, halt),
        rejected_postbacks=_prune_indexed(session, rejected, rejected_expired, turn, halt),
        invalid_traffic=_prune_indexed(session, invalid, invalid_expired, turn, halt),
        # A receiver may tell deliveries apart by id: the newest stays, so no id is handed out twice.
        webhook_deliveries=_walk(session, deliveries, deliveries_expired, turn, halt),  # attempts cascade
        mail=_walk(session, mail, mail_expired, turn, halt),
    )
    # A handful of rows per minute (one per kind and reason): one statement.
    with turn():
        session.execute(delete(overflow).where(overflow.c.minute < before(settings.invalid_traffic_retention_days)))
        session.commit()
    return pruned


class RetentionWorker:
    """A daemon thread that prunes hourly, in the process that runs the pipeline's consumers (which write most of
    these rows). Several such processes may prune at once: a row is removed once."""

    def __init__(self, factory: sessionmaker[Session], settings: Settings, *,
                 interval_seconds: float = RETENTION_SECONDS, first_run_seconds: float = FIRST_RUN_SECONDS):
        self._factory = factory
        self._settings = settings
        # Nothing is lost by pruning late: a failed run is tried again an hour on.
        self._periodic = Periodic("adstack-retention", self.run_once, interval=interval_seconds,
                                  first=first_run_seconds, log=log, failure="pruning past retention failed")
        self.last: Pruned | None = None
        self.last_run_at: datetime | None = None
        self.removed: dict[str, int] = dict.fromkeys(Pruned.__dataclass_fields__, 0)  # since the process started

    def run_once(self) -> Pruned:
        with self._factory() as session:
            sqlite = session.get_bind().dialect.name == "sqlite"
            # On SQLite, each chunk in turn with the postbacks consumer and the attributor (attribution/locks.py).
            self.last = prune(session, self._settings, turn=(lambda: WRITE_LOCK) if sqlite else contextlib.nullcontext,
                              halt=lambda: self._periodic.stopping)
        self.last_run_at = utcnow()
        for table, count in vars(self.last).items():
            self.removed[table] += count
        if any(vars(self.last).values()):
            log.info("retention removed %s", self.last)
        return self.last

    def start(self) -> None:
        self._periodic.start()

    def stop(self) -> None:
        self._periodic.stop()
