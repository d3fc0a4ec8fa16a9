"""`adstack serve --workers 2`: both processes count tracking, and reports, the overview and the media center
answer on either one (one owns the embedded event store; the other asks it over its socket)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from adstack.bench.pipeline import create_admin, set_up_billing, wait_for_lag_zero
from adstack.bench.postbacks import ServerProcess
from tests.serving.support import redis_available

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not redis_available(), reason="several workers share budgets through Redis"),
]


def _appended_impressions(client: httpx.Client) -> float:
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "adstack_events_appended_total" and sample.labels.get("kind") == "imp":
                return sample.value
    return 0.0


IMPRESSIONS = 201


def test_two_workers_count_and_report(tmp_path: Path) -> None:
    # Scripted traffic from one client: the invalid-traffic rules (tested in test_ivt.py) would rightly refuse it.
    environment = {"ADSTACK_REDIS_URL": "redis://127.0.0.1:6379/0", "ADSTACK_IVT_ENABLED": "false"}
    create_admin(tmp_path, environment)
    server = ServerProcess(tmp_path, extra_env=environment, workers=2).start()
    try:
        billing = set_up_billing(server)
        # An odd number: the two processes' counts then differ, so each scrape tells which one answered (an
        # even split had read as one process).
        impressions = [billing.urls(price_micros=2_000_000) for _ in range(IMPRESSIONS)]
        for urls in impressions:  # a new connection each: the kernel spreads them over both workers
            assert httpx.get(urls.impression_url, timeout=10).status_code == 204
        wait_for_lag_zero(billing, reads=8)
        seen = set()
        for _ in range(20):
            with httpx.Client(base_url=server.base_url, timeout=10) as client:
                seen.add(_appended_impressions(client))
        assert len(seen) >= 2, "every scrape reached the same process"
        assert max(seen) < IMPRESSIONS  # each process counts its own appends: both took some

        headers = {"Authorization": f"Bearer {billing.token}"}
        today = datetime.now(UTC).date()
        params = {
            "start_date": (today - timedelta(days=1)).isoformat(),
            "end_date": (today + timedelta(days=1)).isoformat(),
            "time_zone": "UTC",
            "metrics": ["cost_micros", "impressions"],
        }
        costs = set()
        for _ in range(12):
            with httpx.Client(base_url=server.base_url, timeout=30) as client:
                report = client.get("/api/v1/reports", headers=headers, params=params)
                assert report.status_code == 200, report.text
                costs.add(int(report.json()["totals"]["cost_micros"]))
                assert client.get("/api/v1/overview", headers=headers).status_code == 200
                media = client.get(
                    "/api/v1/media-center",
                    headers=headers,
                    params={"start_date": params["start_date"], "end_date": params["end_date"]},
                )
                assert media.status_code == 200, media.text
        assert costs == {IMPRESSIONS * 2_000}
    finally:
        server.stop()
