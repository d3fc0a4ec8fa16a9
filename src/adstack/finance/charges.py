"""Exactly-once charges of billable events, and refunds of them.

Charges (`apply_charge`, or `apply_charges` for a batch) are decided one at a time per account under the
wallet lock (service.py): the duplicate check, the cap check and the write happen under the lock, so two workers can
neither apply the same charge id twice nor both spend the last room under a cap. A batch keeps that order
in memory and reaches the database with a constant number of statements, so the lock is held for a few
round trips. A charge is charged in full while every cap has room, truncated to the room left under the
tightest cap, and refused (and remembered as refused, so a redelivery is refused too) once there is none.
Caps: the ad group's daily budget (a day in the ad group's time zone, by the time the event occurred), its
total budget, a guaranteed-CPM booking's volume, and the account's funds (its balance, plus the credit line
in force for a postpay account).

Overspend bound. Billed spend never passes a cap: the money overspend is 0, and at most one charge per cap
is truncated; compare Google Ads (up to 2x the daily budget on a day), Meta (up to 75%) and Kevel (+-5% of
goal). What can pass a cap is unbilled delivery: the billable events already in flight (served, not yet
charged) when the cap was reached. Serving learns of it from `ChargeResult.exhausted` at once, and from
`budget_state`/the ad group's serving status on its next snapshot; the in-flight events are those
served in between, bounded by serving's own hot counters. They are refused here and never billed.

Charges of deleted campaigns, ad groups and creatives stay: entries are never deleted, and parents' spend
sums over ids, not over live objects.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from adstack.accounts.models import Account, Principal
from adstack.campaigns.models import AdGroup
from adstack.core.db import driver_datetime, insert_many
from adstack.core.errors import Conflict, FieldError, NotFound, ValidationFailed
from adstack.core.timeutil import as_utc, utcnow
from adstack.finance.budgets import BudgetView, local_day, next_local_midnight
from adstack.finance.models import (
    TOTAL_PERIOD,
    CapReason,
    ChargeKind,
    ChargeStatus,
    CreditLine,
    EntryType,
    LedgerEntry,
    RefundIn,
    SpendScope,
)
from adstack.finance.pricing import decide
from adstack.finance.service import (
    _LEDGER,
    _account,
    _entry,
    _existing_entry,
    _funds_of,
    _local_midnight,
    _lock_wallet,
    _money_snapshot,
    _post,
    _postpay_governor,
    _require_account_manager,
    _sql,
)
from adstack.oplog import service as oplog

if TYPE_CHECKING:
    from adstack.events.models import Event
    from adstack.events.service import EventStore
from adstack.oplog.models import Operation

MAX_CHARGE_ID_LENGTH = 120

# ---------- refunds ----------

# Serving gives each refund back to its budget counters once, reading the refunds booked after the last ledger entry
# it read (`refunds_between`). On PostgreSQL a ledger id is taken when its row is written, not when it commits, so a
# refund still being written when serving reads a later entry as the last would be passed over for good. A refund's
# booking therefore holds this advisory lock exclusively, and a reading of the ledger's last entry holds it shared:
# a reading waits for the refund in flight to commit, and a refund begun after it gets a later id.
REFUND_ORDER_LOCK = 0x5246_4E44  # "RFND"


def _book_refunds_in_order(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": REFUND_ORDER_LOCK})


def read_after_refunds_in_flight(session: Session) -> None:
    """Call before reading the ledger's last entry in a transaction that then reads the refunds up to it: the
    refunds being booked are committed first, and those booked later come after it (SQLite writes one at a time)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock_shared(:key)"), {"key": REFUND_ORDER_LOCK})


def charge_key(charge_id: str) -> str:
    return f"charge:{charge_id}"


