"""Money: balances, top-ups, agency transfers, credit lines, financial records and exactly-once charges.

The ledger is the only source of truth: a balance is the sum of an account's ledger entries. Every
movement of an account's money first locks that account's wallet row and then, inside the same
transaction, writes its ledger entries and keeps the wallet's projection of the ledger sum and the spend
counters in step. The lock is

- PostgreSQL: `SELECT ... FOR UPDATE` on the `account_wallets` row (other accounts are not blocked);
- SQLite: a write to the wallet row as the transaction's first write, which takes SQLite's single write
  lock the way `BEGIN IMMEDIATE` does, waiting out the busy timeout instead of failing.

Charges (`apply_charge`, or `apply_charges` for a batch) are therefore decided one at a time per
account: the duplicate check, the cap check and the write happen under the lock, so two workers can
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

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cache
from pathlib import Path
from typing import Any, BinaryIO, cast

from sqlalchemy import (
    JSON,
    Select,
    String,
    Table,
    any_,
    bindparam,
    case,
    false,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.elements import ColumnElement

from adstack.accounts import service as accounts
from adstack.accounts.models import Account, AccountType, PaymentMode, Principal, Role, User
from adstack.campaigns.enums import ServingStatus
from adstack.campaigns.models import AdGroup
from adstack.core.csv_export import to_csv
from adstack.core.db import driver_datetime, insert_many
from adstack.core.errors import (
    Conflict,
    FieldError,
    Forbidden,
    InvalidState,
    NotFound,
    PayloadTooLarge,
    ValidationFailed,
)
from adstack.core.money import format_micros, from_micros
from adstack.core.private_files import create_private
from adstack.core.timeutil import as_utc, utcnow, zone
from adstack.finance.models import (
    TOTAL_PERIOD,
    AccountWallet,
    CapReason,
    ChargeKind,
    ChargeRefusal,
    ChargeStatus,
    CreditLine,
    CreditLineIn,
    CreditLineRenewIn,
    Direction,
    EntryType,
    FinancialRecord,
    LedgerEntry,
    RecordType,
    RefundIn,
    SpendCounter,
    SpendScope,
    TopUpIn,
    TopUpRequest,
    TopUpStatus,
    TransferIn,
)
from adstack.finance.pricing import decide
from adstack.oplog import service as oplog
from adstack.oplog.models import Operation

MAX_CHARGE_ID_LENGTH = 120
PROOF_SIGNATURES = accounts.DOCUMENT_SIGNATURES  # proofs of payment: PDF, PNG or JPEG, sniffed
MAX_CONTRACT_DAYS = 3 * 366

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
    limit = line.limit_micros if own else 0
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
    dialect_insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    upsert = dialect_insert(_COUNTERS)
    latest = func.greatest if dialect == "postgresql" else func.max
    return _Statements(
        lock_wallet=(read_balance.with_for_update() if dialect == "postgresql"
                     else update(_WALLETS).where(w.account_id == account).values(entry_count=w.entry_count)
                     .returning(w.balance_micros)),
        open_wallet=dialect_insert(_WALLETS).on_conflict_do_nothing(index_elements=["account_id"]),
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
    return accounts.get_account(session, principal, account_id)


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


# ---------- top-ups by an account manager ----------


def top_up(session: Session, principal: Principal, data: TopUpIn) -> LedgerEntry:
    """An account manager credits an account directly (advertisers are topped up this way)."""
    _require_account_manager(principal, "a direct top-up")
    account = _account(session, principal, data.account_id)
    _check_currency("currency", data.currency, account)
    key = f"top_up:{data.idempotency_key}" if data.idempotency_key else None
    balance = _lock_wallet(session, account)
    existing = _existing_entry(session, key)
    if existing is not None:
        if existing.account_id != account.id or existing.amount_micros != data.amount_micros:
            raise Conflict("this idempotency key was used for a different top-up", code="idempotency_key_reused",
                           fields=[FieldError(field="idempotency_key", rule="unique", actual=data.idempotency_key)])
        return existing
    entry = _entry(session, _post(session, account, EntryType.TOP_UP, data.amount_micros, key=key,
                                  operator_user_id=principal.user_id, remarks=data.remarks,
                                  counterparty_account_id=account.parent_agency_id))
    oplog.record(session, actor=principal, operation=Operation.TOP_UP, object_type="account_balance",
                 object_id=account.id, object_name=account.company_name, account_id=account.id,
                 before={"balance_micros": balance}, after=_money_snapshot(entry, balance + data.amount_micros))
    return entry


# ---------- prepay top-up requests with a proof of payment ----------


def _store_proof(*, account_id: int, filename: str, stream: BinaryIO, storage_dir: Path, max_bytes: int
                 ) -> tuple[str, int, str, Path]:
    """Stream a proof of payment to disk: type sniffed from content, size capped. Returns its facts."""
    head = stream.read(16)
    content_type = next((ctype for ctype, sigs in PROOF_SIGNATURES.items()
                         if any(head.startswith(s) for s in sigs)), None)
    if content_type is None:
        raise ValidationFailed.single("file", "file_type", "a proof of payment must be PDF, PNG or JPEG",
                                      limit=sorted(PROOF_SIGNATURES), actual=filename)
    digest = hashlib.sha256()
    target_dir = storage_dir / "payment-proofs" / str(account_id)
    target_dir.mkdir(parents=True, exist_ok=True)
    temp_path = target_dir / f".upload-{utcnow().timestamp()}-{id(stream)}"
    size = 0
    try:
        with create_private(temp_path) as out:
            chunk = head
            while chunk:
                size += len(chunk)
                if size > max_bytes:
                    raise PayloadTooLarge(f"the proof of payment exceeds {max_bytes} bytes", fields=[
                        FieldError(field="file", rule="max_size_bytes", limit=max_bytes, actual=size)])
                digest.update(chunk)
                out.write(chunk)
                chunk = stream.read(1 << 16)
        final_path = target_dir / digest.hexdigest()
        temp_path.replace(final_path)
    finally:
        temp_path.unlink(missing_ok=True)
    return content_type, size, digest.hexdigest(), final_path


def request_top_up(session: Session, principal: Principal, *, account_id: int, amount_micros: int,
                   filename: str, stream: BinaryIO, storage_dir: Path, max_bytes: int, remarks: str = "",
                   currency: str | None = None) -> TopUpRequest:
    """A prepay agency (or advertiser) files a top-up of its own or a sub-account's balance, with the proof."""
    if amount_micros <= 0:
        raise ValidationFailed.single("amount_micros", "greater_than", "the amount must be positive",
                                      limit=0, actual=amount_micros)
    account = _account(session, principal, account_id)  # another tenant's account: 404
    _check_currency("currency", currency, account)
    content_type, size, sha256, path = _store_proof(account_id=account.id, filename=filename, stream=stream,
                                                     storage_dir=storage_dir, max_bytes=max_bytes)
    request = TopUpRequest(
        account_id=account.id, requester_account_id=principal.account_id, amount_micros=amount_micros,
        currency=account.currency, status=TopUpStatus.PENDING.value, remarks=remarks[:500],
        proof_filename=Path(filename).name[:255] or "proof", proof_content_type=content_type, proof_size_bytes=size,
        proof_sha256=sha256, proof_storage_path=str(path), requested_by_user_id=principal.user_id,
    )
    session.add(request)
    session.flush()
    oplog.record(session, actor=principal, operation=Operation.CREATE, object_type="top_up_request",
                 object_id=request.id, object_name=f"top-up {format_micros(amount_micros)} {account.currency}",
                 account_id=account.id, after=_request_snapshot(request))
    return request


