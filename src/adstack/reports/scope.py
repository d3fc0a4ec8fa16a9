"""Report scope: which accounts a caller may report on, in which zone and currency."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from adstack.accounts import tenancy
from adstack.accounts.models import Account, Principal
from adstack.core.errors import NotFound, ValidationFailed

# ---------- scope: who may see which accounts, in which zone and currency ----------


@dataclass(frozen=True)
class Scope:
    account_ids: list[int] | None  # None = every account (platform staff, no filter)
    time_zone: str
    currency: str | None


def _scope(session: Session, principal: Principal, requested: Sequence[int], *, time_zone: str | None,
           per_account: bool, field: str = "account_ids") -> Scope:
    visible = tenancy.visible_account_ids(session, principal)
    if requested:
        for position, account_id in enumerate(requested):
            tenancy.ensure_account_visible(session, principal, account_id, field=f"{field}.{position}")
        ids: list[int] | None = sorted(set(requested))
    else:
        ids = None if visible is None else sorted(visible)
    stmt = select(Account.id, Account.currency, Account.time_zone)
    if ids is not None:
        stmt = stmt.where(Account.id.in_(ids))
    found = {row.id: (row.currency, row.time_zone) for row in session.execute(stmt)}
    if ids is not None and requested:
        missing = [i for i in ids if i not in found]
        if missing:
            raise NotFound(f"account {missing[0]} not found")
    currencies = {currency for currency, _ in found.values()}
    if len(currencies) > 1 and not per_account:
        raise ValidationFailed.single(
            field, "same_currency", "these accounts settle in different currencies; report them one by one "
            "(add the account dimension) or choose accounts of one currency", limit=sorted(currencies))
    if time_zone is None:
        if ids is not None and len(ids) == 1 and ids[0] in found:
            time_zone = found[ids[0]][1]
        elif principal.account_id is not None:
            own = session.get(Account, principal.account_id)
            time_zone = own.time_zone if own is not None else "UTC"
        else:
            time_zone = "UTC"
    return Scope(ids, time_zone, currencies.pop() if len(currencies) == 1 else None)


def scope_currencies(session: Session, principal: Principal, requested: Sequence[int] = ()) -> set[str]:
    """The currencies the accounts a report would cover settle in: the visible ones of `requested`, or every
    visible account. More than one: money can only be reported one row per account."""
    visible = tenancy.visible_account_ids(session, principal)
    ids = [i for i in requested if visible is None or i in visible] if requested else visible
    stmt = select(Account.currency).distinct()
    if ids is not None:
        stmt = stmt.where(Account.id.in_(sorted(ids)))
    return set(session.scalars(stmt))
