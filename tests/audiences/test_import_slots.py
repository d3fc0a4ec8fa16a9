"""A URL import downloads with no database session or place at the database gate held, so slow remote hosts
cannot lock other tenants out; and one account runs only a few imports at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from adstack.app import create_app
from adstack.core.settings import Settings
from tests.audiences.helpers import gaids, id_file
from tests.core.live_server import serving
from tests.core.loopback_http import LoopbackServer, TrickleServer
from tests.support import Actor, Api, expect


@contextmanager
def _live(settings: Settings, session: Session, **overrides: Any) -> Iterator[tuple[httpx.Client, Api]]:
    live = settings.model_copy(update={"outbound_allowed_networks": "127.0.0.0/8", **overrides})
    with serving(create_app(live)) as base_url, httpx.Client(base_url=base_url, timeout=30) as client:
        yield client, Api(client, session)  # type: ignore[arg-type]


def _body(url: str, n: int = 0) -> dict[str, Any]:
    return {"name": f"import {n}", "region_code": "RU", "id_type": "gaid", "url": url}


def _start_imports(client: httpx.Client, actor: Actor, url: str, count: int
                   ) -> tuple[list[threading.Thread], list[int]]:
    statuses: list[int] = []

    def run(n: int) -> None:
        try:
            statuses.append(client.post("/api/v1/audiences/import", headers=actor.headers,
                                        json=_body(url, n)).status_code)
        except httpx.HTTPError:
            statuses.append(0)

    threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(count)]
    for thread in threads:
        thread.start()
    return threads, statuses


def _wait_for(condition: Any, seconds: float = 10) -> None:
    until = time.monotonic() + seconds
    while not condition() and time.monotonic() < until:
        time.sleep(0.05)


def test_slow_url_imports_leave_the_api_to_other_tenants(settings: Settings, session: Session) -> None:
    with TrickleServer() as slow, _live(settings, session, db_pool_size=3, db_pool_timeout_s=1.0,
                                        url_imports_per_account=3) as (client, api):
        admin = api.admin()
        attacker, victim = api.approved_account(admin), api.approved_account(admin)
        threads, statuses = _start_imports(client, attacker, slow.url(), 3)
        _wait_for(lambda: slow.connections == 3)
        assert slow.connections == 3
        started = time.monotonic()
        listed = client.get("/api/v1/audiences", headers=victim.headers, timeout=5)
        assert listed.status_code == 200, listed.text
        assert time.monotonic() - started < 1
        assert statuses == []  # the imports are still downloading
        slow.close()
        for thread in threads:
            thread.join(30)
        assert statuses == [422, 422, 422]


def test_an_account_runs_a_few_imports_at_once(settings: Settings, session: Session) -> None:
    with TrickleServer() as slow, _live(settings, session, url_imports_per_account=2) as (client, api), \
            LoopbackServer("127.0.0.1", body=id_file(gaids(1000))) as good:
        admin = api.admin()
        busy, other = api.approved_account(admin), api.approved_account(admin)
        threads, statuses = _start_imports(client, busy, slow.url(), 2)
        _wait_for(lambda: slow.connections == 2)
        refused = expect(client.post("/api/v1/audiences/import", headers=busy.headers,  # type: ignore[arg-type]
                                     json=_body(slow.url(), 3), timeout=5), 429)
        assert refused["error"]["fields"] == [{"field": "url", "rule": "max_concurrent_imports", "limit": 2,
                                               "actual": 2, "message": "at most 2 URL imports of an account at once"}]
        # Another account is not held back, and the busy account imports again once its imports end.
        expect(client.post("/api/v1/audiences/import", headers=other.headers,  # type: ignore[arg-type]
                           json=_body(good.url("/ids.txt"), 4)), 201)
        slow.close()
        for thread in threads:
            thread.join(30)
        assert statuses == [422, 422]
        expect(client.post("/api/v1/audiences/import", headers=busy.headers,  # type: ignore[arg-type]
                           json=_body(good.url("/ids.txt"), 5)), 201)


def test_the_import_limit_is_documented(client: TestClient) -> None:
    paths = client.app.openapi()["paths"]  # type: ignore[attr-defined]
    for path in ("/api/v1/audiences/import", "/api/v1/audiences/{audience_id}/import"):
        assert "429" in paths[path]["post"]["responses"]
