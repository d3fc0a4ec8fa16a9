"""Conditions the worker looks for now and then, each turned into an event once (its key says when again):

- a credited top-up, once per ledger entry;
- a low balance, once per dip: the key carries the last top-up, so the next dip after a top-up tells again;
- a spent budget, once per total budget amount, and once per local day for a daily budget.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from adstack.accounts.models import Account
from adstack.core.money import format_micros
from adstack.core.timeutil import as_utc, zone
from adstack.notifications.models import EventType
from adstack.notifications.service import emit

TOP_UP_LOOKBACK = timedelta(days=2)  # older top-ups were told about, or predate notifications


def detect(session: Session, *, now: datetime) -> int:
    return _top_ups(session, now) + _low_balances(session, now) + _spent_budgets(session, now)


def _top_ups(session: Session, now: datetime) -> int:
    from adstack.finance.models import EntryType, LedgerEntry  # finance builds on accounts and campaigns

    found = 0
    rows = session.scalars(select(LedgerEntry).where(LedgerEntry.entry_type == EntryType.TOP_UP.value,
                                                     LedgerEntry.created_at >= now - TOP_UP_LOOKBACK)
                           .order_by(LedgerEntry.id))
    for entry in rows:
        found += emit(session, account_id=entry.account_id, event_type=EventType.TOP_UP_COMPLETED,
                      key=f"top_up:{entry.id}", data={"amount": format_micros(entry.amount_micros),
                                                      "amount_micros": entry.amount_micros,
                                                      "currency": entry.currency, "ledger_entry_id": entry.id},
                      now=now) is not None
    return found


def _low_balances(session: Session, now: datetime) -> int:
    from adstack.finance import service as finance
    from adstack.finance.models import EntryType, LedgerEntry

    found = 0
    for account in session.scalars(select(Account).where(Account.low_balance_threshold_micros > 0)
                                   .order_by(Account.id)):
        available = finance.available_micros(session, account.id)
        if available >= account.low_balance_threshold_micros:
            continue
        last_top_up = session.scalar(select(func.max(LedgerEntry.id)).where(
            LedgerEntry.account_id == account.id,
            LedgerEntry.entry_type.in_([EntryType.TOP_UP.value, EntryType.TRANSFER_IN.value,
                                        EntryType.CREDIT.value]))) or 0
        found += emit(session, account_id=account.id, event_type=EventType.BALANCE_LOW,
                      key=f"balance.low:{account.id}:{last_top_up}", data={
                          "available": format_micros(available), "available_micros": available,
                          "threshold": format_micros(account.low_balance_threshold_micros),
                          "threshold_micros": account.low_balance_threshold_micros, "currency": account.currency},
                      now=now) is not None
    return found


def _spent_budgets(session: Session, now: datetime) -> int:
    from adstack.campaigns.enums import UserStatus
    from adstack.campaigns.models import AdGroup
    from adstack.campaigns.serving_status import spend_by
    from adstack.campaigns.status import local_midnight_utc
    from adstack.finance.models import LedgerEntry
    from adstack.review.models import ReviewStatus

    groups = list(session.scalars(select(AdGroup).where(
        AdGroup.status == UserStatus.ENABLED.value, AdGroup.review_status == ReviewStatus.APPROVED.value,
        AdGroup.deleted_at.is_(None),
        or_(AdGroup.total_budget_micros.is_not(None), AdGroup.daily_budget_micros.is_not(None)))))
    if not groups:
        return 0
    total = spend_by(session, LedgerEntry.ad_group_id, [g.id for g in groups])
    found = 0
    for group in groups:
        spent = total.get(group.id, 0)
        if group.total_budget_micros is not None and spent >= group.total_budget_micros:
            found += _budget_event(session, group, "total", group.total_budget_micros, spent,
                                   f"total:{group.total_budget_micros}", now)
        if group.daily_budget_micros is not None:
            midnight = local_midnight_utc(now, group.time_zone)
            today = spend_by(session, LedgerEntry.ad_group_id, [group.id], since=midnight).get(group.id, 0)
            if today >= group.daily_budget_micros:
                day = as_utc(now).astimezone(zone(group.time_zone)).date().isoformat()
                found += _budget_event(session, group, "daily", group.daily_budget_micros, today, f"daily:{day}",
                                       now)
    return found


def _budget_event(session: Session, group: object, budget: str, budget_micros: int, spent: int, when: str,
                  now: datetime) -> int:
    from adstack.campaigns.models import AdGroup

    assert isinstance(group, AdGroup)
    return emit(session, account_id=group.account_id, event_type=EventType.BUDGET_EXHAUSTED,
                key=f"budget:{group.id}:{when}", data={
                    "object_type": "ad_group", "object_id": group.id, "object_name": group.name,
                    "campaign_id": group.campaign_id, "budget": budget, "budget_micros": budget_micros,
                    "spent_micros": spent}, now=now) is not None
