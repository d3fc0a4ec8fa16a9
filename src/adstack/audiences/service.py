"""Audiences: uploaded id files and label rules, their membership bitmaps, the device profile store label
audiences are built from, and the in-memory index serving checks membership with."""

from __future__ import annotations

import logging
import re
import threading
from array import array
from bisect import bisect_left
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from pyroaring import BitMap64
from sqlalchemy import Select, Table, and_, case, delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from adstack.accounts import service as accounts
from adstack.accounts.models import Principal
from adstack.audiences import bitmaps
from adstack.audiences.bitmaps import AudienceIndex, IndexedAudience
from adstack.audiences.ids import (
    KEY_SPACE_OF,
    PARTITION_BITS,
    PARTITIONS,
    IdFileReader,
    IdType,
    KeySpace,
    ValidationReport,
    device_key,
    sha256_device_key,
    to_signed,
    to_unsigned,
)
from adstack.audiences.labels import (
    ActiveInApps,
    ActiveInCategories,
    Condition,
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
    AudienceSegment,
    AudienceStatus,
    AudienceUpdate,
    AudienceUpload,
    BatchDeleteOut,
    DeleteFailure,
    DeviceApp,
    DeviceAppUsage,
    DeviceProfile,
    DeviceTag,
    LabelAudienceCreate,
    PackageCategory,
    PackageCategoryIn,
    ReachRead,
    RegionIn,
    UploadMode,
    UploadSource,
)
from adstack.core.db import session_scope
from adstack.core.errors import Conflict, DomainError, FieldError, Forbidden, InvalidState, NotFound, ValidationFailed
from adstack.core.settings import Settings
from adstack.core.timeutil import as_utc, utcnow
from adstack.oplog import service as oplog
from adstack.oplog.models import Operation

log = logging.getLogger("adstack.audiences")

AUDIENCE = "audience"
DEFAULT_REGIONS: tuple[tuple[str, str], ...] = (("IN", "India"), ("RU", "Russia"), ("SG", "Singapore"))
DEFAULT_PACKAGE_CATEGORIES: tuple[tuple[str, str], ...] = (
    ("com.whatsapp", "communication"),
    ("org.telegram.messenger", "communication"),
    ("com.facebook.katana", "social"),
    ("com.instagram.android", "social"),
    ("com.google.android.youtube", "video"),
    ("com.mxtech.videoplayer.ad", "video"),
    ("com.spotify.music", "music"),
    ("com.dts.freefireth", "games"),
    ("com.pubg.imobile", "games"),
    ("com.supercell.clashofclans", "games"),
    ("com.phonepe.app", "finance"),
    ("net.one97.paytm", "finance"),
    ("com.flipkart.android", "shopping"),
    ("com.shopee.sg", "shopping"),
    ("ru.ozon.app.android", "shopping"),
    ("com.yandex.browser", "tools"),
)
# What the device profile store keeps; label conditions look back at most this far.
USAGE_RETENTION_DAYS = 90
DEVICE_RETENTION_DAYS = 180
LABEL_REFRESH_INTERVAL = timedelta(days=1)
MAX_REPORTED_PACKAGES = 500
MAX_USAGE_SECONDS_PER_DAY = 86_400
_PACKAGE = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)+")
_FETCH_BATCH = 50_000


# ---------- reference data: regions and app categories ----------


def seed(session: Session) -> None:
    """Default regions and app categories, once; operators' later edits are left alone."""
    if session.scalar(select(AudienceRegion.id).limit(1)) is None:
        session.add_all(AudienceRegion(code=code, name=name) for code, name in DEFAULT_REGIONS)
    if session.scalar(select(PackageCategory.id).limit(1)) is None:
        session.add_all(PackageCategory(package=p, category=c) for p, c in DEFAULT_PACKAGE_CATEGORIES)


def _require_operator(principal: Principal) -> None:
    if not principal.can_manage_accounts:
        raise Forbidden("only platform admins and account managers edit this list")


def list_regions(session: Session) -> list[AudienceRegion]:
    return list(session.scalars(select(AudienceRegion).order_by(AudienceRegion.code)))


