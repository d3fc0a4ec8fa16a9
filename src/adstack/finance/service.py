"""Money: balances, the wallet lock and posting to the ledger, the core every movement of money goes through.

Top-ups are in topups.py, agency transfers in transfers.py, credit lines in credit_lines.py, ad groups' budgets
and spend in budgets.py, exactly-once charges and refunds in charges.py, financial records in records.py.

The ledger is the only source of truth: a balance is the sum of an account's ledger entries. Every
movement of an account's money first locks that account's wallet row and then, inside the same
transaction, writes its ledger entries and keeps the wallet's projection of the ledger sum and the spend
counters in step. The lock is

- PostgreSQL: `SELECT ... FOR UPDATE` on the `account_wallets` row (other accounts are not blocked);
- SQLite: a write to the wallet row as the transaction's first write, which takes SQLite's single write
  lock the way `BEGIN IMMEDIATE` does, waiting out the busy timeout instead of failing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from functools import cache
from typing import Any, cast

from sqlalchemy import JSON, Select, Table, any_, bindparam, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.elements import ColumnElement

from adstack.accounts import tenancy
from adstack.accounts.models import Account, PaymentMode, Principal
from adstack.core.db import dialect_insert
from adstack.core.errors import FieldError, Forbidden, ValidationFailed
from adstack.core.money import format_micros
from adstack.core.timeutil import as_utc, utcnow, zone
from adstack.finance.models import (
    TOTAL_PERIOD,
    AccountWallet,
    ChargeRefusal,
    CreditLine,
    EntryType,
    LedgerEntry,
    SpendCounter,
    SpendScope,
)

# ---------- balances ----------


def balance_micros(session: Session, account_id: int) -> int:
    """The sum of the account's ledger entries: the truth every other figure is checked against."""
    total = session.scalar(select(func.coalesce(func.sum(LedgerEntry.amount_micros), 0))
                           .where(LedgerEntry.account_id == account_id))
    return int(total or 0)


@dataclass(frozen=True, slots=True)
class Funds:
    balance_micros: int
    credit_limit_micros: int  # the credit line in force, 0 without one
    available_micros: int  # what may still be spent (never negative)
    suspended: bool  # a postpay period ended without renewal: nothing may be spent
    credit_line: CreditLine | None


def active_credit_line(session: Session, account_id: int, *, at: datetime | None = None) -> CreditLine | None:
    moment = as_utc(at) if at is not None else utcnow()
    return session.scalar(select(CreditLine).where(
        CreditLine.account_id == account_id, CreditLine.starts_at <= moment, CreditLine.ends_at > moment,
    ).order_by(CreditLine.starts_at.desc()).limit(1))


def _local_midnight(day: date, tz_name: str) -> datetime:
    return as_utc(datetime.combine(day, time(0), tzinfo=zone(tz_name)))


def _postpay_governor(session: Session, account: Account) -> Account | None:
    """The postpay account whose credit line decides whether this account may spend: itself, or its agency."""
    if account.payment_mode == PaymentMode.POSTPAY:
        return account
    if account.parent_agency_id is not None:
        parent = session.get(Account, account.parent_agency_id)
        if parent is not None and parent.payment_mode == PaymentMode.POSTPAY:
            return parent
    return None


def funds(session: Session, account: Account, *, at: datetime | None = None, balance: int | None = None) -> Funds:
    """Balance, credit and what may be spent at `at`. A postpay account (or a sub-account of a postpay agency)
    spends on credit only while a credit line is in force; its own line lets its balance go down to minus the
    limit. A line never lowers what the balance alone can spend, so a positive balance stays spendable."""
    current = balance_micros(session, account.id) if balance is None else balance
    governor = _postpay_governor(session, account)
    line = active_credit_line(session, governor.id, at=at) if governor is not None else None
    return _funds_of(account, governor, line, current)


def _funds_of(account: Account, governor: Account | None, line: CreditLine | None, balance: int) -> Funds:
    if governor is None:
        return Funds(balance, 0, max(balance, 0), False, None)
    if line is None:
        # No line in force (ended, or granted back-dated): credit stops, money paid in advance still spends.
        return Funds(balance, 0, max(balance, 0), balance <= 0, None)
    own = governor.id == account.id
    # A line's limit is money in its own currency: it never counts in another (a line granted before a change).
    limit = line.limit_micros if own and line.currency == account.currency else 0
    return Funds(balance, limit, max(balance + limit, 0), False, line if own else None)


def available_micros(session: Session, account_id: int) -> int:
    """What the account may still spend: its positive balance plus any unused credit line in force."""
    account = session.get(Account, account_id)
    if account is None:
        return 0
    return funds(session, account).available_micros


