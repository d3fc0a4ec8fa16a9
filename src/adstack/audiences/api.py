"""Audiences: streamed uploads and URL imports of id files, label audiences, search, batch delete, reach,
and the operator lists (regions, app categories). `install` starts the daily label refresh."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, BinaryIO, TypeVar, cast

import anyio
from fastapi import APIRouter, FastAPI, Query, Request, status
from pydantic import BaseModel, Field
from python_multipart.exceptions import ParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from adstack.audiences import label_audiences, portraits, profiles, reference, service, uploads
from adstack.audiences.ids import IdType
from adstack.audiences.models import (
    Audience,
    AudienceKind,
    AudienceRead,
    AudienceStatus,
    AudienceUpdate,
    BatchDeleteIn,
    BatchDeleteOut,
    DeviceTagsIn,
    DeviceTagsOut,
    ImportResult,
    LabelAudienceCreate,
    PackageCategoryIn,
    PackageCategoryRead,
    ReachRead,
    RegionIn,
    RegionRead,
    TagCount,
    UploadMode,
    UploadReportRead,
    UploadSource,
    UrlChangeIn,
    UrlImportIn,
)
from adstack.audiences.sources import CHUNK_BYTES, display_url, open_url
from adstack.core.background import Periodic
from adstack.core.db import session_scope
from adstack.core.deps import (
    CurrentPrincipal,
    IdPath,
    Limit,
    Offset,
    OptionalId,
    SessionDep,
    SettingsDep,
    without_session,
)
from adstack.core.errors import (
    DomainError,
    ErrorBody,
    FieldError,
    InvalidState,
    NotFound,
    PayloadTooLarge,
    ValidationFailed,
    error_responses,
)
from adstack.core.ids import MAX_ID
from adstack.core.settings import Settings
from adstack.core.timeutil import utcnow

log = logging.getLogger("adstack.audiences")
router = APIRouter(prefix="/api/v1/audiences", tags=["audiences"])

T = TypeVar("T")
NameQuery = Annotated[str, Query(min_length=1, max_length=100, pattern=r"\S", description="Audience name.")]
RegionQuery = Annotated[str, Query(pattern=r"^[A-Z0-9_]{2,8}$", description="Region code, e.g. IN, RU, SG.")]
FilenameQuery = Annotated[str | None, Query(max_length=255, description=(
    "The uploaded file's name; must be .txt. Without it, a multipart `file` part's own filename names the file, "
    "and must be .txt too."))]
AudienceIds = list[Annotated[int, Field(ge=1, le=MAX_ID)]]
# Room for the multipart envelope around a file at the size cap.
MULTIPART_OVERHEAD_BYTES = 64 * 1024

UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "A TXT file, one id per line: the raw body, or a multipart form with a `file` part.",
        "content": {
            "text/plain": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                               "properties": {"file": {"type": "string", "format": "binary"}}}},
        },
    }
}


class AudiencePage(BaseModel):
    total: int
    items: list[AudienceRead]


# ---------- receiving a file before the service reads it ----------
# A body may take up to body_deadline_s to arrive and a fetched file up to the outbound timeout: both are received
# into a staging file holding no database place (deps.without_session), and the service then reads the file.

STAGING_MEMORY_BYTES = 1 << 20


def _staging_file(settings: Settings) -> BinaryIO:
    folder = settings.data_dir / "audience-staging"
    folder.mkdir(parents=True, exist_ok=True)
    return cast(BinaryIO, tempfile.SpooledTemporaryFile(max_size=STAGING_MEMORY_BYTES, mode="w+b", dir=str(folder)))


async def _receive_body(request: Request, settings: Settings, max_bytes: int) -> BinaryIO:
    """The whole request body, capped as it arrives."""
    staged = _staging_file(settings)
    try:
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes:
                raise _too_large(max_bytes, received)
            staged.write(chunk)
        staged.seek(0)
        return staged
    except BaseException:
        staged.close()
        raise


def _staged_chunks(staged: BinaryIO) -> Iterator[bytes]:
    while chunk := staged.read(CHUNK_BYTES):
        yield chunk


def _too_large(limit: int, actual: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the file is larger than {limit} bytes",
                           fields=[FieldError(field="file", rule="max_size_bytes", limit=limit, actual=actual)])


@dataclass
class _PartState:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    header_name: bytes = b""
    header_value: bytes = b""
    wanted: bool = False
    found: bool = False
    filename: str | None = None  # the wanted part's, from its Content-Disposition


def _multipart_file(chunks: Iterator[bytes], boundary: bytes, part_name: bytes = b"file", *,
                    part: _PartState | None = None) -> Iterator[bytes]:
    """The bytes of one part of a multipart body, parsed as it streams (python-multipart's push parser). `part`,
    when given, is left holding what was read of the part's headers."""
    out: list[bytes] = []
    part = part if part is not None else _PartState()

    def on_part_begin() -> None:
        part.headers.clear()
        part.wanted = False

    def on_header_field(data: bytes, start: int, end: int) -> None:
        part.header_name += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        part.header_value += data[start:end]

    def on_header_end() -> None:
        part.headers[part.header_name.lower()] = part.header_value
        part.header_name = part.header_value = b""

    def on_headers_finished() -> None:
        _, options = parse_options_header(part.headers.get(b"content-disposition", b""))
        part.wanted = options.get(b"name") == part_name and not part.found
        part.found = part.found or part.wanted
        if part.wanted and b"filename" in options:
            part.filename = options[b"filename"].decode("utf-8", "replace")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if part.wanted:
            out.append(data[start:end])

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
    })
    try:
        for chunk in chunks:
            parser.write(chunk)
            yield from out
            out.clear()
        parser.finalize()
    except ParseError as exc:
        raise ValidationFailed.single("file", "multipart", f"the multipart body is malformed: {exc}"[:200]) from exc
    yield from out
    if not part.found:
        raise ValidationFailed.single("file", "required", "the form has no `file` part")