def refund(session: Session, principal: Principal, data: RefundIn, *, store: EventStore | None = None
           ) -> LedgerEntry:
    """Give back what a charge took (e.g. traffic found invalid later), at most once per charge.

    The charge's spend comes off the counters of its day, so the budgets it used are free again (serving's hot
    counters learn of it from the ledger: `refunds_between`), and the event store gets the refund as a negative
    charge event, dated when the ledger dates it, so reported cost is the ledger's net charges (appended before
    the caller commits: a retry appends the same event id, counted once)."""
    _require_account_manager(principal, "a refund")
    _book_refunds_in_order(session)
    charge = _existing_entry(session, charge_key(data.charge_id))
    if charge is None or charge.entry_type != EntryType.CHARGE:
        raise NotFound(f"charge {data.charge_id!r} not found")
    account = _account(session, principal, charge.account_id)
    balance = _lock_wallet(session, account)
    key = f"refund:{data.charge_id}"
    if _existing_entry(session, key) is not None:
        raise Conflict(f"charge {data.charge_id!r} was already refunded", code="already_refunded",
                       fields=[FieldError(field="charge_id", rule="refunded_once", actual=data.charge_id)])
    entry = _entry(session, _post(session, account, EntryType.REFUND, -charge.amount_micros, key=key,
                                  operator_user_id=principal.user_id, remarks=data.remarks,
                                  campaign_id=charge.campaign_id, ad_group_id=charge.ad_group_id,
                                  creative_id=charge.creative_id, reference=f"entry:{charge.id}"))
    _take_off_spend(session, account, charge)
    if store is not None:
        store.append([_refund_event(store, data.charge_id, charge, entry)])
    oplog.record(session, actor=principal, operation=Operation.UPDATE, object_type="refund", object_id=entry.id,
                 object_name=f"refund of {data.charge_id}"[:200], account_id=account.id,
                 before={"balance_micros": balance}, after=_money_snapshot(entry, balance + entry.amount_micros))
    return entry


def _counted_day(session: Session, account: Account, charge: LedgerEntry) -> str:
    """The local day a charge counted on: in its ad group's time zone, else its account's."""
    group = session.get(AdGroup, charge.ad_group_id) if charge.ad_group_id else None
    return local_day(as_utc(charge.occurred_at), (group.time_zone if group is not None else None) or account.time_zone)


@dataclass(frozen=True, slots=True)
class Refunded:
    """A refund as the budgets it frees see it."""

    entry_id: int  # the refund's ledger entry
    account_id: int
    ad_group_id: int | None
    amount_micros: int
    day: str  # the local day its charge counted on (`_counted_day`)


def refunds_between(session: Session, after_entry_id: int, through_entry_id: int) -> list[Refunded]:
    """The refunds booked in ledger entries after `after_entry_id` up to `through_entry_id`, oldest first."""
    refunds = list(session.scalars(select(LedgerEntry).where(
        LedgerEntry.id > after_entry_id, LedgerEntry.id <= through_entry_id,
        LedgerEntry.entry_type == EntryType.REFUND.value).order_by(LedgerEntry.id)))
    out = []
    for refund in refunds:
        charge_id = refund.reference.removeprefix("entry:")
        charge = session.get(LedgerEntry, int(charge_id)) if charge_id.isdigit() else None
        account = session.get(Account, refund.account_id)
        if charge is None or account is None:
            continue
        out.append(Refunded(refund.id, refund.account_id, charge.ad_group_id, refund.amount_micros,
                            _counted_day(session, account, charge)))
    return out


def _take_off_spend(session: Session, account: Account, charge: LedgerEntry) -> None:
    """The refunded charge leaves its ad group's and campaign's spend counters, on the local days it counted on
    (the ad group's zone, else the account's), and the account's total. The account's daily counter is the
    financial records' charge row of that day: it keeps what was charged, and the refund is its own record on
    the day it was made, as the ledger and the reports have them."""
    at = as_utc(charge.occurred_at)
    day = _counted_day(session, account, charge)
    keys = [(SpendScope.ACCOUNT.value, account.id, TOTAL_PERIOD)]
    if charge.ad_group_id:
        keys += [(SpendScope.AD_GROUP.value, charge.ad_group_id, day),
                 (SpendScope.AD_GROUP.value, charge.ad_group_id, TOTAL_PERIOD)]
    if charge.campaign_id:
        keys += [(SpendScope.CAMPAIGN.value, charge.campaign_id, day),
                 (SpendScope.CAMPAIGN.value, charge.campaign_id, TOTAL_PERIOD)]
    session.connection().execute(_sql(session).add_to_counters, [
        {"scope": scope, "scope_id": scope_id, "period": period, "account_id": account.id,
         "currency": account.currency, "spent_micros": charge.amount_micros, "units": -1, "last_charge_at": at}
        for scope, scope_id, period in keys])


