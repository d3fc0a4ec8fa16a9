"""`adstack serve --workers 2`: connections opened together spread over both workers, a killed worker is
replaced, and stopping the supervisor stops every worker."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from adstack.bench.postbacks import ServerProcess
from adstack.core.workers import listening_socket
from tests.serving.support import redis_available
from tests.support import run_async

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not redis_available(), reason="several workers share budgets through Redis"),
]

CONNECTIONS = 32


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.add(int(entry.name))
            except OSError:
                continue
    return found


def _workers(supervisor: int, port: int, count: int, timeout: float = 60.0) -> set[int]:
    """The supervisor's children listening on `port`, once there are `count` of them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listening = _tcp_inodes(port, "0A")
        workers = {pid for pid in _children(supervisor) if _socket_inodes(pid) & listening}
        if len(workers) == count:
            return workers
        time.sleep(0.2)
    raise AssertionError(f"the supervisor did not have {count} listening workers in time")


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    except OSError:
        pass
    return inodes


def _tcp_inodes(port: int, state: str) -> set[int]:
    """Inodes of IPv4 TCP sockets on local port `port` in `state` (0A listening, 01 established)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == state:
            inodes.add(int(fields[9]))
    return inodes


def _healthz(server: ServerProcess) -> int:
    # A connection hashed to the dead worker's socket waits in its backlog for the replacement.
    return httpx.get(f"{server.base_url}/healthz", timeout=60).status_code


def test_workers_share_connections_and_are_replaced(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, extra_env={"ADSTACK_REDIS_URL": "redis://127.0.0.1:6379/0"}, workers=2)
    server.start()
    assert server.process is not None
    try:
        workers = _workers(server.process.pid, server.port, 2)

        # Keep-alive connections opened at once, as a load generator or a balancer's pool opens them.
        connections = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(CONNECTIONS)]
        try:
            for sock in connections:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
            for sock in connections:
                assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            established = _tcp_inodes(server.port, "01")
            held = {pid: len(_socket_inodes(pid) & established) for pid in workers}
        finally:
            for sock in connections:
                sock.close()
        assert sum(held.values()) == CONNECTIONS
        assert min(held.values()) >= 6, f"connections per worker: {held}"

        # A worker killed outright is replaced. Connections the kernel had already queued on its socket are
        # answered by the replacement, not reset: stopped first, the victim leaves them unaccepted.
        victim = min(workers)
        os.kill(victim, signal.SIGSTOP)
        queued = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(CONNECTIONS)]
        os.kill(victim, signal.SIGKILL)
        try:
            for sock in queued:
                sock.settimeout(60)
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
            for sock in queued:
                assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        finally:
            for sock in queued:
                sock.close()
        assert _healthz(server) == 200
        replaced = _workers(server.process.pid, server.port, 2)
        assert victim not in replaced and len(replaced & workers) == 1
        assert _healthz(server) == 200
    finally:
        server.stop()
    assert server.process.returncode == 0
    assert not _children(server.process.pid)
    for pid in replaced:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_a_taken_port_fails_at_once(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError):
            listening_socket("127.0.0.1", port)
        server = ServerProcess(tmp_path, port, extra_env={"ADSTACK_REDIS_URL": "redis://127.0.0.1:6379/0"}, workers=2)
        with pytest.raises(RuntimeError, match="exited"):
            server.start(timeout=60)


def test_connections_accepted_on_a_workers_socket_send_without_nagle_delay() -> None:
    """asyncio sets TCP_NODELAY only on sockets that name IPPROTO_TCP; without it a response written as headers
    then body waits for the client's delayed ACK (measured: 50 ms per ad request, a third of the throughput)."""

    async def accepted_nodelay() -> int:
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sock = transport.get_extra_info("socket")
                seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        sock = listening_socket("127.0.0.1", 0)
        server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
        async with server:
            _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
            try:
                return await asyncio.wait_for(seen, 10)
            finally:
                writer.close()

    assert run_async(accepted_nodelay) != 0  # on a thread of its own: a browser test's loop may run on this one
