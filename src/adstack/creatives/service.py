"""Creatives: create and edit against their format's rules, review, status, copy, delete, preview.

The format rules are pure (formats.py); this module gathers the facts they need (the ad group's placement, the
account's uploads) and records every change in the operation log.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from adstack.accounts import tenancy
from adstack.accounts.models import Principal
from adstack.campaigns.enums import ServingStatus, UserStatus
from adstack.campaigns.models import AdGroup
from adstack.core.errors import FieldError, Forbidden, InvalidState, NotFound, ValidationFailed
from adstack.core.timeutil import utcnow
from adstack.creatives import catalog, formats, material_rules
from adstack.creatives.combinations import AssetCombination, asset_combinations
from adstack.creatives.formats import FormatSpec
from adstack.creatives.models import (
    Creative,
    CreativeCreate,
    CreativeSort,
    CreativeUpdate,
    Materials,
    PreviewIn,
    VideoTracking,
)
from adstack.creatives.preview import render_preview
from adstack.inventory.models import AdSpace
from adstack.media import service as media
from adstack.oplog import service as oplog
from adstack.oplog.models import Operation
from adstack.review import enforcement
from adstack.review import service as review
from adstack.review.models import ReviewAction, ReviewRecord, ReviewStatus

__all__ = ["AssetCombination", "asset_combinations"]

CREATIVE = "creative"

# Source: Mi Ads usage guide, 3.3 "Ad List", "List operations - edit": changing "any other creative ad
# information (except for the ad's creative name)" triggers review. The name and the on/off switch do not.
REVIEWED_FIELDS = frozenset({"format", "materials", "click_url", "deeplink", "impression_urls", "video_tracking"})


def snapshot(creative: Creative) -> dict[str, Any]:
    return {
        "ad_group_id": creative.ad_group_id,
        "name": creative.name,
        "format": creative.format,
        "materials": creative.materials,
        "click_url": creative.click_url,
        "deeplink": creative.deeplink,
        "impression_urls": creative.impression_urls,
        "video_tracking": creative.video_tracking,
        "status": creative.status,
        "review_status": creative.review_status,
        "rejection_reasons": creative.rejection_reasons,
    }


def _record(session: Session, principal: Principal, operation: Operation, creative: Creative,
            before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
    oplog.record(session, actor=principal, operation=operation, object_type=CREATIVE, object_id=creative.id,
                 object_name=creative.name, account_id=creative.account_id, before=before, after=after)


def _value(value: Any) -> Any:
    return value.value if hasattr(value, "value") else value


def seed(session: Session) -> None:
    """On migrate: the database's copy of the creative formats, re-seeded from formats.py."""
    catalog.seed(session)


# ---------- access ----------


def get_creative(session: Session, principal: Principal, creative_id: int) -> Creative:
    """A creative the principal may see, deleted ones included; others' answer 404 like missing ones."""
    creative = session.get(Creative, creative_id)
    if creative is None or not tenancy.can_see_account(session, principal, creative.account_id):
        raise NotFound(f"creative {creative_id} not found")
    return creative


def _live(creative: Creative) -> Creative:
    if creative.status == UserStatus.DELETED:
        raise InvalidState(f"creative {creative.id} is deleted")
    return creative


def _ad_group(session: Session, principal: Principal, ad_group_id: int, *, field: str = "ad_group_id") -> AdGroup:
    ad_group = session.get(AdGroup, ad_group_id)
    if ad_group is None or not tenancy.can_see_account(session, principal, ad_group.account_id):
        raise NotFound(f"ad group {ad_group_id} not found",
                       fields=[FieldError(field=field, rule="not_found", actual=ad_group_id)])
    if ad_group.status == UserStatus.DELETED:
        raise InvalidState(f"ad group {ad_group_id} is deleted",
                           fields=[FieldError(field=field, rule="not_deleted", actual=ad_group_id)])
    return ad_group


# ---------- rules ----------


