"""`adstack bench audiences`: import a generated 64 MB GAID file through the HTTP upload endpoint, then time
membership look-ups.

The server runs in its own process (the same app as `adstack serve`, on SQLite in a temporary data dir);
its resident set size is sampled from /proc while the file streams in, so the peak growth is the server's,
not this client's. Look-ups run in this process against the index serving would load: one `contains` call
per look-up in a tight loop (one core), and the batch form (`contains_many`, one set intersection).
Rates are per CPU second of the process doing the work (the per-core figure, robust on a shared machine),
with the wall-clock rates beside them.

Prints one JSON line last.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

FILE_BYTES = 64 * 1024 * 1024
LOOKUPS = 1_000_000
CHUNK_BYTES = 1 << 20
SEED = 20_240_601


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process: on a shared machine, throughput per CPU second is the per-core
    figure; wall time also counts the time other processes held the cores."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class RssSampler:
    """Samples a process's resident set every few milliseconds and keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.005):
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self.peak = _rss_bytes(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.peak = max(self.peak, _rss_bytes(self.pid))
            except OSError:
                return


def write_gaid_file(path: Path, size_bytes: int = FILE_BYTES, seed: int = SEED) -> int:
    """Random version-4 GAIDs, one per line, up to `size_bytes`. Returns the number of ids."""
    rng = random.Random(seed)
    line_bytes = 37
    count = size_bytes // line_bytes
    with path.open("wb") as out:
        written = 0
        while written < count:
            batch = min(100_000, count - written)
            out.write(b"".join(f"{uuid.UUID(int=rng.getrandbits(128), version=4)}\n".encode()
                               for _ in range(batch)))
            written += batch
    return count


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _serve(port: int, data_dir: str) -> None:
    import uvicorn

    from adstack.app import create_app
    from adstack.core.settings import Settings
    from adstack.core.workers import EVENT_LOOP, HTTP_IMPLEMENTATION

    settings = Settings(data_dir=Path(data_dir), environment="test")
    uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_level="warning", access_log=False,
                http=HTTP_IMPLEMENTATION, loop=EVENT_LOOP)


