"""The whole journey of a new advertiser, clicked and typed in headless Chromium, with screenshots of every
page in English and Simplified Chinese."""

from __future__ import annotations

import csv
import io
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from adstack.accounts import users as account_users
from adstack.accounts.models import Account
from adstack.campaigns.models import AdGroup
from adstack.creatives.models import Creative
from adstack.finance import budgets
from adstack.review.models import ReviewStatus
from tests.console.support import png_bytes

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # a whole journey in Chromium: half a minute

ADMIN_EMAIL, ADMIN_PASSWORD = "reviewer@adstack.example", "reviewer-password"
EMAIL, PASSWORD = "growth@summer-games.example", "summer games 2025"
COMPANY = "Summer Games (Singapore) Pte. Ltd."


class Journey:
    """One browser context per person; each step waits for what a person would see before going on."""

    def __init__(self, browser: Any, base_url: str, shots: Path):
        self.browser, self.base_url, self.shots = browser, base_url, shots

    def person(self) -> Any:
        context = self.browser.new_context(
            base_url=self.base_url, locale="en-US", accept_downloads=True, viewport={"width": 1440, "height": 900}
        )
        page = context.new_page()
        page.on("dialog", lambda dialog: dialog.accept())  # confirm() of deletes and cascades
        page.set_default_timeout(20_000)
        return page

    def shot(self, page: Any, name: str) -> None:
        language = page.locator("html").get_attribute("lang") or "en"
        page.screenshot(
            path=str(self.shots / f"{name}.{'zh' if language.startswith('zh') else 'en'}.png"), full_page=True
        )

    def sign_in(self, page: Any, email: str, password: str) -> None:
        page.goto("/console/sign-in")
        page.fill("#email", email)
        page.fill("#password", password)
        page.click("button[type=submit]")
        page.wait_for_url("**/console/")


