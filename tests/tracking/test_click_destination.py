"""Where a click goes: the creative's click URL, through the measurement partner's link where the partner
documents a redirect parameter, and through an interstitial page that tries the deeplink first.

Each redirect is followed hop by hop. The first hop is ours (the test client); the partner hop goes to a loopback
stand-in of the partner that, like the partner, records nothing without its own media-source parameter and
otherwise redirects to the URL in its documented parameter; the last hop is a landing page on loopback.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from adstack.core.settings import Settings
from adstack.core.timeutil import utcnow
from adstack.core.vocabulary import Partner
from adstack.tracking.urls import TrackingUrls, build_tracking_urls
from tests.attribution.helpers import Scenario, new_gaid, scenario
from tests.creatives.helpers import Files, guide_creative
from tests.support import Api, expect

# Source: each partner's page named in docs/partners.md ("Where a click goes"): the parameter the partner reads
# the post-click destination from, and the parameter without which it records nothing.
PARTNER_RULES = {
    "app.appsflyer.com": ("af_r", "pid"),  # AppsFlyer attribution link: af_r; pid is mandatory
    "app.adjust.com": ("redirect", "campaign"),  # Adjust link parameters: redirect
    "example.app.link": ("$fallback_url", "$3p"),  # Branch long link: $fallback_url
}


@dataclass
class Loopback:
    """A landing page and the partners' stand-ins on one loopback server; it records what reached it."""

    port: int = 0
    landings: list[str] = field(default_factory=list)
    partner_hits: list[str] = field(default_factory=list)
    pages: dict[str, tuple[bytes, dict[str, str]]] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def via_partner(self, location: str) -> str:
        """The partner's link as it reaches the stand-in: same path and query, host kept in the path."""
        parts = urlsplit(location)
        return f"{self.base}/partner/{parts.hostname}{parts.path}?{parts.query}"


@pytest.fixture
def loopback() -> Iterator[Loopback]:
    state = Loopback()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if parts.path.startswith("/landing"):
                state.landings.append(self.path)
                self._answer(200, b"<!doctype html><title>landing</title><p>landing</p>", {"content-type": "text/html"})
            elif parts.path.startswith("/partner/"):
                host = parts.path.split("/")[2]
                redirect, required = PARTNER_RULES[host]
                query = parse_qs(parts.query)
                if required not in query:
                    self._answer(400, b"missing " + required.encode())
                    return
                state.partner_hits.append(self.path)
                target = query.get(redirect, [""])[0]
                self._answer(302, headers={"location": target}) if target else self._answer(
                    302, headers={"location": "https://play.google.com/store/apps/details?id=default"}
                )
            elif parts.path in state.pages:
                body, headers = state.pages[parts.path]
                self._answer(200, body, headers)
            else:
                self._answer(404)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="click-loopback", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def _creative(api: Api, s: Scenario, click_url: str, **extra: Any) -> int:
    body = guide_creative(
        api, s.advertiser, s.ad_group["id"], "image_640x100", Files(api, s.advertiser), click_url=click_url, **extra
    )
    return int(expect(api.client.post("/api/v1/creatives", headers=s.advertiser.headers, json=body), 201)["id"])


def _serve(s: Scenario, creative_id: int, gaid: str | None) -> TrackingUrls:
    return build_tracking_urls(
        base_url="http://testserver",
        secret=s.settings.resolved_secret_key,
        impression_id=f"imp_{uuid.uuid4().hex}",
        account_id=s.account_id,
        campaign_id=s.campaign["id"],
        ad_group_id=s.ad_group["id"],
        creative_id=creative_id,
        ad_space_id=2,
        publisher_id=3,
        bid_type="cpc",
        price_micros=0,
        issued_at=utcnow(),
        gaid=gaid,
        country="ID",
        placement_type="banner",
    )