def add_region(session: Session, principal: Principal, data: RegionIn) -> AudienceRegion:
    _require_operator(principal)
    if session.scalar(select(AudienceRegion.id).where(AudienceRegion.code == data.code)) is not None:
        raise Conflict(f"region {data.code} exists", fields=[FieldError("code", "unique", actual=data.code)])
    region = AudienceRegion(code=data.code, name=data.name, countries=sorted(set(data.countries)))
    session.add(region)
    session.flush()
    oplog.record(session, actor=principal, operation=Operation.CREATE, object_type="audience_region",
                 object_id=region.id, object_name=region.name,
                 after={"code": region.code, "name": region.name, "countries": region.country_codes})
    return region


def delete_region(session: Session, principal: Principal, region_id: int) -> None:
    _require_operator(principal)
    region = session.get(AudienceRegion, region_id)
    if region is None:
        raise NotFound("region not found")
    used = session.scalar(select(func.count()).where(Audience.region_code == region.code)) or 0
    if used:
        raise InvalidState(f"{used} audiences are built for region {region.code}; move them first")
    oplog.record(session, actor=principal, operation=Operation.DELETE, object_type="audience_region",
                 object_id=region.id, object_name=region.name, before={"code": region.code, "name": region.name})
    session.delete(region)


def _check_region(session: Session, code: str) -> None:
    if session.scalar(select(AudienceRegion.id).where(AudienceRegion.code == code)) is None:
        known = list(session.scalars(select(AudienceRegion.code).order_by(AudienceRegion.code)))
        raise ValidationFailed.single("region_code", "known_region", f"unknown region {code}", limit=known,
                                      actual=code)


def list_package_categories(session: Session, *, query: str | None = None, category: str | None = None,
                            limit: int = 100, offset: int = 0) -> list[PackageCategory]:
    stmt = select(PackageCategory)
    if query:
        stmt = stmt.where(PackageCategory.package.ilike(f"%{query}%"))
    if category:
        stmt = stmt.where(PackageCategory.category == category)
    return list(session.scalars(stmt.order_by(PackageCategory.package).limit(limit).offset(offset)))


def set_package_category(session: Session, principal: Principal, data: PackageCategoryIn) -> PackageCategory:
    """Create or change the category of a package."""
    _require_operator(principal)
    row = session.scalar(select(PackageCategory).where(PackageCategory.package == data.package))
    before = None if row is None else {"category": row.category}
    if row is None:
        row = PackageCategory(package=data.package, category=data.category)
        session.add(row)
    else:
        row.category = data.category
    session.flush()
    oplog.record(session, actor=principal, operation=Operation.CREATE if before is None else Operation.UPDATE,
                 object_type="package_category", object_id=row.id, object_name=row.package, before=before,
                 after={"category": row.category})
    return row


def delete_package_category(session: Session, principal: Principal, row_id: int) -> None:
    _require_operator(principal)
    row = session.get(PackageCategory, row_id)
    if row is None:
        raise NotFound("package category not found")
    oplog.record(session, actor=principal, operation=Operation.DELETE, object_type="package_category",
                 object_id=row.id, object_name=row.package, before={"category": row.category})
    session.delete(row)


# ---------- reading and listing audiences ----------


def snapshot(audience: Audience) -> dict[str, Any]:
    return {
        "name": audience.name,
        "region_code": audience.region_code,
        "kind": audience.kind,
        "id_type": audience.id_type,
        "status": audience.status,
        "size": audience.size,
        "rule": audience.rule,
    }


def get_audience(session: Session, principal: Principal, audience_id: int, *, for_update: bool = False
                 ) -> Audience:
    """Another tenant's audience answers 404, exactly like a missing one."""
    stmt = select(Audience).where(Audience.id == audience_id)
    if for_update:
        stmt = stmt.with_for_update()
    audience = session.scalar(stmt)
    if audience is None or not accounts.can_see_account(session, principal, audience.account_id):
        raise NotFound(f"audience {audience_id} not found")
    return audience


