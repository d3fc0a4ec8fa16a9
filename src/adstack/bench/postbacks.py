"""`adstack bench postbacks`: postbacks accepted per second over HTTP, and in-process attribution throughput.

HTTP: one `adstack serve` process on a loopback port with a fresh SQLite data dir. A lean keep-alive socket
client (so the client is not the bottleneck) drives `GET /healthz` and real AppMetrica postbacks (each one new,
so each is appended to the event log before its 200) for the same time with the same connections, healthz before
and after the postbacks; the figure is postbacks per second over healthz per second (target >= 0.5).

In process: installs and in-app events already stored in the `postbacks` table, each device with a click to match
on a CPA ad group that pays for installs (so half the postbacks are charged), are attributed by
`attribution.service.process_pending` in batches; the figure is postbacks attributed per second.

Prints one JSON line last.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

HTTP_SECONDS = 4.0
HTTP_CONNECTIONS = 16
ATTRIBUTION_POSTBACKS = 4_000
CPA_BID_MICROS = 2_000_000  # the bench's CPA ad group pays this per install
TARGET_RATIO = 0.5


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_environment() -> dict[str, str]:
    """The caller's environment without any ADSTACK_ setting, so the server uses its own data dir only."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ADSTACK_")}


class ServerProcess:
    """`adstack serve` in a child process on a loopback port, over a file SQLite database in `data_dir`."""

    def __init__(self, data_dir: Path, port: int | None = None, *, extra_env: dict[str, str] | None = None,
                 workers: int = 1):
        self.data_dir = data_dir
        self.port = port or free_port()
        self.extra_env = extra_env or {}
        self.workers = workers
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> ServerProcess:
        log = open(self.data_dir / f"server-{self.port}.log", "ab")  # noqa: SIM115 - lives as long as the child
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "adstack.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--data-dir", str(self.data_dir), "--workers", str(self.workers)], stdout=log, stderr=subprocess.STDOUT,
            env={**server_environment(), **self.extra_env})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}; see {log.name}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/healthz", timeout=1.0).status_code == 200:
                    return self
            time.sleep(0.2)
        raise RuntimeError("the server did not answer /healthz in time")

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flushing; whatever was acknowledged must already be durable."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        stop_process(self.process)


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float = 30.0) -> None:
    """SIGTERM, then SIGKILL if the child has not ended within `timeout`."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)


# A minimal PDF: an account submits a qualification document before review.
QUALIFICATION_PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
                     b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")


def register_advertiser(client: httpx.Client, name: str) -> dict[str, Any]:
    """Register an advertiser over the API and sign in; returns the sign-in answer (token, user and account ids)."""
    n = uuid.uuid4().hex[:8]
    email = f"{name.lower().replace(' ', '-')}-{n}@example.com"
    client.post("/api/v1/auth/register", json={
        "email": email, "password": "bench-password-1", "type": "advertiser",
        "company_name": f"{name} {n}", "contact_name": "Bench", "contact_email": f"ops-{n}@example.com",
        "country": "ID", "settlement_entity": "Xiaomi Singapore", "currency": "USD", "time_zone": "UTC",
        "accept_agreement": True}).raise_for_status()
    signed_in = client.post("/api/v1/auth/login", json={"email": email, "password": "bench-password-1"})
    signed_in.raise_for_status()
    body: dict[str, Any] = signed_in.json()
    return body


def set_up_app(base_url: str, partner: str = "appmetrica") -> dict[str, Any]:
    """Register an advertiser and add an app over the API; returns the token, app and postback template."""
    n = uuid.uuid4().hex[:8]
    with httpx.Client(base_url=base_url, timeout=60) as client:
        token = register_advertiser(client, "Bench Games")["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        app = client.post("/api/v1/apps", headers=headers, json={
            "package_name": f"com.bench.game{n}", "name": "Bench Game", "partner": partner})
        app.raise_for_status()
        integration = client.get(f"/api/v1/apps/{app.json()['id']}/integrations/{partner}", headers=headers)
        integration.raise_for_status()
    return {"token": token, "app": app.json(), "template": integration.json()["postback_url_template"]}


def appmetrica_postback_paths(template: str, start: int = 1) -> Iterator[str]:
    """Distinct AppMetrica event postbacks (their transaction ids differ), as request paths."""
    parts = urlsplit(template)
    fixed = [(k, v) for k, v in (pair.split("=", 1) for pair in parts.query.split("&")) if not v.startswith("{")]
    for n in itertools.count(start):
        query = [*fixed, ("event_name", "login"), ("transaction_id", str(n)), ("gaid", str(uuid.uuid4())),
                 ("event_datetime", str(int(time.time())))]
        yield f"{parts.path}?{urlencode(query)}"


async def _drive(port: int, paths: Callable[[], str], seconds: float, connections: int) -> int:
    """Requests answered 200 in `seconds` over keep-alive connections."""
    ok = 0
    deadline = time.monotonic() + seconds

    async def one_connection() -> None:
        nonlocal ok
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.monotonic() < deadline:
                writer.write(f"GET {paths()} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                if head.startswith(b"HTTP/1.1 200"):
                    ok += 1
        finally:
            writer.close()

    await asyncio.gather(*(one_connection() for _ in range(connections)))
    return ok


def http_figures(seconds: float = HTTP_SECONDS, connections: int = HTTP_CONNECTIONS) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="adstack-bench-") as tmp:
        server = ServerProcess(Path(tmp)).start()
        try:
            setup = set_up_app(server.base_url)
            paths = appmetrica_postback_paths(setup["template"])
            asyncio.run(_drive(server.port, lambda: "/healthz", 0.5, connections))  # warm up
            healthz_before = asyncio.run(_drive(server.port, lambda: "/healthz", seconds, connections)) / seconds
            postbacks = asyncio.run(_drive(server.port, lambda: next(paths), seconds, connections)) / seconds
            healthz_after = asyncio.run(_drive(server.port, lambda: "/healthz", seconds, connections)) / seconds
        finally:
            server.stop()
    healthz = (healthz_before + healthz_after) / 2
    return {"healthz_per_second": round(healthz, 1), "postbacks_per_second": round(postbacks, 1),
            "postbacks_to_healthz_ratio": round(postbacks / healthz, 3) if healthz else 0.0,
            "http_seconds": seconds, "http_connections": connections}


def prepare_attribution(url: str, postbacks: int, secret: bytes) -> None:
    """A fresh database at `url` holding `postbacks` stored postbacks: per device a click on a CPA ad group that
    pays for installs, an install and a purchase (so half the postbacks are charged); half the postbacks carry
    the click id, the other half match by device only."""
    from adstack.accounts import service as accounts
    from adstack.accounts import users
    from adstack.accounts.models import Principal, RegistrationIn, Role
    from adstack.apps.models import App
    from adstack.apps.service import postback_signature
    from adstack.attribution import service as attribution
    from adstack.attribution.adapters import parse_postback, stored_parse_text
    from adstack.attribution.rules import TouchKind
    from adstack.campaigns.models import AdGroup, Campaign
    from adstack.core.bootstrap import seed, upgrade
    from adstack.core.db import make_engine, make_session_factory
    from adstack.core.timeutil import utcnow
    from adstack.core.vocabulary import Partner
    from adstack.finance import topups
    from adstack.finance.models import TopUpIn
    from adstack.tracking.devices import normalise_gaid
    from adstack.tracking.tokens import new_click_id

    upgrade(url)
    engine = make_engine(url)
    seed(engine)
    factory = make_session_factory(engine)
    now = utcnow()
    with factory() as session:
        _, account, _ = accounts.register(session, RegistrationIn(
            email="bench@example.com", password="bench-password-1", company_name="Bench", contact_name="Bench",
            contact_email="ops@example.com", country="ID", settlement_entity="Xiaomi Singapore", currency="USD",
            accept_agreement=True), ttl=timedelta(hours=1))
        admin = users.create_admin(session, email="admin@example.com", password="bench-password-1",
                                      role=Role.ADMIN)
        principal = Principal(user_id=admin.id, email=admin.email, role=admin.role, account_id=None)
        topups.top_up(session, principal, TopUpIn(account_id=account.id, amount_micros=10**13))
        app = App(account_id=account.id, package_name="com.bench.game", name="Bench", partner="appsflyer")
        campaign = Campaign(account_id=account.id, objective="performance", name="Bench installs",
                            promotion_type="app_download", package_name=app.package_name)
        session.add_all([app, campaign])
        session.flush()
        group = AdGroup(account_id=account.id, campaign_id=campaign.id, name="Bench CPA", placement_type="banner",
                        start_at=now - timedelta(days=1), bid_type="cpa", bid_micros=CPA_BID_MICROS,
                        conversion_event="INSTALL")
        session.add(group)
        session.flush()
        incoming: list[attribution.IncomingPostback] = []
        # As the app's postback URL sends them: only signed postbacks are charged.
        signed = {"partner": "appsflyer", "app": str(app.id), "sig": postback_signature(secret, app.id)}
        for n in range(postbacks // 2):  # an install and one purchase per device
            gaid = str(uuid.uuid4())
            click_id = new_click_id(f"imp{n}", now, secret)
            clicked = now - timedelta(hours=n % 100 + 1)
            attribution.record_touch(
                session, kind=TouchKind.CLICK, touch_id=click_id, impression_id=f"imp{n}",
                account_id=account.id, campaign_id=campaign.id, ad_group_id=group.id, creative_id=1, ad_space_id=1,
                publisher_id=1, bid_type="cpc", price_micros=100_000, country="ID", placement_type="banner",
                app_package=app.package_name, gaid=normalise_gaid(gaid), occurred_at=clicked)
            for fields in (
                {**signed, "clickid": click_id if n % 2 else "", "advertising_id": gaid,
                 "install_unix_ts": str(int(now.timestamp()))},
                {**signed, "clickid": click_id if n % 2 else "", "advertising_id": gaid, "event_name": "af_purchase",
                 "event_revenue": "1.99", "event_revenue_currency": "EUR",
                 "event_time": str(int(now.timestamp()) + 60)},
            ):
                parsed = parse_postback(Partner.APPSFLYER, fields)
                incoming.append(attribution.IncomingPostback(app.id, Partner.APPSFLYER, parsed.dedupe_key, "GET",
                                                             fields, now, stored_parse_text(parsed), signed=True))
        for start in range(0, len(incoming), 500):
            attribution.accept_postbacks(session.connection(), incoming[start:start + 500])
        session.commit()
    engine.dispose()


def attribute_stored(url: str, secret: bytes, batch: int | None = None) -> dict[str, Any]:
    """Attribute every stored postback at `url` as the background attributor does, batch after batch in its own
    transaction; the throughput, and what the database holds afterwards to check it by."""
    from sqlalchemy import func, select

    from adstack.attribution import service as attribution
    from adstack.attribution.models import Conversion, Postback
    from adstack.core.db import make_engine, make_session_factory
    from adstack.finance.models import LedgerEntry

    engine = make_engine(url)
    factory = make_session_factory(engine)
    limit = batch or attribution.PROCESS_BATCH
    processed = events = 0
    started, cpu = time.perf_counter(), time.process_time()
    while True:
        with factory() as session:
            count, records = attribution.process_pending(session, secret=secret, limit=limit)
            session.commit()
        if count == 0:
            break
        processed += count
        events += len(records)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    with factory() as session:
        charged = session.scalar(select(func.count()).where(Conversion.charged_micros > 0))
        by_type = dict(session.execute(select(Conversion.attribution_type, func.count())
                                       .group_by(Conversion.attribution_type)).all())
        by_match = dict(session.execute(select(Conversion.match_type, func.count())
                                        .group_by(Conversion.match_type)).all())
        statuses = dict(session.execute(select(Postback.status, func.count()).group_by(Postback.status)).all())
        ledger = session.execute(select(func.count(), func.coalesce(func.sum(LedgerEntry.amount_micros), 0))
                                 .where(LedgerEntry.entry_type == "charge")).one()
    engine.dispose()
    return {"attribution_events_per_second": round(processed / elapsed, 1) if elapsed else 0.0,
            "attribution_events_per_cpu_second": round(processed / cpu, 1) if cpu else 0.0,
            "attribution_events": processed, "attribution_batch": limit, "attribution_cpa_charged": charged,
            "attribution_conversions_by_type": by_type, "attribution_conversions_by_match": by_match,
            "attribution_postback_statuses": statuses, "attribution_event_records": events,
            "attribution_ledger_charges": int(ledger[0]), "attribution_ledger_charged_micros": -int(ledger[1])}


def attribution_figures(postbacks: int = ATTRIBUTION_POSTBACKS, batch: int | None = None) -> dict[str, Any]:
    secret = b"bench-secret"
    with tempfile.TemporaryDirectory(prefix="adstack-bench-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        prepare_attribution(url, postbacks, secret)
        return attribute_stored(url, secret, batch)


def main() -> None:
    figures: dict[str, Any] = {"benchmark": "postbacks"}
    figures.update(http_figures())
    figures.update(attribution_figures())
    figures["target_ratio"] = TARGET_RATIO
    figures["meets_target"] = figures["postbacks_to_healthz_ratio"] >= TARGET_RATIO
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
