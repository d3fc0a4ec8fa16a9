"""Console services: announcements, and the small read models the overview needs from other domains."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from adstack.accounts.models import Principal
from adstack.campaigns.enums import UserStatus
from adstack.console.models import Announcement, AnnouncementIn
from adstack.core.errors import Forbidden, NotFound
from adstack.creatives.models import Creative
from adstack.oplog import service as oplog
from adstack.oplog.models import Operation
from adstack.review.models import ReviewItem

ANNOUNCEMENT = "announcement"


def list_announcements(session: Session, *, limit: int = 20, offset: int = 0) -> list[Announcement]:
    stmt = select(Announcement).order_by(Announcement.created_at.desc(), Announcement.id.desc())
    return list(session.scalars(stmt.limit(limit).offset(offset)))


def publish_announcement(session: Session, principal: Principal, data: AnnouncementIn) -> Announcement:
    if not principal.is_platform:
        raise Forbidden("only platform staff publish announcements")
    translations = {language: text.model_dump() for language, text in data.translations.items()}
    announcement = Announcement(title=data.title, body=data.body, translations=translations,
                                author_user_id=principal.user_id)
    session.add(announcement)
    session.flush()
    oplog.record(session, actor=principal, operation=Operation.CREATE, object_type=ANNOUNCEMENT,
                 object_id=announcement.id, object_name=announcement.title,
                 after={"title": announcement.title, "body": announcement.body, "translations": translations})
    return announcement


def delete_announcement(session: Session, principal: Principal, announcement_id: int) -> None:
    if not principal.is_platform:
        raise Forbidden("only platform staff remove announcements")
    announcement = session.get(Announcement, announcement_id)
    if announcement is None:
        raise NotFound("announcement not found")
    oplog.record(session, actor=principal, operation=Operation.DELETE, object_type=ANNOUNCEMENT,
                 object_id=announcement.id, object_name=announcement.title,
                 before={"title": announcement.title, "body": announcement.body})
    session.delete(announcement)


def live_creative_counts(session: Session, ad_group_ids: list[int]) -> dict[int, int]:
    """Creatives that are not deleted, per ad group: what a delete would take down with it."""
    if not ad_group_ids:
        return {}
    stmt = (select(Creative.ad_group_id, func.count()).where(Creative.ad_group_id.in_(ad_group_ids),
                                                           Creative.status != UserStatus.DELETED)
            .group_by(Creative.ad_group_id))
    return {int(group): int(count) for group, count in session.execute(stmt)}


def review_counts(session: Session, account_ids: set[int] | None, *, object_types: tuple[str, ...] = (
        "ad_group", "creative")) -> dict[str, dict[str, int]]:
    """object type -> review status -> count, for the overview's review tiles."""
    stmt = (select(ReviewItem.object_type, ReviewItem.status, func.count())
            .where(ReviewItem.object_type.in_(object_types))
            .group_by(ReviewItem.object_type, ReviewItem.status))
    if account_ids is not None:
        stmt = stmt.where(ReviewItem.account_id.in_(account_ids))
    counts: dict[str, dict[str, int]] = {kind: {} for kind in object_types}
    for object_type, status, count in session.execute(stmt):
        counts[object_type][status] = int(count)
    return counts
