"""Top-up paths, agency transfers, credit lines, financial records and the 4xx of bad input, over HTTP."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from adstack.accounts.models import Role
from adstack.finance.charges import apply_charge
from adstack.finance.models import ChargeStatus
from adstack.oplog.models import ChangeEvent
from tests.finance.conftest import ad_group, balance, top_up
from tests.support import Actor, Api, expect

USD = 1_000_000
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
FINANCE = "/api/v1/finance"


def _records(api: Api, actor: Actor, **params: object) -> dict:
    return expect(api.client.get(f"{FINANCE}/transfers", headers=actor.headers, params=params), 200)


def _file_request(
    api: Api, actor: Actor, account_id: int, amount: object, content: bytes = PNG, filename: str = "receipt.png"
) -> object:
    return api.client.post(
        f"{FINANCE}/top-up-requests",
        headers=actor.headers,
        data={"account_id": str(account_id), "amount_micros": str(amount), "remarks": "wire 7781"},
        files={"file": (filename, io.BytesIO(content), "image/png")},
    )


def _operations(session: Session, object_type: str) -> list[str]:
    session.expire_all()
    return [
        e.operation
        for e in session.query(ChangeEvent).filter(ChangeEvent.object_type == object_type).order_by(ChangeEvent.id)
    ]


def test_account_manager_tops_up_an_advertiser_once_per_idempotency_key(api: Api, session: Session) -> None:
    manager = api.admin(Role.ACCOUNT_MANAGER)
    advertiser = api.approved_account()
    body = {
        "account_id": advertiser.account_id,
        "amount_micros": 250 * USD,
        "remarks": "contract 2025-001",
        "idempotency_key": "tu-2025-001",
    }
    first = expect(api.client.post(f"{FINANCE}/top-ups", headers=manager.headers, json=body), 201)
    again = expect(api.client.post(f"{FINANCE}/top-ups", headers=manager.headers, json=body), 201)
    assert first["id"] == again["id"]
    out = balance(api, advertiser, advertiser.account_id)
    assert (out["balance_micros"], out["available_micros"], out["low_balance"]) == (250 * USD, 250 * USD, False)
    reused = api.client.post(f"{FINANCE}/top-ups", headers=manager.headers, json={**body, "amount_micros": USD})
    assert expect(reused, 409)["error"]["code"] == "idempotency_key_reused"

    records = _records(api, advertiser)
    assert records["total"] == 1
    record = records["items"][0]
    assert (record["type"], record["direction"], record["amount_micros"], record["operator"], record["remarks"]) == (
        "top_up",
        "in",
        250 * USD,
        manager.email,
        "contract 2025-001",
    )
    assert _operations(session, "account_balance") == ["top_up"]
    # Only account managers top up directly.
    assert expect(api.client.post(f"{FINANCE}/top-ups", headers=advertiser.headers, json=body), 403)


def test_low_balance_threshold_raises_a_notice(api: Api) -> None:
    admin = api.admin()
    advertiser = api.approved_account()
    top_up(api, admin, advertiser.account_id, 40 * USD)
    assert balance(api, advertiser, advertiser.account_id)["notice"] is None
    expect(
        api.client.patch(
            f"/api/v1/accounts/{advertiser.account_id}",
            headers=advertiser.headers,
            json={"low_balance_threshold_micros": 50 * USD},
        ),
        200,
    )
    out = balance(api, advertiser, advertiser.account_id)
    assert out["low_balance"] is True and "below the low-balance threshold 50.00 USD" in out["notice"]
    top_up(api, admin, advertiser.account_id, 10 * USD)
    assert balance(api, advertiser, advertiser.account_id)["low_balance"] is False


def test_prepay_request_with_proof_is_confirmed_once_or_rejected(api: Api, session: Session) -> None:
    admin = api.admin()
    agency = api.approved_account(type="agency")
    sub = api.sub_account(agency, admin)
    filed = expect(_file_request(api, agency, sub, 120 * USD), 201)
    assert (filed["status"], filed["proof_content_type"], filed["proof_size_bytes"]) == (
        "pending",
        "image/png",
        len(PNG),
    )
    assert balance(api, agency, sub)["balance_micros"] == 0
    proof = api.client.get(f"{FINANCE}/top-up-requests/{filed['id']}/proof", headers=admin.headers)
    assert proof.status_code == 200 and proof.content == PNG
    pending = expect(
        api.client.get(f"{FINANCE}/top-up-requests", headers=admin.headers, params={"status": "pending"}), 200
    )
    assert [r["id"] for r in pending] == [filed["id"]]

    # The agency cannot confirm its own request.
    expect(api.client.post(f"{FINANCE}/top-up-requests/{filed['id']}/confirm", headers=agency.headers), 403)
    confirmed = expect(api.client.post(f"{FINANCE}/top-up-requests/{filed['id']}/confirm", headers=admin.headers), 200)
    assert confirmed["status"] == "confirmed" and confirmed["ledger_entry_id"] is not None
    again = api.client.post(f"{FINANCE}/top-up-requests/{filed['id']}/confirm", headers=admin.headers)
    assert expect(again, 409)["error"]["code"] == "already_decided"
    assert balance(api, agency, sub)["balance_micros"] == 120 * USD
    record = _records(api, agency, account_id=sub)["items"][0]
    assert (record["type"], record["agency_account_id"], record["operator"]) == (
        "top_up",
        agency.account_id,
        admin.email,
    )

    second = expect(_file_request(api, agency, agency.account_id, 80 * USD), 201)
    no_reason = api.client.post(
        f"{FINANCE}/top-up-requests/{second['id']}/reject", headers=admin.headers, json={"reason": ""}
    )
    assert expect(no_reason, 422)["error"]["fields"][0]["field"] == "reason"
    rejected = expect(
        api.client.post(
            f"{FINANCE}/top-up-requests/{second['id']}/reject",
            headers=admin.headers,
            json={"reason": "the transfer has not arrived"},
        ),
        200,
    )
    assert rejected["status"] == "rejected"
    assert balance(api, agency, agency.account_id)["balance_micros"] == 0
    assert _operations(session, "top_up_request") == ["create", "approve", "create", "reject"]


def test_prepay_request_input_is_checked(api: Api) -> None:
    admin = api.admin()
    agency = api.approved_account(type="agency")
    other_agency = api.approved_account(type="agency", admin=admin)
    others_sub = api.sub_account(other_agency, admin)
    negative = expect(_file_request(api, agency, agency.account_id, -5), 422)["error"]["fields"][0]
    assert (negative["field"], negative["rule"]) == ("amount_micros", "greater_than_equal")
    not_a_proof = expect(
        _file_request(api, agency, agency.account_id, USD, b"MZ\x90\x00 not a receipt", "receipt.exe"), 422
    )["error"]["fields"][0]
    assert (not_a_proof["field"], not_a_proof["rule"]) == ("file", "file_type")
    # Another agency's account answers like a missing one.
    expect(_file_request(api, agency, others_sub, USD), 404)
    expect(_file_request(api, agency, other_agency.account_id, USD), 404)
    too_big = _file_request(api, agency, agency.account_id, USD, PNG + b"\x00" * (10 * 1024 * 1024))
    assert expect(too_big, 413)["error"]["fields"][0]["rule"] == "max_size_bytes"


def test_agency_transfers_to_and_reclaims_from_a_sub_account_never_below_zero(api: Api, session: Session) -> None:
    admin = api.admin()
    agency = api.approved_account(type="agency")
    sub = api.sub_account(agency, admin)
    top_up(api, admin, agency.account_id, 100 * USD)

    moved = expect(
        api.client.post(
            f"{FINANCE}/transfers",
            headers=agency.headers,
            json={"kind": "transfer", "sub_account_id": sub, "amount_micros": 30 * USD, "remarks": "March budget"},
        ),
        201,
    )
    assert (moved["paid"]["entry_type"], moved["received"]["entry_type"]) == ("transfer_out", "transfer_in")
    expect(
        api.client.post(
            f"{FINANCE}/transfers",
            headers=agency.headers,
            json={"kind": "reclaim", "sub_account_id": sub, "amount_micros": 10 * USD},
        ),
        201,
    )
    assert balance(api, agency, agency.account_id)["balance_micros"] == 80 * USD
    assert balance(api, agency, sub)["balance_micros"] == 20 * USD

    too_much = expect(
        api.client.post(
            f"{FINANCE}/transfers",
            headers=agency.headers,
            json={"kind": "transfer", "sub_account_id": sub, "amount_micros": 81 * USD},
        ),
        422,
    )["error"]
    assert too_much["code"] == "insufficient_balance"
    assert too_much["fields"][0] == {
        "field": "amount_micros",
        "rule": "within_available_balance",
        "message": too_much["message"],
        "limit": 80 * USD,
        "actual": 81 * USD,
    }
    over_reclaim = expect(
        api.client.post(
            f"{FINANCE}/transfers",
            headers=agency.headers,
            json={"kind": "reclaim", "sub_account_id": sub, "amount_micros": 21 * USD},
        ),
        422,
    )["error"]
    assert over_reclaim["fields"][0]["limit"] == 20 * USD
    negative = expect(
        api.client.post(
            f"{FINANCE}/transfers",
            headers=agency.headers,
            json={"kind": "transfer", "sub_account_id": sub, "amount_micros": -1},
        ),
        422,
    )["error"]["fields"][0]
    assert negative["field"] == "amount_micros"
    assert balance(api, agency, agency.account_id)["balance_micros"] == 80 * USD  # nothing moved

    incoming = _records(api, agency, direction="in")
    assert {(r["account_id"], r["type"]) for r in incoming["items"]} == {
        (agency.account_id, "top_up"),
        (sub, "transfer_in"),
        (agency.account_id, "reclaim"),
    }
    sub_in = _records(api, agency, account_id=sub, type="transfer_in")["items"]
    assert [(r["amount_micros"], r["agency_account_id"], r["remarks"]) for r in sub_in] == [
        (30 * USD, agency.account_id, "March budget")
    ]
    outgoing = _records(api, agency, direction="out")["items"]
    assert sorted((r["account_id"], r["type"], r["amount_micros"]) for r in outgoing) == sorted(
        [(agency.account_id, "transfer_out", 30 * USD), (sub, "reclaim", 10 * USD)]
    )
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert _records(api, agency, since=future)["total"] == 0
    assert _records(api, agency, until=future)["total"] == 5

    exported = api.client.get(f"{FINANCE}/transfers/export.csv", headers=agency.headers, params={"direction": "out"})
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert sorted((int(r["transfer_account_id"]), r["type"], r["amount"]) for r in rows) == sorted(
        [(agency.account_id, "transfer_out", "30.000000"), (sub, "reclaim", "10.000000")]
    )
    assert _operations(session, "account_balance") == ["top_up", "transfer", "transfer"]


def test_a_transfer_idempotency_key_names_one_receiving_account(api: Api) -> None:
    """Retried for another sub-account, the key answered the first transfer as success: the second account
    got nothing and the agency was told it had."""
    admin = api.admin()
    agency = api.approved_account(admin, type="agency")
    first_sub, second_sub = api.sub_account(agency, admin), api.sub_account(agency, admin)
    top_up(api, admin, agency.account_id, 10 * USD)

    def move(sub_account_id: int) -> object:
        return api.client.post(f"{FINANCE}/transfers", headers=agency.headers, json={
            "kind": "transfer", "sub_account_id": sub_account_id, "amount_micros": 3 * USD, "idempotency_key": "march"})

    first = expect(move(first_sub), 201)
    assert expect(move(first_sub), 201)["received"]["id"] == first["received"]["id"]  # a true retry
    reused = expect(move(second_sub), 409)["error"]
    assert reused["code"] == "idempotency_key_reused"
    assert [(f["field"], f["rule"]) for f in reused["fields"]] == [("idempotency_key", "unique")]
    assert balance(api, agency, first_sub)["balance_micros"] == 3 * USD
    assert balance(api, agency, second_sub)["balance_micros"] == 0


def test_transfer_rules_tenancy_and_currency(api: Api) -> None:
    admin = api.admin()
    agency = api.approved_account(type="agency")
    sub = api.sub_account(agency, admin)
    cny_sub = api.sub_account(agency, admin, country="CN", currency="CNY", time_zone="Asia/Shanghai")
    other_agency = api.approved_account(type="agency", admin=admin)
    others_sub = api.sub_account(other_agency, admin)
    advertiser = api.approved_account(admin=admin)
    top_up(api, admin, agency.account_id, 50 * USD)

    def move(actor: Actor, sub_account_id: int, **extra: object) -> object:
        return api.client.post(
            f"{FINANCE}/transfers",
            headers=actor.headers,
            json={"kind": "transfer", "sub_account_id": sub_account_id, "amount_micros": USD, **extra},
        )

    cross = expect(move(agency, cny_sub), 422)["error"]["fields"][0]
    assert (cross["field"], cross["rule"], cross["limit"], cross["actual"]) == (
        "sub_account_id",
        "same_currency",
        "USD",
        "CNY",
    )
    assert expect(move(agency, sub, currency="CNY"), 422)["error"]["fields"][0]["rule"] == "same_currency"
    expect(move(agency, others_sub), 404)
    expect(move(agency, other_agency.account_id), 404)
    assert expect(move(agency, agency.account_id), 422)["error"]["fields"][0]["rule"] == "sub_account"
    expect(move(advertiser, sub), 403)
    top_up_other = api.client.post(
        f"{FINANCE}/top-ups", headers=agency.headers, json={"account_id": others_sub, "amount_micros": USD}
    )
    assert top_up_other.status_code == 403
    top_up_cny = api.client.post(
        f"{FINANCE}/top-ups",
        headers=admin.headers,
        json={"account_id": cny_sub, "amount_micros": USD, "currency": "USD"},
    )
    assert expect(top_up_cny, 422)["error"]["fields"][0]["rule"] == "same_currency"
    # An account manager may move money for an agency.
    expect(move(admin, sub), 201)

    # Tenancy: another tenant sees nothing of these accounts.
    expect(api.client.get(f"{FINANCE}/accounts/{sub}/balance", headers=other_agency.headers), 404)
    expect(api.client.get(f"{FINANCE}/accounts/{agency.account_id}/ledger", headers=advertiser.headers), 404)
    assert _records(api, other_agency)["total"] == 0
    assert _records(api, advertiser)["total"] == 0
    expect(
        api.client.get(f"{FINANCE}/transfers", headers=advertiser.headers, params={"account_id": agency.account_id}),
        404,
    )
    assert _records(api, admin)["total"] == 3


def _local_today(tz: str) -> date:
    return datetime.now(UTC).astimezone(ZoneInfo(tz)).date()


def test_postpay_credit_line_settlement_statement_and_renewal(api: Api, session: Session) -> None:
    admin = api.admin()
    advertiser = api.approved_account()
    group = ad_group(api, advertiser)
    today = _local_today("Asia/Singapore")
    grant = {
        "account_id": advertiser.account_id,
        "limit_micros": 50 * USD,
        "starts_on": (today - timedelta(days=30)).isoformat(),
        "ends_on": (today - timedelta(days=1)).isoformat(),
    }
    line = expect(api.client.post(f"{FINANCE}/credit-lines", headers=admin.headers, json=grant), 201)
    assert line["state"] == "ended"
    overlap = api.client.post(f"{FINANCE}/credit-lines", headers=admin.headers, json=grant)
    assert expect(overlap, 409)["error"]["code"] == "overlapping_credit_line"
    backwards = {**grant, "starts_on": grant["ends_on"], "ends_on": grant["starts_on"]}
    assert (
        expect(api.client.post(f"{FINANCE}/credit-lines", headers=admin.headers, json=backwards), 422)["error"][
            "fields"
        ][0]["field"]
        == "ends_on"
    )

    # Spend during the contract period, up to the line: the charges occurred inside it.
    during = datetime.fromisoformat(line["starts_at"]) + timedelta(days=3)
    charged = [
        apply_charge(
            session,
            charge_id=f"conv-{n}",
            account_id=advertiser.account_id,
            campaign_id=group["campaign_id"],
            ad_group_id=group["id"],
            creative_id=1,
            amount_micros=amount,
            kind="cpa",
            occurred_at=during + timedelta(hours=n),
        )
        for n, amount in enumerate([20 * USD, 25 * USD, 9 * USD])
    ]
    session.commit()
    assert [c.charged_micros for c in charged] == [20 * USD, 25 * USD, 5 * USD]  # the last one hits the line
    assert charged[2].status is ChargeStatus.TRUNCATED

    # The period is over: the account stops spending until the line is renewed.
    out = balance(api, advertiser, advertiser.account_id)
    assert (out["payment_mode"], out["balance_micros"], out["available_micros"], out["spending_suspended"]) == (
        "postpay",
        -50 * USD,
        0,
        True,
    )
    assert "renewed" in out["notice"]
    late = apply_charge(
        session,
        charge_id="after-period",
        account_id=advertiser.account_id,
        campaign_id=group["campaign_id"],
        ad_group_id=group["id"],
        creative_id=1,
        amount_micros=USD,
        kind="cpc",
        occurred_at=datetime.now(UTC),
    )
    session.commit()
    assert late.status is ChargeStatus.REFUSED

    statement = api.client.get(f"{FINANCE}/credit-lines/{line['id']}/statement.csv", headers=advertiser.headers)
    assert statement.status_code == 200
    rows = list(csv.DictReader(io.StringIO(statement.text)))
    assert [(r["account_id"], r["campaign_id"], r["actual_cost"]) for r in rows[:1]] == [
        (str(advertiser.account_id), str(group["campaign_id"]), "50.000000")
    ]
    summary = {r["company_name"]: r["actual_cost"] for r in rows[1:]}
    assert summary == {"total actual cost": "50.000000", "credit limit": "50.000000", "amount due": "50.000000"}

    settled = expect(api.client.post(f"{FINANCE}/credit-lines/{line['id']}/settle", headers=admin.headers), 200)
    assert (settled["state"], settled["settled_amount_micros"]) == ("settled", 50 * USD)
    expect(api.client.post(f"{FINANCE}/credit-lines/{line['id']}/settle", headers=admin.headers), 409)
    assert balance(api, advertiser, advertiser.account_id)["balance_micros"] == 0
    credit = _records(api, advertiser, type="credit")["items"]
    assert [(c["direction"], c["amount_micros"]) for c in credit] == [("in", 50 * USD)]
    settlements = _records(api, advertiser, type="charge_settlement")["items"]
    assert sum(s["amount_micros"] for s in settlements) == 50 * USD and {s["direction"] for s in settlements} == {"out"}

    renewed = expect(
        api.client.post(
            f"{FINANCE}/credit-lines/{line['id']}/renew",
            headers=admin.headers,
            json={"ends_on": (today + timedelta(days=30)).isoformat()},
        ),
        201,
    )
    assert (renewed["starts_on"], renewed["state"], renewed["limit_micros"]) == (today.isoformat(), "active", 50 * USD)
    out = balance(api, advertiser, advertiser.account_id)
    assert (out["available_micros"], out["spending_suspended"], out["credit_limit_micros"]) == (
        50 * USD,
        False,
        50 * USD,
    )
    assert _operations(session, "credit_line") == ["create", "update", "create"]
    expect(api.client.post(f"{FINANCE}/credit-lines", headers=advertiser.headers, json=grant), 403)


def test_refund_returns_a_charge_once(api: Api, session: Session) -> None:
    admin = api.admin()
    advertiser = api.approved_account()
    group = ad_group(api, advertiser)
    top_up(api, admin, advertiser.account_id, 10 * USD)
    apply_charge(
        session,
        charge_id="click-42",
        account_id=advertiser.account_id,
        campaign_id=group["campaign_id"],
        ad_group_id=group["id"],
        creative_id=1,
        amount_micros=3 * USD,
        kind="cpc",
        occurred_at=datetime.now(UTC),
    )
    session.commit()
    # The ledger names each charge by the id a refund takes; other entries have none.
    listed = expect(api.client.get(f"{FINANCE}/accounts/{advertiser.account_id}/ledger", headers=admin.headers), 200)
    assert [(e["entry_type"], e["charge_id"]) for e in listed] == [("charge", "click-42"), ("top_up", None)]
    assert "idempotency_key" not in listed[0]
    body = {"charge_id": listed[0]["charge_id"], "remarks": "invalid traffic"}
    refund = expect(api.client.post(f"{FINANCE}/refunds", headers=admin.headers, json=body), 201)
    assert (refund["entry_type"], refund["amount_micros"]) == ("refund", 3 * USD)
    assert expect(api.client.post(f"{FINANCE}/refunds", headers=admin.headers, json=body), 409)
    expect(api.client.post(f"{FINANCE}/refunds", headers=admin.headers, json={"charge_id": "nope"}), 404)
    assert balance(api, advertiser, advertiser.account_id)["balance_micros"] == 10 * USD
    ledger = expect(
        api.client.get(f"{FINANCE}/accounts/{advertiser.account_id}/ledger", headers=advertiser.headers), 200
    )
    assert [e["entry_type"] for e in ledger] == ["refund", "charge", "top_up"]
    # A refund reverses the charge: its spend leaves the budgets, and its cost the reports.
    spend = expect(api.client.get(f"{FINANCE}/ad-groups/{group['id']}/spend", headers=advertiser.headers), 200)
    assert spend["spent_total_micros"] == 0 and spend["remaining_micros"] is None
    # The financial records show the charge and the refund once each, and add up to the balance.
    records = expect(api.client.get(f"{FINANCE}/transfers", headers=advertiser.headers), 200)
    rows = records["items"] if isinstance(records, dict) else records
    moves = sorted((r["type"], r["direction"], r["amount_micros"]) for r in rows)
    assert moves == [("charge_settlement", "out", 3 * USD), ("refund", "in", 3 * USD), ("top_up", "in", 10 * USD)]
    assert sum(r["amount_micros"] * (1 if r["direction"] == "in" else -1) for r in rows) == 10 * USD


def test_an_ad_group_that_has_spent_keeps_its_time_zone(api: Api, session: Session) -> None:
    """Its daily budget counts spend by its local day: moving to a zone where the day is still young would give
    a second day's budget within the hour."""
    admin = api.admin()
    advertiser = api.approved_account()
    group = ad_group(api, advertiser)
    path = f"/api/v1/ad-groups/{group['id']}"
    expect(api.client.patch(path, headers=advertiser.headers, json={"time_zone": "Asia/Jakarta"}), 200)
    top_up(api, admin, advertiser.account_id, 10 * USD)
    apply_charge(session, charge_id="click-7", account_id=advertiser.account_id, campaign_id=group["campaign_id"],
                 ad_group_id=group["id"], creative_id=1, amount_micros=USD, kind="cpc", occurred_at=datetime.now(UTC))
    session.commit()
    refused = expect(api.client.patch(path, headers=advertiser.headers, json={"time_zone": "Etc/GMT+12"}), 422)
    assert [(f["field"], f["rule"]) for f in refused["error"]["fields"]] == [("time_zone", "fixed_once_spent")]
    expect(api.client.patch(path, headers=advertiser.headers, json={"time_zone": "Asia/Jakarta", "name": "Same"}),
           200)


