"""Each eligibility rule on its own: the same ad group serves when the rule holds and not when it fails."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from adstack.audiences.bitmaps import AudienceIndex, IndexedAudience
from adstack.audiences.ids import KeySpace, device_key
from adstack.serving.request import Slot
from adstack.serving.snapshot import AccountSnap, BehaviourRule, Schedule, Spend, UsageRule
from tests.serving.support import NOW, creative, engine, group, served, snapshot, with_targeting

GAID = "38400000-8cf0-11bd-b23e-10b96e40000d"
OTHER_GAID = "11111111-2222-3333-4444-555555555555"


def serves(ad_group, **request_fields) -> bool:
    return served(engine(snapshot([ad_group])), **request_fields) == [ad_group.id]


BASE = group(1)


def _stable_id(value: object) -> str:
    """Test ids that do not depend on set iteration order (it differs between xdist workers)."""
    if isinstance(value, dict):
        return ",".join(f"{k}={_stable_id(v)}" for k, v in sorted(value.items()))
    if isinstance(value, frozenset | set):
        return "{" + ",".join(sorted(_stable_id(v) for v in value)) + "}"
    if isinstance(value, tuple | list):
        return "(" + ",".join(_stable_id(v) for v in value) + ")"
    return str(value)


@pytest.mark.parametrize(
    ("targeting", "matching", "failing"),
    [
        ({"countries": frozenset({"in"})}, {"country": "IN"}, {"country": "ID"}),
        ({"countries": frozenset({"in"})}, {"country": "IN"}, {"country": None}),
        ({"languages": frozenset({"en"})}, {"language": "en-us"}, {"language": "hi"}),
        ({"genders": frozenset({"female"})}, {"gender": "female"}, {"gender": "male"}),
        ({"genders": frozenset({"female"})}, {"gender": "female"}, {"gender": None}),
        ({"age_ranges": frozenset({"25-34"})}, {"age": 30}, {"age": 40}),
        ({"networks": frozenset({"wifi"})}, {"network": "wifi"}, {"network": "4g"}),
        ({"carriers": frozenset({"jio"})}, {"carrier": "jio"}, {"carrier": "airtel"}),
        (
            {"device_models": frozenset({"redmi note 12"})},
            {"device_model": "redmi note 12"},
            {"device_model": "poco f5"},
        ),
        ({"os_min": (11,), "os_max": (13,)}, {"os_version": (12, 1)}, {"os_version": (10, 0)}),
        ({"os_min": (11,), "os_max": (13,)}, {"os_version": (13, 5)}, {"os_version": (14,)}),
        ({"os_min": (11, 2)}, {"os_version": (11, 2)}, {"os_version": (11, 1, 9)}),
        ({"os_min": (11,)}, {"os_version": (11,)}, {"os_version": None}),
        ({"ad_space_ids": frozenset({10})}, {"ad_space_id": 10}, {"ad_space_id": 11}),
        ({"publisher_ids": frozenset({1})}, {"publisher_id": 1}, {"publisher_id": 2}),
        ({"deal_ids": frozenset({"deal-1"})}, {"deal_ids": frozenset({"deal-1"})}, {"deal_ids": frozenset()}),
        ({"deal_ids": frozenset({"deal-1"})}, {"deal_ids": frozenset({"deal-1"})}, {"deal_ids": frozenset({"deal-2"})}),
        (
            {"installed_apps": frozenset({"com.a"})},
            {"installed_packages": frozenset({"com.a", "com.z"})},
            {"installed_packages": frozenset({"com.b"})},
        ),
        (
            {"installed_apps": frozenset({"com.a"})},
            {"installed_packages": frozenset({"com.a"})},
            {"installed_packages": None},
        ),
        (
            {"not_installed_apps": frozenset({"com.a"})},
            {"installed_packages": frozenset({"com.b"})},
            {"installed_packages": frozenset({"com.a"})},
        ),
        (
            {"promoted_package": "com.p", "target_group": "not_currently_installed"},
            {"installed_packages": frozenset({"com.b"})},
            {"installed_packages": frozenset({"com.p"})},
        ),
        (
            {"promoted_package": "com.p", "target_group": "installed"},
            {"installed_packages": frozenset({"com.p"})},
            {"installed_packages": frozenset({"com.b"})},
        ),
        (
            {"usage": (UsageRule(min_minutes=30, package="com.a"),)},
            {"usage_minutes": {"com.a": 45}},
            {"usage_minutes": {"com.a": 10}},
        ),
        (
            {"behaviours": (BehaviourRule(action="installed", packages=frozenset({"com.a"})),)},
            {"installed_packages": frozenset({"com.a"})},
            {"installed_packages": frozenset({"com.b"})},
        ),
    ],
    ids=lambda value: _stable_id(value)[:48],
)
def test_targeting_rule(targeting, matching, failing) -> None:
    ad_group = with_targeting(BASE, **targeting)
    assert serves(ad_group, **matching)
    assert not serves(ad_group, **failing)


def test_placement_type_must_match() -> None:
    assert serves(group(1, placement="interstitial"))
    assert not serves(group(1, placement="banner"))


def test_private_auction_admits_only_deal_buyers() -> None:
    open_group = group(1)
    deal_group = group(2, bid_micros=200_000, targeting={"deal_ids": frozenset({"deal-1"})})
    eng = engine(snapshot([open_group, deal_group]))
    assert served(eng, deal_ids=frozenset({"deal-1"}), private_auction=True) == [2]
    assert served(eng, deal_ids=frozenset({"deal-1"}), private_auction=False) == [1]


def test_categories_come_from_the_package_table() -> None:
    categories = {"com.game.one": "game", "com.bank.one": "finance"}
    wants_games = with_targeting(BASE, installed_categories=frozenset({"game"}))
    no_banks = with_targeting(BASE, not_installed_categories=frozenset({"finance"}))
    for ad_group, matching, failing in (
        (wants_games, {"com.game.one"}, {"com.bank.one"}),
        (no_banks, {"com.game.one"}, {"com.bank.one"}),
    ):
        eng = engine(snapshot([ad_group], package_categories=categories))
        assert served(eng, installed_packages=frozenset(matching)) == [1]
        assert served(eng, installed_packages=frozenset(failing)) == []


def _audiences(members: dict[int, list[str]]) -> AudienceIndex:
    return AudienceIndex(
        [
            IndexedAudience(
                audience_id=a, version=1, key_space=KeySpace.MD5, members=frozenset(device_key(g) for g in gaids)
            )
            for a, gaids in members.items()
        ]
    )


def test_audience_include_and_exclude_with_exclusion_winning() -> None:
    index = _audiences({1: [GAID], 2: [GAID]})
    include = with_targeting(BASE, include_audiences=(1,))
    both = with_targeting(BASE, include_audiences=(1,), exclude_audiences=(2,))
    exclude = with_targeting(BASE, exclude_audiences=(2,))
    for ad_group, member, outsider in ((include, True, False), (both, False, False), (exclude, False, True)):
        eng = engine(snapshot([ad_group]), audiences=index)
        assert (served(eng, gaid=GAID, device_key=device_key(GAID)) == [1]) is member
        assert (served(eng, gaid=OTHER_GAID, device_key=device_key(OTHER_GAID)) == [1]) is outsider


def test_coppa_switches_audience_targeting_off() -> None:
    index = _audiences({1: [GAID]})
    eng = engine(snapshot([with_targeting(BASE, include_audiences=(1,))]), audiences=index)
    assert served(eng, gaid=GAID, device_key=device_key(GAID)) == [1]
    assert served(eng, gaid=GAID, device_key=device_key(GAID), use_audiences=False) == []


def test_schedule_start_and_end() -> None:
    assert serves(replace(BASE, schedule=Schedule(start=NOW - timedelta(hours=1), end=NOW + timedelta(hours=1))))
    assert not serves(replace(BASE, schedule=Schedule(start=NOW + timedelta(minutes=1))))
    assert not serves(replace(BASE, schedule=Schedule(end=NOW)))


def test_dayparting_reads_the_hour_in_the_ad_groups_zone() -> None:
    # NOW is Wednesday 12:00 UTC = Wednesday 17:30 in Kolkata: hour of week 2 * 24 + 17.
    kolkata_evening = frozenset({2 * 24 + 17})
    assert serves(replace(BASE, schedule=Schedule(time_zone="Asia/Kolkata", hours_of_week=kolkata_evening)))
    assert not serves(replace(BASE, schedule=Schedule(time_zone="UTC", hours_of_week=kolkata_evening)))


def test_cpt_serves_only_inside_its_booked_slots() -> None:
    inside = ((NOW - timedelta(hours=1), NOW + timedelta(hours=1)),)
    outside = ((NOW + timedelta(hours=1), NOW + timedelta(hours=2)),)
    assert serves(group(1, bid_type="cpt", schedule=Schedule(booked_slots=inside)))
    assert not serves(group(1, bid_type="cpt", schedule=Schedule(booked_slots=outside)))


def test_daily_budget_stops_serving_once_spent() -> None:
    # Alone above a floor of 1.00 CPM, a CPM bid clears at the floor: 1,000 micros an impression, so a
    # budget of 2,500 buys two.
    eng = engine(snapshot([group(1, daily_budget_micros=2_500, pacing="asap")]))
    assert [served(eng, floor_micros=1_000_000) for _ in range(4)] == [[1], [1], [], []]


def test_daily_budget_counts_what_the_ledger_already_charged_today() -> None:
    ad_group = group(1, daily_budget_micros=10_000, pacing="asap")
    spent = snapshot([ad_group], ledger_spend={1: Spend(today_micros=10_000, day=NOW.date())})
    assert served(engine(spent)) == []
    yesterday = snapshot([ad_group], ledger_spend={1: Spend(today_micros=10_000, day=NOW.date() - timedelta(days=1))})
    assert served(engine(yesterday)) == [1]


def test_total_budget() -> None:
    # Each impression costs 1,000 micros (see above).
    ad_group = group(1, total_budget_micros=5_000)
    assert served(
        engine(snapshot([ad_group], ledger_spend={1: Spend(total_micros=4_000)})), floor_micros=1_000_000
    ) == [1]
    assert (
        served(engine(snapshot([ad_group], ledger_spend={1: Spend(total_micros=4_500)})), floor_micros=1_000_000) == []
    )


def test_account_needs_balance_or_credit() -> None:
    assert served(engine(snapshot([BASE], accounts=[AccountSnap(1, available_micros=1_000_000)]))) == [1]
    assert served(engine(snapshot([BASE], accounts=[AccountSnap(1, available_micros=0)]))) == []
    # The account's spend may not pass what it had: charged so far plus what is available.
    tight = engine(snapshot([BASE], accounts=[AccountSnap(1, charged_micros=50_000, available_micros=1_500)]))
    assert [served(tight, floor_micros=1_000_000) for _ in range(2)] == [[1], []]


def test_frequency_cap_per_device_per_day() -> None:
    eng = engine(snapshot([group(1, frequency_cap=2)]))
    device = {"gaid": GAID, "device_key": device_key(GAID)}
    assert [served(eng, **device) for _ in range(3)] == [[1], [1], []]
    assert served(eng, gaid=OTHER_GAID, device_key=device_key(OTHER_GAID)) == [1]
    assert served(eng, now=NOW + timedelta(days=1), **device) == [1]



def test_a_frequency_capped_ad_group_is_not_served_to_a_device_it_cannot_count() -> None:
    """No id, or a zeroed one, gives no device key: a cap per device could not hold, so the ad group is not a
    candidate; an ad group without a cap still serves."""
    eng = engine(snapshot([group(1, frequency_cap=2)]))
    assert [served(eng) for _ in range(3)] == [[], [], []]
    uncapped = engine(snapshot([group(1)]))
    assert [served(uncapped) for _ in range(3)] == [[1], [1], [1]]


@pytest.mark.parametrize(
    ("slot", "fits"),
    [
        (Slot(formats=frozenset({"interstitial_image"})), True),
        (Slot(formats=frozenset({"image_640x100"})), False),
        (Slot(sizes=frozenset({(1200, 628)})), True),
        (Slot(sizes=frozenset({(300, 250)})), False),
        (Slot(media=frozenset({"video"})), False),
        (Slot(media=frozenset({"image"})), True),
    ],
)
def test_format_must_fit_the_space(slot, fits) -> None:
    assert serves(BASE, slot=slot) is fits


def test_video_duration_must_fit() -> None:
    video = group(1, creatives=(creative(1, format="interstitial_video", video=True),))
    assert serves(video, slot=Slot(media=frozenset({"video"}), max_duration_ms=30_000))
    assert not serves(video, slot=Slot(media=frozenset({"video"}), max_duration_ms=10_000))


def test_blocked_advertiser_domain() -> None:
    assert serves(BASE, blocked_domains=frozenset({"other.example.com"}))
    assert not serves(BASE, blocked_domains=frozenset({"advertiser.example.com"}))


def test_frequency_counts_survive_a_restart_through_the_saved_delivery_counters() -> None:
    """The embedded default keeps frequency in memory: saved and read back, a device that used its cap before a
    restart does not get the ad again after it; counts past their day are not read back."""
    from adstack.serving.counters import MemoryCounters

    capped = snapshot([group(1, frequency_cap=1)])
    device = {"gaid": GAID, "device_key": device_key(GAID)}
    before = engine(capped)
    assert served(before, **device) == [1]
    saved = before.counters.export_delivery()  # type: ignore[attr-defined]
    assert any(key.startswith("f:1:") for key in saved)

    counters = MemoryCounters()
    assert counters.import_delivery(saved) == len(saved)
    after = engine(capped, counters=counters)
    assert served(after, **device) == []
    assert served(after, gaid=OTHER_GAID, device_key=device_key(OTHER_GAID)) == [1]
    expired = {key: (value, 1.0) for key, (value, _) in saved.items()}  # expired long ago
    assert MemoryCounters().import_delivery(expired) == 0
