"""Financial records: money movements of the visible accounts, their CSV export, and an account's raw ledger."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, false, func, literal, null, select, union_all
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session

from adstack.accounts import tenancy
from adstack.accounts.models import Account, Principal, User
from adstack.core.csv_export import to_csv
from adstack.core.money import from_micros
from adstack.core.timeutil import as_utc
from adstack.finance.budgets import local_day, next_local_midnight
from adstack.finance.models import (
    TOTAL_PERIOD,
    Direction,
    EntryType,
    FinancialRecord,
    LedgerEntry,
    RecordType,
    SpendCounter,
    SpendScope,
)

# ---------- financial records ----------


def _records_query(*, account_ids: set[int] | None, direction: Direction | None, record_type: RecordType | None,
                   since: datetime | None, until: datetime | None, time_zone: str = "UTC") -> Any:
    """Ledger entries other than charges, and charges as one row per account and local day (its spend counter).
    A day's row is within `since`..`until` when the day starts in it (its midnight in `time_zone`, the account's
    when the records are of one account): a month given in UTC takes that month's local days."""
    entries = select(
        literal("entry").label("source"), sql_cast(LedgerEntry.id, String).label("ref"), LedgerEntry.id.label("seq"),
        LedgerEntry.created_at.label("at"), LedgerEntry.account_id.label("account_id"),
        LedgerEntry.counterparty_account_id.label("counterparty"), LedgerEntry.entry_type.label("type"),
        LedgerEntry.amount_micros.label("amount"), LedgerEntry.currency.label("currency"),
        User.email.label("operator"), LedgerEntry.remarks.label("remarks"),
    ).select_from(LedgerEntry).outerjoin(User, User.id == LedgerEntry.operator_user_id).where(
        LedgerEntry.entry_type != EntryType.CHARGE.value, LedgerEntry.amount_micros != 0)
    charges = select(
        literal("charges").label("source"), SpendCounter.period.label("ref"), literal(0).label("seq"),
        SpendCounter.last_charge_at.label("at"), SpendCounter.scope_id.label("account_id"),
        null().label("counterparty"), literal(RecordType.CHARGE_SETTLEMENT.value).label("type"),
        (-SpendCounter.spent_micros).label("amount"), SpendCounter.currency.label("currency"),
        literal("system").label("operator"),
        (literal("charges of ") + SpendCounter.period + literal(" (") + sql_cast(SpendCounter.units, String)
         + literal(" billable events)")).label("remarks"),
    ).where(SpendCounter.scope == SpendScope.ACCOUNT.value, SpendCounter.period != TOTAL_PERIOD,
            SpendCounter.spent_micros != 0)
    if account_ids is not None:
        entries = entries.where(LedgerEntry.account_id.in_(account_ids))
        charges = charges.where(SpendCounter.scope_id.in_(account_ids))
    if record_type is not None:
        if record_type is RecordType.CHARGE_SETTLEMENT:
            entries = entries.where(false())
        else:
            entries = entries.where(LedgerEntry.entry_type == record_type.value)
            charges = charges.where(false())
    if direction is Direction.IN:
        entries = entries.where(LedgerEntry.amount_micros > 0)
        charges = charges.where(false())
    elif direction is Direction.OUT:
        entries = entries.where(LedgerEntry.amount_micros < 0)
    if since is not None:
        entries = entries.where(LedgerEntry.created_at >= since)
        charges = charges.where(SpendCounter.period >= _first_day_starting_at_or_after(since, time_zone))
    if until is not None:
        entries = entries.where(LedgerEntry.created_at < until)
        # A day that began before `until` is in; one that begins at it or later is not.
        last = as_utc(until) - timedelta(microseconds=1)
        charges = charges.where(SpendCounter.period <= local_day(last, time_zone))
    return union_all(entries, charges).subquery("records")


def _first_day_starting_at_or_after(moment: datetime, time_zone: str) -> str:
    return local_day(next_local_midnight(as_utc(moment) - timedelta(microseconds=1), time_zone), time_zone)


def search_records(session: Session, principal: Principal, *, account_id: int | None = None,
                   direction: Direction | None = None, record_type: RecordType | None = None,
                   since: datetime | None = None, until: datetime | None = None, limit: int = 50,
                   offset: int = 0) -> tuple[list[FinancialRecord], int]:
    """Money movements of the visible accounts, newest first; charges as one settlement per account and day."""
    if account_id is not None:
        tenancy.ensure_account_visible(session, principal, account_id)
        scope: set[int] | None = {account_id}
    else:
        scope = tenancy.visible_account_ids(session, principal)
    zone_name = "UTC"
    if scope is not None and len(scope) == 1:
        zone_name = session.scalar(select(Account.time_zone).where(Account.id.in_(scope))) or "UTC"
    records = _records_query(account_ids=scope, direction=direction, record_type=record_type, since=since,
                             until=until, time_zone=zone_name)
    total = int(session.scalar(select(func.count()).select_from(records)) or 0)
    rows = session.execute(select(records).order_by(records.c.at.desc(), records.c.seq.desc(), records.c.ref.desc())
                           .limit(limit).offset(offset)).all()
    named = {int(r.account_id) for r in rows} | {int(r.counterparty) for r in rows if r.counterparty is not None}
    parents = dict(session.execute(select(Account.id, Account.parent_agency_id).where(Account.id.in_(named))).all())
    transfer_types = {EntryType.TRANSFER_IN.value, EntryType.TRANSFER_OUT.value, EntryType.RECLAIM.value}
    out = []
    for r in rows:
        # Source: Mi Ads usage guide, 5 Financial Management: "transfer account ID, transfer agency account". A
        # transfer is between an agency and its sub-account: on the agency's own row the agency is itself.
        counterparty = None if r.counterparty is None else int(r.counterparty)
        agency = parents.get(int(r.account_id))
        if r.type in transfer_types and counterparty is not None:
            agency = int(r.account_id) if parents.get(counterparty) == int(r.account_id) else counterparty
        ref = f"entry:{r.ref}" if r.source == "entry" else f"charges:{r.account_id}:{r.ref}"
        out.append(FinancialRecord(
            record_id=ref, transferred_at=as_utc(r.at) if isinstance(r.at, datetime) else r.at,
            account_id=int(r.account_id), agency_account_id=None if agency is None else int(agency),
            counterparty_account_id=counterparty if r.type in transfer_types else None,
            type=RecordType(r.type), direction=Direction.IN if r.amount > 0 else Direction.OUT,
            amount_micros=abs(int(r.amount)), currency=r.currency, operator=r.operator or "system",
            remarks=r.remarks or ""))
    return out, total


RECORDS_CSV_HEADER = ("date_of_transfer_utc", "transfer_account_id", "transfer_agency_account", "type", "direction",
                      "amount", "currency", "operator", "remarks", "counterparty_account_id")


def records_csv(records: Sequence[FinancialRecord]) -> str:
    return to_csv(RECORDS_CSV_HEADER, [
        [r.transferred_at.isoformat(), r.account_id, r.agency_account_id, r.type.value, r.direction.value,
         from_micros(r.amount_micros), r.currency.value, r.operator, r.remarks, r.counterparty_account_id]
        for r in records])


def ledger(session: Session, principal: Principal, account_id: int, *, limit: int = 50, offset: int = 0
           ) -> list[LedgerEntry]:
    """The raw ledger of one account, charges included, newest first."""
    tenancy.ensure_account_visible(session, principal, account_id)
    stmt = (select(LedgerEntry).where(LedgerEntry.account_id == account_id)
            .order_by(LedgerEntry.id.desc()).limit(limit).offset(offset))
    return list(session.scalars(stmt))