def _request_snapshot(request: TopUpRequest) -> dict[str, Any]:
    return {"account_id": request.account_id, "amount_micros": request.amount_micros, "currency": request.currency,
            "status": request.status, "proof_sha256": request.proof_sha256,
            "rejection_reason": request.rejection_reason, "ledger_entry_id": request.ledger_entry_id}


def get_top_up_request(session: Session, principal: Principal, request_id: int) -> TopUpRequest:
    request = session.get(TopUpRequest, request_id)
    if request is None or not accounts.can_see_account(session, principal, request.account_id):
        raise NotFound(f"top-up request {request_id} not found")
    return request


def list_top_up_requests(session: Session, principal: Principal, *, status: TopUpStatus | None = None,
                         account_id: int | None = None, limit: int = 50, offset: int = 0) -> list[TopUpRequest]:
    stmt = select(TopUpRequest)
    visible = accounts.visible_account_ids(session, principal)
    if visible is not None:
        stmt = stmt.where(TopUpRequest.account_id.in_(visible))
    if account_id is not None:
        stmt = stmt.where(TopUpRequest.account_id == account_id)
    if status is not None:
        stmt = stmt.where(TopUpRequest.status == status.value)
    return list(session.scalars(stmt.order_by(TopUpRequest.id.desc()).limit(limit).offset(offset)))


