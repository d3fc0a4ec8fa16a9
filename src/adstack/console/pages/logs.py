"""Operation logs: search by object, type, operation and time; each entry with its before and after values."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import TypedDict

from fastapi import APIRouter, Response
from sqlalchemy import select

from adstack.accounts import tenancy
from adstack.accounts.models import Account
from adstack.console.oplog_words import LogWords
from adstack.console.web import ConsoleRoute, UserDep, Visitor, render
from adstack.core.timeutil import search_day, zone
from adstack.oplog import service as oplog
from adstack.oplog.models import ChangeEvent, Operation

router = APIRouter(route_class=ConsoleRoute)

PAGE_SIZE = 50
EXPORT_LIMIT = 100_000


class LogFilters(TypedDict):
    account_ids: set[int] | None
    query: str | None
    object_type: str | None
    operation: str | None
    since: datetime | None
    until: datetime | None



def _filters(visitor: Visitor, q: str | None, object_type: str | None, operation: str | None,
             since: str | None, until: str | None) -> LogFilters:
    """Dates typed in the account's zone become a UTC range [since 00:00, until+1 00:00)."""
    tz = zone(visitor.time_zone)
    start, end = search_day(since), search_day(until)
    return {
        "account_ids": tenancy.visible_account_ids(visitor.session, visitor.me),
        "query": (q or "").strip()[:200] or None,
        "object_type": object_type if object_type and object_type.isidentifier() and len(object_type) <= 32 else None,
        "operation": operation if operation in {op.value for op in Operation} else None,
        "since": datetime.combine(start, time(), tzinfo=tz) if start else None,
        "until": datetime.combine(end + timedelta(days=1), time(), tzinfo=tz) if end else None,
    }


@router.get("/logs")
def operation_logs(visitor: UserDep, q: str | None = None, object_type: str | None = None,
                   operation: str | None = None, since: str | None = None, until: str | None = None,
                   page: int = 1) -> Response:
    page = max(1, min(page, 100_000))
    filters = _filters(visitor, q, object_type, operation, since, until)
    rows, total = oplog.search(visitor.session, **filters, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    return render(visitor, "logs/logs.html", {
        "rows": rows, "total": total, "changes": _changes_in_words(visitor, rows),
        "page": page, "pages": max(1, -(-total // PAGE_SIZE)),
        "operations": [op.value for op in Operation],
        "object_types": ("account", "campaign", "ad_group", "creative", "media", "audience", "app", "top_up",
                         "announcement", "user", "account_document"),
        "filters": {"q": q or "", "object_type": object_type or "", "operation": operation or "",
                    "since": since or "", "until": until or ""},
    })


def _changes_in_words(visitor: Visitor, rows: list[ChangeEvent]) -> dict[int, list[dict[str, str]]]:
    """Each row's changes by field label, money in its own account's currency."""
    ids = {row.account_id for row in rows if row.account_id is not None}
    currencies: dict[int, str] = {}
    if ids:
        found = visitor.session.execute(select(Account.id, Account.currency).where(Account.id.in_(ids)))
        currencies = {account_id: currency for account_id, currency in found}
    words = LogWords(visitor.language, visitor.time_zone)
    return {row.id: words.changes(row, currencies.get(row.account_id or 0, visitor.currency)) for row in rows}


@router.get("/logs/export.csv")
def export_logs(visitor: UserDep, q: str | None = None, object_type: str | None = None,
                operation: str | None = None, since: str | None = None, until: str | None = None) -> Response:
    filters = _filters(visitor, q, object_type, operation, since, until)
    rows, _ = oplog.search(visitor.session, **filters, limit=EXPORT_LIMIT, offset=0)
    return Response(oplog.export_csv(rows), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="operation-log.csv"'})
