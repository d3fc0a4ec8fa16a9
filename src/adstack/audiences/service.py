"""Audiences: reading, listing and deleting audiences, their stored membership bitmaps, reach, and the in-memory
index serving checks membership with.

Regions and app categories are in reference.py, uploaded audiences in uploads.py, label audiences in
label_audiences.py, the device profile store label audiences are built from in profiles.py."""

from __future__ import annotations

from array import array
from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from pyroaring import BitMap64
from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from adstack.accounts import tenancy
from adstack.accounts.models import Principal
from adstack.audiences import bitmaps
from adstack.audiences.bitmaps import AudienceIndex, IndexedAudience
from adstack.audiences.ids import PARTITIONS, IdFileReader, KeySpace
from adstack.audiences.models import (
    Audience,
    AudienceRegion,
    AudienceSegment,
    AudienceUpload,
    BatchDeleteOut,
    DeleteFailure,
    PackageCategory,
    ReachRead,
    new_generation,
)
from adstack.core.errors import Conflict, FieldError, NotFound
from adstack.core.settings import Settings
from adstack.oplog import service as oplog
from adstack.oplog.models import Operation

AUDIENCE = "audience"
_ID_CHUNK = 500  # ids per IN (...) list, well inside every database's parameter limit
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


# ---------- reference data: regions and app categories ----------


def seed(session: Session) -> None:
    """Default regions and app categories, once; operators' later edits are left alone."""
    if session.scalar(select(AudienceRegion.id).limit(1)) is None:
        session.add_all(AudienceRegion(code=code, name=name) for code, name in DEFAULT_REGIONS)
    if session.scalar(select(PackageCategory.id).limit(1)) is None:
        session.add_all(PackageCategory(package=p, category=c) for p, c in DEFAULT_PACKAGE_CATEGORIES)


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
    if audience is None or not tenancy.can_see_account(session, principal, audience.account_id):
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
    visible = tenancy.visible_account_ids(session, principal)
    if visible is not None:
        stmt = stmt.where(Audience.account_id.in_(visible))
    if account_id is not None:
        stmt = stmt.where(Audience.account_id == account_id)
    if query:
        # autoescape: a % or _ typed in the search is that character, not a wildcard
        conditions: list[ColumnElement[bool]] = [Audience.name.icontains(query.strip(), autoescape=True)]
        if query.strip().isdecimal() and len(query.strip()) <= 18:
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
    """Distinct devices in one audience, as stored; 0 when unknown."""
    return session.scalar(select(Audience.size).where(Audience.id == audience_id)) or 0


def usable_audience_ids(session: Session, account_id: int, audience_ids: Collection[int]) -> set[int]:
    """Which of these audiences an ad group of `account_id` may target (its own account's audiences)."""
    if not audience_ids:
        return set()
    stmt = select(Audience.id).where(Audience.id.in_(list(audience_ids)), Audience.account_id == account_id)
    return set(session.scalars(stmt))


def _check_new_name(session: Session, account_id: int, name: str, *, exclude_id: int | None = None) -> None:
    stmt = select(Audience.id).where(Audience.account_id == account_id, Audience.name == name)
    if exclude_id is not None:
        stmt = stmt.where(Audience.id != exclude_id)
    if session.scalar(stmt) is not None:
        raise Conflict(f"an audience named {name!r} exists in this account",
                       fields=[FieldError("name", "unique", message="unique within the account", actual=name)])


# ---------- stored membership ----------


def load_members(session: Session, audience_id: int) -> BitMap64:
    return bitmaps.join(_member_partitions(session, audience_id))


def _member_partitions(session: Session, audience_id: int) -> Iterator[BitMap64]:
    stmt = (select(AudienceSegment.data).where(AudienceSegment.audience_id == audience_id)
            .order_by(AudienceSegment.partition))
    return (bitmaps.deserialize(data) for data in session.scalars(stmt))


def begin_membership_write(session: Session, audience: Audience) -> None:
    """Lock an audience before its stored membership is read for a change, and mark the change: its version goes
    up by one and it takes a new generation, in one UPDATE that is the transaction's first write. On SQLite that
    takes the database's one write lock as `BEGIN IMMEDIATE` would, on PostgreSQL the row's lock: a concurrent
    change waits here, then counts from the version committed and reads the membership written before it. The
    audience is read again; NotFound when it was deleted meanwhile."""
    bumped = session.scalar(update(Audience).where(Audience.id == audience.id)
                            .values(version=Audience.version + 1, generation=new_generation())
                            .returning(Audience.version).execution_options(synchronize_session=False))
    if bumped is None:
        raise NotFound(f"audience {audience.id} not found")
    session.refresh(audience)


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


# ---------- deleting ----------


