"""The real NATS JetStream server on 127.0.0.1:4222, with a stream of the test's own, deleted afterwards."""

from __future__ import annotations

import contextlib
import socket
import uuid

from adstack.pipeline.jetstream import JetStreamLog

NATS_URL = "nats://127.0.0.1:4222"


def nats_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 4222), timeout=0.5):
            return True
    except OSError:
        return False


def unique_stream() -> str:
    return f"TEST_{uuid.uuid4().hex[:10].upper()}"


def drop_stream(stream: str) -> None:
    """Delete the stream and the key-value bucket that records where its event store is, if either exists."""
    log = JetStreamLog(NATS_URL, (), stream=stream, subject_prefix=f"test.{stream.lower()}")

    async def drop() -> None:
        js = await log._ensure()
        for name in (stream, f"KV_{stream}_STORE"):
            with contextlib.suppress(Exception):
                await js.delete_stream(name)

    try:
        log._call(drop())
    finally:
        log.close()