def format_errors(session: Session, ad_group: AdGroup, format_code: str) -> list[FieldError]:
    """The format must serve the ad group's placement type and, when it names ad spaces, one of them."""
    spec = catalog.get_spec(session, format_code)
    if spec is None:
        return [FieldError(field="format", rule="enum", message="unknown creative format",
                           limit=list(formats.FORMAT_CODES), actual=format_code)]
    if ad_group.placement_type not in spec.placement_types:
        allowed = [s.code for s in catalog.specs_for_placement(session, ad_group.placement_type)]
        return [FieldError(field="format", rule="placement_type",
                           message=f"{spec.name} does not serve the ad group's {ad_group.placement_type} placement",
                           limit=allowed, actual=format_code)]
    if ad_group.ad_space_ids:
        spaces = list(session.scalars(select(AdSpace).where(AdSpace.id.in_(ad_group.ad_space_ids))))
        if spaces and not any(format_code in (space.accepted_formats or []) for space in spaces):
            accepted = sorted({code for space in spaces for code in space.accepted_formats or []})
            return [FieldError(field="format", rule="ad_space_formats",
                               message="none of the ad group's ad spaces accepts this format",
                               limit=accepted, actual=format_code)]
    return []


def media_ids(materials: Materials) -> set[int]:
    return {*materials.images, *materials.videos, *(i for i in (materials.icon, materials.cover_image) if i)}


def material_errors(session: Session, account_id: int, spec: FormatSpec, materials: Materials) -> list[FieldError]:
    assets = media.assets_of_account(session, account_id, media_ids(materials))
    return material_rules.validate_materials(spec, materials, assets)


def _validate(session: Session, ad_group: AdGroup, format_code: str, materials: Materials) -> None:
    errors = format_errors(session, ad_group, format_code)
    spec = catalog.get_spec(session, format_code)
    if not errors and spec is not None:
        errors = material_errors(session, ad_group.account_id, spec, materials)
    if errors:
        first = errors[0]
        raise ValidationFailed(f"{first.field}: {first.message or first.rule}", fields=errors)


# ---------- create and edit ----------


def create_creative(session: Session, principal: Principal, data: CreativeCreate) -> Creative:
    ad_group = _ad_group(session, principal, data.ad_group_id)
    format_code = _value(data.format)
    _validate(session, ad_group, format_code, data.materials)
    creative = Creative(
        account_id=ad_group.account_id, ad_group_id=ad_group.id, name=data.name, format=format_code,
        materials=data.materials.model_dump(), click_url=data.click_url, deeplink=data.deeplink,
        impression_urls=list(data.impression_urls), video_tracking=data.video_tracking.model_dump(),
        status=data.status, review_status=ReviewStatus.TO_BE_SUBMITTED.value, created_by_user_id=principal.user_id,
    )
    session.add(creative)
    session.flush()
    review.track(session, object_type=CREATIVE, object_id=creative.id, account_id=creative.account_id,
                 object_name=creative.name, status=ReviewStatus.TO_BE_SUBMITTED)
    _record(session, principal, Operation.CREATE, creative, None, snapshot(creative))
    return creative


def update_creative(session: Session, principal: Principal, creative_id: int, data: CreativeUpdate
                    ) -> tuple[Creative, str | None]:
    """Apply only the fields sent. Returns the creative and a notice when the edit sent it back to review."""
    creative = _live(get_creative(session, principal, creative_id))
    changes = data.model_dump(exclude_unset=True)
    if not changes:
        return creative, None
    before = snapshot(creative)
    format_code = _value(changes.get("format", creative.format))
    if "format" in changes or "materials" in changes:
        materials = data.materials if data.materials is not None else Materials.model_validate(creative.materials)
        _validate(session, _ad_group(session, principal, creative.ad_group_id), format_code, materials)
        creative.format = format_code
        creative.materials = materials.model_dump()
    for field in ("name", "click_url", "deeplink", "impression_urls"):
        if field in changes:
            setattr(creative, field, changes[field])
    if data.video_tracking is not None:
        creative.video_tracking = data.video_tracking.model_dump()
    after = snapshot(creative)
    reviewed_changed = sorted(f for f in REVIEWED_FIELDS if before[f] != after[f])
    notice = None
    if reviewed_changed:
        was_approved = creative.review_status == ReviewStatus.APPROVED
        creative.review_status = review.apply(
            session, object_type=CREATIVE, object_id=creative.id, account_id=creative.account_id,
            object_name=creative.name, current=creative.review_status, action=ReviewAction.EDIT_REVIEWED_FIELD,
            actor_user_id=principal.user_id,
        ).value
        after["review_status"] = creative.review_status
        if was_approved:
            notice = (f"Changing {', '.join(reviewed_changed)} sent the creative \"{creative.name}\" back to review; "
                      "it stops serving until it is approved again.")
    elif before["name"] != after["name"]:
        review.track(session, object_type=CREATIVE, object_id=creative.id, account_id=creative.account_id,
                     object_name=creative.name, status=ReviewStatus(creative.review_status))
    if before != after:
        _record(session, principal, Operation.UPDATE, creative, before, after)
    return creative, notice


