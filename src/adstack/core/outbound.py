"""The one HTTP client for every request adstack sends out: audience imports, partner connectors, and
anything later.

Any URL an outbound request reaches may come from a user (an import URL, a redirect chosen by a remote
server), so the client:

- accepts only http and https, on every redirect hop (followed here, at most `max_redirects`);
- resolves each host once, refuses it when any address it resolves to is special-purpose (loopback, private,
  link-local, CGNAT, multicast, documentation, ...; see FORBIDDEN_NETWORKS), and connects to exactly the
  address it checked, so a second DNS answer cannot swap in another (DNS rebinding). TLS still verifies the
  certificate against the host name;
- unless the operator allows a network to the feature sending (`Purpose`: audience imports and partner
  connectors read `outbound_allowed_networks` unless their own setting is set, e.g. an HDFS cluster on
  10.0.0.0/8; webhooks only `webhook_allowed_networks`, since their attempt log shows a receiver's status and
  timing and would map whatever network they were allowed);
- bounds the connection, each read, the whole exchange (connect to last byte, redirects included: every socket
  operation waits at most what is left of it, so a peer trickling its headers cannot hold a thread) and the
  body's size;
- fails with one error, FetchFailed, whatever went wrong: a refused address, DNS, a closed port, a timeout, a
  server that does not speak HTTP. Its message never says which, nor echoes an address or the body, so the
  client cannot be used to map or read internal services. The real reason goes to the server log.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Literal

import httpcore
import httpx

from adstack.core.errors import FieldError, ValidationFailed
from adstack.core.settings import Settings, get_settings

log = logging.getLogger("adstack.outbound")

SCHEMES = ("http", "https")
REFUSAL_RULE = "fetchable"
REFUSAL_MESSAGE = "the URL could not be fetched"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[IPAddress]]


def _networks(*entries: tuple[str, str]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ipaddress.ip_network(cidr), why) for cidr, why in entries)


# Every block of the IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890) that is not globally
# reachable, plus multicast, IPv6 site-local and IPv4-compatible addresses. Globally reachable special blocks
# (AS112, AMT, ORCHIDv2) stay reachable, except the two anycast service addresses inside 192.0.0.0/24, which
# is refused whole: nothing is fetched from a PCP or TURN anycast address.
FORBIDDEN_NETWORKS: tuple[tuple[IPNetwork, str], ...] = _networks(
    ("0.0.0.0/8", "this network (RFC 791)"),
    ("10.0.0.0/8", "private (RFC 1918)"),
    ("100.64.0.0/10", "shared address space, CGNAT (RFC 6598)"),
    ("127.0.0.0/8", "loopback (RFC 1122)"),
    ("169.254.0.0/16", "link-local (RFC 3927)"),
    ("172.16.0.0/12", "private (RFC 1918)"),
    ("192.0.0.0/24", "IETF protocol assignments: DS-Lite, NAT64 discovery, ... (RFC 6890)"),
    ("192.0.2.0/24", "documentation TEST-NET-1 (RFC 5737)"),
    ("192.88.99.0/24", "deprecated 6to4 relay anycast (RFC 7526)"),
    ("192.168.0.0/16", "private (RFC 1918)"),
    ("198.18.0.0/15", "benchmarking (RFC 2544)"),
    ("198.51.100.0/24", "documentation TEST-NET-2 (RFC 5737)"),
    ("203.0.113.0/24", "documentation TEST-NET-3 (RFC 5737)"),
    ("224.0.0.0/4", "multicast (RFC 5771)"),
    ("240.0.0.0/4", "reserved (RFC 1112)"),
    ("255.255.255.255/32", "limited broadcast (RFC 919)"),
    ("::/128", "unspecified (RFC 4291)"),
    ("::1/128", "loopback (RFC 4291)"),
    ("::/96", "IPv4-compatible, deprecated (RFC 4291)"),
    ("::ffff:0:0:0/96", "IPv4-translated (RFC 2765)"),
    ("64:ff9b:1::/48", "local-use IPv4/IPv6 translation (RFC 8215)"),
    ("100::/64", "discard-only (RFC 6666)"),
    ("100:0:0:1::/64", "dummy IPv6 prefix (RFC 9780)"),
    ("2001:2::/48", "benchmarking (RFC 5180)"),
    ("2001:10::/28", "deprecated ORCHID (RFC 4843)"),
    ("2001:db8::/32", "documentation (RFC 3849)"),
    ("3fff::/20", "documentation (RFC 9637)"),
    ("5f00::/16", "segment routing SIDs (RFC 9602)"),
    ("fc00::/7", "unique local (RFC 4193)"),
    ("fe80::/10", "link-local (RFC 4291)"),
    ("fec0::/10", "deprecated site-local (RFC 3879)"),
    ("ff00::/8", "multicast (RFC 4291)"),
)
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: the low 32 bits are the IPv4 host


class FetchFailed(ValidationFailed):
    """Every outbound refusal and failure, with one message; `reason` is for the server log only. `forbidden`:
    the policy refused the destination itself, so asking again gets the same answer (callers do not retry)."""

    def __init__(self, reason: str, *, field: str = "url", forbidden: bool = False):
        super().__init__(REFUSAL_MESSAGE, fields=[FieldError(field=field, rule=REFUSAL_RULE, message=REFUSAL_MESSAGE)])
        self.reason = reason
        self.forbidden = forbidden


class ResponseTooLarge(FetchFailed):
    """The body passed the caller's cap: callers whose users know the cap (file imports) may say so."""

    def __init__(self, reason: str, *, field: str = "url", limit: int, received: int):
        super().__init__(reason, field=field)
        self.limit = limit
        self.received = received