def list_audiences(
    session: Session,
    principal: Principal,
    *,
    query: str | None = None,
    region_code: str | None = None,
    kind: str | None = None,
    id_type: str | None = None,
    status: str | None = None,
    account_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Audience], int]:
    """Search by id or name; filter by region, type, id type, status and account. Returns a page and the total."""
    stmt = select(Audience)
    visible = accounts.visible_account_ids(session, principal)
    if visible is not None:
        stmt = stmt.where(Audience.account_id.in_(visible))
    if account_id is not None:
        stmt = stmt.where(Audience.account_id == account_id)
    if query:
        conditions: list[ColumnElement[bool]] = [Audience.name.ilike(f"%{query.strip()}%")]
        if query.strip().isdigit() and len(query.strip()) <= 18:
            conditions.append(Audience.id == int(query.strip()))
        stmt = stmt.where(or_(*conditions))
    if region_code:
        stmt = stmt.where(Audience.region_code == region_code)
    if kind:
        stmt = stmt.where(Audience.kind == kind)
    if id_type:
        stmt = stmt.where(Audience.id_type == id_type)
    if status:
        stmt = stmt.where(Audience.status == status)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.scalars(stmt.order_by(Audience.id.desc()).limit(limit).offset(offset))
    return list(rows), total


def list_uploads(session: Session, principal: Principal, audience_id: int) -> list[AudienceUpload]:
    get_audience(session, principal, audience_id)
    stmt = select(AudienceUpload).where(AudienceUpload.audience_id == audience_id).order_by(AudienceUpload.id)
    return list(session.scalars(stmt))


def audience_size(session: Session, audience_id: int) -> int:
    """Distinct devices in an audience, for the ad group's audience-size estimate; 0 when unknown."""
    return session.scalar(select(Audience.size).where(Audience.id == audience_id)) or 0


def usable_audience_ids(session: Session, account_id: int, audience_ids: Collection[int]) -> set[int]:
    """Which of these audiences an ad group of `account_id` may target (its own account's audiences)."""
    if not audience_ids:
        return set()
    stmt = select(Audience.id).where(Audience.id.in_(list(audience_ids)), Audience.account_id == account_id)
    return set(session.scalars(stmt))


# ---------- stored membership ----------


def load_members(session: Session, audience_id: int) -> BitMap64:
    return bitmaps.join(_member_partitions(session, audience_id))


def _member_partitions(session: Session, audience_id: int) -> Iterator[BitMap64]:
    stmt = (select(AudienceSegment.data).where(AudienceSegment.audience_id == audience_id)
            .order_by(AudienceSegment.partition))
    return (bitmaps.deserialize(data) for data in session.scalars(stmt))


def _write_segment(session: Session, audience_id: int, partition: int, members: BitMap64, *, exists: bool) -> None:
    # Core statements, so the blobs are not kept in the session's identity map.
    if not members:
        if exists:
            session.execute(delete(AudienceSegment).where(AudienceSegment.audience_id == audience_id,
                                                          AudienceSegment.partition == partition))
        return
    values = {"cardinality": len(members), "data": bitmaps.serialize(members)}
    if exists:
        session.execute(update(AudienceSegment).where(AudienceSegment.audience_id == audience_id,
                                                      AudienceSegment.partition == partition).values(**values))
    else:
        session.execute(insert(AudienceSegment).values(audience_id=audience_id, partition=partition, **values))


def _replace_membership(session: Session, audience_id: int, partitions: Iterable[tuple[int, BitMap64]]) -> int:
    session.execute(delete(AudienceSegment).where(AudienceSegment.audience_id == audience_id))
    size = 0
    for partition, members in partitions:
        size += len(members)
        _write_segment(session, audience_id, partition, members, exists=False)
        del members  # a partition's bitmap is the largest thing an upload holds: free it before the next is built
    return size


def _file_partitions(reader: IdFileReader) -> Iterator[tuple[int, BitMap64]]:
    """One bitmap per partition, built from the reader's key arrays, which are freed as they are used."""
    for partition in range(PARTITIONS):
        keys = reader.keys[partition]
        reader.keys[partition] = array("Q")
        if keys:
            members = bitmaps.build(keys)
            del keys  # not kept alive beside the bitmap while the caller writes it
            yield partition, members
            del members


# ---------- uploaded audiences ----------


def _check_new_name(session: Session, account_id: int, name: str, *, exclude_id: int | None = None) -> None:
    stmt = select(Audience.id).where(Audience.account_id == account_id, Audience.name == name)
    if exclude_id is not None:
        stmt = stmt.where(Audience.id != exclude_id)
    if session.scalar(stmt) is not None:
        raise Conflict(f"an audience named {name!r} exists in this account",
                       fields=[FieldError("name", "unique", message="unique within the account", actual=name)])


