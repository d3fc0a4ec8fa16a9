"""Money counts only in its own currency: a top-up request, a credit line and a transfer never cross into the
currency an account was moved to, even when the move races them."""

from __future__ import annotations

import io
import threading

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from adstack.accounts import service as accounts
from adstack.accounts.models import Account, AccountUpdate, Principal, Role
from adstack.core.db import make_session_factory
from adstack.core.errors import ValidationFailed
from adstack.core.money import Currency
from adstack.finance import transfers
from adstack.finance.models import LedgerEntry, TransferIn
from tests.support import Api, expect

USD = 1_000_000
FINANCE = "/api/v1/finance"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def _move_currency(session: Session, account_id: int, currency: str) -> None:
    """What an account looks like whose currency changed past today's checks (data from before them)."""
    session.execute(update(Account).where(Account.id == account_id).values(currency=currency))
    session.commit()


def test_a_top_up_request_is_not_confirmed_in_another_currency(api: Api, session: Session) -> None:
    manager = api.admin(Role.ACCOUNT_MANAGER)
    adv = api.approved_account(country="TH", settlement_entity="Xiaomi India", currency="INR")
    assert adv.account_id is not None
    request = expect(api.client.post(
        f"{FINANCE}/top-up-requests", headers=adv.headers,
        data={"account_id": str(adv.account_id), "amount_micros": str(100_000 * USD)},
        files={"file": ("r.png", io.BytesIO(PNG), "image/png")}), 201)
    _move_currency(session, adv.account_id, "USD")
    refused = expect(api.client.post(f"{FINANCE}/top-up-requests/{request['id']}/confirm",
                                     headers=manager.headers), 409)
    assert refused["error"]["code"] == "currency_mismatch"
    assert refused["error"]["fields"] == [{"field": "currency", "rule": "same_currency", "limit": "USD",
                                           "actual": "INR"}]
    balance = expect(api.client.get(f"{FINANCE}/accounts/{adv.account_id}/balance", headers=adv.headers), 200)
    assert balance["balance_micros"] == 0
    still = expect(api.client.get(f"{FINANCE}/top-up-requests/{request['id']}", headers=manager.headers), 200)
    assert still["status"] == "pending"


def test_a_credit_line_counts_only_in_its_own_currency(api: Api, session: Session) -> None:
    manager = api.admin(Role.ACCOUNT_MANAGER)
    adv = api.approved_account(country="TH", settlement_entity="Xiaomi India", currency="INR")
    assert adv.account_id is not None
    expect(api.client.post(f"{FINANCE}/credit-lines", headers=manager.headers, json={
        "account_id": adv.account_id, "limit_micros": 1_000_000 * USD, "starts_on": "2026-01-01",
        "ends_on": "2027-12-01"}), 201)
    _move_currency(session, adv.account_id, "USD")
    balance = expect(api.client.get(f"{FINANCE}/accounts/{adv.account_id}/balance", headers=adv.headers), 200)
    assert (balance["currency"], balance["credit_limit_micros"], balance["available_micros"]) == ("USD", 0, 0)


def _agency_with_sub(api: Api) -> tuple[Principal, int]:
    admin = api.admin()
    agency = api.approved_account(admin, type="agency", country="TH", currency="USD")
    assert agency.account_id is not None
    sub = api.sub_account(agency, admin, country="TH", currency="USD")
    expect(api.client.post(f"{FINANCE}/top-ups", headers=admin.headers,
                           json={"account_id": agency.account_id, "amount_micros": 100 * USD}), 201)
    return Principal(user_id=agency.user_id, email=agency.email, role=Role.AGENCY,
                     account_id=agency.account_id), sub


def _currencies(session: Session, account_id: int) -> tuple[str, set[str]]:
    session.expire_all()
    account = session.get(Account, account_id)
    assert account is not None
    entries = set(session.scalars(select(LedgerEntry.currency).where(LedgerEntry.account_id == account_id)))
    return account.currency, entries


def test_a_transfer_reads_the_currency_again_under_the_wallet_lock(
    api: Api, session: Session, db: Engine, monkeypatch
) -> None:
    """The sub-account's currency changes after the transfer checked it and before it locked the wallets: the
    transfer is refused rather than writing USD into a CNY account."""
    agency, sub = _agency_with_sub(api)
    real_lock = transfers._lock_wallets

    def change_first(session_: Session, *accounts_: Account) -> dict[int, int]:
        with make_session_factory(db)() as other:
            accounts.update_account(other, agency, sub, AccountUpdate(currency=Currency.CNY))
            other.commit()
        return real_lock(session_, *accounts_)

    monkeypatch.setattr(transfers, "_lock_wallets", change_first)
    with make_session_factory(db)() as mine:
        try:
            transfers.transfer(mine, agency, TransferIn(kind="transfer", sub_account_id=sub, amount_micros=USD))
            mine.commit()
            refusal = None
        except ValidationFailed as exc:
            refusal = exc
    assert refusal is not None and [(f.field, f.rule) for f in refusal.fields] == [("sub_account_id",
                                                                                    "same_currency")]
    assert _currencies(session, sub) == ("CNY", set())


def test_a_currency_change_waits_for_a_transfer_holding_the_wallet(api: Api, session: Session, db: Engine) -> None:
    """The transfer has written its entries and not yet committed: the change waits for the wallet lock, then
    sees the money and is refused. Without the lock it would commit CNY beside the transfer's USD."""
    agency, sub = _agency_with_sub(api)
    factory = make_session_factory(db)
    posted = threading.Event()
    outcome: list[object] = []

    def change() -> None:
        posted.wait(10)
        with factory() as other:
            try:
                accounts.update_account(other, agency, sub, AccountUpdate(currency=Currency.CNY))
                other.commit()
                outcome.append("changed")
            except ValidationFailed as exc:
                outcome.append([(f.field, f.rule) for f in exc.fields])

    changer = threading.Thread(target=change)
    changer.start()
    with factory() as mine:
        transfers.transfer(mine, agency, TransferIn(kind="transfer", sub_account_id=sub, amount_micros=USD))
        posted.set()
        changer.join(1.0)  # long enough for an unlocked change to commit; a locked one is still waiting
        mine.commit()
    changer.join(30)
    assert outcome == [[("currency", "fixed_once_funded")]]
    assert _currencies(session, sub) == ("USD", {"USD"})
