"""Every console page, for every role, in English and Simplified Chinese, at 390 px and 1440 px, in headless
Chromium. A page fails on:

- an accessibility violation of serious or critical impact (axe-core, served by the console from npm), at
  1440 px for every role and at 390 px too for the signed-out visitor and the owner;
- English text on a Chinese page, outside the data people typed;
- a raw code: a snake_case or SCREAMING_CASE identifier, an unfilled {placeholder} or a Python repr;
- an error response (a page, anything it loads, or a refused form) without a visible message, or any 5xx;
- a page wider than the viewport.

Every page is screenshotted in both languages at both widths into test-artifacts/ (git-ignored), as seen by the
signed-out visitor, the owner, the agency and the admin. All problems of a run are collected and reported
together.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from adstack.accounts.models import Role
from tests.campaigns.helpers import ad_group, ad_space, campaign, creative, ledger, png, publisher
from tests.support import Api, expect

# Slow: about 200 page views per language, each checked by axe-core.
pytestmark = [pytest.mark.browser, pytest.mark.slow]

WIDTHS = (1440, 390)
OWNER_PASSWORD, MEMBER_PASSWORD, STAFF_PASSWORD = "correct horse battery", "colleague password 1", "admin-password"

# Pages of an account's people; {campaign}, {ad_group} and {creative} are the account's own objects.
TENANT_PAGES = (
    "/console/",
    "/console/account",
    "/console/ads",
    "/console/ads/ad-groups",
    "/console/ads/creatives",
    "/console/ads/campaigns/{campaign}",
    "/console/ads/ad-groups/{ad_group}",
    "/console/ads/creatives/{creative}",
    "/console/ads/new",
    "/console/ads/campaigns/{campaign}/edit",
    "/console/ads/campaigns/{campaign}/ad-groups/new",
    "/console/ads/ad-groups/{ad_group}/edit",
    "/console/ads/ad-groups/{ad_group}/creatives/new",
    "/console/ads/creatives/{creative}/edit",
    "/console/reports",
    "/console/reports/jobs",
    "/console/audiences",
    "/console/audiences/labels/new",
    "/console/apps",
    "/console/connectors",
    "/console/finance",
    "/console/finance/credit-lines",
    "/console/media-center",
    "/console/logs",
    "/console/notifications",
    "/console/announcements",
    "/console/users",
    "/console/security",
    "/console/ads/campaigns/99999999",
)
STAFF_PAGES = (
    *TENANT_PAGES,
    "/console/admin/review",
    "/console/admin/inventory",
    "/console/admin/pipeline",
    "/console/admin/top-ups",
)
PUBLIC_PAGES = (
    "/console/sign-in",
    "/console/register",
    "/console/forgot-password",
    "/console/reset-password?token=expired",
)

# Latin words a Chinese page may show: units, standards, formats and names that Chinese UIs leave in Latin.
# Codes of one to three capitals (ISO country and currency codes, CPC, CPM, ID) are always allowed.
LATIN_IN_CHINESE = {
    "adstack",
    "url",
    "urls",
    "api",
    "csv",
    "xlsx",
    "pdf",
    "png",
    "jpg",
    "jpeg",
    "gif",
    "mp4",
    "webp",
    "kb",
    "mb",
    "px",
    "ocpc",
    "ocpm",
    "ecpm",
    "roas",
    "gaid",
    "oaid",
    "imei",
    "md5",
    "sha256",
    "ios",
    "android",
    "sdk",
    "http",
    "https",
    "html",
    "utc",
    "gmt",
    "xiaomi",
    "getapps",
    "miui",
    "hyperos",
    "redmi",
    "poco",
    "appsflyer",
    "adjust",
    "kochava",
    "branch",
    "singular",
    "appmetrica",
    "tenjin",
    "mytracker",
    "xmp",
    "airbridge",
    "hdfs",
    "json",
    "s2s",
    "openrtb",
    "app",
    "apps",
    "apk",
    "wifi",
    "ctrl",
    "google",
    "play",
    "iab",
    "vast",
    "mraid",
    "cpt",
    "deeplink",
    "webhook",
}
# Not words: addresses, sizes (640x100), dates and times (2025-06-01T00:00), time-zone names (Asia/Shanghai),
# HTTP header names (X-Account-ID).
NOT_WORDS = re.compile(
    r"[a-z][a-z0-9+.-]*://\S*|\S+@\S+\.\w+|\b\d+x\d+\b|\d{4}-\d\d-\d\dT[\d:]+"
    r"|\b[A-Z][A-Za-z_]+/[A-Za-z_/+-]+|\bX(?:-[A-Za-z]+)+"
)
LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*")


# Text walk: visible text nodes (and every <option>), plus the attributes people read, outside translate="no".
TEXT_PROBE = """() => {
  const out = [];
  const skip = el => el.closest('script,style,noscript,template,[translate="no"]');
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement, text = node.textContent.trim();
    if (!text || !el || skip(el)) continue;
    if (el.closest('option') || el.checkVisibility({visibilityProperty: true})) out.push(text);
  }
  for (const el of document.querySelectorAll('[placeholder],[aria-label],[title],img[alt],input[type=submit]')) {
    if (skip(el)) continue;
    for (const name of ['placeholder', 'aria-label', 'title', 'alt', 'value']) {
      if (name === 'value' && el.type !== 'submit') continue;
      const value = (el.getAttribute(name) || '').trim();
      if (value) out.push(value);
    }
  }
  out.push(document.title);
  return out;
}"""
# The page's widest element, when the page scrolls sideways: names the culprit in the failure message.
OVERFLOW_PROBE = """() => {
  const limit = document.documentElement.clientWidth;
  if (document.documentElement.scrollWidth <= limit) return null;
  let worst = null;
  for (const el of document.querySelectorAll("body *")) {
    const box = el.getBoundingClientRect();
    if (box.right > limit + 1 && (!worst || box.right > worst.right) && !el.closest(".table-wrap")) {
      worst = {tag: el.tagName, cls: String(el.className), id: el.id, right: Math.round(box.right)};
    }
  }
  return {scrollWidth: document.documentElement.scrollWidth, limit, worst};
}"""
AXE_RUN = """async () => {
  const result = await axe.run(document, {resultTypes: ['violations']});
  return result.violations.filter(v => v.impact === 'serious' || v.impact === 'critical').map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 3).map(n => n.target.join(' ') + ' ' + (n.failureSummary || '').split('\\n')[1])}));
}"""
# A message a person can read where an error answered: the error page's card, a notice, or an alert.
ERROR_MESSAGE = "[data-error-status], .notice.bad, .error-text, [role=alert]"

RAW_CODES = (
    re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b"),  # no_inventory, paused_by_platform
    re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b"),  # GUARANTEED_CPM
    re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}|%\([a-z_]+\)[sd]"),  # an unfilled placeholder
    re.compile(r"\bNone\b|\bTrue\b|\bFalse\b|\{'|\['|<[\w.]+ object at|\bDecimal\(|\bdatetime\.|Traceback"),
    # a validator's or a router's words: String should match pattern, Value error, an API path, micros
    re.compile(r"String should|Input should|Value error|/api/v1/|\bmicros\b"),
)
# Forms sent empty (or with a wrong password): each must answer with a refusal a person can read.
REFUSALS = {
    "visitor": (
        ("/console/sign-in", {"#email": "nobody@example.com", "#password": "not the password"}),
        ("/console/register", {}),
    ),
    "person": (("/console/ads/new", {}),),
}
SUBMIT = "main button[type=submit], .auth-card button[type=submit]"


@dataclass
class Person:
    role: str
    email: str
    password: str
    pages: tuple[str, ...]
    ids: dict[str, int]
    shots: bool = False  # screenshots: one person per kind of view (advertiser, agency, staff)


@dataclass
class World:
    people: list[Person]
    user_data: list[str] = field(default_factory=list)  # strings the test typed: names, emails, packages, URLs


def _seed(api: Api, session: Session) -> World:
    """Every role's person, with long names where the layout must make room for them."""
    admin = api.admin()
    owner = api.approved_account(admin, company_name="Summer Games (Singapore) Pte. Ltd. with a long name")
    camp = campaign(api, owner, name="Lunar New Year re-engagement for lapsed players in South-East Asia")
    group = ad_group(api, owner, camp["id"], name="Banner, Indonesia and India, never installed, all devices")
    made = creative(api, owner, group["id"], name="Banner lantern")
    pending = ad_group(api, owner, camp["id"], name="Indonesia banner, payers")
    creative(api, owner, pending["id"], name="Banner coins")
    expect(api.client.post(f"/api/v1/ad-groups/{pending['id']}/submit", headers=owner.headers), 200)
    ledger(session, owner.account_id, 250_000_000)
    shown_on = publisher(api, admin, name="Mi Browser")
    ad_space(api, admin, shown_on["id"], name="Home banner")

    agency = api.approved_account(admin, type="agency", company_name="Blue Harbour Media Agency")
    sub = api.sub_account(agency, admin, company_name="Harbour Client Games")
    sub_camp = campaign(api, agency, account_id=sub, name="Harbour launch")
    sub_group = ad_group(api, agency, sub_camp["id"], name="India banner, new users")
    media = expect(
        api.client.post(
            "/api/v1/media",
            headers=agency.headers,
            data={"account_id": str(sub)},
            files={"file": ("banner.png", png(640, 100))},
        ),
        201,
    )
    sub_made = expect(
        api.client.post(
            "/api/v1/creatives",
            headers=agency.headers,
            json={
                "ad_group_id": sub_group["id"],
                "name": "Banner harbour",
                "format": "image_640x100",
                "materials": {"images": [media["id"]]},
                "click_url": "https://example.com/app",
            },
        ),
        201,
    )

    ids = {"campaign": camp["id"], "ad_group": group["id"], "creative": made["id"]}
    agency_ids = {"campaign": sub_camp["id"], "ad_group": sub_group["id"], "creative": sub_made["id"]}
    operator, viewer = api.member(owner, "operator"), api.member(owner, "viewer")
    reviewer, manager = api.admin(Role.REVIEWER), api.admin(Role.ACCOUNT_MANAGER)
    people = [
        Person("owner", owner.email, OWNER_PASSWORD, TENANT_PAGES, ids, shots=True),
        Person("operator", operator.email, MEMBER_PASSWORD, TENANT_PAGES, ids),
        Person("viewer", viewer.email, MEMBER_PASSWORD, TENANT_PAGES, ids),
        Person("agency", agency.email, OWNER_PASSWORD, TENANT_PAGES, agency_ids, shots=True),
        Person("admin", admin.email, STAFF_PASSWORD, STAFF_PAGES, ids, shots=True),
        Person("reviewer", reviewer.email, STAFF_PASSWORD, STAFF_PAGES, ids),
        Person("account-manager", manager.email, STAFF_PASSWORD, STAFF_PAGES, ids),
    ]
    typed = [
        "Summer Games (Singapore) Pte. Ltd. with a long name",
        "Lunar New Year re-engagement for lapsed players in South-East Asia",
        "Banner, Indonesia and India, never installed, all devices",
        "Indonesia banner, payers",
        "Banner lantern",
        "Banner coins",
        "Mi Browser",
        "Home banner",
        "Blue Harbour Media Agency",
        "Harbour Client Games",
        "Harbour launch",
        "India banner, new users",
        "Banner harbour",
        "Summer installs",
        "Li Wei",
        "com.example.game",
        "com.mi.browser",
        "https://example.com/app",
        "Example Games (Singapore) Pte. Ltd.",
        "banner.png",
        "licence.png",
        "business_license.pdf",
        "getapps_shop_screenshot.pdf",
        "+65 6000 0000",
    ]
    typed += [p.email for p in people]
    return World(people, sorted(typed, key=len, reverse=True))


