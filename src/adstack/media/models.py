"""Media assets: images and videos an account uploads for its creatives, described by their real content."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from adstack.core.db import Base
from adstack.core.timeutil import utcnow


class MediaKind(StrEnum):
    IMAGE = "image"
    VIDEO = "video"


class MediaFormat(StrEnum):
    """Formats as sniffed from the bytes, never as named by the file or the client."""

    JPEG = "jpeg"
    PNG = "png"
    GIF = "gif"
    MP4 = "mp4"


MIME_TYPES: dict[str, str] = {
    MediaFormat.JPEG: "image/jpeg",
    MediaFormat.PNG: "image/png",
    MediaFormat.GIF: "image/gif",
    MediaFormat.MP4: "video/mp4",
}


class MediaAsset(Base):
    __tablename__ = "media_assets"
    __table_args__ = (Index("ix_media_assets_account_kind", "account_id", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    kind: Mapped[str] = mapped_column(String(8))
    format: Mapped[str] = mapped_column(String(8))
    width: Mapped[int]
    height: Mapped[int]
    duration_ms: Mapped[int | None]
    video_codec: Mapped[str] = mapped_column(String(40), default="")
    size_bytes: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    # Relative to the media directory, so the data dir can move.
    storage_path: Mapped[str] = mapped_column(String(300))
    # The unguessable name under which ad devices and previews load the file.
    public_key: Mapped[str] = mapped_column(String(64), unique=True)
    original_filename: Mapped[str] = mapped_column(String(255), default="")
    created_by_user_id: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def mime_type(self) -> str:
        return MIME_TYPES.get(self.format, "application/octet-stream")

    @property
    def size_kb(self) -> int:
        """Kilobytes rounded up, the unit format specs state their caps in."""
        return -(-self.size_bytes // 1024)


class MediaRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    account_id: int
    kind: MediaKind
    format: MediaFormat
    mime_type: str
    width: int = Field(description="Real pixel width, read from the file.")
    height: int = Field(description="Real pixel height, read from the file.")
    duration_ms: int | None = Field(description="Real duration of a video, read from the container.")
    video_codec: str
    size_bytes: int
    size_kb: int
    sha256: str
    original_filename: str
    url: str = Field(default="", description="Public address the file is served from.")
    created_at: datetime


class MediaPage(BaseModel):
    total: int
    items: list[MediaRead]