def _upload_boundary(request: Request, settings: Settings) -> bytes | None:
    """The multipart boundary, None for a raw body; refuses a body declared over the cap before reading it."""
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    multipart = content_type == b"multipart/form-data"
    if multipart and not options.get(b"boundary"):
        raise ValidationFailed.single("content-type", "multipart_boundary", "the multipart body has no boundary")
    declared = request.headers.get("content-length", "")
    envelope = MULTIPART_OVERHEAD_BYTES if multipart else 0
    if declared.isdecimal() and int(declared) > settings.max_upload_bytes + envelope:
        raise _too_large(settings.max_upload_bytes, int(declared))  # refused before reading a byte
    return options[b"boundary"] if multipart else None


async def _receive_file(request: Request, session: Session, settings: Settings) -> tuple[BinaryIO, bytes | None]:
    """The uploaded body, received with the session given back, and its multipart boundary."""
    boundary = _upload_boundary(request, settings)
    envelope = MULTIPART_OVERHEAD_BYTES if boundary is not None else 0
    async with without_session(request, session):
        staged = await _receive_body(request, settings, settings.max_upload_bytes + envelope)
    return staged, boundary


def _file_source_name(staged: BinaryIO, boundary: bytes | None, filename: str | None) -> str:
    """The uploaded file's name: the `filename` parameter, else the name the multipart `file` part carries. Either
    must be a .txt file; the part's is read (and the staged body rewound) before the service reads the file."""
    uploads.check_file_name(filename)
    if boundary is None:
        return filename or ""
    part = _PartState()
    for _ in _multipart_file(_staged_chunks(staged), boundary, part=part):
        break  # the part's headers are read once its first bytes are
    staged.seek(0)
    uploads.check_file_name(part.filename, field="file")
    return filename or part.filename or ""


def _file_chunks(staged: BinaryIO, boundary: bytes | None) -> Iterator[bytes]:
    body = _staged_chunks(staged)
    return _multipart_file(body, boundary) if boundary is not None else body


class TooManyImports(DomainError):
    code = "too_many_requests"
    status = 429