def _refund_event(store: EventStore, charge_id: str, charge: LedgerEntry, entry: LedgerEntry) -> Event:
    """A negative charge event in the refunded charge event's place (its ad space, country, placement and
    objective where the store has it), so every grouping of the report nets it out."""
    from adstack.events.models import Event, EventType

    found = store.query(
        "SELECT ad_space_id, publisher_id, placement_type, country, objective FROM events "
        "WHERE event_id = {p_id:String} AND event_type = 'charge' LIMIT 1", {"p_id": f"charge:{charge_id}"}).rows
    ad_space_id, publisher_id, placement_type, country, objective = found[0] if found else (0, 0, "", "", "")
    return Event(event_id=f"refund:{charge_id}", event_type=EventType.CHARGE, occurred_at=as_utc(entry.occurred_at),
                 account_id=charge.account_id, campaign_id=charge.campaign_id or 0,
                 ad_group_id=charge.ad_group_id or 0, creative_id=charge.creative_id or 0,
                 ad_space_id=int(ad_space_id), publisher_id=int(publisher_id), placement_type=str(placement_type),
                 country=str(country), objective=str(objective), cost_micros=-entry.amount_micros,
                 attrs={"kind": "refund"})


# ---------- exactly-once charges ----------


@dataclass(frozen=True, slots=True)
class ChargeResult:
    charge_id: str
    status: ChargeStatus
    charged_micros: int  # what this call took from the balance (0 for a refusal or a duplicate)
    requested_micros: int
    reason: CapReason | None = None  # the cap that truncated or refused the charge
    exhausted: tuple[CapReason, ...] = ()  # caps with nothing left now: serving should stop the ad group
    entry_id: int | None = None  # the ledger entry (of the first application, for a duplicate)
    ledger_micros: int = 0  # what the ledger holds for this charge id, now or from its first application

    @property
    def in_ledger(self) -> bool:
        """True when the ledger holds money for this charge id, whichever call put it there."""
        return self.ledger_micros > 0

    @property
    def applied(self) -> bool:
        """True when this call moved money (in full or truncated)."""
        return self.status in (ChargeStatus.APPLIED, ChargeStatus.TRUNCATED)

    @property
    def duplicate(self) -> bool:
        return self.status is ChargeStatus.DUPLICATE


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    charge_id: str
    account_id: int
    campaign_id: int
    ad_group_id: int
    creative_id: int
    amount_micros: int
    kind: str
    occurred_at: datetime


# By value: a dict look-up, where calling the enum costs more than the rest of a charge's checks.
_CHARGE_KINDS: dict[str, ChargeKind] = {k.value: k for k in ChargeKind}


def _validate_charge(charge_id: str, amount_micros: int, kind: str) -> ChargeKind:
    if not charge_id or len(charge_id) > MAX_CHARGE_ID_LENGTH:
        raise ValidationFailed.single("charge_id", "length", "a charge id has 1 to 120 characters",
                                      limit=MAX_CHARGE_ID_LENGTH, actual=len(charge_id))
    if amount_micros <= 0:
        raise ValidationFailed.single("amount_micros", "greater_than", "a charge must be positive", limit=0,
                                      actual=amount_micros)
    charge_kind = _CHARGE_KINDS.get(kind)
    if charge_kind is None:
        raise ValidationFailed.single("kind", "enum", f"unknown charge kind {kind!r}",
                                      limit=[k.value for k in ChargeKind], actual=kind)
    return charge_kind


def apply_charge(session: Session, *, charge_id: str, account_id: int, campaign_id: int, ad_group_id: int,
                 creative_id: int, amount_micros: int, kind: str, occurred_at: datetime) -> ChargeResult:
    """Charge one billable event exactly once. The caller commits (soon: the account's wallet stays locked
    until then); a retry with the same charge id, before or after the commit, answers `duplicate`.

    `amount_micros` is the event's price in the account currency: CPM and guaranteed CPM pass
    `pricing.cpm_impression_micros(clearing price)`, CPC the click price, CPA the conversion price, CPT
    `pricing.cpt_slot_micros(...)` for one booked slot (charge id e.g. "cpt:<ad group>:<slot start>").
    """
    return apply_charges(session, [ChargeRequest(charge_id, account_id, campaign_id, ad_group_id, creative_id,
                                                 amount_micros, kind, occurred_at)])[0]


