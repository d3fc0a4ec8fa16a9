"""Budgets of ad groups: their caps, their spend and the spend counters billing keeps against them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from adstack.accounts.models import Account
from adstack.campaigns.enums import ServingStatus
from adstack.campaigns.models import AdGroup
from adstack.core.timeutil import as_utc, utcnow, zone
from adstack.finance.models import TOTAL_PERIOD, EntryType, LedgerEntry, SpendCounter, SpendScope
from adstack.finance.service import _local_midnight, _sql, funds

# ---------- budgets of ad groups ----------


@dataclass(frozen=True, slots=True)
class BudgetView:
    """What billing needs to know about an ad group: its owner, caps and time zone."""

    ad_group_id: int
    account_id: int | None  # None: no such ad group; only the account's funds cap a charge
    campaign_id: int | None
    time_zone: str | None  # None: the account's time zone applies
    daily_budget_micros: int | None
    total_budget_micros: int | None
    booked_impressions: int | None


def budget_view(session: Session, ad_group_id: int) -> BudgetView:
    """The ad group's caps, deleted ad groups included (their late events are still billed)."""
    ad_group = session.get(AdGroup, ad_group_id)
    if ad_group is None:
        return BudgetView(ad_group_id, None, None, None, None, None, None)
    return BudgetView(ad_group_id, ad_group.account_id, ad_group.campaign_id, ad_group.time_zone or None,
                      ad_group.daily_budget_micros, ad_group.total_budget_micros, ad_group.booked_impressions)


def local_day(moment: datetime, tz_name: str) -> str:
    return as_utc(moment).astimezone(zone(tz_name)).date().isoformat()


def next_local_midnight(moment: datetime, tz_name: str) -> datetime:
    local = as_utc(moment).astimezone(zone(tz_name))
    return _local_midnight(local.date() + timedelta(days=1), tz_name)


def ad_group_spend_micros(session: Session, ad_group_id: int, *, since: datetime | None = None,
                          until: datetime | None = None) -> int:
    """What the ad group was charged for events that occurred in [since, until); all time without bounds."""
    stmt = select(func.coalesce(func.sum(-LedgerEntry.amount_micros), 0)).where(
        LedgerEntry.ad_group_id == ad_group_id, LedgerEntry.entry_type == EntryType.CHARGE.value
    )
    if since is not None:
        stmt = stmt.where(LedgerEntry.occurred_at >= since)
    if until is not None:
        stmt = stmt.where(LedgerEntry.occurred_at < until)
    return int(session.scalar(stmt) or 0)


def campaign_spend_micros(session: Session, campaign_id: int, *, since: datetime | None = None,
                          until: datetime | None = None) -> int:
    """The campaign's charges, its deleted ad groups and creatives included."""
    stmt = select(func.coalesce(func.sum(-LedgerEntry.amount_micros), 0)).where(
        LedgerEntry.campaign_id == campaign_id, LedgerEntry.entry_type == EntryType.CHARGE.value)
    if since is not None:
        stmt = stmt.where(LedgerEntry.occurred_at >= since)
    if until is not None:
        stmt = stmt.where(LedgerEntry.occurred_at < until)
    return int(session.scalar(stmt) or 0)


def creative_spend_micros(session: Session, creative_id: int) -> int:
    stmt = select(func.coalesce(func.sum(-LedgerEntry.amount_micros), 0)).where(
        LedgerEntry.creative_id == creative_id, LedgerEntry.entry_type == EntryType.CHARGE.value)
    return int(session.scalar(stmt) or 0)


