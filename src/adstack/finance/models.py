"""The ledger: every change of money is an immutable entry; a balance is the sum of its entries."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from adstack.core.db import Base
from adstack.core.timeutil import utcnow


class EntryType(StrEnum):
    TOP_UP = "top_up"
    TRANSFER_IN = "transfer_in"  # agency -> sub-account, seen from the receiver
    TRANSFER_OUT = "transfer_out"
    RECLAIM = "reclaim"  # sub-account -> agency
    CHARGE = "charge"
    REFUND = "refund"
    CREDIT = "credit"


class LedgerEntry(Base):
    __tablename__ = "ledger_entries"
    __table_args__ = (
        Index("ix_ledger_entries_account_time", "account_id", "created_at"),
        Index("ix_ledger_entries_ad_group_time", "ad_group_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    entry_type: Mapped[str] = mapped_column(String(20))
    amount_micros: Mapped[int]  # signed: credits positive, charges negative
    currency: Mapped[str] = mapped_column(String(3))
    # One entry per idempotency key (a charge's event id, a top-up request id): a retry is applied once.
    idempotency_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    counterparty_account_id: Mapped[int | None]
    campaign_id: Mapped[int | None]
    ad_group_id: Mapped[int | None]
    creative_id: Mapped[int | None]
    operator_user_id: Mapped[int | None]
    remarks: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
