from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adstack.core.errors import InvalidState
from adstack.core.timeutil import zone
from adstack.review.models import ReviewAction, ReviewStatus
from adstack.review.service import expected_review_at, next_status

BEIJING = zone("Asia/Shanghai")


def bj(*args: int) -> datetime:
    return datetime(*args, tzinfo=BEIJING)


@pytest.mark.parametrize(
    ("submitted", "expected"),
    [
        (bj(2026, 11, 16, 9, 0), bj(2026, 11, 16, 18, 30)),  # Monday morning: same day
        (bj(2026, 11, 16, 18, 29), bj(2026, 11, 16, 18, 30)),
        (bj(2026, 11, 16, 18, 30), bj(2026, 11, 17, 18, 30)),  # at the deadline: next working day
        (bj(2026, 11, 20, 19, 0), bj(2026, 11, 23, 18, 30)),  # Friday evening: Monday
        (bj(2026, 11, 21, 10, 0), bj(2026, 11, 23, 18, 30)),  # Saturday: Monday
        (bj(2026, 11, 22, 23, 59), bj(2026, 11, 23, 18, 30)),  # Sunday night: Monday
    ],
)
def test_review_calendar(submitted: datetime, expected: datetime) -> None:
    assert expected_review_at(submitted) == expected.astimezone(UTC)


# No per-example deadline: timing is not what this checks, and the suite runs on busy machines.
@settings(deadline=None)
@given(st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)))
def test_review_deadline_is_a_weekday_1830_within_four_days(submitted: datetime) -> None:
    due = expected_review_at(submitted).astimezone(BEIJING)
    assert due.weekday() < 5 and (due.hour, due.minute) == (18, 30)
    assert submitted < due and (due - submitted).days <= 3


def test_state_machine() -> None:
    assert next_status(ReviewStatus.TO_BE_SUBMITTED, ReviewAction.SUBMIT) == ReviewStatus.UNDER_REVIEW
    assert next_status(ReviewStatus.UNDER_REVIEW, ReviewAction.REJECT) == ReviewStatus.REJECTED
    assert next_status(ReviewStatus.REJECTED, ReviewAction.SUBMIT) == ReviewStatus.UNDER_REVIEW
    assert next_status(ReviewStatus.APPROVED, ReviewAction.EDIT_REVIEWED_FIELD) == ReviewStatus.UNDER_REVIEW
    with pytest.raises(InvalidState):
        next_status(ReviewStatus.TO_BE_SUBMITTED, ReviewAction.APPROVE)
    with pytest.raises(InvalidState):
        next_status(ReviewStatus.APPROVED, ReviewAction.SUBMIT)


def test_deleting_objects_under_review_withdraws_them_from_the_queue(api) -> None:  # type: ignore[no-untyped-def]
    from tests.support import expect

    admin = api.admin()
    adv = api.approved_account(admin)
    campaign = expect(
        api.client.post(
            "/api/v1/campaigns",
            headers=adv.headers,
            json={
                "objective": "performance",
                "name": "Withdrawn",
                "promotion_type": "app_download",
                "package_name": "com.example.withdrawn",
            },
        ),
        201,
    )
    ad_group = expect(
        api.client.post(
            "/api/v1/ad-groups",
            headers=adv.headers,
            json={
                "campaign_id": campaign["id"],
                "name": "g",
                "placement_type": "banner",
                "bid_type": "cpc",
                "bid_micros": 100_000,
            },
        ),
        201,
    )
    expect(api.client.post(f"/api/v1/ad-groups/{ad_group['id']}/submit", headers=adv.headers), 200)
    queued = {
        (i["object_type"], i["object_id"])
        for i in expect(api.client.get("/api/v1/review/queue", headers=admin.headers), 200)
    }
    assert ("ad_group", ad_group["id"]) in queued
    expect(api.client.delete(f"/api/v1/ad-groups/{ad_group['id']}", headers=adv.headers), 200)
    queued = {
        (i["object_type"], i["object_id"])
        for i in expect(api.client.get("/api/v1/review/queue", headers=admin.headers), 200)
    }
    assert ("ad_group", ad_group["id"]) not in queued
