"""Media uploads (multipart, streamed to disk under a cap), listing, and the public file route."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, status
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

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
    FieldError,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
    error_responses,
)
from adstack.core.ids import MAX_ID
from adstack.media import service
from adstack.media.models import MediaAsset, MediaFormat, MediaKind, MediaPage, MediaRead

router = APIRouter(prefix="/api/v1/media", tags=["media"])
public_router = APIRouter(tags=["media"])

# Room for the multipart envelope and the small form fields around the file.
ENVELOPE_BYTES = 64 * 1024
MAX_FIELD_BYTES = 1024
MAX_FIELDS = 8


class BadMultipart(DomainError):
    code = "bad_request"
    status = 400


class _MultipartUpload:
    """Parses a multipart/form-data body as it streams in: the `file` part goes straight into a StagedUpload,
    the few small fields are kept in memory with a cap."""

    def __init__(self, staged: service.StagedUpload):
        self.staged = staged
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self._headers: dict[bytes, bytes] = {}
        self._header_name = b""
        self._header_value = b""
        self._part: str | None = None
        self._part_is_file = False
        self._buffer = bytearray()
        self._field_count = 0

    def on_part_begin(self) -> None:
        self._headers, self._part, self._part_is_file, self._buffer = {}, None, False, bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name, self._header_value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name")
        if name is None:
            raise BadMultipart("every multipart part needs a Content-Disposition name")
        self._part = name.decode("utf-8", "replace")
        if self._part == "file":
            if self.filename is not None:
                raise ValidationFailed.single("file", "max_count", "send one file per upload", limit=1, actual=2)
            self._part_is_file = True
            self.filename = options.get(b"filename", b"upload").decode("utf-8", "replace")
        else:
            self._field_count += 1
            if self._field_count > MAX_FIELDS:
                raise ValidationFailed.single("body", "max_fields", "too many form fields", limit=MAX_FIELDS)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._part_is_file:
            self.staged.write(data[start:end])
            return
        self._buffer += data[start:end]
        if len(self._buffer) > MAX_FIELD_BYTES:
            raise ValidationFailed.single(self._part or "body", "max_length", "form field too long",
                                          limit=MAX_FIELD_BYTES, actual=len(self._buffer))

    def on_part_end(self) -> None:
        if not self._part_is_file and self._part is not None:
            self.fields[self._part] = self._buffer.decode("utf-8", "replace")

    async def feed(self, boundary: bytes, chunks: AsyncIterator[bytes]) -> None:
        parser = MultipartParser(boundary, {
            "on_part_begin": self.on_part_begin, "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end, "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value, "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
        })
        try:
            async for chunk in chunks:
                parser.write(chunk)
            parser.finalize()
        except FormParserError as exc:
            raise BadMultipart("the multipart body is malformed") from exc


def _int_field(fields: dict[str, str], name: str) -> int | None:
    raw = fields.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdecimal() or not 1 <= int(raw) <= MAX_ID:
        raise ValidationFailed.single(name, "int_range", f"{name} must be an id between 1 and {MAX_ID}",
                                      limit=MAX_ID, actual=raw[:40])
    return int(raw)


def _kind_field(fields: dict[str, str]) -> MediaKind | None:
    raw = fields.get("kind", "").strip()
    if not raw:
        return None
    try:
        return MediaKind(raw)
    except ValueError:
        raise ValidationFailed.single("kind", "enum", "kind is image or video", limit=[k.value for k in MediaKind],
                                      actual=raw[:40]) from None


def _read(asset: MediaAsset) -> MediaRead:
    out = MediaRead.model_validate(asset)
    out.url = service.public_url(asset, "")
    return out


_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object",
            "required": ["file"],
            "properties": {
                "file": {"type": "string", "format": "binary",
                         "description": "A JPEG, PNG or GIF image, or an MP4 video; identified from its bytes."},
                "account_id": {"type": "integer", "minimum": 1, "maximum": MAX_ID,
                               "description": "The account that owns the file (agencies and platform staff)."},
                "kind": {"type": "string", "enum": [k.value for k in MediaKind],
                         "description": "What the file should be; refused if its content says otherwise."},
            },
        }}},
    },
}


@router.post("", response_model=MediaRead, status_code=status.HTTP_201_CREATED, openapi_extra=_UPLOAD_BODY,
             summary="Upload an image or video; its format, pixel size, duration and byte size are read from "
                     "the content", responses={413: {"description": "The file exceeds the upload limit."},
                                         **error_responses(415)})
async def upload_media(request: Request, principal: CurrentPrincipal, session: SessionDep,
                       settings: SettingsDep) -> MediaRead:
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise UnsupportedMediaType("send the file as multipart/form-data in a part named 'file'")
    limit = settings.max_upload_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdecimal() and int(declared) > limit + ENVELOPE_BYTES:
        # Refused before a byte is read.
        raise PayloadTooLarge(f"the file exceeds the upload limit of {limit} bytes", fields=[FieldError(
            field="file", rule="max_size_bytes", limit=limit, actual=int(declared),
            message=f"at most {limit} bytes per upload")])
    media_dir = settings.media_dir
    with service.StagedUpload(media_dir, max_bytes=limit) as staged:
        body = _MultipartUpload(staged)
        # The body may take up to body_deadline_s to arrive: it is received holding no database place.
        async with without_session(request, session):
            await body.feed(boundary, request.stream())
        if body.filename is None:
            raise ValidationFailed.single("file", "required", "a part named 'file' carrying the file is required")
        account_id = _int_field(body.fields, "account_id")
        kind = _kind_field(body.fields)

        def store() -> MediaRead:
            asset = service.store_staged(session, principal, staged=staged, filename=body.filename or "",
                                         media_dir=media_dir, account_id=account_id, kind=kind)
            session.commit()
            return _read(asset)

        return await run_in_threadpool(store)


@router.get("", response_model=MediaPage, summary="Media you can see, newest first")
def list_media(
    principal: CurrentPrincipal,
    session: SessionDep,
    account_id: OptionalId = None,
    kind: MediaKind | None = None,
    format: MediaFormat | None = None,
    q: Annotated[str | None, Query(max_length=200, description="File name or id.")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> MediaPage:
    rows, total = service.list_assets(session, principal, account_id=account_id, kind=kind, media_format=format,
                                      query=q, limit=limit, offset=offset)
    return MediaPage(total=total, items=[_read(a) for a in rows])


@router.get("/{media_id}", response_model=MediaRead, summary="Get one media asset")
def get_media(media_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> MediaRead:
    return _read(service.get_asset(session, principal, media_id))


PublicKey = Annotated[str, PathParam(min_length=16, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


@public_router.get("/media/{public_key}", response_class=FileResponse, include_in_schema=True,
                   summary="The file itself, for ad devices and previews (the key is unguessable)",
                   responses={200: {"content": {"image/png": {}, "image/jpeg": {}, "image/gif": {},
                                                "video/mp4": {}}}})
def media_content(public_key: PublicKey, session: SessionDep, settings: SettingsDep) -> FileResponse:
    asset = service.by_public_key(session, public_key)
    if asset is None:
        raise NotFound("media not found")
    path: Path = service.file_path(asset, settings.media_dir)
    if not path.is_file():
        raise NotFound("media not found")
    return FileResponse(path, media_type=asset.mime_type, headers={
        "Cache-Control": "public, max-age=31536000, immutable",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
    })
