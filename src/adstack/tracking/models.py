"""Invalid traffic: refused tracking requests and events the invalid-traffic rules filtered, kept for inspection,
never billed; and the verdict each tracking record received."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict
from sqlalchemy import BigInteger, Index, String
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
    # malformed | bad_signature | expired, or the first invalid-traffic rule an event broke (pipeline/ivt.py)
    reason: Mapped[str] = mapped_column(String(24))
    message: Mapped[str] = mapped_column(String(300))
    token: Mapped[str] = mapped_column(String(300), default="")  # the first 300 characters, as sent
    # Known when the signature held (an expired token, a filtered event): whose ad it was.
    account_id: Mapped[int | None]
    ad_group_id: Mapped[int | None]
    impression_id: Mapped[str] = mapped_column(String(64), default="")
    client_ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(300), default="")
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)


class InvalidTrafficOverflow(Base):
    """Invalid traffic past the per-minute row bound, counted per minute, kind and reason instead of kept."""

    __tablename__ = "invalid_traffic_overflow"

    minute: Mapped[datetime] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    reason: Mapped[str] = mapped_column(String(24), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)


class IvtVerdict(Base):
    """The invalid-traffic verdict of one tracking record, reached once: every consumer, and a replay of its
    batch, reads this row instead of judging again, so billing, touchpoints and the event store agree."""

    __tablename__ = "ivt_verdicts"
    # No index on impression_id: an impression's verdict is found by its record id (`impression_record_id`),
    # and a second index of random keys doubled the cost of storing every verdict.
    __table_args__ = (Index("ix_ivt_verdicts_clicks", "ad_group_id", "received_ms"),
                      Index("ix_ivt_verdicts_received", "received_ms"))

    record_id: Mapped[str] = mapped_column(String(96), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))  # imp | click | video
    received_ms: Mapped[int] = mapped_column(BigInteger)
    impression_id: Mapped[str] = mapped_column(String(64))
    ad_group_id: Mapped[int] = mapped_column(BigInteger)
    client_ip: Mapped[str] = mapped_column(String(64), default="")
    device: Mapped[str] = mapped_column(String(64), default="")
    reasons: Mapped[str] = mapped_column(String(200), default="")  # comma-separated; "" when valid


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
