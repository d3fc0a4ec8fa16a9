"""The pipeline's consumers alone, in process, over a file SQLite database: charges and attributed postbacks
applied per CPU-second (the process's own CPU time, so other load on the machine does not count)."""

from __future__ import annotations

import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

BILLING_CHARGES = 50_000
BATCH = 5_000


def billing_per_cpu_second(charges: int = BILLING_CHARGES) -> dict[str, Any]:
    from adstack.accounts import service as accounts
    from adstack.accounts.models import Principal, RegistrationIn, Role
    from adstack.bench.pipeline import PHONE_USER_AGENT
    from adstack.core.bootstrap import seed, upgrade
    from adstack.core.db import make_engine, make_session_factory
    from adstack.core.settings import Settings
    from adstack.core.timeutil import utcnow
    from adstack.events.service import close_event_store, get_event_store
    from adstack.finance import service as finance
    from adstack.finance.models import TopUpIn
    from adstack.pipeline import records
    from adstack.pipeline.consumers import Billing, Context
    from adstack.tracking.tokens import decode_token
    from adstack.tracking.urls import build_tracking_urls

    with tempfile.TemporaryDirectory(prefix="adstack-bench-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        settings = Settings(data_dir=Path(tmp) / "data", database_url=url, secret_key="bench-secret")
        upgrade(url)
        engine = make_engine(url)
        seed(engine)
        factory = make_session_factory(engine)
        with factory() as session:
            _, account, _ = accounts.register(session, RegistrationIn(
                email="bench@example.com", password="bench-password-1", company_name="Bench", contact_name="Bench",
                contact_email="ops@example.com", country="ID", settlement_entity="Xiaomi Singapore", currency="USD",
                accept_agreement=True), ttl=timedelta(hours=1))
            admin = accounts.create_admin(session, email="admin@example.com", password="bench-password-1",
                                          role=Role.ADMIN)
            principal = Principal(user_id=admin.id, email=admin.email, role=admin.role, account_id=None)
            finance.top_up(session, principal, TopUpIn(account_id=account.id, amount_micros=10**13))
            session.commit()
            account_id = account.id
        secret = settings.resolved_secret_key
        # Impressions as phones send them, so the invalid-traffic stage passes them on to billing.
        phone = records.Client("127.0.0.1", PHONE_USER_AGENT)
        batches = []
        for start in range(0, charges, BATCH):
            batch = []
            for _ in range(min(BATCH, charges - start)):
                urls = build_tracking_urls(
                    base_url="http://bench", secret=secret, impression_id=f"b{uuid.uuid4().hex}",
                    account_id=account_id, campaign_id=1, ad_group_id=1, creative_id=1, ad_space_id=1,
                    publisher_id=1, bid_type="cpm", price_micros=2_000_000, issued_at=utcnow(), gaid=None,
                    country="ID", placement_type="banner")
                token = urls.impression_url.split("t=", 1)[1]
                batch.append(records.impression(decode_token(token, secret, now=utcnow()), token,
                                                auction_price=None, currency=None, client=phone))
            batches.append(batch)
        consumer = Billing(Context(session_factory=factory, secret=secret, store=lambda: get_event_store(settings),
                                   counters=lambda: None))
        consumer.apply(batches.pop(0))  # warm-up: first statements compiled and cached, not counted
        charges -= BATCH
        cpu, wall = time.process_time(), time.perf_counter()
        for batch in batches:
            consumer.apply(batch)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        with factory() as session:
            balance = finance.balance_micros(session, account_id)
        close_event_store(settings)
        engine.dispose()
    billed = 10**13 - balance
    return {"charges": charges, "billed_micros": billed, "expected_micros": (charges + BATCH) * 2_000,
            "per_cpu_second": round(charges / cpu), "per_wall_second": round(charges / wall)}