class AddressRefused(Exception):
    """Raised inside the transport; the client turns it into FetchFailed."""


class DestinationForbidden(AddressRefused):
    """The policy refuses the address, scheme or socket itself; unlike a name that did not resolve this time."""


# Failures of the network and of HTTP itself; anything else is a bug and must surface as one.
_TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    AddressRefused, httpx.HTTPError, httpx.InvalidURL, httpcore.NetworkError, httpcore.TimeoutException,
    httpcore.ProtocolError, httpcore.UnsupportedProtocol, httpcore.ProxyError, OSError, UnicodeError,
)


def parse_networks(text: str, setting: str = "outbound_allowed_networks") -> tuple[IPNetwork, ...]:
    """`10.0.0.0/8, fd00::/8` -> networks; a typo fails loudly rather than allowing something else."""
    networks = []
    for entry in text.split(","):
        if entry.strip():
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError as exc:
                raise ValueError(f"{setting}: {entry.strip()!r} is not a CIDR network") from exc
    return tuple(networks)


# Which feature sends: each has its own allowed networks.
Purpose = Literal["imports", "connectors", "webhooks"]


def allowed_networks_setting(settings: Settings, purpose: Purpose) -> tuple[str, str]:
    """The setting that allows networks to `purpose`, and its value."""
    if purpose == "webhooks":
        return "webhook_allowed_networks", settings.webhook_allowed_networks
    name = "import_allowed_networks" if purpose == "imports" else "connector_allowed_networks"
    own: str | None = getattr(settings, name)
    return (name, own) if own is not None else ("outbound_allowed_networks", settings.outbound_allowed_networks)


@dataclass(frozen=True)
class OutboundPolicy:
    allowed_networks: tuple[IPNetwork, ...] = ()
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 30.0
    total_timeout_s: float = 600.0  # a slow drip of bytes must end too
    max_redirects: int = 5

    @classmethod
    def from_settings(cls, settings: Settings | None = None, *, purpose: Purpose, **overrides: Any
                      ) -> OutboundPolicy:
        """The policy of one feature: the networks its setting allows, nothing another feature's allows."""
        name, text = allowed_networks_setting(settings or get_settings(), purpose)
        return replace(cls(allowed_networks=parse_networks(text, name)), **overrides)


# ---------- which addresses a host name means ----------

_IPV4_PART = {16: re.compile(r"[0-9a-f]*"), 8: re.compile(r"[0-7]+"), 10: re.compile(r"[0-9]+")}


def _ipv4_part(part: str) -> int | None:
    lowered = part.lower()
    if lowered.startswith("0x"):
        digits, base = lowered[2:], 16
    elif len(lowered) > 1 and lowered.startswith("0"):
        digits, base = lowered[1:], 8
    else:
        digits, base = lowered, 10
    if not _IPV4_PART[base].fullmatch(digits):
        return None
    return int(digits, base) if digits else 0


