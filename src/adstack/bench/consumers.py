"""The pipeline's consumers alone, in process, over a file SQLite database: records applied per CPU-second (the
process's own CPU time, so other load on the machine does not count).

- `billing_per_cpu_second`: CPM impressions through the billing consumer alone (charges per CPU-second);
- `impressions_per_cpu_second`: impressions through every consumer an impression passes (billing, touchpoints,
  the event store, and the invalid-traffic verdict they share), one in `BOT_EVERY` sent by a crawler.

Each result carries what it applied next to what it should have (billed and expected micros, touchpoints,
events and the store's charge total), so a broken bench shows in its own figures.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy.orm import Session

from adstack.core.settings import Settings

BILLING_CHARGES = 50_000
IMPRESSIONS = 50_000
BATCH = 5_000
PRICE_MICROS = 2_000_000  # CPM: 2,000 micros per impression
TOP_UP_MICROS = 10**13
BOT_EVERY = 50
BOT_USER_AGENT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


@dataclass
class Bench:
    settings: Settings
    session_factory: Callable[[], Session]
    account_id: int
    secret: bytes


@contextmanager
def bench_database() -> Iterator[Bench]:
    """A fresh file database with one funded advertiser, and an event store under the same directory."""
    from adstack.accounts import service as accounts
    from adstack.accounts import users
    from adstack.accounts.models import Principal, RegistrationIn, Role
    from adstack.core.bootstrap import seed, upgrade
    from adstack.core.db import make_engine, make_session_factory
    from adstack.events.service import close_event_store
    from adstack.finance import topups
    from adstack.finance.models import TopUpIn

    with tempfile.TemporaryDirectory(prefix="adstack-bench-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        settings = Settings(data_dir=Path(tmp) / "data", database_url=url, secret_key="bench-secret",
                            ivt_enabled=True)
        upgrade(url)
        engine = make_engine(url)
        seed(engine)
        factory = make_session_factory(engine)
        with factory() as session:
            _, account, _ = accounts.register(session, RegistrationIn(
                email="bench@example.com", password="bench-password-1", company_name="Bench", contact_name="Bench",
                contact_email="ops@example.com", country="ID", settlement_entity="Xiaomi Singapore", currency="USD",
                accept_agreement=True), ttl=timedelta(hours=1))
            admin = users.create_admin(session, email="admin@example.com", password="bench-password-1",
                                          role=Role.ADMIN)
            principal = Principal(user_id=admin.id, email=admin.email, role=admin.role, account_id=None)
            topups.top_up(session, principal, TopUpIn(account_id=account.id, amount_micros=TOP_UP_MICROS))
            session.commit()
            account_id = account.id
        try:
            yield Bench(settings, factory, account_id, settings.resolved_secret_key)
        finally:
            close_event_store(settings)
            engine.dispose()


def impression_batches(bench: Bench, count: int, *, batch: int = BATCH, bot_every: int = 0, gaids: bool = False
                       ) -> list[bytes]:
    """Impression records as the endpoint appends them, in batches of log lines; every `bot_every`-th from a
    crawler. Kept encoded, as the log keeps them: a whole workload of live records would only weigh on the
    garbage collector's full passes, which no consumer pays when it holds one batch."""
    from adstack.bench.pipeline import PHONE_USER_AGENT
    from adstack.core.timeutil import utcnow
    from adstack.pipeline import records
    from adstack.pipeline.log import encode
    from adstack.tracking.tokens import DEFAULT_TOKEN_TTL, TrackingClaims, encode_token

    phone, bot = records.Client("127.0.0.1", PHONE_USER_AGENT), records.Client("127.0.0.1", BOT_USER_AGENT)
    issued = utcnow()
    batches: list[list[dict[str, Any]]] = []
    for n in range(count):
        if n % batch == 0:
            batches.append([])
        claims = TrackingClaims(
            impression_id=f"b{uuid.uuid4().hex}", account_id=bench.account_id, campaign_id=1, ad_group_id=1,
            creative_id=1, ad_space_id=1, publisher_id=1, bid_type="cpm", price_micros=PRICE_MICROS,
            issued_at=issued, expires_at=issued + DEFAULT_TOKEN_TTL, country="ID", placement_type="banner",
            gaid=str(uuid.uuid4()) if gaids else "")
        client = bot if bot_every and n % bot_every == bot_every - 1 else phone
        batches[-1].append(records.impression(claims, encode_token(claims, bench.secret), auction_price=None,
                                              currency=None, client=client))
    return [encode(b) for b in batches]


