"""The review state machine, the review calendar and the admin queue.

The state machine and calendar are pure functions; the queue and history are tables.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from adstack.core.errors import InvalidState
from adstack.core.timeutil import as_utc, utcnow, zone
from adstack.review.models import ReviewAction, ReviewItem, ReviewRecord, ReviewStatus

REVIEW_TIME_ZONE = "Asia/Shanghai"
REVIEW_DEADLINE = time(18, 30)
WORKING_DAYS = frozenset(range(5))  # Monday..Friday

_TRANSITIONS: dict[tuple[ReviewStatus, ReviewAction], ReviewStatus] = {
    (ReviewStatus.TO_BE_SUBMITTED, ReviewAction.SUBMIT): ReviewStatus.UNDER_REVIEW,
    (ReviewStatus.REJECTED, ReviewAction.SUBMIT): ReviewStatus.UNDER_REVIEW,
    (ReviewStatus.UNDER_REVIEW, ReviewAction.APPROVE): ReviewStatus.APPROVED,
    (ReviewStatus.UNDER_REVIEW, ReviewAction.REJECT): ReviewStatus.REJECTED,
    # Changing a reviewed field of an approved object sends it straight back to the queue.
    (ReviewStatus.APPROVED, ReviewAction.EDIT_REVIEWED_FIELD): ReviewStatus.UNDER_REVIEW,
    (ReviewStatus.UNDER_REVIEW, ReviewAction.EDIT_REVIEWED_FIELD): ReviewStatus.UNDER_REVIEW,
    # A rejected object that is edited stays rejected until the user resubmits it.
    (ReviewStatus.REJECTED, ReviewAction.EDIT_REVIEWED_FIELD): ReviewStatus.REJECTED,
    (ReviewStatus.TO_BE_SUBMITTED, ReviewAction.EDIT_REVIEWED_FIELD): ReviewStatus.TO_BE_SUBMITTED,
    # A reviewer takes an approved object down; only a reviewer puts it back. Edits do not lift it.
    (ReviewStatus.APPROVED, ReviewAction.SUSPEND): ReviewStatus.SUSPENDED,
    (ReviewStatus.SUSPENDED, ReviewAction.LIFT_SUSPENSION): ReviewStatus.APPROVED,
    (ReviewStatus.SUSPENDED, ReviewAction.EDIT_REVIEWED_FIELD): ReviewStatus.SUSPENDED,
}


def next_status(current: ReviewStatus | str, action: ReviewAction) -> ReviewStatus:
    """Pure transition function; raises InvalidState for a move the workflow does not allow."""
    state = ReviewStatus(current)
    try:
        return _TRANSITIONS[(state, action)]
    except KeyError:
        raise InvalidState(f"cannot {action.value.replace('_', ' ')} an object that is {state.value}") from None


def expected_review_at(submitted_at: datetime) -> datetime:
    """Reviews run Monday-Friday; work submitted on a working day before 18:30 Beijing time is reviewed
    by 18:30 that day, anything later by 18:30 on the next working day. Returned in UTC."""
    tz = zone(REVIEW_TIME_ZONE)
    local = as_utc(submitted_at).astimezone(tz)
    day = local.date()
    if local.weekday() not in WORKING_DAYS or local.time() >= REVIEW_DEADLINE:
        day += timedelta(days=1)
    while day.weekday() not in WORKING_DAYS:
        day += timedelta(days=1)
    return as_utc(datetime.combine(day, REVIEW_DEADLINE, tzinfo=tz))


def _item(session: Session, object_type: str, object_id: int) -> ReviewItem | None:
    return session.scalar(
        select(ReviewItem).where(ReviewItem.object_type == object_type, ReviewItem.object_id == object_id)
    )


def track(
    session: Session,
    *,
    object_type: str,
    object_id: int,
    account_id: int | None,
    object_name: str,
    status: ReviewStatus,
    now: datetime | None = None,
) -> ReviewItem:
    """Keep the queue row of an object in step with its review status."""
    moment = now or utcnow()
    item = _item(session, object_type, object_id)
    if item is None:
        item = ReviewItem(object_type=object_type, object_id=object_id)
        session.add(item)
    item.account_id = account_id
    item.object_name = object_name
    if status == ReviewStatus.UNDER_REVIEW and item.status != ReviewStatus.UNDER_REVIEW:
        item.submitted_at = moment
        item.expected_review_at = expected_review_at(moment)
    if status in (ReviewStatus.APPROVED, ReviewStatus.REJECTED, ReviewStatus.SUSPENDED):
        item.decided_at = moment
    item.status = status
    return item


def apply(
    session: Session,
    *,
    object_type: str,
    object_id: int,
    account_id: int | None,
    object_name: str,
    current: ReviewStatus | str,
    action: ReviewAction,
    actor_user_id: int | None,
    reasons: list[str] | None = None,
    now: datetime | None = None,
) -> ReviewStatus:
    """Move an object through the workflow, updating the queue and appending to the history."""
    new_status = next_status(current, action)
    moment = now or utcnow()
    track(
        session,
        object_type=object_type,
        object_id=object_id,
        account_id=account_id,
        object_name=object_name,
        status=new_status,
        now=moment,
    )
    record = ReviewRecord(
        object_type=object_type,
        object_id=object_id,
        account_id=account_id,
        action=action.value,
        reasons=[r.strip() for r in reasons or [] if r.strip()],
        actor_user_id=actor_user_id,
        created_at=moment,
    )
    session.add(record)
    if action in _TOLD:
        from adstack.notifications import service as notifications  # notifications build on accounts

        session.flush()
        notifications.emit_review_result(session, action=action.value, object_type=object_type, object_id=object_id,
                                         object_name=object_name, account_id=account_id, reasons=record.reasons,
                                         record_id=record.id)
    return new_status


# Decisions the account hears about (the guide's review result by e-mail, 1.3 "Account Review").
_TOLD = frozenset({ReviewAction.APPROVE, ReviewAction.REJECT, ReviewAction.SUSPEND, ReviewAction.LIFT_SUSPENSION})


def withdraw(session: Session, *, object_type: str, object_id: int) -> None:
    """A deleted object leaves the queue; its history stays."""
    item = _item(session, object_type, object_id)
    if item is not None:
        session.delete(item)


def expected_review_time_of(session: Session, object_type: str, object_id: int) -> datetime | None:
    item = _item(session, object_type, object_id)
    if item is None or item.status != ReviewStatus.UNDER_REVIEW:
        return None
    return item.expected_review_at


def queue(
    session: Session, *, object_type: str | None = None, limit: int = 100, offset: int = 0
) -> list[ReviewItem]:
    """Work waiting for a reviewer, oldest submission first."""
    stmt = select(ReviewItem).where(ReviewItem.status == ReviewStatus.UNDER_REVIEW)
    if object_type:
        stmt = stmt.where(ReviewItem.object_type == object_type)
    stmt = stmt.order_by(ReviewItem.submitted_at, ReviewItem.id).limit(limit).offset(offset)
    return list(session.scalars(stmt))


def suspended(session: Session, *, limit: int = 100) -> list[ReviewItem]:
    """Objects a reviewer has taken down, most recent first."""
    stmt = select(ReviewItem).where(ReviewItem.status == ReviewStatus.SUSPENDED)
    return list(session.scalars(stmt.order_by(ReviewItem.decided_at.desc(), ReviewItem.id.desc()).limit(limit)))


def history(session: Session, object_type: str, object_id: int) -> list[ReviewRecord]:
    stmt = (
        select(ReviewRecord)
        .where(ReviewRecord.object_type == object_type, ReviewRecord.object_id == object_id)
        .order_by(ReviewRecord.created_at, ReviewRecord.id)
    )
    return list(session.scalars(stmt))


def rejections(session: Session, *, account_ids: set[int] | None, limit: int = 50) -> list[ReviewRecord]:
    """Rejection history, newest first, for the overview page."""
    stmt = select(ReviewRecord).where(ReviewRecord.action == ReviewAction.REJECT.value)
    if account_ids is not None:
        stmt = stmt.where(ReviewRecord.account_id.in_(account_ids))
    return list(session.scalars(stmt.order_by(ReviewRecord.created_at.desc()).limit(limit)))
