"""Measurement-partner data connectors: credentials, app bindings, pulled metric rows and pull runs."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from sqlalchemy import JSON, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from adstack.core.db import Base, TimestampMixin
from adstack.core.timeutil import utcnow


class ConnectorPartner(StrEnum):
    ADJUST = "adjust"


class AttributionType(StrEnum):
    CLICK = "click"
    IMPRESSION = "impression"
    ALL = "all"


class AttributionSource(StrEnum):
    FIRST = "first"
    DYNAMIC = "dynamic"


class ConnectionStatus(StrEnum):
    ACTIVE = "active"
    ERROR = "error"
    DISABLED = "disabled"


class PartnerConnection(Base, TimestampMixin):
    """An account's credentials at a measurement partner. The API token is stored encrypted."""

    __tablename__ = "partner_connections"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    partner: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(100))
    token_ciphertext: Mapped[str] = mapped_column(String(1000))
    token_hint: Mapped[str] = mapped_column(String(40))  # masked, e.g. "************a1b2"
    status: Mapped[str] = mapped_column(String(16), default=ConnectionStatus.ACTIVE)
    last_error: Mapped[str] = mapped_column(String(500), default="")
    last_pulled_at: Mapped[datetime | None]


class AppBinding(Base, TimestampMixin):
    """One partner app bound to a connection, with the settings that must match the partner's dashboard."""

    __tablename__ = "partner_app_bindings"
    __table_args__ = (UniqueConstraint("connection_id", "app_token"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("partner_connections.id"), index=True)
    account_id: Mapped[int] = mapped_column(index=True)
    app_token: Mapped[str] = mapped_column(String(64))
    app_name: Mapped[str] = mapped_column(String(200), default="")
    package_name: Mapped[str] = mapped_column(String(255), default="")
    utc_offset: Mapped[str] = mapped_column(String(6), default="+00:00")
    attribution_type: Mapped[str] = mapped_column(String(16), default=AttributionType.CLICK)
    attribution_source: Mapped[str] = mapped_column(String(16), default=AttributionSource.DYNAMIC)
    attribution_status: Mapped[list[str]] = mapped_column(JSON, default=list)
    ad_revenue_sources: Mapped[list[str]] = mapped_column(JSON, default=list)
    enabled: Mapped[bool] = mapped_column(default=True)
    last_error: Mapped[str] = mapped_column(String(500), default="")


class PartnerMetricRow(Base):
    """One partner-reported row per binding, day, campaign and country. A re-pull replaces the row."""

    __tablename__ = "partner_metric_rows"
    __table_args__ = (
        UniqueConstraint("binding_id", "day", "campaign_label", "country"),
        Index("ix_partner_metric_rows_account_day", "account_id", "day"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    binding_id: Mapped[int] = mapped_column(ForeignKey("partner_app_bindings.id"))
    account_id: Mapped[int]
    partner: Mapped[str] = mapped_column(String(32))
    day: Mapped[date]
    campaign_label: Mapped[str] = mapped_column(String(255))  # as the partner names it
    campaign_id: Mapped[int | None] = mapped_column(index=True)  # adstack campaign it matched, if any
    country: Mapped[str] = mapped_column(String(8), default="")
    # Decimal strings as the partner sent them, so nothing is rounded through a float.
    metrics: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    pulled_at: Mapped[datetime] = mapped_column(default=utcnow)


class PullRun(Base):
    __tablename__ = "partner_pull_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("partner_connections.id"), index=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    date_from: Mapped[date]
    date_to: Mapped[date]
    status: Mapped[str] = mapped_column(String(16), default="running")  # running | succeeded | failed
    rows: Mapped[int] = mapped_column(default=0)
    attempts: Mapped[int] = mapped_column(default=0)
    error: Mapped[str] = mapped_column(String(500), default="")


# ---------- API schemas ----------

Token = Annotated[str, StringConstraints(min_length=8, max_length=500, pattern=r"^[\x21-\x7e]+$")]
UtcOffset = Annotated[str, StringConstraints(pattern=r"^[+-](0\d|1[0-4]):(00|30|45)$")]


class ConnectionCreate(BaseModel):
    account_id: int | None = Field(default=None, ge=1, le=2**63 - 1)
    partner: ConnectorPartner = ConnectorPartner.ADJUST
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    api_token: Token


class ConnectionUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    api_token: Token | None = None
    status: ConnectionStatus | None = None

    @field_validator("name", "api_token", "status")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Every column behind these fields is NOT NULL: a field is left out to keep it, never nulled.
        if value is None:
            raise ValueError("may be left out but not set to null")
        return value


class ConnectionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    account_id: int
    partner: ConnectorPartner
    name: str
    token_hint: str = Field(description="The token is never shown again in full.")
    status: ConnectionStatus
    last_error: str
    last_pulled_at: datetime | None
    created_at: datetime


class BindingCreate(BaseModel):
    app_token: Annotated[str, StringConstraints(min_length=4, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    app_name: Annotated[str, StringConstraints(max_length=200)] = ""
    package_name: Annotated[str, StringConstraints(max_length=255)] = ""
    utc_offset: UtcOffset = "+00:00"
    attribution_type: AttributionType = AttributionType.CLICK
    attribution_source: AttributionSource = AttributionSource.DYNAMIC
    attribution_status: list[Annotated[str, StringConstraints(min_length=1, max_length=40)]] = Field(
        default_factory=list, max_length=10)
    ad_revenue_sources: list[Annotated[str, StringConstraints(min_length=1, max_length=60)]] = Field(
        default_factory=list, max_length=30)


class BindingUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    app_name: Annotated[str, StringConstraints(max_length=200)] | None = None
    package_name: Annotated[str, StringConstraints(max_length=255)] | None = None
    utc_offset: UtcOffset | None = None
    attribution_type: AttributionType | None = None
    attribution_source: AttributionSource | None = None
    attribution_status: list[Annotated[str, StringConstraints(min_length=1, max_length=40)]] | None = Field(
        default=None, max_length=10)
    ad_revenue_sources: list[Annotated[str, StringConstraints(min_length=1, max_length=60)]] | None = Field(
        default=None, max_length=30)
    enabled: bool | None = None

    @field_validator("app_name", "package_name", "utc_offset", "attribution_type", "attribution_source",
                     "attribution_status", "ad_revenue_sources", "enabled")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("may be left out but not set to null")
        return value


class BindingRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    connection_id: int
    account_id: int
    app_token: str
    app_name: str
    package_name: str
    utc_offset: str
    attribution_type: AttributionType
    attribution_source: AttributionSource
    attribution_status: list[str]
    ad_revenue_sources: list[str]
    enabled: bool
    last_error: str


class PullRequest(BaseModel):
    date_from: date | None = Field(default=None, description="Defaults to three days ago.")
    date_to: date | None = Field(default=None, description="Defaults to today.")


class PullRunRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    connection_id: int
    started_at: datetime
    finished_at: datetime | None
    date_from: date
    date_to: date
    status: str
    rows: int
    attempts: int
    error: str


SETTINGS_MATCH_NOTICE = (
    "Use the same time zone, attribution type, attribution source, attribution status and ad revenue sources "
    "as in your Adjust dashboard; otherwise the numbers pulled here will differ from the ones Adjust shows."
)