IMPORTS_RESPONSE: dict[int | str, dict[str, Any]] = {
    429: {"model": ErrorBody, "description": "As many of the account's URL imports as "
                                             "`url_imports_per_account` allows are running; retry when one ends."}}


@asynccontextmanager
async def _import_place(request: Request, account_id: int) -> AsyncIterator[None]:
    """One of the account's few concurrent URL imports in this process; 429 past them, so one account's slow
    URLs cannot take every fetch in the server."""
    state = request.app.state
    settings: Settings = state.settings
    running: dict[int, int] | None = getattr(state, "url_imports", None)
    if running is None:
        running = state.url_imports = {}
    limit = settings.url_imports_per_account
    if running.get(account_id, 0) >= limit:
        raise TooManyImports(
            f"at most {limit} URL imports of an account run at once; retry when one ends",
            fields=[FieldError(field="url", rule="max_concurrent_imports", limit=limit,
                               actual=running.get(account_id, 0),
                               message=f"at most {limit} URL imports of an account at once")])
    running[account_id] = running.get(account_id, 0) + 1
    try:
        yield
    finally:
        running[account_id] -= 1
        if not running[account_id]:
            del running[account_id]


def _fetch_limiter(request: Request) -> anyio.CapacityLimiter:
    """Threads of their own for downloads, so slow remote hosts never hold the request threads."""
    state = request.app.state
    limiter: anyio.CapacityLimiter | None = getattr(state, "fetch_limiter", None)
    if limiter is None:
        limiter = state.fetch_limiter = anyio.CapacityLimiter(state.settings.db_pool_size)
    return limiter


def _download(url: str, settings: Settings) -> BinaryIO:
    staged = _staging_file(settings)
    try:
        with open_url(url, max_bytes=settings.max_upload_bytes) as chunks:
            for chunk in chunks:
                staged.write(chunk)
        staged.seek(0)
        return staged
    except BaseException:
        staged.close()
        raise


async def _fetch(request: Request, session: Session, settings: Settings, url: str, account_id: int) -> BinaryIO:
    """The remote file, downloaded with no session or database place held (docs/connectors.md: the partner is
    called with no transaction open)."""
    async with _import_place(request, account_id), without_session(request, session):
        return await anyio.to_thread.run_sync(_download, url, settings, limiter=_fetch_limiter(request))


async def _in_worker(work: Callable[[], T]) -> T:
    return await run_in_threadpool(work)


def _read(audience: Audience) -> AudienceRead:
    return AudienceRead.model_validate(audience)


# ---------- operator lists (static paths before /{audience_id}) ----------


@router.get("/regions", response_model=list[RegionRead], summary="Country and region clusters")
def list_regions(principal: CurrentPrincipal, session: SessionDep) -> list[RegionRead]:
    return [RegionRead.model_validate(r) for r in reference.list_regions(session)]


@router.post("/regions", response_model=RegionRead, status_code=status.HTTP_201_CREATED,
             summary="Add a region cluster (platform admins and account managers)")
def add_region(body: RegionIn, principal: CurrentPrincipal, session: SessionDep) -> RegionRead:
    region = reference.add_region(session, principal, body)
    session.commit()
    return RegionRead.model_validate(region)


@router.delete("/regions/{region_id}", status_code=status.HTTP_204_NO_CONTENT,
               summary="Remove a region no audience uses (platform admins and account managers)")
