"""Small HTTP servers on loopback addresses, standing in for internal services and for public hosts."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SECRET = b"db_password=secret\n"


class LoopbackServer:
    """Answers every GET with `body`, or with a 302 to `redirects[path]`; records the paths it was asked for."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        body: bytes = SECRET,
        redirects: dict[str, str] | None = None,
        status: int = 200,
    ):
        self.host = host
        self.body = body
        self.status = status
        self.redirects = dict(redirects or {})
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server.requests.append(self.path)
                location = server.redirects.get(self.path)
                if location is not None:
                    self.send_response(302)
                    self.send_header("Location", location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(server.status)
                self.send_header("Content-Length", str(len(server.body)))
                self.end_headers()
                self.wfile.write(server.body)

        class Server(ThreadingHTTPServer):
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
            daemon_threads = True

        self._server = Server((host, port), Handler)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str = "/") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{path}"

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def servers_on_one_port(*specs: tuple[str, dict[str, Any]]) -> Iterator[list[LoopbackServer]]:
    """Servers on several loopback addresses sharing one port number, as one host name resolving to either
    address would need."""
    for _ in range(50):
        first = LoopbackServer(specs[0][0], **specs[0][1])
        try:
            rest = [LoopbackServer(host, first.port, **options) for host, options in specs[1:]]
        except OSError:
            first._server.server_close()
            continue
        started = [first, *rest]
        for server in started:
            server.__enter__()
        try:
            yield started
        finally:
            for server in started:
                server.__exit__()
        return
    raise RuntimeError("no port free on every address")


def closed_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@contextmanager
def silent_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A port that accepts connections and never answers (a stuck service)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind((host, 0))
        listener.listen(8)
        yield int(listener.getsockname()[1])


@contextmanager
def non_http_port(host: str = "127.0.0.1", greeting: bytes = b"SSH-2.0-OpenSSH_9.2 internal\r\n") -> Iterator[int]:
    """A port speaking another protocol: it greets, then closes, like SSH or SMTP would."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((host, 0))
    listener.listen(8)
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                continue
            with connection:
                connection.sendall(greeting)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        listener.close()


class TrickleServer:
    """Answers every request with its status line, then one more byte of a header line every `gap` seconds,
    never finishing: a slow or hostile remote host. `close()` ends every connection."""

    def __init__(self, gap: float = 0.2, host: str = "127.0.0.1"):
        self.gap = gap
        self.host = host
        self.connections = 0
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind((host, 0))
        self._listener.listen(64)
        self.port = int(self._listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._drip, args=(connection,), daemon=True).start()

    def _drip(self, connection: socket.socket) -> None:
        with connection:
            try:
                connection.recv(65536)
                connection.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                while not self._stop.wait(self.gap):
                    connection.sendall(b"x")
            except OSError:
                pass

    def url(self, path: str = "/ids.txt") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def close(self) -> None:
        self._stop.set()
        self._listener.close()

    def __enter__(self) -> TrickleServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