@pytest.mark.parametrize("partner", [Partner.APPSFLYER, Partner.ADJUST, Partner.BRANCH])
def test_with_a_partner_link_the_chain_ends_at_the_creatives_click_url(
    api: Api, settings: Settings, loopback: Loopback, partner: Partner
) -> None:
    s = scenario(api, settings, partner=partner, bid_type="cpc")
    creative_id = _creative(api, s, f"{loopback.base}/landing?src=mi&cid={{click_id}}")
    urls = _serve(s, creative_id, new_gaid())

    first = api.client.get(urls.click_url, follow_redirects=False)
    assert first.status_code == 302
    partner_link = first.headers["location"]
    assert urlsplit(partner_link).hostname in PARTNER_RULES  # the partner records the click first
    assert parse_qs(urlsplit(partner_link).query)[s.integration()["click_id_parameter"]] == [urls.click_id]

    second = httpx.get(loopback.via_partner(partner_link), follow_redirects=False)
    assert second.status_code == 302, second.text
    landing = f"{loopback.base}/landing?src=mi&cid={urls.click_id}"
    assert second.headers["location"] == landing

    last = httpx.get(second.headers["location"], follow_redirects=False)
    assert last.status_code == 200 and loopback.landings == [f"/landing?src=mi&cid={urls.click_id}"]


def test_the_partner_stand_in_refuses_a_link_without_its_media_source(loopback: Loopback) -> None:
    # The stand-in is as strict as the partner: a link the partner would not record is refused, not redirected.
    response = httpx.get(f"{loopback.base}/partner/app.appsflyer.com/com.example?af_r=https%3A%2F%2Fx.example")
    assert response.status_code == 400


def test_without_a_partner_the_click_goes_straight_to_the_click_url(
    api: Api, settings: Settings, loopback: Loopback
) -> None:
    s = scenario(api, settings, bid_type="cpc")
    expect(api.client.patch(f"/api/v1/apps/{s.app['id']}", headers=s.advertiser.headers, json={"partner": None}), 200)
    creative_id = _creative(api, s, f"{loopback.base}/landing?g={{gaid}}")
    gaid = new_gaid()
    first = api.client.get(_serve(s, creative_id, gaid).click_url, follow_redirects=False)
    assert first.status_code == 302 and first.headers["location"] == f"{loopback.base}/landing?g={gaid}"
    assert httpx.get(first.headers["location"]).status_code == 200


def test_a_partner_without_a_redirect_parameter_is_not_put_in_front_of_the_click_url(
    api: Api, settings: Settings, loopback: Loopback
) -> None:
    # AppMetrica sends a click to the destination set in its tracker; it documents no parameter for ours.
    s = scenario(api, settings, partner=Partner.APPMETRICA, bid_type="cpc")
    creative_id = _creative(api, s, f"{loopback.base}/landing")
    first = api.client.get(_serve(s, creative_id, None).click_url, follow_redirects=False)
    assert first.status_code == 302 and first.headers["location"] == f"{loopback.base}/landing"


def test_a_token_naming_another_ad_groups_creative_never_reaches_its_click_url(
    api: Api, settings: Settings, loopback: Loopback
) -> None:
    s = scenario(api, settings, bid_type="cpc")
    other = scenario(api, settings, bid_type="cpc")
    foreign = _creative(api, other, f"{loopback.base}/landing?secret=other-tenant")
    first = api.client.get(_serve(s, foreign, None).click_url, follow_redirects=False)
    assert first.status_code == 302 and "other-tenant" not in first.headers["location"]


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.attrs: dict[str, dict[str, str]] = {}
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        if "id" in found:
            self.attrs[found["id"]] = found
        self._in_script = tag == "script"

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False


def _deeplink_click(api: Api, settings: Settings, loopback: Loopback) -> tuple[httpx.Response, str, str]:
    s = scenario(api, settings, partner=Partner.APPSFLYER, bid_type="cpc")
    creative_id = _creative(
        api, s, f"{loopback.base}/landing?cid={{click_id}}", deeplink="puzzle://level/7?cid={click_id}"
    )
    urls = _serve(s, creative_id, None)
    response = api.client.get(urls.click_url, follow_redirects=False)
    return response, urls.click_id, f"{loopback.base}/landing?cid={urls.click_id}"


