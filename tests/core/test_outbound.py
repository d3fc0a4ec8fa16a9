"""The guarded outbound client, against servers on loopback standing in for internal services.

Nothing here connects beyond loopback: a "public" host is an address in 127.0.0.0/8 that the test's policy
allows, and host names reach addresses only through a stubbed resolver.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Iterator

import pytest

from adstack.core import outbound
from adstack.core.outbound import (
    REFUSAL_MESSAGE,
    REFUSAL_RULE,
    FetchFailed,
    OutboundClient,
    OutboundPolicy,
    ResponseTooLarge,
    ipv4_notation,
    parse_networks,
    refusal_reason,
)
from adstack.core.settings import Settings
from tests.core.loopback_http import SECRET, LoopbackServer, TrickleServer, servers_on_one_port

STAND_IN = "127.0.0.2"  # plays a public host: allowed, and the only address allowed
ONLY_STAND_IN = OutboundPolicy(allowed_networks=parse_networks(f"{STAND_IN}/32"))
LOOPBACK_ALLOWED = OutboundPolicy(allowed_networks=parse_networks("127.0.0.0/8, ::1/128"))


@pytest.fixture(scope="module")
def internal() -> Iterator[LoopbackServer]:
    with LoopbackServer("127.0.0.1") as server:
        yield server


@pytest.fixture(scope="module")
def internal_v6() -> Iterator[LoopbackServer]:
    with LoopbackServer("::1") as server:
        yield server


@pytest.fixture(scope="module")
def stand_in(internal: LoopbackServer, internal_v6: LoopbackServer) -> Iterator[LoopbackServer]:
    """An allowed host whose redirects point at the internal servers."""
    p, q = internal.port, internal_v6.port
    redirects = {
        "/to-loopback": f"http://127.0.0.1:{p}/",
        "/to-localhost": f"http://localhost:{p}/",
        "/to-decimal": f"http://2130706433:{p}/",
        "/to-mapped": f"http://[::ffff:127.0.0.1]:{p}/",
        "/to-v6-loopback": f"http://[::1]:{q}/",
        "/to-relative-hop": "/to-loopback",
        "/to-file": "file:///etc/passwd",
        "/to-gopher": f"gopher://127.0.0.1:{p}/_secret",
    }
    with LoopbackServer(STAND_IN, body=b"public file\n", redirects=redirects) as server:
        yield server


def loopback_urls(p: int, q: int, s: int) -> list[str]:
    """URLs that all end at a loopback service: p is 127.0.0.1's port, q [::1]'s, s the stand-in's."""
    stand_in = f"http://{STAND_IN}:{s}"
    return [
        f"http://127.0.0.1:{p}/",
        f"http://127.1:{p}/",
        f"http://127.0.1:{p}/",
        f"http://2130706433:{p}/",
        f"http://0x7f000001:{p}/",
        f"http://0x7f.1:{p}/",
        f"http://0x7F.0.0.1:{p}/",
        f"http://0177.0.0.1:{p}/",
        f"http://0177.1:{p}/",
        f"http://127.0.0.1.:{p}/",
        f"http://127.8.9.10:{p}/",
        f"http://0:{p}/",
        f"http://0.0.0.0:{p}/",
        f"http://localhost:{p}/",
        f"http://LocalHost:{p}/",
        f"http://localhost.:{p}/",
        f"http://db.internal.localhost:{p}/",
        f"http://user:password@127.0.0.1:{p}/",
        f"https://127.0.0.1:{p}/",
        f"http://[::ffff:127.0.0.1]:{p}/",
        f"http://[::ffff:7f00:1]:{p}/",
        f"http://[0:0:0:0:0:ffff:127.0.0.1]:{p}/",
        f"http://[::127.0.0.1]:{p}/",
        f"http://[64:ff9b::127.0.0.1]:{p}/",
        f"http://[2002:7f00:1::1]:{p}/",
        f"http://[2001:0:4136:e378:8000:63bf:80ff:fffe]:{p}/",  # Teredo, client 127.0.0.1
        f"http://[::1]:{q}/",
        f"http://[0:0:0:0:0:0:0:1]:{q}/",
        f"http://[::]:{q}/",
        f"{stand_in}/to-loopback",
        f"{stand_in}/to-localhost",
        f"{stand_in}/to-decimal",
        f"{stand_in}/to-mapped",
        f"{stand_in}/to-v6-loopback",
        f"{stand_in}/to-relative-hop",
        f"{stand_in}/to-file",
        f"{stand_in}/to-gopher",
    ]


def fetch(url: str, policy: OutboundPolicy, *, max_bytes: int = 1 << 20) -> bytes:
    with OutboundClient(policy) as client:
        return client.get(url, max_bytes=max_bytes).content