def prepare_uploaded_audience(session: Session, principal: Principal, *, name: str, region_code: str,
                              account_id: int | None) -> int:
    """Check everything about a new audience that does not need the file, before the file is read."""
    owner = accounts.resolve_account_id(session, principal, account_id)
    _check_region(session, region_code)
    _check_new_name(session, owner, name)
    return owner


def _file_reader(id_type: IdType, *, max_bytes: int, source: UploadSource) -> IdFileReader:
    # A fetched file may be anyone's: its refusals and reports never quote its lines.
    fetched = source is UploadSource.URL
    return IdFileReader(id_type, max_bytes=max_bytes, field_name="url" if fetched else "file", echo_values=not fetched)


def create_uploaded_audience(
    session: Session,
    principal: Principal,
    *,
    name: str,
    region_code: str,
    id_type: IdType,
    chunks: Iterable[bytes],
    max_bytes: int,
    account_id: int | None = None,
    source: UploadSource = UploadSource.UPLOAD,
    source_name: str = "",
) -> tuple[Audience, AudienceUpload]:
    """Stream a TXT file of ids into a new audience.

    Every rule is checked before anything is written, so a refused file leaves no rows behind; the
    caller's transaction holds the audience, its bitmaps and the report together.
    """
    owner = prepare_uploaded_audience(session, principal, name=name, region_code=region_code, account_id=account_id)
    reader = _file_reader(id_type, max_bytes=max_bytes, source=source)
    reader.read(chunks)
    reader.check_minimum()
    audience = Audience(account_id=owner, name=name, kind=AudienceKind.UPLOADED.value, region_code=region_code,
                        id_type=id_type.value, key_space=KEY_SPACE_OF[id_type].value,
                        status=AudienceStatus.BUILDING.value, created_by_user_id=principal.user_id)
    session.add(audience)
    session.flush()
    size = _replace_membership(session, audience.id, _file_partitions(reader))
    reader.report.distinct_ids = size
    audience.size = size
    audience.version = 1
    audience.status = AudienceStatus.READY.value
    audience.refreshed_at = utcnow()
    upload = _record_upload(session, principal, audience, reader.report, mode=UploadMode.CREATE, source=source,
                            source_name=source_name, changed=size)
    oplog.record(session, actor=principal, operation=Operation.CREATE, object_type=AUDIENCE, object_id=audience.id,
                 object_name=audience.name, account_id=audience.account_id, after=snapshot(audience))
    return audience, upload


def prepare_change(session: Session, principal: Principal, audience_id: int) -> Audience:
    audience = get_audience(session, principal, audience_id)
    if audience.kind != AudienceKind.UPLOADED:
        raise InvalidState("only uploaded audiences take files; edit a label audience's rule instead")
    return audience


def change_uploaded_audience(
    session: Session,
    principal: Principal,
    audience_id: int,
    *,
    mode: UploadMode,
    chunks: Iterable[bytes],
    max_bytes: int,
    source: UploadSource = UploadSource.UPLOAD,
    source_name: str = "",
) -> tuple[Audience, AudienceUpload]:
    """Append a later file's devices to an audience, or remove them from it. Same file rules as creation."""
    if mode is UploadMode.CREATE:
        raise ValidationFailed.single("mode", "enum", "append or reduce", limit=["append", "reduce"])
    audience = prepare_change(session, principal, audience_id)
    assert audience.id_type is not None  # every uploaded audience has one
    id_type = IdType(audience.id_type)
    reader = _file_reader(id_type, max_bytes=max_bytes, source=source)
    reader.read(chunks)
    reader.check_minimum()
    audience = get_audience(session, principal, audience_id, for_update=True)
    before = snapshot(audience)
    existing = set(session.scalars(select(AudienceSegment.partition)
                                   .where(AudienceSegment.audience_id == audience.id)))
    distinct = 0
    for partition, delta in _file_partitions(reader):
        distinct += len(delta)
        data = session.scalar(select(AudienceSegment.data).where(AudienceSegment.audience_id == audience.id,
                                                                 AudienceSegment.partition == partition))
        members = bitmaps.deserialize(data) if data is not None else BitMap64()
        if mode is UploadMode.APPEND:
            members |= delta
        else:
            members -= delta
        _write_segment(session, audience.id, partition, members, exists=partition in existing)
    reader.report.distinct_ids = distinct
    new_size = session.scalar(select(func.coalesce(func.sum(AudienceSegment.cardinality), 0))
                              .where(AudienceSegment.audience_id == audience.id)) or 0
    changed = abs(new_size - audience.size)
    audience.size = new_size
    audience.version += 1
    audience.refreshed_at = utcnow()
    upload = _record_upload(session, principal, audience, reader.report, mode=mode, source=source,
                            source_name=source_name, changed=changed)
    oplog.record(session, actor=principal, operation=Operation.UPDATE, object_type=AUDIENCE, object_id=audience.id,
                 object_name=audience.name, account_id=audience.account_id, before=before,
                 after={**snapshot(audience), "last_file": f"{mode.value} {changed} devices"})
    return audience, upload


