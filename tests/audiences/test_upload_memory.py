"""A 64 MB upload streams: the server holds its ids (8 bytes each, then one partition's bitmap at a time), never
the file, so its resident memory grows by less than the file's size."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session

from adstack.audiences.models import Audience
from adstack.core.settings import Settings
from tests.support import Api, expect, run_async

MB = 1024 * 1024
LINE_BYTES = 37  # a GAID and its newline

pytestmark = pytest.mark.slow  # 1.8 million ids through the real upload path


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A serving process as deployed beside `adstack pipeline`: the consumers and the embedded event store (chDB,
    which takes more memory than the file when it opens) live in that other process, so this one's memory is
    the upload's."""
    return settings.model_copy(update={"pipeline_in_process": False})


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class _PeakRss:
    """Samples this process's resident set every few milliseconds while the upload runs."""

    def __init__(self) -> None:
        self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss())

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def _gaid_lines(first: int, count: int) -> bytes:
    # Distinct, well-formed version-4 GAIDs, cheap to make: the number spread over the first and last groups.
    return "".join(
        f"{n:08x}-{n % 65536:04x}-4{n % 4096:03x}-8{n % 4096:03x}-{n * 2654435761 % 16**12:012x}\n"
        for n in range(first, first + count)
    ).encode()


def test_a_64_mb_upload_grows_the_servers_memory_by_less_than_the_file(api: Api, session: Session) -> None:
    adv = api.approved_account()
    lines = (64 * MB - 1) // LINE_BYTES
    per_chunk = MB // LINE_BYTES
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        for first in range(0, lines, per_chunk):
            chunk = _gaid_lines(first, min(per_chunk, lines - first))
            sent += len(chunk)
            yield chunk

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=api.client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=600) as client:
            return await client.post(
                "/api/v1/audiences/upload",
                headers=adv.headers,
                content=body(),
                params={"name": "Everyone", "region_code": "IN", "id_type": "gaid"},
            )

    baseline = _rss()
    with _PeakRss() as sampler:
        created = expect(run_async(send), 201)
    growth = sampler.peak - baseline
    assert 63 * MB < sent <= 64 * MB
    audience = session.get(Audience, created["audience"]["id"])
    assert audience is not None and audience.size == lines
    assert growth < sent, f"peak RSS grew by {growth / MB:.1f} MB for a {sent / MB:.1f} MB file"
    print(f"peak RSS growth {growth / MB:.1f} MB for {sent / MB:.1f} MB, {lines} ids")
