"""Buttons on the ad list's rows: submit for review (drafts and rejected objects only, through the same services as
the API's submit, back to the same list), and deep copy (a campaign with its ad groups and creatives, an ad group
with its creatives; a creative by the API's copy)."""

from __future__ import annotations

import html as htmllib
import re

from fastapi.testclient import TestClient

from tests.campaigns.helpers import ad_group, approved_ad_group, campaign, creative
from tests.console.support import csrf_from, sign_in
from tests.support import Api, expect


def _row(page: str, level: str, row_id: int) -> str:
    return page.split(f'id="row-{level}-{row_id}"', 1)[1].split("</tr>", 1)[0]


def _press(client: TestClient, page: str, level: str, row_id: int, marker: str) -> tuple[str, dict[str, str]]:
    """The row's form holding `marker`, as the browser would post it: (action, fields)."""
    forms = re.findall(r"<form [^>]*>[\s\S]*?</form>", _row(page, level, row_id))
    form = next(f for f in forms if marker in f)
    action = htmllib.unescape(re.search(r'action="([^"]+)"', form).group(1))  # type: ignore[union-attr]
    fields = {
        htmllib.unescape(n): htmllib.unescape(v)
        for n, v in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form)
    }
    fields["csrf_token"] = csrf_from(page)
    return action, fields


def test_submit_for_review_on_the_row(client: TestClient, api: Api) -> None:
    admin = api.admin()
    adv = api.approved_account(admin, email="row-submit@example.com")
    camp = campaign(api, adv)
    draft = ad_group(api, adv, camp["id"], name="Draft group")
    approved = approved_ad_group(api, adv, admin, camp["id"], name="Approved group")
    pending = creative(api, adv, approved["id"], name="Pending creative")
    sign_in(client, "row-submit@example.com", "correct horse battery")

    listing = client.get("/console/ads/ad-groups", params={"sort": "name", "dir": "asc"})
    assert "data-submit-row" in _row(listing.text, "ad-groups", draft["id"])
    assert "data-submit-row" not in _row(listing.text, "ad-groups", approved["id"])
    action, fields = _press(client, listing.text, "ad-groups", draft["id"], "data-submit-row")
    done = client.post(action, data=fields, follow_redirects=False)
    assert done.status_code == 303
    assert done.headers["location"].startswith("/console/ads/ad-groups?") and "sort=name" in done.headers["location"]
    assert (
        expect(client.get(f"/api/v1/ad-groups/{draft['id']}", headers=adv.headers), 200)["review_status"]
        == "under_review"
    )
    after = client.get(done.headers["location"])
    assert "data-submit-row" not in _row(after.text, "ad-groups", draft["id"])

    creatives_page = client.get("/console/ads/creatives")
    action, fields = _press(client, creatives_page.text, "creatives", pending["id"], "data-submit-row")
    assert client.post(action, data=fields, follow_redirects=False).status_code == 303
    assert (
        expect(client.get(f"/api/v1/creatives/{pending['id']}", headers=adv.headers), 200)["review_status"]
        == "under_review"
    )
    # Campaigns are not reviewed: no submit button on their rows.
    assert "data-submit-row" not in client.get("/console/ads/campaigns").text

    # Rejected: the button is back.
    expect(
        client.post(
            f"/api/v1/ad-groups/{draft['id']}/review",
            headers=admin.headers,
            json={"decision": "reject", "reasons": ["Wrong country"]},
        ),
        200,
    )
    assert "data-submit-row" in _row(client.get("/console/ads/ad-groups").text, "ad-groups", draft["id"])


def _groups(adv: object, api: Api, campaign_id: int) -> list[dict[str, object]]:
    return expect(
        api.client.get(
            "/api/v1/ad-groups",
            headers=adv.headers,  # type: ignore[attr-defined]
            params={"campaign_id": campaign_id},
        ),
        200,
    )["items"]


def test_deep_copy_on_the_row(client: TestClient, api: Api) -> None:
    admin = api.admin()
    adv = api.approved_account(admin, email="row-copy@example.com")
    camp = campaign(api, adv, name="Deep source")
    group = approved_ad_group(api, adv, admin, camp["id"], name="Group with two")
    for n in range(2):
        creative(api, adv, group["id"], name=f"Creative {n}")
    sign_in(client, "row-copy@example.com", "correct horse battery")

    page = client.get("/console/ads/ad-groups")
    action, fields = _press(client, page.text, "ad-groups", group["id"], "data-deep-copy")
    copied = client.post(action, data=fields, follow_redirects=False)
    assert copied.status_code == 303
    copy_id = int(copied.headers["location"].split("?")[0].rsplit("/", 1)[1])
    assert copy_id != group["id"]
    copies = expect(client.get("/api/v1/creatives", headers=adv.headers, params={"ad_group_id": copy_id}), 200)
    assert sorted(c["name"] for c in copies["items"]) == ["Creative 0", "Creative 1"]

    page = client.get("/console/ads/campaigns")
    action, fields = _press(client, page.text, "campaigns", camp["id"], "data-deep-copy")
    copied = client.post(action, data=fields, follow_redirects=False)
    new_campaign = int(copied.headers["location"].split("?")[0].rsplit("/", 1)[1])
    assert new_campaign != camp["id"]
    # The source campaign now holds the group and its copy: both come along, each with its two creatives.
    groups = _groups(adv, api, new_campaign)
    assert sorted(str(g["name"]) for g in groups) == ["Group with two", "Group with two - copy"]
    for copied_group in groups:
        inner = expect(
            client.get("/api/v1/creatives", headers=adv.headers, params={"ad_group_id": copied_group["id"]}), 200
        )
        assert len(inner["items"]) == 2
    # The row's only copy that saves at once is the deep one; quick copy opens a form (test_ads_quick_copy.py).
    row = _row(page.text, "campaigns", camp["id"])
    assert row.count(f'/ads/campaigns/{camp["id"]}/copy"') == 1 and "data-quick-copy" in row
