"""The database pool under pressure: a request that cannot get a connection in time is answered 503 with
Retry-After in the one JSON error shape, and the event loop never waits on the pool."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import TimeoutError as PoolTimeout

from adstack.app import create_app
from adstack.core.db import BACKGROUND_CONNECTIONS, make_engine
from adstack.core.settings import Settings


def test_no_connection_in_time_is_a_503_with_retry_after(settings: Settings) -> None:
    busy = settings.model_copy(update={"db_pool_size": 1, "db_pool_timeout_s": 0.2})
    app = create_app(busy)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.portal is not None
        client.portal.call(app.state.db_gate.acquire)  # the only request slot is taken
        try:
            answer = client.get("/api/v1/settlement-rules")
            assert answer.status_code == 503
            assert answer.headers["retry-after"] == "1"
            assert answer.json()["error"]["code"] == "unavailable"
            assert client.get("/healthz").status_code == 200  # needs no connection
        finally:
            client.portal.call(app.state.db_gate.release)
        assert client.get("/api/v1/settlement-rules").status_code == 200


def test_the_event_loop_never_waits_on_the_pool(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'pool.db'}", pool_size=1, pool_timeout=2.0)
    held = [engine.connect() for _ in range(1 + BACKGROUND_CONNECTIONS)]

    async def on_the_loop() -> float:
        started = time.monotonic()
        with pytest.raises(PoolTimeout):
            engine.connect()
        return time.monotonic() - started

    try:

        def off_the_loop() -> float:
            started = time.monotonic()
            with pytest.raises(PoolTimeout):
                engine.connect()  # a worker thread waits its timeout
            return time.monotonic() - started

        # Threads of their own: a browser test earlier in this process may hold a running loop on the main thread.
        with ThreadPoolExecutor(1) as pool:
            assert pool.submit(asyncio.run, on_the_loop()).result() < 0.1
            assert pool.submit(off_the_loop).result() >= 1.9
    finally:
        for connection in held:
            connection.close()
        engine.dispose()
    with ThreadPoolExecutor(1) as pool:  # disposed from anywhere, the new pool keeps the threads' timeout
        assert pool.submit(engine.pool.timeout).result() == 2.0
