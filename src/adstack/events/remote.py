"""Sharing an embedded event store between processes.

chDB runs in one process per data directory. When several serving processes share a data dir, the first to open
the store owns it (an flock beside the chDB directory) and answers the others' reads on a Unix socket in the
data dir; the others still append to the shared journal themselves, which the owner loads. One request is one
JSON line each way; parameters are bound by the caller exactly as the engine would bind them, so both sides run
the same statement.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import socketserver
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson

from adstack.events.engines import QueryResult, _bind

MAX_LINE_BYTES = 64 * 1024 * 1024
TIMEOUT_SECONDS = 60.0


class StoreUnavailable(RuntimeError):
    """No process owns the embedded store right now (the owner is restarting): try again shortly."""


class OwnerLock:
    """Who owns the embedded store across processes."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None
        # flock is per open file: two threads opening the file at once would refuse each other as if one were
        # another process (a report request and the loader both opening the store on first use).
        self._guard = threading.Lock()

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        with self._guard:
            if self._fd is not None:
                return True
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            self._fd = fd
            return True

    def release(self) -> None:
        with self._guard:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


Answer = Callable[[str, dict[str, str], bool], QueryResult]
SHUTDOWN_POLL_SECONDS = 0.05


class QueryServer:
    """The owner's side: runs each read it is sent through `answer(sql, bound_params, fresh)`."""

    def __init__(self, path: Path, answer: Answer):
        self.path = path
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                line = self.rfile.readline(MAX_LINE_BYTES)
                if not line:
                    return
                try:
                    request = orjson.loads(line)
                    result = answer(request["sql"], request["params"], bool(request.get("fresh", True)))
                    reply = {"columns": result.columns, "rows": result.rows}
                except Exception as exc:  # the caller raises it as its own error
                    reply = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
                self.wfile.write(orjson.dumps(reply, option=orjson.OPT_PASSTHROUGH_DATETIME, default=str) + b"\n")

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        self._server = Server(str(path), Handler)
        os.chmod(path, 0o600)
        # `shutdown` waits for the serving loop to look at its flag, once every poll interval (0.5 s by default):
        # that wait was most of the time a store took to hand the embedded engine over or to close.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(SHUTDOWN_POLL_SECONDS,),
                                        name="adstack-store-server", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def remote_query(path: Path, sql: str, params: Mapping[str, Any] | None, *, fresh: bool) -> QueryResult:
    """Ask the owning process to run a read."""
    payload = orjson.dumps({"sql": sql, "params": _bind(params), "fresh": fresh}) + b"\n"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(TIMEOUT_SECONDS)
            client.connect(str(path))
            client.sendall(payload)
            with client.makefile("rb") as reader:
                line = reader.readline(MAX_LINE_BYTES)
    except OSError as exc:
        raise StoreUnavailable(f"the process that owns the event store does not answer: {exc}") from exc
    if not line:
        raise StoreUnavailable("the process that owns the event store closed the connection")
    reply = orjson.loads(line)
    if "error" in reply:
        raise RuntimeError(f"event store query failed in its owning process: {reply['error']}")
    return QueryResult(reply["columns"], reply["rows"])
