"""A real `adstack serve` on loopback for tests of what only a real server and real sockets show."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn


def register_and_sign_in(base_url: str) -> tuple[str, int]:
    """A new advertiser over the API; its bearer token and account id."""
    n = uuid.uuid4().hex[:8]
    with httpx.Client(base_url=base_url, timeout=30) as client:
        client.post(
            "/api/v1/auth/register",
            json={
                "email": f"live-{n}@example.com",
                "password": "live-password-1",
                "type": "advertiser",
                "company_name": f"Live {n}",
                "contact_name": "Live",
                "contact_email": f"ops-{n}@example.com",
                "country": "ID",
                "settlement_entity": "Xiaomi Singapore",
                "currency": "USD",
                "time_zone": "UTC",
                "accept_agreement": True,
            },
        ).raise_for_status()
        login = client.post(
            "/api/v1/auth/login", json={"email": f"live-{n}@example.com", "password": "live-password-1"}
        )
        login.raise_for_status()
        return str(login.json()["access_token"]), int(login.json()["account_id"])


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """`app` served by uvicorn on a free loopback port, in a daemon thread; its base URL. Requests still open at
    the end are cut after a short grace, so a test that fails never hangs on them."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    until = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > until or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
