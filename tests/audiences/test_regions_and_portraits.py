"""Region clusters of label audiences (fed by the SDK's own requests) and portrait packages over
operator-written tags, with their daily auto update while an ad group using them delivers."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from adstack.audiences import label_audiences, profiles, service
from adstack.audiences.ids import device_key
from adstack.core.timeutil import utcnow
from tests.audiences.helpers import gaids, md5_hex
from tests.campaigns.helpers import ad_group, ad_space, approved_ad_group, campaign, ledger, publisher
from tests.serving.test_api import approved_creative, eventually
from tests.support import Actor, Api, expect

GAME = "com.example.game"


def _ad_request(
    api: Api, space_id: int, gaid: str, country: str, packages: list[str], usage: dict[str, int] | None = None
) -> int:
    body = {
        "ad_space_id": space_id,
        "count": 1,
        "device": {"gaid": gaid, "country": country},
        "app": {"package": "com.mi.browser", "installed_packages": packages, "usage_seconds": usage or {}},
    }
    return api.client.post("/v1/ads", json=body).status_code


def _label(
    api: Api, actor: Actor, region: str, conditions: list[dict[str, Any]], name: str, **rule: Any
) -> dict[str, Any]:
    body = {"name": name, "region_code": region, "rule": {"conditions": conditions, **rule}}
    return expect(api.client.post("/api/v1/audiences/labels", headers=actor.headers, json=body), 201)


def test_a_region_cluster_label_audience_holds_only_devices_of_its_countries(api: Api, session: Session) -> None:
    admin = api.admin()
    adv = api.approved_account(admin)
    space = ad_space(api, admin, publisher(api, admin)["id"])
    russian, indian, indonesian, kazakh = gaids(4, seed=8)
    assert eventually(lambda: _ad_request(api, space["id"], russian, "RU", [GAME]) == 200)
    assert _ad_request(api, space["id"], indian, "in", [GAME], {GAME: 600}) == 200
    assert _ad_request(api, space["id"], indonesian, "ID", [GAME]) == 200
    assert _ad_request(api, space["id"], kazakh, "KZ", [GAME]) == 200
    api.client.app.state.serving.device_profiles.flush()  # type: ignore[attr-defined]

    # An operator's CIS cluster names its countries; a cluster code that is no country stands for none.
    cis = expect(
        api.client.post(
            "/api/v1/audiences/regions",
            headers=admin.headers,
            json={"code": "CIS", "name": "CIS", "countries": ["RU", "KZ"]},
        ),
        201,
    )
    assert cis["countries"] == ["KZ", "RU"]
    sea = expect(
        api.client.post(
            "/api/v1/audiences/regions", headers=admin.headers, json={"code": "SEA", "name": "South-East Asia"}
        ),
        201,
    )
    assert sea["countries"] == []
    error = expect(
        api.client.post(
            "/api/v1/audiences/regions",
            headers=admin.headers,
            json={"code": "EU", "name": "Europe", "countries": ["de"]},
        ),
        422,
    )["error"]
    assert error["fields"][0]["field"] == "countries.0"

    installed = [{"kind": "installed_apps", "packages": [GAME]}]
    russia = _label(api, adv, "RU", installed, "Gamers RU")
    india = _label(api, adv, "IN", installed, "Gamers IN")
    cluster = _label(api, adv, "CIS", installed, "Gamers CIS")
    india_active = _label(api, adv, "IN", [{"kind": "active_in_apps", "packages": [GAME]}], "Players IN")
    assert [a["size"] for a in (russia, india, cluster, india_active)] == [1, 1, 2, 1]
    assert _label(api, adv, "SEA", installed, "Gamers SEA")["size"] == 0
    index = service.load_audience_index(session)
    assert index.contains(russia["id"], device_key(russian))
    assert not any(index.contains(russia["id"], device_key(g)) for g in (indian, indonesian, kazakh))
    assert index.contains(india["id"], device_key(indian)) and index.contains(india_active["id"], device_key(indian))
    assert {g for g in (russian, indian, indonesian, kazakh) if index.contains(cluster["id"], device_key(g))} == {
        russian,
        kazakh,
    }

    # A device that moves is counted where its latest request came from.
    assert _ad_request(api, space["id"], russian, "IN", [GAME]) == 200
    api.client.app.state.serving.device_profiles.flush()  # type: ignore[attr-defined]
    for audience, size in ((russia, 0), (india, 2)):
        refreshed = expect(api.client.post(f"/api/v1/audiences/{audience['id']}/refresh", headers=adv.headers), 200)
        assert refreshed["size"] == size


def _tags(
    api: Api, actor: Actor, tag: str, ids: list[str], *, mode: str = "add", id_type: str = "gaid", expected: int = 200
) -> Any:
    return expect(
        api.client.put(
            "/api/v1/audiences/portrait-tags",
            headers=actor.headers,
            json={"tag": tag, "ids": ids, "mode": mode, "id_type": id_type},
        ),
        expected,
    )


def _delivering_ad_group(api: Api, adv: Actor, admin: Actor, **overrides: Any) -> dict[str, Any]:
    """An ad group that serves: approved, with an approved creative, an ad space to show on and money."""
    ledger(api.session, adv.account_id, 100_000_000)
    ad_space(api, admin, publisher(api, admin)["id"])
    group = approved_ad_group(api, adv, admin, campaign(api, adv)["id"], **overrides)
    approved_creative(api, adv, admin, group["id"])
    group = expect(api.client.get(f"/api/v1/ad-groups/{group['id']}", headers=adv.headers), 200)
    assert group["serving_status"] == "eligible", group["serving_reason"]
    return group


def test_a_portrait_package_auto_updates_only_while_an_ad_group_using_it_is_delivering(
    api: Api, session: Session, session_factory: sessionmaker[Session]
) -> None:
    # Source: Mi Ads usage guide, 6.1.1, "Attention": "The portrait crowd package's auto update requires that the
    # status of the ad group is under delivering".
    admin = api.admin()
    adv = api.approved_account(admin)
    first, second = gaids(2, seed=9)
    for gaid in (first, second):
        profiles.record_device_profile(
            session, gaid=gaid, installed_packages=[], usage=None, seen_at=utcnow(), country="IN"
        )
    session.commit()
    _tags(api, admin, "interest.racing", [first])
    package = _label(api, adv, "IN", [{"kind": "portrait_tags", "tags": ["interest.racing"]}], "Racing fans")
    empty = _label(api, adv, "IN", [{"kind": "portrait_tags", "tags": ["interest.chess"]}], "Chess fans")
    assert (package["size"], empty["size"]) == (1, 0)
    _tags(api, admin, "interest.racing", [first, second], mode="replace")
    _tags(api, admin, "interest.chess", [second])
    tomorrow = utcnow() + timedelta(days=1, minutes=1)

    def sizes() -> tuple[int, int]:
        return tuple(  # type: ignore[return-value]
            expect(api.client.get(f"/api/v1/audiences/{a['id']}", headers=adv.headers), 200)["size"]
            for a in (package, empty))

    # Enabled but never submitted, then approved without a creative to show: not delivering, no update.
    camp = campaign(api, adv)
    waiting = ad_group(api, adv, camp["id"], targeting={"countries": ["IN"], "include_audience_ids": [package["id"]]})
    assert waiting["status"] == "enabled" and waiting["review_status"] == "to_be_submitted"
    assert label_audiences.refresh_due_label_audiences(session_factory, now=tomorrow) == 0
    approved = approved_ad_group(api, adv, admin, camp["id"],
                                 targeting={"countries": ["IN"], "include_audience_ids": [package["id"]]})
    assert expect(api.client.get(f"/api/v1/ad-groups/{approved['id']}", headers=adv.headers),
                  200)["serving_status"] == "no_approved_creative"
    assert label_audiences.refresh_due_label_audiences(session_factory, now=tomorrow) == 0
    assert sizes() == (1, 0)

    # Delivering: the package follows its tag. An empty package does not keep its own ad group from counting as
    # delivering (that group waits for members only the refresh brings).
    _delivering_ad_group(api, adv, admin, targeting={"countries": ["IN"], "include_audience_ids": [package["id"]]})
    starved = approved_ad_group(api, adv, admin, camp["id"],
                                targeting={"countries": ["IN"], "include_audience_ids": [empty["id"]]})
    approved_creative(api, adv, admin, starved["id"])
    assert expect(api.client.get(f"/api/v1/ad-groups/{starved['id']}", headers=adv.headers),
                  200)["serving_status"] == "no_audience_members"
    assert label_audiences.refresh_due_label_audiences(session_factory, now=tomorrow) == 2
    assert sizes() == (2, 1)


def test_portrait_packages_follow_the_tag_set_and_auto_update_only_while_delivering(
    api: Api, session: Session, session_factory: sessionmaker[Session]
) -> None:
    admin = api.admin()
    adv = api.approved_account(admin)
    racing, puzzle, both, untagged = gaids(4, seed=9)
    for gaid in (racing, puzzle, both, untagged):
        profiles.record_device_profile(
            session, gaid=gaid, installed_packages=[], usage=None, seen_at=utcnow(), country="IN"
        )
    session.commit()

    # Only operators write tags; a tenant is refused, and ids that are none of the type are counted.
    assert "error" in _tags(api, adv, "interest.racing", [racing], expected=403)
    written = _tags(api, admin, "interest.racing", [racing, both, "not-an-id"])
    assert (written["devices"], written["changed"], written["invalid_ids"]) == (2, 2, 1)
    assert _tags(api, admin, "interest.puzzle", [md5_hex(puzzle), md5_hex(both)], id_type="gaid_md5")["devices"] == 2
    error = _tags(api, admin, "interest.racing", ["x"], expected=422)["error"]
    assert (error["fields"][0]["field"], error["fields"][0]["rule"]) == ("ids", "valid_ids")
    listed = expect(api.client.get("/api/v1/audiences/portrait-tags", headers=adv.headers), 200)
    assert {row["tag"]: row["devices"] for row in listed} == {"interest.puzzle": 2, "interest.racing": 2}

    package = _label(api, adv, "IN", [{"kind": "portrait_tags", "tags": ["interest.racing"]}], "Racing fans")
    either = _label(
        api,
        adv,
        "IN",
        [{"kind": "portrait_tags", "tags": ["interest.racing", "interest.puzzle"], "match": "all"}],
        "Racing and puzzle",
        auto_update=False,
    )
    assert (package["size"], either["size"]) == (2, 1)

    # The pipeline replaces the racing set; the package follows on its daily update, but only while an ad group
    # using it is delivering, and never with auto update off.
    assert _tags(api, admin, "interest.racing", [racing, puzzle, both, untagged], mode="replace")["devices"] == 4
    tomorrow = utcnow() + timedelta(days=1, minutes=1)
    assert label_audiences.refresh_due_label_audiences(session_factory, now=tomorrow) == 0

    def size(audience: dict[str, Any]) -> int:
        return int(expect(api.client.get(f"/api/v1/audiences/{audience['id']}", headers=adv.headers), 200)["size"])

    assert size(package) == 2
    group = _delivering_ad_group(
        api, adv, admin, targeting={"countries": ["IN"], "include_audience_ids": [package["id"], either["id"]]}
    )
    assert label_audiences.refresh_due_label_audiences(session_factory, now=tomorrow) == 1
    assert (size(package), size(either)) == (4, 1)
    expect(api.client.patch(f"/api/v1/ad-groups/{group['id']}", headers=adv.headers, json={"status": "paused"}), 200)
    _tags(api, admin, "interest.racing", [untagged], mode="remove")
    assert label_audiences.refresh_due_label_audiences(
        session_factory, now=tomorrow + timedelta(days=1, minutes=1)) == 0
    assert size(package) == 4
    index = service.load_audience_index(session)
    assert index.contains(package["id"], device_key(untagged))
