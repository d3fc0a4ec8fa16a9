"""Operation log: one change event per create, edit, copy, delete, submit, review or status change."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import JSON, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from adstack.core.db import Base
from adstack.core.timeutil import utcnow


class Operation(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    COPY = "copy"
    DELETE = "delete"
    SUBMIT = "submit"
    APPROVE = "approve"
    REJECT = "reject"
    ENABLE = "enable"
    PAUSE = "pause"
    SUSPEND = "suspend"
    LIFT_SUSPENSION = "lift_suspension"
    TOP_UP = "top_up"
    TRANSFER = "transfer"
    LOGIN = "login"


class ChangeEvent(Base):
    __tablename__ = "change_events"
    __table_args__ = (
        Index("ix_change_events_account_time", "account_id", "created_at"),
        Index("ix_change_events_object", "object_type", "object_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int | None]
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[int | None]
    object_name: Mapped[str] = mapped_column(String(200), default="")
    operation: Mapped[str] = mapped_column(String(24))
    changes: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    operator_user_id: Mapped[int | None]
    operator_email: Mapped[str] = mapped_column(String(320), default="")
    operator_role: Mapped[str] = mapped_column(String(32), default="")
    client: Mapped[str] = mapped_column(String(16), default="api")
    # Platform staff editing the account's own data by the "operate on behalf" grant (accounts/permissions.py):
    # the operator fields say who, account_id for which account.
    # Source: Mi Ads Usage Guide, 6.2 Operation Logs: "Log content: ... operator, operation role, and operation time".
    on_behalf: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class FieldChange(BaseModel):
    field: str
    old: Any = None
    new: Any = None


class ChangeEventRead(BaseModel):
    id: int
    account_id: int | None
    object_type: str
    object_id: int | None
    object_name: str
    operation: str
    changes: list[FieldChange]
    operator_user_id: int | None
    operator_email: str
    operator_role: str
    client: str
    on_behalf: bool = Field(default=False, description="Platform staff acting on behalf of the account.")
    created_at: datetime
