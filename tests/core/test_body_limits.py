"""Form and multipart bodies against a real `adstack serve` on loopback: capped before they are read, nothing
spooled to disk for an anonymous sender, and slow senders cut off at the body deadline."""

from __future__ import annotations

import os
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from adstack.bench.postbacks import ServerProcess
from tests.core.live_server import register_and_sign_in

DEADLINE_S = 2.0
BOUNDARY = "adstackboundary"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data_dir: Path = tmp_path_factory.mktemp("bodies")
    temp_dir = data_dir / "tmp"
    temp_dir.mkdir()
    process = ServerProcess(
        data_dir,
        extra_env={
            "ADSTACK_ENVIRONMENT": "development",
            "ADSTACK_ARGON2_PROFILE": "CHEAPEST",
            "ADSTACK_BODY_DEADLINE_S": str(DEADLINE_S),
            "TMPDIR": str(temp_dir),
        },
    ).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def user(server: ServerProcess) -> tuple[str, int]:
    return register_and_sign_in(server.base_url)


def _deleted_open_files(pid: int) -> set[str]:
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.endswith("(deleted)"):
            found.add(target)
    return found


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _send(port: int, head: str, body: Iterator[bytes], *, timeout: float = 15.0) -> tuple[int, int, float]:
    """Sends `head`, then `body` while no answer has come; the status, the body bytes sent, and the seconds from
    the head to the answer. Stops sending at the first byte of an answer, as a real client would."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head.encode())
        started = time.monotonic()
        for chunk in body:
            if select.select([sock], [], [], 0)[0]:
                break
            try:
                sock.sendall(chunk)
            except OSError:
                break  # the server answered and closed
            sent += len(chunk)
        ready = select.select([sock], [], [], timeout)[0]
        elapsed = time.monotonic() - started
        answer = sock.recv(4096) if ready else b""
    return (int(answer.split(b" ", 2)[1]) if answer else 0), sent, elapsed


def _multipart_head(path: str, length: int | None, extra: str = "") -> str:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{framing}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n{extra}\r\n"
    )


def _file_part(name: str, filename: str) -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
        "Content-Type: application/pdf\r\n\r\n%PDF-1.4\n"
    ).encode()


def _chunks(first: bytes, total: int, size: int = 64 * 1024, *, chunked: bool = False) -> Iterator[bytes]:
    def frame(data: bytes) -> bytes:
        return f"{len(data):x}\r\n".encode() + data + b"\r\n" if chunked else data

    yield frame(first)
    filler = b"0" * size
    for _ in range((total - len(first)) // size):
        yield frame(filler)


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
def test_a_100_mb_sign_in_is_refused_without_touching_the_disk(server: ServerProcess, chunked: bool) -> None:
    assert server.process is not None
    pid = server.process.pid
    before_deleted = _deleted_open_files(pid)
    before_bytes = _dir_bytes(server.data_dir)
    total = 100 * 1024 * 1024
    head = _multipart_head("/console/sign-in", None if chunked else total)
    # Declared: answered before a byte of the body is sent. Chunked: cut off near the cap; what was sent
    # beyond it sits in loopback socket buffers (a few MB), never read.
    body = _chunks(_file_part("password", "x.pdf"), total, chunked=True) if chunked else iter(())
    status, sent, elapsed = _send(server.port, head, body)
    assert status == 413
    assert sent < 16 * 1024 * 1024, sent
    assert elapsed < (5 if chunked else 1)
    assert _deleted_open_files(pid) <= before_deleted
    assert list((server.data_dir / "tmp").iterdir()) == []
    assert _dir_bytes(server.data_dir) - before_bytes < 5 * 1024 * 1024
    assert httpx.get(f"{server.base_url}/healthz", timeout=2).status_code == 200


def test_a_declared_2_gb_document_is_refused_at_once(server: ServerProcess, user: tuple[str, int]) -> None:
    token, account_id = user
    head = _multipart_head(
        f"/api/v1/accounts/{account_id}/documents", 2 * 1024**3, f"Authorization: Bearer {token}\r\n"
    )
    status, sent, elapsed = _send(server.port, head, iter(()))
    assert status == 413 and sent == 0 and elapsed < 1
    proof_head = _multipart_head("/api/v1/finance/top-up-requests", 2 * 1024**3, f"Authorization: Bearer {token}\r\n")
    assert _send(server.port, proof_head, iter(()))[0] == 413


def test_a_slow_upload_is_cut_off_at_the_deadline(server: ServerProcess, user: tuple[str, int]) -> None:
    token, account_id = user
    head = _multipart_head(f"/api/v1/accounts/{account_id}/documents", 200_000, f"Authorization: Bearer {token}\r\n")

    def trickle() -> Iterator[bytes]:
        yield _file_part("file", "slow.pdf")
        for _ in range(200):
            time.sleep(0.25)
            yield b"0" * 512

    status, _, elapsed = _send(server.port, head, trickle())
    assert status == 408
    assert DEADLINE_S - 0.5 < elapsed < DEADLINE_S + 3


def test_an_ordinary_upload_still_goes_through(server: ServerProcess, user: tuple[str, int]) -> None:
    token, account_id = user
    answer = httpx.post(
        f"{server.base_url}/api/v1/accounts/{account_id}/documents",
        headers={"Authorization": f"Bearer {token}"},
        files={"file": ("licence.pdf", b"%PDF-1.4\n" + b"0" * 200_000, "application/pdf")},
        timeout=10,
    )
    assert answer.status_code == 201, answer.text


def test_an_oversized_request_head_is_refused_and_not_kept(server: ServerProcess) -> None:
    """The request line and headers are capped too (h11's 16 KB): a sender streaming a 64 MB header gets a 400
    once past the cap, and the server neither waits for the rest nor holds what was sent."""
    assert server.process is not None
    rss_before = _rss_bytes(server.process.pid)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: adstack\r\nX-Padding: ")
        sent = 0
        try:
            for _ in range(64):
                conn.sendall(b"a" * (1024 * 1024))
                sent += 1024 * 1024
        except OSError:
            pass  # the server closed the connection while we were still sending: what the test wants
        answer = b""
        with_deadline = time.monotonic() + 5
        while time.monotonic() < with_deadline and b"\r\n" not in answer:
            try:
                chunk = conn.recv(4096)
            except OSError:
                break
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400"), (answer[:80], sent)
    assert _rss_bytes(server.process.pid) - rss_before < 32 * 1024 * 1024
    assert httpx.get(f"{server.base_url}/healthz", headers={"X-Padding": "a" * 8 * 1024}, timeout=2).status_code == 200


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")