def reconcile(session: Session, account_id: int) -> tuple[int, int | None]:
    """(ledger sum, wallet projection); they must agree. The projection is None before the first movement."""
    projection = session.scalar(select(AccountWallet.balance_micros).where(AccountWallet.account_id == account_id))
    return balance_micros(session, account_id), None if projection is None else int(projection)


def low_balance_notice(session: Session, account: Account, *, available: int | None = None) -> str | None:
    threshold = account.low_balance_threshold_micros
    left = available_micros(session, account.id) if available is None else available
    if threshold <= 0 or left >= threshold:
        return None
    return (f"Available balance {format_micros(left)} {account.currency} is below the low-balance threshold "
            f"{format_micros(threshold)} {account.currency}; top up to keep ads serving.")


# ---------- the wallet lock and posting ----------


_WALLETS = cast(Table, AccountWallet.__table__)
_LEDGER = cast(Table, LedgerEntry.__table__)
_COUNTERS = cast(Table, SpendCounter.__table__)
_REFUSALS = cast(Table, ChargeRefusal.__table__)


@dataclass(frozen=True)
class _Statements:
    """The statements of the money path, built once per dialect: building and hashing a statement per
    charge costs more than running it."""

    lock_wallet: Executable  # PostgreSQL: SELECT ... FOR UPDATE; SQLite: a first write takes the write lock
    open_wallet: Executable
    move_wallet: Executable
    find_charges: Executable
    find_refusals: Executable
    read_counters: Executable
    read_ad_group_counters: Executable
    add_to_counters: Executable
    insert_entry: Executable
    insert_entries: Executable
    insert_refusal: Executable


def member_of(column: ColumnElement[Any] | InstrumentedAttribute[Any], name: str, dialect: str) -> ColumnElement[bool]:
    """`column IN (values)` with the values bound as one list: an array on PostgreSQL, a JSON array read by
    json_each on SQLite. One statement text and one parameter for any number of values: an expanding IN
    renders and binds each value every time, which costs more than the look-up."""
    if dialect == "postgresql":
        return column == any_(bindparam(name, type_=postgresql.ARRAY(column.type)))
    values = func.json_each(bindparam(name, type_=JSON)).table_valued("value")
    return column.in_(select(values.c.value))


def select_members(columns: Sequence[ColumnElement[Any] | InstrumentedAttribute[Any]],
                   key: ColumnElement[Any] | InstrumentedAttribute[Any], name: str, dialect: str) -> Select[Any]:
    """`SELECT columns FROM key's table WHERE key IN (values)`, the values bound as in `member_of`; list each
    value once. On SQLite the rows are joined to json_each rather than filtered by it: for an IN, SQLite first
    copies the values into a temporary index, which made looking a batch up in a small table (the refusals)
    three times as costly."""
    if dialect == "postgresql":
        return select(*columns).where(member_of(key, name, dialect))
    values = func.json_each(bindparam(name, type_=JSON)).table_valued("value")
    return select(*columns).select_from(values).join(key.table, key == values.c.value)


@cache
def _statements(dialect: str) -> _Statements:
    w, le, sc, cr = _WALLETS.c, _LEDGER.c, _COUNTERS.c, _REFUSALS.c
    account = bindparam("p_account", type_=w.account_id.type)
    read_balance = select(w.balance_micros).where(w.account_id == account)
    conflict_insert = dialect_insert(dialect)
    upsert = conflict_insert(_COUNTERS)
    latest = func.greatest if dialect == "postgresql" else func.max
    return _Statements(
        lock_wallet=(read_balance.with_for_update() if dialect == "postgresql"
                     else update(_WALLETS).where(w.account_id == account).values(entry_count=w.entry_count)
                     .returning(w.balance_micros)),
        open_wallet=conflict_insert(_WALLETS).on_conflict_do_nothing(index_elements=["account_id"]),
        move_wallet=update(_WALLETS).where(w.account_id == account).values(
            balance_micros=w.balance_micros + bindparam("p_amount", type_=w.balance_micros.type),
            entry_count=w.entry_count + bindparam("p_entries", type_=w.entry_count.type),
            updated_at=bindparam("p_now", type_=w.updated_at.type)),
        find_charges=select_members((le.id, le.idempotency_key, le.amount_micros, le.requested_micros),
                                    le.idempotency_key, "p_keys", dialect),
        find_refusals=select_members((cr.charge_id, cr.requested_micros, cr.reason), cr.charge_id, "p_charges",
                                     dialect),
        read_counters=select(sc.period, sc.spent_micros, sc.units).where(
            sc.scope == bindparam("p_scope", type_=sc.scope.type),
            sc.scope_id == bindparam("p_scope_id", type_=sc.scope_id.type),
            or_(sc.period == bindparam("p_day", type_=sc.period.type), sc.period == TOTAL_PERIOD)),
        read_ad_group_counters=select(sc.scope_id, sc.period, sc.spent_micros, sc.units).where(
            sc.scope == SpendScope.AD_GROUP.value, sc.scope_id.in_(bindparam("p_ids", expanding=True)),
            sc.period.in_(bindparam("p_periods", expanding=True))),
        add_to_counters=upsert.on_conflict_do_update(
            index_elements=["scope", "scope_id", "period"],
            set_={"spent_micros": sc.spent_micros + upsert.excluded.spent_micros,
                  "units": sc.units + upsert.excluded.units,
                  "last_charge_at": latest(sc.last_charge_at, upsert.excluded.last_charge_at)}),
        insert_entry=insert(_LEDGER).returning(le.id),
        insert_entries=insert(_LEDGER).returning(le.id, le.idempotency_key),
        insert_refusal=insert(_REFUSALS),
    )