# ---------- review ----------


def submit_creative(session: Session, principal: Principal, creative_id: int) -> Creative:
    creative = _live(get_creative(session, principal, creative_id))
    _ad_group(session, principal, creative.ad_group_id)
    before = snapshot(creative)
    creative.review_status = review.apply(
        session, object_type=CREATIVE, object_id=creative.id, account_id=creative.account_id,
        object_name=creative.name, current=creative.review_status, action=ReviewAction.SUBMIT,
        actor_user_id=principal.user_id,
    ).value
    _record(session, principal, Operation.SUBMIT, creative, before, snapshot(creative))
    return creative


def review_creative(session: Session, principal: Principal, creative_id: int, *, approve: bool,
                    reasons: Iterable[str] = ()) -> Creative:
    if not principal.can_review:
        raise Forbidden("only reviewers decide on creatives")
    creative = _live(get_creative(session, principal, creative_id))
    before = snapshot(creative)
    reason_list = [r.strip() for r in reasons if r.strip()]
    creative.review_status = review.apply(
        session, object_type=CREATIVE, object_id=creative.id, account_id=creative.account_id,
        object_name=creative.name, current=creative.review_status,
        action=ReviewAction.APPROVE if approve else ReviewAction.REJECT, actor_user_id=principal.user_id,
        reasons=reason_list,
    ).value
    creative.rejection_reasons = "" if approve else "; ".join(reason_list)[:2000]
    _record(session, principal, Operation.APPROVE if approve else Operation.REJECT, creative, before,
            snapshot(creative))
    return creative


def rejection_history(session: Session, principal: Principal, creative_id: int) -> list[ReviewRecord]:
    """Every rejection of the creative with its reasons, oldest first."""
    get_creative(session, principal, creative_id)
    return [r for r in review.history(session, CREATIVE, creative_id) if r.action == ReviewAction.REJECT]


# ---------- status, delete, copy ----------


def _soft_delete(session: Session, principal: Principal, creative: Creative, moment: datetime) -> None:
    before = snapshot(creative)
    creative.status = UserStatus.DELETED.value
    creative.deleted_at = moment
    review.withdraw(session, object_type=CREATIVE, object_id=creative.id)
    _record(session, principal, Operation.DELETE, creative, before, snapshot(creative))


def set_creative_status(session: Session, principal: Principal, creative_id: int, status: str) -> Creative:
    """enabled, paused, or deleted (soft and final)."""
    try:
        target = UserStatus(status)
    except ValueError:
        raise ValidationFailed.single("status", "enum", "status is enabled, paused or deleted",
                                      limit=[s.value for s in UserStatus], actual=status) from None
    creative = _live(get_creative(session, principal, creative_id))
    if target == UserStatus.DELETED:
        _soft_delete(session, principal, creative, utcnow())
        return creative
    if target == UserStatus.ENABLED:
        _ad_group(session, principal, creative.ad_group_id)
    if creative.status != target:
        enforcement.before_status_change(session, principal, object_type=CREATIVE, object_id=creative.id,
                                         account_id=creative.account_id, pausing=target == UserStatus.PAUSED)
        before = snapshot(creative)
        creative.status = target.value
        operation = Operation.ENABLE if target == UserStatus.ENABLED else Operation.PAUSE
        _record(session, principal, operation, creative, before, snapshot(creative))
    return creative


def delete_creatives_of(session: Session, principal: Principal, *, ad_group_ids: list[int]) -> int:
    """Soft-delete every live creative of the ad groups (the cascade of an ad group or campaign delete)."""
    if not ad_group_ids:
        return 0
    visible = tenancy.visible_account_ids(session, principal)
    stmt = select(Creative).where(Creative.ad_group_id.in_(ad_group_ids), Creative.status != UserStatus.DELETED)
    if visible is not None:
        stmt = stmt.where(Creative.account_id.in_(visible))
    moment = utcnow()
    count = 0
    for creative in session.scalars(stmt.order_by(Creative.id)).all():
        _soft_delete(session, principal, creative, moment)
        count += 1
    return count