def decide_top_up_request(session: Session, principal: Principal, request_id: int, *, confirm: bool,
                          reason: str = "") -> TopUpRequest:
    """Confirm (credit the balance, exactly once) or reject a pending request."""
    _require_account_manager(principal, "deciding a top-up request")
    request = get_top_up_request(session, principal, request_id)
    account = _account(session, principal, request.account_id)
    balance = _lock_wallet(session, account)
    session.refresh(request)  # re-read under the lock: a concurrent decision is seen here
    if request.status != TopUpStatus.PENDING:
        raise InvalidState(f"top-up request {request.id} is already {request.status}", code="already_decided")
    before = _request_snapshot(request)
    request.decided_by_user_id = principal.user_id
    request.decided_at = utcnow()
    if confirm:
        request.ledger_entry_id = _post(
            session, account, EntryType.TOP_UP, request.amount_micros, key=f"top_up_request:{request.id}",
            operator_user_id=principal.user_id, remarks=request.remarks or f"top-up request {request.id}",
            reference=f"top_up_request:{request.id}", counterparty_account_id=request.requester_account_id
            if request.requester_account_id != account.id else account.parent_agency_id)
        request.status = TopUpStatus.CONFIRMED.value
    else:
        if not reason.strip():
            raise ValidationFailed.single("reason", "required", "a rejection needs a reason")
        request.status = TopUpStatus.REJECTED.value
        request.rejection_reason = reason[:500]
    session.flush()
    after = _request_snapshot(request)
    after["balance_micros"] = balance + (request.amount_micros if confirm else 0)
    oplog.record(session, actor=principal, operation=Operation.APPROVE if confirm else Operation.REJECT,
                 object_type="top_up_request", object_id=request.id,
                 object_name=f"top-up {format_micros(request.amount_micros)} {request.currency}",
                 account_id=account.id, before={**before, "balance_micros": balance}, after=after)
    return request


# ---------- agency transfers and reclaims ----------


def transfer(session: Session, principal: Principal, data: TransferIn) -> tuple[LedgerEntry, LedgerEntry]:
    """Move balance between an agency and one of its sub-accounts; neither side may go below what it has.

    Returns (the entry on the side that pays, the entry on the side that receives).
    """
    if principal.role == Role.AGENCY:
        if data.sub_account_id == principal.account_id:
            raise ValidationFailed.single("sub_account_id", "sub_account", "name one of your sub-accounts, "
                                          "not the agency itself", actual=data.sub_account_id)
    elif not principal.can_manage_accounts:
        raise Forbidden("only an agency or an account manager moves balance between accounts")
    sub = _account(session, principal, data.sub_account_id)  # another agency's account: 404
    if sub.parent_agency_id is None:
        raise ValidationFailed.single("sub_account_id", "sub_account", f"account {sub.id} is not an agency's "
                                      "sub-account", actual=data.sub_account_id)
    agency = session.get(Account, sub.parent_agency_id)
    if agency is None or agency.type != AccountType.AGENCY:
        raise NotFound(f"agency of account {sub.id} not found")
    if agency.currency != sub.currency:
        raise ValidationFailed.single(
            "sub_account_id", "same_currency",
            f"agency {agency.id} is kept in {agency.currency} and account {sub.id} in {sub.currency}; "
            "there is no cross-currency transfer", limit=agency.currency, actual=sub.currency)
    _check_currency("currency", data.currency, sub)
    payer, payee = (agency, sub) if data.kind == "transfer" else (sub, agency)
    base_key = f"transfer:{agency.id}:{data.idempotency_key}" if data.idempotency_key else None
    balances = _lock_wallets(session, agency, sub)
    existing = _existing_entry(session, f"{base_key}:out" if base_key else None)
    if existing is not None:
        received = _existing_entry(session, f"{base_key}:in")
        assert received is not None
        if existing.account_id != payer.id or -existing.amount_micros != data.amount_micros:
            raise Conflict("this idempotency key was used for a different transfer", code="idempotency_key_reused",
                           fields=[FieldError(field="idempotency_key", rule="unique", actual=data.idempotency_key)])
        return existing, received
    if data.kind == "transfer":
        room = funds(session, agency, balance=balances[agency.id]).available_micros
        where = f"agency {agency.id}"
    else:
        room = max(balances[sub.id], 0)  # a reclaim never draws on credit
        where = f"account {sub.id}"
    if data.amount_micros > room:
        raise _insufficient("amount_micros", f"{where} has {format_micros(room)} {payer.currency} available; "
                            f"cannot move {format_micros(data.amount_micros)}", room=room, amount=data.amount_micros)
    out_type, in_type = ((EntryType.TRANSFER_OUT, EntryType.TRANSFER_IN) if data.kind == "transfer"
                         else (EntryType.RECLAIM, EntryType.RECLAIM))
    paid = _entry(session, _post(session, payer, out_type, -data.amount_micros, counterparty_account_id=payee.id,
                                 key=f"{base_key}:out" if base_key else None, operator_user_id=principal.user_id,
                                 remarks=data.remarks))
    received = _entry(session, _post(session, payee, in_type, data.amount_micros, counterparty_account_id=payer.id,
                                     key=f"{base_key}:in" if base_key else None, operator_user_id=principal.user_id,
                                     remarks=data.remarks, reference=f"entry:{paid.id}"))
    paid.reference = f"entry:{received.id}"
    moved = {payer.id: -data.amount_micros, payee.id: data.amount_micros}
    oplog.record(session, actor=principal, operation=Operation.TRANSFER, object_type="account_balance",
                 object_id=sub.id, object_name=sub.company_name, account_id=sub.id,
                 before={"agency_balance_micros": balances[agency.id], "sub_account_balance_micros": balances[sub.id]},
                 after={"kind": data.kind, "amount_micros": data.amount_micros, "agency_account_id": agency.id,
                        "agency_balance_micros": balances[agency.id] + moved[agency.id],
                        "sub_account_balance_micros": balances[sub.id] + moved[sub.id], "remarks": data.remarks})
    return paid, received


