"""Media uploads: stream to disk under a cap, identify from content, store once per digest, serve by key."""

from __future__ import annotations

import hashlib
import os
import secrets
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from adstack.accounts import tenancy
from adstack.accounts.models import Principal
from adstack.core.errors import FieldError, NotFound, PayloadTooLarge, ValidationFailed
from adstack.media.models import MediaAsset, MediaKind
from adstack.media.sniff import sniff
from adstack.oplog import service as oplog
from adstack.oplog.models import Operation

MEDIA_ASSET = "media_asset"
CHUNK_BYTES = 1 << 16

# What a file name's extension claims; a claim the content contradicts is refused.
_EXTENSION_KINDS: dict[str, MediaKind] = {
    **dict.fromkeys((".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp"), MediaKind.IMAGE),
    **dict.fromkeys((".mp4", ".m4v", ".mov", ".webm", ".avi", ".mkv", ".3gp"), MediaKind.VIDEO),
}


class StagedUpload:
    """Receives one upload into a temporary file in the media directory, counting and hashing as bytes arrive.

    The cap is enforced while streaming, so an oversized upload never lands on disk in full.
    """

    def __init__(self, media_dir: Path, *, max_bytes: int, field: str = "file"):
        staging = media_dir / "staging"
        staging.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=staging, prefix="upload-")
        self.path = Path(name)
        self._out: BinaryIO | None = os.fdopen(handle, "wb")
        self._digest = hashlib.sha256()
        self.max_bytes = max_bytes
        self.field = field
        self.size = 0

    def write(self, chunk: bytes) -> None:
        if self._out is None:
            raise ValueError("the upload is already closed")
        self.size += len(chunk)
        if self.size > self.max_bytes:
            self.discard()
            raise PayloadTooLarge(
                f"the file exceeds the upload limit of {self.max_bytes} bytes",
                fields=[FieldError(field=self.field, rule="max_size_bytes", limit=self.max_bytes, actual=self.size,
                                   message=f"at most {self.max_bytes} bytes per upload")],
            )
        self._digest.update(chunk)
        self._out.write(chunk)

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def discard(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    def __enter__(self) -> StagedUpload:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        # Whatever was not moved into the store by now is garbage.
        self.discard()


def _claimed_kind(filename: str, declared: MediaKind | None) -> MediaKind | None:
    if declared is not None:
        return declared
    return _EXTENSION_KINDS.get(Path(filename).suffix.lower())


def store_staged(
    session: Session,
    principal: Principal,
    *,
    staged: StagedUpload,
    filename: str,
    media_dir: Path,
    account_id: int | None = None,
    kind: MediaKind | None = None,
) -> MediaAsset:
    """Identify a fully received upload from its bytes and keep it as an asset of the account."""
    target_account = tenancy.resolve_account_id(session, principal, account_id)
    staged.close()
    if staged.size == 0:
        raise ValidationFailed.single(staged.field, "required", "the file is empty", actual=0)
    found = sniff(staged.path, field=staged.field)
    claimed = _claimed_kind(filename, kind)
    if claimed is not None and claimed != found.kind:
        raise ValidationFailed.single(
            staged.field, "file_format",
            f"the file is presented as {claimed.value} but its content is a {found.format.value} {found.kind.value}",
            limit=claimed.value, actual=found.format.value,
        )
    digest = staged.sha256
    relative = Path("assets") / digest[:2] / digest
    final_path = media_dir / relative
    final_path.parent.mkdir(parents=True, exist_ok=True)
    if final_path.exists():
        staged.discard()  # identical bytes are stored once
    else:
        staged.path.replace(final_path)
    asset = MediaAsset(
        account_id=target_account, kind=found.kind.value, format=found.format.value, width=found.width,
        height=found.height, duration_ms=found.duration_ms, video_codec=found.video_codec, size_bytes=staged.size,
        sha256=digest, storage_path=relative.as_posix(), public_key=secrets.token_urlsafe(24),
        original_filename=Path(filename.replace("\\", "/")).name[:255], created_by_user_id=principal.user_id,
    )
    session.add(asset)
    session.flush()
    oplog.record(session, actor=principal, operation=Operation.CREATE, object_type=MEDIA_ASSET, object_id=asset.id,
                 object_name=asset.original_filename, account_id=asset.account_id, after=snapshot(asset))
    return asset


def upload(
    session: Session,
    principal: Principal,
    *,
    stream: BinaryIO,
    filename: str,
    media_dir: Path,
    max_bytes: int,
    account_id: int | None = None,
    kind: MediaKind | None = None,
) -> MediaAsset:
    """Store a file read from a stream (console, CLI, demo data); the API streams through StagedUpload itself."""
    tenancy.resolve_account_id(session, principal, account_id)  # refuse before reading a byte
    with StagedUpload(media_dir, max_bytes=max_bytes) as staged:
        while chunk := stream.read(CHUNK_BYTES):
            staged.write(chunk)
        return store_staged(session, principal, staged=staged, filename=filename, media_dir=media_dir,
                            account_id=account_id, kind=kind)


def snapshot(asset: MediaAsset) -> dict[str, Any]:
    return {
        "kind": asset.kind, "format": asset.format, "width": asset.width, "height": asset.height,
        "duration_ms": asset.duration_ms, "size_bytes": asset.size_bytes, "sha256": asset.sha256,
        "original_filename": asset.original_filename,
    }


def get_asset(session: Session, principal: Principal, asset_id: int) -> MediaAsset:
    asset = session.get(MediaAsset, asset_id)
    if asset is None or not tenancy.can_see_account(session, principal, asset.account_id):
        raise NotFound(f"media {asset_id} not found")
    return asset


def assets_of_account(session: Session, account_id: int, asset_ids: set[int]) -> dict[int, MediaAsset]:
    """The named assets that belong to the account; ids of other accounts are simply absent."""
    if not asset_ids:
        return {}
    stmt = select(MediaAsset).where(MediaAsset.account_id == account_id, MediaAsset.id.in_(asset_ids))
    return {asset.id: asset for asset in session.scalars(stmt)}


def list_assets(
    session: Session,
    principal: Principal,
    *,
    account_id: int | None = None,
    kind: str | None = None,
    media_format: str | None = None,
    query: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[MediaAsset], int]:
    stmt = select(MediaAsset)
    if account_id is not None:
        tenancy.ensure_account_visible(session, principal, account_id)
        stmt = stmt.where(MediaAsset.account_id == account_id)
    else:
        visible = tenancy.visible_account_ids(session, principal)
        if visible is not None:
            stmt = stmt.where(MediaAsset.account_id.in_(visible))
    if kind:
        stmt = stmt.where(MediaAsset.kind == kind)
    if media_format:
        stmt = stmt.where(MediaAsset.format == media_format)
    if query:
        conditions: list[ColumnElement[bool]] = [MediaAsset.original_filename.icontains(query, autoescape=True)]
        if query.isdecimal() and len(query) < 19:
            conditions.append(MediaAsset.id == int(query))
        stmt = stmt.where(or_(*conditions))
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.scalars(stmt.order_by(MediaAsset.id.desc()).limit(limit).offset(offset))
    return list(rows), total


def by_public_key(session: Session, public_key: str) -> MediaAsset | None:
    return session.scalar(select(MediaAsset).where(MediaAsset.public_key == public_key))


def file_path(asset: MediaAsset, media_dir: Path) -> Path:
    return media_dir / asset.storage_path


def public_url(asset: MediaAsset, base_url: str) -> str:
    """Where ad devices and previews load the file; the key is unguessable, so no sign-in is needed."""
    return f"{base_url.rstrip('/')}/media/{asset.public_key}"