class Inspector:
    """Walks pages in one browser context and collects every problem it sees."""

    def __init__(self, page: Any, world: World, shots: Path | None, who: str, *, axe_narrow: bool = False):
        self.page, self.world, self.shots, self.who, self.axe_narrow = page, world, shots, who, axe_narrow
        self.problems: list[str] = []
        self.failed: list[str] = []
        page.on("response", self._response)
        page.on("pageerror", lambda error: self.failed.append(f"JavaScript error: {error}"))

    def _response(self, response: Any) -> None:
        if response.status >= 500 or (response.status >= 400 and response.request.resource_type != "document"):
            self.failed.append(f"{response.request.method} {response.url} answered {response.status}")

    def visit(self, url: str, language: str) -> None:
        page = self.page
        self.failed = []
        response = page.goto(url)
        # Fragments htmx loads with the page are part of it: wait until none is in flight.
        page.wait_for_function("() => !document.querySelector('.htmx-request')")
        where = f"{self.who} {language} {url}"
        self.problems += [f"{where}: {failure}" for failure in self.failed]
        status = response.status if response else 0
        if status >= 400 and not any(
            m.is_visible() and m.inner_text().strip() for m in page.locator(ERROR_MESSAGE).all()
        ):
            self.problems.append(f"{where}: answered {status} without a visible message")
        texts = self._texts()
        self.problems += [f"{where}: raw code {code!r} in {text!r}" for text, code in _raw_codes(texts)]
        if language == "zh":
            self.problems += [f"{where}: English {word!r} in {text!r}" for text, word in _english(texts)]
        name = url.split("?")[0].removeprefix("/console").strip("/").replace("/", "_") or "overview"
        # The width the page loaded at first, then the other: one resize a page, not one to each width.
        loaded_at = page.viewport_size["width"] if page.viewport_size else WIDTHS[0]
        for width in sorted(WIDTHS, key=lambda w: w != loaded_at):
            if width != loaded_at:
                page.set_viewport_size({"width": width, "height": 900})
            overflow = page.evaluate(OVERFLOW_PROBE)
            if overflow:
                self.problems.append(f"{where} at {width} px: wider than the viewport: {overflow}")
            if self.shots:
                page.screenshot(path=str(self.shots / f"{self.who}.{name}.{language}.{width}.png"), full_page=True)
            if width == WIDTHS[0] or self.axe_narrow:
                self.problems += [
                    f"{where} at {width} px: axe {v['impact']} {v['id']} ({v['help']}): {v['nodes']}"
                    for v in self._axe()
                ]

    def refuse(self, url: str, fill: dict[str, str], language: str) -> None:
        """Send the page's first form as filled (the browser's own checks off): a refusal with a visible message."""
        page, where = self.page, f"{self.who} {language} {url} (sent)"
        page.goto(url)
        button = page.locator(SUBMIT).first
        if not button.count():
            return  # the role is not shown this form
        for selector, value in fill.items():
            page.fill(selector, value)
        button.evaluate("b => { if (b.form) b.form.noValidate = true; }")
        self.failed = []
        with page.expect_response(
            lambda r: r.request.method == "POST" and r.request.resource_type == "document"
        ) as answer:
            button.click()
        page.wait_for_load_state()
        status = answer.value.status  # a refused sign-in redirects to the form, which says why
        self.problems += [f"{where}: {failure}" for failure in self.failed]
        if not any(m.is_visible() and m.inner_text().strip() for m in page.locator(ERROR_MESSAGE).all()):
            self.problems.append(f"{where}: answered {status} without a visible message")
        texts = self._texts()
        self.problems += [f"{where}: raw code {code!r} in {text!r}" for text, code in _raw_codes(texts)]
        if language == "zh":
            self.problems += [f"{where}: English {word!r} in {text!r}" for text, word in _english(texts)]

    def _texts(self) -> list[str]:
        texts: list[str] = []
        for text in self.page.evaluate(TEXT_PROBE):
            for typed in self.world.user_data:
                text = text.replace(typed, " ")
            if text.strip():
                texts.append(text)
        return texts

    def _axe(self) -> list[dict[str, Any]]:
        if not self.page.evaluate("() => typeof axe !== 'undefined'"):
            self.page.add_script_tag(url="/console/vendor/axe.min.js")
        return list(self.page.evaluate(AXE_RUN))