def test_an_agency_statement_owes_what_left_its_wallet_not_its_sub_accounts_prepaid_spending(
    api: Api, session: Session
) -> None:
    """The agency's credit funds what it transfers; a sub-account paid in directly, in any currency, spends its
    own money, which no credit line owes."""
    admin = api.admin()
    agency = api.approved_account(type="agency")
    funded = api.sub_account(agency, admin)
    prepaid = api.sub_account(agency, admin, country="CN", currency="CNY")
    today = _local_today("Asia/Singapore")
    grant = {"account_id": agency.account_id, "limit_micros": 50 * USD,
             "starts_on": (today - timedelta(days=1)).isoformat(), "ends_on": (today + timedelta(days=30)).isoformat()}
    line = expect(api.client.post(f"{FINANCE}/credit-lines", headers=admin.headers, json=grant), 201)
    transfer = {"kind": "transfer", "sub_account_id": funded, "amount_micros": 30 * USD}
    expect(api.client.post(f"{FINANCE}/transfers", headers=agency.headers, json=transfer), 201)
    top_up(api, admin, prepaid, 100 * USD)
    for charge_id, account_id, amount in (("sub-a", funded, 20 * USD), ("sub-b", prepaid, 70 * USD)):
        charged = apply_charge(session, charge_id=charge_id, account_id=account_id, campaign_id=1, ad_group_id=1,
                               creative_id=1, amount_micros=amount, kind="cpc", occurred_at=datetime.now(UTC))
        assert charged.charged_micros == amount
    session.commit()
    reclaim = {"kind": "reclaim", "sub_account_id": funded, "amount_micros": 5 * USD}
    expect(api.client.post(f"{FINANCE}/transfers", headers=agency.headers, json=reclaim), 201)

    statement = api.client.get(f"{FINANCE}/credit-lines/{line['id']}/statement.csv", headers=agency.headers)
    rows = list(csv.DictReader(io.StringIO(statement.text)))
    items = [(r["account_id"], r["charges"], r["refunds"], r["actual_cost"], r["item"]) for r in rows if r["item"]]
    assert items == [(str(funded), "30.000000", "5.000000", "25.000000", "transfers less reclaims")]
    summary = {r["company_name"]: (r["actual_cost"], r["currency"]) for r in rows if not r["item"]}
    assert summary["amount due so far (interim)"] == ("25.000000", "USD")
    assert balance(api, agency, agency.account_id)["balance_micros"] == -25 * USD


