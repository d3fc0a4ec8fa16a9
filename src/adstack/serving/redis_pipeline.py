"""Redis from the serving event loop: every request waiting on Redis shares one pipeline.

A serving process decides in its event loop. A synchronous Redis call there stops every other request for a
round trip, and on a busy machine that round trip is most of an ad request's time. Here a request queues its
command and awaits the answer; the commands of every request that queued in the meantime go out as one pipeline,
and while one pipeline is in flight the next requests' commands wait for the following one (group commit, as the
event log shares one fsync). One connection per process and event loop carries it all.

Scripts are sent by their SHA-1 (`EVALSHA`) and loaded again when a restarted Redis no longer knows them.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections.abc import Sequence
from typing import Any


class PipelinedRedis:
    def __init__(self, url: str, *, socket_timeout: float, socket_connect_timeout: float) -> None:
        self._url = url
        self._socket_timeout, self._connect_timeout = socket_timeout, socket_connect_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None
        self._queue: list[tuple[tuple[Any, ...], str | None, asyncio.Future[Any]]] = []
        self._flushing = False
        self._flusher: asyncio.Task[None] | None = None

    async def execute(self, *command: Any) -> Any:
        return await self._queued(command, None)

    async def run_script(self, source: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        sha = _sha(source)
        return await self._queued(("EVALSHA", sha, len(keys), *keys, *args), source)

    def _queued(self, command: tuple[Any, ...], script: str | None) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (a test client's): a connection of its own
            self._loop, self._client, self._queue, self._flushing = loop, self._connect(), [], False
        answer: asyncio.Future[Any] = loop.create_future()
        self._queue.append((command, script, answer))
        if not self._flushing:
            self._flushing = True
            # Runs after the other requests of this loop iteration have queued theirs.
            self._flusher = loop.create_task(self._flush())
        return answer

    def _connect(self) -> Any:
        import redis.asyncio

        return redis.asyncio.Redis.from_url(self._url, health_check_interval=30, socket_timeout=self._socket_timeout,
                                            socket_connect_timeout=self._connect_timeout)

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                await self._send(batch)
        finally:
            self._flushing = False

    async def _send(self, batch: list[tuple[tuple[Any, ...], str | None, asyncio.Future[Any]]]) -> None:
        from redis.exceptions import NoScriptError

        client = self._client
        try:
            results = await self._pipeline(client, [command for command, _, _ in batch])
            unknown = {script for (_, script, _), result in zip(batch, results, strict=True)
                       if script is not None and isinstance(result, NoScriptError)}
            if unknown:
                for script in unknown:
                    await client.script_load(script)
                retried = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
                again = await self._pipeline(client, [batch[i][0] for i in retried])
                for i, result in zip(retried, again, strict=True):
                    results[i] = result
        except Exception as exc:  # unreachable or too slow: every request in the batch hears it
            for _, _, answer in batch:
                if not answer.done():
                    answer.set_exception(exc)
            return
        for (_, _, answer), result in zip(batch, results, strict=True):
            if answer.done():
                continue  # its request went away
            if isinstance(result, Exception):
                answer.set_exception(result)
            else:
                answer.set_result(result)

    @staticmethod
    async def _pipeline(client: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
        pipe = client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(await pipe.execute(raise_on_error=False))

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
            self._loop = None


@functools.lru_cache(maxsize=16)
def _sha(source: str) -> str:
    return hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1