def _files(tmp_path: Path) -> dict[str, Path]:
    files = {
        "licence.png": png_bytes(200, 120),
        "icon.png": png_bytes(84, 84),
        "hero.png": png_bytes(1200, 628),
        "hero-heavy.png": png_bytes(1200, 628, noise=True),
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    return {name: tmp_path / name for name in files}


def _device_traffic(base_url: str, ad_space_id: int, *, requests: int, clicks: int) -> tuple[int, int]:
    """Devices ask for ads as the SDK does, show them (impression URLs) and tap some (click URL).

    Serving picks up the approved, funded ad group within seconds of the change."""
    shown = tapped = 0
    with httpx.Client(base_url=base_url, timeout=30) as device:
        deadline = time.monotonic() + 60
        while shown < requests:
            body = {"ad_space_id": ad_space_id, "device": {"country": "SG", "gaid": str(uuid.uuid4())}}
            ads = device.post("/v1/ads", json=body).json().get("ads", [])
            if not ads:
                assert time.monotonic() < deadline, "serving never filled the ad space"
                time.sleep(1)
                continue
            for url in ads[0]["tracking"]["impression"]:
                assert device.get(url).status_code in (200, 204)
            shown += 1
            if tapped < clicks:
                assert device.get(ads[0]["click_url"]).status_code in (301, 302, 303, 307)
                tapped += 1
    return shown, tapped


def test_a_new_advertiser_from_registration_to_report(
    playwright_browser: Any, live_server: str, session: Session, screenshots: Path, tmp_path: Path
):
    from playwright.sync_api import expect

    files = _files(tmp_path)
    account_users.create_admin(session, email=ADMIN_EMAIL, password=ADMIN_PASSWORD)
    session.commit()
    journey = Journey(playwright_browser, live_server, screenshots)

    # 1. Register, with a qualification document.
    advertiser = journey.person()
    advertiser.goto("/console/register")
    journey.shot(advertiser, "register")
    advertiser.fill("#company_name", COMPANY)
    advertiser.fill("#contact_name", "Tan Mei Ling")
    advertiser.fill("#contact_email", "ops@summer-games.example")
    advertiser.fill("#contact_phone", "+65 6123 4567")
    advertiser.select_option("#country", "ID")
    advertiser.select_option("#settlement", "Xiaomi Singapore|USD")
    advertiser.select_option("#time_zone", "Asia/Singapore")
    advertiser.fill("#email", EMAIL)
    advertiser.fill("#password", PASSWORD)
    advertiser.set_input_files("#document", str(files["licence.png"]))
    advertiser.check("input[name=accept_agreement]")
    advertiser.click("text=Register and submit for review")
    # Registration answers alike for every address and starts no session: the advertiser signs in.
    advertiser.wait_for_url("**/console/sign-in?notice=registered_check_mail")
    journey.sign_in(advertiser, EMAIL, PASSWORD)
    advertiser.goto("/console/account")
    advertiser.wait_for_url("**/console/accounts/*")
    expect(advertiser.locator("[data-status]").first).to_have_text("Under review")
    journey.shot(advertiser, "account")
    account_id = session.scalar(select(Account.id).where(Account.company_name == COMPANY))

    # 2. An admin approves the account from the review queue.
    admin = journey.person()
    journey.sign_in(admin, ADMIN_EMAIL, ADMIN_PASSWORD)
    admin.goto("/console/admin/review")
    journey.shot(admin, "review-queue")
    admin.locator(f'[data-review-row="account-{account_id}"]').get_by_role("button", name="Approve").click()
    expect(admin.locator(".notice.ok")).to_be_visible()
    advertiser.reload()
    expect(advertiser.locator("[data-status]").first).to_have_text("Approved")

    # 3. A campaign, an ad group and a creative, step by step.
    advertiser.goto("/console/ads")
    advertiser.click("#new-campaign")
    journey.shot(advertiser, "campaign-new")
    advertiser.fill("#name", "Summer cup (SG)")
    advertiser.check("input[name=promotion_type][value=app_download]")
    advertiser.fill("#package_name", "com.summergames.cup")
    advertiser.click("#save-campaign")
    advertiser.wait_for_url("**/ad-groups/new*")
    advertiser.fill("#name", "SG interstitial, all users")
    advertiser.select_option("#placement_type", "interstitial")
    advertiser.select_option("#countries", ["SG"])
    expect(advertiser.locator("[data-estimate-users]")).to_be_visible()
    advertiser.fill("#daily_budget", "50")
    advertiser.fill("#total_budget", "500")
    advertiser.select_option("#bid_type", "cpc")
    advertiser.fill("#bid", "0.30")
    journey.shot(advertiser, "ad-group-new")
    advertiser.click("#save-ad-group")
    advertiser.wait_for_url("**/creatives/new*")
    advertiser.fill("#name", "Hero banner A")
    advertiser.locator("input[name=titles]").first.fill("Win the summer cup")
    advertiser.locator("input[name=descriptions]").first.fill("50 levels, free to play")
    advertiser.locator("input[name=button_texts]").first.fill("Install")
    advertiser.set_input_files("input[name=upload_icon]", str(files["icon.png"]))
    expect(advertiser.locator("#materials-icon [data-asset]")).to_have_count(1)
    advertiser.set_input_files("input[name=upload_images]", str(files["hero.png"]))
    expect(advertiser.locator("#materials-images [data-asset]")).to_have_count(1)

    # 4. An oversized image is refused at once, with the rule and the actual size.
    advertiser.set_input_files("input[name=upload_images]", str(files["hero-heavy.png"]))
    refusal = advertiser.locator('[data-upload-error="hero-heavy.png"]')
    expect(refusal).to_contain_text("too large")
    expect(refusal).to_contain_text("500 KB")
    expect(advertiser.locator("#materials-images [data-asset]")).to_have_count(1)
    advertiser.fill("#click_url", "https://summer-games.example/cup")
    expect(advertiser.frame_locator("#preview iframe").locator("body")).to_contain_text("Win the summer cup")
    journey.shot(advertiser, "creative-new")
    advertiser.click("#save-creative")
    advertiser.wait_for_url("**/console/ads/ad-groups/*")

    # 5. Submit, and the admin approves the ad group and the creative.
    advertiser.click("#submit-for-review")
    expect(advertiser.locator(".notice.ok")).to_contain_text("Submitted for review")
    journey.shot(advertiser, "ad-group")
    ad_group = session.scalars(select(AdGroup).where(AdGroup.name == "SG interstitial, all users")).one()
    creative = session.scalars(select(Creative).where(Creative.name == "Hero banner A")).one()
    admin.goto("/console/admin/review")
    for kind, object_id in (("ad_group", ad_group.id), ("creative", creative.id)):
        admin.locator(f'[data-review-row="{kind}-{object_id}"]').get_by_role("button", name="Approve").click()
        expect(admin.locator(".notice.ok")).to_be_visible()
    session.expire_all()
    assert session.get(AdGroup, ad_group.id).review_status == ReviewStatus.APPROVED  # type: ignore[union-attr]
    # The platform offers an interstitial ad space: approved and with somewhere to show, it now lacks only money.
    with httpx.Client(base_url=live_server) as api:
        token = api.post("/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
        staff = {"Authorization": f"Bearer {token.json()['access_token']}"}
        shown_on = api.post(
            "/api/v1/publishers",
            headers=staff,
            json={"name": "Mi Browser", "app_package": "com.mi.browser", "platform": "android", "country": "SG"},
        )
        assert (
            api.post(
                "/api/v1/ad-spaces",
                headers=staff,
                json={
                    "publisher_id": shown_on.json()["id"],
                    "name": "Splash",
                    "placement_type": "interstitial",
                    "accepted_formats": [creative.format],
                    "sizes": ["1200x628"],
                },
            ).status_code
            == 201
        )
    advertiser.goto("/console/ads/ad-groups")
    expect(advertiser.locator(f"#row-ad-groups-{ad_group.id} [data-serving]")).to_have_attribute(
        "data-serving", "balance_insufficient", timeout=15_000
    )
    journey.shot(advertiser, "ad-list")

    # 6. Top up: the account manager credits the account.
    admin.goto("/console/finance")
    admin.select_option("#account_id", str(account_id))
    admin.fill("#amount", "1000")
    admin.click("#do-top-up")
    expect(admin.locator(".notice.ok")).to_be_visible()
    advertiser.goto("/console/finance")
    expect(advertiser.locator(f'[data-balance-account="{account_id}"] [data-balance]')).to_contain_text("1,000.00")
    journey.shot(advertiser, "finance")

    # The platform's catalogue gets a publisher with an interstitial ad space for the traffic to come from.
    admin.goto("/console/admin/inventory")
    admin.fill("#p-name", "Mi Video")
    admin.fill("#p-package", "com.miui.video")
    admin.fill("#p-country", "SG")
    admin.click("#add-publisher")
    expect(admin.locator(".notice.ok")).to_be_visible()
    admin.fill("#s-name", "Pause interstitial")
    admin.select_option("#s-placement", "interstitial")
    admin.check("input[name=accepted_formats][value=interstitial_image]")
    admin.click("#add-ad-space")
    added = admin.locator("[data-ad-space]", has_text="Pause interstitial")
    expect(added).to_have_count(1)
    journey.shot(admin, "inventory")
    ad_space_id = int(added.first.get_attribute("data-ad-space") or 0)

    # 7. Traffic through the real path: ad requests, impressions and clicks from devices in Singapore.
    impressions, clicks = _device_traffic(live_server, ad_space_id, requests=6, clicks=2)

    # 8. The report shows the traffic and its cost; the CSV download has the same numbers.
    deadline = time.monotonic() + 90
    report_url = (
        "/console/reports?granularity=total&dimensions=campaign&metrics=impressions&metrics=clicks&metrics=cost_micros"
    )
    # Counting and billing are separate consumers: reload until the page shows every event and the cost the
    # ledger holds when the page has loaded (a charge landing in between means one more reload).
    while True:
        advertiser.goto(report_url)
        totals = advertiser.locator("#report-totals")
        session.expire_all()
        spent = budgets.ad_group_spend_micros(session, ad_group.id)
        shown = [totals.locator(f'[data-column="{name}"]') for name in ("impressions", "clicks", "cost_micros")]
        if spent > 0 and all(cell.count() for cell in shown) and [cell.inner_text().strip() for cell in shown] == [
            str(impressions), str(clicks), f"${spent / 1_000_000:,.2f}"
        ]:
            break
        assert time.monotonic() < deadline, (
            "the report never showed the traffic and its ledger cost: "
            + advertiser.locator("body").inner_text()[:1500]
        )
        time.sleep(1)
    # The cost shown is what the ledger charged for those clicks (the auction's clearing price).
    expect(totals.locator('[data-column="clicks"]')).to_have_text(str(clicks))
    expect(totals.locator('[data-column="cost_micros"]')).to_have_text(f"${spent / 1_000_000:,.2f}")
    journey.shot(advertiser, "report")
    with advertiser.expect_download() as download_info:
        advertiser.click("#download-csv")
    rows = list(csv.reader(io.StringIO(Path(download_info.value.path()).read_text())))
    header, campaign_row = rows[0], rows[1]
    assert campaign_row[header.index("Impressions")] == str(impressions)
    assert campaign_row[header.index("Clicks")] == str(clicks)
    advertiser.goto("/console/")
    expect(advertiser.locator("#tile-spend")).to_contain_text(f"${spent / 1_000_000:,.2f}")
    journey.shot(advertiser, "overview")
    advertiser.goto("/console/media-center")
    journey.shot(advertiser, "media-center")

    # 9. Every step is in the operation log, made through the console.
    advertiser.goto("/console/logs")
    journey.shot(advertiser, "operation-logs")
    for object_type, operation in (
        ("account", "create"),
        ("account", "submit"),
        ("account", "approve"),
        ("campaign", "create"),
        ("ad_group", "create"),
        ("ad_group", "submit"),
        ("ad_group", "approve"),
        ("creative", "create"),
        ("creative", "submit"),
        ("creative", "approve"),
        ("account_balance", "top_up"),
    ):
        row = advertiser.locator(f'[data-log-row][data-object-type="{object_type}"][data-operation="{operation}"]')
        expect(row.first).to_have_attribute("data-client", "console")

    # Every page again in Simplified Chinese, chosen with the language switch.
    for person, pages in (
        (
            advertiser,
            (
                "/console/",
                "/console/account",
                "/console/ads/campaigns",
                "/console/ads/ad-groups",
                f"/console/ads/ad-groups/{ad_group.id}",
                f"/console/ads/creatives/{creative.id}",
                f"/console/ads/ad-groups/{ad_group.id}/edit",
                f"/console/ads/ad-groups/{ad_group.id}/creatives/new",
                "/console/ads/new",
                report_url,
                "/console/media-center",
                "/console/audiences",
                "/console/apps",
                "/console/finance",
                "/console/logs",
                "/console/announcements",
            ),
        ),
        (
            admin,
            (
                "/console/admin/review",
                "/console/admin/inventory",
                "/console/admin/top-ups",
                "/console/finance",
                "/console/logs",
            ),
        ),
    ):
        for language in ("en", "zh"):
            person.goto(pages[0])
            with person.expect_navigation():
                person.select_option("select[name=language]", language)
            for url in pages:
                person.goto(url)
                if language == "zh":
                    expect(person.locator("nav[aria-label]")).to_contain_text("概览")
                name = url.split("?")[0].removeprefix("/console").strip("/").replace("/", "-") or "overview"
                journey.shot(person, f"{'admin-' if person is admin else ''}{name}")