def test_a_statements_negative_amounts_stay_numbers(api: Api) -> None:
    """The formula guard quoted a negative amount passed as text ('-3.000000): a spreadsheet read it as text."""
    admin = api.admin()
    agency = api.approved_account(admin, type="agency")
    sub = api.sub_account(agency, admin)
    today = _local_today("Asia/Singapore")
    line = expect(api.client.post(f"{FINANCE}/credit-lines", headers=admin.headers, json={
        "account_id": agency.account_id, "limit_micros": 100 * USD, "starts_on": today.isoformat(),
        "ends_on": (today + timedelta(days=30)).isoformat()}), 201)
    expect(api.client.post(f"{FINANCE}/transfers", headers=agency.headers, json={
        "kind": "transfer", "sub_account_id": sub, "amount_micros": 5 * USD}), 201)
    top_up(api, admin, sub, 3 * USD)
    expect(api.client.post(f"{FINANCE}/transfers", headers=agency.headers, json={
        "kind": "reclaim", "sub_account_id": sub, "amount_micros": 8 * USD}), 201)
    statement = api.client.get(f"{FINANCE}/credit-lines/{line['id']}/statement.csv", headers=agency.headers)
    rows = list(csv.DictReader(io.StringIO(statement.text)))
    assert [(r["charges"], r["refunds"], r["actual_cost"]) for r in rows if r["item"]] == [
        ("5.000000", "8.000000", "-3.000000")]
    assert {r["company_name"]: r["actual_cost"] for r in rows if not r["item"]}["total actual cost"] == "-3.000000"
    assert "'" not in statement.text