def copy_creatives(session: Session, principal: Principal, *, from_ad_group_id: int, to_ad_group_id: int
                   ) -> list[Creative]:
    """Copy the live creatives of one ad group into another of the same account, as drafts to submit."""
    source_group = session.get(AdGroup, from_ad_group_id)
    if source_group is None or not tenancy.can_see_account(session, principal, source_group.account_id):
        raise NotFound(f"ad group {from_ad_group_id} not found")
    target_group = _ad_group(session, principal, to_ad_group_id, field="to_ad_group_id")
    if target_group.account_id != source_group.account_id:
        raise ValidationFailed.single("to_ad_group_id", "same_account", "creatives are copied within one account",
                                      actual=to_ad_group_id)
    stmt = select(Creative).where(Creative.ad_group_id == from_ad_group_id, Creative.status != UserStatus.DELETED)
    copies = []
    for source in session.scalars(stmt.order_by(Creative.id)).all():
        errors = format_errors(session, target_group, source.format)
        if errors:
            raise ValidationFailed(f"creative {source.id}: {errors[0].message}", fields=errors)
        copy = Creative(
            account_id=target_group.account_id, ad_group_id=target_group.id, name=source.name, format=source.format,
            materials=dict(source.materials), click_url=source.click_url, deeplink=source.deeplink,
            impression_urls=list(source.impression_urls), video_tracking=dict(source.video_tracking),
            status=source.status, review_status=ReviewStatus.TO_BE_SUBMITTED.value,
            created_by_user_id=principal.user_id,
        )
        session.add(copy)
        session.flush()
        review.track(session, object_type=CREATIVE, object_id=copy.id, account_id=copy.account_id,
                     object_name=copy.name, status=ReviewStatus.TO_BE_SUBMITTED)
        _record(session, principal, Operation.COPY, copy, None, snapshot(copy) | {"copied_from": source.id})
        copies.append(copy)
    return copies


COPY_SUFFIX = " - copy"
CREATIVE_NAME_MAX = 100


def copy_creative(session: Session, principal: Principal, creative_id: int, *, ad_group_id: int | None = None,
                  name: str | None = None, submit: bool = False) -> Creative:
    """Copy one creative, into its own ad group or another live one of the same account. The copy is a new
    creative: it is reviewed like any other (a draft to submit, or submitted at once with `submit`), whatever
    the review status of the original. Its materials are checked against the target's placement and the
    format's rules in force."""
    source = _live(get_creative(session, principal, creative_id))
    target = _ad_group(session, principal, ad_group_id if ad_group_id is not None else source.ad_group_id)
    if target.account_id != source.account_id:
        raise ValidationFailed.single("ad_group_id", "same_account", "a creative is copied within its account",
                                      actual=ad_group_id)
    _validate(session, target, source.format, Materials.model_validate(source.materials))
    copy = Creative(
        account_id=target.account_id, ad_group_id=target.id,
        name=name or source.name[:CREATIVE_NAME_MAX - len(COPY_SUFFIX)] + COPY_SUFFIX, format=source.format,
        materials=dict(source.materials), click_url=source.click_url, deeplink=source.deeplink,
        impression_urls=list(source.impression_urls), video_tracking=dict(source.video_tracking),
        status=source.status, review_status=ReviewStatus.TO_BE_SUBMITTED.value, created_by_user_id=principal.user_id,
    )
    session.add(copy)
    session.flush()
    review.track(session, object_type=CREATIVE, object_id=copy.id, account_id=copy.account_id,
                 object_name=copy.name, status=ReviewStatus.TO_BE_SUBMITTED)
    _record(session, principal, Operation.COPY, copy, None, snapshot(copy) | {"copied_from": source.id})
    return submit_creative(session, principal, copy.id) if submit else copy


# ---------- serving status ----------


