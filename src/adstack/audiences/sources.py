"""Where a server-side import reads its file: an HTTP(S) URL, or HDFS through the WebHDFS REST API.

The body is streamed in chunks into the same reader an upload uses, so the size cap and every rule apply
while downloading. Requests to link-local addresses (cloud metadata services) are refused, redirects
included; loopback and private networks stay allowed, since HDFS clusters usually live on them.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import SplitResult, urlsplit, urlunsplit

import httpx

from adstack.core.errors import FieldError, PayloadTooLarge, ValidationFailed

WEBHDFS_DEFAULT_PORT = 9870
CHUNK_BYTES = 1 << 16
SCHEMES = ("http", "https", "webhdfs", "swebhdfs")


def _refuse(rule: str, message: str, *, limit: object = None) -> ValidationFailed:
    return ValidationFailed.single("url", rule, message, limit=limit)


def resolve_url(url: str) -> str:
    """The HTTP URL to GET: http(s) as given; webhdfs://host:port/path becomes the WebHDFS OPEN call."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _refuse("url", f"not a valid URL: {exc}") from exc
    if parts.scheme not in SCHEMES:
        raise _refuse("scheme", f"the URL scheme must be one of {', '.join(SCHEMES)}", limit=list(SCHEMES))
    if not parts.hostname:
        raise _refuse("host", "the URL has no host")
    if parts.scheme in ("http", "https"):
        return url
    scheme = "https" if parts.scheme == "swebhdfs" else "http"
    netloc = f"{parts.hostname}:{port or WEBHDFS_DEFAULT_PORT}"
    if ":" in parts.hostname:
        netloc = f"[{parts.hostname}]:{port or WEBHDFS_DEFAULT_PORT}"
    path = parts.path if parts.path.startswith("/") else "/" + parts.path
    query = "op=OPEN" + (f"&{parts.query}" if parts.query else "")
    return urlunsplit(SplitResult(scheme, netloc, f"/webhdfs/v1{path}", query, ""))


def display_url(url: str) -> str:
    """The URL as recorded in the upload report: without credentials or query (tokens live there)."""
    try:
        parts = urlsplit(url)
        netloc = parts.hostname or ""
        if parts.port:
            netloc = f"{netloc}:{parts.port}"
    except ValueError:
        return ""
    return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, "", ""))[:500]


def _check_host(request: httpx.Request) -> None:
    host = request.url.host
    try:
        infos = socket.getaddrinfo(host, request.url.port or 80, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise _refuse("reachable", f"cannot resolve {host}") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if address.is_link_local or address.is_multicast or address.is_unspecified:
            raise _refuse("allowed_host", f"{host} resolves to {address}, which imports may not reach")


@contextmanager
def open_url(url: str, *, max_bytes: int, timeout_seconds: float = 30.0) -> Iterator[Iterator[bytes]]:
    """Yield the file's body as an iterator of chunks. Network failures become a 422 on `url`."""
    target = resolve_url(url)
    try:
        with httpx.Client(follow_redirects=True, max_redirects=5, timeout=timeout_seconds,
                          event_hooks={"request": [_check_host]}) as client, client.stream("GET", target) as response:
            if response.status_code != 200:
                raise _refuse("reachable", f"the server answered HTTP {response.status_code}",
                              limit=200)
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise PayloadTooLarge(
                    f"the file is larger than {max_bytes} bytes",
                    fields=[FieldError(field="url", rule="max_size_bytes", limit=max_bytes, actual=int(declared))],
                )
            yield response.iter_bytes(CHUNK_BYTES)
    except httpx.HTTPError as exc:
        raise _refuse("reachable", f"cannot fetch the file: {type(exc).__name__}: {exc}"[:300]) from exc
