"""Quick copy on the ad list's rows opens the creation form filled with the row's values (Mi Ads usage guide, 3.3
Ad List: "Fill in the same content, and everything can be modified"); only saving that form creates the copy."""

from __future__ import annotations

import html as htmllib
import re

import pytest
from fastapi.testclient import TestClient

from tests.campaigns.helpers import ad_group, approved_ad_group, campaign, creative
from tests.console.html_forms import as_data, form_fields, with_values
from tests.console.support import sign_in
from tests.support import Api, expect

FORM_IDS = {"campaigns": "campaign-form", "ad-groups": "ad-group-form", "creatives": "creative-form"}
API_LISTS = {"campaigns": "/api/v1/campaigns", "ad-groups": "/api/v1/ad-groups", "creatives": "/api/v1/creatives"}


def _row(page: str, level: str, row_id: int) -> str:
    return page.split(f'id="row-{level}-{row_id}"', 1)[1].split("</tr>", 1)[0]


def _quick_copy_link(page: str, level: str, row_id: int) -> str:
    match = re.search(r'<a [^>]*href="([^"]+)"[^>]*data-quick-copy', _row(page, level, row_id))
    assert match, f"no quick copy on the {level} row {row_id}"
    return htmllib.unescape(match.group(1))


def _names(client: TestClient, api: Api, actor: object, level: str) -> list[str]:
    found = expect(
        client.get(
            API_LISTS[level],
            headers=actor.headers,  # type: ignore[attr-defined]
            params={"limit": 100},
        ),
        200,
    )["items"]
    return sorted(str(item["name"]) for item in found)


@pytest.mark.parametrize("level", ["campaigns", "ad-groups", "creatives"])
def test_quick_copy_opens_the_prefilled_form_and_saving_it_creates_the_copy(
    client: TestClient, api: Api, level: str
) -> None:
    admin = api.admin()
    adv = api.approved_account(admin, email=f"quick-copy-{level}@example.com")
    camp = campaign(api, adv, name="Source campaign", package_name="com.example.source")
    if level == "creatives":
        group = approved_ad_group(api, adv, admin, camp["id"], name="Source group")
        source = creative(api, adv, group["id"], name="Source creative")
    else:
        group = ad_group(
            api, adv, camp["id"], name="Source group", bid_micros=340_000, targeting={"countries": ["ID", "SG"]}
        )
        source = camp if level == "campaigns" else group
    sign_in(client, f"quick-copy-{level}@example.com", "correct horse battery")
    before = _names(client, api, adv, level)

    listing = client.get(f"/console/ads/{level}")
    link = _quick_copy_link(listing.text, level, source["id"])
    # The object's own page offers the same quick copy.
    detail = client.get(f"/console/ads/{level}/{source['id']}").text
    assert f'href="{link}" data-quick-copy' in detail
    opened = client.get(link)
    assert opened.status_code == 200, opened.text[-500:]
    # Nothing is saved by opening the form.
    assert _names(client, api, adv, level) == before
    assert "data-copy-note" in opened.text
    action, fields = form_fields(opened.text, FORM_IDS[level])
    values = dict(fields)
    assert values["name"] == f"{source['name']} - copy"
    if level == "campaigns":
        assert values["package_name"] == "com.example.source"
        assert action == "/console/ads/new"
    elif level == "ad-groups":
        assert values["bid"] == "0.34"
        assert {v for k, v in fields if k == "countries"} == {"ID", "SG"}
        assert action == f"/console/ads/campaigns/{camp['id']}/ad-groups/new"
    else:
        assert values["click_url"] == source["click_url"]
        assert [v for k, v in fields if k == "titles" and v] == source["materials"]["titles"]
        assert action == f"/console/ads/ad-groups/{group['id']}/creatives/new"

    # Everything can be changed before saving: the name here.
    saved = client.post(action, data=as_data(with_values(fields, name="Changed copy")), follow_redirects=False)
    assert saved.status_code == 303, saved.text[-2000:]
    assert _names(client, api, adv, level) == sorted([*before, "Changed copy"])


def test_quick_copy_of_someone_elses_object_opens_nothing(client: TestClient, api: Api) -> None:
    admin = api.admin()
    owner = api.approved_account(admin, email="copy-owner@example.com")
    theirs = campaign(api, owner, name="Not yours")
    api.approved_account(admin, email="copy-other@example.com")
    sign_in(client, "copy-other@example.com", "correct horse battery")
    refused = client.get(f"/console/ads/new?copy_of={theirs['id']}")
    assert refused.status_code == 404 and "Not yours" not in refused.text
    # A copy_of that is not an id is ignored: the empty form.
    plain = client.get("/console/ads/new?copy_of=abc")
    assert plain.status_code == 200 and "data-copy-note" not in plain.text
