"""CPT bookings: a time slot on an ad space belongs to one ad group at a time, and each slot is billed once, at its
start, through the event pipeline (as Revive and Google Ad Manager bill sponsorships by the booked period, not by
delivery)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from adstack.campaigns.enums import BidType, UserStatus
from adstack.campaigns.models import AdGroup, Campaign
from adstack.core.errors import Conflict, FieldError
from adstack.core.timeutil import as_utc
from adstack.finance.models import ChargeRefusal, LedgerEntry
from adstack.finance.pricing import cpt_slot_micros
from adstack.inventory.models import AdSpace
from adstack.pipeline.records import slot_second_of
from adstack.review.models import ReviewStatus

# A slot that started while billing was down is still billed when it comes back, within this much time after its
# start or until its end, whichever is later: a long slot whose ad group is enabled or approved days into it
# serves from then on, and is billed.
BILLING_CATCH_UP = timedelta(days=2)


@dataclass(frozen=True)
class Slot:
    start: datetime
    end: datetime

    def overlaps(self, other: Slot) -> bool:
        return self.start < other.end and other.start < self.end


def slots_of(stored: Iterable[dict[str, str]]) -> list[Slot]:
    return [Slot(as_utc(datetime.fromisoformat(s["start"])), as_utc(datetime.fromisoformat(s["end"])))
            for s in stored]


def _spaces(session: Session, placement_type: str, publisher_ids: Sequence[int], ad_space_ids: Sequence[int]
            ) -> set[int]:
    """The ad spaces a booking covers: the ones named, else every space of the publishers named, else every
    space of its placement type."""
    from adstack.inventory.models import AdSpace

    if ad_space_ids:
        return set(ad_space_ids)
    stmt = select(AdSpace.id).where(AdSpace.placement_type == placement_type)
    if publisher_ids:
        stmt = stmt.where(AdSpace.publisher_id.in_(publisher_ids))
    return set(session.scalars(stmt))


def slot_errors(values: dict[str, Any], stored: Iterable[dict[str, str]], *, now: datetime) -> list[FieldError]:
    """The booking's own rules. A slot is billed in full at its start, so one that has started is kept as it is
    (an edit would bill a moved slot again, or leave an extended one unpaid), and a new slot starts in the
    future (one booked after its start would never be billed). Slots of one ad group do not overlap, and lie
    within the ad group's schedule, outside which it does not serve."""
    if values.get("status") == UserStatus.DELETED.value:
        return []
    wanted = slots_of(values.get("booked_slots") or []) if values.get("bid_type") == BidType.CPT.value else []
    before = slots_of(stored)
    errors: list[FieldError] = []
    kept = set(wanted)
    for slot in before:
        if slot.start <= now and slot not in kept:
            errors.append(FieldError(
                "booked_slots", "started_slot_kept",
                f"the slot from {slot.start.isoformat()} to {slot.end.isoformat()} has started and is billed: it "
                "cannot be changed or removed", limit=slot.start.isoformat()))
    known = set(before)
    start_at, end_at = values.get("start_at"), values.get("end_at")
    for i, slot in enumerate(wanted):
        if slot not in known and slot.start <= now:
            errors.append(FieldError(f"booked_slots.{i}.start", "in_future", "a new slot must start in the future",
                                     limit=now.isoformat(), actual=slot.start.isoformat()))
        clash = next((j for j in range(i) if slot.overlaps(wanted[j])), None)
        if clash is not None:
            errors.append(FieldError(f"booked_slots.{i}", "no_overlap",
                                     f"overlaps booked_slots.{clash}: an ad group books each hour once",
                                     limit=clash))
        if (start_at is not None and slot.start < as_utc(start_at)) or (
                end_at is not None and slot.end > as_utc(end_at)):
            errors.append(FieldError(f"booked_slots.{i}", "within_schedule",
                                     "a slot lies within the ad group's start and end, outside which it does not "
                                     "serve", limit=[as_utc(start_at).isoformat() if start_at else None,
                                                     as_utc(end_at).isoformat() if end_at else None]))
    return errors


BOOKING_LOCK = 0x4350_5431  # "CPT1": the advisory lock key of CPT bookings


