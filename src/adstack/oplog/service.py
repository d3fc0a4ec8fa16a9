"""Record and search change events. Callers pass before/after snapshots; the diff is computed here."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from adstack.accounts.models import Principal
from adstack.core.csv_export import to_csv
from adstack.core.timeutil import utcnow
from adstack.oplog.models import ChangeEvent, Operation


def _jsonable(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    return value


def diff(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Field-level changes between two snapshots; a create has only new values, a delete only old."""
    old = {k: _jsonable(v) for k, v in (before or {}).items()}
    new = {k: _jsonable(v) for k, v in (after or {}).items()}
    changes = []
    for field in sorted(set(old) | set(new)):
        if old.get(field) != new.get(field):
            changes.append({"field": field, "old": old.get(field), "new": new.get(field)})
    return changes


def record(
    session: Session,
    *,
    actor: Principal | None,
    operation: Operation | str,
    object_type: str,
    object_id: int | None,
    object_name: str = "",
    account_id: int | None = None,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    changes: Sequence[Mapping[str, Any]] | None = None,
) -> ChangeEvent:
    event = ChangeEvent(
        account_id=account_id,
        object_type=object_type,
        object_id=object_id,
        object_name=object_name[:200],
        operation=str(Operation(operation).value if isinstance(operation, Operation) else operation),
        changes=list(changes) if changes is not None else diff(before, after),
        operator_user_id=actor.user_id if actor else None,
        operator_email=actor.email if actor else "system",
        operator_role=actor.role if actor else "system",
        client=actor.client if actor else "system",
        on_behalf=bool(actor is not None and actor.on_behalf and account_id is not None),
        created_at=utcnow(),
    )
    session.add(event)
    return event


def search(
    session: Session,
    *,
    account_ids: set[int] | None,
    query: str | None = None,
    object_type: str | None = None,
    operation: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    on_behalf: bool | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[ChangeEvent], int]:
    """Search by object name or id, type, operation and time range. `account_ids=None` means all."""
    stmt = select(ChangeEvent)
    if account_ids is not None:
        stmt = stmt.where(ChangeEvent.account_id.in_(account_ids))
    if query:
        conditions: list[ColumnElement[bool]] = [ChangeEvent.object_name.icontains(query, autoescape=True)]
        if query.isdecimal():
            conditions.append(ChangeEvent.object_id == int(query))
        stmt = stmt.where(or_(*conditions))
    if object_type:
        stmt = stmt.where(ChangeEvent.object_type == object_type)
    if operation:
        stmt = stmt.where(ChangeEvent.operation == operation)
    if since:
        stmt = stmt.where(ChangeEvent.created_at >= since)
    if until:
        stmt = stmt.where(ChangeEvent.created_at < until)
    if on_behalf is not None:
        stmt = stmt.where(ChangeEvent.on_behalf.is_(on_behalf))
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    ordered = stmt.order_by(ChangeEvent.created_at.desc(), ChangeEvent.id.desc())
    rows = session.scalars(ordered.limit(limit).offset(offset))
    return list(rows), total


CSV_HEADER = (
    "time_utc", "account_id", "object_type", "object_id", "object_name", "operation",
    "field", "old", "new", "operator", "role", "client", "on_behalf",
)


def export_csv(events: Sequence[ChangeEvent]) -> str:
    """One line per changed field, so before/after values stay readable in a spreadsheet."""
    rows: list[list[Any]] = []
    for event in events:
        base = [event.created_at.isoformat(), event.account_id, event.object_type, event.object_id, event.object_name,
                event.operation]
        tail = [event.operator_email, event.operator_role, event.client, "yes" if event.on_behalf else ""]
        if not event.changes:
            rows.append([*base, "", "", "", *tail])
        for change in event.changes:
            rows.append([*base, change.get("field"), _cell(change.get("old")), _cell(change.get("new")), *tail])
    return to_csv(CSV_HEADER, rows)


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return value
