"""Review: the state every reviewable object (account, ad group, creative) carries, and its history."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field, model_validator
from sqlalchemy import JSON, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from adstack.core.db import Base
from adstack.core.timeutil import utcnow


class ReviewStatus(StrEnum):
    TO_BE_SUBMITTED = "to_be_submitted"
    UNDER_REVIEW = "under_review"
    APPROVED = "approved"
    REJECTED = "rejected"
    # Taken down by a reviewer after approval: does not serve until a reviewer lifts it.
    SUSPENDED = "suspended"


class ReviewAction(StrEnum):
    SUBMIT = "submit"
    APPROVE = "approve"
    REJECT = "reject"
    EDIT_REVIEWED_FIELD = "edit_reviewed_field"
    SUSPEND = "suspend"
    LIFT_SUSPENSION = "lift_suspension"
    PLATFORM_PAUSE = "platform_pause"
    PLATFORM_RESUME = "platform_resume"


class ReviewItem(Base):
    """One row per reviewable object: what the admin queue lists."""

    __tablename__ = "review_items"
    __table_args__ = (
        UniqueConstraint("object_type", "object_id"),
        Index("ix_review_items_queue", "status", "submitted_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[int]
    account_id: Mapped[int | None] = mapped_column(index=True)
    object_name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default=ReviewStatus.TO_BE_SUBMITTED)
    submitted_at: Mapped[datetime | None]
    expected_review_at: Mapped[datetime | None]
    decided_at: Mapped[datetime | None]


class ReviewRecord(Base):
    """Immutable history: every submission and decision, with rejection reasons."""

    __tablename__ = "review_records"
    __table_args__ = (Index("ix_review_records_object", "object_type", "object_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[int]
    account_id: Mapped[int | None] = mapped_column(index=True)
    action: Mapped[str] = mapped_column(String(24))
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    actor_user_id: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PlatformHold(Base):
    """A pause set by platform staff on a campaign, ad group or creative: only staff may resume it."""

    __tablename__ = "platform_holds"
    __table_args__ = (Index("ix_platform_holds_object", "object_type", "object_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[int]
    account_id: Mapped[int | None] = mapped_column(index=True)
    reason: Mapped[str] = mapped_column(String(500), default="")
    actor_user_id: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    lifted_at: Mapped[datetime | None]
    lifted_by_user_id: Mapped[int | None]


ReviewedObjectType = Literal["account", "ad_group", "creative"]


class SuspensionIn(BaseModel):
    reason: str = Field(min_length=1, max_length=500, description="Shown to the advertiser.")


class BatchItemRef(BaseModel):
    object_type: ReviewedObjectType
    object_id: int = Field(ge=1, le=2**53)


class BatchDecisionIn(BaseModel):
    items: list[BatchItemRef] = Field(min_length=1, max_length=200)
    decision: Literal["approve", "reject"]
    reasons: list[str] = Field(default_factory=list, max_length=20, description="Required when rejecting.")

    @model_validator(mode="after")
    def _reject_needs_reason(self) -> BatchDecisionIn:
        if self.decision == "reject" and not [r for r in self.reasons if r.strip()]:
            raise ValueError("reasons: at least one reason is required to reject")
        return self


class ReviewStateRead(BaseModel):
    object_type: str
    object_id: int
    review_status: ReviewStatus


class BatchItemResult(BaseModel):
    object_type: str
    object_id: int
    ok: bool
    status: ReviewStatus | None = None
    error: dict[str, object] | None = None


class ReviewDecisionIn(BaseModel):
    decision: Literal["approve", "reject"]
    reasons: list[str] = Field(default_factory=list, max_length=20, description="Required when rejecting.")

    @model_validator(mode="after")
    def _reject_needs_reason(self) -> ReviewDecisionIn:
        if self.decision == "reject" and not [r for r in self.reasons if r.strip()]:
            raise ValueError("reasons: at least one reason is required to reject")
        return self


class ReviewRecordRead(BaseModel):
    object_type: str
    object_id: int
    action: str
    reasons: list[str]
    actor_user_id: int | None
    created_at: datetime


class ReviewItemRead(BaseModel):
    object_type: str
    object_id: int
    account_id: int | None
    object_name: str
    status: ReviewStatus
    submitted_at: datetime | None
    expected_review_at: datetime | None
