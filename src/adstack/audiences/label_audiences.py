"""Label audiences: creating and editing them, and materialising their rules from the device profile store,
on demand and in the daily refresh."""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from pyroaring import BitMap64
from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from adstack.accounts import tenancy
from adstack.accounts.models import Principal
from adstack.audiences import bitmaps
from adstack.audiences.ids import PARTITION_BITS, PARTITIONS, KeySpace, to_unsigned
from adstack.audiences.labels import (
    ActiveInApps,
    ActiveInCategories,
    Condition,
    Converted,
    InstalledApps,
    InstalledCategories,
    LabelRule,
    NotInstalledApps,
    NotInstalledCategories,
    PortraitTags,
    UsageTime,
)
from adstack.audiences.models import (
    Audience,
    AudienceKind,
    AudienceRegion,
    AudienceStatus,
    AudienceUpdate,
    DeviceApp,
    DeviceAppUsage,
    DeviceProfile,
    DeviceTag,
    LabelAudienceCreate,
    PackageCategory,
)
from adstack.audiences.reference import _check_region
from adstack.audiences.service import (
    AUDIENCE,
    _check_new_name,
    _replace_membership,
    begin_membership_write,
    delivering_ad_groups_using,
    get_audience,
    snapshot,
)
from adstack.core.db import session_scope
from adstack.core.errors import DomainError, FieldError, InvalidState, NotFound, ValidationFailed
from adstack.core.timeutil import utcnow
from adstack.oplog import service as oplog
from adstack.oplog.models import Operation

log = logging.getLogger("adstack.audiences")

LABEL_REFRESH_INTERVAL = timedelta(days=1)
_FETCH_BATCH = 50_000


# ---------- label audiences ----------


def create_label_audience(session: Session, principal: Principal, data: LabelAudienceCreate) -> Audience:
    """A label audience starts `building`; `refresh_label_audience` materialises it."""
    owner = tenancy.resolve_account_id(session, principal, data.account_id)
    _check_region(session, data.region_code)
    _check_new_name(session, owner, data.name)
    _check_own_apps(session, owner, data.rule)
    audience = Audience(account_id=owner, name=data.name, kind=AudienceKind.LABEL.value,
                        region_code=data.region_code, id_type=None, key_space=KeySpace.MD5.value,
                        status=AudienceStatus.BUILDING.value, rule=data.rule.model_dump(mode="json"),
                        created_by_user_id=principal.user_id)
    session.add(audience)
    session.flush()
    oplog.record(session, actor=principal, operation=Operation.CREATE, object_type=AUDIENCE, object_id=audience.id,
                 object_name=audience.name, account_id=audience.account_id, after=snapshot(audience))
    return audience


def update_audience(session: Session, principal: Principal, audience_id: int, data: AudienceUpdate
                    ) -> tuple[Audience, bool]:
    """Apply only the fields sent. Returns the audience and whether its label rule changed (needs a refresh)."""
    audience = get_audience(session, principal, audience_id)
    changes = data.model_dump(exclude_unset=True)
    if not changes:
        return audience, False
    before = snapshot(audience)
    if changes.get("name") is not None:
        _check_new_name(session, audience.account_id, changes["name"], exclude_id=audience.id)
        audience.name = changes["name"]
    if changes.get("region_code") is not None:
        _check_region(session, changes["region_code"])
        audience.region_code = changes["region_code"]
    rule_changed = False
    if data.rule is not None:
        if audience.kind != AudienceKind.LABEL:
            raise ValidationFailed.single("rule", "label_audience_only", "only label audiences have a rule")
        _check_own_apps(session, audience.account_id, data.rule)
        new_rule = data.rule.model_dump(mode="json")
        rule_changed = new_rule != audience.rule
        audience.rule = new_rule
    oplog.record(session, actor=principal, operation=Operation.UPDATE, object_type=AUDIENCE, object_id=audience.id,
                 object_name=audience.name, account_id=audience.account_id, before=before, after=snapshot(audience))
    return audience, rule_changed


