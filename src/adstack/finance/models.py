"""The ledger: every change of money is an immutable entry; a balance is the sum of its entries.

Beside the ledger live the rows that make money movements race-safe and caps cheap to check:
an account's wallet (locked by every movement, holding a projection of the ledger sum), spend counters
per ad group, campaign and account (total and per local day), refused charges, top-up requests with
their proof of payment, and postpay credit lines.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, computed_field
from sqlalchemy import ForeignKey, Index, PrimaryKeyConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from adstack.core.db import Base
from adstack.core.ids import EntityId
from adstack.core.money import Currency
from adstack.core.timeutil import utcnow


class EntryType(StrEnum):
    TOP_UP = "top_up"
    TRANSFER_IN = "transfer_in"  # agency -> sub-account, seen from the receiver
    TRANSFER_OUT = "transfer_out"
    RECLAIM = "reclaim"  # sub-account -> agency; negative on the sub-account, positive on the agency
    CHARGE = "charge"
    REFUND = "refund"
    CREDIT = "credit"  # settlement of a postpay credit line: the payment that clears the period's cost


class RecordType(StrEnum):
    """The transfer types of the financial records; charges appear as one settlement per account and day."""

    TOP_UP = "top_up"
    TRANSFER_IN = "transfer_in"
    TRANSFER_OUT = "transfer_out"
    RECLAIM = "reclaim"
    CHARGE_SETTLEMENT = "charge_settlement"
    REFUND = "refund"
    CREDIT = "credit"


class Direction(StrEnum):
    IN = "in"
    OUT = "out"


class ChargeKind(StrEnum):
    """What a charge pays for; the billable event behind it is named by the charge id."""

    CPM = "cpm"  # one impression at the auction's clearing price / 1000
    CPC = "cpc"  # one valid click
    CPA = "cpa"  # one attributed conversion of the ad group's chosen event
    CPT = "cpt"  # one booked time slot, for its duration
    GUARANTEED_CPM = "guaranteed_cpm"  # one impression, up to the booked volume


class ChargeStatus(StrEnum):
    APPLIED = "applied"  # charged in full
    TRUNCATED = "truncated"  # charged what was left under the tightest cap
    REFUSED = "refused"  # nothing left under a cap; not charged, and remembered so a retry is refused too
    DUPLICATE = "duplicate"  # this charge id was decided before; nothing changed


class CapReason(StrEnum):
    DAILY_BUDGET = "daily_budget"
    TOTAL_BUDGET = "total_budget"
    FUNDS = "funds"  # balance, or balance plus credit line
    BOOKED_VOLUME = "booked_volume"  # guaranteed CPM beyond the booked impressions


class TopUpStatus(StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"


class SpendScope(StrEnum):
    ACCOUNT = "account"
    CAMPAIGN = "campaign"
    AD_GROUP = "ad_group"


TOTAL_PERIOD = "total"


class LedgerEntry(Base):
    __tablename__ = "ledger_entries"
    __table_args__ = (
        Index("ix_ledger_entries_account_time", "account_id", "created_at"),
        Index("ix_ledger_entries_ad_group_time", "ad_group_id", "occurred_at"),
        Index("ix_ledger_entries_campaign_time", "campaign_id", "occurred_at"),
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
    # When the billable event happened (a charge), or the entry's own time; budgets count by this.
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    charge_kind: Mapped[str | None] = mapped_column(String(16))
    requested_micros: Mapped[int | None]  # a truncated charge's asked-for amount
    reference: Mapped[str] = mapped_column(String(64), default="")  # e.g. top_up_request:12, credit_line:3


class AccountWallet(Base):
    """The row every money movement of an account locks; it holds the ledger sum as a projection.

    The ledger stays the truth (`service.balance_micros` sums it; `service.reconcile` compares); the
    projection lets a cap check read the balance in O(1) while the row lock is held.
    """

    __tablename__ = "account_wallets"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True, autoincrement=False)
    currency: Mapped[str] = mapped_column(String(3))
    balance_micros: Mapped[int] = mapped_column(default=0)
    entry_count: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class SpendCounter(Base):
    """Charged micros and billed units per ad group, campaign or account, in total and per local day.

    Written only under the owning account's wallet lock, so a read-check-write is race-free.
    `period` is "total" or the ISO date in the ad group's (account's) time zone.
    """

    __tablename__ = "spend_counters"
    __table_args__ = (PrimaryKeyConstraint("scope", "scope_id", "period"),)

    scope: Mapped[str] = mapped_column(String(16))
    scope_id: Mapped[int]
    period: Mapped[str] = mapped_column(String(10))
    account_id: Mapped[int] = mapped_column(index=True)
    currency: Mapped[str] = mapped_column(String(3))
    spent_micros: Mapped[int] = mapped_column(default=0)
    units: Mapped[int] = mapped_column(default=0)
    last_charge_at: Mapped[datetime] = mapped_column(default=utcnow)


class ChargeRefusal(Base):
    """A charge refused at a cap. Kept so the same charge id is decided once, and so the unbilled
    delivery past a cap is visible."""

    __tablename__ = "charge_refusals"
    __table_args__ = (Index("ix_charge_refusals_ad_group_time", "ad_group_id", "occurred_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    charge_id: Mapped[str] = mapped_column(String(128), unique=True)
    account_id: Mapped[int] = mapped_column(index=True)
    campaign_id: Mapped[int]
    ad_group_id: Mapped[int]
    creative_id: Mapped[int]
    kind: Mapped[str] = mapped_column(String(16))
    requested_micros: Mapped[int]
    reason: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TopUpRequest(Base):
    """A prepay top-up filed with its proof of payment; an account manager confirms or rejects it."""

    __tablename__ = "top_up_requests"
    __table_args__ = (Index("ix_top_up_requests_status", "status", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    requester_account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    amount_micros: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16), default=TopUpStatus.PENDING)
    remarks: Mapped[str] = mapped_column(String(500), default="")
    proof_filename: Mapped[str] = mapped_column(String(255))
    proof_content_type: Mapped[str] = mapped_column(String(100))
    proof_size_bytes: Mapped[int]
    proof_sha256: Mapped[str] = mapped_column(String(64))
    proof_storage_path: Mapped[str] = mapped_column(String(500))
    requested_by_user_id: Mapped[int]
    decided_by_user_id: Mapped[int | None]
    decided_at: Mapped[datetime | None]
    rejection_reason: Mapped[str] = mapped_column(String(500), default="")
    ledger_entry_id: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CreditLine(Base):
    """A postpay credit line: the account may spend up to `limit_micros` below zero during [starts_at, ends_at)."""

    __tablename__ = "credit_lines"
    __table_args__ = (Index("ix_credit_lines_account_period", "account_id", "starts_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    currency: Mapped[str] = mapped_column(String(3))
    limit_micros: Mapped[int]
    starts_on: Mapped[date]
    ends_on: Mapped[date]  # inclusive, in the account's time zone
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]  # exclusive: the next day's midnight in the account's time zone
    renewed_from_id: Mapped[int | None]
    remarks: Mapped[str] = mapped_column(String(500), default="")
    created_by_user_id: Mapped[int]
    settled_at: Mapped[datetime | None]
    settled_amount_micros: Mapped[int | None]
    settlement_entry_id: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# ---------- API schemas ----------

Remarks = Annotated[str, StringConstraints(max_length=500)]
IdempotencyKey = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
PositiveMicros = Annotated[int, Field(ge=1, le=10**15, description="Integer micros of the account currency, > 0.")]
ContractDate = Annotated[date, Field(ge=date(2000, 1, 1), le=date(2199, 12, 31))]


class TopUpIn(BaseModel):
    """An account manager credits an advertiser's (or any) account directly."""

    model_config = ConfigDict(extra="forbid")

    account_id: EntityId
    amount_micros: PositiveMicros
    currency: Currency | None = Field(default=None, description="If sent, must be the account's currency.")
    remarks: Remarks = ""
    idempotency_key: IdempotencyKey | None = Field(default=None, description="A retry with the same key is a no-op.")


