"""Where a server-side import reads its file: an HTTP(S) URL, or HDFS through the WebHDFS REST API.

The body is streamed in chunks into the same reader an upload uses, so the size cap and every rule apply
while downloading. Every request, redirects included, goes through the guarded outbound client: loopback,
private and other special-purpose networks are refused unless the operator allows them
(`import_allowed_networks`, or `outbound_allowed_networks` when unset: where HDFS clusters usually live), and
every failure answers the same 422.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import SplitResult, urlsplit, urlunsplit

from adstack.core.errors import FieldError, PayloadTooLarge, ValidationFailed
from adstack.core.outbound import OutboundClient, OutboundPolicy, ResponseTooLarge

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


@contextmanager
def open_url(url: str, *, max_bytes: int, policy: OutboundPolicy | None = None) -> Iterator[Iterator[bytes]]:
    """Yield the file's body as an iterator of chunks. Any refusal or failure, a status other than 200
    included, becomes the outbound client's one 422 on `url`; a body over the cap is a 413."""
    target = resolve_url(url)
    try:
        with OutboundClient(policy or OutboundPolicy.from_settings(purpose="imports"), field="url") as client, \
                client.stream("GET", target, max_bytes=max_bytes) as response:
            if response.status_code != 200:
                raise client.refuse(target, f"the server answered HTTP {response.status_code}")
            declared = response.headers.get("content-length", "")
            if declared.isdecimal() and int(declared) > max_bytes:
                raise _too_large(max_bytes, int(declared))
            yield response.iter_bytes(CHUNK_BYTES)
    except ResponseTooLarge as exc:
        raise _too_large(max_bytes, exc.received) from exc


def _too_large(max_bytes: int, actual: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the file is larger than {max_bytes} bytes",
                           fields=[FieldError(field="url", rule="max_size_bytes", limit=max_bytes, actual=actual)])