def delete_region(region_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> None:
    reference.delete_region(session, principal, region_id)
    session.commit()


@router.get("/package-categories", response_model=list[PackageCategoryRead],
            summary="App packages and their categories, used by label audiences")
def list_package_categories(
    principal: CurrentPrincipal,
    session: SessionDep,
    q: Annotated[str | None, Query(max_length=255, description="Part of a package name.")] = None,
    category: Annotated[str | None, Query(max_length=64)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[PackageCategoryRead]:
    rows = reference.list_package_categories(session, query=q, category=category, limit=limit, offset=offset)
    return [PackageCategoryRead.model_validate(r) for r in rows]


@router.put("/package-categories", response_model=PackageCategoryRead,
            summary="Set a package's category (platform admins and account managers)")
def set_package_category(body: PackageCategoryIn, principal: CurrentPrincipal,
                         session: SessionDep) -> PackageCategoryRead:
    row = reference.set_package_category(session, principal, body)
    session.commit()
    return PackageCategoryRead.model_validate(row)


@router.delete("/package-categories/{row_id}", status_code=status.HTTP_204_NO_CONTENT,
               summary="Remove a package's category (platform admins and account managers)")
def delete_package_category(row_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> None:
    reference.delete_package_category(session, principal, row_id)
    session.commit()


@router.get("/portrait-tags", response_model=list[TagCount],
            summary="Portrait tags and how many devices hold each")
def list_portrait_tags(principal: CurrentPrincipal, session: SessionDep) -> list[TagCount]:
    return portraits.list_tags(session)


@router.put("/portrait-tags", response_model=DeviceTagsOut,
            summary="Write a portrait tag's devices: add, remove or replace (platform admins and account managers)")
def write_portrait_tags(body: DeviceTagsIn, principal: CurrentPrincipal, session: SessionDep) -> DeviceTagsOut:
    result = portraits.write_device_tags(session, principal, body)
    session.commit()
    return result


# ---------- audiences ----------


@router.get("", response_model=AudiencePage, summary="Search audiences by id or name; filter by region and type")
def list_audiences(
    principal: CurrentPrincipal,
    session: SessionDep,
    q: Annotated[str | None, Query(max_length=100, description="Audience id or part of its name.")] = None,
    region_code: Annotated[str | None, Query(max_length=8)] = None,
    type: Annotated[AudienceKind | None, Query(description="uploaded or label")] = None,
    id_type: IdType | None = None,
    status: AudienceStatus | None = None,
    account_id: OptionalId = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> AudiencePage:
    rows, total = service.list_audiences(session, principal, query=q, region_code=region_code, kind=type,
                                         id_type=id_type, status=status, account_id=account_id, limit=limit,
                                         offset=offset)
    return AudiencePage(total=total, items=[_read(a) for a in rows])


@router.post("/upload", response_model=ImportResult, status_code=status.HTTP_201_CREATED, openapi_extra=UPLOAD_BODY,
             responses=error_responses(415),
             summary="Create an audience from a streamed TXT file of ids (at least 1,000 valid, at most 64 MB)")
async def upload_audience(
    request: Request,
    principal: CurrentPrincipal,
    session: SessionDep,
    settings: SettingsDep,
    name: NameQuery,
    region_code: RegionQuery,
    id_type: Annotated[IdType, Query(description="gaid (raw, stored as MD5), gaid_md5 or sha256")],
    account_id: OptionalId = None,
    filename: FilenameQuery = None,
) -> ImportResult:
    uploads.check_file_name(filename)
    # Everything that needs no file is checked before the body is read.
    await _in_worker(lambda: uploads.prepare_uploaded_audience(session, principal, name=name.strip(),
                                                                region_code=region_code, account_id=account_id))
    staged, boundary = await _receive_file(request, session, settings)

    def work() -> ImportResult:
        source_name = _file_source_name(staged, boundary, filename)
        audience, upload = uploads.create_uploaded_audience(
            session, principal, name=name.strip(), region_code=region_code, id_type=id_type,
            chunks=_file_chunks(staged, boundary), max_bytes=settings.max_upload_bytes, account_id=account_id,
            source=UploadSource.UPLOAD, source_name=source_name,
        )
        session.commit()
        return ImportResult(audience=_read(audience), report=UploadReportRead.model_validate(upload))

    with staged:
        return await _in_worker(work)


@router.post("/import", response_model=ImportResult, status_code=status.HTTP_201_CREATED,
             responses=IMPORTS_RESPONSE,
             summary="Create an audience from a file the server fetches: http(s):// or webhdfs://host:port/path")
async def import_audience(request: Request, body: UrlImportIn, principal: CurrentPrincipal, session: SessionDep,
                          settings: SettingsDep) -> ImportResult:
    owner = await _in_worker(lambda: uploads.prepare_uploaded_audience(
        session, principal, name=body.name, region_code=body.region_code, account_id=body.account_id))
    staged = await _fetch(request, session, settings, body.url, owner)

    def work() -> ImportResult:
        audience, upload = uploads.create_uploaded_audience(
            session, principal, name=body.name, region_code=body.region_code, id_type=body.id_type,
            chunks=_staged_chunks(staged), max_bytes=settings.max_upload_bytes, account_id=body.account_id,
            source=UploadSource.URL, source_name=display_url(body.url),
        )
        session.commit()
        return ImportResult(audience=_read(audience), report=UploadReportRead.model_validate(upload))

    with staged:
        return await _in_worker(work)


@router.post("/labels", response_model=AudienceRead, status_code=status.HTTP_201_CREATED,
             summary="Create a label audience from conditions over device profiles; built at once")
def create_label_audience(body: LabelAudienceCreate, principal: CurrentPrincipal, session: SessionDep
                          ) -> AudienceRead:
    audience = label_audiences.create_label_audience(session, principal, body)
    session.commit()
    audience = label_audiences.rebuild_label_audience(session, principal, audience.id)
    return _read(audience)


@router.post("/batch-delete", response_model=BatchDeleteOut,
             summary="Delete audiences; those live ad groups (enabled or paused) target are refused till detached")
def batch_delete(body: BatchDeleteIn, principal: CurrentPrincipal, session: SessionDep) -> BatchDeleteOut:
    out = service.delete_audiences(session, principal, body.ids, partial_failure=body.partial_failure,
                                   validate_only=body.validate_only)
    if body.validate_only or not out.deleted:
        session.rollback()
    else:
        session.commit()
    return out


@router.get("/reach", response_model=ReachRead,
            summary="Distinct devices in any of `include` and none of `exclude`, from the real memberships")
def reach(
    principal: CurrentPrincipal,
    session: SessionDep,
    include: Annotated[AudienceIds, Query(min_length=1, max_length=50, description="Audience ids to include.")],
    exclude: Annotated[AudienceIds, Query(max_length=50, default_factory=list,
                                          description="Audience ids to exclude.")],
) -> ReachRead:
    return service.estimate_reach(session, principal, include, exclude)


@router.get("/{audience_id}", response_model=AudienceRead, summary="Get an audience with its size and status")
def get_audience(audience_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> AudienceRead:
    return _read(service.get_audience(session, principal, audience_id))


@router.patch("/{audience_id}", response_model=AudienceRead,
              summary="Rename, move region, or change a label audience's rule (rebuilt at once)")
def update_audience(audience_id: IdPath, body: AudienceUpdate, principal: CurrentPrincipal,
                    session: SessionDep) -> AudienceRead:
    audience, rule_changed = label_audiences.update_audience(session, principal, audience_id, body)
    session.commit()
    if rule_changed:
        audience = label_audiences.rebuild_label_audience(session, principal, audience.id)
    return _read(audience)


@router.post("/{audience_id}/upload", response_model=ImportResult, openapi_extra=UPLOAD_BODY,
             responses=error_responses(415),
             summary="Append a later file's devices to an audience, or reduce it by them")
async def change_audience_by_upload(
    audience_id: IdPath,
    request: Request,
    principal: CurrentPrincipal,
    session: SessionDep,
    settings: SettingsDep,
    mode: Annotated[UploadMode, Query(description="append or reduce")] = UploadMode.APPEND,
    filename: FilenameQuery = None,
) -> ImportResult:
    uploads.check_file_name(filename)
    await _in_worker(lambda: uploads.prepare_change(session, principal, audience_id))
    staged, boundary = await _receive_file(request, session, settings)

    def work() -> ImportResult:
        source_name = _file_source_name(staged, boundary, filename)
        audience, upload = uploads.change_uploaded_audience(
            session, principal, audience_id, mode=mode, chunks=_file_chunks(staged, boundary),
            max_bytes=settings.max_upload_bytes, source=UploadSource.UPLOAD, source_name=source_name,
        )
        session.commit()
        return ImportResult(audience=_read(audience), report=UploadReportRead.model_validate(upload))

    with staged:
        return await _in_worker(work)


@router.post("/{audience_id}/import", response_model=ImportResult, responses=IMPORTS_RESPONSE,
             summary="Append or reduce an audience with a file the server fetches")
async def change_audience_by_url(audience_id: IdPath, request: Request, body: UrlChangeIn,
                                 principal: CurrentPrincipal, session: SessionDep,
                                 settings: SettingsDep) -> ImportResult:
    owner = await _in_worker(lambda: uploads.prepare_change(session, principal, audience_id).account_id)
    staged = await _fetch(request, session, settings, body.url, owner)

    def work() -> ImportResult:
        audience, upload = uploads.change_uploaded_audience(
            session, principal, audience_id, mode=body.mode, chunks=_staged_chunks(staged),
            max_bytes=settings.max_upload_bytes, source=UploadSource.URL, source_name=display_url(body.url),
        )
        session.commit()
        return ImportResult(audience=_read(audience), report=UploadReportRead.model_validate(upload))

    with staged:
        return await _in_worker(work)


@router.get("/{audience_id}/uploads", response_model=list[UploadReportRead],
            summary="The validation report of every file that built or changed the audience")
def list_uploads(audience_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> list[UploadReportRead]:
    return [UploadReportRead.model_validate(u) for u in service.list_uploads(session, principal, audience_id)]


@router.post("/{audience_id}/refresh", response_model=AudienceRead,
             summary="Rebuild a label audience from the device profiles now")
def refresh_audience(audience_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> AudienceRead:
    return _read(label_audiences.rebuild_label_audience(session, principal, audience_id))


@router.delete("/{audience_id}", status_code=status.HTTP_204_NO_CONTENT,
               summary="Delete an audience no enabled ad group targets")
def delete_audience(audience_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> None:
    out = service.delete_audiences(session, principal, [audience_id])
    if out.failures:
        failure = out.failures[0]
        if failure.code == "not_found":
            raise NotFound(failure.message)
        raise InvalidState(failure.message, code=failure.code, fields=[FieldError(
            "audience_id", failure.code, message="ad groups target this audience; detach it first",
            limit=failure.ad_group_ids, actual=audience_id)])
    session.commit()


# ---------- background work: profile writes and the daily label refresh ----------

PROFILE_FLUSH_SECONDS = 5.0
MAINTENANCE_SECONDS = 3600.0


class AudienceMaintenance:
    """A daemon thread: flushes buffered device profiles every few seconds; hourly, refreshes label
    audiences older than a day and prunes the profile store."""

    def __init__(self, factory: sessionmaker[Session], store: profiles.DeviceProfileStore):
        self._factory = factory
        self._store = store
        self._periodic = Periodic("audience-maintenance", self._step, interval=PROFILE_FLUSH_SECONDS, log=log,
                                  failure="audience maintenance failed", join_seconds=10.0)
        self._last_maintenance: datetime | None = None

    def start(self) -> None:
        self._periodic.start()

    def stop(self) -> None:
        self._periodic.stop()

    def _step(self) -> None:
        self._store.flush()
        now = utcnow()
        if self._last_maintenance is None or (now - self._last_maintenance).total_seconds() > MAINTENANCE_SECONDS:
            self._last_maintenance = now
            with session_scope(self._factory) as session:
                profiles.prune_device_profiles(session, now=now)
            label_audiences.refresh_due_label_audiences(self._factory, now=now)


def install(app: FastAPI) -> None:
    """`app.state.device_profiles` is the buffer serving records device profiles into."""
    store = profiles.DeviceProfileStore(app.state.session_factory)
    app.state.device_profiles = store
    maintenance = AudienceMaintenance(app.state.session_factory, store)

    def start(app: FastAPI) -> None:
        if app.state.settings.environment != "test":
            maintenance.start()

    def stop(app: FastAPI) -> None:
        maintenance.stop()
        try:
            store.flush()
        except Exception:
            log.exception("could not write the last buffered device profiles")

    app.state.on_startup.append(start)
    app.state.on_shutdown.append(stop)
