"""On SQLite, the notification worker's short write transactions wait for a moment without requests.

SQLite has one writer, and a request that has read inside a transaction (a savepoint of a batch) cannot write
once another connection has committed since: it fails at once with "database is locked". So the worker's
writes wait until no request is in flight (for at most `max_wait_s`), and requests arriving meanwhile wait the
few milliseconds the worker's transaction takes. PostgreSQL needs none of this; the gate is not installed there.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from starlette.types import ASGIApp, Receive, Scope, Send

POLL_S = 0.002


class WriteGate:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._requests = 0
        self._writing = False

    async def enter_request(self) -> None:
        while True:
            with self._lock:
                if not self._writing:
                    self._requests += 1
                    return
            await asyncio.sleep(POLL_S)

    def leave_request(self) -> None:
        with self._lock:
            self._requests -= 1
            self._idle.notify_all()

    @contextmanager
    def writing(self, max_wait_s: float) -> Iterator[None]:
        """Hold new requests back while the block runs, after in-flight ones finish (or `max_wait_s` passes)."""
        deadline = time.monotonic() + max_wait_s
        with self._lock:
            while self._requests and (left := deadline - time.monotonic()) > 0:
                self._idle.wait(left)
            self._writing = True
        try:
            yield
        finally:
            with self._lock:
                self._writing = False


class RequestGate:
    """ASGI middleware counting HTTP requests in flight for a WriteGate."""

    def __init__(self, app: ASGIApp, gate: WriteGate) -> None:
        self.app = app
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.gate.enter_request()
        try:
            await self.app(scope, receive, send)
        finally:
            self.gate.leave_request()
