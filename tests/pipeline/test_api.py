"""The pipeline seen from outside: /metrics in Prometheus text, staff status, readiness, and no acknowledgement
without storage."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from adstack.app import create_app
from adstack.core.settings import Settings
from tests.attribution.helpers import new_gaid, scenario
from tests.console.support import sign_in
from tests.documented_statuses import StatusRecorder, undocumented
from tests.pipeline.jetstream_support import NATS_URL, drop_stream, nats_available, unique_stream
from tests.support import Api, closed_loopback_port, expect


def _families(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_metrics_parse_and_count_appends_lag_and_reservations(api: Api, settings: Settings) -> None:
    s = scenario(api, settings, bid_type="cpc")
    for _ in range(3):
        expect(api.client.get(s.serve(new_gaid(), bid_type="cpm", price_micros=2_000_000).impression_url), 204)
    expect(api.client.get("/t/imp?t=forged"), 400)
    api.settle()
    settings.metrics_token = "scrape-me"
    response = api.client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    metrics = _families(response.text)
    assert metrics["adstack_events_appended_total"][(("kind", "imp"),)] == 3
    assert metrics["adstack_events_appended_total"][(("kind", "invalid"),)] == 1
    for consumer in ("billing", "touchpoints", "events"):
        assert metrics["adstack_consumer_lag_events"][(("consumer", consumer),)] == 0
        assert metrics["adstack_consumer_lag_seconds"][(("consumer", consumer),)] == 0
        assert metrics["adstack_consumer_applied_total"][(("consumer", consumer),)] == 4
    assert metrics["adstack_request_duration_seconds_count"][(("endpoint", "impression"),)] == 4
    assert "adstack_reservations_outstanding" in metrics
    assert metrics["adstack_postbacks_pending"][()] == 0

    status = expect(api.client.get("/api/v1/pipeline/status", headers=s.admin.headers), 200)
    assert {c["name"]: c["lag_events"] for c in status["consumers"]} == {
        "billing": 0,
        "touchpoints": 0,
        "events": 0,
        "postbacks": 0,
    }
    expect(api.client.get("/api/v1/pipeline/status", headers=s.advertiser.headers), 403)


def test_metrics_need_the_scrape_token_or_a_loopback_client(api: Api, settings: Settings) -> None:
    expect(api.client.get("/metrics"), 401)  # the test client is no loopback address
    settings.metrics_token = "scrape-me"
    expect(api.client.get("/metrics"), 401)
    expect(api.client.get("/metrics", headers={"Authorization": "Bearer wrong"}), 401)
    assert api.client.get("/metrics", headers={"Authorization": "Bearer scrape-me"}).status_code == 200


def test_tracking_answers_503_and_acknowledges_nothing_when_the_log_cannot_store(api: Api, settings: Settings) -> None:
    s = scenario(api, settings, bid_type="cpc")
    before = s.balance_micros()
    urls = s.serve(new_gaid(), bid_type="cpm", price_micros=2_000_000)
    settings.log_min_free_bytes = 1 << 62  # more than any disk has: the log counts as full
    for url in (urls.impression_url, urls.click_url, urls.video_urls["start"]):
        response = api.client.get(url, follow_redirects=False)
        assert response.status_code == 503 and response.headers["retry-after"]
        assert response.json()["error"]["code"] == "unavailable"
    settings.log_min_free_bytes = 0
    assert api.settle() == 0
    assert s.balance_micros() == before
    expect(api.client.get(urls.impression_url), 204)  # the retry is counted, once
    expect(api.client.get(urls.impression_url), 204)
    assert s.balance_micros() == before - 2_000


def test_with_redis_down_metrics_answer_and_the_status_is_briefly_unavailable(api: Api, settings: Settings) -> None:
    """The reservation book lives in Redis: while it is down the status says so with a 503, and a scrape still
    gets every other metric."""
    admin = api.admin()
    down = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{closed_loopback_port()}/0",
                                       "metrics_token": "scrape-me"})
    app = create_app(down)
    seen: set[tuple[str, str, int]] = set()
    app.add_middleware(StatusRecorder, seen=seen)
    app.state.auth_limiter = api.client.app.state.auth_limiter  # type: ignore[attr-defined]  # to sign in
    with TestClient(app, raise_server_exceptions=False) as client:
        scrape = client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert scrape.status_code == 200, scrape.text[:300]
        metrics = _families(scrape.text)
        assert "adstack_consumer_lag_events" in metrics and "adstack_reservations_outstanding" not in metrics
        status = client.get("/api/v1/pipeline/status", headers=admin.headers)
        assert status.status_code == 503 and int(status.headers["retry-after"]) > 0, status.text[:300]
        assert status.json()["error"]["code"] == "unavailable"
        assert sign_in(client, admin.email, "admin-password").status_code == 303
        page = client.get("/console/admin/pipeline")
        assert page.status_code == 503 and page.headers["retry-after"] and "<html" in page.text
    assert undocumented(app, seen) == []


def test_readiness_follows_the_event_logs_disk_and_liveness_does_not(api: Api, settings: Settings) -> None:
    assert expect(api.client.get("/readyz"), 200) == {"status": "ok"}
    settings.log_min_free_bytes = 1 << 62  # more than any disk has: the log counts as full
    response = api.client.get("/readyz")
    assert response.status_code == 503 and response.headers["retry-after"]
    assert response.json()["error"] == {"code": "unavailable", "message": "the event log's disk is full"}
    expect(api.client.get("/healthz"), 200)  # alive: it recovers once the disk has room, without a restart
    settings.log_min_free_bytes = 0
    expect(api.client.get("/readyz"), 200)


def _served(settings: Settings, **changes: object) -> Iterator[TestClient]:
    app = create_app(settings.model_copy(update={"pipeline_in_process": False, **changes}))
    seen: set[tuple[str, str, int]] = set()
    app.add_middleware(StatusRecorder, seen=seen)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client
    assert undocumented(app, seen) == []


def test_readiness_says_no_while_nats_cannot_be_reached(settings: Settings) -> None:
    for client in _served(settings, nats_url="nats://127.0.0.1:9"):
        response = client.get("/readyz")
        assert response.status_code == 503, response.text
        assert response.json()["error"]["message"].startswith("the event log (NATS JetStream) cannot be reached")
        assert client.get("/healthz").status_code == 200


@pytest.mark.skipif(not nats_available(), reason="no NATS server on 127.0.0.1:4222")
def test_readiness_with_nats_answering(settings: Settings) -> None:
    stream = unique_stream()
    try:
        for client in _served(settings, nats_url=NATS_URL, nats_stream=stream):
            assert client.get("/readyz").json() == {"status": "ok"}
    finally:
        drop_stream(stream)
