"""The catalogue admins keep: publishers, their ad spaces, and the device population used for estimates."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from adstack.core.db import Base, TimestampMixin
from adstack.core.money import Currency, Micros
from adstack.core.vocabulary import PlacementType


class Platform(StrEnum):
    ANDROID = "android"
    IOS = "ios"
    WEB = "web"


class CatalogueStatus(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"


class PopulationDimension(StrEnum):
    """The audience dimensions whose value shares the device-population table holds."""

    GENDER = "gender"
    AGE_RANGE = "age_range"
    LANGUAGE = "language"
    NETWORK = "network"
    CARRIER = "carrier"
    DEVICE_MODEL = "device_model"
    OS_VERSION = "os_version"


class Publisher(Base, TimestampMixin):
    __tablename__ = "publishers"
    # Deleted ids are not given again on SQLite: ad groups, bookings and reports name publishers by id.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    app_package: Mapped[str] = mapped_column(String(255), index=True)
    platform: Mapped[str] = mapped_column(String(16), default=Platform.ANDROID)
    country: Mapped[str] = mapped_column(String(2))
    status: Mapped[str] = mapped_column(String(16), default=CatalogueStatus.ACTIVE)


class AdSpace(Base, TimestampMixin):
    __tablename__ = "ad_spaces"
    __table_args__ = (
        Index("ix_ad_spaces_publisher_placement", "publisher_id", "placement_type"),
        # Deleted ids are not given again on SQLite: ad groups, CPT bookings and reports name ad spaces by id.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    publisher_id: Mapped[int] = mapped_column(ForeignKey("publishers.id"))
    name: Mapped[str] = mapped_column(String(200))
    placement_type: Mapped[str] = mapped_column(String(32))
    accepted_formats: Mapped[list[str]] = mapped_column(JSON, default=list)
    sizes: Mapped[list[str]] = mapped_column(JSON, default=list)
    reserve_price_micros: Mapped[int] = mapped_column(default=0)
    reserve_currency: Mapped[str] = mapped_column(String(3), default=Currency.USD)
    status: Mapped[str] = mapped_column(String(16), default=CatalogueStatus.ACTIVE)


class DevicePopulation(Base, TimestampMixin):
    """One country's device population: how many devices are active a day, how they split along each
    targeting dimension, and how many ads a device sees a day per placement type."""

    __tablename__ = "device_populations"

    id: Mapped[int] = mapped_column(primary_key=True)
    country: Mapped[str] = mapped_column(String(2), unique=True)
    daily_active_devices: Mapped[int]
    # {"gender": {"male": 0.56, "female": 0.44}, "os_version": {"13": 0.3, ...}, ...}
    shares: Mapped[dict[str, dict[str, float]]] = mapped_column(JSON, default=dict)
    # {"banner": 6.0, "interstitial": 2.5, ...}
    impressions_per_device: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)


# ---------- API schemas ----------

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
PackageName = Annotated[
    str,
    StringConstraints(max_length=255, pattern=r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)+$"),
]
CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
FormatCode = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_]{0,63}$")]
SizeText = Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{0,4}x[1-9][0-9]{0,4}$")]
ShareKey = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Share = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
ShareTable = dict[PopulationDimension, dict[str, float]]


class PublisherCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    app_package: PackageName
    platform: Platform = Platform.ANDROID
    country: CountryCode
    status: CatalogueStatus = CatalogueStatus.ACTIVE


class PublisherUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    app_package: PackageName | None = None
    platform: Platform | None = None
    country: CountryCode | None = None
    status: CatalogueStatus | None = None


class PublisherRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    app_package: str
    platform: Platform
    country: str
    status: CatalogueStatus
    created_at: datetime
    updated_at: datetime


class AdSpaceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    publisher_id: int = Field(ge=1, le=2**63 - 1)
    name: Name
    placement_type: PlacementType
    accepted_formats: list[FormatCode] = Field(min_length=1, max_length=50,
                                               description="Creative format codes this ad space accepts.")
    sizes: list[SizeText] = Field(default_factory=list, max_length=50, description="e.g. 1200x628")
    reserve_price_micros: Micros = 0
    reserve_currency: Currency = Currency.USD
    status: CatalogueStatus = CatalogueStatus.ACTIVE


class AdSpaceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    placement_type: PlacementType | None = None
    accepted_formats: list[FormatCode] | None = Field(default=None, min_length=1, max_length=50)
    sizes: list[SizeText] | None = Field(default=None, max_length=50)
    reserve_price_micros: Micros | None = None
    reserve_currency: Currency | None = None
    status: CatalogueStatus | None = None


class AdSpaceRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    publisher_id: int
    name: str
    placement_type: PlacementType
    accepted_formats: list[str]
    sizes: list[str]
    reserve_price_micros: int
    reserve_currency: Currency
    status: CatalogueStatus
    created_at: datetime
    updated_at: datetime


class DevicePopulationIn(BaseModel):
    """An operator's figures for one country. Shares of one dimension add up to at most 1."""

    model_config = ConfigDict(extra="forbid")

    daily_active_devices: int = Field(ge=0, le=10**11)
    shares: dict[PopulationDimension, dict[ShareKey, Share]] = Field(default_factory=dict)
    impressions_per_device: dict[PlacementType, Annotated[float, Field(ge=0, le=1000, allow_inf_nan=False)]] = Field(
        default_factory=dict, description="Average daily ad impressions per active device, per placement type."
    )

    @field_validator("shares")
    @classmethod
    def _bounded(cls, value: ShareTable) -> ShareTable:
        for dimension, values in value.items():
            if len(values) > 500:
                raise ValueError(f"{dimension.value}: at most 500 values")
            if sum(values.values()) > 1.0001:
                raise ValueError(f"{dimension.value}: shares add up to more than 1")
        return value

    def as_columns(self) -> dict[str, Any]:
        return {
            "daily_active_devices": self.daily_active_devices,
            "shares": {d.value: dict(v) for d, v in self.shares.items()},
            "impressions_per_device": {p.value: v for p, v in self.impressions_per_device.items()},
        }


class DevicePopulationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    country: str
    daily_active_devices: int
    shares: dict[str, dict[str, float]]
    impressions_per_device: dict[str, float]
    updated_at: datetime
