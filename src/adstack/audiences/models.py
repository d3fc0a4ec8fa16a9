"""Audiences (uploaded id files and label rules), their stored membership, upload reports, the device
profile store that label audiences are built from, and the operator-editable regions and app categories."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import JSON, BigInteger, ForeignKey, Index, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from adstack.audiences.ids import IdType
from adstack.audiences.labels import CategoryCode, LabelRule, PackageName
from adstack.core.db import Base, TimestampMixin
from adstack.core.ids import EntityId
from adstack.core.timeutil import utcnow


class AudienceKind(StrEnum):
    UPLOADED = "uploaded"
    LABEL = "label"


class AudienceStatus(StrEnum):
    BUILDING = "building"
    READY = "ready"
    FAILED = "failed"


class UploadMode(StrEnum):
    CREATE = "create"
    APPEND = "append"
    REDUCE = "reduce"


class UploadSource(StrEnum):
    UPLOAD = "upload"
    URL = "url"


# Signed 64-bit on every database (device keys are stored two's-complement, see ids.to_signed).
DeviceKeyColumn = BigInteger()


def new_generation() -> str:
    return uuid.uuid4().hex


class AudienceRegion(Base):
    """Country or region clusters an audience is built for; operators edit the list. A label audience of a
    cluster holds only devices whose ad requests came from one of its countries."""

    __tablename__ = "audience_regions"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(8), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    # ISO 3166-1 alpha-2 codes; empty means the cluster's own code, when that is a country code.
    countries: Mapped[list[str]] = mapped_column(JSON, default=list)

    @property
    def country_codes(self) -> list[str]:
        return list(self.countries) if self.countries else ([self.code] if len(self.code) == 2 else [])


class Audience(Base, TimestampMixin):
    __tablename__ = "audiences"
    __table_args__ = (
        UniqueConstraint("account_id", "name"),
        Index("ix_audiences_account_status", "account_id", "status"),
        # SQLite would otherwise give a deleted audience's id to the next one, and ad groups name audiences by id.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))
    region_code: Mapped[str] = mapped_column(String(8))
    id_type: Mapped[str | None] = mapped_column(String(16))  # uploaded audiences only
    key_space: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16))
    status_reason: Mapped[str] = mapped_column(String(500), default="")
    size: Mapped[int] = mapped_column(default=0)
    version: Mapped[int] = mapped_column(default=0)  # bumped whenever membership changes
    # New on every membership write: serving reuses a loaded membership only for the same id and generation.
    generation: Mapped[str] = mapped_column(String(32), default=new_generation)
    rule: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # label audiences only
    refreshed_at: Mapped[datetime | None]
    created_by_user_id: Mapped[int | None]


class AudienceSegment(Base):
    """One partition of an audience's membership: its device keys, sorted (`bitmaps.serialize`)."""

    __tablename__ = "audience_segments"

    audience_id: Mapped[int] = mapped_column(ForeignKey("audiences.id", ondelete="CASCADE"), primary_key=True)
    partition: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    cardinality: Mapped[int]
    data: Mapped[bytes] = mapped_column(LargeBinary)


class AudienceUpload(Base):
    """The validation report of each file that built, appended to or reduced an audience."""

    __tablename__ = "audience_uploads"

    id: Mapped[int] = mapped_column(primary_key=True)
    audience_id: Mapped[int] = mapped_column(ForeignKey("audiences.id", ondelete="CASCADE"), index=True)
    mode: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16))
    source_name: Mapped[str] = mapped_column(String(500), default="")
    id_type: Mapped[str] = mapped_column(String(16))
    bytes_read: Mapped[int]
    lines: Mapped[int]
    blank_lines: Mapped[int]
    valid_lines: Mapped[int]
    invalid_lines: Mapped[int]
    duplicate_lines: Mapped[int]
    distinct_ids: Mapped[int]
    changed: Mapped[int]  # devices added (create, append) or removed (reduce)
    size_after: Mapped[int]
    invalid_examples: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_by_user_id: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PackageCategory(Base):
    """Which category an app package belongs to; operators edit the table."""

    __tablename__ = "package_categories"

    id: Mapped[int] = mapped_column(primary_key=True)
    package: Mapped[str] = mapped_column(String(255), unique=True)
    category: Mapped[str] = mapped_column(String(64), index=True)


class DeviceProfile(Base):
    """A device as ad requests report it, by key only: the raw GAID is never stored."""

    __tablename__ = "device_profiles"

    device_key: Mapped[int] = mapped_column(DeviceKeyColumn, primary_key=True, autoincrement=False)
    sha256_key: Mapped[int] = mapped_column(DeviceKeyColumn, index=True)
    country: Mapped[str | None] = mapped_column(String(2), index=True)  # of the latest request that said
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime] = mapped_column(index=True)


class DeviceTag(Base):
    """Portrait tags (interests and the like) a portrait pipeline assigns to devices through the API; portrait
    packages are label audiences over them."""

    __tablename__ = "device_tags"

    tag: Mapped[str] = mapped_column(String(64), primary_key=True)
    device_key: Mapped[int] = mapped_column(DeviceKeyColumn, primary_key=True, autoincrement=False)
    updated_at: Mapped[datetime]