def delivering_ad_groups_using(session: Session, audiences: Collection[Audience], *, now: datetime | None = None
                               ) -> dict[int, list[int]]:
    """Ad groups delivering at `now` whose targeting includes or excludes each audience (ad groups of the audiences'
    own accounts: no other account may target them). Delivering is the ad group's serving status
    (campaigns/serving_status.py) being eligible: enabled, approved, with an approved creative, inventory, money
    and in schedule. The audiences' own emptiness is not held against it: refreshing them is what gives them
    members."""
    from adstack.campaigns.enums import ServingStatus
    from adstack.campaigns.models import AdGroup
    from adstack.campaigns.serving_status import serving_statuses

    enabled = ad_groups_using(session, audiences, enabled_only=True)
    ids = sorted({g for groups in enabled.values() for g in groups})
    groups: list[AdGroup] = []
    for start in range(0, len(ids), _ID_CHUNK):
        groups.extend(session.scalars(select(AdGroup).where(AdGroup.id.in_(ids[start:start + _ID_CHUNK]))))
    statuses = serving_statuses(session, groups, now=now, assume_audience_members=True)
    delivering = {g for g, (status, _) in statuses.items() if status == ServingStatus.ELIGIBLE}
    using = {a: [g for g in groups_of if g in delivering] for a, groups_of in enabled.items()}
    return {a: groups_of for a, groups_of in using.items() if groups_of}


def ad_groups_using(session: Session, audiences: Collection[Audience], *, enabled_only: bool = False
                    ) -> dict[int, list[int]]:
    """Ad groups not deleted (or only the enabled ones) whose targeting includes or excludes each audience."""
    from adstack.campaigns.models import AdGroup, UserStatus

    if not audiences:
        return {}
    wanted = {a.id for a in audiences}
    using: dict[int, list[int]] = {}
    status = AdGroup.status == UserStatus.ENABLED.value if enabled_only \
        else AdGroup.status != UserStatus.DELETED.value
    stmt = select(AdGroup.id, AdGroup.targeting).where(
        status, AdGroup.account_id.in_({a.account_id for a in audiences}))
    for ad_group_id, targeting in session.execute(stmt):
        targeting = targeting or {}
        named = set(targeting.get("include_audience_ids") or ()) | set(targeting.get("exclude_audience_ids") or ())
        for audience_id in named & wanted:
            using.setdefault(audience_id, []).append(ad_group_id)
    return using


def delete_audiences(session: Session, principal: Principal, ids: Sequence[int], *, partial_failure: bool = False,
                     validate_only: bool = False) -> BatchDeleteOut:
    """Delete audiences no live ad group uses, enabled or paused: a paused one re-enabled later would otherwise
    target an audience that is gone, its exclusion silently void. Without `partial_failure`, one refusal deletes
    nothing."""
    unique_ids = list(dict.fromkeys(ids))
    found: dict[int, Audience] = {}
    failures: list[DeleteFailure] = []
    for audience_id in unique_ids:
        try:
            found[audience_id] = get_audience(session, principal, audience_id, for_update=True)
        except NotFound as exc:
            failures.append(DeleteFailure(id=audience_id, code=exc.code, message=exc.message))
    in_use = ad_groups_using(session, list(found.values()))
    for audience_id, ad_group_ids in sorted(in_use.items()):
        failures.append(DeleteFailure(
            id=audience_id, code="in_use", ad_group_ids=sorted(ad_group_ids),
            message=f"ad groups {sorted(ad_group_ids)} target this audience; detach it first",
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


def audience_index_signature(session: Session) -> tuple[int, int, int, str]:
    """Changes whenever `load_audience_index` would answer differently: an audience gains or loses membership
    (versions only grow) or is deleted, or another takes a deleted one's place (its rows are the newest). One
    aggregate row, cheap enough for serving to ask every second."""
    count, versions, ids, newest = session.execute(select(
        func.count(), func.coalesce(func.sum(Audience.version), 0), func.coalesce(func.sum(Audience.id), 0),
        func.max(Audience.updated_at),
    ).where(Audience.version > 0)).one()
    return int(count), int(versions), int(ids), str(newest)


def load_audience_index(session: Session, settings: Settings | None = None, *,
                        previous: AudienceIndex | None = None) -> AudienceIndex:
    """Every audience with membership, as one probe set each. Pass the index being replaced to reuse the
    sets of audiences whose membership has not been written since: same id and same generation, which every
    membership write renews (an id and version alone may name another tenant's audience where SQLite gave a
    deleted audience's id again)."""
    del settings  # membership lives in the database, which every serving node reaches
    audiences = []
    rows = session.execute(select(Audience.id, Audience.version, Audience.generation, Audience.key_space)
                           .where(Audience.version > 0))
    for audience_id, version, generation, key_space in rows.all():
        reused = previous.get(audience_id) if previous is not None else None
        if reused is not None and reused.generation == generation and reused.version == version:
            audiences.append(reused)
            continue
        audiences.append(IndexedAudience(audience_id=audience_id, version=version, key_space=KeySpace(key_space),
                                         members=bitmaps.probe_set(_member_partitions(session, audience_id)),
                                         generation=generation))
    return AudienceIndex(audiences)
