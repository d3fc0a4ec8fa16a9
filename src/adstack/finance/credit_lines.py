"""Postpay credit lines: grants, renewals, settlement statements and settlements of contract periods."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from adstack.accounts import tenancy
from adstack.accounts.models import Account, PaymentMode, Principal
from adstack.core.csv_export import to_csv
from adstack.core.errors import Conflict, FieldError, InvalidState, NotFound, ValidationFailed
from adstack.core.money import from_micros
from adstack.core.timeutil import as_utc, utcnow
from adstack.finance.models import CreditLine, CreditLineIn, CreditLineRenewIn, EntryType, LedgerEntry
from adstack.finance.service import _account, _local_midnight, _lock_wallet, _post, _require_account_manager
from adstack.oplog import service as oplog
from adstack.oplog.models import Operation

MAX_CONTRACT_DAYS = 3 * 366

# ---------- postpay credit lines ----------


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
    if line is None or not tenancy.can_see_account(session, principal, line.account_id):
        raise NotFound(f"credit line {line_id} not found")
    return line


def list_credit_lines(session: Session, principal: Principal, *, account_id: int | None = None,
                      limit: int = 50, offset: int = 0) -> list[CreditLine]:
    stmt = select(CreditLine)
    visible = tenancy.visible_account_ids(session, principal)
    if visible is not None:
        stmt = stmt.where(CreditLine.account_id.in_(visible))
    if account_id is not None:
        stmt = stmt.where(CreditLine.account_id == account_id)
    return list(session.scalars(stmt.order_by(CreditLine.starts_at.desc()).limit(limit).offset(offset)))


@dataclass(frozen=True, slots=True)
class StatementLine:
    """A campaign's charges and refunds on the line's own account; or, for an agency's sub-account (`funding`),
    what the agency transferred to it (in `charges_micros`) and reclaimed from it (in `refunds_micros`)."""

    account_id: int
    company_name: str
    campaign_id: int | None
    charges_micros: int
    refunds_micros: int
    funding: bool = False

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


def _in_statement(line: CreditLine, previous: CreditLine | None) -> ColumnElement[bool]:
    """The ledger entries a line's statement holds: those that occurred inside its period, as far as they were
    written before it was settled; and those of the period it renews that were written only after that one was
    settled (billing catching up after the period's end), which its settled statement can no longer owe."""
    le = LedgerEntry
    own = and_(le.occurred_at >= line.starts_at, le.occurred_at < line.ends_at)
    if line.settled_at is not None:
        own = and_(own, le.created_at <= line.settled_at)
    if previous is None or previous.settled_at is None:
        return own
    late = and_(le.occurred_at >= previous.starts_at, le.occurred_at < previous.ends_at,
                le.created_at > previous.settled_at)
    if line.settled_at is not None:
        late = and_(late, le.created_at <= line.settled_at)
    return or_(own, late)


def _period_costs(session: Session, line: CreditLine) -> list[StatementLine]:
    """What left the line's own wallet in its statement (`_in_statement`): the account's charges less refunds,
    per campaign; and, for an agency, what it transferred to each sub-account less what it reclaimed. A
    sub-account's own spending is not the agency's debt: it spends what it was given, by the agency (counted
    here when transferred) or paid in directly (prepaid, owed by nobody), in its own currency."""
    previous = session.get(CreditLine, line.renewed_from_id) if line.renewed_from_id else None
    le = LedgerEntry
    period = _in_statement(line, previous)
    name = session.get(Account, line.account_id)
    rows = session.execute(
        select(le.campaign_id,
               func.sum(case((le.entry_type == EntryType.CHARGE.value, -le.amount_micros), else_=0)),
               func.sum(case((le.entry_type == EntryType.REFUND.value, le.amount_micros), else_=0)))
        .where(le.account_id == line.account_id, le.entry_type.in_([EntryType.CHARGE.value, EntryType.REFUND.value]),
               period)
        .group_by(le.campaign_id).order_by(le.campaign_id)).all()
    own = [StatementLine(line.account_id, name.company_name if name else "", None if c is None else int(c),
                         int(ch or 0), int(rf or 0)) for c, ch, rf in rows]
    moved = session.execute(
        select(le.counterparty_account_id, Account.company_name,
               func.sum(case((le.entry_type == EntryType.TRANSFER_OUT.value, -le.amount_micros), else_=0)),
               func.sum(case((le.entry_type == EntryType.RECLAIM.value, le.amount_micros), else_=0)))
        .join(Account, Account.id == le.counterparty_account_id)
        .where(le.account_id == line.account_id, Account.parent_agency_id == line.account_id,
               le.entry_type.in_([EntryType.TRANSFER_OUT.value, EntryType.RECLAIM.value]), period)
        .group_by(le.counterparty_account_id, Account.company_name).order_by(le.counterparty_account_id)).all()
    return own + [StatementLine(int(a), company or "", None, int(out or 0), int(back or 0), funding=True)
                  for a, company, out, back in moved]


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
    # Amounts go in as numbers: only text is guarded against spreadsheet formulas, and a refund-heavy period's
    # negative cost written as text would come out as '-500.000000.
    header = ("period", "account_id", "company_name", "campaign_id", "charges", "refunds", "actual_cost", "currency",
              "item")
    rows: list[list[Any]] = [
        [period, item.account_id, item.company_name, item.campaign_id, from_micros(item.charges_micros),
         from_micros(item.refunds_micros), from_micros(item.actual_cost_micros), line.currency,
         "transfers less reclaims" if item.funding else "charges less refunds"]
        for item in statement.lines
    ]
    rows.append([period, line.account_id, "total actual cost", None, "", "",
                 from_micros(statement.actual_cost_micros), line.currency, ""])
    rows.append([period, line.account_id, "credit limit", None, "", "", from_micros(line.limit_micros),
                 line.currency, ""])
    rows.append([period, line.account_id, "amount due" if statement.final else "amount due so far (interim)", None,
                 "", "", from_micros(statement.credit_used_micros), line.currency, ""])
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
