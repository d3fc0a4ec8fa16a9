"""In the browser: another advertiser's pages answer 404 by URL, and a form without its CSRF token is refused."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from adstack.accounts import auth
from adstack.accounts import service as accounts
from adstack.accounts.models import Principal, RegistrationIn
from adstack.campaigns import service as campaigns
from adstack.campaigns.models import CampaignCreate

pytestmark = pytest.mark.browser


def _advertiser(session: Session, n: int) -> tuple[str, int, Principal]:
    email = f"tenant{n}@example.com"
    user, account, _token = accounts.register(
        session,
        RegistrationIn.model_validate(
            {
                "email": email,
                "password": "tenant password",
                "company_name": f"Tenant {n} Ltd",
                "contact_name": "Ops",
                "contact_email": email,
                "country": "ID",
                "settlement_entity": "Xiaomi Singapore",
                "currency": "USD",
                "accept_agreement": True,
            }
        ),
        ttl=timedelta(hours=1),
    )
    session.commit()
    return email, account.id, auth.principal_for(user, client="console")


def test_foreign_pages_are_not_found_and_forms_need_their_token(
    playwright_browser: Any, live_server: str, session: Session, screenshots: Path
):
    from playwright.sync_api import expect

    _owner_email, owner_account, owner = _advertiser(session, 1)
    campaign = campaigns.create_campaign(
        session,
        owner,
        CampaignCreate.model_validate(
            {
                "objective": "performance",
                "name": "Owner's secret launch",
                "promotion_type": "app_download",
                "package_name": "com.owner.app",
            }
        ),
    )
    session.commit()
    intruder_email, _intruder_account, _intruder = _advertiser(session, 2)

    context = playwright_browser.new_context(base_url=live_server, locale="en-US")
    page = context.new_page()
    page.goto("/console/sign-in")
    page.fill("#email", intruder_email)
    page.fill("#password", "tenant password")
    page.click("button[type=submit]")
    page.wait_for_url("**/console/")

    for url in (
        f"/console/ads/campaigns/{campaign.id}",
        f"/console/accounts/{owner_account}",
        f"/console/ads/campaigns/{campaign.id}/edit",
        f"/console/ads/campaigns/{campaign.id}/ad-groups/new",
    ):
        response = page.goto(url)
        assert response is not None and response.status == 404, url
        expect(page.locator("[data-error-status]")).to_have_attribute("data-error-status", "404")
        expect(page.locator("body")).not_to_contain_text("Owner's secret launch")
    page.screenshot(path=str(screenshots / "not-found.en.png"), full_page=True)

    # The account form, with its hidden CSRF field removed before it is posted.
    page.goto("/console/account")
    form = page.locator("form[action$='/edit']")
    form.locator("input[name=csrf_token]").evaluate("field => field.remove()")
    page.fill("#edit_contact_name", "Changed without a token")
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        form.get_by_role("button", name="Save").click()
    assert posted.value.status == 403
    expect(page.locator("body")).to_contain_text("security token")
    page.screenshot(path=str(screenshots / "csrf-refused.en.png"), full_page=True)
    page.goto("/console/account")
    expect(page.locator("#edit_contact_name")).to_have_value("Ops")
    context.close()
