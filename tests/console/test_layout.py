"""Phone and desktop layout in headless Chromium: no page is wider than the viewport at 390 px or 1440 px, the
sidebar folds into a menu on phones, tables scroll inside their card with the name column kept in view, and
form fields stack. Screenshots of every page in both languages at both widths go to test-artifacts/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from tests.campaigns.helpers import ad_group, campaign
from tests.support import Api

# Slow: about 90 page views in Chromium (three people, two languages, two widths, each with a screenshot).
pytestmark = [pytest.mark.browser, pytest.mark.slow]

WIDTHS = (390, 1440)
ADVERTISER_PAGES = ("/console/", "/console/ads", "/console/ads/ad-groups", "/console/ads/creatives",
                    "/console/reports", "/console/audiences", "/console/finance", "/console/logs",
                    "/console/media-center", "/console/account", "/console/apps", "/console/connectors",
                    "/console/announcements", "/console/ads/new")
STAFF_PAGES = ("/console/", "/console/admin/review", "/console/admin/inventory", "/console/admin/pipeline",
               "/console/admin/top-ups", "/console/logs", "/console/announcements")

# The page's widest element, when the page scrolls sideways: names the culprit in the failure message.
OVERFLOW_PROBE = """() => {
  const limit = document.documentElement.clientWidth;
  if (document.documentElement.scrollWidth <= limit) return null;
  let worst = null;
  for (const el of document.querySelectorAll("body *")) {
    const box = el.getBoundingClientRect();
    if (box.right > limit + 1 && (!worst || box.right > worst.right) && !el.closest(".table-wrap")) {
      worst = {tag: el.tagName, cls: el.className, id: el.id, right: Math.round(box.right)};
    }
  }
  return {scrollWidth: document.documentElement.scrollWidth, limit, worst};
}"""


def _browse(browser: Any, base_url: str, email: str, password: str, language: str, width: int) -> Any:
    context = browser.new_context(base_url=base_url, viewport={"width": width, "height": 860},
                                  locale="zh-CN" if language == "zh" else "en-US",
                                  extra_http_headers={"Accept-Language": "zh-CN" if language == "zh" else "en-US"})
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto("/console/sign-in")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url("**/console/")
    return page


def _check_pages(page: Any, pages: tuple[str, ...], shots: Path, who: str, language: str, width: int) -> None:
    for url in pages:
        page.goto(url)
        page.wait_for_load_state("networkidle")
        overflow = page.evaluate(OVERFLOW_PROBE)
        name = url.strip("/").replace("/", "_") or "console"
        page.screenshot(path=str(shots / f"layout.{who}.{name}.{language}.{width}.png"), full_page=True)
        assert overflow is None, f"{url} at {width} px ({language}) is wider than the viewport: {overflow}"
        for wrap in page.locator(".table-wrap").all():
            inside = wrap.evaluate("w => w.getBoundingClientRect().right <= document.documentElement.clientWidth")
            assert inside, f"a table box on {url} at {width} px reaches past the viewport"


def _seed(api: Api) -> tuple[str, str]:
    admin = api.admin()
    advertiser = api.approved_account(admin, company_name="Summer Games (Singapore) Pte. Ltd. with a long name")
    camp = campaign(api, advertiser, name="Lunar New Year re-engagement for lapsed players in South-East Asia")
    for n in range(3):
        ad_group(api, advertiser, camp["id"], name=f"Interstitial, Indonesia and India, never installed {n}")
    return advertiser.email, admin.email


@pytest.mark.parametrize("language", ["en", "zh"])
def test_no_page_is_wider_than_a_phone_or_a_desktop(api: Api, session: Session, playwright_browser: Any,
                                                    live_server: str, screenshots: Path, language: str):
    advertiser, staff = _seed(api)
    for width in WIDTHS:
        page = _browse(playwright_browser, live_server, advertiser, "correct horse battery", language, width)
        _check_pages(page, ADVERTISER_PAGES, screenshots, "advertiser", language, width)
        page.context.close()
        page = _browse(playwright_browser, live_server, staff, "admin-password", language, width)
        _check_pages(page, STAFF_PAGES, screenshots, "staff", language, width)
        page.context.close()


def test_phone_layout_folds_the_sidebar_keeps_names_in_view_and_stacks_forms(
        api: Api, session: Session, playwright_browser: Any, live_server: str):
    advertiser, _staff = _seed(api)
    page = _browse(playwright_browser, live_server, advertiser, "correct horse battery", "en", 390)
    nav = page.locator("#main-nav")
    assert not nav.is_visible()
    page.click("[data-nav-toggle]")
    assert nav.is_visible() and page.get_attribute("[data-nav-toggle]", "aria-expanded") == "true"
    page.click("[data-nav-toggle]")
    assert not nav.is_visible()

    page.goto("/console/ads/ad-groups")
    page.wait_for_load_state("networkidle")
    wrap = page.locator(".table-wrap").first
    assert wrap.evaluate("w => w.scrollWidth > w.clientWidth"), "the ad-group table should scroll inside its box"
    name_cell = page.locator("tbody td.sticky-col").first
    before = name_cell.bounding_box()
    wrap.evaluate("w => { w.scrollLeft = w.scrollWidth; }")
    after = name_cell.bounding_box()
    assert before and after and "Interstitial" in name_cell.inner_text()
    wrap_box = wrap.bounding_box()
    assert wrap_box and after["x"] >= wrap_box["x"] - 1, "the name column scrolled out of view"

    page.goto("/console/ads/new")
    fields = page.locator(".field-row .field")
    if fields.count() >= 2:
        first, second = fields.nth(0).bounding_box(), fields.nth(1).bounding_box()
        assert first and second and second["y"] > first["y"], "fields of a row should stack on a phone"
    page.context.close()


def test_quick_edit_shows_a_refusal_in_place(api: Api, session: Session, playwright_browser: Any,
                                             live_server: str):
    advertiser, _staff = _seed(api)
    page = _browse(playwright_browser, live_server, advertiser, "correct horse battery", "en", 1440)
    page.goto("/console/ads/ad-groups")
    row = page.locator("#ad-list tbody tr").first
    row.locator("[data-quick-edit]").click()
    form = row.locator("form.quick-edit")
    form.wait_for()
    form.locator("input[name=bid]").fill("abc")
    form.locator("button[type=submit]").click()
    message = page.locator("#ad-list tbody tr .error-text").first
    message.wait_for()
    assert "Bid must be a number" in message.inner_text()
    header_columns = page.locator("#ad-list thead th").count()
    edit_columns = page.locator("#ad-list tbody tr").first.evaluate(
        "tr => Array.from(tr.cells).reduce((n, c) => n + c.colSpan, 0)")
    assert edit_columns == header_columns
    page.context.close()