class TransferIn(BaseModel):
    """An agency moves balance to a sub-account (transfer) or back from it (reclaim)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["transfer", "reclaim"]
    sub_account_id: EntityId
    amount_micros: PositiveMicros
    currency: Currency | None = Field(default=None, description="If sent, must be both accounts' currency.")
    remarks: Remarks = ""
    idempotency_key: IdempotencyKey | None = None


class RefundIn(BaseModel):
    """Return the amount of a charge (e.g. traffic found invalid after billing), once per charge."""

    model_config = ConfigDict(extra="forbid")

    charge_id: Annotated[str, StringConstraints(min_length=1, max_length=120)]
    remarks: Remarks = ""


class TopUpDecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)]


class CreditLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_id: EntityId
    limit_micros: PositiveMicros
    starts_on: ContractDate = Field(description="First day of the contract period, in the account's time zone.")
    ends_on: ContractDate = Field(description="Last day of the contract period (inclusive).")
    remarks: Remarks = ""


class CreditLineRenewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ends_on: ContractDate = Field(description="Last day of the new period; it starts the day after the old one ends.")
    limit_micros: PositiveMicros | None = Field(default=None, description="Defaults to the old line's limit.")
    remarks: Remarks = ""


class LedgerEntryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    account_id: int
    entry_type: EntryType
    amount_micros: int
    currency: Currency
    counterparty_account_id: int | None
    campaign_id: int | None
    ad_group_id: int | None
    creative_id: int | None
    operator_user_id: int | None
    remarks: str
    reference: str
    created_at: datetime
    occurred_at: datetime | None = None  # when the billed event happened (charges), beside when it was booked
    idempotency_key: str | None = Field(default=None, exclude=True)

    @computed_field(description="A charge's id (e.g. `click:<click id>`), what `POST /finance/refunds` names; "
                                "null for other entries.")
    def charge_id(self) -> str | None:
        key = self.idempotency_key
        if self.entry_type != EntryType.CHARGE or not key or not key.startswith("charge:"):
            return None
        return key.removeprefix("charge:")


class TransferRead(BaseModel):
    paid: LedgerEntryRead = Field(description="The entry on the side the money left.")
    received: LedgerEntryRead = Field(description="The entry on the side the money reached.")


class FinancialRecord(BaseModel):
    """One line of the financial records: a money movement, or a day's charges of one account."""

    record_id: str = Field(description="entry:<ledger id> or charges:<account id>:<local date>.")
    transferred_at: datetime = Field(description="Date of the successful transfer (for charges: the last charge).")
    account_id: int = Field(description="Transfer account: whose balance changed.")
    agency_account_id: int | None = Field(description="Transfer agency account: the agency of a transfer or "
                                                      "reclaim (on the agency's own rows, itself), or the "
                                                      "account's agency.")
    counterparty_account_id: int | None = Field(default=None, description="The other account of a transfer or "
                                                "reclaim (on the agency's rows, the sub-account).")
    type: RecordType
    direction: Direction
    amount_micros: int = Field(description="Always positive; the direction says which way.")
    currency: Currency
    operator: str = Field(description="Email of who moved the money; 'system' for charges.")
    remarks: str


