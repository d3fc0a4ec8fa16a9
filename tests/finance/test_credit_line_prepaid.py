"""A credit line whose period has ended never lowers what a prepaid balance can spend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from adstack.finance.charges import apply_charge
from adstack.finance.models import ChargeStatus
from tests.finance.conftest import ad_group, balance, top_up
from tests.finance.test_api import FINANCE, USD, _local_today
from tests.support import Api, expect


def test_a_back_dated_credit_line_leaves_a_prepaid_balance_spendable(api: Api, session: Session) -> None:
    admin = api.admin()
    advertiser = api.approved_account()
    group = ad_group(api, advertiser)
    top_up(api, admin, advertiser.account_id, 1_499 * USD)
    today = _local_today("Asia/Singapore")
    grant = {
        "account_id": advertiser.account_id,
        "limit_micros": 500 * USD,
        "starts_on": (today - timedelta(days=60)).isoformat(),
        "ends_on": (today - timedelta(days=31)).isoformat(),
    }
    assert (
        expect(api.client.post(f"{FINANCE}/credit-lines", headers=admin.headers, json=grant), 201)["state"] == "ended"
    )

    out = balance(api, advertiser, advertiser.account_id)
    assert (out["payment_mode"], out["balance_micros"], out["available_micros"], out["spending_suspended"]) == (
        "postpay",
        1_499 * USD,
        1_499 * USD,
        False,
    )
    assert out["credit_limit_micros"] == 0  # the ended line gives no credit
    charged = apply_charge(
        session,
        charge_id="after-backdated-line",
        account_id=advertiser.account_id,
        campaign_id=group["campaign_id"],
        ad_group_id=group["id"],
        creative_id=1,
        amount_micros=1_500 * USD,
        kind="cpa",
        occurred_at=datetime.now(UTC),
    )
    session.commit()
    # Spends the prepaid money, and not a cent of credit past it.
    assert (charged.status, charged.charged_micros) == (ChargeStatus.TRUNCATED, 1_499 * USD)
    out = balance(api, advertiser, advertiser.account_id)
    assert (out["available_micros"], out["spending_suspended"]) == (0, True)
