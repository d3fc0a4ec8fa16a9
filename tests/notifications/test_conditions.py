"""Low balance, spent budgets and credited top-ups become notifications once each, by the worker's scan."""

from __future__ import annotations

from typing import Any

from tests.campaigns.helpers import approved_ad_group, campaign, charge
from tests.support import Actor, Api, expect


def _scan(api: Api) -> None:
    """Run the notification worker's pass now, as its thread does every `notification_scan_interval_s`."""
    api.client.app.state.notifications.drain()  # type: ignore[attr-defined]


def _events(api: Api, actor: Actor, event_type: str) -> list[dict[str, Any]]:
    rows = expect(api.client.get("/api/v1/notifications?limit=200", headers=actor.headers), 200)
    return [n for n in rows if n["event_type"] == event_type]


def test_top_up_low_balance_and_spent_budget_are_told_once(api: Api) -> None:
    admin = api.admin()
    adv = api.approved_account(admin)
    expect(
        api.client.patch(
            f"/api/v1/accounts/{adv.account_id}", headers=adv.headers, json={"low_balance_threshold_micros": 50_000_000}
        ),
        200,
    )
    expect(
        api.client.post(
            "/api/v1/finance/top-ups",
            headers=admin.headers,
            json={"account_id": adv.account_id, "amount_micros": 10_000_000, "currency": "USD"},
        ),
        201,
    )
    _scan(api)
    _scan(api)  # a second pass finds the same conditions and tells nothing new
    top_ups = _events(api, adv, "top_up.completed")
    assert [(n["data"]["amount_micros"], n["data"]["currency"]) for n in top_ups] == [(10_000_000, "USD")]
    low = _events(api, adv, "balance.low")
    assert len(low) == 1 and low[0]["data"]["available_micros"] == 10_000_000
    assert low[0]["data"]["threshold_micros"] == 50_000_000

    # Topped up above the threshold: no new low-balance notice.
    expect(
        api.client.post(
            "/api/v1/finance/top-ups",
            headers=admin.headers,
            json={"account_id": adv.account_id, "amount_micros": 100_000_000, "currency": "USD"},
        ),
        201,
    )
    _scan(api)
    assert len(_events(api, adv, "top_up.completed")) == 2 and len(_events(api, adv, "balance.low")) == 1

    group = approved_ad_group(
        api, adv, admin, campaign(api, adv)["id"], total_budget_micros=5_000_000, daily_budget_micros=None
    )
    _scan(api)
    assert _events(api, adv, "budget.exhausted") == []
    charge(api.session, adv.account_id, group, 5_000_000)
    _scan(api)
    _scan(api)
    spent = _events(api, adv, "budget.exhausted")
    assert [(n["data"]["object_id"], n["data"]["budget"]) for n in spent] == [(group["id"], "total")]
    # Other tenants hear nothing of it.
    other = api.approved_account(admin)
    seen = expect(api.client.get("/api/v1/notifications", headers=other.headers), 200)
    assert all(n["account_id"] == other.account_id for n in seen)
