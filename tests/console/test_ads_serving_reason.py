"""The ⚠ serving-status reason is a button that opens the reason beside it (aria-expanded, aria-controls), in the
visitor's language, instead of a hover-only title; in Chromium, a click or Enter opens it and Escape closes it."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from adstack.campaigns.lists import ad_group_views
from adstack.campaigns.models import AdGroup
from adstack.console.messages import serving_reason
from tests.campaigns.helpers import ad_group, campaign
from tests.console.support import sign_in
from tests.support import Api


def _cell(page: str, group_id: int) -> str:
    row = page.split(f'id="row-ad-groups-{group_id}"', 1)[1].split("</tr>", 1)[0]
    match = re.search(r'<td>\s*<span class="badge[\s\S]*?</td>', row)
    assert match, row
    return match.group(0)


def test_the_reason_is_a_button_controlling_a_hidden_note(client: TestClient, api: Api, session: Session) -> None:
    adv = api.approved_account(email="reason@example.com")
    group = ad_group(api, adv, campaign(api, adv)["id"])
    stored = session.get(AdGroup, group["id"])
    assert stored is not None
    reason = ad_group_views(session, [stored])[0].serving_reason
    assert reason
    sign_in(client, "reason@example.com", "correct horse battery")
    for language, header in (("en", "en-US"), ("zh", "zh-CN")):
        cell = _cell(client.get("/console/ads/ad-groups", headers={"Accept-Language": header}).text, group["id"])
        assert "title=" not in cell
        button = re.search(r"<button [^>]*data-popover-toggle[^>]*>", cell)
        assert button, cell
        assert 'aria-expanded="false"' in button.group(0)
        controls = re.search(r'aria-controls="([^"]+)"', button.group(0))
        assert controls
        note = re.search(rf'<div [^>]*id="{controls.group(1)}"[^>]*hidden>([^<]*)</div>', cell)
        assert note, cell
        assert note.group(1).strip() == serving_reason(reason, language)
    assert serving_reason(reason, "zh") != serving_reason(reason, "en")


@pytest.mark.browser
def test_the_reason_opens_and_closes_from_the_keyboard(api: Api, playwright_browser: Any, live_server: str) -> None:
    adv = api.approved_account(email="reason-keys@example.com")
    group = ad_group(api, adv, campaign(api, adv)["id"])
    context = playwright_browser.new_context(base_url=live_server, viewport={"width": 1440, "height": 860})
    try:
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.goto("/console/sign-in")
        page.fill("#email", "reason-keys@example.com")
        page.fill("#password", "correct horse battery")
        page.click("button[type=submit]")
        page.wait_for_url("**/console/")
        page.goto("/console/ads/ad-groups")
        button = page.locator(f"#row-ad-groups-{group['id']} [data-popover-toggle]")
        note = page.locator(f"#{button.get_attribute('aria-controls')}")
        assert not note.is_visible()
        button.focus()
        page.keyboard.press("Enter")
        assert note.is_visible() and button.get_attribute("aria-expanded") == "true"
        page.keyboard.press("Escape")
        assert not note.is_visible() and button.get_attribute("aria-expanded") == "false"
        button.click()
        assert note.is_visible()
        button.click()
        assert not note.is_visible()
    finally:
        context.close()
