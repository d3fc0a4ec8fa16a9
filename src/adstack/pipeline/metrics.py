"""Prometheus metrics of the event path: appends, consumer lag, pending postbacks, reservations, latency.

Each application has its own registry (several apps may live in one process, as in tests). Gauges that are
cheap to compute only when asked (lag, pending postbacks, outstanding reservations) are read at scrape time by
a collector; counters and histograms are updated on the hot path.
"""

from __future__ import annotations

import hmac
import ipaddress
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# Endpoints whose latency is measured, by path (the label is the endpoint's name, never the raw path).
TIMED_PATHS = {
    "/v1/ads": "ads", "/openrtb2/bid": "bid", "/t/imp": "impression", "/t/click": "click", "/t/video": "video",
    "/openrtb2/win": "win", "/openrtb2/loss": "loss", "/track/m3rd/v1.0": "postback",
}
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class PipelineMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.appended = Counter("adstack_events_appended", "Records appended to the event log, by kind.",
                                ["kind"], registry=self.registry)
        self.applied = Counter("adstack_consumer_applied", "Records applied by each consumer.", ["consumer"],
                               registry=self.registry)
        self.batch_seconds = Histogram("adstack_consumer_batch_seconds", "Time to apply one batch.", ["consumer"],
                                       registry=self.registry)
        self.group_records = Histogram("adstack_log_group_records", "Records made durable by one write and fsync.",
                                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 1024), registry=self.registry)
        self.group_seconds = Histogram("adstack_log_group_seconds", "Time to write and fsync one group.",
                                       buckets=LATENCY_BUCKETS, registry=self.registry)
        self.latency = Histogram("adstack_request_duration_seconds", "Latency of the ad, tracking and postback "
                                 "endpoints.", ["endpoint"], buckets=LATENCY_BUCKETS, registry=self.registry)

        # Label lookups hash and lock on every call; the hot paths keep each child once.
        self._appended_children: dict[str, Any] = {}
        self._latency_children: dict[str, Any] = {}

    def count_appended(self, kind: str, n: int = 1) -> None:
        child = self._appended_children.get(kind)
        if child is None:
            child = self._appended_children[kind] = self.appended.labels(kind)
        child.inc(n)

    def observe_latency(self, endpoint: str, seconds: float) -> None:
        child = self._latency_children.get(endpoint)
        if child is None:
            child = self._latency_children[endpoint] = self.latency.labels(endpoint)
        child.observe(seconds)

    def observe_group(self, records: int, seconds: float) -> None:
        self.group_records.observe(records)
        self.group_seconds.observe(seconds)

    def watch(self, read: Callable[[], Iterator[GaugeMetricFamily]]) -> None:
        self.registry.register(_Collector(read))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Collector(Collector):
    def __init__(self, read: Callable[[], Iterator[GaugeMetricFamily]]):
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self._read()

    def describe(self) -> list[Any]:
        return []  # computed at scrape time; nothing to check at registration


class LatencyMiddleware:
    """A pure ASGI middleware: times the requests of TIMED_PATHS, passes every other request straight through."""

    def __init__(self, app: Any, metrics: Callable[[], PipelineMetrics | None]):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        endpoint = TIMED_PATHS.get(scope.get("path", "")) if scope["type"] == "http" else None
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            metrics = self.metrics()
            if metrics is not None:
                metrics.observe_latency(endpoint, time.perf_counter() - started)


# ---------- a process without HTTP (`adstack pipeline --metrics-port`) ----------


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # a scrape every few seconds is no news
        pass


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def serve_metrics(metrics: PipelineMetrics, host: str, port: int, token: str | None) -> WSGIServer:
    """Serve the registry in a background thread, under the rule of `GET /metrics`: with a token, scrapers send it
    as a bearer token; without one only loopback clients are answered."""
    exposition = make_wsgi_app(metrics.registry)

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if token:
            sent = str(environ.get("HTTP_AUTHORIZATION", "")).removeprefix("Bearer ").strip()
            refused = None if hmac.compare_digest(sent.encode(), token.encode()) else \
                b"send the metrics token as a bearer token\n"
        else:
            refused = None if _loopback(str(environ.get("REMOTE_ADDR", ""))) else \
                b"metrics are served to loopback clients unless a metrics token is set\n"
        if refused is not None:
            start_response("401 Unauthorized", [("Content-Type", "text/plain; charset=utf-8")])
            return [refused]
        answer: Iterable[bytes] = exposition(environ, start_response)
        return answer

    server = make_server(host, port, guarded, server_class=_Server6 if ":" in host else _Server,
                         handler_class=_Quiet)
    # Polled for `shutdown` every 50 ms rather than every 0.5 s, so the pipeline stops without waiting for it.
    threading.Thread(target=server.serve_forever, args=(0.05,), name="adstack-metrics", daemon=True).start()
    return server
