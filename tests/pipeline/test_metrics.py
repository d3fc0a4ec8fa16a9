"""The metrics listener of a process without HTTP (`adstack pipeline --metrics-port`): the rule of `GET /metrics`."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from adstack.bench.postbacks import free_port
from adstack.pipeline.metrics import PipelineMetrics, serve_metrics


def test_with_a_token_only_its_bearer_is_answered() -> None:
    metrics = PipelineMetrics()
    metrics.count_appended("imp", 3)
    port = free_port()
    server = serve_metrics(metrics, "127.0.0.1", port, "scrape-token")
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        assert httpx.get(url, timeout=5).status_code == 401
        assert httpx.get(url, headers={"Authorization": "Bearer wrong"}, timeout=5).status_code == 401
        answer = httpx.get(url, headers={"Authorization": "Bearer scrape-token"}, timeout=5)
        assert answer.status_code == 200
        samples = {(s.name, s.labels.get("kind")): s.value
                   for family in text_string_to_metric_families(answer.text) for s in family.samples}
        assert samples[("adstack_events_appended_total", "imp")] == 3
    finally:
        server.shutdown()
        server.server_close()


def test_without_a_token_loopback_is_answered() -> None:
    port = free_port()
    server = serve_metrics(PipelineMetrics(), "127.0.0.1", port, None)
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 200
    finally:
        server.shutdown()
        server.server_close()
