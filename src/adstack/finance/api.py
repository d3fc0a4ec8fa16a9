"""Balances, top-ups, top-up requests with proof of payment, agency transfers, credit lines, refunds and the
financial records."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, UploadFile, status
from fastapi.responses import FileResponse, Response

from adstack.accounts import tenancy
from adstack.core.deps import (
    AccountManagerPrincipal,
    CurrentPrincipal,
    IdPath,
    Limit,
    Offset,
    OptionalId,
    SessionDep,
    SettingsDep,
)
from adstack.core.errors import NotFound
from adstack.core.ids import MAX_ID
from adstack.core.money import Currency
from adstack.core.timeutil import search_bound, utcnow
from adstack.events.service import get_event_store
from adstack.finance import budgets, charges, credit_lines, records, service, topups, transfers
from adstack.finance.models import (
    BalanceRead,
    CreditLine,
    CreditLineIn,
    CreditLineRead,
    CreditLineRenewIn,
    Direction,
    FinancialRecordPage,
    LedgerEntryRead,
    RecordType,
    RefundIn,
    SpendRead,
    TopUpDecisionIn,
    TopUpIn,
    TopUpRequestRead,
    TopUpStatus,
    TransferIn,
    TransferRead,
)

router = APIRouter(prefix="/api/v1/finance", tags=["finance"])

CSV_RESPONSE: dict[int | str, dict[str, Any]] = {200: {"content": {"text/csv": {}}}}


def _line_read(line: CreditLine) -> CreditLineRead:
    out = CreditLineRead.model_validate(line)
    out.state = credit_lines.credit_line_state(line)  # type: ignore[assignment]
    return out


# ---------- balances and the ledger ----------


@router.get("/accounts/{account_id}/balance", response_model=BalanceRead,
            summary="Balance, credit line, what may be spent, and the low-balance notice")
def get_balance(account_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> BalanceRead:
    account = tenancy.get_account(session, principal, account_id)
    funds = service.funds(session, account)
    low_balance = service.low_balance_notice(session, account, available=funds.available_micros)
    notice = low_balance
    if funds.suspended:
        notice = "The postpay contract period has ended; spending is stopped until the credit line is renewed."
    return BalanceRead(
        account_id=account.id, currency=Currency(account.currency), payment_mode=account.payment_mode,
        balance_micros=funds.balance_micros, credit_limit_micros=funds.credit_limit_micros,
        available_micros=funds.available_micros, spending_suspended=funds.suspended,
        low_balance_threshold_micros=account.low_balance_threshold_micros,
        low_balance=low_balance is not None,
        notice=notice, credit_line=_line_read(funds.credit_line) if funds.credit_line is not None else None,
    )


@router.get("/accounts/{account_id}/ledger", response_model=list[LedgerEntryRead],
            summary="The account's ledger entries, charges included, newest first")
def get_ledger(account_id: IdPath, principal: CurrentPrincipal, session: SessionDep, limit: Limit = 50,
               offset: Offset = 0) -> list[LedgerEntryRead]:
    rows = records.ledger(session, principal, account_id, limit=limit, offset=offset)
    return [LedgerEntryRead.model_validate(r) for r in rows]


@router.get("/ad-groups/{ad_group_id}/spend", response_model=SpendRead,
            summary="An ad group's spend today (in its time zone) and in total, against its budgets")
def get_ad_group_spend(ad_group_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> SpendRead:
    view = budgets.budget_view(session, ad_group_id)
    if view.account_id is None or not tenancy.can_see_account(session, principal, view.account_id):
        raise NotFound(f"ad group {ad_group_id} not found")
    state = budgets.budget_state(session, ad_group_id, at=utcnow())
    account = tenancy.get_account(session, principal, view.account_id)
    return SpendRead(
        ad_group_id=ad_group_id, currency=Currency(account.currency), time_zone=state.time_zone,
        day=datetime.fromisoformat(state.day).date(), spent_today_micros=state.spent_today_micros,
        spent_total_micros=state.spent_total_micros, daily_budget_micros=state.daily_budget_micros,
        total_budget_micros=state.total_budget_micros, remaining_micros=state.remaining_micros,
        status=state.exhausted_reason.value if state.exhausted_reason else None,
    )


# ---------- top-ups ----------


@router.post("/top-ups", response_model=LedgerEntryRead, status_code=status.HTTP_201_CREATED,
             summary="Top up an account directly (account managers)")
def top_up(body: TopUpIn, principal: AccountManagerPrincipal, session: SessionDep) -> LedgerEntryRead:
    entry = topups.top_up(session, principal, body)
    session.commit()
    return LedgerEntryRead.model_validate(entry)


@router.post("/top-up-requests", response_model=TopUpRequestRead, status_code=status.HTTP_201_CREATED,
             summary="File a prepay top-up with its proof of payment (PDF, PNG or JPEG, size capped)")
def request_top_up(
    principal: CurrentPrincipal,
    session: SessionDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="Proof of payment: PDF, PNG or JPEG.")],
    account_id: Annotated[int, Form(ge=1, le=MAX_ID, description="The account to credit.")],
    amount_micros: Annotated[int, Form(ge=1, le=10**15, description="Micros of the account currency.")],
    remarks: Annotated[str, Form(max_length=500)] = "",
    currency: Annotated[Currency | None, Form(description="If sent, must be the account's currency.")] = None,
) -> TopUpRequestRead:
    request = topups.request_top_up(
        session, principal, account_id=account_id, amount_micros=amount_micros, filename=file.filename or "proof",
        stream=file.file, storage_dir=settings.data_dir, max_bytes=settings.max_document_bytes, remarks=remarks,
        currency=currency.value if currency is not None else None)
    session.commit()
    return TopUpRequestRead.model_validate(request)


@router.get("/top-up-requests", response_model=list[TopUpRequestRead], summary="Top-up requests you can see")
def list_top_up_requests(principal: CurrentPrincipal, session: SessionDep, status: TopUpStatus | None = None,
                         account_id: OptionalId = None, limit: Limit = 50, offset: Offset = 0
                         ) -> list[TopUpRequestRead]:
    rows = topups.list_top_up_requests(session, principal, status=status, account_id=account_id, limit=limit,
                                        offset=offset)
    return [TopUpRequestRead.model_validate(r) for r in rows]


@router.get("/top-up-requests/{request_id}", response_model=TopUpRequestRead, summary="Get a top-up request")
def get_top_up_request(request_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> TopUpRequestRead:
    return TopUpRequestRead.model_validate(topups.get_top_up_request(session, principal, request_id))


@router.get("/top-up-requests/{request_id}/proof", response_class=FileResponse,
            responses={200: {"content": {"application/pdf": {}, "image/png": {}, "image/jpeg": {}}}},
            summary="Download the proof of payment")
def get_proof(request_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> FileResponse:
    request = topups.get_top_up_request(session, principal, request_id)
    path = Path(request.proof_storage_path)
    if not path.is_file():
        raise NotFound("the proof of payment file is missing")
    return FileResponse(path, media_type=request.proof_content_type, filename=request.proof_filename)


@router.post("/top-up-requests/{request_id}/confirm", response_model=TopUpRequestRead,
             summary="Confirm a top-up request: credits the balance exactly once (account managers)")
def confirm_top_up_request(request_id: IdPath, principal: AccountManagerPrincipal,
                           session: SessionDep) -> TopUpRequestRead:
    request = topups.decide_top_up_request(session, principal, request_id, confirm=True)
    session.commit()
    return TopUpRequestRead.model_validate(request)


@router.post("/top-up-requests/{request_id}/reject", response_model=TopUpRequestRead,
             summary="Reject a top-up request with a reason (account managers)")
def reject_top_up_request(request_id: IdPath, body: TopUpDecisionIn, principal: AccountManagerPrincipal,
                          session: SessionDep) -> TopUpRequestRead:
    request = topups.decide_top_up_request(session, principal, request_id, confirm=False, reason=body.reason)
    session.commit()
    return TopUpRequestRead.model_validate(request)


# ---------- agency transfers and the financial records ----------


@router.post("/transfers", response_model=TransferRead, status_code=status.HTTP_201_CREATED,
             summary="Move balance from an agency to a sub-account (transfer) or back (reclaim)")
def create_transfer(body: TransferIn, principal: CurrentPrincipal, session: SessionDep) -> TransferRead:
    paid, received = transfers.transfer(session, principal, body)
    session.commit()
    return TransferRead(paid=LedgerEntryRead.model_validate(paid), received=LedgerEntryRead.model_validate(received))


@router.get("/transfers", response_model=FinancialRecordPage,
            summary="Financial records: search by direction, type and time")
def search_records(
    principal: CurrentPrincipal,
    session: SessionDep,
    direction: Direction | None = None,
    type: RecordType | None = None,
    since: Annotated[datetime | None, Query(description="Transfers at or after this time.")] = None,
    until: Annotated[datetime | None, Query(description="Transfers before this time.")] = None,
    account_id: OptionalId = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> FinancialRecordPage:
    items, total = records.search_records(session, principal, account_id=account_id, direction=direction,
                                          record_type=type, since=search_bound("since", since),
                                          until=search_bound("until", until), limit=limit, offset=offset)
    return FinancialRecordPage(total=total, items=items)


@router.get("/transfers/export.csv", response_class=Response, responses=CSV_RESPONSE,
            summary="Download the matching financial records as CSV")
def export_records(
    principal: CurrentPrincipal,
    session: SessionDep,
    direction: Direction | None = None,
    type: RecordType | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    account_id: OptionalId = None,
) -> Response:
    items, _ = records.search_records(session, principal, account_id=account_id, direction=direction,
                                      record_type=type, since=search_bound("since", since),
                                      until=search_bound("until", until), limit=100_000, offset=0)
    return Response(records.records_csv(items), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="financial-records.csv"'})


@router.post("/refunds", response_model=LedgerEntryRead, status_code=status.HTTP_201_CREATED,
             summary="Refund a charge, at most once (account managers)")
def refund(body: RefundIn, principal: AccountManagerPrincipal, session: SessionDep,
           settings: SettingsDep) -> LedgerEntryRead:
    entry = charges.refund(session, principal, body, store=get_event_store(settings))
    session.commit()
    return LedgerEntryRead.model_validate(entry)


# ---------- postpay credit lines ----------


@router.post("/credit-lines", response_model=CreditLineRead, status_code=status.HTTP_201_CREATED,
             summary="Grant a postpay credit line for a contract period (account managers)")
def grant_credit_line(body: CreditLineIn, principal: AccountManagerPrincipal, session: SessionDep) -> CreditLineRead:
    line = credit_lines.grant_credit_line(session, principal, body)
    session.commit()
    return _line_read(line)


@router.get("/credit-lines", response_model=list[CreditLineRead], summary="Credit lines you can see")
def list_credit_lines(principal: CurrentPrincipal, session: SessionDep, account_id: OptionalId = None,
                      limit: Limit = 50, offset: Offset = 0) -> list[CreditLineRead]:
    rows = credit_lines.list_credit_lines(session, principal, account_id=account_id, limit=limit, offset=offset)
    return [_line_read(r) for r in rows]


@router.get("/credit-lines/{line_id}", response_model=CreditLineRead, summary="Get a credit line")
def get_credit_line(line_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> CreditLineRead:
    return _line_read(credit_lines.get_credit_line(session, principal, line_id))


@router.post("/credit-lines/{line_id}/renew", response_model=CreditLineRead, status_code=status.HTTP_201_CREATED,
             summary="Renew a credit line for the next contract period (account managers)")
def renew_credit_line(line_id: IdPath, body: CreditLineRenewIn, principal: AccountManagerPrincipal,
                      session: SessionDep) -> CreditLineRead:
    line = credit_lines.renew_credit_line(session, principal, line_id, body)
    session.commit()
    return _line_read(line)


@router.get("/credit-lines/{line_id}/statement.csv", response_class=Response, responses=CSV_RESPONSE,
            summary="Settlement statement of the period's actual cost (interim until the period ends)")
def credit_line_statement(line_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> Response:
    statement = credit_lines.settlement_statement(session, principal, line_id)
    name = f"settlement-{statement.line.account_id}-{statement.line.starts_on}-{statement.line.ends_on}.csv"
    return Response(credit_lines.statement_csv(statement), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.post("/credit-lines/{line_id}/settle", response_model=CreditLineRead,
             summary="Record the payment of an ended period (account managers)")
def settle_credit_line(line_id: IdPath, principal: AccountManagerPrincipal, session: SessionDep) -> CreditLineRead:
    line = credit_lines.settle_credit_line(session, principal, line_id)
    session.commit()
    return _line_read(line)
