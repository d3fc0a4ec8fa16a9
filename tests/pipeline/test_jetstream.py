"""The event log on the real NATS JetStream server on 127.0.0.1:4222: durable appends, a retry stored once,
consumers that read at their own pace and get unacknowledged batches again."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nats.js.api import DiscardPolicy, RetentionPolicy

from adstack.pipeline.jetstream import DEFAULT_MAX_AGE_SECONDS, JetStreamLog
from adstack.pipeline.log import LogUnavailable
from tests.pipeline.jetstream_support import NATS_URL, drop_stream, nats_available, unique_stream

pytestmark = pytest.mark.skipif(not nats_available(), reason="no NATS server on 127.0.0.1:4222")


@pytest.fixture
def log() -> Iterator[JetStreamLog]:
    name = uuid.uuid4().hex[:10]
    stream = JetStreamLog(NATS_URL, ("billing", "events"), stream=f"TEST_{name}", subject_prefix=f"test.{name}")
    yield stream

    async def drop() -> None:
        js = await stream._ensure()
        await js.delete_stream(stream.stream)

    stream._call(drop())
    stream.close()


def _record(n: int) -> dict[str, object]:
    return {"id": f"imp:{n}", "k": "imp", "ts": 1_700_000_000_000 + n, "a": n % 3}


def _read_and_commit(log: JetStreamLog, consumer: str, wanted: int, *, seconds: float) -> list[str]:
    """The ids a consumer's loop reads until it has `wanted` of them or the time is up: redeliveries may arrive
    over more than one fetch."""
    ids: list[str] = []
    deadline = time.monotonic() + seconds
    while len(ids) < wanted and time.monotonic() < deadline:
        batch = log.read(consumer, 5)
        ids.extend(str(r["id"]) for r in batch.records)
        log.commit(consumer, batch)
    return ids


def test_consumers_read_at_their_own_pace_and_retries_are_stored_once(log: JetStreamLog) -> None:
    log.append([_record(n) for n in range(10)])
    log.append([_record(3), _record(4)])  # a client retry within the duplicate window
    assert log.lag("billing").events == 10
    first = log.read("billing", 6)
    assert len(first.records) == 6
    log.commit("billing", first)
    rest = log.read("billing", 100)
    log.commit("billing", rest)
    assert sorted(str(r["id"]) for r in first.records + rest.records) == sorted(f"imp:{n}" for n in range(10))
    assert log.lag("billing").events == 0
    assert log.lag("events").events == 10  # the other consumer has read nothing yet
    assert log.lag("events").seconds > 0


def test_an_unacknowledged_batch_is_delivered_again(log: JetStreamLog) -> None:
    log.append([_record(n) for n in range(5)])
    taken = log.read("events", 5)
    assert len(taken.records) == 5
    # The process died before acknowledging: a restarted consumer (a new subscription) sees the batch again
    # once the ack wait passes; the subscription's redelivery is forced here instead of waiting a minute.

    async def nak() -> None:
        for message in taken.handle:
            await message.nak()

    log._call(nak())
    again = _read_and_commit(log, "events", len(taken.records), seconds=10)
    assert sorted(again) == sorted(str(r["id"]) for r in taken.records)
    assert log.lag("events").events == 0


def test_an_unreachable_server_is_refused_not_acknowledged() -> None:
    dead = JetStreamLog("nats://127.0.0.1:9", ("billing",), stream=f"TEST_{uuid.uuid4().hex[:8]}")
    try:
        with pytest.raises(LogUnavailable):
            dead.append([_record(1)])
    finally:
        dead.close()


# ---------- the stream's limits ----------


def _stream_config(log: JetStreamLog) -> Any:
    async def read() -> Any:
        js = await log._ensure()
        return (await js.stream_info(log.stream)).config

    return log._call(read())


@pytest.fixture
def stream_name() -> Iterator[str]:
    name = unique_stream()
    yield name
    drop_stream(name)


def _open(stream: str, **settings: Any) -> JetStreamLog:
    return JetStreamLog(NATS_URL, ("billing",), stream=stream, subject_prefix=f"test.{stream.lower()}", **settings)


def test_a_batch_read_and_never_acknowledged_comes_back_after_the_ack_wait_set_now(stream_name: str) -> None:
    """The consumer was made with the default ack wait; a restart with a shorter one applies it to the consumer,
    so a batch the stopped process held comes back within it."""
    first = _open(stream_name)
    try:
        first.append([_record(n) for n in range(5)])
        held = first.read("billing", 5)
        assert len(held.records) == 5
    finally:
        first.close()  # stopped without acknowledging
    again = _open(stream_name, ack_wait_seconds=2.0)
    try:
        back = _read_and_commit(again, "billing", 5, seconds=8)
        assert sorted(back) == sorted(str(r["id"]) for r in held.records)
    finally:
        again.close()


def test_a_new_stream_keeps_records_by_age_and_refuses_appends_once_full(stream_name: str) -> None:
    log = _open(stream_name)
    try:
        config = _stream_config(log)
        assert config.retention == RetentionPolicy.LIMITS
        assert config.max_age == DEFAULT_MAX_AGE_SECONDS == 7 * 24 * 3600
        assert config.discard == DiscardPolicy.NEW  # a full stream refuses; it never drops unapplied records
        assert config.num_replicas == 1
        assert config.max_bytes == -1
    finally:
        log.close()


def test_a_restart_keeps_what_an_operator_set_on_the_stream(stream_name: str) -> None:
    log = _open(stream_name)
    try:
        config = _stream_config(log)
        operator_subject = f"ops.{stream_name.lower()}.>"

        async def operator_changes() -> None:
            js = await log._ensure()
            await js.update_stream(config.evolve(max_age=86_400.0, max_bytes=256 * 1024 * 1024,
                                                 subjects=[*config.subjects, operator_subject]))

        log._call(operator_changes())
    finally:
        log.close()
    restarted = _open(stream_name)  # nothing set explicitly
    try:
        config = _stream_config(restarted)
        assert config.max_age == 86_400
        assert config.max_bytes == 256 * 1024 * 1024
        assert operator_subject in config.subjects
    finally:
        restarted.close()
    configured = _open(stream_name, max_age_seconds=3 * 86_400, max_bytes=512 * 1024 * 1024, replicas=1)
    try:
        config = _stream_config(configured)
        assert config.max_age == 3 * 86_400  # set explicitly: applied
        assert config.max_bytes == 512 * 1024 * 1024
        assert operator_subject in config.subjects
    finally:
        configured.close()


def test_settings_the_server_refuses_are_named_in_the_refusal(stream_name: str) -> None:
    log = _open(stream_name, replicas=3)  # this server is no cluster
    try:
        with pytest.raises(LogUnavailable, match="replicas"):
            log.append([_record(1)])
    finally:
        log.close()


def test_a_full_stream_refuses_appends(stream_name: str) -> None:
    log = _open(stream_name, max_bytes=4096)
    try:
        log.append([_record(n) for n in range(5)])
        with pytest.raises(LogUnavailable):
            for start in range(5, 500, 5):
                log.append([_record(n) for n in range(start, start + 5)])
        assert log.lag("billing").events >= 5
        with pytest.raises(LogUnavailable, match="is full"):  # a readiness probe says so too
            log._call(log.probe_async())
        version = tuple(int(part) for part in str(log._nc._server_info["version"]).split("-")[0].split("."))
        if version >= (2, 10, 5):
            # Before that, nats-server underestimated a message's size against max_bytes and then dropped the
            # oldest records of a discard-new stream to fit (nats-io/nats-server#4771, #4775).
            first = log.read("billing", 5)
            assert [r["id"] for r in first.records] == [f"imp:{n}" for n in range(5)]
    finally:
        log.close()


def test_the_settings_reach_the_stream(tmp_path: Path) -> None:
    from adstack.core.settings import Settings
    from adstack.pipeline.service import open_log

    log = open_log(Settings(data_dir=tmp_path, nats_url=NATS_URL, nats_max_age_seconds=2 * 86_400,
                            nats_max_bytes=10 * 1024**3, nats_replicas=3, nats_ack_wait_seconds=5))
    try:
        assert isinstance(log, JetStreamLog)
        assert (log.max_age_seconds, log.max_bytes, log.replicas) == (2 * 86_400, 10 * 1024**3, 3)
        assert log.ack_wait_seconds == 5
    finally:
        log.close()
    unset = open_log(Settings(data_dir=tmp_path, nats_url=NATS_URL))
    try:
        assert isinstance(unset, JetStreamLog)
        assert (unset.max_age_seconds, unset.max_bytes, unset.replicas) == (None, None, None)
    finally:
        unset.close()
