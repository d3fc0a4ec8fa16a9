"""The target group matches the promotion target (Mi Ads guide 3.1.2, "Set promotion target": "Select the target
group that matches the promotion target"): the "App install" groups are for app download campaigns; a non-download
campaign's ad groups reach "All users"."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from adstack.accounts import auth, users
from adstack.accounts import service as accounts
from adstack.accounts.models import Account
from adstack.campaigns.models import AdGroup, Campaign
from adstack.console.messages import Speaker
from tests.campaigns.helpers import ad_group, campaign
from tests.console.support import post_form, register
from tests.support import Api, expect

INSTALL_GROUPS = ("not_currently_installed", "not_installed_90d", "never_installed", "installed")


def _page_campaign(api: Api, actor: Any) -> dict[str, Any]:
    return campaign(api, actor, name="Landing page", promotion_type="non_download", package_name=None,
                    landing_kind="h5", landing_url="https://example.com/page")


def _field(answer: Any) -> dict[str, Any]:
    [field] = expect(answer, 422)["error"]["fields"]
    return dict(field)


def test_a_non_download_campaigns_ad_group_targets_all_users_only(api: Api) -> None:
    adv = api.approved_account()
    page = _page_campaign(api, adv)
    for group in INSTALL_GROUPS:
        field = _field(api.client.post("/api/v1/ad-groups", headers=adv.headers, json={
            "campaign_id": page["id"], "name": "x", "placement_type": "banner", "bid_type": "cpc",
            "bid_micros": 200_000, "target_group": group}))
        assert (field["field"], field["rule"], field["limit"], field["actual"]) == (
            "target_group", "promotion_target", ["all_users"], group)
        assert "non_download" in field["message"]
    made = ad_group(api, adv, page["id"], target_group="all_users")
    assert ad_group(api, adv, page["id"])["target_group"] == made["target_group"] == "all_users"
    field = _field(api.client.patch(f"/api/v1/ad-groups/{made['id']}", headers=adv.headers,
                                    json={"target_group": "installed"}))
    assert (field["field"], field["rule"]) == ("target_group", "promotion_target")

    # An app download campaign takes every group.
    app = campaign(api, adv)
    for group in INSTALL_GROUPS:
        assert ad_group(api, adv, app["id"], target_group=group)["target_group"] == group

    # A copy into a non-download campaign cannot carry an install-based group.
    installs = ad_group(api, adv, app["id"], target_group="never_installed")
    field = _field(api.client.post(f"/api/v1/ad-groups/{installs['id']}/copy", headers=adv.headers,
                                   json={"campaign_id": page["id"]}))
    assert (field["field"], field["rule"]) == ("target_group", "promotion_target")

    # Nor can a campaign become non-download while its ad groups target installs of its app.
    switch = {"promotion_type": "non_download", "landing_kind": "h5", "landing_url": "https://example.com/p"}
    field = _field(api.client.patch(f"/api/v1/campaigns/{app['id']}", headers=adv.headers, json=switch))
    assert (field["field"], field["rule"], field["limit"]) == ("promotion_type", "promotion_target", ["all_users"])
    assert installs["id"] in field["actual"]


def test_an_ad_group_stored_before_the_rule_still_reads_edits_and_copies(api: Api, session: Session) -> None:
    adv = api.approved_account()
    page = _page_campaign(api, adv)
    group = ad_group(api, adv, page["id"], name="Old")
    session.execute(AdGroup.__table__.update().where(AdGroup.id == group["id"]).values(target_group="installed"))
    session.commit()
    assert expect(api.client.get(f"/api/v1/ad-groups/{group['id']}", headers=adv.headers),
                  200)["target_group"] == "installed"
    listed = expect(api.client.get("/api/v1/ad-groups", params={"campaign_id": page["id"]}, headers=adv.headers),
                    200)
    assert [g["target_group"] for g in listed["items"]] == ["installed"]
    # Edits that leave the target group alone go through; serving never read it for a non-download campaign.
    assert expect(api.client.patch(f"/api/v1/ad-groups/{group['id']}", headers=adv.headers,
                                   json={"bid_micros": 300_000}), 200)["bid_micros"] == 300_000
    # Copies say what the original did: all users.
    deep = expect(api.client.post(f"/api/v1/campaigns/{page['id']}/copy", headers=adv.headers,
                                  json={"deep": True}), 201)
    [copied] = expect(api.client.get("/api/v1/ad-groups", params={"campaign_id": deep["id"]},
                                     headers=adv.headers), 200)["items"]
    assert copied["target_group"] == "all_users"
    assert expect(api.client.post(f"/api/v1/ad-groups/{group['id']}/copy", headers=adv.headers, json={}),
                  201)["target_group"] == "all_users"
    fixed = expect(api.client.patch(f"/api/v1/ad-groups/{group['id']}", headers=adv.headers,
                                    json={"target_group": "all_users"}), 200)
    assert fixed["target_group"] == "all_users"


def test_the_console_offers_a_non_download_campaign_only_all_users_and_says_the_rule(
    client: TestClient, session: Session
) -> None:
    register(client, 7401)
    account_id = session.scalar(select(Account.id).where(Account.contact_email == "ops7401@example.com"))
    reviewer = auth.principal_for(users.create_admin(session, email="boss7401@example.org", password="admin-password"))
    accounts.review_account(session, reviewer, account_id, approve=True)
    session.commit()
    made = post_form(client, "/console/ads/new", "/console/ads/new", {
        "objective": "performance", "name": "Page", "promotion_type": "non_download", "landing_kind": "h5",
        "landing_url": "https://example.com/page"})
    assert made.status_code == 303, made.text[-1500:]
    campaign_id = session.scalar(select(Campaign.id).where(Campaign.name == "Page"))
    form = client.get(f"/console/ads/campaigns/{campaign_id}/ad-groups/new").text
    select_box = form[form.index('<select id="target_group"'):]
    select_box = select_box[:select_box.index("</select>")]
    assert 'value="all_users"' in select_box and "never_installed" not in select_box

    refusal = {"field": "target_group", "rule": "promotion_target", "limit": ["all_users"], "actual": "installed"}
    assert Speaker("en").sentence(refusal) == (
        "The target group must match the promotion target: only app download campaigns take install-based target "
        "groups; a non-download campaign's ad groups target all users.")
    assert Speaker("zh").sentence(refusal).startswith("目标人群须与推广目标相符")
