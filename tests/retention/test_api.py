"""Retention on `GET /metrics`: what this process removed, by table, and when it last pruned."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session

from adstack.attribution.models import Touchpoint
from adstack.core.settings import Settings
from adstack.core.timeutil import utcnow
from tests.support import Api


def _scrape(api: Api) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    response = api.client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert response.status_code == 200
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_metrics_count_what_retention_removed(api: Api, session: Session, settings: Settings) -> None:
    settings.metrics_token = "scrape-me"
    before = _scrape(api)
    assert before["adstack_retention_removed_total"][(("table", "touchpoints"),)] == 0
    assert "adstack_retention_last_run_timestamp_seconds" not in before

    old = utcnow() - timedelta(days=settings.touchpoint_retention_days + 1)
    session.add_all([Touchpoint(kind="click", touch_id=f"t{n}", impression_id=f"i{n}", account_id=1, campaign_id=1,
                                ad_group_id=1, creative_id=1, ad_space_id=1, publisher_id=1, bid_type="cpc",
                                price_micros=1, occurred_at=old if n < 3 else utcnow()) for n in range(4)])
    session.commit()
    started = utcnow()
    api.client.app.state.retention.run_once()  # type: ignore[attr-defined]

    after = _scrape(api)
    assert after["adstack_retention_removed_total"][(("table", "touchpoints"),)] == 3
    assert after["adstack_retention_removed_total"][(("table", "postbacks"),)] == 0
    assert after["adstack_retention_last_run_timestamp_seconds"][()] >= started.timestamp() - 1
