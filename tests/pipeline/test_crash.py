"""SIGKILL in the middle of a stream of impressions and clicks: every event acknowledged before the kill is
applied exactly once after a restart, and the ledger, the event store and the report agree to the micro."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from adstack.bench.pipeline import Billing, create_admin, set_up_billing, wait_for_lag_zero
from adstack.bench.postbacks import ServerProcess
from tests.pipeline.jetstream_support import drop_stream

pytestmark = pytest.mark.slow

KILL_AFTER = 300  # acknowledged tracking requests before the kill
CPM_MICROS = 2_000_000  # 2,000 micros per impression
CPC_MICROS = 150_000


def _charges(client: httpx.Client, billing: Billing) -> list[dict[str, object]]:
    headers = {"Authorization": f"Bearer {billing.token}"}
    rows: list[dict[str, object]] = []
    while True:
        page = client.get(
            f"/api/v1/finance/accounts/{billing.account_id}/ledger",
            headers=headers,
            params={"limit": 500, "offset": len(rows)},
        )
        page.raise_for_status()
        body = page.json()
        items = body["items"] if isinstance(body, dict) else body
        rows.extend(items)
        if len(items) < 500:
            # Pages are offsets over the newest first: an entry written while paging repeats a row, so by id.
            return list({r["id"]: r for r in rows if r["entry_type"] == "charge"}.values())


def _scale_out(tmp_path: Path) -> Iterator[dict[str, str]]:
    """PostgreSQL, Redis and NATS JetStream on loopback, each fresh for this test."""
    import psycopg
    import redis

    try:
        admin = psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True, connect_timeout=2)
        redis.Redis.from_url("redis://127.0.0.1:6379/0", socket_connect_timeout=0.5).ping()
    except Exception:
        pytest.skip("PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 are needed")
    name = f"adstack_crash_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {
            "ADSTACK_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
            "ADSTACK_REDIS_URL": "redis://127.0.0.1:6379/0",
            "ADSTACK_NATS_URL": "nats://127.0.0.1:4222",
            "ADSTACK_NATS_STREAM": name.upper(),
            # Batches the kill left unacknowledged come back after this, not JetStream's default 30 s.
            "ADSTACK_NATS_ACK_WAIT_SECONDS": "5",
        }
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
        with contextlib.suppress(Exception):
            drop_stream(name.upper())


# Scripted traffic from one client: the invalid-traffic rules (tested in test_ivt.py) would rightly refuse it.
NO_IVT = {"ADSTACK_IVT_ENABLED": "false"}


@pytest.fixture(params=["embedded", "postgresql+redis+jetstream"])
def environment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    if request.param == "embedded":
        yield dict(NO_IVT)
        return
    for settings in _scale_out(tmp_path):
        yield {**settings, **NO_IVT}


def test_acknowledged_tracking_survives_sigkill_exactly_once(tmp_path: Path, environment: dict[str, str]) -> None:
    create_admin(tmp_path, environment)
    server = ServerProcess(tmp_path, extra_env=environment).start()
    try:
        billing = set_up_billing(server)
        impressions = [billing.urls(price_micros=CPM_MICROS) for _ in range(1500)]
        clicks = [billing.urls(bid_type="cpc", price_micros=CPC_MICROS) for _ in range(300)]
        paths = [u.impression_url for u in impressions] + [u.click_url for u in clicks]
        paths = [p.removeprefix(billing.base_url) for p in paths]
        paths.sort(key=lambda p: hash(p))  # interleave impressions and clicks
        acknowledged: list[str] = []
        lock = threading.Lock()
        killed = threading.Event()

        def send(path: str) -> None:
            if killed.is_set():
                return
            try:
                response = httpx.get(server.base_url + path, timeout=10, follow_redirects=False)
            except httpx.HTTPError:
                return  # not acknowledged: the device or exchange would retry
            if response.status_code in (204, 302):
                with lock:
                    acknowledged.append(path)
                    if len(acknowledged) >= KILL_AFTER and not killed.is_set():
                        killed.set()
                        server.kill()

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(send, paths))
        assert killed.is_set(), "the stream ended before the kill"

        server = ServerProcess(tmp_path, port=server.port, extra_env=environment).start()
        with httpx.Client(base_url=server.base_url, timeout=60) as client:
            # A few acknowledged requests are retried after the restart: still counted and billed once.
            for path in acknowledged[:20]:
                assert client.get(path, follow_redirects=False).status_code in (204, 302)
            wait_for_lag_zero(billing, timeout=180)  # JetStream redelivers an unacknowledged batch after its wait
            headers = {"Authorization": f"Bearer {billing.token}"}
            today = datetime.now(UTC).date()
            query = {
                "start_date": (today - timedelta(days=1)).isoformat(),
                "end_date": (today + timedelta(days=1)).isoformat(),
                "time_zone": "UTC",
                "metrics": ["cost_micros", "impressions", "clicks"],
            }
            # The ledger and the report read once the ledger holds still across the report: the two are compared
            # at one moment, not while a late batch lands between them.
            for _ in range(30):
                charges = _charges(client, billing)
                report = client.get("/api/v1/reports", headers=headers, params=query)
                assert report.status_code == 200, report.text
                if {c["id"] for c in _charges(client, billing)} == {c["id"] for c in charges}:
                    break
                time.sleep(1)
            acked_impressions = sum(1 for p in set(acknowledged) if p.startswith("/t/imp"))
            acked_clicks = sum(1 for p in set(acknowledged) if p.startswith("/t/click"))
            imp_charges = [c for c in charges if -int(str(c["amount_micros"])) == CPM_MICROS // 1000]
            click_charges = [c for c in charges if -int(str(c["amount_micros"])) == CPC_MICROS]
            # Every acknowledged event is billed once; events the server stored but never answered may be too.
            assert acked_impressions <= len(imp_charges) <= 1500
            assert acked_clicks <= len(click_charges) <= 300
            assert len(imp_charges) + len(click_charges) == len(charges)
            ledger_total = -sum(int(str(c["amount_micros"])) for c in charges)
            totals = report.json()["totals"]
            reported = (int(totals["cost_micros"]), int(totals["impressions"]), int(totals["clicks"]))
            assert reported == (ledger_total, len(imp_charges), len(click_charges)), (
                "report (cost, impressions, clicks) against the ledger's charges"
            )
    finally:
        server.stop()
