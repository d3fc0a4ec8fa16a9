"""Two serving processes share one ad group's daily budget through the real Redis on loopback."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.serving.redis_worker import DAILY_BUDGET_MICROS
from tests.serving.support import SHARED_REDIS_URL as REDIS_URL
from tests.serving.support import redis_available

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not redis_available(), reason="no Redis on 127.0.0.1:6379")
def test_two_processes_stay_within_the_daily_budget() -> None:
    prefix = f"adstack:test:{uuid.uuid4().hex}:"
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.serving.redis_worker", REDIS_URL, prefix],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for worker in workers:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
    # Rounds of 50 requests to both at once: they race on the shared counter within a round, and each round
    # starts both, so neither can spend the whole budget before the other has begun however the OS schedules them.
    for _ in range(8):
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("50\n")
            worker.stdin.flush()
        for worker in workers:
            assert worker.stdout is not None and worker.stdout.readline().strip() == "done"
    results = []
    for worker in workers:
        out, err = worker.communicate(input="\n", timeout=120)
        assert worker.returncode == 0, err
        spent, served = (int(x) for x in out.split())
        results.append((spent, served))
    total = sum(spent for spent, _ in results)
    # Together they spend the budget exactly, never more, and both took part.
    assert total == DAILY_BUDGET_MICROS
    assert all(served > 0 for _, served in results), results
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{prefix}*"))
    assert any(client.get(k) == str(DAILY_BUDGET_MICROS).encode() for k in keys)
    client.delete(*keys)