@dataclass(frozen=True, slots=True)
class BudgetState:
    """An ad group's spend against its budgets at a moment, read from the counters billing keeps."""

    ad_group_id: int
    time_zone: str
    day: str  # the local date of `at` in the ad group's time zone
    spent_today_micros: int
    spent_total_micros: int
    daily_budget_micros: int | None
    total_budget_micros: int | None
    available_funds_micros: int | None  # None when the account is unknown

    @property
    def remaining_today_micros(self) -> int | None:
        return None if self.daily_budget_micros is None else max(self.daily_budget_micros
                                                                  - self.spent_today_micros, 0)

    @property
    def remaining_total_micros(self) -> int | None:
        return None if self.total_budget_micros is None else max(self.total_budget_micros
                                                                  - self.spent_total_micros, 0)

    @property
    def remaining_micros(self) -> int | None:
        """What the ad group may still spend today under its budgets (None = uncapped)."""
        caps = [c for c in (self.remaining_today_micros, self.remaining_total_micros) if c is not None]
        return min(caps) if caps else None

    @property
    def exhausted_reason(self) -> ServingStatus | None:
        """Which money cap stops the ad group now, or None when it may spend."""
        if self.available_funds_micros is not None and self.available_funds_micros <= 0:
            return ServingStatus.BALANCE_INSUFFICIENT
        if self.remaining_total_micros == 0:
            return ServingStatus.BUDGET_EXHAUSTED
        if self.remaining_today_micros == 0:
            return ServingStatus.DAILY_BUDGET_EXHAUSTED
        return None


def _ad_group_counters(session: Session, ad_group_id: int, day: str) -> dict[str, tuple[int, int]]:
    """{period: (spent micros, billed units)} of an ad group for one local day and in total."""
    rows = session.connection().execute(_sql(session).read_counters, {
        "p_scope": SpendScope.AD_GROUP.value, "p_scope_id": ad_group_id, "p_day": day})
    return {period: (int(micros), int(units)) for period, micros, units in rows}


def budget_state(session: Session, ad_group_id: int, *, at: datetime | None = None) -> BudgetState:
    """Spend today (in the ad group's time zone) and in total against the budgets, and the account's funds."""
    moment = as_utc(at) if at is not None else utcnow()
    view = budget_view(session, ad_group_id)
    account = session.get(Account, view.account_id) if view.account_id is not None else None
    tz = view.time_zone or (account.time_zone if account is not None else "UTC")
    day = local_day(moment, tz)
    found = _ad_group_counters(session, ad_group_id, day)
    return BudgetState(
        ad_group_id=ad_group_id, time_zone=tz, day=day,
        spent_today_micros=found.get(day, (0, 0))[0], spent_total_micros=found.get(TOTAL_PERIOD, (0, 0))[0],
        daily_budget_micros=view.daily_budget_micros, total_budget_micros=view.total_budget_micros,
        available_funds_micros=funds(session, account, at=moment).available_micros if account is not None else None,
    )


def remaining_budget_micros(session: Session, ad_group_id: int, *, at: datetime | None = None) -> int | None:
    """What the ad group may still spend today under its daily and total budgets; None when uncapped."""
    return budget_state(session, ad_group_id, at=at).remaining_micros


def ad_group_spend_today(session: Session, ad_group_days: Iterable[tuple[int, str]]
                         ) -> dict[int, tuple[int, int, int]]:
    """Bulk read for serving's snapshot: {ad_group_id: (spent on that local day, spent in total, billed events in
    total)} for (ad_group_id, local ISO date) pairs; one query per 500 ad groups."""
    pairs = list(ad_group_days)
    out: dict[int, tuple[int, int, int]] = {ad_group_id: (0, 0, 0) for ad_group_id, _ in pairs}
    for start in range(0, len(pairs), 500):
        chunk = pairs[start:start + 500]
        ids = [ad_group_id for ad_group_id, _ in chunk]
        wanted = {ad_group_id: day for ad_group_id, day in chunk}
        rows = session.execute(select(SpendCounter.scope_id, SpendCounter.period, SpendCounter.spent_micros,
                                      SpendCounter.units).where(
            SpendCounter.scope == SpendScope.AD_GROUP.value, SpendCounter.scope_id.in_(ids)))
        for scope_id, period, spent, units in rows:
            today, total, billed = out[int(scope_id)]
            if period == TOTAL_PERIOD:
                out[int(scope_id)] = (today, int(spent), int(units or 0))
            elif period == wanted[int(scope_id)]:
                out[int(scope_id)] = (int(spent), total, billed)
    return out
