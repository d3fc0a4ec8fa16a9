"""'No inventory' as serving would find it: an ad group whose matching ad spaces are all among its exceptions, or
fit none of its creatives' sizes, reads no_inventory; and serving indeed gives it no ad there."""

from __future__ import annotations

from typing import Any

from adstack.campaigns.enums import ServingStatus
from adstack.campaigns.status import REASONS
from adstack.core.timeutil import utcnow
from tests.campaigns.helpers import ad_space, approved_ad_group, campaign, publisher
from tests.campaigns.test_status import _advertiser, _status
from tests.serving.test_api import ad_request, ads_now, approved_creative
from tests.support import Actor, Api, expect

NO_INVENTORY = ("no_inventory", REASONS[ServingStatus.NO_INVENTORY])


def _group(api: Api, admin: Actor, actor: Actor, **targeting: Any) -> dict[str, Any]:
    group = approved_ad_group(
        api, actor, admin, campaign(api, actor)["id"], targeting={"countries": ["ID"], **targeting}
    )
    approved_creative(api, actor, admin, group["id"])  # a 640x100 banner image
    return group


def _serving_reads_the_control_plane(api: Api) -> None:
    """Rebuild serving's snapshot now, as its refresher does within a second of a change."""
    api.client.app.state.serving.refresh()  # type: ignore[attr-defined]


def test_ad_spaces_of_no_size_its_creatives_have_are_no_inventory(api: Api) -> None:
    admin, actor = _advertiser(api)
    space = ad_space(api, admin, publisher(api, admin)["id"], sizes=["320x50", "728x90"])
    group = _group(api, admin, actor)
    assert _status(api, actor, group["id"]) == NO_INVENTORY
    # Serving agrees: the space asks for sizes the banner is not.
    _serving_reads_the_control_plane(api)
    assert expect(ad_request(api.client, space["id"]), 200)["ads"] == []

    expect(
        api.client.patch(
            f"/api/v1/ad-spaces/{space['id']}", headers=admin.headers, json={"sizes": ["320x50", "640x100"]}
        ),
        200,
    )
    assert _status(api, actor, group["id"]) == ("eligible", "serving")
    _serving_reads_the_control_plane(api)
    assert ads_now(api.client, space["id"])
    # A space with no sizes listed takes any size.
    expect(api.client.patch(f"/api/v1/ad-spaces/{space['id']}", headers=admin.headers, json={"sizes": []}), 200)
    assert _status(api, actor, group["id"]) == ("eligible", "serving")


def test_excepted_ad_spaces_are_no_inventory(api: Api) -> None:
    admin, actor = _advertiser(api)
    space = ad_space(api, admin, publisher(api, admin)["id"])
    group = _group(api, admin, actor, exceptions={"ad_space_ids": [space["id"]]})
    assert _status(api, actor, group["id"]) == NO_INVENTORY
    _serving_reads_the_control_plane(api)
    assert expect(ad_request(api.client, space["id"]), 200)["ads"] == []

    other = ad_space(api, admin, publisher(api, admin, app_package="com.mi.video")["id"])
    assert _status(api, actor, group["id"]) == ("eligible", "serving")
    _serving_reads_the_control_plane(api)
    assert ads_now(api.client, other["id"])


def test_excepted_publisher_apps_are_no_inventory(api: Api) -> None:
    admin, actor = _advertiser(api)
    ad_space(api, admin, publisher(api, admin, app_package="com.mi.browser")["id"])
    group = _group(api, admin, actor, exceptions={"publisher_packages": ["com.mi.browser"]})
    assert _status(api, actor, group["id"]) == NO_INVENTORY
    # A space of another app it did not except is inventory, whether chosen by publisher or open.
    ad_space(api, admin, publisher(api, admin, app_package="com.mi.video")["id"])
    assert _status(api, actor, group["id"]) == ("eligible", "serving")


def test_exceptions_and_sizes_combine_over_every_matching_space(api: Api) -> None:
    admin, actor = _advertiser(api)
    browser = publisher(api, admin, app_package="com.mi.browser")
    video = publisher(api, admin, app_package="com.mi.video")
    excepted = ad_space(api, admin, browser["id"])
    wrong_size = ad_space(api, admin, video["id"], sizes=["300x250"])
    group = _group(api, admin, actor, exceptions={"ad_space_ids": [excepted["id"]]})
    assert _status(api, actor, group["id"]) == NO_INVENTORY
    expect(
        api.client.patch(f"/api/v1/ad-spaces/{wrong_size['id']}", headers=admin.headers, json={"sizes": ["640x100"]}),
        200,
    )
    assert _status(api, actor, group["id"]) == ("eligible", "serving")


def test_an_ad_group_whose_included_audiences_have_no_members_says_so(api: Api) -> None:
    """Inclusion matches only members: while every included audience is empty it cannot serve, and its status
    says why instead of "eligible"; one audience with members is enough."""
    from adstack.audiences import profiles
    from adstack.campaigns.status import REASONS as STATUS_REASONS
    from tests.audiences.helpers import gaids

    admin, actor = _advertiser(api)
    ad_space(api, admin, publisher(api, admin)["id"])
    body = {"name": "Gamers", "region_code": "SG", "rule": {"conditions": [
        {"kind": "installed_apps", "packages": ["com.example.game"]}]}}
    audience = expect(api.client.post("/api/v1/audiences/labels", headers=actor.headers, json=body), 201)
    assert (audience["status"], audience["size"]) == ("ready", 0)
    group = _group(api, admin, actor, include_audience_ids=[audience["id"]])
    assert _status(api, actor, group["id"]) == (
        "no_audience_members", STATUS_REASONS[ServingStatus.NO_AUDIENCE_MEMBERS])

    profiles.record_device_profile(api.session, gaid=gaids(1)[0], installed_packages=["com.example.game"],
                                   usage=None, seen_at=utcnow(), country="SG")
    api.session.commit()
    refreshed = expect(api.client.post(f"/api/v1/audiences/{audience['id']}/refresh", headers=actor.headers), 200)
    assert refreshed["size"] == 1
    assert _status(api, actor, group["id"]) == ("eligible", "serving")