def _run(consumers: list[Any], batches: list[bytes]) -> tuple[int, float, float]:
    """Apply the first batch as a warm-up (statements compiled and cached, not counted), then time the rest:
    each consumer reads its own copy of a batch, as each reads the log on its own."""
    from adstack.pipeline.service import freeze_startup_heap

    if len(batches) < 2:
        raise ValueError("a bench needs at least two batches: a warm-up and a timed one")
    for consumer in consumers:
        consumer.apply(decode(batches[0]))
    freeze_startup_heap()  # as `Pipeline.start` does before its consumers run
    applied, cpu, wall = 0, 0.0, 0.0
    for batch in batches[1:]:
        for consumer in consumers:
            records = decode(batch)
            started_cpu, started_wall = time.process_time(), time.perf_counter()
            consumer.apply(records)
            cpu += time.process_time() - started_cpu
            wall += time.perf_counter() - started_wall
            del records
        applied += batch.count(b"\n")
    return applied, cpu, wall


def decode(lines: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in lines.splitlines()]


def _context(bench: Bench) -> Any:
    from adstack.events.service import get_event_store
    from adstack.pipeline.consumers import Context

    return Context(session_factory=bench.session_factory, secret=bench.secret,
                   store=lambda: get_event_store(bench.settings), counters=lambda: None,
                   settings=lambda: bench.settings)


def _billed(bench: Bench) -> int:
    from adstack.finance import service as finance

    with bench.session_factory() as session:
        return TOP_UP_MICROS - finance.balance_micros(session, bench.account_id)


def billing_per_cpu_second(charges: int = BILLING_CHARGES, *, batch: int = BATCH) -> dict[str, Any]:
    from adstack.pipeline.consumers import Billing

    with bench_database() as bench:
        batches = impression_batches(bench, charges, batch=batch)
        timed, cpu, wall = _run([Billing(_context(bench))], batches)
        billed = _billed(bench)
    return {"charges": timed, "billed_micros": billed, "expected_micros": charges * PRICE_MICROS // 1000,
            "per_cpu_second": round(timed / cpu), "per_wall_second": round(timed / wall)}


def impressions_per_cpu_second(impressions: int = IMPRESSIONS, *, batch: int = BATCH, bot_every: int = BOT_EVERY
                               ) -> dict[str, Any]:
    """Impressions through billing, touchpoints and the event store, as the pipeline applies them."""
    from sqlalchemy import func, select

    from adstack.attribution.models import Touchpoint
    from adstack.events.service import get_event_store
    from adstack.pipeline.consumers import Billing, StoreEvents, Touchpoints

    with bench_database() as bench:
        batches = impression_batches(bench, impressions, batch=batch, bot_every=bot_every, gaids=True)
        context = _context(bench)
        timed, cpu, wall = _run([Billing(context), Touchpoints(context), StoreEvents(context)], batches)
        bots = impressions // bot_every if bot_every else 0
        billed = _billed(bench)
        with bench.session_factory() as session:
            touchpoints = int(session.scalar(select(func.count()).select_from(Touchpoint)) or 0)
        counted = dict(get_event_store(bench.settings).query(
            "SELECT event_type, count() FROM events GROUP BY event_type").rows)
        store_charged = get_event_store(bench.settings).query(
            "SELECT sum(cost_micros) FROM events WHERE event_type = 'charge'").rows[0][0]
    return {"impressions": timed, "billed_micros": billed,
            "expected_micros": (impressions - bots) * PRICE_MICROS // 1000, "store_charged_micros": int(store_charged),
            "touchpoints": touchpoints, "expected_touchpoints": impressions - bots,
            "impression_events": int(counted.get("impression", 0)), "invalid_events": int(counted.get("invalid", 0)),
            "expected_invalid": bots, "per_cpu_second": round(timed / cpu), "per_wall_second": round(timed / wall)}