def refresh_label_audience(session: Session, principal: Principal | None, audience_id: int,
                           *, now: datetime | None = None) -> Audience:
    """Materialise a label audience from the device profile store as it is now."""
    if principal is not None:
        audience = get_audience(session, principal, audience_id, for_update=True)
    else:
        found = session.scalar(select(Audience).where(Audience.id == audience_id).with_for_update())
        if found is None:
            raise NotFound(f"audience {audience_id} not found")
        audience = found
    if audience.kind != AudienceKind.LABEL or audience.rule is None:
        message = "only label audiences are refreshed; uploaded audiences change by file"
        raise InvalidState(message, fields=[FieldError("audience_id", "label_audience_only", message=message,
                                                       limit=AudienceKind.LABEL.value, actual=audience.kind)])
    begin_membership_write(session, audience)
    before = snapshot(audience)
    members = materialise(session, LabelRule.model_validate(audience.rule), now=now or utcnow(),
                          countries=region_countries(session, audience.region_code), account_id=audience.account_id)
    size = _replace_membership(session, audience.id, _split_partitions(members))
    audience.size = size
    audience.status = AudienceStatus.READY.value
    audience.status_reason = ""
    audience.refreshed_at = now or utcnow()
    if principal is not None:
        oplog.record(session, actor=principal, operation=Operation.UPDATE, object_type=AUDIENCE,
                     object_id=audience.id, object_name=audience.name, account_id=audience.account_id,
                     before=before, after=snapshot(audience))
    return audience


def mark_refresh_failed(session: Session, audience_id: int, reason: str) -> None:
    session.execute(update(Audience).where(Audience.id == audience_id)
                    .values(status=AudienceStatus.FAILED.value, status_reason=reason[:500]))


def rebuild_label_audience(session: Session, principal: Principal, audience_id: int) -> Audience:
    """Refresh a label audience and commit. A refusal (not found, not a label audience) is raised with nothing
    changed; an unexpected failure leaves the audience marked failed with the reason, then is raised."""
    try:
        audience = refresh_label_audience(session, principal, audience_id)
    except Exception as exc:
        session.rollback()
        if not isinstance(exc, DomainError):
            log.exception("label audience %s failed to build", audience_id)
            mark_refresh_failed(session, audience_id, f"build failed: {type(exc).__name__}")
            session.commit()
        raise
    session.commit()
    return audience


def list_categories(session: Session) -> list[str]:
    """Every app category the package table knows, for label rule forms."""
    return list(session.scalars(select(PackageCategory.category).distinct().order_by(PackageCategory.category)))


def refresh_due_label_audiences(factory: sessionmaker[Session], *, now: datetime | None = None,
                                interval: timedelta = LABEL_REFRESH_INTERVAL) -> int:
    """The daily rebuild: every label audience not refreshed within `interval`. Each in its own transaction,
    so one failing rule marks only its audience failed. Returns how many were refreshed."""
    now = now or utcnow()
    with factory() as session:
        stale = list(session.scalars(select(Audience).where(
            Audience.kind == AudienceKind.LABEL.value,
            or_(Audience.refreshed_at.is_(None), Audience.refreshed_at < now - interval),
        ).order_by(Audience.id)))
        # Source: Mi Ads usage guide, 6.1.1, "Attention": "The portrait crowd package's auto update requires that
        # the status of the ad group is under delivering and the auto update option is checked".
        portraits = [a for a in stale if a.rule and LabelRule.model_validate(a.rule).is_portrait]
        delivering = delivering_ad_groups_using(session, portraits, now=now)
        due = [a.id for a in stale if a not in portraits
               or (a.id in delivering and LabelRule.model_validate(a.rule).auto_update)]
    refreshed = 0
    for audience_id in due:
        try:
            with session_scope(factory) as session:
                refresh_label_audience(session, None, audience_id, now=now)
            refreshed += 1
        except Exception as exc:  # one bad audience must not stop the others
            log.exception("label audience %s failed to refresh", audience_id)
            with session_scope(factory) as session:
                mark_refresh_failed(session, audience_id, f"refresh failed: {type(exc).__name__}")
    return refreshed


