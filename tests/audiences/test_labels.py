"""Label audiences: conditions over the device profile store, materialised on creation, on demand and on
the daily schedule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from adstack.audiences import label_audiences, profiles, service
from adstack.audiences.ids import device_key, to_signed
from adstack.audiences.labels import LabelRule
from adstack.audiences.models import DeviceApp, DeviceProfile
from adstack.core.timeutil import utcnow
from tests.audiences.helpers import gaids
from tests.support import Actor, Api, expect

GAME = "com.example.game"
RIVAL = "com.rival.game"


def _label(
    api: Api,
    actor: Actor,
    conditions: list[dict[str, object]],
    name: str = "Gamers",
    expected: int = 201,
    **extra: object,
) -> dict[str, object]:
    body = {"name": name, "region_code": "IN", "rule": {"conditions": conditions, **extra}}
    return expect(api.client.post("/api/v1/audiences/labels", headers=actor.headers, json=body), expected)


def _record(
    session: Session,
    gaid: str,
    packages: list[str],
    usage: dict[str, int] | None = None,
    seen_at: datetime | None = None,
    country: str | None = "IN",
) -> None:
    profiles.record_device_profile(
        session, gaid=gaid, installed_packages=packages, usage=usage, seen_at=seen_at or utcnow(), country=country
    )
    session.commit()


def test_a_label_audience_picks_up_a_device_after_its_next_refresh(api: Api, session: Session) -> None:
    adv = api.approved_account()
    device, other = gaids(2)
    _record(session, other, ["com.whatsapp"])
    audience = _label(api, adv, [{"kind": "installed_apps", "packages": [GAME]}])
    assert (audience["status"], audience["size"]) == ("ready", 0)

    _record(session, device, [GAME, "com.whatsapp"])
    index = service.load_audience_index(session)
    assert not index.contains(audience["id"], device_key(device))  # materialised, not live

    refreshed = expect(api.client.post(f"/api/v1/audiences/{audience['id']}/refresh", headers=adv.headers), 200)
    assert refreshed["size"] == 1 and refreshed["version"] == audience["version"] + 1
    index = service.load_audience_index(session, previous=index)
    assert index.contains(audience["id"], device_key(device))
    assert not index.contains(audience["id"], device_key(other))

    # A later full report without the game means it was uninstalled.
    _record(session, device, ["com.whatsapp"])
    refreshed = expect(api.client.post(f"/api/v1/audiences/{audience['id']}/refresh", headers=adv.headers), 200)
    assert refreshed["size"] == 0


def test_conditions_over_apps_categories_behaviour_and_usage(session: Session) -> None:
    heavy, light, idle, social, stale = gaids(5, seed=3)
    now = utcnow()
    _record(session, heavy, [GAME, "com.dts.freefireth"], {GAME: 3000}, seen_at=now - timedelta(days=2))
    _record(session, heavy, [GAME, "com.dts.freefireth"], {GAME: 1000}, seen_at=now)
    _record(session, light, [GAME], {GAME: 120}, seen_at=now)
    _record(session, idle, [GAME, RIVAL], seen_at=now)
    _record(session, social, ["com.facebook.katana"], {"com.facebook.katana": 900}, seen_at=now)
    _record(session, stale, [GAME], {GAME: 5000}, seen_at=now - timedelta(days=60))

    def members(conditions: list[dict[str, object]], **extra: object) -> set[str]:
        rule = LabelRule.model_validate({"conditions": conditions, **extra})
        keys = label_audiences.materialise(session, rule, now=now)
        return {g for g in (heavy, light, idle, social, stale) if device_key(g) in keys}

    assert members([{"kind": "installed_apps", "packages": [GAME]}]) == {heavy, light, idle}
    assert members([{"kind": "installed_apps", "packages": [GAME, RIVAL], "match": "all"}]) == {idle}
    assert members(
        [{"kind": "installed_apps", "packages": [GAME]}, {"kind": "not_installed_apps", "packages": [RIVAL]}]
    ) == {heavy, light}
    assert members([{"kind": "installed_categories", "categories": ["games"]}]) == {heavy}
    assert members([{"kind": "not_installed_categories", "categories": ["games", "social"]}]) == {light, idle}
    assert members([{"kind": "active_in_apps", "packages": [GAME], "within_days": 1}]) == {heavy, light}
    assert members([{"kind": "usage_time", "package": GAME, "within_days": 7, "min_seconds": 3600}]) == {heavy}
    assert members([{"kind": "usage_time", "package": GAME, "within_days": 1, "min_seconds": 3600}]) == set()
    assert members([{"kind": "usage_time", "package": GAME, "within_days": 7, "max_seconds": 600}]) == {
        light,
        idle,
        social,
    }
    assert members([{"kind": "usage_time", "category": "social", "min_seconds": 60}]) == {social}
    # App behaviours by categories: used an app of the category within the window (installed is not enough:
    # heavy has a "games" app installed but reported no use of it).
    assert members([{"kind": "active_in_categories", "categories": ["games"], "within_days": 7}]) == set()
    assert members([{"kind": "active_in_categories", "categories": ["social", "games"]}]) == {social}
    assert members([{"kind": "active_in_categories", "categories": ["social"], "within_days": 1}]) == {social}
    assert members([{"kind": "active_in_categories", "categories": ["video"]}]) == set()
    assert members([{"kind": "installed_apps", "packages": [GAME]}], seen_within_days=90) == {heavy, light, idle, stale}


def test_editing_the_rule_rebuilds_and_bad_rules_name_the_field(api: Api, session: Session) -> None:
    adv = api.approved_account()
    device = gaids(1)[0]
    _record(session, device, [RIVAL])
    audience = _label(api, adv, [{"kind": "installed_apps", "packages": [GAME]}])
    edited = expect(
        api.client.patch(
            f"/api/v1/audiences/{audience['id']}",
            headers=adv.headers,
            json={"rule": {"conditions": [{"kind": "installed_apps", "packages": [RIVAL]}]}},
        ),
        200,
    )
    assert edited["size"] == 1
    error = _label(api, adv, [{"kind": "usage_time", "package": GAME}], name="Bad", expected=422)["error"]
    assert error["fields"][0]["field"].startswith("rule.conditions.0")
    error = _label(api, adv, [{"kind": "installed_apps", "packages": ["not a package"]}], name="Bad", expected=422)[
        "error"
    ]
    assert error["fields"][0]["rule"] == "string_pattern_mismatch"
    error = expect(
        api.client.post(f"/api/v1/audiences/{audience['id']}/upload", headers=adv.headers, content=b"x"), 409
    )["error"]
    assert error["code"] == "invalid_state"


def test_the_daily_schedule_refreshes_only_stale_label_audiences(
    api: Api, session: Session, session_factory: sessionmaker[Session]
) -> None:
    adv = api.approved_account()
    device = gaids(1)[0]
    audience = _label(api, adv, [{"kind": "installed_apps", "packages": [GAME]}])
    _record(session, device, [GAME])
    assert label_audiences.refresh_due_label_audiences(session_factory) == 0  # refreshed moments ago
    later = utcnow() + timedelta(days=1, minutes=1)
    assert label_audiences.refresh_due_label_audiences(session_factory, now=later) == 1
    fetched = expect(api.client.get(f"/api/v1/audiences/{audience['id']}", headers=adv.headers), 200)
    assert fetched["size"] == 1


def test_the_profile_store_buffers_until_flushed(
    api: Api, session: Session, session_factory: sessionmaker[Session]
) -> None:
    store = profiles.DeviceProfileStore(session_factory)
    device = gaids(1)[0]
    seen = datetime(2025, 3, 1, 12, tzinfo=UTC)
    for minute in range(3):
        profiles.record_device_profile(
            store,
            gaid=device,
            installed_packages=[GAME, "bad package!"],
            usage={GAME: 60},
            seen_at=seen + timedelta(minutes=minute),
        )
    key = to_signed(device_key(device))
    assert session.get(DeviceProfile, key) is None and len(store) == 1
    assert store.flush() == 1
    profile = session.get(DeviceProfile, key)
    assert profile is not None and profile.last_seen_at == seen + timedelta(minutes=2)
    assert list(session.scalars(select(DeviceApp.package).where(DeviceApp.device_key == key))) == [GAME]
    assert device.encode() not in repr(profile.__dict__).encode()
