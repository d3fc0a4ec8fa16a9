"""Agency transfers and reclaims: balance moved between an agency and one of its sub-accounts."""

from __future__ import annotations

from sqlalchemy.orm import Session

from adstack.accounts.models import Account, AccountType, Principal, Role
from adstack.core.errors import Conflict, FieldError, Forbidden, NotFound, ValidationFailed
from adstack.core.money import format_micros
from adstack.finance.models import EntryType, LedgerEntry, TransferIn
from adstack.finance.service import (
    _account,
    _check_currency,
    _entry,
    _existing_entry,
    _insufficient,
    _lock_wallets,
    _post,
    funds,
)
from adstack.oplog import service as oplog
from adstack.oplog.models import Operation

# ---------- agency transfers and reclaims ----------


def _check_same_currency(agency: Account, sub: Account, data: TransferIn) -> None:
    if agency.currency != sub.currency:
        raise ValidationFailed.single(
            "sub_account_id", "same_currency",
            f"agency {agency.id} is kept in {agency.currency} and account {sub.id} in {sub.currency}; "
            "there is no cross-currency transfer", limit=agency.currency, actual=sub.currency)
    _check_currency("currency", data.currency, sub)


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
    _check_same_currency(agency, sub, data)
    payer, payee = (agency, sub) if data.kind == "transfer" else (sub, agency)
    base_key = f"transfer:{agency.id}:{data.idempotency_key}" if data.idempotency_key else None
    balances = _lock_wallets(session, agency, sub)
    # A currency change takes the wallet lock too: read the currencies again now that it is ours.
    session.refresh(agency)
    session.refresh(sub)
    _check_same_currency(agency, sub, data)
    existing = _existing_entry(session, f"{base_key}:out" if base_key else None)
    if existing is not None:
        received = _existing_entry(session, f"{base_key}:in")
        assert received is not None
        if (existing.account_id != payer.id or received.account_id != payee.id
                or -existing.amount_micros != data.amount_micros):
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