# ---------- refunds ----------


def charge_key(charge_id: str) -> str:
    return f"charge:{charge_id}"


def refund(session: Session, principal: Principal, data: RefundIn) -> LedgerEntry:
    """Give back what a charge took (e.g. traffic found invalid later), at most once per charge."""
    _require_account_manager(principal, "a refund")
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
    oplog.record(session, actor=principal, operation=Operation.UPDATE, object_type="refund", object_id=entry.id,
                 object_name=f"refund of {data.charge_id}"[:200], account_id=account.id,
                 before={"balance_micros": balance}, after=_money_snapshot(entry, balance + entry.amount_micros))
    return entry


# ---------- postpay credit lines ----------


def _local_midnight(day: date, tz_name: str) -> datetime:
    return as_utc(datetime.combine(day, time(0), tzinfo=zone(tz_name)))


def credit_line_state(line: CreditLine, *, at: datetime | None = None) -> str:
    moment = as_utc(at) if at is not None else utcnow()
    if line.settled_at is not None:
        return "settled"
    if moment < line.starts_at:
        return "scheduled"
    return "active" if moment < line.ends_at else "ended"


def _new_credit_line(session: Session, principal: Principal, account: Account, *, limit_micros: int,
                     starts_on: date, ends_on: date, remarks: str, renewed_from_id: int | None) -> CreditLine:
    if ends_on < starts_on:
        raise ValidationFailed.single("ends_on", "not_before_starts_on", "the period must end on or after its start",
                                      limit=starts_on.isoformat(), actual=ends_on.isoformat())
    if (ends_on - starts_on).days >= MAX_CONTRACT_DAYS:
        raise ValidationFailed.single("ends_on", "max_period_days", "a contract period is at most three years",
                                      limit=MAX_CONTRACT_DAYS, actual=(ends_on - starts_on).days + 1)
    starts_at = _local_midnight(starts_on, account.time_zone)
    ends_at = _local_midnight(ends_on + timedelta(days=1), account.time_zone)
    _lock_wallet(session, account)  # serialises grants, so two overlapping lines cannot both pass the check
    overlap = session.scalar(select(CreditLine.id).where(
        CreditLine.account_id == account.id, CreditLine.starts_at < ends_at, CreditLine.ends_at > starts_at))
    if overlap is not None:
        raise Conflict(f"credit line {overlap} already covers part of this period", code="overlapping_credit_line",
                       fields=[FieldError(field="starts_on", rule="no_overlap", actual=starts_on.isoformat())])
    line = CreditLine(account_id=account.id, currency=account.currency, limit_micros=limit_micros,
                      starts_on=starts_on, ends_on=ends_on, starts_at=starts_at, ends_at=ends_at,
                      renewed_from_id=renewed_from_id, remarks=remarks[:500], created_by_user_id=principal.user_id)
    session.add(line)
    if account.payment_mode != PaymentMode.POSTPAY:
        before = {"payment_mode": account.payment_mode}
        account.payment_mode = PaymentMode.POSTPAY.value
        oplog.record(session, actor=principal, operation=Operation.UPDATE, object_type="account",
                     object_id=account.id, object_name=account.company_name, account_id=account.id,
                     before=before, after={"payment_mode": account.payment_mode})
    session.flush()
    oplog.record(session, actor=principal, operation=Operation.CREATE, object_type="credit_line", object_id=line.id,
                 object_name=f"credit {starts_on.isoformat()}..{ends_on.isoformat()}", account_id=account.id,
                 after=_line_snapshot(line))
    return line