def _split_partitions(members: BitMap64) -> Iterator[tuple[int, BitMap64]]:
    """The partitions of a whole membership bitmap (the array is sorted, so each partition is a slice)."""
    keys = members.to_array()
    shift = 64 - PARTITION_BITS
    start = 0
    for partition in range(PARTITIONS):
        end = bisect_left(keys, (partition + 1) << shift, lo=start)
        if end > start:
            yield partition, bitmaps.build(keys[start:end])
        start = end


def _keys(session: Session, stmt: Select[Any]) -> BitMap64:
    """Device keys selected by `stmt` (first column), as a bitmap, read in batches."""
    members = BitMap64()
    result = session.execute(stmt.execution_options(yield_per=_FETCH_BATCH))
    for batch in result.scalars().partitions(_FETCH_BATCH):
        members.update([to_unsigned(k) for k in batch])
    return members


def region_countries(session: Session, region_code: str) -> list[str]:
    region = session.scalar(select(AudienceRegion).where(AudienceRegion.code == region_code))
    return region.country_codes if region is not None else []


def materialise(session: Session, rule: LabelRule, *, now: datetime, countries: Sequence[str] | None = None,
                account_id: int | None = None) -> BitMap64:
    """Devices seen within the rule's window that meet every condition; with `countries` (the audience's
    region cluster), only devices whose latest request came from one of them. Conditions on conversions read
    only `account_id`'s (the audience owner's) postbacks; without it they hold for no device."""
    seen_since = now - timedelta(days=rule.seen_within_days)
    seen = select(DeviceProfile.device_key).where(DeviceProfile.last_seen_at >= seen_since)
    if countries is not None:
        seen = seen.where(DeviceProfile.country.in_(list(countries)))
    universe = _keys(session, seen)
    members = universe.copy()
    for condition in rule.conditions:
        if not members:
            break
        if isinstance(condition, Converted):
            members &= _converted(session, condition, account_id, now=now)
        else:
            members &= _condition_members(session, condition, universe, today=now.date())
    return members


def _converted(session: Session, condition: Converted, account_id: int | None, *, now: datetime) -> BitMap64:
    from adstack.attribution.models import UNSIGNED_NOT_CHARGED, Conversion

    if account_id is None:
        return BitMap64()
    # Only conversions the app's signed postbacks reported: anyone with a click id can send the bare URL, with
    # whatever device in it.
    stmt = select(Conversion.gaid_md5, Conversion.data_flags).where(
        Conversion.account_id == account_id, Conversion.app_id.in_(list(condition.app_ids)),
        Conversion.conversion_event.in_([e.value for e in condition.events]),
        Conversion.occurred_at >= now - timedelta(days=condition.within_days), Conversion.gaid_md5.is_not(None))
    members = BitMap64()
    result = session.execute(stmt.execution_options(yield_per=_FETCH_BATCH))
    for batch in result.partitions(_FETCH_BATCH):
        # The audience key of a device is the first 64 bits of its GAID's MD5 (`audiences.ids.device_key`).
        members.update([int(digest[:16], 16) for digest, flags in batch
                        if digest and len(digest) == 32 and UNSIGNED_NOT_CHARGED not in (flags or ())])
    return members


def _check_own_apps(session: Session, account_id: int, rule: LabelRule) -> None:
    """A conversion condition names apps of the audience's own account; another tenant's reads as unknown."""
    from adstack.apps.models import App

    for position, condition in enumerate(rule.conditions):
        if not isinstance(condition, Converted):
            continue
        own = set(session.scalars(select(App.id).where(App.account_id == account_id,
                                                       App.id.in_(list(condition.app_ids)))))
        for index, app_id in enumerate(condition.app_ids):
            if app_id not in own:
                raise ValidationFailed.single(f"rule.conditions.{position}.app_ids.{index}", "belongs_to_account",
                                              f"app {app_id} is not one of this account's apps", actual=app_id)