class FinancialRecordPage(BaseModel):
    total: int
    items: list[FinancialRecord]


class CreditLineRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    account_id: int
    currency: Currency
    limit_micros: int
    starts_on: date
    ends_on: date
    starts_at: datetime
    ends_at: datetime
    renewed_from_id: int | None
    remarks: str
    settled_at: datetime | None
    settled_amount_micros: int | None
    created_at: datetime
    state: Literal["scheduled", "active", "ended", "settled"] = "active"


class BalanceRead(BaseModel):
    account_id: int
    currency: Currency
    payment_mode: str
    balance_micros: int = Field(description="The sum of the account's ledger entries; negative when credit is used.")
    credit_limit_micros: int = Field(description="The credit line in force now, 0 without one.")
    available_micros: int = Field(description="What the account may still spend.")
    spending_suspended: bool = Field(description="A postpay period ended and was not renewed.")
    low_balance_threshold_micros: int
    low_balance: bool
    notice: str | None = None
    credit_line: CreditLineRead | None = None


class TopUpRequestRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    account_id: int
    requester_account_id: int | None
    amount_micros: int
    currency: Currency
    status: TopUpStatus
    remarks: str
    proof_filename: str
    proof_content_type: str
    proof_size_bytes: int
    proof_sha256: str
    requested_by_user_id: int
    decided_by_user_id: int | None
    decided_at: datetime | None
    rejection_reason: str
    ledger_entry_id: int | None
    created_at: datetime


class SpendRead(BaseModel):
    ad_group_id: int
    currency: Currency | None
    time_zone: str
    day: date
    spent_today_micros: int
    spent_total_micros: int
    daily_budget_micros: int | None
    total_budget_micros: int | None
    remaining_micros: int | None = Field(description="Left under the tightest budget cap today; null = no cap.")
    status: str | None = Field(description="balance_insufficient, budget_exhausted (total), daily_budget_exhausted, "
                                           "or null while it may spend.")

