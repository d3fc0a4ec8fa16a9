"""The serving-status rules as pure functions: precedence, budgets and schedules in the ad group's zone."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from adstack.campaigns.enums import BidType, ServingStatus, UserStatus
from adstack.campaigns.status import (
    NO_CREATIVE,
    REASONS,
    ScheduleFacts,
    ServingFacts,
    campaign_serving_status,
    derive_serving_status,
    local_midnight_utc,
    out_of_schedule_reason,
)
from adstack.finance.models import EntryType
from adstack.review.models import ReviewStatus
from tests.campaigns.helpers import ad_space, approved_ad_group, campaign, ledger, publisher
from tests.media.samples import png
from tests.serving.test_api import ads_now, approved_creative, eventually
from tests.support import Actor, Api, expect

NOW = datetime(2025, 6, 11, 12, 0, tzinfo=UTC)  # a Wednesday

SERVING = ServingFacts(
    status=UserStatus.ENABLED,
    campaign_status=UserStatus.ENABLED,
    account_review_status=ReviewStatus.APPROVED,
    review_status=ReviewStatus.APPROVED,
    available_micros=1_000_000,
    total_spend_micros=0,
    spend_today_micros=0,
    schedule=ScheduleFacts(time_zone="UTC", start_at=NOW - timedelta(days=1)),
    now=NOW,
    total_budget_micros=10_000_000,
    daily_budget_micros=1_000_000,
    creatives=1,
    approved_creatives=1,
    inventory_spaces=3,
)

# Each problem, applied to an otherwise serving ad group, and the status it must produce alone.
PROBLEMS: dict[ServingStatus, dict[str, object]] = {
    ServingStatus.DELETED: {"status": UserStatus.DELETED},
    ServingStatus.PAUSED: {"status": UserStatus.PAUSED},
    ServingStatus.CAMPAIGN_PAUSED: {"campaign_status": UserStatus.PAUSED},
    ServingStatus.ACCOUNT_UNDER_REVIEW: {"account_review_status": ReviewStatus.UNDER_REVIEW},
    ServingStatus.REJECTED: {"review_status": ReviewStatus.REJECTED},
    ServingStatus.CREATIVES_UNDER_REVIEW: {"approved_creatives": 0, "creatives_under_review": 1},
    ServingStatus.NO_APPROVED_CREATIVE: {"approved_creatives": 0},
    ServingStatus.NO_INVENTORY: {"inventory_spaces": 0},
    ServingStatus.BALANCE_INSUFFICIENT: {"available_micros": 0},
    ServingStatus.BUDGET_EXHAUSTED: {"total_spend_micros": 10_000_000},
    ServingStatus.DAILY_BUDGET_EXHAUSTED: {"spend_today_micros": 1_000_000},
    ServingStatus.OUT_OF_SCHEDULE: {"schedule": ScheduleFacts(time_zone="UTC", start_at=NOW + timedelta(hours=1))},
}
ORDER = list(PROBLEMS)


def test_a_healthy_ad_group_is_eligible() -> None:
    assert derive_serving_status(SERVING) == (ServingStatus.ELIGIBLE, "serving")


def test_each_problem_alone_gives_its_own_status() -> None:
    for expected, change in PROBLEMS.items():
        assert derive_serving_status(replace(SERVING, **change))[0] == expected  # type: ignore[arg-type]


# Deleted and paused are two values of the same user status, so never both at once.
@given(
    st.sets(st.sampled_from(ORDER), min_size=1).filter(lambda s: not {ServingStatus.DELETED, ServingStatus.PAUSED} <= s)
)
def test_the_first_problem_in_precedence_order_wins(problems: set[ServingStatus]) -> None:
    facts = SERVING
    for problem in problems:
        facts = replace(facts, **PROBLEMS[problem])  # type: ignore[arg-type]
    expected = min(problems, key=ORDER.index)
    assert derive_serving_status(facts)[0] == expected


@given(
    st.sampled_from([ReviewStatus.TO_BE_SUBMITTED, ReviewStatus.UNDER_REVIEW]),
    st.integers(min_value=-(10**12), max_value=0),
)
def test_review_comes_before_money(review_status: ReviewStatus, available: int) -> None:
    facts = replace(SERVING, review_status=review_status, available_micros=available)
    assert derive_serving_status(facts)[0] == ServingStatus(review_status.value)


@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=1, max_value=10**12))
def test_daily_budget_stops_exactly_at_the_budget(spent: int, budget: int) -> None:
    facts = replace(SERVING, spend_today_micros=spent, daily_budget_micros=budget, total_budget_micros=None)
    stopped = derive_serving_status(facts)[0] == ServingStatus.DAILY_BUDGET_EXHAUSTED
    assert stopped == (spent >= budget)


def test_dayparting_is_read_in_the_ad_groups_zone() -> None:
    # Serve only Wednesday 09:00-10:00 in Jakarta (UTC+7) = Wednesday 02:00-03:00 UTC.
    grid = [[False] * 24 for _ in range(7)]
    grid[2][9] = True
    schedule = ScheduleFacts(time_zone="Asia/Jakarta", start_at=NOW - timedelta(days=30), dayparting=grid)
    assert out_of_schedule_reason(schedule, datetime(2025, 6, 11, 2, 30, tzinfo=UTC)) is None
    reason = out_of_schedule_reason(schedule, datetime(2025, 6, 11, 9, 30, tzinfo=UTC))
    assert reason is not None and "Wednesday 16:00" in reason
    # Tuesday 19:30 in Los Angeles (UTC-7 in June) is already Wednesday 02:30 UTC; the zone decides.
    west = ScheduleFacts(time_zone="America/Los_Angeles", start_at=NOW - timedelta(days=30), dayparting=grid)
    assert out_of_schedule_reason(west, datetime(2025, 6, 11, 2, 30, tzinfo=UTC)) is not None
    assert out_of_schedule_reason(west, datetime(2025, 6, 11, 16, 30, tzinfo=UTC)) is None


def test_start_end_and_cpt_slots() -> None:
    schedule = ScheduleFacts(time_zone="UTC", start_at=NOW, end_at=NOW + timedelta(days=1))
    assert out_of_schedule_reason(schedule, NOW - timedelta(seconds=1)) is not None
    assert out_of_schedule_reason(schedule, NOW) is None
    assert out_of_schedule_reason(schedule, NOW + timedelta(days=1)) is not None
    slot = (NOW + timedelta(hours=1), NOW + timedelta(hours=2))
    cpt = replace(schedule, bid_type=BidType.CPT, booked_slots=[slot])
    assert out_of_schedule_reason(cpt, NOW) == "outside the booked CPT slots"
    assert out_of_schedule_reason(cpt, NOW + timedelta(hours=1, minutes=5)) is None


def test_daily_budget_resets_at_local_midnight() -> None:
    # 20:00 UTC on 10 June is 03:00 on 11 June in Jakarta: the day started at 17:00 UTC.
    assert local_midnight_utc(datetime(2025, 6, 10, 20, 0, tzinfo=UTC), "Asia/Jakarta") == datetime(
        2025, 6, 10, 17, 0, tzinfo=UTC
    )
    assert local_midnight_utc(datetime(2025, 6, 10, 20, 0, tzinfo=UTC), "America/New_York") == datetime(
        2025, 6, 10, 4, 0, tzinfo=UTC
    )


def test_campaign_status_summarises_its_ad_groups() -> None:
    approved = ReviewStatus.APPROVED
    assert campaign_serving_status(UserStatus.PAUSED, approved, [ServingStatus.ELIGIBLE])[0] == ServingStatus.PAUSED
    assert campaign_serving_status(UserStatus.ENABLED, ReviewStatus.UNDER_REVIEW, [ServingStatus.ELIGIBLE])[0] == (
        ServingStatus.ACCOUNT_UNDER_REVIEW
    )
    assert campaign_serving_status(UserStatus.ENABLED, approved, [])[0] == ServingStatus.NO_ACTIVE_AD_GROUPS
    status, reason = campaign_serving_status(
        UserStatus.ENABLED, approved, [ServingStatus.REJECTED, ServingStatus.ELIGIBLE]
    )
    assert status == ServingStatus.ELIGIBLE and reason == "1 of 2 ad groups serving"
    assert campaign_serving_status(
        UserStatus.ENABLED, approved, [ServingStatus.REJECTED, ServingStatus.OUT_OF_SCHEDULE]
    )[0] == (ServingStatus.OUT_OF_SCHEDULE)


# ---------- through the API: what serving would really do ----------


def _advertiser(api: Api) -> tuple[Actor, Actor]:
    admin = api.admin()
    actor = api.approved_account(admin)
    ledger(api.session, actor.account_id, 100_000_000, EntryType.TOP_UP)
    return admin, actor


def _status(api: Api, actor: Actor, group_id: int) -> tuple[str, str]:
    read = expect(api.client.get(f"/api/v1/ad-groups/{group_id}", headers=actor.headers), 200)
    return read["serving_status"], read["serving_reason"]


def test_an_ad_group_serves_only_with_an_approved_creative(api: Api) -> None:
    admin, actor = _advertiser(api)
    space = ad_space(api, admin, publisher(api, admin)["id"])
    group = approved_ad_group(api, actor, admin, campaign(api, actor)["id"], ad_space_ids=[space["id"]])
    assert _status(api, actor, group["id"]) == ("no_approved_creative", NO_CREATIVE)

    media = expect(
        api.client.post("/api/v1/media", headers=actor.headers, files={"file": ("banner.png", png(640, 100))}), 201
    )
    creative = expect(
        api.client.post(
            "/api/v1/creatives",
            headers=actor.headers,
            json={
                "ad_group_id": group["id"],
                "name": "Home banner",
                "format": "image_640x100",
                "materials": {"images": [media["id"]]},
                "click_url": "https://example.com/app",
            },
        ),
        201,
    )
    assert _status(api, actor, group["id"]) == (
        "no_approved_creative",
        REASONS[ServingStatus.NO_APPROVED_CREATIVE],
    )  # not submitted
    expect(api.client.post(f"/api/v1/creatives/{creative['id']}/submit", headers=actor.headers), 200)
    assert _status(api, actor, group["id"]) == ("creatives_under_review", REASONS[ServingStatus.CREATIVES_UNDER_REVIEW])
    listed = expect(
        api.client.get("/api/v1/ad-groups", headers=actor.headers, params={"serving_status": "creatives_under_review"}),
        200,
    )
    assert [g["id"] for g in listed["items"]] == [group["id"]]

    expect(
        api.client.post(
            f"/api/v1/creatives/{creative['id']}/review", headers=admin.headers, json={"decision": "approve"}
        ),
        200,
    )
    assert _status(api, actor, group["id"]) == ("eligible", "serving")


def test_an_ad_group_with_no_ad_space_to_show_on_reads_no_inventory(api: Api) -> None:
    admin, actor = _advertiser(api)
    chosen = publisher(api, admin, name="Mi Video")
    banner = ad_space(api, admin, chosen["id"])
    ad_space(api, admin, publisher(api, admin)["id"])  # a banner space, at a publisher it did not choose
    group = approved_ad_group(api, actor, admin, campaign(api, actor)["id"], publisher_ids=[chosen["id"]])
    approved_creative(api, actor, admin, group["id"])
    assert _status(api, actor, group["id"]) == ("eligible", "serving")

    expect(
        api.client.patch(f"/api/v1/ad-spaces/{banner['id']}", headers=admin.headers, json={"status": "inactive"}), 200
    )
    assert _status(api, actor, group["id"]) == ("no_inventory", REASONS[ServingStatus.NO_INVENTORY])
    picky = ad_space(api, admin, chosen["id"], accepted_formats=["interstitial_image"])
    assert _status(api, actor, group["id"])[0] == "no_inventory"  # a banner space that refuses its format
    expect(
        api.client.patch(
            f"/api/v1/ad-spaces/{picky['id']}", headers=admin.headers, json={"accepted_formats": ["image_640x100"]}
        ),
        200,
    )
    assert _status(api, actor, group["id"]) == ("eligible", "serving")


def test_an_ad_group_whose_budget_is_held_by_served_ads_reads_reserved(api: Api) -> None:
    admin, actor = _advertiser(api)
    space = ad_space(api, admin, publisher(api, admin)["id"])
    group = approved_ad_group(
        api,
        actor,
        admin,
        campaign(api, actor)["id"],
        bid_micros=300_000,
        ad_space_ids=[space["id"]],
        daily_budget_micros=50_000,
        pacing="asap",
    )
    approved_creative(api, actor, admin, group["id"])
    assert _status(api, actor, group["id"]) == ("eligible", "serving")
    assert eventually(lambda: bool(ads_now(api.client, space["id"])))
    served = 1
    while served < 2_000 and ads_now(api.client, space["id"]):  # fetched by an SDK, not shown yet
        served += 1
    status, reason = _status(api, actor, group["id"])
    assert status == "daily_budget_reserved" and "held by ads served" in reason
