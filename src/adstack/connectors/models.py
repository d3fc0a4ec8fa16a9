"""Measurement-partner data connectors: credentials, app bindings, pulled metric rows and pull runs."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator
from sqlalchemy import JSON, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from adstack.core.db import Base, TimestampMixin
from adstack.core.timeutil import utcnow


def _known_partner(value: str) -> str:
    from adstack.connectors.registry import partners

    if value not in partners():
        raise ValueError(f"must be one of {', '.join(partners())}")
    return value


PartnerName = Annotated[str, AfterValidator(_known_partner)]


class AttributionType(StrEnum):
    """Source: Adjust Reports endpoint, `attribution_types` (click, impression, engaged_ad)."""

    CLICK = "click"
    IMPRESSION = "impression"
    ENGAGED_AD = "engaged_ad"


class AttributionSource(StrEnum):
    FIRST = "first"
    DYNAMIC = "dynamic"


class Reattributed(StrEnum):
    """Source: Adjust Reports endpoint, `reattributed`: all users, only non-reattributed, only reattributed.
    The XMP guide calls this setting "Attribution status"."""

    ALL = "all"
    FALSE = "false"
    TRUE = "true"


class AdSpendMode(StrEnum):
    """Source: Adjust Reports endpoint, `ad_spend_mode`."""

    ADJUST = "adjust"
    NETWORK = "network"
    MIXED = "mixed"


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
    # Which of the token user's partner accounts to read (Adjust's X-Account-ID header); "" for the first.
    partner_account_id: Mapped[str] = mapped_column(String(32), default="")
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
    time_zone: Mapped[str] = mapped_column(String(64), default="")
    attribution_types: Mapped[list[str]] = mapped_column(JSON, default=lambda: [AttributionType.CLICK.value])
    attribution_source: Mapped[str] = mapped_column(String(16), default=AttributionSource.DYNAMIC)
    reattributed: Mapped[str] = mapped_column(String(8), default=Reattributed.ALL)
    ad_revenue_sources: Mapped[list[str]] = mapped_column(JSON, default=list)
    ad_spend_mode: Mapped[str] = mapped_column(String(8), default="")
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    enabled: Mapped[bool] = mapped_column(default=True)
    last_error: Mapped[str] = mapped_column(String(500), default="")


class PartnerMetricRow(Base):
    """One partner-reported row per binding, day, campaign, ad group, creative and country. A re-pull replaces
    the day's rows."""

    __tablename__ = "partner_metric_rows"
    __table_args__ = (
        UniqueConstraint("binding_id", "day", "campaign_label", "adgroup_label", "creative_label", "country"),
        Index("ix_partner_metric_rows_account_day", "account_id", "day"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    binding_id: Mapped[int] = mapped_column(ForeignKey("partner_app_bindings.id"))
    account_id: Mapped[int]
    partner: Mapped[str] = mapped_column(String(32))
    day: Mapped[date]
    campaign_label: Mapped[str] = mapped_column(String(255))  # as the partner names it
    campaign_id: Mapped[int | None] = mapped_column(index=True)  # adstack campaign it matched, if any
    adgroup_label: Mapped[str] = mapped_column(String(255), default="")
    ad_group_id: Mapped[int | None]  # adstack ad group it matched, where the link carries it
    creative_label: Mapped[str] = mapped_column(String(255), default="")
    creative_id: Mapped[int | None]
    country: Mapped[str] = mapped_column(String(8), default="")  # ISO 3166-1 alpha-2
    currency: Mapped[str] = mapped_column(String(3), default="")  # of the money metrics
    # Decimal strings as the partner sent them, so nothing is rounded through a float.
    metrics: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # Every cohort metric of the day is final (pulled at least COHORT_MATURITY_DAYS after it).
    mature: Mapped[bool] = mapped_column(default=False)
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


PartnerAccountId = Annotated[str, StringConstraints(pattern=r"^[0-9]{0,32}$")]


class ConnectionCreate(BaseModel):
    account_id: int | None = Field(default=None, ge=1, le=2**63 - 1)
    partner: PartnerName = "adjust"
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    api_token: Token
    partner_account_id: PartnerAccountId = Field(
        default="", description="Adjust: the account to read when your user belongs to several (sent as "
                                "X-Account-ID); empty reads the first.")


class ConnectionUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    api_token: Token | None = None
    status: ConnectionStatus | None = None
    partner_account_id: PartnerAccountId | None = None

    @field_validator("name", "api_token", "status", "partner_account_id")
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
    partner: str
    name: str
    partner_account_id: str
    token_hint: str = Field(description="The token is never shown again in full.")
    status: ConnectionStatus
    last_error: str
    last_pulled_at: datetime | None
    created_at: datetime


AppToken = Annotated[str, StringConstraints(min_length=4, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
TimeZoneName = Annotated[str, StringConstraints(max_length=64, pattern=r"^([A-Za-z_]+(/[A-Za-z0-9_+-]+)*)?$")]
CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
RevenueSource = Annotated[str, StringConstraints(min_length=1, max_length=60, pattern=r"^[A-Za-z0-9_.-]+$")]


class BindingCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    app_token: AppToken = Field(description="Adjust app token, or AppsFlyer app id.")
    app_name: Annotated[str, StringConstraints(max_length=200)] = ""
    package_name: Annotated[str, StringConstraints(max_length=255)] = ""
    utc_offset: UtcOffset = "+00:00"
    time_zone: TimeZoneName = Field(default="", description="AppsFlyer: report time zone; empty: the app's.")
    attribution_types: list[AttributionType] = Field(default_factory=lambda: [AttributionType.CLICK],
                                                     min_length=1, max_length=3)
    attribution_source: AttributionSource = AttributionSource.DYNAMIC
    reattributed: Reattributed = Field(default=Reattributed.ALL, description="The guide's attribution status.")
    ad_revenue_sources: list[RevenueSource] = Field(default_factory=list, max_length=30)
    ad_spend_mode: AdSpendMode | None = None
    currency: CurrencyCode = Field(default="USD", description="Currency the partner reports money in.")


class BindingUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    app_name: Annotated[str, StringConstraints(max_length=200)] | None = None
    package_name: Annotated[str, StringConstraints(max_length=255)] | None = None
    utc_offset: UtcOffset | None = None
    time_zone: TimeZoneName | None = None
    attribution_types: list[AttributionType] | None = Field(default=None, min_length=1, max_length=3)
    attribution_source: AttributionSource | None = None
    reattributed: Reattributed | None = None
    ad_revenue_sources: list[RevenueSource] | None = Field(default=None, max_length=30)
    ad_spend_mode: AdSpendMode | Literal[""] | None = None
    currency: CurrencyCode | None = None
    enabled: bool | None = None

    @field_validator("app_name", "package_name", "utc_offset", "time_zone", "attribution_types",
                     "attribution_source", "reattributed", "ad_revenue_sources", "currency", "enabled")
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
    time_zone: str
    attribution_types: list[str]
    attribution_source: AttributionSource
    reattributed: Reattributed
    ad_revenue_sources: list[str]
    ad_spend_mode: str
    currency: str
    enabled: bool
    last_error: str


class PullRequest(BaseModel):
    date_from: date | None = Field(default=None, description="Defaults to the oldest day whose cohorts are "
                                                             "not yet mature (eight days ago).")
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
