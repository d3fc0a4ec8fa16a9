"""Portrait tags: the operator-maintained tag sets portrait packages are built from.

A portrait pipeline writes which devices hold a tag (interests and the like) through the API; a label
audience with a `portrait_tags` condition is a portrait package over them. Ids are keyed like every other
MD5-space audience, so a tagged device matches at serving from its raw GAID.
"""

from __future__ import annotations

from sqlalchemy import Table, delete, func, select
from sqlalchemy.orm import Session

from adstack.accounts.models import Principal
from adstack.audiences.ids import IdType, key_of, to_signed
from adstack.audiences.models import DeviceTag, DeviceTagsIn, DeviceTagsOut, TagCount
from adstack.core.errors import Forbidden, ValidationFailed
from adstack.core.timeutil import utcnow
from adstack.oplog import service as oplog
from adstack.oplog.models import Operation

_WRITE_BATCH = 1000


def _require_operator(principal: Principal) -> None:
    if not principal.can_manage_accounts:
        raise Forbidden("only platform admins and account managers write portrait tags")


def _count(session: Session, tag: str) -> int:
    return session.scalar(select(func.count()).select_from(DeviceTag).where(DeviceTag.tag == tag)) or 0


def write_device_tags(session: Session, principal: Principal, data: DeviceTagsIn) -> DeviceTagsOut:
    """Add devices to a tag, remove them, or replace the tag's whole device set. Invalid ids are counted and
    skipped; a write where none is valid (and that is not an empty replace) is refused."""
    _require_operator(principal)
    if data.id_type not in (IdType.GAID, IdType.GAID_MD5):
        raise ValidationFailed.single("id_type", "md5_key_space", "tags are written as gaid or gaid_md5",
                                      limit=[IdType.GAID.value, IdType.GAID_MD5.value], actual=data.id_type.value)
    keys = {key for key in (key_of(data.id_type, value) for value in data.ids) if key is not None}
    invalid = len(data.ids) - sum(1 for v in data.ids if key_of(data.id_type, v) is not None)
    if not keys and (data.ids or data.mode != "replace"):
        raise ValidationFailed.single("ids", "valid_ids", f"no valid {data.id_type.value} id among the ids",
                                      limit=1, actual=0)
    before = _count(session, data.tag)
    table: Table = DeviceTag.__table__  # type: ignore[assignment]
    signed = sorted(to_signed(k) for k in keys)
    if data.mode == "replace":
        session.execute(delete(table).where(table.c.tag == data.tag))
    if data.mode == "remove":
        for start in range(0, len(signed), _WRITE_BATCH):
            session.execute(delete(table).where(table.c.tag == data.tag,
                                                table.c.device_key.in_(signed[start:start + _WRITE_BATCH])))
    else:
        existing: set[int] = set()
        if data.mode == "add":
            for start in range(0, len(signed), _WRITE_BATCH):
                existing.update(session.scalars(select(table.c.device_key).where(
                    table.c.tag == data.tag, table.c.device_key.in_(signed[start:start + _WRITE_BATCH]))))
        now = utcnow()
        rows = [{"tag": data.tag, "device_key": k, "updated_at": now} for k in signed if k not in existing]
        if rows:
            session.execute(table.insert(), rows)
    after = _count(session, data.tag)
    changed = abs(after - before) if data.mode != "replace" else len(keys)
    oplog.record(session, actor=principal, operation=Operation.UPDATE, object_type="portrait_tag", object_id=None,
                 object_name=data.tag, before={"devices": before},
                 after={"devices": after, "mode": data.mode, "ids": len(data.ids)})
    return DeviceTagsOut(tag=data.tag, devices=after, changed=changed, invalid_ids=invalid)


def list_tags(session: Session) -> list[TagCount]:
    rows = session.execute(select(DeviceTag.tag, func.count()).group_by(DeviceTag.tag).order_by(DeviceTag.tag))
    return [TagCount(tag=tag, devices=count) for tag, count in rows]
