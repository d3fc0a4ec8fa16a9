from __future__ import annotations

from adstack.accounts.models import Role
from adstack.campaigns.targeting import AgeRange, Gender, Network
from adstack.inventory.population import default_populations
from tests.campaigns.helpers import ad_space, publisher
from tests.support import Api, expect


def test_admins_keep_the_catalogue_and_everyone_reads_it(api: Api) -> None:
    admin = api.admin()
    adv = api.approved_account(admin)
    body = {"name": "Mi Video", "app_package": "com.miui.video", "platform": "android", "country": "IN"}
    expect(api.client.post("/api/v1/publishers", headers=adv.headers, json=body), 403)
    expect(api.client.post("/api/v1/publishers", headers=api.admin(Role.REVIEWER).headers, json=body), 403)
    pub = expect(api.client.post("/api/v1/publishers", headers=admin.headers, json=body), 201)
    space = expect(
        api.client.post(
            "/api/v1/ad-spaces",
            headers=admin.headers,
            json={
                "publisher_id": pub["id"],
                "name": "Pre-roll",
                "placement_type": "rewarded_video",
                "accepted_formats": ["rewarded_video", "rewarded_video"],
                "reserve_price_micros": 1_500_000,
                "reserve_currency": "INR",
            },
        ),
        201,
    )
    assert space["accepted_formats"] == ["rewarded_video"] and space["status"] == "active"
    listed = expect(api.client.get("/api/v1/ad-spaces?placement_type=rewarded_video", headers=adv.headers), 200)
    assert listed["total"] == 1 and listed["items"][0]["id"] == space["id"]
    assert expect(api.client.get("/api/v1/ad-spaces?placement_type=banner", headers=adv.headers), 200)["total"] == 0
    assert expect(api.client.get("/api/v1/publishers?country=IN&q=video", headers=adv.headers), 200)["total"] == 1
    expect(api.client.patch(f"/api/v1/ad-spaces/{space['id']}", headers=adv.headers, json={"name": "x"}), 403)
    edited = expect(
        api.client.patch(
            f"/api/v1/ad-spaces/{space['id']}",
            headers=admin.headers,
            json={"status": "inactive", "sizes": ["1280x720"]},
        ),
        200,
    )
    assert edited["status"] == "inactive" and edited["sizes"] == ["1280x720"] and edited["name"] == "Pre-roll"
    # A publisher with ad spaces cannot be deleted; without, it can.
    expect(api.client.delete(f"/api/v1/publishers/{pub['id']}", headers=admin.headers), 409)
    expect(api.client.delete(f"/api/v1/ad-spaces/{space['id']}", headers=admin.headers), 204)
    expect(api.client.delete(f"/api/v1/publishers/{pub['id']}", headers=admin.headers), 204)
    expect(api.client.get(f"/api/v1/publishers/{pub['id']}", headers=adv.headers), 404)
    log = expect(api.client.get("/api/v1/operation-logs?object_type=ad_space", headers=admin.headers), 200)
    assert [e["operation"] for e in log["items"]] == ["delete", "update", "create"]
    assert {"field": "status", "old": "active", "new": "inactive"} in log["items"][1]["changes"]


def test_deleted_publishers_and_ad_spaces_keep_their_ids(api: Api) -> None:
    """Ad groups, CPT bookings and reports name ad spaces and publishers by id: a new one never takes the id of
    one deleted (SQLite would give the highest id again)."""
    admin = api.admin()
    pub = publisher(api, admin)
    space = ad_space(api, admin, pub["id"])
    expect(api.client.delete(f"/api/v1/ad-spaces/{space['id']}", headers=admin.headers), 204)
    expect(api.client.delete(f"/api/v1/publishers/{pub['id']}", headers=admin.headers), 204)
    new_pub = publisher(api, admin, name="Mi Video")
    assert new_pub["id"] > pub["id"]
    assert ad_space(api, admin, new_pub["id"])["id"] > space["id"]


def test_catalogue_input_errors_name_the_field(api: Api) -> None:
    admin = api.admin()
    out = expect(
        api.client.post(
            "/api/v1/publishers",
            headers=admin.headers,
            json={"name": "", "app_package": "not a package", "country": "Indonesia"},
        ),
        422,
    )
    assert {f["field"] for f in out["error"]["fields"]} == {"name", "app_package", "country"}
    out = expect(
        api.client.post(
            "/api/v1/ad-spaces",
            headers=admin.headers,
            json={
                "publisher_id": 424242,
                "name": "x",
                "placement_type": "banner",
                "accepted_formats": ["image_640x100"],
            },
        ),
        422,
    )
    assert out["error"]["fields"][0] == {
        "field": "publisher_id",
        "rule": "exists",
        "message": "publisher 424242 does not exist",
        "actual": 424242,
    }
    out = expect(
        api.client.post(
            "/api/v1/ad-spaces",
            headers=admin.headers,
            json={
                "publisher_id": 1,
                "name": "x",
                "placement_type": "billboard",
                "accepted_formats": [],
                "sizes": ["big"],
                "reserve_price_micros": -1,
            },
        ),
        422,
    )
    assert {f["field"] for f in out["error"]["fields"]} == {
        "placement_type",
        "accepted_formats",
        "sizes.0",
        "reserve_price_micros",
    }


def test_device_population_is_seeded_and_editable(api: Api) -> None:
    admin = api.admin()
    adv = api.approved_account(admin)
    rows = expect(api.client.get("/api/v1/device-populations", headers=adv.headers), 200)
    assert [r["country"] for r in rows] == sorted(p.country for p in default_populations())
    india = expect(api.client.get("/api/v1/device-populations/IN", headers=adv.headers), 200)
    assert india["daily_active_devices"] > 0 and set(india["impressions_per_device"]) >= {"banner", "push"}
    out = expect(
        api.client.put(
            "/api/v1/device-populations/IN",
            headers=admin.headers,
            json={"daily_active_devices": 10, "shares": {"gender": {"male": 0.7, "female": 0.6}}},
        ),
        422,
    )
    assert out["error"]["fields"][0]["field"] == "shares"
    out = expect(
        api.client.put(
            "/api/v1/device-populations/IN",
            headers=admin.headers,
            json={"daily_active_devices": 10, "shares": {"shoe_size": {"42": 0.1}}},
        ),
        422,
    )
    assert out["error"]["fields"][0]["field"].startswith("shares.shoe_size")
    expect(
        api.client.put(
            "/api/v1/device-populations/IN",
            headers=admin.headers,
            json={"daily_active_devices": 10, "shares": {"gender": {"male": 0.5}}},
        ),
        200,
    )
    assert expect(api.client.get("/api/v1/device-populations/IN", headers=adv.headers), 200)["shares"] == {
        "gender": {"male": 0.5}
    }
    expect(api.client.delete("/api/v1/device-populations/IN", headers=admin.headers), 204)
    expect(api.client.get("/api/v1/device-populations/IN", headers=adv.headers), 404)
    expect(api.client.get("/api/v1/device-populations/india", headers=adv.headers), 422)


def test_default_population_speaks_the_targeting_vocabulary() -> None:
    """The seeded shares use the same values targeting offers, so estimates of seeded data are not zero."""
    for population in default_populations():
        assert set(population.shares["gender"]) == {g.value for g in Gender}
        assert set(population.shares["age_range"]) == {a.value for a in AgeRange}
        assert set(population.shares["network"]) <= {n.value for n in Network}
        for values in population.shares.values():
            assert sum(values.values()) <= 1.0001