def test_the_agency_column_of_a_transfer_names_the_agency_on_both_sides(api: Api) -> None:
    """Source: Mi Ads usage guide, 5 Financial Management: "transfer account ID, transfer agency account". The
    agency's own transfer_out and reclaim rows named the sub-account as the agency."""
    admin = api.admin()
    agency = api.approved_account(admin, type="agency")
    sub = api.sub_account(agency, admin)
    top_up(api, admin, agency.account_id, 10 * USD)
    for kind, amount in (("transfer", 3 * USD), ("reclaim", USD)):
        expect(api.client.post(f"{FINANCE}/transfers", headers=agency.headers, json={
            "kind": kind, "sub_account_id": sub, "amount_micros": amount}), 201)
    moves = _records(api, agency, type="transfer_out")["items"] + _records(api, agency, type="transfer_in")["items"]
    moves += _records(api, agency, type="reclaim")["items"]
    rows = sorted((r["account_id"], r["type"], r["direction"], r["agency_account_id"], r["counterparty_account_id"])
                  for r in moves)
    assert rows == sorted([
        (agency.account_id, "transfer_out", "out", agency.account_id, sub),
        (sub, "transfer_in", "in", agency.account_id, agency.account_id),
        (sub, "reclaim", "out", agency.account_id, agency.account_id),
        (agency.account_id, "reclaim", "in", agency.account_id, sub),
    ])
    exported = api.client.get(f"{FINANCE}/transfers/export.csv", headers=agency.headers,
                              params={"account_id": agency.account_id, "type": "transfer_out"})
    [row] = list(csv.DictReader(io.StringIO(exported.text)))
    assert (row["transfer_agency_account"], row["counterparty_account_id"]) == (str(agency.account_id), str(sub))


