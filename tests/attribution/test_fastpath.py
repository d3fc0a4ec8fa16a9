"""The postback fast path answers every request exactly as the documented route does, and stores what it
acknowledges once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

from hypothesis import given
from hypothesis import strategies as st

from adstack.apps.partners import POSTBACK_PATH
from adstack.attribution.receiver import parse_query
from adstack.core.settings import Settings
from adstack.core.vocabulary import Partner
from tests.attribution.helpers import Scenario, new_gaid, scenario
from tests.support import Api


def _base(s: Scenario) -> str:
    template: str = s.integration()["postback_url_template"]
    query = "&".join(template.split("?")[1].split("&")[:3])  # partner, app, sig
    return f"{POSTBACK_PATH}?{query}"


def _variants(s: Scenario) -> dict[str, Callable[[], Any]]:
    base, client, gaid = _base(s), s.api.client, new_gaid()
    login = {"advertising_id": gaid, "event_name": "af_login", "event_time": "2025-01-01 12:00:00.123"}
    forged = base.rsplit("sig=", 1)[0] + "sig=AAAAAAAAAAAAAAAA"
    return {
        "documented": lambda: client.get(f"{base}&{urlencode(login)}"),
        "retry": lambda: client.get(f"{base}&{urlencode(login)}"),
        "forged sig": lambda: client.get(f"{forged}&{urlencode(login)}"),
        "unknown partner": lambda: client.get(base.replace("partner=appsflyer", "partner=nobody")),
        "no app": lambda: client.get(f"{POSTBACK_PATH}?partner=appsflyer&{urlencode(login)}"),
        "bad app": lambda: client.get(f"{base.replace('app=', 'app=x')}&{urlencode(login)}"),
        "unreadable time": lambda: client.get(f"{base}&{urlencode({**login, 'event_time': 'soon'})}"),
        "GET with a form body": lambda: client.request(
            "GET",
            base,
            content=urlencode(login).encode(),
            headers={"content-type": "application/x-www-form-urlencoded"},
        ),
        "JSON POST": lambda: client.post(base, json={**login, "event_name": "af_purchase"}),
    }


def test_the_fast_path_answers_as_the_route_and_stores_once(api: Api, settings: Settings) -> None:
    s = scenario(api, settings, partner=Partner.APPSFLYER)
    app = api.client.app
    fast = app.fast_paths[POSTBACK_PATH]  # type: ignore[attr-defined]
    answers: dict[str, list[tuple[int, Any]]] = {}
    variants = _variants(s)
    for with_fast_path in (True, False):
        if not with_fast_path:
            del app.fast_paths[POSTBACK_PATH]  # type: ignore[attr-defined]
        try:
            for name, send in variants.items():
                response = send()
                answers.setdefault(name, []).append((response.status_code, response.json()))
        finally:
            app.fast_paths[POSTBACK_PATH] = fast  # type: ignore[attr-defined]
    for name, (fast_answer, route_answer) in answers.items():
        assert fast_answer == route_answer, name
    assert answers["documented"][0] == (200, {"status": "ok"})
    assert answers["forged sig"][0][0] == 403
    # Each sent twice, with and without the fast path: the login once (its retries and the form GET carry the same
    # identifying fields), the login with an unreadable time once, the purchase once.
    stored = s.postbacks()
    assert len(stored) == 3, [p["fields"] for p in stored]


@given(
    st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8)), max_size=8),
    st.lists(st.sampled_from(["", "&", "&&", "=", "a", "a=", "=b", "%zz", "%E2%82%AC", "+", "%2B", "%"]), max_size=6),
)
def test_the_query_reads_as_parse_qsl_reads_it(pairs: list[tuple[str, str]], oddities: list[str]) -> None:
    text = "&".join([urlencode(pairs), *oddities])
    assert parse_query(text) == parse_qsl(text, keep_blank_values=True)
