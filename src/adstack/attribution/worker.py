"""The background attributor: attributes stored postbacks when the postbacks consumer stores some, and at start-up
after a crash."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from adstack.attribution.locks import WRITE_LOCK
from adstack.attribution.service import PROCESS_BATCH, process_pending
from adstack.core.background import Periodic
from adstack.core.settings import Settings
from adstack.events.service import get_event_store

log = logging.getLogger("adstack.attribution")

# A batch costs about 10 ms of fixed work (its dozen statements and the commit) plus ~0.1 ms of CPU per postback:
# at 100 a batch the fixed part would double the cost of each postback, at 1,000 it still added 7%.
BATCH = PROCESS_BATCH


class PostbackWorker:
    """One thread per process. Postbacks are durable in the event log before they are answered, and in the
    `postbacks` table before they are attributed, so the worker may lag or die at any moment without losing one;
    processing is idempotent per postback."""

    def __init__(self, session_factory: sessionmaker[Session], settings: Settings, *, interval_seconds: float = 5.0):
        self.session_factory = session_factory
        self.settings = settings
        self.interval_seconds = interval_seconds
        self._lock = threading.Lock()
        # The table keeps everything: a failed batch is tried again on the next wake-up.
        self._periodic = Periodic("adstack-attribution", self._attribute_all, interval=interval_seconds, first=0.0,
                                  log=log, failure="attributing postbacks failed; will retry")
        # Applies the touches it can and says up to when every acknowledged touch is applied (the pipeline's
        # touchpoints watermark); postbacks received later wait, so none misses the click that preceded it.
        self.before_batch: Callable[[], datetime] | None = None

    def notify(self) -> None:
        self._periodic.wake()

    def drain(self) -> int:
        """Attribute every pending postback now, in this thread; returns how many were processed."""
        total = 0
        while processed := self._attribute_batch():
            total += processed
        return total

    def _attribute_batch(self) -> int:
        watermark = self.before_batch() if self.before_batch is not None else None
        with self._lock, self.session_factory() as session:
            sqlite = session.get_bind().dialect.name == "sqlite"
            with WRITE_LOCK if sqlite else contextlib.nullcontext():
                processed, events = process_pending(
                    session, secret=self.settings.resolved_secret_key, limit=BATCH, received_before=watermark,
                    unsigned_hold=timedelta(seconds=self.settings.unsigned_postback_hold_seconds))
                if events:
                    # Appended before the commit: a crash in between re-processes the postbacks, and the event
                    # store counts the same event ids once.
                    get_event_store(self.settings).append(events)
                session.commit()
        return processed

    def _attribute_all(self) -> None:
        while not self._periodic.stopping and self._attribute_batch():
            pass

    def start(self) -> None:
        self._periodic.start()

    def stop(self) -> None:
        self._periodic.stop()