def test_records_of_a_month_hold_that_months_local_days(api: Api, session: Session) -> None:
    """A day's charge row is the account's local day: a month asked for in UTC holds the days that start in it,
    not the day whose last charge fell after midnight UTC (UTC-11: 30 November ends at 11:00 UTC on 1 December)."""
    admin = api.admin()
    advertiser = api.approved_account(admin, country="US", time_zone="Pacific/Pago_Pago")
    group = ad_group(api, advertiser)
    top_up(api, admin, advertiser.account_id, 10 * USD)
    for charge_id, at in (("oct-31-late", datetime(2025, 11, 1, 10, tzinfo=UTC)),  # 31 Oct, 23:00 local
                          ("nov-30-late", datetime(2025, 12, 1, 7, tzinfo=UTC))):  # 30 Nov, 20:00 local
        apply_charge(session, charge_id=charge_id, account_id=advertiser.account_id,
                     campaign_id=group["campaign_id"], ad_group_id=group["id"], creative_id=1,
                     amount_micros=USD, kind="cpc", occurred_at=at)
    session.commit()
    november = _records(api, advertiser, type="charge_settlement", since="2025-11-01T00:00:00Z",
                        until="2025-12-01T00:00:00Z")["items"]
    assert [r["remarks"].split(" (")[0] for r in november] == ["charges of 2025-11-30"]


def test_a_search_bound_outside_the_ledgers_years_is_refused_with_its_range(api: Api) -> None:
    """The first or last instant a datetime can hold has no local day around it: refused, never a 500."""
    admin = api.admin()
    advertiser = api.approved_account(admin, country="US", time_zone="Pacific/Kiritimati")  # UTC+14
    for actor in (advertiser, admin):
        for path in (f"{FINANCE}/transfers", f"{FINANCE}/transfers/export.csv"):
            for name, value in (("since", "0001-01-01T00:00:00Z"), ("until", "0001-01-01T00:00:00Z"),
                                ("since", "9999-12-31T23:59:59Z"), ("until", "9999-12-31T23:59:59Z"),
                                ("since", "0001-01-01T00:00:00+14:00")):
                response = api.client.get(path, headers=actor.headers, params={name: value})
                [field] = expect(response, 422)["error"]["fields"]
                assert (field["field"], field["rule"]) == (name, "datetime_range")
                assert field["limit"] == ["2000-01-01T00:00:00+00:00", "2200-01-01T00:00:00+00:00"]
    assert _records(api, advertiser, since="2000-01-01T00:00:00Z", until="2199-12-31T23:59:59Z")["total"] >= 0
