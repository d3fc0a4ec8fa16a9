"""Two deployments on one Redis database (`ADSTACK_REDIS_PREFIX`): budget counters, the reservation book, install
histories and sign-in limits of one are never the other's."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from adstack.accounts.limits import AuthLimiter
from adstack.core.settings import Settings
from adstack.serving.counters import Claim, Hold
from adstack.serving.runtime import ServingRuntime
from tests.serving.support import redis_available

REDIS_URL = "redis://127.0.0.1:6379/11"
DEVICE = 42

pytestmark = pytest.mark.skipif(not redis_available(), reason="no Redis on 127.0.0.1:6379")


@pytest.fixture
def prefixes() -> Iterator[tuple[str, str]]:
    import redis

    run = uuid.uuid4().hex[:8]
    names = (f"test-a-{run}:", f"test-b-{run}:")
    yield names
    client = redis.Redis.from_url(REDIS_URL)
    for name in names:
        for key in client.scan_iter(match=name + "*"):
            client.delete(key)
    client.close()


def _deployment(tmp_path: Path, prefix: str) -> Settings:
    return Settings(data_dir=tmp_path / prefix.rstrip(":"), redis_url=REDIS_URL, redis_prefix=prefix,
                    secret_key="test-secret-key", environment="test")


def test_two_deployments_on_one_redis_database_share_no_key(tmp_path: Path, prefixes: tuple[str, str]) -> None:
    import redis

    first, second = (_deployment(tmp_path, prefix) for prefix in prefixes)
    one = ServingRuntime(first, lambda: None)  # type: ignore[arg-type, return-value]  # never started
    other = ServingRuntime(second, lambda: None)  # type: ignore[arg-type, return-value]
    try:
        budget = Claim(key="g:7:spend", amount=400, cap=1_000)
        assert one.engine.counters.reserve([budget], Hold("imp-1", 2_000_000_000.0)) == -1
        assert one.engine.counters.get_many(["g:7:spend"]) == [400]
        assert other.engine.counters.get_many(["g:7:spend"]) == [0]  # its ad group 7 has spent nothing
        assert other.engine.counters.outstanding().reservations == 0
        other.install_history.track(["com.example.game"])
        other.install_history.observe(DEVICE, ["com.example.game"], 1_700_000_000.0)
        AuthLimiter(first).hit(("login_ip", "203.0.113.9"))
        AuthLimiter(second).reset()  # another deployment's reset leaves this one's limits alone

        client = redis.Redis.from_url(REDIS_URL)
        try:
            keys = {key.decode() for prefix in prefixes for key in client.scan_iter(match=prefix + "*")}
        finally:
            client.close()
        assert {k for k in keys if k.startswith(prefixes[0])} >= {
            f"{prefixes[0]}serving:g:7:spend", f"{prefixes[0]}serving-book", f"{prefixes[0]}serving-book:deadlines"}
        assert f"{prefixes[1]}installs:{DEVICE}" in keys
        assert any(k.startswith(f"{prefixes[0]}limits:") for k in keys)
    finally:
        one.engine.counters.close()
        other.engine.counters.close()
