"""Search and download the operation log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from adstack.accounts import tenancy
from adstack.core.deps import CurrentPrincipal, Limit, Offset, OptionalId, SessionDep
from adstack.core.timeutil import search_bound
from adstack.oplog import service
from adstack.oplog.models import ChangeEventRead, Operation

router = APIRouter(prefix="/api/v1/operation-logs", tags=["operation logs"])


def _scope(session: SessionDep, principal: CurrentPrincipal, account_id: int | None) -> set[int] | None:
    if account_id is not None:
        tenancy.ensure_account_visible(session, principal, account_id)
        return {account_id}
    return tenancy.visible_account_ids(session, principal)


Q = Annotated[str | None, Query(max_length=200, description="Object name or id.")]
ObjectType = Annotated[str | None, Query(max_length=32, pattern=r"^[a-z_]+$")]
OnBehalf = Annotated[bool | None, Query(description="Only entries platform staff made on behalf of the account "
                                                    "(true), or only the others (false).")]


class ChangeEventPage(BaseModel):
    total: int = Field(description="Entries matching the filters, over all pages.")
    items: list[ChangeEventRead]


@router.get("", response_model=ChangeEventPage, summary="Search the operation log")
def search(
    principal: CurrentPrincipal,
    session: SessionDep,
    q: Q = None,
    object_type: ObjectType = None,
    operation: Operation | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    account_id: OptionalId = None,
    on_behalf: OnBehalf = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> ChangeEventPage:
    rows, total = service.search(session, account_ids=_scope(session, principal, account_id), query=q,
                                 object_type=object_type, operation=operation, since=search_bound("since", since),
                                 until=search_bound("until", until), on_behalf=on_behalf, limit=limit, offset=offset)
    return ChangeEventPage(total=total, items=[ChangeEventRead.model_validate(r, from_attributes=True) for r in rows])


@router.get("/export.csv", summary="Download matching log entries as CSV",
            response_class=Response, responses={200: {"content": {"text/csv": {}}}})
def export_csv(
    principal: CurrentPrincipal,
    session: SessionDep,
    q: Q = None,
    object_type: ObjectType = None,
    operation: Operation | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    account_id: OptionalId = None,
    on_behalf: OnBehalf = None,
) -> Response:
    rows, _ = service.search(session, account_ids=_scope(session, principal, account_id), query=q,
                             object_type=object_type, operation=operation, since=search_bound("since", since),
                             until=search_bound("until", until), on_behalf=on_behalf, limit=100_000, offset=0)
    return Response(service.export_csv(rows), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="operation-log.csv"'})