def test_a_deeplink_opens_a_page_that_tries_the_app_and_falls_back_to_the_click_url(
    api: Api, settings: Settings, loopback: Loopback
) -> None:
    response, click_id, landing = _deeplink_click(api, settings, loopback)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = _Page()
    page.feed(response.text)
    opener = page.attrs["open"]
    assert opener["data-deeplink"] == f"puzzle://level/7?cid={click_id}"
    # The fallback is the whole click chain: the partner's link, which redirects to the click URL.
    fallback = opener["data-fallback"]
    assert page.attrs["fallback"]["href"] == fallback
    assert urlsplit(fallback).hostname == "app.appsflyer.com"
    hop = httpx.get(loopback.via_partner(fallback), follow_redirects=False)
    assert hop.headers["location"] == landing

    # Strict CSP: no inline script runs unless it is exactly this page's script, admitted by its hash.
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "unsafe-inline" not in policy and "unsafe-eval" not in policy
    (script,) = page.scripts
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in policy
    # The script reads the links from the page, tries the deeplink, and replaces itself with the fallback after
    # a wait unless the page was hidden (the app opened).
    assert re.search(r"setTimeout\(function \(\) \{ if \(!left\) \{ window\.location\.replace\(fallback\)", script)
    assert "window.location.href = deeplink" in script and "visibilitychange" in script
    assert int(opener["data-wait"]) <= 3000
    assert response.headers["referrer-policy"] == "no-referrer"


@pytest.mark.browser
def test_in_chromium_the_deeplink_page_falls_back_to_the_click_url(
    api: Api, settings: Settings, loopback: Loopback, tmp_path: Path, playwright_browser: Any
) -> None:
    s = scenario(api, settings, bid_type="cpc")
    expect(api.client.patch(f"/api/v1/apps/{s.app['id']}", headers=s.advertiser.headers, json={"partner": None}), 200)
    creative_id = _creative(api, s, f"{loopback.base}/landing?cid={{click_id}}", deeplink="puzzle://level/7")
    urls = _serve(s, creative_id, None)
    response = api.client.get(urls.click_url, follow_redirects=False)
    assert response.status_code == 200
    # The page exactly as answered (body and headers, CSP included), from a loopback origin Chromium can open.
    loopback.pages["/click"] = (
        response.content,
        {k: v for k, v in response.headers.items() if k not in ("content-length",)},
    )
    violations: list[str] = []
    context = playwright_browser.new_context()
    try:
        page = context.new_page()
        page.on(
            "console",
            lambda message: violations.append(message.text) if "Content Security Policy" in message.text else None,
        )
        page.goto(f"{loopback.base}/click")
        page.wait_for_url(f"{loopback.base}/landing**", timeout=10_000)
        assert page.url == f"{loopback.base}/landing?cid={urls.click_id}"
    finally:
        context.close()
    assert violations == []
    assert loopback.landings == [f"/landing?cid={urls.click_id}"]


def test_the_ad_responses_landing_url_is_where_its_click_ends(api: Api) -> None:
    from tests.serving.test_api import ad_request, ads_now, eventually, setup_serving_ad

    made = setup_serving_ad(api)
    space_id = made["space"]["id"]
    assert eventually(lambda: bool(ads_now(api.client, space_id)))
    (ad,) = expect(ad_request(api.client, space_id), 200)["ads"]
    assert ad["landing_url"] == made["creative"]["click_url"] == "https://example.com/app"
    clicked = api.client.get(ad["click_url"].split("testserver", 1)[1], follow_redirects=False)
    assert clicked.status_code == 302 and clicked.headers["location"] == ad["landing_url"]