def _record_upload(session: Session, principal: Principal, audience: Audience, report: ValidationReport, *,
                   mode: UploadMode, source: UploadSource, source_name: str, changed: int) -> AudienceUpload:
    upload = AudienceUpload(
        audience_id=audience.id, mode=mode.value, source=source.value, source_name=source_name[:500],
        id_type=audience.id_type or "", bytes_read=report.bytes_read, lines=report.lines,
        blank_lines=report.blank_lines, valid_lines=report.valid_lines, invalid_lines=report.invalid_lines,
        duplicate_lines=report.duplicate_lines, distinct_ids=report.distinct_ids, changed=changed,
        size_after=audience.size, invalid_examples=report.invalid_examples, created_by_user_id=principal.user_id,
        created_at=utcnow(),
    )
    session.add(upload)
    session.flush()
    return upload


# ---------- label audiences ----------


def create_label_audience(session: Session, principal: Principal, data: LabelAudienceCreate) -> Audience:
    """A label audience starts `building`; `refresh_label_audience` materialises it."""
    owner = accounts.resolve_account_id(session, principal, data.account_id)
    _check_region(session, data.region_code)
    _check_new_name(session, owner, data.name)
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
        raise InvalidState("only label audiences are refreshed; uploaded audiences change by file")
    before = snapshot(audience)
    members = materialise(session, LabelRule.model_validate(audience.rule), now=now or utcnow(),
                          countries=region_countries(session, audience.region_code))
    size = _replace_membership(session, audience.id, _split_partitions(members))
    audience.size = size
    audience.version += 1
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
        # Source: Mi Ads guide §6.1.1: a portrait package auto-updates only while an ad group using it is
        # delivering and its auto update is on.
        portraits = [a for a in stale if a.rule and LabelRule.model_validate(a.rule).is_portrait]
        delivering = enabled_ad_groups_using(session, portraits)
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


def materialise(session: Session, rule: LabelRule, *, now: datetime, countries: Sequence[str] | None = None
                ) -> BitMap64:
    """Devices seen within the rule's window that meet every condition; with `countries` (the audience's
    region cluster), only devices whose latest request came from one of them."""
    seen_since = now - timedelta(days=rule.seen_within_days)
    seen = select(DeviceProfile.device_key).where(DeviceProfile.last_seen_at >= seen_since)
    if countries is not None:
        seen = seen.where(DeviceProfile.country.in_(list(countries)))
    universe = _keys(session, seen)
    members = universe.copy()
    for condition in rule.conditions:
        if not members:
            break
        members &= _condition_members(session, condition, universe, today=now.date())
    return members


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


# ---------- deleting ----------


def enabled_ad_groups_using(session: Session, audiences: Collection[Audience]) -> dict[int, list[int]]:
    """Enabled ad groups whose targeting includes or excludes each audience (ad groups of the audiences'
    own accounts: no other account may target them)."""
    from adstack.campaigns.models import AdGroup, UserStatus

    if not audiences:
        return {}
    wanted = {a.id for a in audiences}
    using: dict[int, list[int]] = {}
    stmt = select(AdGroup.id, AdGroup.targeting).where(
        AdGroup.status == UserStatus.ENABLED.value, AdGroup.account_id.in_({a.account_id for a in audiences}))
    for ad_group_id, targeting in session.execute(stmt):
        targeting = targeting or {}
        named = set(targeting.get("include_audience_ids") or ()) | set(targeting.get("exclude_audience_ids") or ())
        for audience_id in named & wanted:
            using.setdefault(audience_id, []).append(ad_group_id)
    return using