def test_every_notation_of_loopback_is_refused_with_one_answer(
    internal: LoopbackServer, internal_v6: LoopbackServer, stand_in: LoopbackServer
) -> None:
    urls = loopback_urls(internal.port, internal_v6.port, stand_in.port)
    assert len(urls) >= 25
    answers = []
    for url in urls:
        with pytest.raises(FetchFailed) as refused:
            fetch(url, ONLY_STAND_IN)
        answers.append((refused.value.status, refused.value.as_dict()))
        assert refused.value.forbidden, f"{url}: the policy's refusal, which no retry changes"
    assert {str(answer) for answer in answers} == {
        str(
            (
                422,
                {
                    "error": {
                        "code": "validation_error",
                        "message": REFUSAL_MESSAGE,
                        "fields": [{"field": "url", "rule": REFUSAL_RULE, "message": REFUSAL_MESSAGE}],
                    }
                },
            )
        )
    }
    assert internal.requests == [] and internal_v6.requests == []  # nothing reached the internal services


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{p}/",
        "http://127.1:{p}/",
        "http://2130706433:{p}/",
        "http://0x7f.1:{p}/",
        "http://localhost:{p}/",
        "http://[::ffff:127.0.0.1]:{p}/",
        "http://[::1]:{q}/",
        "http://{s}/to-loopback",
    ],
)
def test_the_same_urls_are_fetched_once_their_network_is_allowed(
    url: str, internal: LoopbackServer, internal_v6: LoopbackServer, stand_in: LoopbackServer
) -> None:
    target = url.format(p=internal.port, q=internal_v6.port, s=f"{STAND_IN}:{stand_in.port}")
    assert fetch(target, LOOPBACK_ALLOWED) == SECRET


def test_redirects_are_followed_five_times_and_no_more() -> None:
    chain = {f"/{n}": f"/{n + 1}" for n in range(6)}
    with LoopbackServer(STAND_IN, redirects=chain, body=b"end\n") as server:
        assert fetch(server.url("/1"), ONLY_STAND_IN) == b"end\n"  # /1 -> /6: five redirects
        with pytest.raises(FetchFailed):
            fetch(server.url("/0"), ONLY_STAND_IN)


def test_the_body_is_capped() -> None:
    with LoopbackServer(STAND_IN, body=b"x" * 5000) as server:
        assert len(fetch(server.url(), ONLY_STAND_IN, max_bytes=5000)) == 5000
        with pytest.raises(ResponseTooLarge) as refused:
            fetch(server.url(), ONLY_STAND_IN, max_bytes=4999)
    assert refused.value.message == REFUSAL_MESSAGE


def test_the_overall_deadline_holds_while_headers_trickle_in() -> None:
    """A byte of headers now and then passes every per-read timeout; the whole exchange is bounded all the same,
    redirects included."""
    policy = OutboundPolicy(allowed_networks=parse_networks("127.0.0.0/8"), connect_timeout_s=1, read_timeout_s=1,
                            total_timeout_s=1.5)
    with TrickleServer(gap=0.1) as slow, LoopbackServer(
            "127.0.0.1", redirects={"/hop": slow.url("/slow")}) as hop:
        threading.Timer(8, slow.close).start()  # a peer that gives up by itself, later
        for url in (slow.url("/slow"), hop.url("/hop")):
            started = time.monotonic()
            with pytest.raises(FetchFailed), OutboundClient(policy) as client:
                client.get(url, max_bytes=1000)
            assert time.monotonic() - started < 2.5


def test_dns_rebinding_connects_to_the_checked_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """The name resolves to the allowed stand-in first and to loopback afterwards: the connection goes to the
    address that was checked, and the resolver is asked once per connection."""
    answers = iter([[ipaddress.ip_address(STAND_IN)], [ipaddress.ip_address("127.0.0.1")]])
    asked: list[str] = []

    def rebinding_resolver(host: str, port: int) -> list[outbound.IPAddress]:
        asked.append(host)
        return next(answers)

    monkeypatch.setattr(outbound, "resolve_host", rebinding_resolver)
    with servers_on_one_port((STAND_IN, {"body": b"public file\n"}), ("127.0.0.1", {})) as (public, secret):
        assert fetch(f"http://files.example:{public.port}/ids.txt", ONLY_STAND_IN) == b"public file\n"
        assert asked == ["files.example"] and secret.requests == []


