"""Serving status of stored ad groups and campaigns: the facts read from the database (ledger, budgets,
reservations, readiness) for the rules in status.py, and spend per campaign or ad group."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import date, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from adstack.accounts.models import Account
from adstack.campaigns.ad_group_values import _slot_times
from adstack.campaigns.cpt import unpaid_slot_starts
from adstack.campaigns.enums import BidType, ServingStatus, UserStatus
from adstack.campaigns.models import AdGroup, Campaign
from adstack.campaigns.readiness import Readiness, readiness
from adstack.campaigns.service import _live_ad_groups
from adstack.campaigns.status import (
    ScheduleFacts,
    ServingFacts,
    campaign_serving_status,
    derive_serving_status,
)
from adstack.core.timeutil import as_utc, utcnow, zone
from adstack.finance import budgets
from adstack.finance import service as finance
from adstack.finance.models import EntryType, LedgerEntry
from adstack.review.models import ReviewStatus
from adstack.serving import reservations

_CHUNK = 900  # ids per IN (...) list, well inside every database's parameter limit


# ---------- serving status ----------


def _schedule_facts(ad_group: AdGroup, unpaid: frozenset[int] = frozenset()) -> ScheduleFacts:
    slots = [_slot_times(slot) for slot in ad_group.booked_slots or []]
    return ScheduleFacts(time_zone=ad_group.time_zone, start_at=ad_group.start_at, end_at=ad_group.end_at,
                         dayparting=ad_group.dayparting, booked_slots=slots, bid_type=ad_group.bid_type,
                         unpaid_slot_starts=unpaid)


def _facts(ad_group: AdGroup, campaign: Campaign | None, account: Account | None, *, available: int,
           total_spend: int, spend_today: int, now: datetime, reserved_today: int = 0, reserved_total: int = 0,
           ready: Readiness | None = None, unpaid: frozenset[int] = frozenset()) -> ServingFacts:
    ready = ready or Readiness()
    return ServingFacts(
        status=ad_group.status,
        campaign_status=campaign.status if campaign else UserStatus.DELETED.value,
        account_review_status=account.review_status if account else ReviewStatus.TO_BE_SUBMITTED.value,
        review_status=ad_group.review_status,
        rejection_reasons=ad_group.rejection_reasons,
        account_rejection_reasons=account.rejection_reasons if account else "",
        available_micros=available,
        total_spend_micros=total_spend,
        spend_today_micros=spend_today,
        total_budget_micros=ad_group.total_budget_micros,
        daily_budget_micros=ad_group.daily_budget_micros,
        schedule=_schedule_facts(ad_group, unpaid),
        now=now,
        currency=account.currency if account else "",
        reserved_today_micros=reserved_today,
        reserved_total_micros=reserved_total,
        creatives=ready.creatives,
        approved_creatives=ready.approved_creatives,
        creatives_under_review=ready.creatives_under_review,
        inventory_spaces=ready.inventory_spaces,
        no_audience_members=ready.no_audience_members,
    )


def ad_group_serving_status(session: Session, ad_group: AdGroup, *, now: datetime | None = None
                            ) -> tuple[ServingStatus, str]:
    """Why the ad group serves or not at `now`; see status.derive_serving_status for the order of checks."""
    moment = as_utc(now) if now else utcnow()
    spend_today, total_spend = _budget_spend(session, [ad_group], moment)[ad_group.id]
    held = reservations.held_today({(ad_group.id, _local_day(moment, ad_group.time_zone)): spend_today})
    held_total = reservations.held_in_total({ad_group.id: total_spend}) \
        if ad_group.total_budget_micros is not None else {}
    facts = _facts(
        ad_group, session.get(Campaign, ad_group.campaign_id), session.get(Account, ad_group.account_id),
        available=finance.available_micros(session, ad_group.account_id), total_spend=total_spend,
        spend_today=spend_today, now=moment, reserved_today=held.get(ad_group.id, 0),
        reserved_total=held_total.get(ad_group.id, 0),
        ready=readiness(session, [ad_group])[ad_group.id],
        unpaid=_unpaid(session, [ad_group]).get(ad_group.id, frozenset()),
    )
    return derive_serving_status(facts)


def _budget_spend(session: Session, ad_groups: Sequence[AdGroup], moment: datetime) -> dict[int, tuple[int, int]]:
    """{ad group: (spent on its local day, spent in total)} as budgets count it: from the spend counters billing
    caps against, which a refund takes the charge back from (on the charge's own day)."""
    spent = budgets.ad_group_spend_today(session, [(g.id, _local_day(moment, g.time_zone).isoformat())
                                                   for g in ad_groups])
    return {g: (today, total) for g, (today, total, _) in spent.items()}


def _unpaid(session: Session, ad_groups: Sequence[AdGroup]) -> dict[int, frozenset[int]]:
    return unpaid_slot_starts(session, [g.id for g in ad_groups if g.bid_type == BidType.CPT.value])


def _local_day(moment: datetime, time_zone: str) -> date:
    return as_utc(moment).astimezone(zone(time_zone)).date()


def _chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start:start + _CHUNK]


