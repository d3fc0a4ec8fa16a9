"""A small demo run through the real path, then the report's figures checked against the raw events and
the ledger, each computed independently. One run serves every check, since a run costs seconds."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from adstack.app import create_app
from adstack.attribution.models import Conversion
from adstack.core.settings import Settings
from adstack.core.timeutil import utcnow
from adstack.demo import ADMIN_EMAIL, ADMIN_PASSWORD, DemoConfig, run
from adstack.events.service import get_event_store
from adstack.finance.models import EntryType, LedgerEntry

CONFIG = DemoConfig(days=2, requests_per_day=150, devices=100, seed=7, click_rate_scale=6.0, install_rate=0.5)


def _report(client: TestClient, **params: Any) -> dict[str, Any]:
    today = utcnow().date()
    query = {
        "start_date": (today - timedelta(days=CONFIG.days + 2)).isoformat(),
        "end_date": today.isoformat(),
        "time_zone": "UTC",
        "limit": 1000,
        **params,
    }
    response = client.get("/api/v1/reports", params=query)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_demo_reports_add_up(settings: Settings, session: Session) -> None:
    summary = run(settings, CONFIG)
    assert summary.requests == CONFIG.days * CONFIG.requests_per_day
    assert summary.impressions > 50 and summary.clicks > 5 and summary.installs_sent > 3
    assert summary.postbacks > summary.installs_sent

    with TestClient(create_app(settings)) as client:
        login = client.post("/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
        client.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        store = get_event_store(settings)
        store.flush()

        # Spend in the report equals the ledger's charges, to the micro.
        charged = session.scalar(
            select(func.sum(-LedgerEntry.amount_micros)).where(LedgerEntry.entry_type == EntryType.CHARGE.value)
        )
        assert charged and charged > 0
        assert int(_report(client, metrics=["cost_micros"])["totals"]["cost_micros"]) == charged

        # Impressions per creative equal the distinct raw impression events.
        raw = store.query(
            "SELECT creative_id, uniqExact(event_id) FROM events WHERE event_type = 'impression' GROUP BY creative_id"
        )
        expected = {int(row[0]): int(row[1]) for row in raw.rows}
        by_creative = _report(client, dimensions=["creative"], metrics=["impressions"])
        assert {
            int(r["creative_id"]): int(r["impressions"]) for r in by_creative["rows"] if r["impressions"]
        } == expected
        assert sum(expected.values()) == summary.impressions

        # Installs and each in-app event, per campaign, equal the attributed conversions.
        attributed = Counter(
            {
                event: n
                for event, n in session.execute(
                    select(Conversion.conversion_event, func.count())
                    .where(Conversion.campaign_id > 0)
                    .group_by(Conversion.conversion_event)
                ).all()
            }
        )
        assert attributed["INSTALL"] > 0
        rows = _report(client, dimensions=["campaign", "event"], metrics=["installs", "in_app_events"])["rows"]
        reported: Counter[str] = Counter()
        for row in rows:
            event = row.get("event") or row.get("conversion_event")
            if isinstance(row.get("campaign_id"), int) and row["campaign_id"] > 0 and event:
                reported[event] += int(row["installs"] if event == "INSTALL" else row["in_app_events"])
        assert +reported == +attributed