def _serialise_bookings(session: Session) -> None:
    """Hold bookings to one at a time until the transaction ends, so two requests for the same hours cannot both
    find them free: PostgreSQL's transaction-scoped advisory lock; on SQLite a write as the check's first
    statement, which takes the database's one write lock the way `BEGIN IMMEDIATE` does."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": BOOKING_LOCK})
    else:
        session.execute(text("UPDATE ad_spaces SET id = id WHERE 0"))


# Review states in which a booking holds its slots: a draft does not (an unsubmitted draft could otherwise keep
# every competitor off an ad space for as long as it liked, at no cost), nor a rejected one; a draft's slots are
# checked again when it is submitted.
HOLDING = (ReviewStatus.UNDER_REVIEW.value, ReviewStatus.APPROVED.value)


def check_bookings(session: Session, *, ad_group_id: int | None, account_id: int, values: dict[str, Any]) -> None:
    """Refuse a CPT booking whose slot overlaps the slot of another live CPT ad group that holds its slots
    (`HOLDING`) on a shared ad space. Another advertiser's ad group is not named: its id is not this account's to
    know."""
    if values.get("bid_type") != BidType.CPT.value or values.get("status") == UserStatus.DELETED.value:
        return
    wanted = slots_of(values.get("booked_slots") or [])
    if not wanted:
        return
    _serialise_bookings(session)
    spaces = _spaces(session, values["placement_type"], values.get("publisher_ids") or [],
                     values.get("ad_space_ids") or [])
    others = session.scalars(select(AdGroup).where(
        AdGroup.bid_type == BidType.CPT.value, AdGroup.status != UserStatus.DELETED.value,
        AdGroup.review_status.in_(HOLDING), AdGroup.placement_type == values["placement_type"],
        *([AdGroup.id != ad_group_id] if ad_group_id is not None else [])))
    for other in others:
        shared = spaces & _spaces(session, other.placement_type, other.publisher_ids or [], other.ad_space_ids or [])
        if not shared:
            continue
        for i, slot in enumerate(wanted):
            for taken in slots_of(other.booked_slots or []):
                if slot.overlaps(taken):
                    space = min(shared)
                    ours = other.account_id == account_id
                    holder = f"ad group {other.id}" if ours else "another advertiser"
                    message = (f"ad space {space} is booked from {taken.start.isoformat()} to "
                               f"{taken.end.isoformat()} by {holder}")
                    raise Conflict(message, code="slot_taken", fields=[FieldError(
                        field=f"booked_slots.{i}", rule="slot_available", message=message,
                        actual=other.id if ours else None)])


@dataclass(frozen=True)
class DueSlot:
    booking_id: int  # the ad group
    account_id: int
    campaign_id: int
    ad_group_id: int
    ad_space_id: int
    slot: Slot
    amount_micros: int
    publisher_id: int = 0  # the ad space's, so reports place the slot's cost where it was shown
    placement_type: str = ""


def due_slots(session: Session, *, now: datetime) -> list[DueSlot]:
    """Slots of live, approved CPT ad groups that have started and are still running or within the catch-up
    window: each is billed once, its charge id naming the ad group and the slot's start."""
    due = []
    rows = session.execute(select(AdGroup, Campaign.status).join(Campaign, Campaign.id == AdGroup.campaign_id).where(
        AdGroup.bid_type == BidType.CPT.value, AdGroup.status == UserStatus.ENABLED.value,
        AdGroup.review_status == ReviewStatus.APPROVED.value))
    publishers: dict[int, int] = {}
    for group, campaign_status in rows:
        if campaign_status != UserStatus.ENABLED.value:
            continue
        ad_space_id = int((group.ad_space_ids or [0])[0])
        for slot in slots_of(group.booked_slots or []):
            if slot.start <= now and (now < slot.end or now - slot.start <= BILLING_CATCH_UP):
                if ad_space_id and ad_space_id not in publishers:
                    publishers[ad_space_id] = int(session.scalar(
                        select(AdSpace.publisher_id).where(AdSpace.id == ad_space_id)) or 0)
                due.append(DueSlot(group.id, group.account_id, group.campaign_id, group.id, ad_space_id, slot,
                                   cpt_slot_micros(group.bid_micros, slot.start, slot.end),
                                   publisher_id=publishers.get(ad_space_id, 0), placement_type=group.placement_type))
    return due


def unpaid_slot_starts(session: Session, group_ids: Iterable[int]) -> dict[int, frozenset[int]]:
    """The CPT ad groups' booked slots whose charge was refused or cut short by a cap, by the start second their
    charge ids name (`pipeline.records.slot_second`)."""
    ids = sorted(set(group_ids))
    if not ids:
        return {}
    found: dict[int, set[int]] = {}
    refused = session.execute(select(ChargeRefusal.ad_group_id, ChargeRefusal.charge_id).where(
        ChargeRefusal.kind == "cpt", ChargeRefusal.ad_group_id.in_(ids)))
    short = session.execute(select(LedgerEntry.ad_group_id, LedgerEntry.idempotency_key).where(
        LedgerEntry.charge_kind == "cpt", LedgerEntry.requested_micros.is_not(None), LedgerEntry.ad_group_id.in_(ids)))
    for group_id, key in [*refused, *short]:  # a charge id, or the ledger's key for it: both end with the start
        start = slot_second_of(key or "")
        if group_id is not None and start is not None:
            found.setdefault(int(group_id), set()).add(start)
    return {g: frozenset(starts) for g, starts in found.items()}