def spend_by(session: Session, column: InstrumentedAttribute[int | None], ids: Iterable[int], *,
             since: datetime | None = None) -> dict[int, int]:
    """Spend per campaign or ad group id, from the ledger: charges less refunds, each at its own time, as the
    reports' cost counts them."""
    totals: dict[int, int] = {}
    for chunk in _chunks(sorted(set(ids))):
        stmt = (select(column, func.coalesce(func.sum(-LedgerEntry.amount_micros), 0))
                .where(LedgerEntry.entry_type.in_((EntryType.CHARGE.value, EntryType.REFUND.value)),
                       column.in_(chunk)).group_by(column))
        if since is not None:
            stmt = stmt.where(LedgerEntry.occurred_at >= since)
        for key, total in session.execute(stmt):
            if key is not None:
                totals[int(key)] = int(total or 0)
    return totals


def serving_statuses(session: Session, ad_groups: Sequence[AdGroup], *, now: datetime | None = None,
                     assume_audience_members: bool = False) -> dict[int, tuple[ServingStatus, str]]:
    """The serving status of many ad groups with a handful of queries (lists, snapshots). With
    `assume_audience_members`, as if the audiences they include had members (for deciding whether to build those
    audiences: an empty one must not keep itself from being refreshed)."""
    if not ad_groups:
        return {}
    moment = as_utc(now) if now else utcnow()
    campaigns = {c.id: c for c in session.scalars(
        select(Campaign).where(Campaign.id.in_({g.campaign_id for g in ad_groups})))}
    account_ids = {g.account_id for g in ad_groups}
    account_rows = {a.id: a for a in session.scalars(select(Account).where(Account.id.in_(account_ids)))}
    available = {account_id: finance.available_micros(session, account_id) for account_id in account_ids}
    spent = _budget_spend(session, ad_groups, moment)
    today = {g: day for g, (day, _) in spent.items()}
    total = {g: all_time for g, (_, all_time) in spent.items()}
    held = reservations.held_today({(g.id, _local_day(moment, g.time_zone)): today.get(g.id, 0)
                                    for g in ad_groups if g.daily_budget_micros is not None})
    held_total = reservations.held_in_total({g.id: total.get(g.id, 0) for g in ad_groups
                                             if g.total_budget_micros is not None})
    ready = readiness(session, ad_groups)
    if assume_audience_members:
        ready = {g: replace(r, no_audience_members=False) for g, r in ready.items()}
    unpaid = _unpaid(session, ad_groups)
    return {
        g.id: derive_serving_status(_facts(
            g, campaigns.get(g.campaign_id), account_rows.get(g.account_id), available=available[g.account_id],
            total_spend=total.get(g.id, 0), spend_today=today.get(g.id, 0), now=moment,
            reserved_today=held.get(g.id, 0), reserved_total=held_total.get(g.id, 0), ready=ready[g.id],
            unpaid=unpaid.get(g.id, frozenset())))
        for g in ad_groups
    }


def campaign_statuses(session: Session, campaigns: Sequence[Campaign], *, now: datetime | None = None
                      ) -> dict[int, tuple[ServingStatus, str]]:
    if not campaigns:
        return {}
    groups = _live_ad_groups(session, [c.id for c in campaigns])
    group_status = serving_statuses(session, groups, now=now)
    per_campaign: dict[int, list[ServingStatus]] = defaultdict(list)
    for g in groups:
        per_campaign[g.campaign_id].append(group_status[g.id][0])
    accounts_by_id = {a.id: a for a in session.scalars(
        select(Account).where(Account.id.in_({c.account_id for c in campaigns})))}
    out = {}
    for c in campaigns:
        account = accounts_by_id.get(c.account_id)
        out[c.id] = campaign_serving_status(c.status, account.review_status if account else "",
                                            per_campaign.get(c.id, []),
                                            account.rejection_reasons if account else "")
    return out
