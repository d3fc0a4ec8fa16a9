"""Derived serving status: why an ad group serves or not. Pure functions over plain facts; no database."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, time

from adstack.campaigns.enums import BidType, ServingStatus, UserStatus
from adstack.core.money import format_micros
from adstack.core.timeutil import as_utc, zone
from adstack.pipeline.records import slot_second
from adstack.review.models import ReviewStatus

# Serving stops once the next served ad's expected cost no longer fits; an ad costs a fraction of a percent of a
# daily budget, so less than this share left unheld reads as held.
RESERVED_ROOM_SHARE = 0.01


@dataclass(frozen=True)
class ScheduleFacts:
    time_zone: str
    start_at: datetime
    end_at: datetime | None = None
    dayparting: Sequence[Sequence[bool]] | None = None  # 7 x 24, Monday first; None = all day
    booked_slots: Sequence[tuple[datetime, datetime]] = ()  # CPT: serve only inside these
    bid_type: str = ""
    unpaid_slot_starts: frozenset[int] = frozenset()  # CPT slots whose charge was refused or cut short, by second


@dataclass(frozen=True)
class ServingFacts:
    """Everything the serving status depends on, gathered by the service."""

    status: str
    campaign_status: str
    account_review_status: str
    review_status: str
    available_micros: int
    total_spend_micros: int
    spend_today_micros: int
    schedule: ScheduleFacts
    now: datetime
    total_budget_micros: int | None = None
    daily_budget_micros: int | None = None
    rejection_reasons: str = ""
    account_rejection_reasons: str = ""  # a suspended account's reason
    currency: str = field(default="")
    reserved_today_micros: int = 0  # held by served ads awaiting their impression, billing or expiry
    reserved_total_micros: int = 0  # the same, on the total budget
    # What serving would show it with and on (campaigns/readiness.py); none known means none.
    creatives: int = 0
    approved_creatives: int = 0
    creatives_under_review: int = 0
    inventory_spaces: int = 0
    no_audience_members: bool = False


# Fixed texts, so the console shows each in the reader's language (console/messages.py lists them).
NO_CREATIVE = "the ad group has no creative"
SLOT_UNPAID = "the booked CPT slot's charge was refused or cut short at its start, so it does not serve"
ACCOUNT_SUSPENDED_REASON = "the account was suspended by the platform"
REASONS = {
    ServingStatus.CREATIVES_UNDER_REVIEW: "its creatives are under review",
    ServingStatus.NO_APPROVED_CREATIVE: "none of its creatives is approved and enabled",
    ServingStatus.NO_INVENTORY: ("no active ad space of its placement, within its publishers, ad spaces and "
                                 "exceptions, takes its formats and sizes"),
    ServingStatus.NO_AUDIENCE_MEMBERS: ("none of the audiences it includes has members yet: each is still "
                                        "building, failed or empty"),
}


def local_midnight_utc(now: datetime, time_zone: str) -> datetime:
    """The start of `now`'s day in the zone, in UTC: where a daily budget resets."""
    local = as_utc(now).astimezone(zone(time_zone))
    return as_utc(datetime.combine(local.date(), time(0), tzinfo=local.tzinfo))


def out_of_schedule_reason(facts: ScheduleFacts, now: datetime) -> str | None:
    """None when the ad group may serve at `now`; otherwise why not."""
    moment = as_utc(now)
    if moment < as_utc(facts.start_at):
        return f"starts at {as_utc(facts.start_at).astimezone(zone(facts.time_zone)).isoformat()}"
    if facts.end_at is not None and moment >= as_utc(facts.end_at):
        return f"ended at {as_utc(facts.end_at).astimezone(zone(facts.time_zone)).isoformat()}"
    local = moment.astimezone(zone(facts.time_zone))
    if facts.dayparting is not None and not facts.dayparting[local.weekday()][local.hour]:
        return f"outside dayparting ({local.strftime('%A')} {local.hour:02d}:00 {facts.time_zone})"
    if facts.bid_type == BidType.CPT:
        current = [as_utc(s) for s, e in facts.booked_slots if as_utc(s) <= moment < as_utc(e)]
        if not current:
            return "outside the booked CPT slots"
        if any(slot_second(start) in facts.unpaid_slot_starts for start in current):
            return SLOT_UNPAID
    return None


