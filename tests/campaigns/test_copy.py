"""Copy and create (guide 3.3, "② Copy"): an identical campaign, ad group and creative, field by field."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from adstack.campaigns.models import AdGroup, Campaign
from adstack.core.db import Base
from adstack.creatives.models import Creative
from tests.campaigns.helpers import approved_ad_group, campaign, png
from tests.support import Api, expect

# What a copy does not take over: its own identity, parent, review and lifecycle. Everything else is a setting.
OWN = {"id", "created_at", "updated_at", "deleted_at", "status", "review_status", "rejection_reasons",
       "created_by_user_id"}


def _settings(row: Base, *, besides: set[str]) -> dict[str, Any]:
    return {c.key: getattr(row, c.key) for c in row.__table__.columns if c.key not in OWN | besides}


def test_copy_and_create_copies_every_setting_of_the_campaign_its_ad_groups_and_creatives(api: Api) -> None:
    admin = api.admin()
    adv = api.approved_account(admin)
    camp = campaign(api, adv, name="Original", iab_categories=["IAB9-30", "IAB1"])
    group = approved_ad_group(
        api, adv, admin, camp["id"], name="Group", dayparting=[[True] * 24] * 7, frequency_cap_per_day=3,
        pacing="asap", end_at="2199-01-01T00:00:00Z", time_zone="Asia/Jakarta", promotion_channel="google_play",
        targeting={"countries": ["ID"], "languages": ["id"]},
    )
    media = expect(api.client.post("/api/v1/media", headers=adv.headers, files={"file": ("b.png", png(640, 100))}),
                   201)
    expect(api.client.post("/api/v1/creatives", headers=adv.headers, json={
        "ad_group_id": group["id"], "name": "Banner", "format": "image_640x100",
        "materials": {"images": [media["id"]]}, "click_url": "https://example.com/app",
        "deeplink": "example://open", "impression_urls": ["https://monitor.example.org/imp?c={click_id}"],
    }), 201)
    deep = expect(api.client.post(f"/api/v1/campaigns/{camp['id']}/copy", headers=adv.headers,
                                  json={"deep": True}), 201)
    quick = expect(api.client.post(f"/api/v1/campaigns/{camp['id']}/copy", headers=adv.headers, json={}), 201)
    assert deep["iab_categories"] == quick["iab_categories"] == ["IAB9-30", "IAB1"]

    session = api.session
    session.expire_all()
    original = session.get(Campaign, camp["id"])
    assert original is not None
    for copy_id in (deep["id"], quick["id"]):
        copied = session.get(Campaign, copy_id)
        assert copied is not None
        assert _settings(copied, besides={"name"}) == _settings(original, besides={"name"})

    [original_group] = session.scalars(select(AdGroup).where(AdGroup.campaign_id == camp["id"])).all()
    [copied_group] = session.scalars(select(AdGroup).where(AdGroup.campaign_id == deep["id"])).all()
    assert _settings(copied_group, besides={"campaign_id"}) == _settings(original_group, besides={"campaign_id"})

    [original_creative] = session.scalars(select(Creative).where(Creative.ad_group_id == original_group.id)).all()
    [copied_creative] = session.scalars(select(Creative).where(Creative.ad_group_id == copied_group.id)).all()
    assert (_settings(copied_creative, besides={"ad_group_id"})
            == _settings(original_creative, besides={"ad_group_id"}))
    assert copied_creative.deeplink == "example://open"
