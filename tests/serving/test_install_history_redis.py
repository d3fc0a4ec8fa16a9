"""Install history in Redis (ADSTACK_REDIS_URL): what one serving worker is told, another knows, with the same
meaning for the guide's target groups as the in-process history; against the real Redis on 127.0.0.1:6379."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest

from adstack.serving.installs import (
    NO_HISTORY,
    InstallHistory,
    RedisInstallHistory,
    make_install_history,
)
from tests.serving import support
from tests.serving.support import SHARED_REDIS_URL as REDIS_URL
from tests.serving.support import redis_available

PROMOTED = "com.example.game"
DEVICE = 0xDEADBEEF12345678
DAY = 86_400.0


@pytest.fixture
def prefix() -> Iterator[str]:
    if not redis_available():
        pytest.skip("no Redis on 127.0.0.1:6379")
    import redis

    name = f"adstack:test-installs:{uuid.uuid4().hex}:"
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=name + "*"):
        client.delete(key)
    client.close()


def _worker(prefix: str) -> RedisInstallHistory:
    history = RedisInstallHistory(REDIS_URL, prefix=prefix)
    history.track([PROMOTED, "com.example.other"])
    return history


def test_settings_choose_redis_or_the_process() -> None:
    assert isinstance(make_install_history(REDIS_URL), RedisInstallHistory)
    assert type(make_install_history(None)) is InstallHistory


def test_what_one_worker_is_told_the_other_knows(prefix: str) -> None:
    first, second = _worker(prefix), _worker(prefix)
    now = support.NOW.timestamp()
    assert second.of(DEVICE) == NO_HISTORY
    first.observe(DEVICE, [PROMOTED, "com.whatsapp"], now - 30 * DAY)
    second.observe(DEVICE, ["com.whatsapp", PROMOTED], now - 10 * DAY)
    # Untracked packages are not kept; the spans merge as first and last seen, whichever worker saw them.
    assert dict(first.of(DEVICE)) == dict(second.of(DEVICE)) == {PROMOTED: (now - 30 * DAY, now - 10 * DAY)}
    assert second.of(DEVICE + 1) == NO_HISTORY and second.of(None) == NO_HISTORY
    assert len(first) == 1


def test_loaded_rows_merge_with_reports_and_expire(prefix: str) -> None:
    import redis

    history = _worker(prefix)
    now = support.NOW.timestamp()
    history.observe(DEVICE, [PROMOTED], now)
    assert (
        history.load(
            [
                (DEVICE, PROMOTED, now - 200 * DAY, now - 100 * DAY),
                (DEVICE + 1, "com.example.other", now - 5 * DAY, now - 4 * DAY),
            ]
        )
        == 2
    )
    assert dict(_worker(prefix).of(DEVICE)) == {PROMOTED: (now - 200 * DAY, now)}
    assert dict(_worker(prefix).of(DEVICE + 1)) == {"com.example.other": (now - 5 * DAY, now - 4 * DAY)}
    client = redis.Redis.from_url(REDIS_URL)
    ttl = client.ttl(f"{prefix}{DEVICE}")
    client.close()
    assert 0 < ttl <= 400 * DAY  # a device no longer reported is forgotten, not kept for ever


@pytest.mark.parametrize(
    ("target_group", "last_seen_days_ago", "served"),
    [
        ("not_currently_installed", 100, True),
        ("not_installed_90d", 100, True),
        ("not_installed_90d", 10, False),
        ("never_installed", 100, False),
    ],
)
def test_a_second_worker_applies_the_target_groups_from_the_shared_history(
    prefix: str, target_group: str, last_seen_days_ago: int, served: bool
) -> None:
    group = support.with_targeting(support.group(1), target_group=target_group, promoted_package=PROMOTED)
    engine = support.engine(support.snapshot([group]))
    told, asked = _worker(prefix), _worker(prefix)
    told.observe(DEVICE, [PROMOTED], (support.NOW - timedelta(days=last_seen_days_ago)).timestamp())
    request = replace(
        support.request(),
        device_key=DEVICE,
        installed_packages=frozenset({"com.whatsapp"}),
        install_history=asked.of(DEVICE),
    )
    assert support.served(engine, request) == ([1] if served else [])
    # A device no worker was told about is every group's.
    fresh = replace(request, device_key=DEVICE + 7, install_history=asked.of(DEVICE + 7))
    assert support.served(engine, fresh) == [1]


def test_an_unreachable_redis_means_no_history_not_an_error() -> None:
    history = RedisInstallHistory("redis://127.0.0.1:1/0")  # nothing listens on port 1
    history.track([PROMOTED])
    history.observe(DEVICE, [PROMOTED], support.NOW.timestamp())
    assert history.of(DEVICE) == NO_HISTORY
    assert history.load([(DEVICE, PROMOTED, 1.0, 2.0)]) == 0
