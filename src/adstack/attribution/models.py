"""Touchpoints, received postbacks, conversions and the FX table: tables and API schemas."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import JSON, Index, Numeric, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from adstack.core.db import Base
from adstack.core.timeutil import utcnow


class PostbackStatus(StrEnum):
    PENDING = "pending"  # stored, not attributed yet
    ATTRIBUTED = "attributed"  # a conversion was recorded (attributed or organic)
    DUPLICATE = "duplicate"  # the partner sent the same conversion under another id
    UNMAPPED = "unmapped"  # an event name the app does not count (or a condition that does not hold)
    FAILED = "failed"  # the app was deleted, or the postback cannot be attributed at all


class Touchpoint(Base):
    """A click or an impression that a later install may be attributed to."""

    __tablename__ = "touchpoints"
    __table_args__ = (
        UniqueConstraint("kind", "touch_id"),
        Index("ix_touchpoints_device_md5", "gaid_md5", "kind", "occurred_at"),
        Index("ix_touchpoints_device_sha1", "gaid_sha1", "kind", "occurred_at"),
        Index("ix_touchpoints_click_id", "click_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(12))  # click | impression
    touch_id: Mapped[str] = mapped_column(String(64))  # click id or impression id
    impression_id: Mapped[str] = mapped_column(String(64))
    # An impression's: the click id its links carry (the partner's view-through link among them), by which a
    # postback returning it finds the impression. None on a click, whose touch id is its click id.
    click_id: Mapped[str | None] = mapped_column(String(64))
    account_id: Mapped[int]
    campaign_id: Mapped[int]
    ad_group_id: Mapped[int]
    creative_id: Mapped[int]
    ad_space_id: Mapped[int]
    publisher_id: Mapped[int]
    bid_type: Mapped[str] = mapped_column(String(20))
    price_micros: Mapped[int]
    country: Mapped[str] = mapped_column(String(2), default="")
    placement_type: Mapped[str] = mapped_column(String(32), default="")
    app_package: Mapped[str] = mapped_column(String(255), default="")  # the advertised app, "" if none
    gaid_md5: Mapped[str | None] = mapped_column(String(32))
    gaid_sha1: Mapped[str | None] = mapped_column(String(40))
    occurred_at: Mapped[datetime]


# A postback without the app's signature (the guide's bare AppMetrica URL) is stored under its dedupe key with
# this prefix: it never takes the place of the app's signed copy, whenever either arrives. Its conversion carries
# the data flag below, is never charged, never counts in the figures signed conversions make (a prior install,
# a device's fraud flags, a retry) and is reported apart, as unverified.
UNSIGNED_KEY_PREFIX = "u:"
UNSIGNED_NOT_CHARGED = "unsigned_not_charged"


class Postback(Base):
    """A postback as received, stored before it is answered; attribution reads it from here."""

    __tablename__ = "postbacks"
    __table_args__ = (
        UniqueConstraint("app_id", "dedupe_key"),
        Index("ix_postbacks_status", "status", "id"),
        Index("ix_postbacks_app_received", "app_id", "received_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    app_id: Mapped[int]
    partner: Mapped[str] = mapped_column(String(16))
    dedupe_key: Mapped[str] = mapped_column(String(128))
    method: Mapped[str] = mapped_column(String(8))
    fields: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The adapters' reading when it was received (`adapters.stored_parse`, JSON text): attribution reads the
    # fields again only without it, or under another parse version.
    parsed: Mapped[str | None] = mapped_column(Text)
    # Sent to the app's signed postback URL (`app` + `sig`, checked on receipt). Only a signed postback bills; an
    # unsigned one waits `unsigned_postback_hold_seconds` before attribution, so a signed copy sent with it is
    # attributed first.
    signed: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(16), default=PostbackStatus.PENDING)
    detail: Mapped[str] = mapped_column(String(500), default="")
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]


class RejectedPostback(Base):
    """A request to the postback endpoint that could not be read, kept as received for inspection."""

    __tablename__ = "rejected_postbacks"
    __table_args__ = (Index("ix_rejected_postbacks_received", "received_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    partner: Mapped[str] = mapped_column(String(40), default="")
    reason: Mapped[str] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(String(500))
    method: Mapped[str] = mapped_column(String(8))
    query: Mapped[str] = mapped_column(String(8000), default="")
    content_type: Mapped[str] = mapped_column(String(200), default="")
    body: Mapped[str] = mapped_column(String(8000), default="")
    client_ip: Mapped[str] = mapped_column(String(64), default="")
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class Conversion(Base):
    """An install or in-app event, attributed (click or view) or organic, with its touch and fraud flags."""

    __tablename__ = "conversions"
    __table_args__ = (
        Index("ix_conversions_app_device_md5", "app_id", "gaid_md5", "occurred_at"),
        Index("ix_conversions_app_device_sha1", "app_id", "gaid_sha1", "occurred_at"),
        Index("ix_conversions_account_time", "account_id", "occurred_at"),
        Index("ix_conversions_ad_group", "ad_group_id", "occurred_at"),
        # Attribution reads a batch's earlier conversions by click id (one charge per click and event).
        Index("ix_conversions_app_click", "app_id", "click_id"),
        # A click's conversions matched by device, their postbacks naming no click (one charge per click).
        Index("ix_conversions_app_touch", "app_id", "touch_id"),
        # A retry of a conversion whose time was clamped is found by the time it resends. Only those rows.
        Index("ix_conversions_app_partner_time", "app_id", "partner_time",
              sqlite_where=text("partner_time IS NOT NULL"), postgresql_where=text("partner_time IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    postback_id: Mapped[int] = mapped_column(unique=True)
    app_id: Mapped[int]
    account_id: Mapped[int]
    partner: Mapped[str] = mapped_column(String(16))
    conversion_event: Mapped[str] = mapped_column(String(32))  # INSTALL or one of the 22 events
    source_event_name: Mapped[str] = mapped_column(String(100), default="")
    attribution_type: Mapped[str] = mapped_column(String(12))  # click | view | organic | other
    match_type: Mapped[str] = mapped_column(String(12))  # click_id | gaid | none
    partner_attributed: Mapped[bool | None]
    # Both verdicts, and who decided: the partner's (attributed, organic, other_network, rejected, "" = none
    # sent) and our own rules' (attributed, organic).
    partner_verdict: Mapped[str] = mapped_column(String(16), default="")
    own_verdict: Mapped[str] = mapped_column(String(16), default="")
    verdict_source: Mapped[str] = mapped_column(String(12), default="adstack")  # partner | adstack
    verdict_reason: Mapped[str] = mapped_column(String(200), default="")
    verdicts_disagree: Mapped[bool | None]  # None when the partner sent no verdict
    is_reinstall: Mapped[bool] = mapped_column(default=False)
    install_conversion_id: Mapped[int | None]  # the install an in-app event follows
    touch_kind: Mapped[str] = mapped_column(String(12), default="")
    touch_id: Mapped[str] = mapped_column(String(64), default="")
    touch_at: Mapped[datetime | None]
    campaign_id: Mapped[int] = mapped_column(default=0)
    ad_group_id: Mapped[int] = mapped_column(default=0)
    creative_id: Mapped[int] = mapped_column(default=0)
    ad_space_id: Mapped[int] = mapped_column(default=0)
    publisher_id: Mapped[int] = mapped_column(default=0)
    click_id: Mapped[str] = mapped_column(String(128), default="")
    gaid_md5: Mapped[str | None] = mapped_column(String(32))
    gaid_sha1: Mapped[str | None] = mapped_column(String(40))
    click_to_install_seconds: Mapped[int | None]
    fraud_flags: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Data-quality flags: a future time clamped, an unreadable field left out, a lenient read.
    data_flags: Mapped[list[str]] = mapped_column(JSON, default=list)
    revenue: Mapped[str] = mapped_column(String(40), default="")  # as sent, a decimal text
    currency: Mapped[str] = mapped_column(String(3), default="")
    revenue_micros: Mapped[int] = mapped_column(default=0)  # in the account currency
    revenue_usd_micros: Mapped[int] = mapped_column(default=0)
    charged_micros: Mapped[int] = mapped_column(default=0)
    occurred_at: Mapped[datetime]
    # The partner's time when it lay too far ahead of the receipt (`future_time_clamped`: `occurred_at` is then the
    # receipt); None otherwise. A retry resends it, and is matched by it.
    partner_time: Mapped[datetime | None]
    received_at: Mapped[datetime | None]  # when the postback arrived; charges are booked on this day
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FxRate(Base):
    """Units of a currency per US dollar; operators keep the table current."""

    __tablename__ = "fx_rates"

    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    units_per_usd: Mapped[Decimal] = mapped_column(Numeric(24, 10))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


# ---------- API schemas ----------


class ConversionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    postback_id: int
    app_id: int
    account_id: int
    partner: str
    conversion_event: str
    source_event_name: str
    attribution_type: str
    match_type: str
    partner_attributed: bool | None
    partner_verdict: str
    own_verdict: str
    verdict_source: str
    verdict_reason: str
    verdicts_disagree: bool | None
    is_reinstall: bool
    install_conversion_id: int | None
    touch_kind: str
    touch_id: str
    touch_at: datetime | None
    campaign_id: int
    ad_group_id: int
    creative_id: int
    ad_space_id: int
    publisher_id: int
    click_id: str
    click_to_install_seconds: int | None
    fraud_flags: list[str]
    data_flags: list[str]
    revenue: str
    currency: str
    revenue_micros: int
    revenue_usd_micros: int
    charged_micros: int
    occurred_at: datetime
    received_at: datetime | None


class PostbackRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    app_id: int
    partner: str
    dedupe_key: str
    method: str
    fields: dict[str, Any]
    status: PostbackStatus
    detail: str
    received_at: datetime
    processed_at: datetime | None


class RejectedPostbackRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    partner: str
    reason: str
    message: str
    method: str
    query: str
    content_type: str
    body: str
    client_ip: str
    received_at: datetime


class PostbackAccepted(BaseModel):
    status: str = Field(default="ok", description="Durable in the event log; a retry of it is counted once.")


class FxRateRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    currency: str
    units_per_usd: Decimal
    updated_at: datetime


class FxRateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    units_per_usd: Annotated[Decimal, Field(gt=0, le=Decimal("1e9"), max_digits=20, decimal_places=10)]


class ProcessResult(BaseModel):
    processed: int


class VerdictAgreement(BaseModel):
    """How often the partner's verdict and adstack's own rules disagree, for one partner."""

    partner: str
    conversions: int = Field(description="Conversions in the period, with or without a partner verdict.")
    with_partner_verdict: int
    disagreements: int
    disagreement_rate: float | None = Field(description="disagreements / with_partner_verdict; null when none.")
    partner_attributed_own_organic: int
    partner_unattributed_own_attributed: int
