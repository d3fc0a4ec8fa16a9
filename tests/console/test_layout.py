"""Phone layout in headless Chromium: the sidebar folds into a menu, tables scroll inside their card with the name
column kept in view, form fields stack, and quick edit shows a refusal in place. That no page is wider than the
viewport at 390 px or 1440 px, for every role and in both languages, is checked by test_every_page.py."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.orm import Session

from tests.campaigns.helpers import ad_group, campaign
from tests.support import Api

pytestmark = pytest.mark.browser


def _browse(browser: Any, base_url: str, email: str, password: str, language: str, width: int) -> Any:
    context = browser.new_context(
        base_url=base_url,
        viewport={"width": width, "height": 860},
        locale="zh-CN" if language == "zh" else "en-US",
        extra_http_headers={"Accept-Language": "zh-CN" if language == "zh" else "en-US"},
    )
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto("/console/sign-in")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url("**/console/")
    return page


def _seed(api: Api) -> tuple[str, str]:
    admin = api.admin()
    advertiser = api.approved_account(admin, company_name="Summer Games (Singapore) Pte. Ltd. with a long name")
    camp = campaign(api, advertiser, name="Lunar New Year re-engagement for lapsed players in South-East Asia")
    for n in range(3):
        ad_group(api, advertiser, camp["id"], name=f"Interstitial, Indonesia and India, never installed {n}")
    return advertiser.email, admin.email


def test_phone_layout_folds_the_sidebar_keeps_names_in_view_and_stacks_forms(
    api: Api, session: Session, playwright_browser: Any, live_server: str
):
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


def test_quick_edit_shows_a_refusal_in_place_and_keeps_what_was_typed(
    api: Api, session: Session, playwright_browser: Any, live_server: str
):
    advertiser, _staff = _seed(api)
    page = _browse(playwright_browser, live_server, advertiser, "correct horse battery", "en", 1440)
    page.goto("/console/ads/ad-groups")
    row = page.locator("#ad-list tbody tr").first
    row.locator("[data-quick-edit]").click()
    form = row.locator("form.quick-edit")
    form.wait_for()
    form.locator("input[name=name]").fill("Renamed while refused")
    form.locator("input[name=bid]").fill("abc")
    form.locator("button[type=submit]").click()
    message = page.locator("#ad-list tbody tr .error-text").first
    message.wait_for()
    assert "Bid must be a number" in message.inner_text()
    # What was typed stays, so it can be corrected rather than typed again.
    kept = page.locator("#ad-list tbody tr form.quick-edit").first
    assert kept.locator("input[name=bid]").input_value() == "abc"
    assert kept.locator("input[name=name]").input_value() == "Renamed while refused"
    header_columns = page.locator("#ad-list thead th").count()
    edit_columns = page.locator("#ad-list tbody tr").first.evaluate(
        "tr => Array.from(tr.cells).reduce((n, c) => n + c.colSpan, 0)"
    )
    assert edit_columns == header_columns
    page.context.close()