@dataclass
class _AccountBatch:
    """One account's share of a batch: its funds and what the batch moves, kept in memory until written."""

    account: Account
    governor: Account | None
    lines: list[CreditLine]
    balance: int
    moved: int = 0
    entries: int = 0

    def available_at(self, moment: datetime) -> int:
        if self.governor is None:  # prepaid: the positive balance alone, as `_funds_of` says
            return max(self.balance, 0)
        line = next((x for x in self.lines if x.starts_at <= moment < x.ends_at), None)
        return _funds_of(self.account, self.governor, line, self.balance).available_micros


class _LocalDays:
    """`local_day` for a batch's charges: each time zone's last day is kept with its bounds in UTC, so the
    charges falling inside them (nearly all of a batch) need no time-zone conversion."""

    def __init__(self) -> None:
        self._spans: dict[str, tuple[datetime, datetime, str]] = {}

    def __call__(self, moment: datetime, tz_name: str) -> str:
        span = self._spans.get(tz_name)
        if span is not None and span[0] <= moment < span[1]:
            return span[2]
        day = local_day(moment, tz_name)
        start, end = _local_midnight(date.fromisoformat(day), tz_name), next_local_midnight(moment, tz_name)
        if start <= moment < end and local_day(start, tz_name) == day:
            self._spans[tz_name] = (start, end, day)
        return day


# A charge's ledger entry, as `apply_charges` builds it (the other columns keep their defaults: NULL).
_ENTRY_COLUMNS = ("account_id", "entry_type", "amount_micros", "currency", "idempotency_key", "campaign_id",
                  "ad_group_id", "creative_id", "remarks", "created_at", "occurred_at", "charge_kind",
                  "requested_micros", "reference")


