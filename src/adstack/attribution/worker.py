"""The background attributor: drains the postback inbox after each receipt, and at start-up after a crash."""

from __future__ import annotations

import logging
import threading

from sqlalchemy.orm import Session, sessionmaker

from adstack.attribution.service import process_pending
from adstack.core.settings import Settings
from adstack.events.service import get_event_store

log = logging.getLogger("adstack.attribution")


class PostbackWorker:
    """One thread per process. Postbacks are durable in the inbox before they are answered, so the worker
    may lag or die at any moment without losing one; processing is idempotent per postback."""

    def __init__(self, session_factory: sessionmaker[Session], settings: Settings, *, interval_seconds: float = 5.0):
        self.session_factory = session_factory
        self.settings = settings
        self.interval_seconds = interval_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def notify(self) -> None:
        self._wake.set()

    def drain(self) -> int:
        """Attribute every pending postback now, in this thread; returns how many were processed."""
        total = 0
        with self._lock:
            while True:
                with self.session_factory() as session:
                    processed, events = process_pending(session, secret=self.settings.resolved_secret_key)
                    if events:
                        # Appended before the commit: a crash in between re-processes the postbacks, and the
                        # event store counts the same event ids once.
                        get_event_store(self.settings).append(events)
                    session.commit()
                total += processed
                if processed == 0:
                    return total

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.drain()
            except Exception:  # the inbox keeps everything; try again on the next wake-up
                log.exception("attributing postbacks failed; will retry")
            self._wake.wait(self.interval_seconds)
            self._wake.clear()

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="adstack-attribution", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._thread = None
