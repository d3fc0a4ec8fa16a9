"""Uploaded audiences: creating one from a file of ids, and appending or removing a later file's devices."""

from __future__ import annotations

from collections.abc import Iterable

from pyroaring import BitMap64
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from adstack.accounts import tenancy
from adstack.accounts.models import Principal
from adstack.audiences import bitmaps
from adstack.audiences.ids import KEY_SPACE_OF, MIN_VALID_IDS, IdFileReader, IdType, ValidationReport
from adstack.audiences.models import (
    Audience,
    AudienceKind,
    AudienceSegment,
    AudienceStatus,
    AudienceUpload,
    UploadMode,
    UploadSource,
    new_generation,
)
from adstack.audiences.reference import _check_region
from adstack.audiences.service import (
    AUDIENCE,
    _check_new_name,
    _file_partitions,
    _replace_membership,
    _write_segment,
    begin_membership_write,
    get_audience,
    snapshot,
)
from adstack.core.errors import FieldError, InvalidState, ValidationFailed
from adstack.core.timeutil import utcnow
from adstack.oplog import service as oplog
from adstack.oplog.models import Operation

# ---------- uploaded audiences ----------


def prepare_uploaded_audience(session: Session, principal: Principal, *, name: str, region_code: str,
                              account_id: int | None) -> int:
    """Check everything about a new audience that does not need the file, before the file is read."""
    owner = tenancy.resolve_account_id(session, principal, account_id)
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
    try:
        with session.begin_nested():
            session.add(audience)
    except IntegrityError:
        _check_new_name(session, owner, name)  # another upload took the name since it was checked: say so
        raise
    size = _replace_membership(session, audience.id, _file_partitions(reader))
    reader.report.distinct_ids = size
    audience.size = size
    audience.version = 1
    audience.generation = new_generation()
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
        message = "only uploaded audiences take files; edit a label audience's rule instead"
        raise InvalidState(message, fields=[FieldError("audience_id", "uploaded_audience_only", message=message,
                                                       limit=AudienceKind.UPLOADED.value, actual=audience.kind)])
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
    # The guide's minimum of 1,000 ids is for imports; a reduction may remove a single device (an opt-out).
    reader.check_minimum(1 if mode is UploadMode.REDUCE else MIN_VALID_IDS)
    # The lock comes before the membership is read: a concurrent change of this audience waits for it here.
    begin_membership_write(session, audience)
    before = snapshot(audience)
    existing = set(session.scalars(select(AudienceSegment.partition)
                                   .where(AudienceSegment.audience_id == audience.id)))
    distinct = changed = 0
    for partition, delta in _file_partitions(reader):
        distinct += len(delta)
        data = session.scalar(select(AudienceSegment.data).where(AudienceSegment.audience_id == audience.id,
                                                                 AudienceSegment.partition == partition))
        members = bitmaps.deserialize(data) if data is not None else BitMap64()
        had = len(members)
        if mode is UploadMode.APPEND:
            members |= delta
        else:
            members -= delta
        changed += abs(len(members) - had)
        _write_segment(session, audience.id, partition, members, exists=partition in existing)
    reader.report.distinct_ids = distinct
    audience.size = session.scalar(select(func.coalesce(func.sum(AudienceSegment.cardinality), 0))
                                   .where(AudienceSegment.audience_id == audience.id)) or 0
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


def check_file_name(filename: str | None, *, field: str = "filename") -> None:
    """Audience files are TXT files of ids, one per line."""
    # Source: Mi Ads usage guide, audience import: "The file should be in TXT format, and the file size can't
    # exceed 64MB."
    if filename is not None and not filename.lower().endswith(".txt"):
        raise ValidationFailed.single(field, "file_extension", "upload a .txt file", limit=".txt",
                                      actual=filename[-20:])