def apply_charges(session: Session, charges: Iterable[ChargeRequest], *, with_entry_ids: bool = True
                  ) -> list[ChargeResult]:
    """Charge a batch of billable events exactly once each, in one transaction (the caller commits).
    Without `with_entry_ids`, the results of newly applied charges carry no ledger entry id.

    Every charge is decided in order, as if applied one by one, but the database sees a constant number of
    statements per batch: the wallets are locked once (in account id order, so batches cannot deadlock),
    earlier decisions and spend counters are read once, and entries, refusals and counters are written in
    bulk. An invalid charge (empty id, amount <= 0, unknown kind or account, ad group of another account)
    rejects the whole batch before anything is written.
    """
    items = list(charges)
    kinds = [_validate_charge(c.charge_id, c.amount_micros, c.kind) for c in items]
    if not items:
        return []
    account_rows = {a.id: a for a in session.scalars(select(Account).where(
        Account.id.in_({c.account_id for c in items})))}
    views = {g.id: BudgetView(g.id, g.account_id, g.campaign_id, g.time_zone or None, g.daily_budget_micros,
                              g.total_budget_micros, g.booked_impressions)
             for g in session.scalars(select(AdGroup).where(AdGroup.id.in_({c.ad_group_id for c in items})))}
    for c in items:
        if c.account_id not in account_rows:
            raise NotFound(f"account {c.account_id} not found")
        view = views.get(c.ad_group_id)
        if view is not None and view.account_id != c.account_id:
            raise ValidationFailed.single("ad_group_id", "belongs_to_account",
                                          f"ad group {c.ad_group_id} is not in account {c.account_id}",
                                          actual=c.ad_group_id)
    sql, conn = _sql(session), session.connection()

    batches: dict[int, _AccountBatch] = {}
    for account_id in sorted(account_rows):
        account = account_rows[account_id]
        balance = _lock_wallet(session, account)
        governor = _postpay_governor(session, account)
        lines = list(session.scalars(select(CreditLine).where(CreditLine.account_id == governor.id))) \
            if governor is not None else []
        batches[account_id] = _AccountBatch(account, governor, lines, balance)

    # Decisions already taken, by earlier batches or other workers (visible now that the wallets are locked).
    # charge id -> (entry, requested, reason, micros in the ledger)
    decided: dict[str, tuple[int | None, int, CapReason | None, int]] = {}
    charge_ids = list({c.charge_id for c in items})
    for entry_id, key, amount, requested in conn.execute(sql.find_charges,
                                                         {"p_keys": [charge_key(x) for x in charge_ids]}):
        decided[key.removeprefix("charge:")] = (int(entry_id), int(requested or -amount), None, -int(amount))
    for charge_id, requested, reason in conn.execute(sql.find_refusals, {"p_charges": charge_ids}):
        decided[charge_id] = (None, int(requested), CapReason(reason), 0)

    def zone_of(c: ChargeRequest) -> str:
        view = views.get(c.ad_group_id)
        return (view.time_zone if view is not None else None) or batches[c.account_id].account.time_zone

    day_of = _LocalDays()
    occurred = [as_utc(c.occurred_at) for c in items]
    days = [day_of(at, zone_of(c)) for c, at in zip(items, occurred, strict=True)]
    spent: dict[tuple[int, str], list[int]] = {}  # (ad group, period) -> [micros, units]
    for scope_id, period, micros, units in conn.execute(sql.read_ad_group_counters, {
            "p_ids": list({c.ad_group_id for c in items}), "p_periods": [*set(days), TOTAL_PERIOD]}):
        spent[(int(scope_id), period)] = [int(micros), int(units)]

    outcomes: list[tuple[ChargeStatus, int, CapReason | None, tuple[CapReason, ...]]] = []
    entries: list[tuple[Any, ...]] = []
    charge_type = EntryType.CHARGE.value
    refusals: list[dict[str, Any]] = []
    counter_deltas: dict[tuple[str, int, str], list[Any]] = {}  # key -> [account, currency, micros, units, last]
    spread_sums: dict[tuple[int, int, int, str, str], list[Any]] = {}  # -> [micros, units, last]
    now = utcnow()
    status: ChargeStatus
    cap: CapReason | None
    exhausted: tuple[CapReason, ...]
    for c, kind, at, day in zip(items, kinds, occurred, days, strict=True):
        if c.charge_id in decided:
            outcomes.append((ChargeStatus.DUPLICATE, 0, decided[c.charge_id][2], ()))
            continue
        batch = batches[c.account_id]
        view = views.get(c.ad_group_id)
        today = spent.setdefault((c.ad_group_id, day), [0, 0])
        total = spent.setdefault((c.ad_group_id, TOTAL_PERIOD), [0, 0])
        amount = c.amount_micros
        funds_left = batch.available_at(at)
        daily_left = total_left = impressions_left = None
        if view is not None:
            if view.daily_budget_micros is not None:
                daily_left = view.daily_budget_micros - today[0]
            if view.total_budget_micros is not None:
                total_left = view.total_budget_micros - total[0]
            if kind is ChargeKind.GUARANTEED_CPM and view.booked_impressions is not None:
                impressions_left = view.booked_impressions - total[1]
        if (impressions_left is None and funds_left > amount and (daily_left is None or daily_left > amount)
                and (total_left is None or total_left > amount)):
            # What `decide` answers when every cap has more room than the charge, at a fraction of its cost.
            status, charged, cap, exhausted = ChargeStatus.APPLIED, amount, None, ()
        else:
            remaining: dict[CapReason, int | None] = {CapReason.FUNDS: funds_left}
            if view is not None:
                remaining[CapReason.DAILY_BUDGET] = daily_left
                remaining[CapReason.TOTAL_BUDGET] = total_left
            if impressions_left is not None:
                # The booking counts impressions, not money: one more impression is all or nothing.
                remaining[CapReason.BOOKED_VOLUME] = amount if impressions_left > 0 else 0
            decision = decide(amount, remaining)
            status, charged, cap = decision.status, decision.charged_micros, decision.reason
            billed = 0 if status is ChargeStatus.REFUSED else 1
            exhausted = tuple(r for r in decision.exhausted if r is not CapReason.BOOKED_VOLUME
                              or (impressions_left is not None and impressions_left - billed <= 0))
        outcomes.append((status, charged, cap, exhausted))
        if status is ChargeStatus.REFUSED:
            reason = cap or CapReason.FUNDS
            refusals.append({"charge_id": c.charge_id, "account_id": c.account_id, "campaign_id": c.campaign_id,
                             "ad_group_id": c.ad_group_id, "creative_id": c.creative_id, "kind": kind.value,
                             "requested_micros": amount, "reason": reason.value, "occurred_at": at,
                             "created_at": now})
            decided[c.charge_id] = (None, amount, reason, 0)
            continue
        account = batch.account
        entries.append((  # in _ENTRY_COLUMNS order
            c.account_id, charge_type, -charged, account.currency, charge_key(c.charge_id), c.campaign_id,
            c.ad_group_id, c.creative_id, "", now, at, kind.value, amount if charged != amount else None, ""))
        decided[c.charge_id] = (None, amount, None, charged)
        batch.balance -= charged
        batch.moved -= charged
        batch.entries += 1
        today[0] += charged
        today[1] += 1
        total[0] += charged
        total[1] += 1
        # Summed per ad group and days first, spread over its six counters once per batch below.
        spread = (c.ad_group_id, c.campaign_id, c.account_id, day, day_of(at, account.time_zone))
        sums = spread_sums.get(spread)
        if sums is None:
            spread_sums[spread] = [charged, 1, at]
        else:
            sums[0] += charged
            sums[1] += 1
            if at > sums[2]:
                sums[2] = at
    for (ad_group_id, campaign_id, account_id, day, account_day), (micros, units, last) in spread_sums.items():
        for key in ((SpendScope.AD_GROUP.value, ad_group_id, day),
                    (SpendScope.AD_GROUP.value, ad_group_id, TOTAL_PERIOD),
                    (SpendScope.CAMPAIGN.value, campaign_id, day),
                    (SpendScope.CAMPAIGN.value, campaign_id, TOTAL_PERIOD),
                    (SpendScope.ACCOUNT.value, account_id, account_day),
                    (SpendScope.ACCOUNT.value, account_id, TOTAL_PERIOD)):
            delta = counter_deltas.setdefault(key, [account_id, batches[account_id].account.currency, 0, 0, last])
            delta[2] += micros
            delta[3] += units
            delta[4] = max(delta[4], last)

    entry_ids: dict[str, int] = {}
    if entries and not with_entry_ids:
        # Below SQLAlchemy's per-row parameter processing, which cost more than the inserts; no RETURNING,
        # which costs a third more per row.
        stored_time = driver_datetime(conn)
        stored_now = stored_time(now)
        insert_many(conn, _LEDGER, _ENTRY_COLUMNS, [
            (*row[:9], stored_now, stored_time(row[10]), *row[11:]) for row in entries])
    elif entries:
        for entry_id, key in conn.execute(sql.insert_entries, [dict(zip(_ENTRY_COLUMNS, row, strict=True))
                                                               for row in entries]):
            entry_ids[key.removeprefix("charge:")] = int(entry_id)
    if entries:
        conn.execute(sql.add_to_counters, [
            {"scope": scope, "scope_id": scope_id, "period": period, "account_id": account_id, "currency": currency,
             "spent_micros": micros, "units": units, "last_charge_at": last}
            for (scope, scope_id, period), (account_id, currency, micros, units, last) in counter_deltas.items()])
        for batch in batches.values():
            if batch.entries:
                conn.execute(sql.move_wallet, {"p_account": batch.account.id, "p_amount": batch.moved,
                                               "p_entries": batch.entries, "p_now": now})
    if refusals:
        conn.execute(sql.insert_refusal, refusals)

    results = []
    for c, (status, charged, reason, exhausted) in zip(items, outcomes, strict=True):
        entry_id, requested, _, in_ledger = decided[c.charge_id]
        results.append(ChargeResult(c.charge_id, status, charged, c.amount_micros if status is not
                                    ChargeStatus.DUPLICATE else requested, reason, exhausted,
                                    entry_ids.get(c.charge_id, entry_id), in_ledger))
    return results
