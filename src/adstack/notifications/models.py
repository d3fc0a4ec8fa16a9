"""Notifications: events worth telling an account about, and how they reach it (console, e-mail, webhooks).

An event is written in the same transaction as the change that caused it; the notification worker delivers
it afterwards (e-mail and webhooks), so no request waits on, or holds its transaction across, a network call.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, HttpUrl
from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from adstack.core.db import Base
from adstack.core.ids import EntityId
from adstack.core.timeutil import utcnow


class EventType(StrEnum):
    REVIEW_APPROVED = "review.approved"
    REVIEW_REJECTED = "review.rejected"
    REVIEW_SUSPENDED = "review.suspended"
    REVIEW_SUSPENSION_LIFTED = "review.suspension_lifted"
    BALANCE_LOW = "balance.low"
    BUDGET_EXHAUSTED = "budget.exhausted"
    TOP_UP_COMPLETED = "top_up.completed"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # every attempt used


class NotificationEvent(Base):
    """One event for one account; `key` makes detecting the same condition twice write it once."""

    __tablename__ = "notification_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    account_id: Mapped[int] = mapped_column(index=True)
    event_type: Mapped[str] = mapped_column(String(40))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Notification(Base):
    """What a user sees in the console's notification list."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_user_time", "user_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    account_id: Mapped[int]
    event_id: Mapped[int] = mapped_column(ForeignKey("notification_events.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(40))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    read_at: Mapped[datetime | None]


class QueuedMail(Base):
    """An e-mail waiting for the SMTP server; retried with backoff when it is unreachable."""

    __tablename__ = "queued_mail"
    __table_args__ = (Index("ix_queued_mail_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int | None]
    recipient: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str] = mapped_column(String(500), default="")
    sent_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(index=True)
    url: Mapped[str] = mapped_column(String(2000))
    # Every delivery is signed with the secret, so it is kept encrypted (core.security.Encryptor), not hashed.
    # Shown to the account once, when the endpoint is made.
    secret_ciphertext: Mapped[str] = mapped_column(String(400))
    event_types: Mapped[list[str]] = mapped_column(JSON, default=list)  # empty = every type
    description: Mapped[str] = mapped_column(String(200), default="")
    created_by_user_id: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None]


class WebhookDelivery(Base):
    """One event to one endpoint: the exact body signed and sent, and where its retries stand."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[int] = mapped_column(index=True)
    event_id: Mapped[int]
    event_type: Mapped[str] = mapped_column(String(40))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookAttempt(Base):
    """Every try, kept for the account to see why a delivery is late or failed."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True)
    attempted_at: Mapped[datetime] = mapped_column(default=utcnow)
    status_code: Mapped[int | None]
    error: Mapped[str] = mapped_column(String(300), default="")
    duration_ms: Mapped[int] = mapped_column(default=0)


# ---------- API shapes ----------


class WebhookEndpointIn(BaseModel):
    url: HttpUrl = Field(description="Where events are POSTed; http or https.")
    event_types: list[EventType] = Field(default_factory=list, max_length=len(EventType),
                                         description="Empty = every event type.")
    description: str = Field(default="", max_length=200)
    account_id: EntityId | None = Field(default=None, description="An agency's sub-account; default your own.")


class WebhookEndpointRead(BaseModel):
    id: int
    account_id: int
    url: str
    event_types: list[EventType]
    description: str
    created_at: datetime


class WebhookEndpointCreated(WebhookEndpointRead):
    secret: str = Field(description="Signs every delivery. Shown only now: store it.")


class WebhookAttemptRead(BaseModel):
    attempted_at: datetime
    status_code: int | None
    error: str
    duration_ms: int


class WebhookDeliveryRead(BaseModel):
    id: int
    endpoint_id: int
    event_type: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime
    attempt_log: list[WebhookAttemptRead] = Field(default_factory=list)


class NotificationRead(BaseModel):
    id: int
    account_id: int
    event_type: EventType
    data: dict[str, Any]
    created_at: datetime
    read_at: datetime | None