def _line_snapshot(line: CreditLine) -> dict[str, Any]:
    return {"limit_micros": line.limit_micros, "currency": line.currency, "starts_on": line.starts_on,
            "ends_on": line.ends_on, "renewed_from_id": line.renewed_from_id, "settled_at": line.settled_at,
            "settled_amount_micros": line.settled_amount_micros}


def grant_credit_line(session: Session, principal: Principal, data: CreditLineIn) -> CreditLine:
    """An account manager makes an account postpay for a contract period, up to a credit limit."""
    _require_account_manager(principal, "granting a credit line")
    account = _account(session, principal, data.account_id)
    return _new_credit_line(session, principal, account, limit_micros=data.limit_micros, starts_on=data.starts_on,
                            ends_on=data.ends_on, remarks=data.remarks, renewed_from_id=None)


def renew_credit_line(session: Session, principal: Principal, line_id: int, data: CreditLineRenewIn) -> CreditLine:
    """The next contract period, starting the day after the line ends; spending resumes once it is in force."""
    _require_account_manager(principal, "renewing a credit line")
    line = get_credit_line(session, principal, line_id)
    account = _account(session, principal, line.account_id)
    return _new_credit_line(session, principal, account, limit_micros=data.limit_micros or line.limit_micros,
                            starts_on=line.ends_on + timedelta(days=1), ends_on=data.ends_on, remarks=data.remarks,
                            renewed_from_id=line.id)


def get_credit_line(session: Session, principal: Principal, line_id: int) -> CreditLine:
    line = session.get(CreditLine, line_id)
    if line is None or not accounts.can_see_account(session, principal, line.account_id):
        raise NotFound(f"credit line {line_id} not found")
    return line


def list_credit_lines(session: Session, principal: Principal, *, account_id: int | None = None,
                      limit: int = 50, offset: int = 0) -> list[CreditLine]:
    stmt = select(CreditLine)
    visible = accounts.visible_account_ids(session, principal)
    if visible is not None:
        stmt = stmt.where(CreditLine.account_id.in_(visible))
    if account_id is not None:
        stmt = stmt.where(CreditLine.account_id == account_id)
    return list(session.scalars(stmt.order_by(CreditLine.starts_at.desc()).limit(limit).offset(offset)))


@dataclass(frozen=True, slots=True)
class StatementLine:
    account_id: int
    company_name: str
    campaign_id: int | None
    charges_micros: int
    refunds_micros: int

    @property
    def actual_cost_micros(self) -> int:
        return self.charges_micros - self.refunds_micros


@dataclass(frozen=True, slots=True)
class Statement:
    line: CreditLine
    final: bool  # the period has ended
    lines: list[StatementLine]
    credit_used_micros: int  # what the period owes: its own actual cost, 0 once settled

    @property
    def actual_cost_micros(self) -> int:
        return sum(item.actual_cost_micros for item in self.lines)