def ipv4_notation(host: str) -> ipaddress.IPv4Address | None:
    """An IPv4 address in any notation inet_aton and browsers accept (WHATWG URL "IPv4 parser"): 127.1,
    2130706433, 0x7f.1, 0177.0.0.1, a trailing dot. None when `host` is a name."""
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    if not 1 <= len(parts) <= 4 or not all(parts):
        return None
    numbers = [_ipv4_part(part) for part in parts]
    if any(n is None for n in numbers):
        return None
    values = [n for n in numbers if n is not None]
    if any(n > 255 for n in values[:-1]) or values[-1] >= 256 ** (5 - len(values)):
        return None
    value = values[-1]
    for index, number in enumerate(values[:-1]):
        value += number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def literal_address(host: str) -> IPAddress | None:
    text = host.strip("[]")
    try:
        return ipaddress.ip_address(text.replace("%25", "%"))
    except ValueError:
        return ipv4_notation(text)


def is_localhost_name(host: str) -> bool:
    """RFC 6761 §6.3: `localhost` and every name under it are loopback, whatever DNS says."""
    name = host.rstrip(".").lower()
    return name == "localhost" or name.endswith(".localhost")


def resolve_host(host: str, port: int) -> list[IPAddress]:
    """The addresses a host name resolves to, in the resolver's order. Tests replace this function."""
    addresses: list[IPAddress] = []
    for *_, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        address = ipaddress.ip_address(str(sockaddr[0]))
        if address not in addresses:
            addresses.append(address)
    return addresses


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 hosts an IPv6 address reaches through a translator or tunnel: NAT64, 6to4, Teredo."""
    found = []
    if address in _NAT64_WELL_KNOWN:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    return found


def refusal_reason(address: IPAddress, allowed: Iterable[IPNetwork] = ()) -> str | None:
    """Why `address` may not be reached, or None when it may."""
    allowed = tuple(allowed)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # the kernel sends it over IPv4: judge the IPv4 address
    if any(address in network for network in allowed if network.version == address.version):
        return None
    for network, why in FORBIDDEN_NETWORKS:
        if network.version == address.version and address in network:
            return f"{address} is {why}"
    if isinstance(address, ipaddress.IPv6Address):
        for inner in _embedded_ipv4(address):
            inner_reason = refusal_reason(inner, allowed)
            if inner_reason is not None:
                return f"{address} embeds {inner_reason}"
    return None


def literal_refusal(url: str, policy: OutboundPolicy) -> str | None:
    """Why a URL to be fetched later can already be seen to be refused: a scheme other than http(s), or a host
    written as a refused address or a localhost name, in any notation. Names are not resolved here (what they
    resolve to at fetch time is checked then); None when nothing shows yet."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return "the URL cannot be read"
    if parsed.scheme not in SCHEMES:
        return f"scheme {parsed.scheme!r} is not http(s)"
    host = parsed.host
    if not host:
        return "the URL has no host"
    if is_localhost_name(host):
        return f"{host} is this machine"
    address = literal_address(host)
    return None if address is None else refusal_reason(address, policy.allowed_networks)


def checked_addresses(host: str, port: int, policy: OutboundPolicy, resolver: Resolver | None = None
                      ) -> list[IPAddress]:
    """Resolve `host` once and return the addresses to connect to; AddressRefused when any is refused (a name
    with one public and one private address is refused: which one a connection uses is not ours to pick)."""
    literal = literal_address(host)
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    elif is_localhost_name(host):
        addresses = [ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv6Address("::1")]
    else:
        try:
            addresses = (resolver or resolve_host)(host, port)
        except (OSError, UnicodeError) as exc:
            raise AddressRefused(f"cannot resolve {host}: {exc}") from exc
    if not addresses:
        raise AddressRefused(f"{host} resolves to no address")
    for address in addresses:
        reason = refusal_reason(address, policy.allowed_networks)
        if reason is not None:
            raise DestinationForbidden(f"{host}: {reason}")
    return [a.ipv4_mapped if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped else a for a in addresses]


# ---------- the transport: connects only to checked addresses ----------

# The monotonic moment the exchange under way in this thread must end by (OutboundClient.stream sets it).
_deadline: ContextVar[float | None] = ContextVar("outbound_deadline", default=None)


