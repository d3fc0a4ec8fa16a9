"""Refused tracking requests (invalid traffic): kept for inspection, never billed."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from adstack.core.db import Base
from adstack.core.timeutil import utcnow


class InvalidTraffic(Base):
    __tablename__ = "invalid_traffic"
    __table_args__ = (Index("ix_invalid_traffic_time", "occurred_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # The log record's id: a consumer replaying a batch after a crash stores each refusal once.
    event_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # imp | click | video
    reason: Mapped[str] = mapped_column(String(24))  # malformed | bad_signature | expired
    message: Mapped[str] = mapped_column(String(300))
    token: Mapped[str] = mapped_column(String(300), default="")  # the first 300 characters, as sent
    # Known only when the signature held (an expired token): whose ad it was.
    account_id: Mapped[int | None]
    ad_group_id: Mapped[int | None]
    impression_id: Mapped[str] = mapped_column(String(64), default="")
    client_ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(300), default="")
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)


class InvalidTrafficRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    reason: str
    message: str
    token: str
    account_id: int | None
    ad_group_id: int | None
    impression_id: str
    client_ip: str
    user_agent: str
    occurred_at: datetime


class InvalidTrafficSummary(BaseModel):
    total: int
    by_reason: dict[str, int]
    items: list[InvalidTrafficRead]