def delete_audiences(session: Session, principal: Principal, ids: Sequence[int], *, partial_failure: bool = False,
                     validate_only: bool = False) -> BatchDeleteOut:
    """Delete audiences no enabled ad group uses. Without `partial_failure`, one refusal deletes nothing."""
    unique_ids = list(dict.fromkeys(ids))
    found: dict[int, Audience] = {}
    failures: list[DeleteFailure] = []
    for audience_id in unique_ids:
        try:
            found[audience_id] = get_audience(session, principal, audience_id, for_update=True)
        except NotFound as exc:
            failures.append(DeleteFailure(id=audience_id, code=exc.code, message=exc.message))
    in_use = enabled_ad_groups_using(session, list(found.values()))
    for audience_id, ad_group_ids in sorted(in_use.items()):
        failures.append(DeleteFailure(
            id=audience_id, code="in_use", ad_group_ids=sorted(ad_group_ids),
            message=f"enabled ad groups {sorted(ad_group_ids)} target this audience; detach it first",
        ))
        found.pop(audience_id, None)
    if failures and not partial_failure:
        return BatchDeleteOut(deleted=[], failures=failures, validate_only=validate_only)
    deleted = []
    for audience_id, audience in found.items():
        deleted.append(audience_id)
        if validate_only:
            continue
        oplog.record(session, actor=principal, operation=Operation.DELETE, object_type=AUDIENCE,
                     object_id=audience.id, object_name=audience.name, account_id=audience.account_id,
                     before=snapshot(audience))
        session.execute(delete(AudienceSegment).where(AudienceSegment.audience_id == audience_id))
        session.execute(delete(AudienceUpload).where(AudienceUpload.audience_id == audience_id))
        session.delete(audience)
    session.flush()
    return BatchDeleteOut(deleted=deleted, failures=failures, validate_only=validate_only)


# ---------- reach ----------


def estimate_reach(session: Session, principal: Principal, include_ids: Sequence[int],
                   exclude_ids: Sequence[int] = ()) -> ReachRead:
    """Distinct devices in any included audience and in none of the excluded ones, from the real bitmaps.

    SHA-256 audiences live in their own key space and cannot be joined with the others: they add their
    size to the included count (an upper bound) and are left out of the exclusion."""
    for audience_id in (*include_ids, *exclude_ids):
        get_audience(session, principal, audience_id)
    spaces: dict[int, str] = {row.id: row.key_space for row in session.execute(
        select(Audience.id, Audience.key_space).where(Audience.id.in_([*include_ids, *exclude_ids])))}
    included = BitMap64()
    extra = 0
    exact = True
    for audience_id in include_ids:
        if spaces.get(audience_id) == KeySpace.SHA256:
            extra += audience_size(session, audience_id)
            exact = False
        else:
            included |= load_members(session, audience_id)
    for audience_id in exclude_ids:
        if spaces.get(audience_id) == KeySpace.SHA256:
            exact = False
        elif included:
            included -= load_members(session, audience_id)
    return ReachRead(size=len(included) + extra, exact=exact)


# ---------- the serving index ----------


def load_audience_index(session: Session, settings: Settings | None = None, *,
                        previous: AudienceIndex | None = None) -> AudienceIndex:
    """Every audience with membership, as one probe set each. Pass the index being replaced to reuse the
    sets of audiences whose membership has not changed since."""
    del settings  # membership lives in the database, which every serving node reaches
    audiences = []
    rows = session.execute(select(Audience.id, Audience.version, Audience.key_space).where(Audience.version > 0))
    for audience_id, version, key_space in rows.all():
        reused = previous.get(audience_id) if previous is not None else None
        if reused is not None and reused.version == version:
            audiences.append(reused)
            continue
        audiences.append(IndexedAudience(audience_id=audience_id, version=version, key_space=KeySpace(key_space),
                                         members=bitmaps.probe_set(_member_partitions(session, audience_id))))
    return AudienceIndex(audiences)


# ---------- the device profile store ----------