def _sql(session: Session) -> _Statements:
    return _statements(session.get_bind().dialect.name)


def _lock_wallet(session: Session, account: Account) -> int:
    """Lock the account's wallet row for the rest of the transaction; returns the projected balance."""
    sql, conn, params = _sql(session), session.connection(), {"p_account": account.id}
    for _ in range(2):
        balance = conn.execute(sql.lock_wallet, params).scalar()
        if balance is not None:
            return int(balance)
        # First movement of this account: open its wallet with the ledger's sum (entries may predate it).
        conn.execute(sql.open_wallet, {"account_id": account.id, "currency": account.currency,
                                       "balance_micros": balance_micros(session, account.id), "entry_count": 0,
                                       "updated_at": utcnow()})
    raise RuntimeError(f"wallet of account {account.id} could not be locked")  # pragma: no cover


def _lock_wallets(session: Session, *accounts_to_lock: Account) -> dict[int, int]:
    """Lock several wallets in id order, so two transfers in opposite directions cannot deadlock."""
    return {a.id: _lock_wallet(session, a) for a in sorted(accounts_to_lock, key=lambda a: a.id)}


def _existing_entry(session: Session, key: str | None) -> LedgerEntry | None:
    if key is None:
        return None
    return session.scalar(select(LedgerEntry).where(LedgerEntry.idempotency_key == key))


def _post(session: Session, account: Account, entry_type: EntryType, amount_micros: int, *,
          key: str | None = None, counterparty_account_id: int | None = None, operator_user_id: int | None = None,
          remarks: str = "", reference: str = "", campaign_id: int | None = None, ad_group_id: int | None = None,
          creative_id: int | None = None, occurred_at: datetime | None = None, charge_kind: str | None = None,
          requested_micros: int | None = None) -> int:
    """Write one ledger entry and move the wallet projection with it. The wallet must be locked."""
    now = utcnow()
    sql, conn = _sql(session), session.connection()
    entry_id = conn.execute(sql.insert_entry, {
        "account_id": account.id, "entry_type": entry_type.value, "amount_micros": amount_micros,
        "currency": account.currency, "idempotency_key": key, "counterparty_account_id": counterparty_account_id,
        "campaign_id": campaign_id, "ad_group_id": ad_group_id, "creative_id": creative_id,
        "operator_user_id": operator_user_id, "remarks": remarks[:500], "created_at": now,
        "occurred_at": occurred_at or now, "charge_kind": charge_kind, "requested_micros": requested_micros,
        "reference": reference,
    }).scalar_one()
    conn.execute(sql.move_wallet, {"p_account": account.id, "p_amount": amount_micros, "p_entries": 1, "p_now": now})
    return int(entry_id)


def _entry(session: Session, entry_id: int) -> LedgerEntry:
    entry = session.get(LedgerEntry, entry_id)
    assert entry is not None
    return entry


def _account(session: Session, principal: Principal, account_id: int) -> Account:
    return tenancy.get_account(session, principal, account_id)


def _check_currency(field: str, sent: str | None, account: Account) -> None:
    if sent is not None and sent != account.currency:
        raise ValidationFailed.single(
            field, "same_currency",
            f"account {account.id} is kept in {account.currency}; there is no cross-currency transfer",
            limit=account.currency, actual=sent)


def _insufficient(field: str, message: str, *, room: int, amount: int) -> ValidationFailed:
    return ValidationFailed(message, code="insufficient_balance", fields=[
        FieldError(field=field, rule="within_available_balance", message=message, limit=room, actual=amount)])


def _require_account_manager(principal: Principal, what: str) -> None:
    if not principal.can_manage_accounts:
        raise Forbidden(f"{what} needs a platform account manager")


def _money_snapshot(entry: LedgerEntry, balance_after: int) -> dict[str, Any]:
    return {"entry_type": entry.entry_type, "amount_micros": entry.amount_micros, "currency": entry.currency,
            "counterparty_account_id": entry.counterparty_account_id, "balance_micros": balance_after,
            "remarks": entry.remarks}