def _bounded(timeout: float | None, error: type[Exception]) -> float | None:
    """`timeout`, cut to what is left of the exchange's deadline; `error` once nothing is left."""
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise error("the overall timeout passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A socket stream whose every read, write and TLS handshake waits at most what is left of the deadline:
    per-read timeouts alone let a peer sending a byte now and then hold the exchange forever."""

    def __init__(self, stream: httpcore.NetworkStream):
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname,
                                                      _bounded(timeout, httpcore.ConnectTimeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class GuardedNetworkBackend(httpcore.NetworkBackend):
    """httpcore's network backend, resolving and checking the host itself and connecting to the checked IP.
    httpcore still starts TLS with the URL's host name, so certificates are verified against the name."""

    def __init__(self, policy: OutboundPolicy, resolver: Resolver | None = None):
        self.policy = policy
        self.resolver = resolver
        self._sockets = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None) -> httpcore.NetworkStream:
        last_error: Exception | None = None
        for address in checked_addresses(host, port, self.policy, self.resolver):
            try:
                return _DeadlineStream(self._sockets.connect_tcp(
                    str(address), port, timeout=_bounded(timeout, httpcore.ConnectTimeout),
                    local_address=local_address, socket_options=socket_options))
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
        assert last_error is not None
        raise last_error

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None) -> httpcore.NetworkStream:
        raise DestinationForbidden("unix sockets are never reached")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class _CoreStream(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]):
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


def check_url(url: httpx.URL) -> None:
    if url.scheme not in SCHEMES:
        raise DestinationForbidden(f"scheme {url.scheme!r} is not http(s)")
    if not url.host:
        raise DestinationForbidden("the URL has no host")


class GuardedTransport(httpx.BaseTransport):
    """An httpx transport over an httpcore pool whose every connection goes through GuardedNetworkBackend.
    No proxy and no environment settings: a proxy would make the connection for us, unchecked."""

    def __init__(self, policy: OutboundPolicy, *, resolver: Resolver | None = None, verify: bool = True):
        self._pool = httpcore.ConnectionPool(ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
                                             network_backend=GuardedNetworkBackend(policy, resolver), retries=0)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        check_url(request.url)
        assert isinstance(request.stream, httpx.SyncByteStream)
        core_response = self._pool.handle_request(httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=request.url.raw_scheme, host=request.url.raw_host, port=request.url.port,
                             target=request.url.raw_path),
            headers=request.headers.raw, content=request.stream, extensions=request.extensions))
        assert isinstance(core_response.stream, Iterable)
        return httpx.Response(status_code=core_response.status, headers=core_response.headers,
                              stream=_CoreStream(core_response.stream), extensions=core_response.extensions)

    def close(self) -> None:
        self._pool.close()


# ---------- the client ----------


def display_url(url: httpx.URL | str) -> str:
    """For logs: scheme, host, port and path; never credentials or the query (tokens live there)."""
    try:
        parsed = httpx.URL(str(url))
    except (httpx.InvalidURL, UnicodeError):
        return "<unreadable URL>"
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{host}{port}{parsed.path}"[:300]


@dataclass
class FetchedResponse:
    """A response read whole, under the cap."""

    status_code: int
    headers: httpx.Headers
    content: bytes
    url: str

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return httpx.Response(self.status_code, content=self.content).json()


class OutboundResponse:
    """A streamed response: the body is read under the byte cap and the overall deadline."""

    def __init__(self, response: httpx.Response, client: OutboundClient, *, max_bytes: int, deadline: float):
        self._response = response
        self._client = client
        self.max_bytes = max_bytes
        self._deadline = deadline
        self.status_code = response.status_code
        self.headers = response.headers
        self.url = str(response.url)

    def iter_bytes(self, chunk_size: int = 1 << 16) -> Iterator[bytes]:
        received = 0
        url = self._response.url
        try:
            # Raw bytes: a compressed body would grow past the cap in one decompression step. An in-memory
            # transport's response arrives already read.
            response = self._response
            chunks = [response.content] if response.is_stream_consumed else response.iter_raw(chunk_size)
            for chunk in chunks:
                received += len(chunk)
                if received > self.max_bytes:
                    raise self._client.refuse(url, f"the body passed {self.max_bytes} bytes",
                                              too_large=(self.max_bytes, received))
                if time.monotonic() > self._deadline:
                    raise self._client.refuse(url, "the body took longer than the overall timeout")
                yield chunk
        except _TRANSPORT_ERRORS as exc:
            raise self._client.refuse(url, f"reading the body failed: {type(exc).__name__}: {exc}") from exc

    def read(self) -> bytes:
        return b"".join(self.iter_bytes())


