"""Redis from the serving event loop: every request waiting on Redis shares one pipeline.

A serving process decides in its event loop. A synchronous Redis call there stops every other request for a
round trip, and on a busy machine that round trip is most of an ad request's time. Here a request queues its
command and awaits the answer; the commands of every request that queued in the same loop iteration go out in one
write (group commit, as the event log shares one fsync). One connection per process and event loop carries it all.

The connection is an asyncio protocol over hiredis's command packer and reply parser rather than redis-py's
asyncio pipeline: Redis answers in the order it was asked, so each reply resolves the oldest waiting request as it
is parsed, with no task, lock or timeout context per batch. redis-py's pipeline cost a tenth of an ad request's
CPU under load.

Scripts are sent by their SHA-1 (`EVALSHA`) and loaded again when a restarted Redis no longer knows them. A reply
that does not come within `socket_timeout` drops the connection and fails every request waiting on it; the next
command connects again.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import hashlib
import ssl
from collections.abc import Sequence
from typing import Any

import hiredis
from redis.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError


def _error(reply: Exception) -> Exception:
    text = str(reply)
    return NoScriptError(text) if text.startswith("NOSCRIPT") else ResponseError(text)


class _Connection(asyncio.Protocol):
    """One Redis connection: replies resolve the waiting futures in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float, handshake: Sequence[bytes]) -> None:
        self._loop = loop
        self._timeout = timeout
        self._reader = hiredis.Reader()
        self._waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        # AUTH and SELECT go first, so the first replies are theirs.
        self._outgoing: list[bytes] = list(handshake)
        self._handshake_replies = len(handshake)
        self._transport: asyncio.Transport | None = None
        self._flush_scheduled = False
        self.lost = False

    # ---------- asyncio.Protocol ----------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # a stream transport, whichever loop made it
        if self._outgoing:
            self._flush()

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        waiting = self._waiting
        while True:
            reply = self._reader.gets()
            if reply is False:
                return
            if self._handshake_replies:
                self._handshake_replies -= 1
                if isinstance(reply, Exception):  # a refused AUTH or SELECT: no command may run unauthenticated
                    self._fail(_error(reply))
                    return
                continue
            if not waiting:  # an answer nobody asked for: the stream is out of step
                self._fail(RedisConnectionError("Redis answered more than it was asked"))
                return
            answer = waiting.popleft()
            if answer.done():
                continue  # its request went away
            if isinstance(reply, Exception):
                answer.set_exception(_error(reply))
            else:
                answer.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(f"the connection to Redis closed: {exc or 'by the server'}"))

    # ---------- requests ----------

    def send(self, packed: bytes) -> asyncio.Future[Any]:
        answer: asyncio.Future[Any] = self._loop.create_future()
        if self.lost:
            answer.set_exception(RedisConnectionError("the connection to Redis is closed"))
            return answer
        self._waiting.append(answer)
        self._outgoing.append(packed)
        if not self._flush_scheduled and self._transport is not None:
            self._flush_scheduled = True
            # After the other requests of this loop iteration have queued theirs: one write for all.
            self._loop.call_soon(self._flush)
        return answer

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._transport is None or not self._outgoing or self.lost:
            return
        data, self._outgoing = b"".join(self._outgoing), []
        self._transport.write(data)
        if self._waiting:
            self._loop.call_later(self._timeout, self._expire, self._waiting[-1])

    def _expire(self, last: asyncio.Future[Any]) -> None:
        if not last.done():
            self._fail(RedisTimeoutError(f"no answer from Redis within {self._timeout} s"))

    def connect_failed(self, exc: Exception) -> None:
        self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        if self.lost:
            return
        self.lost = True
        waiting, self._waiting = self._waiting, collections.deque()
        for answer in waiting:
            if not answer.done():
                answer.set_exception(exc)
        if self._transport is not None:
            self._transport.abort()

    def close(self) -> None:
        self._fail(RedisConnectionError("closed"))


class PipelinedRedis:
    def __init__(self, url: str, *, socket_timeout: float, socket_connect_timeout: float) -> None:
        self._options = parse_url(url)
        self._tls = url.startswith("rediss://")
        self._socket_timeout, self._connect_timeout = socket_timeout, socket_connect_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connection: _Connection | None = None
        self._opening: asyncio.Task[None] | None = None

    async def execute(self, *command: Any) -> Any:
        return await self._connected().send(hiredis.pack_command(command))

    async def run_script(self, source: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        sha = _sha(source)
        try:
            return await self._connected().send(hiredis.pack_command(("EVALSHA", sha, len(keys), *keys, *args)))
        except NoScriptError:
            load: tuple[Any, ...] = ("SCRIPT", "LOAD", source)
            await self._connected().send(hiredis.pack_command(load))
            return await self._connected().send(hiredis.pack_command(("EVALSHA", sha, len(keys), *keys, *args)))

    def _connected(self) -> _Connection:
        loop = asyncio.get_running_loop()
        connection = self._connection
        if connection is None or connection.lost or loop is not self._loop:
            # First use, a lost connection, or a new event loop (a test client's): a connection of its own.
            self._loop = loop
            handshake = [hiredis.pack_command(command) for command in self._handshake()]
            connection = self._connection = _Connection(loop, self._socket_timeout, handshake)
            self._opening = loop.create_task(self._open(connection))
        return connection

    def _handshake(self) -> list[tuple[Any, ...]]:
        options = self._options
        commands: list[tuple[Any, ...]] = []
        if options.get("password"):
            commands.append(("AUTH", *([options["username"]] if options.get("username") else []),
                             options["password"]))
        if options.get("db"):
            commands.append(("SELECT", options["db"]))
        return commands

    async def _open(self, connection: _Connection) -> None:
        assert self._loop is not None
        options = self._options
        try:
            async with asyncio.timeout(self._connect_timeout):
                if options.get("path"):
                    await self._loop.create_unix_connection(lambda: connection, options["path"])
                else:
                    await self._loop.create_connection(
                        lambda: connection, options.get("host", "localhost"), options.get("port", 6379),
                        ssl=ssl.create_default_context() if self._tls else None)
        except Exception as exc:  # refused, timed out, or a host name no resolver takes: no request may hang
            connection.connect_failed(RedisConnectionError(f"cannot reach Redis: {exc or 'timed out'}"))

    def close(self) -> None:
        connection, loop = self._connection, self._loop
        self._connection = self._loop = None
        if connection is None or loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            connection.close()
        else:  # the transport belongs to its loop's thread
            loop.call_soon_threadsafe(connection.close)


@functools.lru_cache(maxsize=16)
def _sha(source: str) -> str:
    return hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1
