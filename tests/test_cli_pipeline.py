"""`adstack pipeline` as deployed at scale: a child process with NATS JetStream as the event log (a stream of the
test's own) and SQLite in its data dir."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from adstack.bench.postbacks import server_environment
from tests.pipeline.jetstream_support import NATS_URL, drop_stream, nats_available, unique_stream

pytestmark = pytest.mark.skipif(not nats_available(), reason="no NATS server on 127.0.0.1:4222")


@pytest.fixture
def stream() -> Iterator[str]:
    name = unique_stream()
    yield name
    drop_stream(name)


def _environment(stream: str) -> dict[str, str]:
    return {**server_environment(), "ADSTACK_NATS_URL": NATS_URL, "ADSTACK_NATS_STREAM": stream,
            "ADSTACK_ENVIRONMENT": "test", "ADSTACK_SECRET_KEY": "test-secret-key", "COLUMNS": "400"}


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

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


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
