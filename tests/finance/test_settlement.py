"""Postpay settlement: each contract period settles its own actual cost, not the balance at settlement time."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from adstack.finance.charges import apply_charge
from tests.finance.conftest import ad_group, balance
from tests.support import Api, expect

USD = 1_000_000
FINANCE = "/api/v1/finance"


def _local_today(tz: str) -> date:
    return datetime.now(UTC).astimezone(ZoneInfo(tz)).date()


def test_each_period_settles_its_own_cost_when_a_renewal_has_spent(api: Api, session: Session) -> None:
    admin = api.admin()
    advertiser = api.approved_account()
    group = ad_group(api, advertiser)
    today = _local_today("Asia/Singapore")
    grant = {
        "account_id": advertiser.account_id,
        "limit_micros": 50 * USD,
        "starts_on": (today - timedelta(days=30)).isoformat(),
        "ends_on": (today - timedelta(days=21)).isoformat(),
    }
    first = expect(api.client.post(f"{FINANCE}/credit-lines", headers=admin.headers, json=grant), 201)
    second = expect(
        api.client.post(
            f"{FINANCE}/credit-lines/{first['id']}/renew",
            headers=admin.headers,
            json={"ends_on": (today - timedelta(days=11)).isoformat()},
        ),
        201,
    )
    third = expect(
        api.client.post(
            f"{FINANCE}/credit-lines/{second['id']}/renew",
            headers=admin.headers,
            json={"ends_on": (today + timedelta(days=10)).isoformat()},
        ),
        201,
    )
    assert (first["state"], second["state"], third["state"]) == ("ended", "ended", "active")

    def charge(n: int, amount: int, at: datetime) -> None:
        apply_charge(
            session,
            charge_id=f"click-{n}",
            account_id=advertiser.account_id,
            campaign_id=group["campaign_id"],
            ad_group_id=group["id"],
            creative_id=1,
            amount_micros=amount,
            kind="cpc",
            occurred_at=at,
        )

    # The first period spends nothing; its renewal spends 0.20 and then 4.00; the current one 1.00.
    in_second = datetime.fromisoformat(second["starts_at"]) + timedelta(days=2)
    charge(1, 200_000, in_second)
    charge(2, 4 * USD, in_second + timedelta(hours=5))
    charge(3, USD, datetime.now(UTC) - timedelta(minutes=1))
    session.commit()
    assert balance(api, advertiser, advertiser.account_id)["balance_micros"] == -5_200_000

    def statement_due(line_id: int) -> int:
        response = api.client.get(f"{FINANCE}/credit-lines/{line_id}/statement.csv", headers=admin.headers)
        assert response.status_code == 200, response.text
        rows = list(csv.DictReader(io.StringIO(response.text)))
        due = next(r for r in rows if r["company_name"].startswith("amount due"))
        return int(Decimal(due["actual_cost"]) * USD)

    assert [statement_due(line["id"]) for line in (first, second, third)] == [0, 4_200_000, USD]

    # The empty period settles for nothing, though the balance is 5.20 below zero.
    settled = expect(api.client.post(f"{FINANCE}/credit-lines/{first['id']}/settle", headers=admin.headers), 200)
    assert (settled["state"], settled["settled_amount_micros"]) == ("settled", 0)
    assert balance(api, advertiser, advertiser.account_id)["balance_micros"] == -5_200_000
    # The renewal settles exactly its own 4.20; the current period's 1.00 stays owed.
    settled = expect(api.client.post(f"{FINANCE}/credit-lines/{second['id']}/settle", headers=admin.headers), 200)
    assert (settled["state"], settled["settled_amount_micros"]) == ("settled", 4_200_000)
    assert balance(api, advertiser, advertiser.account_id)["balance_micros"] == -USD
    expect(api.client.post(f"{FINANCE}/credit-lines/{third['id']}/settle", headers=admin.headers), 409)
    assert [statement_due(line["id"]) for line in (first, second, third)] == [0, 0, USD]


def test_prepaid_money_is_not_taken_by_a_settlement(api: Api, session: Session) -> None:
    admin = api.admin()
    advertiser = api.approved_account()
    group = ad_group(api, advertiser)
    today = _local_today("Asia/Singapore")
    expect(
        api.client.post(
            f"{FINANCE}/top-ups",
            headers=admin.headers,
            json={"account_id": advertiser.account_id, "amount_micros": 10 * USD},
        ),
        201,
    )
    grant = {
        "account_id": advertiser.account_id,
        "limit_micros": 50 * USD,
        "starts_on": (today - timedelta(days=20)).isoformat(),
        "ends_on": (today - timedelta(days=1)).isoformat(),
    }
    line = expect(api.client.post(f"{FINANCE}/credit-lines", headers=admin.headers, json=grant), 201)
    apply_charge(
        session,
        charge_id="click-1",
        account_id=advertiser.account_id,
        campaign_id=group["campaign_id"],
        ad_group_id=group["id"],
        creative_id=1,
        amount_micros=3 * USD,
        kind="cpc",
        occurred_at=datetime.fromisoformat(line["starts_at"]) + timedelta(days=1),
    )
    session.commit()
    settled = expect(api.client.post(f"{FINANCE}/credit-lines/{line['id']}/settle", headers=admin.headers), 200)
    # The period cost 3.00: that is what is paid, and the 10.00 paid in advance is still there afterwards.
    assert settled["settled_amount_micros"] == 3 * USD
    assert balance(api, advertiser, advertiser.account_id)["balance_micros"] == 10 * USD


def test_a_charge_billed_after_its_period_was_settled_is_owed_by_the_renewal(api: Api, session: Session) -> None:
    """Billing may catch up after a period has been settled: the settled statement stays as it was paid, and
    the late charge is owed by the next period's statement, so nothing is left owed by none."""
    admin = api.admin()
    advertiser = api.approved_account()
    group = ad_group(api, advertiser)
    today = _local_today("Asia/Singapore")
    grant = {"account_id": advertiser.account_id, "limit_micros": 50 * USD,
             "starts_on": (today - timedelta(days=20)).isoformat(), "ends_on": (today - timedelta(days=10)).isoformat()}
    first = expect(api.client.post(f"{FINANCE}/credit-lines", headers=admin.headers, json=grant), 201)
    second = expect(api.client.post(f"{FINANCE}/credit-lines/{first['id']}/renew", headers=admin.headers,
                                    json={"ends_on": (today + timedelta(days=10)).isoformat()}), 201)
    in_first = datetime.fromisoformat(first["starts_at"]) + timedelta(days=2)

    def charge(n: int, amount: int) -> None:
        apply_charge(session, charge_id=f"click-{n}", account_id=advertiser.account_id,
                     campaign_id=group["campaign_id"], ad_group_id=group["id"], creative_id=1, amount_micros=amount,
                     kind="cpc", occurred_at=in_first)
        session.commit()

    def due(line_id: int) -> tuple[int, int]:
        response = api.client.get(f"{FINANCE}/credit-lines/{line_id}/statement.csv", headers=admin.headers)
        rows = list(csv.DictReader(io.StringIO(response.text)))
        total = next(r for r in rows if r["company_name"] == "total actual cost")
        owed = next(r for r in rows if r["company_name"].startswith("amount due"))
        return int(Decimal(total["actual_cost"]) * USD), int(Decimal(owed["actual_cost"]) * USD)

    charge(1, 10 * USD)
    settled = expect(api.client.post(f"{FINANCE}/credit-lines/{first['id']}/settle", headers=admin.headers), 200)
    assert settled["settled_amount_micros"] == 10 * USD
    charge(2, 7 * USD)  # occurred in the first period, billed after its settlement
    assert balance(api, advertiser, advertiser.account_id)["balance_micros"] == -7 * USD
    assert due(first["id"]) == (10 * USD, 0)  # as it was settled
    assert due(second["id"]) == (7 * USD, 7 * USD)