def _installed(session: Session, packages: Sequence[str]) -> BitMap64:
    return _keys(session, select(DeviceApp.device_key).where(DeviceApp.package.in_(list(packages)),
                                                             DeviceApp.installed.is_(True)))


def _installed_in_categories(session: Session, categories: Sequence[str]) -> BitMap64:
    stmt = (select(DeviceApp.device_key)
            .join(PackageCategory, PackageCategory.package == DeviceApp.package)
            .where(PackageCategory.category.in_(list(categories)), DeviceApp.installed.is_(True)))
    return _keys(session, stmt)


def _condition_members(session: Session, condition: Condition, universe: BitMap64, *, today: date) -> BitMap64:
    if isinstance(condition, InstalledApps):
        if condition.match == "all":
            return _intersect(_installed(session, [p]) for p in condition.packages)
        return _installed(session, condition.packages)
    if isinstance(condition, NotInstalledApps):
        return universe - _installed(session, condition.packages)
    if isinstance(condition, InstalledCategories):
        if condition.match == "all":
            return _intersect(_installed_in_categories(session, [c]) for c in condition.categories)
        return _installed_in_categories(session, condition.categories)
    if isinstance(condition, NotInstalledCategories):
        return universe - _installed_in_categories(session, condition.categories)
    if isinstance(condition, ActiveInApps):
        since = today - timedelta(days=condition.within_days - 1)
        return _keys(session, select(DeviceAppUsage.device_key).where(
            DeviceAppUsage.package.in_(condition.packages), DeviceAppUsage.day >= since,
            DeviceAppUsage.seconds > 0))
    if isinstance(condition, ActiveInCategories):
        since = today - timedelta(days=condition.within_days - 1)
        return _keys(session, select(DeviceAppUsage.device_key)
                     .join(PackageCategory, PackageCategory.package == DeviceAppUsage.package)
                     .where(PackageCategory.category.in_(condition.categories), DeviceAppUsage.day >= since,
                            DeviceAppUsage.seconds > 0))
    if isinstance(condition, PortraitTags):
        if condition.match == "all":
            return _intersect(_tagged(session, [t]) for t in condition.tags)
        return _tagged(session, condition.tags)
    assert isinstance(condition, UsageTime)
    return _usage_members(session, condition, universe, today=today)


def _tagged(session: Session, tags: Sequence[str]) -> BitMap64:
    return _keys(session, select(DeviceTag.device_key).where(DeviceTag.tag.in_(list(tags))))


def _usage_members(session: Session, condition: UsageTime, universe: BitMap64, *, today: date) -> BitMap64:
    since = today - timedelta(days=condition.within_days - 1)
    total = func.sum(DeviceAppUsage.seconds)
    stmt = select(DeviceAppUsage.device_key).where(DeviceAppUsage.day >= since)
    if condition.package is not None:
        stmt = stmt.where(DeviceAppUsage.package == condition.package)
    else:
        stmt = stmt.join(PackageCategory, PackageCategory.package == DeviceAppUsage.package).where(
            PackageCategory.category == condition.category)
    stmt = stmt.group_by(DeviceAppUsage.device_key)
    if condition.min_seconds == 0:
        # "At most N seconds" includes devices that reported no usage at all.
        assert condition.max_seconds is not None
        return universe - _keys(session, stmt.having(total > condition.max_seconds))
    stmt = stmt.having(total >= condition.min_seconds)
    if condition.max_seconds is not None:
        stmt = stmt.having(total <= condition.max_seconds)
    return _keys(session, stmt)


def _intersect(sets: Iterable[BitMap64]) -> BitMap64:
    result: BitMap64 | None = None
    for members in sets:
        result = members if result is None else result & members
    return result if result is not None else BitMap64()
