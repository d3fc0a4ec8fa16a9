"""Top-ups: an account manager's direct top-up, and prepay top-up requests filed with a proof of payment."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from adstack.accounts import service as accounts
from adstack.accounts import tenancy
from adstack.accounts.models import Principal
from adstack.core.errors import Conflict, FieldError, InvalidState, NotFound, PayloadTooLarge, ValidationFailed
from adstack.core.money import format_micros
from adstack.core.private_files import create_private
from adstack.core.timeutil import utcnow
from adstack.finance.models import EntryType, LedgerEntry, TopUpIn, TopUpRequest, TopUpStatus
from adstack.finance.service import (
    _account,
    _check_currency,
    _entry,
    _existing_entry,
    _lock_wallet,
    _money_snapshot,
    _post,
    _require_account_manager,
)
from adstack.oplog import service as oplog
from adstack.oplog.models import Operation

PROOF_SIGNATURES = accounts.DOCUMENT_SIGNATURES  # proofs of payment: PDF, PNG or JPEG, sniffed

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
    _lock_wallet(session, account)  # a currency change waits for the request, or the request sees the change
    session.refresh(account)
    _check_currency("currency", currency, account)
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
    if request is None or not tenancy.can_see_account(session, principal, request.account_id):
        raise NotFound(f"top-up request {request_id} not found")
    return request


def list_top_up_requests(session: Session, principal: Principal, *, status: TopUpStatus | None = None,
                         account_id: int | None = None, limit: int = 50, offset: int = 0) -> list[TopUpRequest]:
    stmt = select(TopUpRequest)
    visible = tenancy.visible_account_ids(session, principal)
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
        session.refresh(account)
        if request.currency != account.currency:
            # Filed before the account's currency changed: crediting its amount in the new currency would
            # turn, say, 100,000 INR into 100,000 USD.
            raise InvalidState(
                f"top-up request {request.id} is for {request.currency} and account {account.id} is now kept in "
                f"{account.currency}; reject it and file a new request", code="currency_mismatch",
                fields=[FieldError(field="currency", rule="same_currency", limit=account.currency,
                                   actual=request.currency)])
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
