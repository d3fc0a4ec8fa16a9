"""The serving bench's warm-up: every body is sent before a measured run, so none pays for first sightings."""

from __future__ import annotations

import asyncio
import json

from adstack.bench.serving import HTTP_CONNECTIONS, _drive, _http_payloads
from tests.support import run_async


async def _record_bodies(payload_count: int) -> list[bytes]:
    received: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                received.append(await reader.readexactly(length))
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    payloads, _ = _http_payloads([{"n": n} for n in range(payload_count)])
    async with server:
        done, failed = await _drive(port, payloads, 0.0, every=True)
    assert failed == 0
    assert done == len(received)
    return received


def test_the_warm_up_sends_every_body_even_when_its_time_is_up() -> None:
    count = HTTP_CONNECTIONS * 5 + 3  # shares that do not divide evenly
    received = run_async(lambda: _record_bodies(count))  # a browser test may have left a loop on this thread
    assert {json.loads(body)["n"] for body in received} == set(range(count))