def derive_serving_status(facts: ServingFacts) -> tuple[ServingStatus, str]:
    """The first check that stops the ad group wins; the order is part of the contract."""
    if facts.status == UserStatus.DELETED:
        return ServingStatus.DELETED, "the ad group is deleted"
    if facts.status == UserStatus.PAUSED:
        return ServingStatus.PAUSED, "the ad group is paused"
    if facts.campaign_status == UserStatus.PAUSED:
        return ServingStatus.CAMPAIGN_PAUSED, "its campaign is paused"
    if facts.campaign_status == UserStatus.DELETED:
        return ServingStatus.CAMPAIGN_DELETED, "its campaign is deleted"
    if facts.account_review_status != ReviewStatus.APPROVED:
        return account_status(facts.account_review_status, facts.account_rejection_reasons)
    if facts.review_status == ReviewStatus.TO_BE_SUBMITTED:
        return ServingStatus.TO_BE_SUBMITTED, "the ad group has not been submitted for review"
    if facts.review_status == ReviewStatus.UNDER_REVIEW:
        return ServingStatus.UNDER_REVIEW, "the ad group is under review"
    if facts.review_status == ReviewStatus.REJECTED:
        reasons = f": {facts.rejection_reasons}" if facts.rejection_reasons else ""
        return ServingStatus.REJECTED, f"the ad group was rejected{reasons}"
    if facts.review_status == ReviewStatus.SUSPENDED:
        reasons = f": {facts.rejection_reasons}" if facts.rejection_reasons else ""
        return ServingStatus.SUSPENDED, f"the ad group was suspended by a reviewer{reasons}"
    if facts.approved_creatives <= 0:
        if facts.creatives_under_review > 0:
            return ServingStatus.CREATIVES_UNDER_REVIEW, REASONS[ServingStatus.CREATIVES_UNDER_REVIEW]
        if facts.creatives <= 0:
            return ServingStatus.NO_APPROVED_CREATIVE, NO_CREATIVE
        return ServingStatus.NO_APPROVED_CREATIVE, REASONS[ServingStatus.NO_APPROVED_CREATIVE]
    if facts.inventory_spaces <= 0:
        return ServingStatus.NO_INVENTORY, REASONS[ServingStatus.NO_INVENTORY]
    if facts.no_audience_members:
        return ServingStatus.NO_AUDIENCE_MEMBERS, REASONS[ServingStatus.NO_AUDIENCE_MEMBERS]
    if facts.available_micros <= 0:
        return ServingStatus.BALANCE_INSUFFICIENT, "the account has no balance left"
    if facts.total_budget_micros is not None and facts.total_spend_micros >= facts.total_budget_micros:
        return ServingStatus.BUDGET_EXHAUSTED, (
            f"total budget of {_money(facts.total_budget_micros, facts.currency)} is spent")
    if facts.daily_budget_micros is not None and facts.spend_today_micros >= facts.daily_budget_micros:
        return ServingStatus.DAILY_BUDGET_EXHAUSTED, (
            f"daily budget of {_money(facts.daily_budget_micros, facts.currency)} is spent for today")
    if _held_by_reservations(facts.daily_budget_micros, facts.spend_today_micros, facts.reserved_today_micros):
        return ServingStatus.DAILY_BUDGET_RESERVED, (
            f"{_money(facts.reserved_today_micros, facts.currency)} of today's budget is held by ads served and "
            f"not yet shown; it returns when they are billed or their reservations expire")
    if _held_by_reservations(facts.total_budget_micros, facts.total_spend_micros, facts.reserved_total_micros):
        return ServingStatus.BUDGET_RESERVED, (
            f"{_money(facts.reserved_total_micros, facts.currency)} of the total budget is held by ads served and "
            f"not yet shown; it returns when they are billed or their reservations expire")
    reason = out_of_schedule_reason(facts.schedule, facts.now)
    if reason is not None:
        return ServingStatus.OUT_OF_SCHEDULE, reason
    return ServingStatus.ELIGIBLE, "serving"


def _held_by_reservations(budget: int | None, spent: int, reserved: int) -> bool:
    """Whether reservations leave less than RESERVED_ROOM_SHARE of the budget: it serves nothing until they end."""
    return budget is not None and reserved > 0 and budget - spent - reserved < budget * RESERVED_ROOM_SHARE


def _money(micros: int, currency: str) -> str:
    return f"{format_micros(micros)} {currency}".strip()


# Closer to serving = later in this list: a campaign shows the most advanced state among its ad groups.
_PROGRESS = list(ServingStatus)


def account_status(review_status: str, reasons: str = "") -> tuple[ServingStatus, str]:
    """Why an account that is not approved stops its ads: suspended by the platform (with the reason) or not
    yet through review."""
    if review_status == ReviewStatus.SUSPENDED:
        return ServingStatus.ACCOUNT_SUSPENDED, ACCOUNT_SUSPENDED_REASON + (f": {reasons}" if reasons else "")
    return ServingStatus.ACCOUNT_UNDER_REVIEW, f"the account is {review_status.replace('_', ' ')}"


def campaign_serving_status(campaign_status: str, account_review_status: str,
                            ad_group_statuses: Sequence[ServingStatus], account_reasons: str = ""
                            ) -> tuple[ServingStatus, str]:
    if campaign_status == UserStatus.DELETED:
        return ServingStatus.DELETED, "the campaign is deleted"
    if campaign_status == UserStatus.PAUSED:
        return ServingStatus.PAUSED, "the campaign is paused"
    if account_review_status != ReviewStatus.APPROVED:
        return account_status(account_review_status, account_reasons)
    live = [s for s in ad_group_statuses if s != ServingStatus.DELETED]
    if not live:
        return ServingStatus.NO_ACTIVE_AD_GROUPS, "the campaign has no ad groups"
    eligible = sum(1 for s in live if s == ServingStatus.ELIGIBLE)
    if eligible:
        return ServingStatus.ELIGIBLE, f"{eligible} of {len(live)} ad groups serving"
    best = max(live, key=_PROGRESS.index)
    return best, f"no ad group is serving; the closest is {best.value.replace('_', ' ')}"

