"""Re-review follows the Mi Ads guide (3.3 "Ad List", "List operations - edit"): the package name, the
distribution area, the publisher and the creative content send an approved object back; nothing else does."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from adstack.oplog.models import ChangeEvent
from tests.campaigns.helpers import ad_space, approved_ad_group, campaign, creative, publisher
from tests.console.support import sign_in
from tests.review.forms import form_fields
from tests.support import Actor, Api, expect


def _approved_setup(api: Api) -> tuple[Actor, Actor, dict[str, Any], dict[str, Any], dict[str, Any]]:
    admin = api.admin()
    adv = api.approved_account(admin)
    pub = publisher(api, admin)
    space = ad_space(api, admin, pub["id"])
    camp = campaign(api, adv)
    group = approved_ad_group(
        api,
        adv,
        admin,
        camp["id"],
        publisher_ids=[pub["id"]],
        start_at="2024-01-01T00:00:37Z",
        targeting={"countries": ["ID"], "genders": ["male"]},
    )
    made = creative(api, adv, group["id"])
    expect(api.client.post(f"/api/v1/creatives/{made['id']}/submit", headers=adv.headers), 200)
    made = expect(
        api.client.post(f"/api/v1/creatives/{made['id']}/review", headers=admin.headers, json={"decision": "approve"}),
        200,
    )
    return admin, adv, {"campaign": camp, "publisher": pub, "space": space}, group, made


def test_each_guide_listed_ad_group_field_sends_it_back(api: Api) -> None:
    admin, adv, things, group, _ = _approved_setup(api)
    other = publisher(api, admin, name="Mi Video", app_package="com.mi.video")
    ad_space(api, admin, other["id"], name="Video banner")
    url = f"/api/v1/ad-groups/{group['id']}"
    edits: list[tuple[str, Any]] = [
        ("targeting", {"countries": ["ID", "IN"], "genders": ["male"]}),  # the distribution area
        ("publisher_ids", [things["publisher"]["id"], other["id"]]),  # the publisher
        ("ad_space_ids", [things["space"]["id"]]),
    ]
    for field, value in edits:
        edited = expect(api.client.patch(url, headers=adv.headers, json={field: value}), 200)
        assert edited["review_status"] == "under_review", field
        assert edited["serving_status"] == "under_review", field
        assert "back to review" in edited["notice"] and f'ad group "{group["name"]}"' in edited["notice"], field
        assert "account" not in edited["notice"]
        queued = expect(api.client.get("/api/v1/review/queue", headers=admin.headers), 200)
        assert ("ad_group", group["id"]) in {(i["object_type"], i["object_id"]) for i in queued}
        expect(api.client.post(f"{url}/review", headers=admin.headers, json={"decision": "approve"}), 200)


def test_package_name_sends_the_campaigns_ad_groups_back(api: Api) -> None:
    _, adv, things, group, _ = _approved_setup(api)
    out = expect(
        api.client.patch(
            f"/api/v1/campaigns/{things['campaign']['id']}",
            headers=adv.headers,
            json={"package_name": "com.example.renamed"},
        ),
        200,
    )
    assert "package_name" in out["notice"] and "campaign" in out["notice"]
    got = expect(api.client.get(f"/api/v1/ad-groups/{group['id']}", headers=adv.headers), 200)
    assert got["review_status"] == "under_review"


NOT_REVIEWED_EDITS: list[tuple[str, Any]] = [
    ("name", "Renamed group"),
    ("total_budget_micros", 900_000_000),
    ("daily_budget_micros", 70_000_000),
    ("bid_micros", 250_000),
    ("pacing", "asap"),
    ("frequency_cap_per_day", 3),
    ("start_at", "2024-02-01T00:00:00Z"),
    ("end_at", "2031-01-01T00:00:00Z"),
    ("dayparting", [[hour >= 8 for hour in range(24)] for _ in range(7)]),
    ("time_zone", "Asia/Jakarta"),
    ("targeting", {"countries": ["ID"], "genders": ["female"], "age_ranges": ["25-34"]}),
    ("status", "paused"),
]


def test_every_other_ad_group_field_applies_at_once(api: Api) -> None:
    admin, adv, _, group, _ = _approved_setup(api)
    for field, value in NOT_REVIEWED_EDITS:
        edited = expect(
            api.client.patch(f"/api/v1/ad-groups/{group['id']}", headers=adv.headers, json={field: value}), 200
        )
        assert (edited["review_status"], edited["notice"]) == ("approved", None), field
        assert edited["serving_status"] != "under_review", field
        shown = edited[field] if field != "targeting" else edited["targeting"]["genders"]
        assert shown not in (None, group.get(field)), field  # the edit applied at once
    queued = expect(api.client.get("/api/v1/review/queue", headers=admin.headers), 200)
    assert ("ad_group", group["id"]) not in {(i["object_type"], i["object_id"]) for i in queued}


def test_campaign_name_and_status_apply_at_once(api: Api) -> None:
    _, adv, things, group, _ = _approved_setup(api)
    url = f"/api/v1/campaigns/{things['campaign']['id']}"
    assert expect(api.client.patch(url, headers=adv.headers, json={"name": "New name"}), 200)["notice"] is None
    assert expect(api.client.patch(url, headers=adv.headers, json={"status": "paused"}), 200)["notice"] is None
    assert (
        expect(api.client.get(f"/api/v1/ad-groups/{group['id']}", headers=adv.headers), 200)["review_status"]
        == "approved"
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("click_url", "https://example.com/other"),
        ("deeplink", "brand://open"),
        ("impression_urls", ["https://track.example.com/imp"]),
    ],
)
def test_creative_content_sends_the_creative_back_and_its_name_does_not(api: Api, field: str, value: Any) -> None:
    _, adv, _, _, made = _approved_setup(api)
    url = f"/api/v1/creatives/{made['id']}"
    renamed = expect(api.client.patch(url, headers=adv.headers, json={"name": "Renamed creative"}), 200)
    assert (renamed["review_status"], renamed["notice"]) == ("approved", None)
    edited = expect(api.client.patch(url, headers=adv.headers, json={field: value}), 200)
    assert edited["review_status"] == "under_review"
    assert 'creative "Renamed creative"' in edited["notice"] and "account" not in edited["notice"]


def _oplog_count(api: Api, object_id: int) -> int:
    api.session.expire_all()
    return int(
        api.session.scalar(
            select(func.count())
            .select_from(ChangeEvent)
            .where(ChangeEvent.object_type == "ad_group", ChangeEvent.object_id == object_id)
        )
        or 0
    )


def test_saving_the_unchanged_console_form_changes_nothing(api: Api) -> None:
    _, adv, _, group, _ = _approved_setup(api)
    # Targeting the form has no inputs for must survive a save too.
    expect(
        api.client.patch(
            f"/api/v1/ad-groups/{group['id']}",
            headers=adv.headers,
            json={"targeting": {"countries": ["ID"], "genders": ["male"], "deal_ids": ["deal-1"]}},
        ),
        200,
    )
    before = expect(api.client.get(f"/api/v1/ad-groups/{group['id']}", headers=adv.headers), 200)
    assert before["start_at"].startswith("2024-01-01T00:00:37")  # seconds the form cannot show
    logged = _oplog_count(api, group["id"])
    assert sign_in(api.client, adv.email, "correct horse battery").status_code == 303
    page = api.client.get(f"/console/ads/ad-groups/{group['id']}/edit")
    assert page.status_code == 200
    fields = form_fields(page.text, "ad-group-form")
    saved = api.client.post(f"/console/ads/ad-groups/{group['id']}/edit", data=_multi(fields), follow_redirects=False)
    assert saved.status_code == 303, saved.text[-2000:]
    assert saved.headers["location"].endswith("notice=saved")
    after = expect(api.client.get(f"/api/v1/ad-groups/{group['id']}", headers=adv.headers), 200)
    assert after == before
    assert _oplog_count(api, group["id"]) == logged
    # The same form with one country added is a real change: back to review, and the notice names the ad group.
    changed = api.client.post(
        f"/console/ads/ad-groups/{group['id']}/edit",
        data=_multi([*fields, ("countries", "IN")]),
        follow_redirects=False,
    )
    assert changed.status_code == 303 and changed.headers["location"].endswith("notice=ad_group_back_to_review")
    shown = api.client.get(changed.headers["location"])
    assert "sent the ad group back to review" in shown.text
    assert _oplog_count(api, group["id"]) == logged + 1


def _multi(fields: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in fields:
        out.setdefault(name, []).append(value)
    return out
