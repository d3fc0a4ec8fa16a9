"""Tenancy: which accounts a principal may see. Unknown and foreign accounts answer alike."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from adstack.accounts.models import Account, Principal, Role
from adstack.core.errors import FieldError, NotFound, ValidationFailed


def visible_account_ids(session: Session, principal: Principal) -> set[int] | None:
    """Accounts a principal may see: None for platform staff (all), own + sub-accounts for an agency."""
    # Source: Mi Ads Usage Guide, 1.2.2 Register a Core Agency Account: the core agency "can create secondary agent
    # accounts for multiple companies and can conduct unified management and distribution".
    if principal.is_platform:
        return None
    if principal.account_id is None:
        return set()
    ids = {principal.account_id}
    if principal.role == Role.AGENCY:
        ids.update(session.scalars(select(Account.id).where(Account.parent_agency_id == principal.account_id)))
    return ids


def can_see_account(session: Session, principal: Principal, account_id: int) -> bool:
    visible = visible_account_ids(session, principal)
    return visible is None or account_id in visible


def ensure_account_visible(session: Session, principal: Principal, account_id: int, *, field: str | None = None
                           ) -> None:
    """Unknown and foreign accounts answer the same 404, so ids of other tenants cannot be probed; `field` names
    the request field that carried the id."""
    if not can_see_account(session, principal, account_id):
        fields = [FieldError(field=field, rule="exists", message=f"account {account_id} not found",
                             actual=account_id)] if field else None
        raise NotFound(f"account {account_id} not found", fields=fields)


def resolve_account_id(session: Session, principal: Principal, account_id: int | None, *, field: str = "account_id"
                       ) -> int:
    """The account an object is created in: the caller's own unless an agency or admin names another."""
    if account_id is None:
        if principal.account_id is None:
            raise ValidationFailed.single(field, "required", "platform staff must name the account")
        return principal.account_id
    ensure_account_visible(session, principal, account_id, field=field)
    if session.get(Account, account_id) is None:
        raise NotFound(f"account {account_id} not found", fields=[FieldError(
            field=field, rule="exists", message=f"account {account_id} not found", actual=account_id)])
    return account_id


def get_account(session: Session, principal: Principal, account_id: int) -> Account:
    ensure_account_visible(session, principal, account_id)
    account = session.get(Account, account_id)
    if account is None:
        raise NotFound(f"account {account_id} not found")
    return account