def _own_status(creative: Creative) -> tuple[ServingStatus, str] | None:
    if creative.status == UserStatus.DELETED:
        return ServingStatus.DELETED, "the creative is deleted"
    if creative.status == UserStatus.PAUSED:
        return ServingStatus.PAUSED, "the creative is paused"
    if creative.review_status == ReviewStatus.TO_BE_SUBMITTED:
        return ServingStatus.TO_BE_SUBMITTED, "the creative has not been submitted for review"
    if creative.review_status == ReviewStatus.UNDER_REVIEW:
        return ServingStatus.UNDER_REVIEW, "the creative is under review"
    if creative.review_status == ReviewStatus.REJECTED:
        reasons = f": {creative.rejection_reasons}" if creative.rejection_reasons else ""
        return ServingStatus.REJECTED, f"the creative was rejected{reasons}"
    if creative.review_status == ReviewStatus.SUSPENDED:
        reasons = f": {creative.rejection_reasons}" if creative.rejection_reasons else ""
        return ServingStatus.SUSPENDED, f"the creative was suspended by a reviewer{reasons}"
    return None


def _combine(own: tuple[ServingStatus, str] | None, group: tuple[ServingStatus, str]) -> tuple[ServingStatus, str]:
    if own is not None:
        return own
    status, reason = group
    if status == ServingStatus.ELIGIBLE:
        return status, reason
    return status, f"ad group: {reason}"


def creative_serving_status(session: Session, creative: Creative, *, now: datetime | None = None
                            ) -> tuple[ServingStatus, str]:
    """The creative's own switch and review first, then whatever stops its ad group."""
    from adstack.campaigns import serving_status  # campaigns import creatives

    own = _own_status(creative)
    if own is not None:
        return own
    ad_group = session.get(AdGroup, creative.ad_group_id)
    if ad_group is None:
        return ServingStatus.DELETED, "the ad group no longer exists"
    return _combine(None, serving_status.ad_group_serving_status(session, ad_group, now=now))


def serving_statuses(session: Session, creatives: Sequence[Creative], *, now: datetime | None = None
                     ) -> dict[int, tuple[ServingStatus, str]]:
    """Serving status of many creatives, computing each ad group's status once."""
    from adstack.campaigns import serving_status  # campaigns import creatives

    group_ids = {c.ad_group_id for c in creatives if _own_status(c) is None}
    groups = list(session.scalars(select(AdGroup).where(AdGroup.id.in_(group_ids)))) if group_ids else []
    group_status = serving_status.serving_statuses(session, groups, now=now)
    missing = (ServingStatus.DELETED, "the ad group no longer exists")
    return {c.id: _combine(_own_status(c), group_status.get(c.ad_group_id, missing)) for c in creatives}


# ---------- lists ----------

_SORT_COLUMNS: dict[CreativeSort, Any] = {
    CreativeSort.ID: Creative.id,
    CreativeSort.NAME: func.lower(Creative.name),
    CreativeSort.CREATED_AT: Creative.created_at,
    CreativeSort.UPDATED_AT: Creative.updated_at,
    CreativeSort.STATUS: Creative.status,
    CreativeSort.REVIEW_STATUS: Creative.review_status,
}


def _filter_by_ad_group(session: Session, stmt: Any, *, placement_type: str | None, publisher_id: int | None,
                        objective: str | None) -> Any:
    """The ad-group-level filters of the ad list, applied to creatives through their ad group."""
    from adstack.campaigns import lists as campaign_lists  # campaigns import creatives
    from adstack.campaigns.models import Campaign

    if placement_type:
        stmt = stmt.where(Creative.ad_group_id.in_(select(AdGroup.id).where(AdGroup.placement_type == placement_type)))
    if objective:
        campaign_ids = select(Campaign.id).where(Campaign.objective == objective)
        stmt = stmt.where(Creative.ad_group_id.in_(select(AdGroup.id).where(AdGroup.campaign_id.in_(campaign_ids))))
    if publisher_id is not None:
        candidates = session.scalars(select(AdGroup).where(AdGroup.id.in_(stmt.with_only_columns(
            Creative.ad_group_id).distinct().scalar_subquery()))).all()
        stmt = stmt.where(Creative.ad_group_id.in_(
            [g.id for g in campaign_lists.ad_groups_on_publisher(session, candidates, publisher_id)] or [0]))
    return stmt


