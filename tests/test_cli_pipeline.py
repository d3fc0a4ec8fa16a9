"""`adstack pipeline` as deployed: a child process with SQLite in its data dir, and NATS JetStream as the event log
(a stream of the test's own) or the embedded local log."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from adstack.bench.postbacks import free_port, server_environment
from adstack.pipeline import records
from adstack.pipeline.jetstream import JetStreamLog
from adstack.pipeline.log import LocalLog
from adstack.pipeline.service import CONSUMER_NAMES
from tests.pipeline.jetstream_support import NATS_URL, drop_stream, nats_available, unique_stream

needs_nats = pytest.mark.skipif(not nats_available(), reason="no NATS server on 127.0.0.1:4222")


@pytest.fixture
def stream() -> Iterator[str]:
    name = unique_stream()
    yield name
    drop_stream(name)


EMBEDDED = {"ADSTACK_ENVIRONMENT": "test", "ADSTACK_SECRET_KEY": "test-secret-key", "COLUMNS": "400"}


def _environment(stream: str) -> dict[str, str]:
    return {**server_environment(), **EMBEDDED, "ADSTACK_NATS_URL": NATS_URL, "ADSTACK_NATS_STREAM": stream}


class PipelineProcess:
    def __init__(self, data_dir: Path, environment: dict[str, str], *options: str, output: str = "pipeline.out"):
        data_dir.mkdir(parents=True, exist_ok=True)
        self.output = data_dir / output
        self.command = [sys.executable, "-m", "adstack.cli", "pipeline", "--data-dir", str(data_dir), *options]
        self.environment = environment
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> PipelineProcess:
        with open(self.output, "wb") as out:
            self.process = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT,
                                            env=self.environment)
        return self

    def text(self) -> str:
        return " ".join(self.output.read_text(errors="replace").split())

    def wait_for(self, text: str, timeout: float = 120.0) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.text():
                return
            if self.process.poll() is not None:
                pytest.fail(f"adstack pipeline exited with {self.process.returncode}: {self.text()}")
            time.sleep(0.1)
        pytest.fail(f"adstack pipeline did not print {text!r} in time: {self.text()}")

    def terminate(self) -> float:
        """SIGTERM, as an orchestrator stops a pod; the seconds until the process exited."""
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.kill()
        return time.monotonic() - started

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


@needs_nats
@pytest.mark.slow  # three processes
def test_a_pipeline_with_a_data_dir_of_its_own_refuses_to_start(tmp_path: Path, stream: str) -> None:
    environment = _environment(stream)
    owner = PipelineProcess(tmp_path / "a", environment).start()
    try:
        owner.wait_for("pipeline consumers running")
        second = PipelineProcess(tmp_path / "b", environment).start()  # as on a second machine
        assert second.process is not None
        try:
            second.process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            pytest.fail(f"a pipeline with another data dir ran on the stream: {second.text()}")
        finally:
            second.kill()
        assert second.process.returncode == 1, second.text()
        assert f"load into the embedded event store in {(tmp_path / 'a').resolve()}" in second.text()
        assert "ADSTACK_CLICKHOUSE_URL" in second.text()
        # Another process with the owner's data dir shares the consumers.
        beside = PipelineProcess(tmp_path / "a", environment, output="beside.out").start()
        try:
            beside.wait_for("pipeline consumers running")
        finally:
            beside.kill()
    finally:
        owner.kill()


GRACE_SECONDS = 10.0  # well inside Kubernetes' default 30 s


@needs_nats
@pytest.mark.slow  # two processes, one after the other
def test_sigterm_stops_the_pipeline_in_seconds_and_loses_nothing(tmp_path: Path, stream: str) -> None:
    data_dir = tmp_path / "data"
    # The batches the stop cuts short come back to the restarted pipeline after JetStream's ack wait.
    environment = {**_environment(stream), "ADSTACK_INVALID_TRAFFIC_ROWS_PER_MINUTE": "100000",
                   "ADSTACK_NATS_ACK_WAIT_SECONDS": "3"}
    pipeline = PipelineProcess(data_dir, environment).start()
    try:
        pipeline.wait_for("pipeline consumers running")
        # What serving processes acknowledge: refused tracking requests, each stored once as invalid traffic.
        log = JetStreamLog(NATS_URL, (), stream=stream, subject_prefix=f"adstack.{stream.lower()}")
        try:
            appended = [records.invalid(kind="imp", reason="malformed", message="not a token", token=f"t{n}",
                                        client_ip="203.0.113.9", user_agent="test") for n in range(3000)]
            log.append(appended)
        finally:
            log.close()
        seconds = pipeline.terminate()  # while the consumers have batches in hand
        assert pipeline.process is not None
        assert pipeline.process.returncode == 0, pipeline.text()
        assert seconds < GRACE_SECONDS, pipeline.text()
    finally:
        pipeline.kill()
    again = PipelineProcess(data_dir, environment, output="again.out").start()
    try:
        again.wait_for("pipeline consumers running")
        engine = create_engine(f"sqlite:///{data_dir / 'adstack.db'}")
        try:
            stored = 0
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                with engine.connect() as connection:
                    stored = connection.execute(text("SELECT count(*) FROM invalid_traffic")).scalar_one()
                if stored >= len(appended):
                    break
                time.sleep(0.5)
        finally:
            engine.dispose()
        assert stored == len(appended)  # each once, whichever batch the stop cut short
        assert again.terminate() < GRACE_SECONDS
    finally:
        again.kill()


def _refused(kind: str, n: int) -> dict[str, object]:
    return records.invalid(kind=kind, reason="malformed", message="not a token", token=f"t{n}",
                           client_ip="203.0.113.9", user_agent="test")


def test_the_pipeline_serves_its_metrics(tmp_path: Path) -> None:
    data_dir, port = tmp_path / "data", free_port()
    pipeline = PipelineProcess(data_dir, {**server_environment(), **EMBEDDED}, "--metrics-port", str(port)).start()
    try:
        pipeline.wait_for("pipeline consumers running")
        log = LocalLog(data_dir / "events" / "log", CONSUMER_NAMES)  # as a serving process beside it appends
        try:
            log.append([_refused("imp", n) for n in range(20)])
        finally:
            log.close()
        applied: dict[str, float] = {}
        families: dict[str, Metric] = {}
        deadline = time.monotonic() + 60
        while applied.get("touchpoints") != 20 and time.monotonic() < deadline:
            answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
            assert answer.status_code == 200
            families = {family.name: family for family in text_string_to_metric_families(answer.text)}
            applied = {s.labels["consumer"]: s.value for family in families.values() for s in family.samples
                       if s.name == "adstack_consumer_applied_total"}
            time.sleep(0.2)
        assert applied.get("touchpoints") == 20
        lag = {s.labels["consumer"] for s in families["adstack_consumer_lag_events"].samples}
        assert lag == set(CONSUMER_NAMES)
        for name in ("adstack_consumer_batch_seconds", "adstack_retention_removed"):
            assert name in families
    finally:
        pipeline.kill()