def _prepare(data_dir: Path) -> str:
    """Migrate, and register an advertiser; returns its API token."""
    from adstack.accounts import service as accounts
    from adstack.accounts.models import RegistrationIn
    from adstack.core.bootstrap import migrate
    from adstack.core.db import make_engine, make_session_factory, session_scope
    from adstack.core.settings import Settings

    settings = Settings(data_dir=data_dir, environment="test")
    migrate(settings)
    engine = make_engine(settings.resolved_database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            _, _, token = accounts.register(session, RegistrationIn(
                email="bench@example.com", password="bench-password", company_name="Bench Games",
                contact_name="Bench", contact_email="bench@example.com", country="ID",
                settlement_entity="Xiaomi Singapore", currency="USD", accept_agreement=True,
            ), ttl=timedelta(hours=1))
    finally:
        engine.dispose()
    return token


def _wait_for(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("the server exited: " + (server.stderr.read().decode() if server.stderr else ""))
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("the server did not start")


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as source:
        while chunk := source.read(CHUNK_BYTES):
            yield chunk


def import_over_http(data_dir: Path, file_path: Path, token: str) -> dict[str, Any]:
    port = _free_port()
    command = [sys.executable, "-m", "adstack.bench.audiences", "--serve", str(port), str(data_dir)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # noqa: S603
    try:
        _wait_for(port, server)
        headers = {"Authorization": f"Bearer {token}"}
        base = f"http://127.0.0.1:{port}/api/v1/audiences"
        with httpx.Client(timeout=600) as client:
            client.get(base, headers=headers).raise_for_status()  # warm: every module imported, pools open
            baseline = _rss_bytes(server.pid)
            cpu_before = _cpu_seconds(server.pid)
            with RssSampler(server.pid) as sampler:
                started = time.perf_counter()
                response = client.post(f"{base}/upload", headers=headers, content=_file_chunks(file_path),
                                       params={"name": "Bench 64 MB", "region_code": "SG", "id_type": "gaid",
                                               "filename": "bench.txt"})
                elapsed = time.perf_counter() - started
            cpu = _cpu_seconds(server.pid) - cpu_before
        response.raise_for_status()
        body = response.json()
        return {"audience_id": body["audience"]["id"], "report": body["report"], "seconds": elapsed, "cpu": cpu,
                "peak_rss_growth_mb": (sampler.peak - baseline) / 1e6, "baseline_rss_mb": baseline / 1e6}
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


def time_lookups(data_dir: Path, audience_id: int) -> dict[str, Any]:
    from adstack.audiences.service import load_audience_index
    from adstack.core.db import make_engine, make_session_factory
    from adstack.core.settings import Settings

    settings = Settings(data_dir=data_dir, environment="test")
    engine = make_engine(settings.resolved_database_url)
    before = _rss_bytes(os.getpid())
    try:
        with make_session_factory(engine)() as session:
            started = time.perf_counter()
            index = load_audience_index(session, settings)
            load_seconds = time.perf_counter() - started
    finally:
        engine.dispose()
    index_mb = (_rss_bytes(os.getpid()) - before) / 1e6
    indexed = index.get(audience_id)
    assert indexed is not None
    rng = random.Random(SEED)
    members = sorted(indexed.members)  # sorted: the same probes every run
    half = LOOKUPS // 2
    probes = [members[rng.randrange(len(members))] for _ in range(half)]
    probes += [rng.getrandbits(64) for _ in range(LOOKUPS - half)]
    rng.shuffle(probes)

    contains = index.contains
    started, cpu_started = time.perf_counter(), time.thread_time()
    hits = 0
    for key in probes:
        if contains(audience_id, key):
            hits += 1
    per_call_seconds, per_call_cpu = time.perf_counter() - started, time.thread_time() - cpu_started

    batch = frozenset(probes)
    started, cpu_started = time.perf_counter(), time.thread_time()
    batch_hits = len(index.contains_many(audience_id, batch))
    batch_seconds, batch_cpu = time.perf_counter() - started, time.thread_time() - cpu_started
    return {
        "index_load_seconds": round(load_seconds, 2),
        "index_rss_mb": round(index_mb, 1),
        "lookups_per_second": round(LOOKUPS / per_call_cpu),
        "lookups_per_second_wall": round(LOOKUPS / per_call_seconds),
        "batch_lookups_per_second": round(len(batch) / batch_cpu),
        "batch_lookups_per_second_wall": round(len(batch) / batch_seconds),
        "lookup_hits": hits,
        "batch_distinct_keys": len(batch),
        "batch_hits": batch_hits,
    }


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="adstack-bench-audiences-") as tmp:
        root = Path(tmp)
        data_dir = root / "data"
        file_path = root / "gaids.txt"
        token = _prepare(data_dir)
        ids = write_gaid_file(file_path)
        imported = import_over_http(data_dir, file_path, token)
        lookups = time_lookups(data_dir, imported["audience_id"])
        report = imported["report"]
        result = {
            "bench": "audiences",
            "file_bytes": file_path.stat().st_size,
            "ids": ids,
            "valid_ids": report["valid_lines"],
            "audience_size": report["size_after"],
            "import_seconds": round(imported["seconds"], 2),
            "ids_per_second": round(report["valid_lines"] / imported["cpu"]),
            "ids_per_second_wall": round(report["valid_lines"] / imported["seconds"]),
            "server_cpu_seconds": round(imported["cpu"], 2),
            "server_baseline_rss_mb": round(imported["baseline_rss_mb"], 1),
            "peak_rss_growth_mb": round(imported["peak_rss_growth_mb"], 1),
            "peak_rss_target_mb": 150,
            **lookups,
            "lookups_target_per_second": 1_000_000,
            "cpu_count": os.cpu_count(),
        }
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        _serve(int(sys.argv[2]), sys.argv[3])
    else:
        main()