class OutboundClient:
    """GET (or any method) through the guard, following at most `policy.max_redirects` redirects, each one
    checked like the first request. `field` names the input refusals are reported on.

    `transport` replaces the guarded transport and with it the address checks (scheme, redirect and size
    checks stay): it is the seam for in-process fakes in tests, never for real traffic.
    """

    def __init__(self, policy: OutboundPolicy | None = None, *, field: str = "url",
                 transport: httpx.BaseTransport | None = None, resolver: Resolver | None = None):
        self.policy = policy if policy is not None else OutboundPolicy()  # no special-purpose network
        self.field = field
        self._http = httpx.Client(
            transport=transport if transport is not None else GuardedTransport(self.policy, resolver=resolver),
            timeout=httpx.Timeout(self.policy.read_timeout_s, connect=self.policy.connect_timeout_s),
            follow_redirects=False, trust_env=False,
            headers={"User-Agent": "adstack", "Accept-Encoding": "identity"},
        )

    def __enter__(self) -> OutboundClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def refuse(self, url: httpx.URL | str, reason: str, *, too_large: tuple[int, int] | None = None,
               forbidden: bool = False) -> FetchFailed:
        """The one refusal; the real reason is logged here, and only here."""
        log.info("outbound request to %s refused: %s", display_url(url), reason)
        if too_large is not None:
            return ResponseTooLarge(reason, field=self.field, limit=too_large[0], received=too_large[1])
        return FetchFailed(reason, field=self.field, forbidden=forbidden)

    @contextmanager
    def stream(self, method: str, url: str, *, max_bytes: int, params: Mapping[str, str] | None = None,
               headers: Mapping[str, str] | None = None, content: bytes | None = None
               ) -> Iterator[OutboundResponse]:
        deadline = time.monotonic() + self.policy.total_timeout_s
        try:
            request = self._http.build_request(method, url, params=params, headers=headers, content=content)
        except _TRANSPORT_ERRORS as exc:
            raise self.refuse(url, f"unreadable URL: {exc}", forbidden=True) from exc
        bound = _deadline.set(deadline)
        try:
            response = self._send(request, deadline)
            for hop in range(1, self.policy.max_redirects + 2):
                if not response.has_redirect_location:
                    break
                next_request = response.next_request
                response.close()
                if hop > self.policy.max_redirects:
                    raise self.refuse(url, f"more than {self.policy.max_redirects} redirects")
                if next_request is None:
                    raise self.refuse(request.url, "a redirect without a usable location")
                request = next_request
                response = self._send(request, deadline)
            try:
                yield OutboundResponse(response, self, max_bytes=max_bytes, deadline=deadline)
            finally:
                response.close()
        finally:
            _deadline.reset(bound)

    def get(self, url: str, *, max_bytes: int, params: Mapping[str, str] | None = None,
            headers: Mapping[str, str] | None = None) -> FetchedResponse:
        with self.stream("GET", url, max_bytes=max_bytes, params=params, headers=headers) as response:
            return FetchedResponse(status_code=response.status_code, headers=response.headers,
                                   content=response.read(), url=response.url)

    def post(self, url: str, *, content: bytes, max_bytes: int, headers: Mapping[str, str] | None = None
             ) -> FetchedResponse:
        """POST a body (webhooks); the answer is read under the cap like any other."""
        with self.stream("POST", url, max_bytes=max_bytes, headers=headers, content=content) as response:
            return FetchedResponse(status_code=response.status_code, headers=response.headers,
                                   content=response.read(), url=response.url)

    def _send(self, request: httpx.Request, deadline: float) -> httpx.Response:
        if time.monotonic() >= deadline:
            raise self.refuse(request.url, "the exchange took longer than the overall timeout")
        try:
            # The guarded transport checks too; this keeps scheme rules when a test transport replaces it.
            check_url(request.url)
            return self._http.send(request, stream=True)
        except _TRANSPORT_ERRORS as exc:
            raise self.refuse(request.url, f"{type(exc).__name__}: {exc}",
                              forbidden=isinstance(exc, DestinationForbidden)) from exc