def list_creatives(
    session: Session,
    principal: Principal,
    *,
    query: str | None = None,
    account_id: int | None = None,
    ad_group_id: int | None = None,
    campaign_id: int | None = None,
    status: str | None = None,
    review_status: str | None = None,
    serving_status: str | None = None,
    format_code: str | None = None,
    placement_type: str | None = None,
    publisher_id: int | None = None,
    objective: str | None = None,
    include_deleted: bool = False,
    sort: CreativeSort = CreativeSort.ID,
    descending: bool = True,
    limit: int = 50,
    offset: int = 0,
    now: datetime | None = None,
) -> tuple[list[Creative], int, dict[int, tuple[ServingStatus, str]]]:
    """A page of creatives, the total that match, and the serving status of those on the page."""
    stmt = select(Creative)
    if account_id is not None:
        tenancy.ensure_account_visible(session, principal, account_id)
        stmt = stmt.where(Creative.account_id == account_id)
    else:
        visible = tenancy.visible_account_ids(session, principal)
        if visible is not None:
            stmt = stmt.where(Creative.account_id.in_(visible))
    if query:
        conditions: list[ColumnElement[bool]] = [Creative.name.icontains(query, autoescape=True)]
        if query.isdecimal() and len(query) < 19:
            conditions.append(Creative.id == int(query))
        stmt = stmt.where(or_(*conditions))
    if ad_group_id is not None:
        stmt = stmt.where(Creative.ad_group_id == ad_group_id)
    if campaign_id is not None:
        stmt = stmt.where(Creative.ad_group_id.in_(select(AdGroup.id).where(AdGroup.campaign_id == campaign_id)))
    if status:
        stmt = stmt.where(Creative.status == status)
    elif not include_deleted:
        stmt = stmt.where(Creative.status != UserStatus.DELETED)
    if review_status:
        stmt = stmt.where(Creative.review_status == review_status)
    if format_code:
        stmt = stmt.where(Creative.format == format_code)
    stmt = _filter_by_ad_group(session, stmt, placement_type=placement_type, publisher_id=publisher_id,
                               objective=objective)
    column = _SORT_COLUMNS[sort]
    ordered = stmt.order_by(column.desc() if descending else column.asc(),
                            Creative.id.desc() if descending else Creative.id.asc())
    if serving_status:
        # Derived, so filtered after computing it for every match.
        rows = list(session.scalars(ordered))
        statuses = serving_statuses(session, rows, now=now)
        matching = [c for c in rows if statuses[c.id][0] == serving_status]
        page = matching[offset:offset + limit]
        return page, len(matching), {c.id: statuses[c.id] for c in page}
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    page = list(session.scalars(ordered.limit(limit).offset(offset)))
    return page, total, serving_statuses(session, page, now=now)


def campaign_ids_of(session: Session, creatives: Sequence[Creative]) -> dict[int, int]:
    """Ad group id -> campaign id for the creatives' ad groups."""
    group_ids = {c.ad_group_id for c in creatives}
    if not group_ids:
        return {}
    rows = session.execute(select(AdGroup.id, AdGroup.campaign_id).where(AdGroup.id.in_(group_ids)))
    return {ad_group_id: campaign_id for ad_group_id, campaign_id in rows}


# ---------- preview ----------


def _render(session: Session, account_id: int, format_code: str, materials: Materials, click_url: str | None,
            problems: Sequence[FieldError]) -> str:
    spec = catalog.get_spec(session, format_code)
    if spec is None:
        raise ValidationFailed.single("format", "enum", "unknown creative format", limit=list(formats.FORMAT_CODES),
                                      actual=format_code)
    assets = media.assets_of_account(session, account_id, media_ids(materials))
    return render_preview(spec, materials.model_dump(), media=assets,
                          media_url={i: media.public_url(a, "") for i, a in assets.items()},
                          click_url=click_url, problems=problems)


def preview_creative(session: Session, principal: Principal, creative_id: int) -> str:
    creative = get_creative(session, principal, creative_id)
    return _render(session, creative.account_id, creative.format, Materials.model_validate(creative.materials),
                   creative.click_url, ())


def preview_materials(session: Session, principal: Principal, data: PreviewIn) -> str:
    """The console's live preview: unsaved materials, with the rules they break listed above the ad."""
    account_id = tenancy.resolve_account_id(session, principal, data.account_id)
    format_code = _value(data.format)
    spec = catalog.get_spec(session, format_code)
    problems = material_errors(session, account_id, spec, data.materials) if spec else []
    return _render(session, account_id, format_code, data.materials, data.click_url, problems)


def video_tracking_of(creative: Creative) -> VideoTracking:
    return VideoTracking.model_validate(creative.video_tracking or {})
