"""Audiences at serving, through the SDK endpoint: a member of each uploadable id type is served, others not."""

from __future__ import annotations

import hashlib
from typing import Any

from adstack.finance.models import EntryType
from tests.audiences.helpers import gaids, id_file, md5_hex, sha256_hex, upload
from tests.campaigns.helpers import ad_space, approved_ad_group, campaign, ledger, publisher
from tests.serving.test_api import approved_creative, eventually
from tests.support import Api, expect


def _ads(api: Api, space_id: int, gaid: str | None) -> list[Any]:
    device = {"country": "ID", "os_version": "13", "model": "Redmi Note 12"}
    body = {
        "ad_space_id": space_id,
        "count": 3,
        "device": device if gaid is None else {"gaid": gaid, **device},
        "app": {"package": "com.mi.browser"},
    }
    response = api.client.post("/v1/ads", json=body)
    return [] if response.status_code == 404 else list(expect(response, 200)["ads"])


def test_members_of_raw_md5_and_sha256_audiences_are_served_and_strangers_are_not(api: Api) -> None:
    admin = api.admin()
    adv = api.approved_account(admin)
    ledger(api.session, adv.account_id, 100_000_000, EntryType.TOP_UP)
    devices = gaids(3001, seed=19)
    raw, md5, sha, stranger = devices[:1000], devices[1000:2000], devices[2000:3000], devices[3000]
    audiences = {
        "gaid": upload(api, adv, id_file(raw), name="Raw", id_type="gaid")["audience"]["id"],
        "gaid_md5": upload(api, adv, id_file(md5_hex(g).upper() for g in md5), name="MD5", id_type="gaid_md5")[
            "audience"
        ]["id"],
        "sha256": upload(api, adv, id_file(sha256_hex(g) for g in sha), name="SHA-256", id_type="sha256")["audience"][
            "id"
        ],
    }
    space = ad_space(
        api,
        admin,
        publisher(api, admin)["id"],
        placement_type="banner",
        accepted_formats=["image_640x100"],
        sizes=["640x100"],
        reserve_price_micros=100_000,
    )
    camp = campaign(api, adv)
    group_of: dict[str, int] = {}
    for id_type, audience_id in audiences.items():
        group = approved_ad_group(
            api,
            adv,
            admin,
            camp["id"],
            name=f"Audience {id_type}",
            placement_type="banner",
            bid_type="cpc",
            bid_micros=300_000,
            ad_space_ids=[space["id"]],
            targeting={"countries": ["ID"], "include_audience_ids": [audience_id]},
        )
        approved_creative(api, adv, admin, group["id"])
        group_of[id_type] = group["id"]

    def served_groups(gaid: str | None) -> set[int]:
        return {ad["ad_group_id"] for ad in _ads(api, space["id"], gaid)}

    # Each id type's members get exactly their audience's ad group, whatever form the file held them in, within
    # seconds of the upload: serving reloads the audience index once a version moves, not on a slow timer.
    assert eventually(lambda: served_groups(raw[0]) == {group_of["gaid"]}, within=5)
    assert eventually(lambda: served_groups(md5[1].upper()) == {group_of["gaid_md5"]})
    assert eventually(lambda: served_groups(sha[2]) == {group_of["sha256"]})
    assert served_groups(raw[999]) == {group_of["gaid"]}
    assert served_groups(sha[999]) == {group_of["sha256"]}
    assert served_groups(stranger) == set()
    # A request that sends its GAID MD5-hashed still matches the MD5 key space (raw and MD5 uploads).
    assert served_groups(md5_hex(raw[5])) == {group_of["gaid"]}
    assert served_groups(md5_hex(md5[5])) == {group_of["gaid_md5"]}
    assert served_groups(md5_hex(sha[5])) == set()  # SHA-256 needs the raw GAID

    # Excluding the SHA-256 audience keeps its members out of an otherwise open ad group.
    open_group = approved_ad_group(
        api,
        adv,
        admin,
        camp["id"],
        name="Everyone but SHA",
        placement_type="banner",
        bid_type="cpc",
        bid_micros=300_000,
        ad_space_ids=[space["id"]],
        targeting={"countries": ["ID"], "exclude_audience_ids": [audiences["sha256"]]},
    )
    approved_creative(api, adv, admin, open_group["id"])
    assert eventually(lambda: served_groups(stranger) == {open_group["id"]})
    assert open_group["id"] not in served_groups(sha[3])
    assert served_groups(sha[3]) == {group_of["sha256"]}
    # A device with no id audiences are keyed by (none, a zeroed GAID, a SHA-1 digest) cannot be cleared by the
    # exclusion list: the ad group is not served to it.
    for anonymous in (None, "00000000-0000-0000-0000-000000000000", hashlib.sha1(stranger.encode()).hexdigest()):
        assert served_groups(anonymous) == set(), anonymous