class DeviceApp(Base):
    """An app a device reported; `installed` turns false when a later report no longer lists it."""

    __tablename__ = "device_apps"
    __table_args__ = (Index("ix_device_apps_package", "package", "installed"),)

    device_key: Mapped[int] = mapped_column(DeviceKeyColumn, primary_key=True, autoincrement=False)
    package: Mapped[str] = mapped_column(String(255), primary_key=True)
    installed: Mapped[bool] = mapped_column(default=True)
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]


class DeviceAppUsage(Base):
    """Seconds of use of an app on a device per UTC day, summed from the reports."""

    __tablename__ = "device_app_usage"
    __table_args__ = (Index("ix_device_app_usage_package_day", "package", "day"),)

    device_key: Mapped[int] = mapped_column(DeviceKeyColumn, primary_key=True, autoincrement=False)
    package: Mapped[str] = mapped_column(String(255), primary_key=True)
    day: Mapped[date] = mapped_column(primary_key=True)
    seconds: Mapped[int]


# ---------- API schemas ----------

AudienceName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
RegionCode = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9_]{2,8}$")]
ImportUrl = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class AudienceRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    account_id: int
    name: str
    kind: AudienceKind
    region_code: str
    id_type: IdType | None
    key_space: str
    status: AudienceStatus
    status_reason: str
    size: int = Field(description="Distinct devices in the audience.")
    version: int
    rule: LabelRule | None
    refreshed_at: datetime | None
    created_at: datetime
    updated_at: datetime


class UploadReportRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    audience_id: int
    mode: UploadMode
    source: UploadSource
    source_name: str
    id_type: IdType
    bytes_read: int
    lines: int
    blank_lines: int
    valid_lines: int
    invalid_lines: int
    duplicate_lines: int
    distinct_ids: int
    changed: int = Field(description="Devices added (create, append) or removed (reduce).")
    size_after: int
    invalid_examples: list[dict[str, Any]]
    created_at: datetime


class ImportResult(BaseModel):
    audience: AudienceRead
    report: UploadReportRead


class UrlImportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: AudienceName
    region_code: RegionCode
    id_type: IdType
    url: ImportUrl = Field(description="http(s)://... or webhdfs://namenode:port/path")
    account_id: EntityId | None = Field(default=None, description="Defaults to your own account.")


class UrlChangeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: ImportUrl
    mode: Annotated[UploadMode, Field(description="append or reduce")] = UploadMode.APPEND


class LabelAudienceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: AudienceName
    region_code: RegionCode
    rule: LabelRule
    account_id: EntityId | None = None


class AudienceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: AudienceName | None = None
    region_code: RegionCode | None = None
    rule: LabelRule | None = Field(default=None, description="Label audiences only; rebuilds membership.")


class BatchDeleteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[EntityId] = Field(min_length=1, max_length=100)
    partial_failure: bool = Field(default=False, description="Delete what can be deleted and report the rest.")
    validate_only: bool = Field(default=False, description="Check only; delete nothing.")


class DeleteFailure(BaseModel):
    id: int
    code: str
    message: str
    ad_group_ids: list[int] = Field(default_factory=list)


class BatchDeleteOut(BaseModel):
    deleted: list[int]
    failures: list[DeleteFailure]
    validate_only: bool


CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]


class RegionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: RegionCode
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    countries: list[CountryCode] = Field(default_factory=list, max_length=250,
                                         description="The cluster's countries (ISO alpha-2); empty: the code's "
                                                     "own country when it is one, else none (its label "
                                                     "audiences hold no device until countries are named).")


class RegionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    code: str
    name: str
    countries: list[str] = Field(validation_alias=AliasChoices("country_codes", "countries"))


TagName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.:-]{0,63}$")]


class DeviceTagsIn(BaseModel):
    """A portrait pipeline's write: devices gaining or losing a tag, or the tag's whole device set."""

    model_config = ConfigDict(extra="forbid")

    tag: TagName
    id_type: Annotated[IdType, Field(description="gaid or gaid_md5: the key space serving matches in.")]
    ids: list[Annotated[str, StringConstraints(max_length=64)]] = Field(max_length=10_000)
    mode: Annotated[str, Field(pattern="^(add|remove|replace)$", description="add, remove or replace")] = "add"


class DeviceTagsOut(BaseModel):
    tag: str
    devices: int = Field(description="Devices holding the tag after the write.")
    changed: int
    invalid_ids: int


class TagCount(BaseModel):
    tag: str
    devices: int


class PackageCategoryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    package: PackageName
    category: CategoryCode


class PackageCategoryRead(PackageCategoryIn):
    model_config = ConfigDict(from_attributes=True)

    id: int


class ReachRead(BaseModel):
    size: int = Field(description="Distinct devices in any included audience and in no excluded one.")
    exact: bool = Field(description="False when SHA-256 audiences, which cannot be joined with the others, "
                                    "are counted by their sizes.")