def _period_costs(session: Session, line: CreditLine) -> list[StatementLine]:
    """Charges and refunds that occurred inside the line's period, per account (the line's and its sub-accounts)
    and campaign."""
    account_ids = [line.account_id, *session.scalars(
        select(Account.id).where(Account.parent_agency_id == line.account_id).order_by(Account.id))]
    names = dict(session.execute(select(Account.id, Account.company_name).where(Account.id.in_(account_ids)))
                 .all())
    rows = session.execute(
        select(LedgerEntry.account_id, LedgerEntry.campaign_id,
               func.sum(case((LedgerEntry.entry_type == EntryType.CHARGE.value, -LedgerEntry.amount_micros),
                             else_=0)),
               func.sum(case((LedgerEntry.entry_type == EntryType.REFUND.value, LedgerEntry.amount_micros), else_=0)))
        .where(LedgerEntry.account_id.in_(account_ids),
               LedgerEntry.entry_type.in_([EntryType.CHARGE.value, EntryType.REFUND.value]),
               LedgerEntry.occurred_at >= line.starts_at, LedgerEntry.occurred_at < line.ends_at)
        .group_by(LedgerEntry.account_id, LedgerEntry.campaign_id)
        .order_by(LedgerEntry.account_id, LedgerEntry.campaign_id)).all()
    return [StatementLine(int(a), names.get(int(a), ""), None if c is None else int(c), int(ch or 0), int(rf or 0))
            for a, c, ch, rf in rows]


def period_cost_micros(session: Session, line: CreditLine) -> int:
    """What a period owes: its own actual cost. Not the balance, which also holds other periods' spending (a
    renewal's) and any prepaid money."""
    return max(sum(item.actual_cost_micros for item in _period_costs(session, line)), 0)


def settlement_statement(session: Session, principal: Principal, line_id: int) -> Statement:
    """The actual cost of a credit line's period, per account (the line's and its sub-accounts) and campaign."""
    line = get_credit_line(session, principal, line_id)
    items = _period_costs(session, line)
    owed = max(sum(item.actual_cost_micros for item in items), 0) if line.settled_at is None else 0
    return Statement(line, credit_line_state(line) in ("ended", "settled"), items, owed)


def statement_csv(statement: Statement) -> str:
    line = statement.line
    period = f"{line.starts_on.isoformat()}..{line.ends_on.isoformat()}"
    header = ("period", "account_id", "company_name", "campaign_id", "charges", "refunds", "actual_cost", "currency")
    rows: list[list[Any]] = [
        [period, item.account_id, item.company_name, item.campaign_id, str(from_micros(item.charges_micros)),
         str(from_micros(item.refunds_micros)), str(from_micros(item.actual_cost_micros)), line.currency]
        for item in statement.lines
    ]
    rows.append([period, line.account_id, "total actual cost", None, "", "",
                 str(from_micros(statement.actual_cost_micros)), line.currency])
    rows.append([period, line.account_id, "credit limit", None, "", "", str(from_micros(line.limit_micros)),
                 line.currency])
    rows.append([period, line.account_id, "amount due" if statement.final else "amount due so far (interim)", None,
                 "", "", str(from_micros(statement.credit_used_micros)), line.currency])
    return to_csv(header, rows)


def settle_credit_line(session: Session, principal: Principal, line_id: int, *, remarks: str = "") -> CreditLine:
    """Record the payment of an ended period: a credit entry of the period's own actual cost."""
    _require_account_manager(principal, "settling a credit line")
    line = get_credit_line(session, principal, line_id)
    account = _account(session, principal, line.account_id)
    balance = _lock_wallet(session, account)
    session.refresh(line)
    state = credit_line_state(line)
    if state != "ended":
        raise InvalidState(f"credit line {line.id} is {state}; only an ended period is settled",
                           code="not_settleable")
    owed = period_cost_micros(session, line)
    before = _line_snapshot(line)
    if owed:
        line.settlement_entry_id = _post(
            session, account, EntryType.CREDIT, owed, key=f"credit_line:{line.id}:settlement",
            operator_user_id=principal.user_id, remarks=remarks or f"settlement of credit line {line.id}",
            reference=f"credit_line:{line.id}")
    line.settled_at = utcnow()
    line.settled_amount_micros = owed
    oplog.record(session, actor=principal, operation=Operation.UPDATE, object_type="credit_line", object_id=line.id,
                 object_name=f"settlement {line.starts_on.isoformat()}..{line.ends_on.isoformat()}",
                 account_id=account.id, before={**before, "balance_micros": balance},
                 after={**_line_snapshot(line), "balance_micros": balance + owed})
    return line


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


