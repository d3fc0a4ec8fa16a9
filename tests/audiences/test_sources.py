"""Server-side imports cannot read internal services: every failure is the same 422, and nothing of a
fetched file is ever quoted back."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from adstack.audiences.sources import open_url
from adstack.core.errors import DomainError
from adstack.core.outbound import REFUSAL_MESSAGE, REFUSAL_RULE, OutboundPolicy, parse_networks
from adstack.core.settings import Settings
from tests.audiences.helpers import gaids, id_file
from tests.core.loopback_http import SECRET, LoopbackServer, closed_port, non_http_port, silent_port
from tests.support import Actor, Api, expect

ONE_REFUSAL = {
    "code": "validation_error",
    "message": REFUSAL_MESSAGE,
    "fields": [{"field": "url", "rule": REFUSAL_RULE, "message": REFUSAL_MESSAGE}],
}


@pytest.fixture
def internal() -> Iterator[LoopbackServer]:
    with LoopbackServer("127.0.0.1") as server:
        yield server


def _import(api: Api, actor: Actor, url: str, expected: int, **overrides: Any) -> Any:
    body = {"name": "Imported", "region_code": "RU", "id_type": "gaid", "url": url, **overrides}
    response = api.client.post("/api/v1/audiences/import", headers=actor.headers, json=body)
    return response.text, expect(response, expected)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/",
        "http://2130706433:{port}/",
        "http://localhost:{port}/",
        "http://[::ffff:127.0.0.1]:{port}/",
        "webhdfs://127.0.0.1:{port}/etc/secret",
        "http://169.254.169.254/",
        "http://[::ffff:169.254.169.254]/latest/meta-data/",
    ],
)
def test_an_import_from_loopback_gets_the_one_refusal_and_no_content(
    api: Api, internal: LoopbackServer, url: str
) -> None:
    text, body = _import(api, api.approved_account(), url.format(port=internal.port), 422)
    assert body["error"] == ONE_REFUSAL
    assert "secret" not in text and "127.0.0.1" not in text.replace(url.format(port=internal.port), "")
    assert internal.requests == []


def test_closed_open_silent_and_non_http_ports_answer_alike(internal: LoopbackServer) -> None:
    """Even where the operator allows loopback, nothing tells a closed port from a listening one."""
    policy = OutboundPolicy(allowed_networks=parse_networks("127.0.0.0/8"), read_timeout_s=0.5, connect_timeout_s=0.5)
    internal.status = 404
    answers = []
    with silent_port() as silent, non_http_port() as ssh:
        for url in (
            f"http://127.0.0.1:{closed_port()}/",
            f"http://127.0.0.1:{silent}/",
            f"http://127.0.0.1:{ssh}/",
            internal.url("/missing.txt"),
        ):
            with pytest.raises(DomainError) as refused, open_url(url, max_bytes=1 << 20, policy=policy) as chunks:
                b"".join(chunks)
            answers.append((refused.value.status, refused.value.as_dict()))
    refused_address = OutboundPolicy()
    with (
        pytest.raises(DomainError) as refused,
        open_url(internal.url(), max_bytes=1 << 20, policy=refused_address) as chunks,
    ):
        b"".join(chunks)
    answers.append((refused.value.status, refused.value.as_dict()))
    assert answers == [(422, {"error": ONE_REFUSAL})] * 5


def test_a_refused_fetched_file_names_lines_and_rules_never_content(api: Api, settings: Settings) -> None:
    settings.outbound_allowed_networks = "127.0.0.1/32"
    lines = ["db_password=secret", "aws_secret_access_key=AKIAEXAMPLE", *gaids(10)]
    with LoopbackServer("127.0.0.1", body=id_file(lines)) as server:
        text, body = _import(api, api.approved_account(), server.url("/ids.txt"), 422)
    report = body["error"]["report"]
    assert [(e["line"], "value" in e) for e in report["invalid_examples"]] == [(1, False), (2, False)]
    assert body["error"]["fields"][0]["rule"] == "min_valid_ids"
    assert "secret" not in text and "AKIA" not in text


def test_an_accepted_fetched_file_keeps_no_content_in_its_report(api: Api, settings: Settings) -> None:
    settings.outbound_allowed_networks = "127.0.0.1/32"
    with LoopbackServer("127.0.0.1", body=id_file([*gaids(1000), "db_password=secret"])) as server:
        text, body = _import(api, api.approved_account(), server.url("/ids.txt"), 201)
    assert body["report"]["invalid_examples"] == [
        {"line": 1001, "reason": body["report"]["invalid_examples"][0]["reason"]}
    ]
    assert "secret" not in text


def test_a_namenode_redirect_to_a_refused_datanode_is_refused(
    api: Api, settings: Settings, internal: LoopbackServer
) -> None:
    """WebHDFS answers OPEN with a redirect to a datanode: that hop is checked like the first."""
    settings.outbound_allowed_networks = "127.0.0.2/32"
    redirects = {"/webhdfs/v1/ids.txt?op=OPEN": internal.url("/ids.txt")}
    with LoopbackServer("127.0.0.2", redirects=redirects) as namenode:
        text, body = _import(api, api.approved_account(), f"webhdfs://127.0.0.2:{namenode.port}/ids.txt", 422)
    assert body["error"] == ONE_REFUSAL and SECRET.decode() not in text
    assert namenode.requests == ["/webhdfs/v1/ids.txt?op=OPEN"] and internal.requests == []
