"""Bench rates count only 2xx and 3xx answers: wrk's own rate counts a refusal as throughput."""

from __future__ import annotations

import itertools
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from adstack.bench import parse_wrk
from adstack.bench.pipeline import ensure_wrk
from adstack.bench.serving import wrk_rate

# As wrk 4.1 prints it with --latency (trimmed of the distribution's lower lines).
WRK_OUTPUT = """Running 5s test @ http://127.0.0.1:8000
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     7.41ms    2.10ms  40.12ms   88.20%
    Req/Sec     4.33k   310.22     4.80k    78.00%
  Latency Distribution
     50%    7.02ms
     75%    7.90ms
     90%    9.41ms
     99%   15.60ms
  21540 requests in 5.00s, 3.12MB read
  Non-2xx or 3xx responses: 540
Requests/sec:   4306.12
Transfer/sec:    638.50KB
"""


def test_a_run_with_refusals_counts_only_the_answers() -> None:
    run = parse_wrk(WRK_OUTPUT)
    assert (run.requests, run.not_2xx, run.p99_ms) == (21540, 540, 15.6)
    assert run.answered_rate == pytest.approx(4306.12 * 21000 / 21540)


def test_a_run_without_refusals_or_latency_keeps_wrks_rate() -> None:
    plain = "\n".join(line for line in WRK_OUTPUT.splitlines() if "Non-2xx" not in line and "%" not in line)
    run = parse_wrk(plain)
    assert (run.not_2xx, run.p99_ms, run.answered_rate) == (0, None, 4306.12)
    with pytest.raises(RuntimeError, match="wrk printed no rate"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused")


@pytest.fixture
def half_refused() -> Iterator[str]:
    """A loopback server that answers every other request 503, as tracking does under back-pressure."""
    counter = itertools.count()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.send_response(204 if next(counter) % 2 else 503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: object) -> None:
            pass  # wrk drops its connections when its time is up

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_the_bench_rate_leaves_out_refused_answers(half_refused: str) -> None:
    try:
        wrk = ensure_wrk()
    except RuntimeError as missing:  # as the browser tests without Chromium
        pytest.skip(str(missing))
    run = parse_wrk(subprocess.run([wrk, "-t1", "-c8", "-d1s", half_refused], check=True,
                                   capture_output=True, text=True).stdout)
    assert run.requests > 100
    assert abs(run.not_2xx - run.requests / 2) <= 8  # connections cut mid-request at the end
    assert run.answered_rate == pytest.approx(run.rate / 2, rel=0.05)
    assert wrk_rate([half_refused], seconds=1) > 0