@dataclass
class _DeviceReport:
    """What ad requests said about one device since the last write, merged."""

    key: int
    sha256_key: int
    seen_at: datetime
    packages: tuple[str, ...] | None = None
    packages_seen_at: datetime | None = None
    usage: dict[tuple[str, date], int] = field(default_factory=dict)
    country: str | None = None

    def merge(self, packages: tuple[str, ...] | None, usage: Mapping[str, int], seen_at: datetime,
              country: str | None = None) -> None:
        if packages is not None and (self.packages_seen_at is None or seen_at >= self.packages_seen_at):
            self.packages, self.packages_seen_at = packages, seen_at
        if country is not None and (self.country is None or seen_at >= self.seen_at):
            self.country = country
        self.seen_at = max(self.seen_at, seen_at)
        day = seen_at.date()
        for package, seconds in usage.items():
            slot = (package, day)
            self.usage[slot] = min(self.usage.get(slot, 0) + seconds, MAX_USAGE_SECONDS_PER_DAY)


def _clean_report(installed_packages: Sequence[str], usage: Mapping[str, int] | None
                  ) -> tuple[tuple[str, ...] | None, dict[str, int]]:
    """Reports come from devices: keep well-formed package names and sane durations, drop the rest."""
    packages = tuple(dict.fromkeys(p for p in installed_packages[:MAX_REPORTED_PACKAGES]
                                   if isinstance(p, str) and len(p) <= 255 and _PACKAGE.fullmatch(p)))
    cleaned_usage: dict[str, int] = {}
    for package, seconds in (usage or {}).items():
        if isinstance(package, str) and len(package) <= 255 and _PACKAGE.fullmatch(package) \
                and isinstance(seconds, int) and seconds > 0:
            cleaned_usage[package] = min(seconds, MAX_USAGE_SECONDS_PER_DAY)
    # An empty list means the request did not report installed apps, not that none are installed.
    return (packages or None), cleaned_usage


class DeviceProfileStore:
    """A buffer in front of the device profile tables, for the serving hot path: `record` only merges into
    memory; `flush` writes every buffered device in one transaction (the background task calls it every few
    seconds, and `record` itself when the buffer is full)."""

    def __init__(self, factory: sessionmaker[Session], *, max_pending: int = 20_000):
        self._factory = factory
        self._max_pending = max_pending
        self._pending: dict[int, _DeviceReport] = {}
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._pending)

    def record(self, *, gaid: str, installed_packages: Sequence[str], usage: Mapping[str, int] | None,
               seen_at: datetime, country: str | None = None) -> None:
        packages, cleaned_usage = _clean_report(installed_packages, usage)
        key = device_key(gaid)
        seen_at = as_utc(seen_at)
        with self._lock:
            report = self._pending.get(key)
            if report is None:
                report = self._pending[key] = _DeviceReport(key=key, sha256_key=sha256_device_key(gaid),
                                                            seen_at=seen_at)
            report.merge(packages, cleaned_usage, seen_at, _country(country))
            full = len(self._pending) >= self._max_pending
        if full:
            self.flush()

    def flush(self) -> int:
        with self._flush_lock:
            with self._lock:
                pending, self._pending = self._pending, {}
            if not pending:
                return 0
            with session_scope(self._factory) as session:
                write_device_reports(session, pending.values())
            return len(pending)


def record_device_profile(session_or_store: Session | DeviceProfileStore, *, gaid: str,
                          installed_packages: Sequence[str], usage: Mapping[str, int] | None,
                          seen_at: datetime, country: str | None = None) -> None:
    """Note what an ad request reported about its device: installed packages (the full list, or empty when
    not reported), seconds of use per package since the last report, and when.

    With a `DeviceProfileStore` this only buffers (cheap, for the hot path); with a session it writes at once
    and the caller commits. The raw GAID is hashed here and never stored."""
    if isinstance(session_or_store, DeviceProfileStore):
        session_or_store.record(gaid=gaid, installed_packages=installed_packages, usage=usage, seen_at=seen_at,
                                country=country)
        return
    packages, cleaned_usage = _clean_report(installed_packages, usage)
    seen_at = as_utc(seen_at)
    report = _DeviceReport(key=device_key(gaid), sha256_key=sha256_device_key(gaid), seen_at=seen_at)
    report.merge(packages, cleaned_usage, seen_at, _country(country))
    write_device_reports(session_or_store, [report])


