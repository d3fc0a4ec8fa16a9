"""Balances, spend and charges over the ledger."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from adstack.finance.models import EntryType, LedgerEntry


def balance_micros(session: Session, account_id: int) -> int:
    total = session.scalar(select(func.coalesce(func.sum(LedgerEntry.amount_micros), 0))
                           .where(LedgerEntry.account_id == account_id))
    return int(total or 0)


def available_micros(session: Session, account_id: int) -> int:
    """What the account may still spend: its balance plus any unused credit line."""
    return balance_micros(session, account_id)


def ad_group_spend_micros(session: Session, ad_group_id: int, *, since: datetime | None = None,
                          until: datetime | None = None) -> int:
    stmt = select(func.coalesce(func.sum(-LedgerEntry.amount_micros), 0)).where(
        LedgerEntry.ad_group_id == ad_group_id, LedgerEntry.entry_type == EntryType.CHARGE.value
    )
    if since is not None:
        stmt = stmt.where(LedgerEntry.created_at >= since)
    if until is not None:
        stmt = stmt.where(LedgerEntry.created_at < until)
    return int(session.scalar(stmt) or 0)
