"""Finance: balances, the financial records (search and CSV), top-ups, prepay top-up requests with their proof
of payment, agency transfers, the account managers' queue of top-up requests, and postpay credit lines with
their settlement statements."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import FileResponse
from pydantic import ValidationError
from sqlalchemy import select

from adstack.accounts import service as accounts
from adstack.accounts.models import Account, Role
from adstack.console import forms
from adstack.console.forms import FormErrors
from adstack.console.pages import choices
from adstack.console.web import (
    PREFIX,
    AccountManagerDep,
    ConsoleRoute,
    FormDep,
    UserDep,
    Visitor,
    redirect,
    render,
    with_notice,
)
from adstack.core.deps import IdPath
from adstack.core.errors import DomainError, NotFound
from adstack.core.timeutil import search_day, zone
from adstack.finance import credit_lines, topups, transfers
from adstack.finance import service as finance
from adstack.finance.models import (
    CreditLine,
    CreditLineIn,
    CreditLineRenewIn,
    Direction,
    RecordType,
    TopUpIn,
    TopUpStatus,
    TransferIn,
)
from adstack.finance.records import records_csv, search_records

router = APIRouter(route_class=ConsoleRoute)

PAGE_SIZE = 50
EXPORT_LIMIT = 100_000



def _record_filters(visitor: Visitor) -> dict[str, Any]:
    params = visitor.request.query_params
    tz = zone(visitor.time_zone)
    start, end = search_day(params.get("since")), search_day(params.get("until"))
    raw_account = params.get("account_id") or ""
    account = int(raw_account) if raw_account.isdecimal() and len(raw_account) < 19 else None
    return {
        "account_id": account,
        "direction": choices.enum_or_none(Direction, params.get("direction")),
        "record_type": choices.enum_or_none(RecordType, params.get("type")),
        "since": datetime.combine(start, time(), tzinfo=tz) if start else None,
        "until": datetime.combine(end + timedelta(days=1), time(), tzinfo=tz) if end else None,
    }


def _accounts_with_balances(visitor: Visitor) -> list[dict[str, Any]]:
    rows = accounts.list_accounts(visitor.session, visitor.me, limit=200)
    out = []
    for account in rows:
        funds = finance.funds(visitor.session, account)
        out.append({"account": account, "funds": funds,
                    "notice": finance.low_balance_notice(visitor.session, account)})
    return out


def _finance_page(visitor: Visitor, *, errors: FormErrors | None = None, values: dict[str, Any] | None = None,
                  refused_form: str = "", status: int = 200) -> Response:
    """`refused_form` names the form that was sent and refused: only it shows `errors` and `values`."""
    session, principal = visitor.session, visitor.me
    page = choices.page_number(visitor.request.query_params.get("page"))
    records, total = search_records(session, principal, **_record_filters(visitor), limit=PAGE_SIZE,
                                            offset=(page - 1) * PAGE_SIZE)
    return render(visitor, "finance/finance.html", {
        "balances": _accounts_with_balances(visitor) if principal.account_id is not None else [],
        "records": records, "total": total, "page": page, "pages": max(1, -(-total // PAGE_SIZE)),
        "directions": [d.value for d in Direction], "record_types": [t.value for t in RecordType],
        "filters": {k: visitor.request.query_params.get(k, "") for k in ("direction", "type", "since", "until",
                                                                            "account_id")},
        "requests": topups.list_top_up_requests(session, principal, limit=20),
        "account_choices": accounts.list_accounts(session, principal, limit=200),
        "sub_accounts": (accounts.list_accounts(session, principal, parent_agency_id=principal.account_id, limit=200)
                         if principal.role == Role.AGENCY else []),
        "errors": errors or FormErrors(), "values": values or {}, "refused_form": refused_form,
    }, status=status)


@router.get("/finance")
def finance_page(visitor: UserDep) -> Response:
    return _finance_page(visitor)


@router.get("/finance/export.csv")
def export_records(visitor: UserDep) -> Response:
    records, _ = search_records(visitor.session, visitor.me, **_record_filters(visitor), limit=EXPORT_LIMIT,
                                        offset=0)
    return Response(records_csv(records), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="financial-records.csv"'})


def _refused(visitor: Visitor, exc: ValidationError | DomainError, values: dict[str, Any], refused_form: str
             ) -> Response:
    visitor.session.rollback()
    if isinstance(exc, ValidationError):
        return _finance_page(visitor, errors=FormErrors.from_validation(exc), values=values,
                             refused_form=refused_form, status=422)
    if exc.status == 404:
        raise exc
    return _finance_page(visitor, errors=FormErrors.from_domain(exc), values=values, refused_form=refused_form,
                         status=exc.status)


@router.post("/finance/top-ups")
def top_up(visitor: AccountManagerDep, form: FormDep) -> Response:
    """An account manager credits an account directly."""
    values = {k: forms.text(form, k) for k in ("account_id", "amount", "remarks")}
    with forms.collecting() as typed:
        amount = forms.money(form, "amount", required=True)
    if typed:
        return _finance_page(visitor, errors=typed, values=values, refused_form="top_up", status=422)
    try:
        topups.top_up(visitor.session, visitor.me, TopUpIn.model_validate({
            "account_id": forms.integer(form, "account_id", minimum=1), "amount_micros": amount,
            "remarks": values["remarks"][:500]}))
        visitor.session.commit()
    except (ValidationError, DomainError) as exc:
        return _refused(visitor, exc, values, "top_up")
    return redirect(with_notice(f"{PREFIX}/finance", "topped_up"))


@router.post("/finance/top-up-requests")
def request_top_up(visitor: UserDep, form: FormDep) -> Response:
    """A prepay top-up with its proof of payment, for an account manager to confirm."""
    values = {k: forms.text(form, k) for k in ("request_account_id", "request_amount", "request_remarks")}
    proof = forms.upload(form, "proof")
    # Every input's refusal at once: the amount, the proof and the account.
    with forms.collecting() as typed:
        amount = forms.money(form, "request_amount", required=True)
        account_id = forms.integer(form, "request_account_id", minimum=1) or visitor.me.account_id
    if proof is None:
        typed.add("proof", "required", "attach the proof of payment")
    if account_id is None:
        typed.add("request_account_id", "required", "choose the account to credit")
    if typed or proof is None or account_id is None or amount is None:
        return _finance_page(visitor, errors=typed, values=values, refused_form="top_up_request", status=422)
    try:
        topups.request_top_up(
            visitor.session, visitor.me, account_id=account_id, amount_micros=amount,
            filename=proof.filename or "proof", stream=proof.file, storage_dir=visitor.settings.data_dir,
            max_bytes=visitor.settings.max_document_bytes, remarks=values["request_remarks"][:500])
        visitor.session.commit()
    except (ValidationError, DomainError) as exc:
        return _refused(visitor, exc, values, "top_up_request")
    return redirect(with_notice(f"{PREFIX}/finance", "requested"))


@router.post("/finance/transfers")
def transfer(visitor: UserDep, form: FormDep) -> Response:
    """An agency moves balance to a sub-account, or reclaims it."""
    values = {k: forms.text(form, k) for k in ("kind", "sub_account_id", "transfer_amount", "transfer_remarks")}
    with forms.collecting() as typed:
        sub_account_id = forms.integer(form, "sub_account_id", minimum=1)
        amount = forms.money(form, "transfer_amount", required=True)
    if typed:
        return _finance_page(visitor, errors=typed, values=values, refused_form="transfer", status=422)
    try:
        transfers.transfer(visitor.session, visitor.me, TransferIn.model_validate({
            "kind": values["kind"], "sub_account_id": sub_account_id, "amount_micros": amount,
            "remarks": values["transfer_remarks"][:500]}))
        visitor.session.commit()
    except (ValidationError, DomainError) as exc:
        return _refused(visitor, exc, values, "transfer")
    return redirect(with_notice(f"{PREFIX}/finance", "saved"))


@router.get("/finance/top-up-requests/{request_id}/proof")
def proof_of_payment(request_id: IdPath, visitor: UserDep) -> Response:
    top_up_request = topups.get_top_up_request(visitor.session, visitor.me, request_id)
    path = Path(top_up_request.proof_storage_path)
    if not path.is_file():
        raise NotFound("the proof of payment file is missing")
    return FileResponse(path, media_type=top_up_request.proof_content_type, filename=top_up_request.proof_filename)


# ---------- account managers: top-up requests ----------


@router.get("/admin/top-ups")
def top_up_queue(visitor: AccountManagerDep, status: str | None = "pending") -> Response:
    chosen = choices.enum_or_none(TopUpStatus, status)
    rows = topups.list_top_up_requests(visitor.session, visitor.me, status=chosen, limit=200)
    names = {a.id: a for a in visitor.session.scalars(select(Account).where(
        Account.id.in_({r.account_id for r in rows})))}
    return render(visitor, "finance/top_ups.html", {
        "rows": rows, "accounts": names, "status": chosen.value if chosen else "",
        "statuses": [s.value for s in TopUpStatus],
        "account_choices": accounts.list_accounts(visitor.session, visitor.me, limit=500),
    })


@router.post("/admin/top-ups/{request_id}")
def decide_top_up(request_id: IdPath, visitor: AccountManagerDep, form: FormDep) -> Response:
    confirm = forms.text(form, "decision") == "confirm"
    topups.decide_top_up_request(visitor.session, visitor.me, request_id, confirm=confirm,
                                  reason=forms.text(form, "reason")[:500])
    visitor.session.commit()
    return redirect(with_notice(f"{PREFIX}/admin/top-ups", "confirmed" if confirm else "rejected"))


# ---------- postpay credit lines ----------

CREDIT_LINE_PAGE_SIZE = 50


@dataclass(frozen=True, slots=True)
class CreditLineRow:
    """A credit line as the console lists it. `used_micros` is what the account owes against it (the same
    figure the settlement statement reports) or, once settled, what was paid; None before the period starts.
    `available_micros` is the credit still spendable, only while the line is in force."""

    line: CreditLine
    account: Account | None
    state: str
    used_micros: int | None
    available_micros: int | None


def _credit_line_rows(visitor: Visitor, lines: list[CreditLine]) -> list[CreditLineRow]:
    session = visitor.session
    owners = {a.id: a for a in session.scalars(select(Account).where(Account.id.in_({x.account_id for x in lines})))}
    balances: dict[int, int] = {}
    rows = []
    for line in lines:
        state = credit_lines.credit_line_state(line)
        used: int | None = None
        available: int | None = None
        if state == "settled":
            used = line.settled_amount_micros or 0
        elif state in ("active", "ended"):
            if line.account_id not in balances:
                balances[line.account_id] = finance.balance_micros(session, line.account_id)
            used = max(-balances[line.account_id], 0)
            available = max(line.limit_micros - used, 0) if state == "active" else 0
        rows.append(CreditLineRow(line, owners.get(line.account_id), state, used, available))
    return rows


def _credit_lines_page(visitor: Visitor, *, errors: FormErrors | None = None, values: dict[str, Any] | None = None,
                       status: int = 200) -> Response:
    session, principal = visitor.session, visitor.me
    params = visitor.request.query_params
    page = choices.page_number(params.get("page"))
    raw_account = params.get("account_id") or ""
    account_filter = int(raw_account) if raw_account.isdecimal() and len(raw_account) < 19 else None
    lines = credit_lines.list_credit_lines(session, principal, account_id=account_filter,
                                      limit=CREDIT_LINE_PAGE_SIZE + 1, offset=(page - 1) * CREDIT_LINE_PAGE_SIZE)
    return render(visitor, "finance/credit_lines.html", {
        "rows": _credit_line_rows(visitor, lines[:CREDIT_LINE_PAGE_SIZE]),
        "page": page, "has_next": len(lines) > CREDIT_LINE_PAGE_SIZE,
        "account_filter": account_filter,
        "account_choices": accounts.list_accounts(session, principal, limit=500),
        "errors": errors or FormErrors(), "values": values or {},
    }, status=status)


@router.get("/finance/credit-lines")
def credit_lines_page(visitor: UserDep) -> Response:
    return _credit_lines_page(visitor)


@router.post("/finance/credit-lines")
def grant_credit_line(visitor: AccountManagerDep, form: FormDep) -> Response:
    """An account manager makes an account postpay for a contract period."""
    values = {k: forms.text(form, k) for k in ("account_id", "limit", "starts_on", "ends_on", "remarks")}
    with forms.collecting() as typed:
        payload: dict[str, Any] = {"account_id": forms.integer(form, "account_id", minimum=1),
                                   "limit_micros": forms.money(form, "limit", required=True),
                                   "remarks": values["remarks"]}
    payload.update({k: values[k] for k in ("starts_on", "ends_on") if values[k]})
    typed = forms.merge(typed, _period_errors(values["starts_on"], values["ends_on"]))
    if typed:
        # The schema's refusals of the other inputs join those of the typed ones, so every input speaks at once.
        try:
            CreditLineIn.model_validate(payload)
        except ValidationError as exc:
            typed = forms.merge(typed, FormErrors.from_validation(exc))
        return _credit_lines_page(visitor, errors=typed, values=values, status=422)
    try:
        line = credit_lines.grant_credit_line(visitor.session, visitor.me, CreditLineIn.model_validate(payload))
        visitor.session.commit()
    except (ValidationError, DomainError) as exc:
        visitor.session.rollback()
        if isinstance(exc, DomainError) and exc.status == 404:
            raise
        errors = FormErrors.from_validation(exc) if isinstance(exc, ValidationError) else FormErrors.from_domain(exc)
        return _credit_lines_page(visitor, errors=errors, values=values,
                                  status=422 if isinstance(exc, ValidationError) else exc.status)
    return redirect(with_notice(f"{PREFIX}/finance/credit-lines/{line.id}", "created"))


def _period_errors(starts_on: str, ends_on: str) -> FormErrors:
    """A contract period that ends before it starts, told beside its end even when another input already stops
    the request before the finance service could look at the period."""
    errors = FormErrors()
    try:
        if starts_on and ends_on and date.fromisoformat(ends_on) < date.fromisoformat(starts_on):
            errors.add("ends_on", "not_before_starts_on", "the period must end on or after its start")
    except ValueError:
        pass
    return errors


def _credit_line_page(visitor: Visitor, line_id: int, *, errors: FormErrors | None = None,
                      values: dict[str, Any] | None = None, status: int = 200) -> Response:
    session, principal = visitor.session, visitor.me
    statement = credit_lines.settlement_statement(session, principal, line_id)
    line = statement.line
    same_account = credit_lines.list_credit_lines(session, principal, account_id=line.account_id, limit=200)
    renewed_as = next((x for x in same_account if x.renewed_from_id == line.id), None)
    return render(visitor, "finance/credit_line.html", {
        "line": line, "row": _credit_line_rows(visitor, [line])[0], "statement": statement, "renewed_as": renewed_as,
        "renew_starts_on": line.ends_on + timedelta(days=1),
        "errors": errors or FormErrors(), "values": values or {},
    }, status=status)


@router.get("/finance/credit-lines/{line_id}")
def credit_line_page(line_id: IdPath, visitor: UserDep) -> Response:
    return _credit_line_page(visitor, line_id)


@router.get("/finance/credit-lines/{line_id}/statement.csv")
def credit_line_statement_csv(line_id: IdPath, visitor: UserDep) -> Response:
    """The same CSV as the API's statement download (formula-like cells neutralised by the service)."""
    statement = credit_lines.settlement_statement(visitor.session, visitor.me, line_id)
    line = statement.line
    name = f"settlement-{line.account_id}-{line.starts_on}-{line.ends_on}.csv"
    return Response(credit_lines.statement_csv(statement), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _line_refused(visitor: Visitor, line_id: int, exc: ValidationError | DomainError, values: dict[str, Any],
                  form_name: str) -> Response:
    """Errors without a field of their own are shown on the form that was sent (`renew` or `settle`)."""
    visitor.session.rollback()
    if isinstance(exc, ValidationError):
        return _credit_line_page(visitor, line_id, errors=FormErrors.from_validation(exc), values=values,
                                 status=422)
    if exc.status == 404:
        raise exc
    return _credit_line_page(visitor, line_id, errors=FormErrors.from_domain(exc, default_field=form_name),
                             values=values, status=exc.status)


@router.post("/finance/credit-lines/{line_id}/renew")
def renew_credit_line(line_id: IdPath, visitor: AccountManagerDep, form: FormDep) -> Response:
    """The next contract period, from the day after this one ends; the limit defaults to this line's."""
    values = {k: forms.text(form, k) for k in ("ends_on", "limit", "remarks")}
    try:
        payload: dict[str, Any] = {"limit_micros": forms.money(form, "limit"), "remarks": values["remarks"]}
        if values["ends_on"]:
            payload["ends_on"] = values["ends_on"]
        line = credit_lines.renew_credit_line(visitor.session, visitor.me, line_id,
                                         CreditLineRenewIn.model_validate(payload))
        visitor.session.commit()
    except (ValidationError, DomainError) as exc:
        return _line_refused(visitor, line_id, exc, values, "renew")
    return redirect(with_notice(f"{PREFIX}/finance/credit-lines/{line.id}", "renewed"))


@router.post("/finance/credit-lines/{line_id}/settle")
def settle_credit_line(line_id: IdPath, visitor: AccountManagerDep, form: FormDep) -> Response:
    """Records the payment of an ended period."""
    values = {"settle_remarks": forms.text(form, "settle_remarks")}
    try:
        credit_lines.settle_credit_line(visitor.session, visitor.me, line_id, remarks=values["settle_remarks"][:500])
        visitor.session.commit()
    except DomainError as exc:
        return _line_refused(visitor, line_id, exc, values, "settle")
    return redirect(with_notice(f"{PREFIX}/finance/credit-lines/{line_id}", "settled"))