def ad_group_spend_today(session: Session, ad_group_days: Iterable[tuple[int, str]]) -> dict[int, tuple[int, int]]:
    """Bulk read for serving's snapshot: {ad_group_id: (spent on that local day, spent in total)} for
    (ad_group_id, local ISO date) pairs; one query per 500 ad groups."""
    pairs = list(ad_group_days)
    out: dict[int, tuple[int, int]] = {ad_group_id: (0, 0) for ad_group_id, _ in pairs}
    for start in range(0, len(pairs), 500):
        chunk = pairs[start:start + 500]
        ids = [ad_group_id for ad_group_id, _ in chunk]
        wanted = {ad_group_id: day for ad_group_id, day in chunk}
        rows = session.execute(select(SpendCounter.scope_id, SpendCounter.period, SpendCounter.spent_micros).where(
            SpendCounter.scope == SpendScope.AD_GROUP.value, SpendCounter.scope_id.in_(ids)))
        for scope_id, period, spent in rows:
            today, total = out[int(scope_id)]
            if period == TOTAL_PERIOD:
                out[int(scope_id)] = (today, int(spent))
            elif period == wanted[int(scope_id)]:
                out[int(scope_id)] = (int(spent), total)
    return out


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


# ---------- financial records ----------


def _records_query(*, account_ids: set[int] | None, direction: Direction | None, record_type: RecordType | None,
                   since: datetime | None, until: datetime | None) -> Any:
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
        charges = charges.where(SpendCounter.last_charge_at >= since)
    if until is not None:
        entries = entries.where(LedgerEntry.created_at < until)
        charges = charges.where(SpendCounter.last_charge_at < until)
    return union_all(entries, charges).subquery("records")


def search_records(session: Session, principal: Principal, *, account_id: int | None = None,
                   direction: Direction | None = None, record_type: RecordType | None = None,
                   since: datetime | None = None, until: datetime | None = None, limit: int = 50,
                   offset: int = 0) -> tuple[list[FinancialRecord], int]:
    """Money movements of the visible accounts, newest first; charges as one settlement per account and day."""
    if account_id is not None:
        accounts.ensure_account_visible(session, principal, account_id)
        scope: set[int] | None = {account_id}
    else:
        scope = accounts.visible_account_ids(session, principal)
    records = _records_query(account_ids=scope, direction=direction, record_type=record_type, since=since,
                             until=until)
    total = int(session.scalar(select(func.count()).select_from(records)) or 0)
    rows = session.execute(select(records).order_by(records.c.at.desc(), records.c.seq.desc(), records.c.ref.desc())
                           .limit(limit).offset(offset)).all()
    parents = dict(session.execute(select(Account.id, Account.parent_agency_id).where(
        Account.id.in_({int(r.account_id) for r in rows}))).all())
    transfer_types = {EntryType.TRANSFER_IN.value, EntryType.TRANSFER_OUT.value, EntryType.RECLAIM.value}
    out = []
    for r in rows:
        agency = r.counterparty if r.type in transfer_types else parents.get(int(r.account_id))
        ref = f"entry:{r.ref}" if r.source == "entry" else f"charges:{r.account_id}:{r.ref}"
        out.append(FinancialRecord(
            record_id=ref, transferred_at=as_utc(r.at) if isinstance(r.at, datetime) else r.at,
            account_id=int(r.account_id), agency_account_id=None if agency is None else int(agency),
            type=RecordType(r.type), direction=Direction.IN if r.amount > 0 else Direction.OUT,
            amount_micros=abs(int(r.amount)), currency=r.currency, operator=r.operator or "system",
            remarks=r.remarks or ""))
    return out, total


RECORDS_CSV_HEADER = ("date_of_transfer_utc", "transfer_account_id", "transfer_agency_account", "type", "direction",
                      "amount", "currency", "operator", "remarks")


def records_csv(records: Sequence[FinancialRecord]) -> str:
    return to_csv(RECORDS_CSV_HEADER, [
        [r.transferred_at.isoformat(), r.account_id, r.agency_account_id, r.type.value, r.direction.value,
         str(from_micros(r.amount_micros)), r.currency.value, r.operator, r.remarks] for r in records])


def ledger(session: Session, principal: Principal, account_id: int, *, limit: int = 50, offset: int = 0
           ) -> list[LedgerEntry]:
    """The raw ledger of one account, charges included, newest first."""
    accounts.ensure_account_visible(session, principal, account_id)
    stmt = (select(LedgerEntry).where(LedgerEntry.account_id == account_id)
            .order_by(LedgerEntry.id.desc()).limit(limit).offset(offset))
    return list(session.scalars(stmt))