def _raw_codes(texts: list[str]) -> list[tuple[str, str]]:
    return [
        (text[:120], found.group(0))
        for text in texts
        for pattern in RAW_CODES
        for found in [pattern.search(NOT_WORDS.sub(" ", text))]
        if found
    ]


def _english(texts: list[str]) -> list[tuple[str, str]]:
    found = []
    for text in texts:
        words = [
            w
            for w in LATIN_WORD.findall(NOT_WORDS.sub(" ", text))
            if sum(c.isalpha() for c in w) >= 3
            and not (w.isupper() and len(w) <= 3)
            and w.lower() not in LATIN_IN_CHINESE
        ]
        if words:
            found.append((text[:120], words[0]))
    return found


def _sign_in(page: Any, email: str, password: str) -> None:
    page.goto("/console/sign-in")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url("**/console/")


def _choose_language(page: Any, language: str) -> None:
    chooser = page.locator("select[name=language]")
    if chooser.input_value() != language:
        with page.expect_navigation():
            chooser.select_option(language)


def test_every_page_for_every_role_in_english(
    api: Api, session: Session, playwright_browser: Any, live_server: str, screenshots: Path
) -> None:
    check_every_page(api, session, playwright_browser, live_server, screenshots, "en")


def check_every_page(
    api: Api, session: Session, playwright_browser: Any, live_server: str, screenshots: Path, language: str
) -> None:
    """Chinese runs from its own module, so the suite's two workers take one language each."""
    world = _seed(api, session)
    problems: list[str] = []
    accept = "zh-CN" if language == "zh" else "en-US"
    for person in [None, *world.people]:
        context = playwright_browser.new_context(
            base_url=live_server,
            locale=accept,
            viewport={"width": WIDTHS[0], "height": 900},
            extra_http_headers={"Accept-Language": accept},
        )
        page = context.new_page()
        page.set_default_timeout(20_000)
        # axe at 390 px too for the signed-out visitor and the owner: the narrow layouts of the public and the
        # account pages; the other roles' pages share that markup, and every page is axe-checked at 1440 px.
        inspector = Inspector(
            page,
            world,
            screenshots if person is None or person.shots else None,
            person.role if person else "visitor",
            axe_narrow=person is None or person.role == "owner",
        )
        if person is None:
            page.goto("/console/sign-in")
            _choose_language(page, language)
            for url in PUBLIC_PAGES:
                inspector.visit(url, language)
            for url, fill in REFUSALS["visitor"]:
                inspector.refuse(url, fill, language)
        else:
            _sign_in(page, person.email, person.password)
            _choose_language(page, language)
            for url in person.pages:
                inspector.visit(url.format(**person.ids), language)
            for url, fill in REFUSALS["person"]:
                inspector.refuse(url, fill, language)
        problems += inspector.problems
        context.close()
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)