def test_a_rebinding_on_the_next_connection_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A redirect to the same name opens a new connection (HTTP/1.0 closes each one): it is resolved and
    checked again, and the loopback answer is refused."""
    answers = iter([[ipaddress.ip_address(STAND_IN)], [ipaddress.ip_address("127.0.0.1")]])
    monkeypatch.setattr(outbound, "resolve_host", lambda host, port: next(answers))
    with servers_on_one_port((STAND_IN, {"redirects": {"/": "/again"}}), ("127.0.0.1", {})) as (public, secret):
        with pytest.raises(FetchFailed):
            fetch(f"http://files.example:{public.port}/", ONLY_STAND_IN)
        assert public.requests == ["/"] and secret.requests == []


def test_a_name_with_any_forbidden_address_is_refused_before_connecting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        outbound, "resolve_host", lambda host, port: [ipaddress.ip_address(STAND_IN), ipaddress.ip_address("127.0.0.1")]
    )
    with servers_on_one_port((STAND_IN, {}), ("127.0.0.1", {})) as (public, secret):
        with pytest.raises(FetchFailed):
            fetch(f"http://mixed.example:{public.port}/", ONLY_STAND_IN)
        assert public.requests == [] and secret.requests == []


def test_a_failed_resolution_is_the_same_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_such_host(host: str, port: int) -> list[outbound.IPAddress]:
        raise OSError("Name or service not known")

    monkeypatch.setattr(outbound, "resolve_host", no_such_host)
    with pytest.raises(FetchFailed) as refused:
        fetch("http://missing.example/", ONLY_STAND_IN)
    assert refused.value.message == REFUSAL_MESSAGE
    assert not refused.value.forbidden  # the name may resolve on the next try


def test_a_closed_port_on_an_allowed_network_is_a_failure_worth_retrying() -> None:
    with servers_on_one_port(("127.0.0.1", {})) as (server,):
        port = server.port
    with pytest.raises(FetchFailed) as failed:  # the server is gone: its port refuses connections
        fetch(f"http://127.0.0.1:{port}/", LOOPBACK_ALLOWED)
    assert not failed.value.forbidden


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "100.64.0.1",
        "100.127.255.254",
        "169.254.169.254",
        "0.0.0.0",
        "0.1.2.3",
        "224.0.0.1",
        "239.255.255.250",
        "255.255.255.255",
        "240.0.0.1",
        "192.0.0.1",
        "192.0.0.9",
        "192.0.0.171",
        "192.0.2.1",
        "198.51.100.7",
        "203.0.113.9",
        "198.18.0.1",
        "198.19.255.255",
        "192.88.99.1",
        "::",
        "::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "::ffff:10.0.0.1",
        "::127.0.0.1",
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "fe80::1%eth0",
        "fec0::1",
        "ff02::1",
        "2001:db8::1",
        "3fff::1",
        "2001:2::1",
        "100::1",
        "64:ff9b:1::1",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b::127.0.0.1",
        "2002:a9fe:a9fe::1",
        "2002:c0a8:0101::",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",
    ],
)
def test_special_purpose_addresses_are_refused(address: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "1.1.1.1",
        "93.184.216.34",
        "100.128.0.1",
        "172.32.0.1",
        "192.31.196.1",
        "192.52.193.1",
        "2606:4700:4700::1111",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
    ],
)
def test_public_addresses_pass(address: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) is None


def test_an_allowed_network_lifts_only_itself() -> None:
    allowed = parse_networks("10.0.0.0/8")
    assert refusal_reason(ipaddress.ip_address("10.9.8.7"), allowed) is None
    assert refusal_reason(ipaddress.ip_address("::ffff:10.9.8.7"), allowed) is None
    assert refusal_reason(ipaddress.ip_address("11.0.0.1"), allowed) is None
    assert refusal_reason(ipaddress.ip_address("192.168.0.1"), allowed) is not None
    assert refusal_reason(ipaddress.ip_address("127.0.0.1"), allowed) is not None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0177.1", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("0x", "0.0.0.0"),
        ("169.254.43518", "169.254.169.254"),
        ("files.example", None),
        ("1.2.3.256", None),
        ("256.1", None),
        ("4294967296", None),
        ("1..2", None),
        ("08.1", None),
        ("0xg.1", None),
        ("1.2.3.4.5", None),
    ],
)
def test_ipv4_notations(text: str, expected: str | None) -> None:
    parsed = ipv4_notation(text)
    assert (None if parsed is None else str(parsed)) == expected


def test_each_feature_reaches_only_the_networks_allowed_to_it() -> None:
    """An HDFS cluster allowed to imports is not opened to webhooks, whose attempt log would map it."""
    hdfs, partner, receivers = (ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
    shared = Settings(outbound_allowed_networks="10.0.0.0/8")
    assert OutboundPolicy.from_settings(shared, purpose="imports").allowed_networks == (hdfs,)
    assert OutboundPolicy.from_settings(shared, purpose="connectors").allowed_networks == (hdfs,)
    assert OutboundPolicy.from_settings(shared, purpose="webhooks").allowed_networks == ()
    own = Settings(outbound_allowed_networks="10.0.0.0/8", import_allowed_networks="",
                   connector_allowed_networks="172.16.0.0/12", webhook_allowed_networks="192.168.0.0/16")
    assert OutboundPolicy.from_settings(own, purpose="imports").allowed_networks == ()
    assert OutboundPolicy.from_settings(own, purpose="connectors").allowed_networks == (partner,)
    assert OutboundPolicy.from_settings(own, purpose="webhooks").allowed_networks == (receivers,)
    with pytest.raises(ValueError, match="webhook_allowed_networks"):
        OutboundPolicy.from_settings(Settings(webhook_allowed_networks="intranet"), purpose="webhooks")


def test_allowed_networks_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADSTACK_OUTBOUND_ALLOWED_NETWORKS", "10.0.0.0/8, fd00::/8")
    policy = OutboundPolicy.from_settings(Settings(), purpose="imports")
    assert policy.allowed_networks == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))
    empty = Settings(outbound_allowed_networks="")
    assert OutboundPolicy.from_settings(empty, purpose="imports").allowed_networks == ()
    with pytest.raises(ValueError, match="not a CIDR"):
        parse_networks("10.0.0.0/8, intranet")