def _country(value: str | None) -> str | None:
    """An ISO alpha-2 code as requests send it, upper-cased; anything else is unknown."""
    if not value or len(value) != 2 or not value.isascii() or not value.isalpha():
        return None
    return value.upper()


def _upsert(session: Session) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def write_device_reports(session: Session, reports: Iterable[_DeviceReport]) -> None:
    """Batched upserts, in key order so concurrent writers do not deadlock. Core statements on the tables, not
    the ORM's bulk path: this runs beside the serving hot path, and the ORM's per-row bookkeeping was most of its
    cost."""
    ordered = sorted(reports, key=lambda r: r.key)
    if not ordered:
        return
    insert_ = _upsert(session)
    profile_table: Table = DeviceProfile.__table__  # type: ignore[assignment]
    app_table: Table = DeviceApp.__table__  # type: ignore[assignment]
    usage_table: Table = DeviceAppUsage.__table__  # type: ignore[assignment]
    profiles = insert_(profile_table)
    session.execute(profiles.on_conflict_do_update(
        index_elements=[profile_table.c.device_key],
        set_={"sha256_key": profiles.excluded.sha256_key,
              # The latest request's country wins; a request that named none keeps the known one.
              "country": case((and_(profiles.excluded.country.is_not(None),
                                    profiles.excluded.last_seen_at >= profile_table.c.last_seen_at),
                               profiles.excluded.country), else_=profile_table.c.country),
              "last_seen_at": case((profiles.excluded.last_seen_at > profile_table.c.last_seen_at,
                                    profiles.excluded.last_seen_at), else_=profile_table.c.last_seen_at)},
    ), [{"device_key": to_signed(r.key), "sha256_key": to_signed(r.sha256_key), "country": r.country,
         "first_seen_at": r.seen_at, "last_seen_at": r.seen_at} for r in ordered])
    app_rows = [{"device_key": to_signed(r.key), "package": p, "installed": True,
                 "first_seen_at": r.packages_seen_at, "last_seen_at": r.packages_seen_at}
                for r in ordered if r.packages for p in sorted(r.packages)]
    if app_rows:
        apps = insert_(app_table)
        session.execute(apps.on_conflict_do_update(
            index_elements=[app_table.c.device_key, app_table.c.package],
            set_={"installed": True, "last_seen_at": apps.excluded.last_seen_at},
        ), app_rows)
    for report in ordered:
        if report.packages:
            # Apps a newer full report no longer lists were uninstalled.
            session.execute(update(app_table).where(
                app_table.c.device_key == to_signed(report.key), app_table.c.package.not_in(report.packages),
                app_table.c.installed.is_(True), app_table.c.last_seen_at < report.packages_seen_at,
            ).values(installed=False))
    usage_rows = [{"device_key": to_signed(r.key), "package": package, "day": day, "seconds": seconds}
                  for r in ordered for (package, day), seconds in sorted(r.usage.items())]
    if usage_rows:
        usage = insert_(usage_table)
        summed = usage_table.c.seconds + usage.excluded.seconds
        session.execute(usage.on_conflict_do_update(
            index_elements=[usage_table.c.device_key, usage_table.c.package, usage_table.c.day],
            set_={"seconds": case((summed > MAX_USAGE_SECONDS_PER_DAY, MAX_USAGE_SECONDS_PER_DAY), else_=summed)},
        ), usage_rows)


def prune_device_profiles(session: Session, *, now: datetime | None = None) -> None:
    """Forget usage older than the label look-back, and devices not seen for half a year."""
    now = now or utcnow()
    session.execute(delete(DeviceAppUsage).where(
        DeviceAppUsage.day < (now - timedelta(days=USAGE_RETENTION_DAYS)).date()))
    stale = select(DeviceProfile.device_key).where(
        DeviceProfile.last_seen_at < now - timedelta(days=DEVICE_RETENTION_DAYS))
    session.execute(delete(DeviceApp).where(DeviceApp.device_key.in_(stale)))
    session.execute(delete(DeviceAppUsage).where(DeviceAppUsage.device_key.in_(stale)))
    session.execute(delete(DeviceProfile).where(DeviceProfile.last_seen_at
                                                < now - timedelta(days=DEVICE_RETENTION_DAYS)))
