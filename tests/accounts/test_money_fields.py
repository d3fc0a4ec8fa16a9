"""An account's currency and time zone stay put once money is tied to them: ledger entries, a pending top-up
request, a credit line."""

from __future__ import annotations

import io

from adstack.accounts.models import Role
from tests.support import Actor, Api, expect

USD = 1_000_000
FINANCE = "/api/v1/finance"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def _refused(api: Api, actor: Actor, account_id: int, body: dict[str, str]) -> tuple[str, str, object]:
    out = expect(api.client.patch(f"/api/v1/accounts/{account_id}", headers=actor.headers, json=body), 422)
    [field] = out["error"]["fields"]
    return field["field"], field["rule"], field["limit"]


def test_currency_stays_while_a_top_up_request_is_pending(api: Api) -> None:
    """A request filed for 100,000 INR would otherwise be confirmed as 100,000 USD."""
    manager = api.admin(Role.ACCOUNT_MANAGER)
    adv = api.approved_account(country="TH", settlement_entity="Xiaomi India", currency="INR")
    request = expect(api.client.post(
        f"{FINANCE}/top-up-requests", headers=adv.headers,
        data={"account_id": str(adv.account_id), "amount_micros": str(100_000 * USD)},
        files={"file": ("r.png", io.BytesIO(PNG), "image/png")}), 201)
    assert adv.account_id is not None
    assert _refused(api, adv, adv.account_id, {"currency": "USD"}) == ("currency", "fixed_while_top_up_pending",
                                                                     "INR")
    # Rejected, it no longer holds the currency.
    expect(api.client.post(f"{FINANCE}/top-up-requests/{request['id']}/reject", headers=manager.headers,
                           json={"reason": "wrong currency"}), 200)
    changed = expect(api.client.patch(f"/api/v1/accounts/{adv.account_id}", headers=adv.headers,
                                      json={"currency": "USD"}), 200)
    assert changed["currency"] == "USD"


def test_currency_and_time_zone_stay_once_a_credit_line_is_granted(api: Api) -> None:
    manager = api.admin(Role.ACCOUNT_MANAGER)
    adv = api.approved_account(country="TH", settlement_entity="Xiaomi India", currency="INR")
    assert adv.account_id is not None
    expect(api.client.post(f"{FINANCE}/credit-lines", headers=manager.headers, json={
        "account_id": adv.account_id, "limit_micros": 1_000_000 * USD, "starts_on": "2026-01-01",
        "ends_on": "2027-12-01"}), 201)
    assert _refused(api, adv, adv.account_id, {"currency": "USD"}) == ("currency", "fixed_once_credit_line", "INR")
    assert _refused(api, adv, adv.account_id, {"time_zone": "America/Bogota"}) == (
        "time_zone", "fixed_once_credit_line", "Asia/Singapore")
    balance = expect(api.client.get(f"{FINANCE}/accounts/{adv.account_id}/balance", headers=adv.headers), 200)
    assert (balance["currency"], balance["credit_line"]["currency"]) == ("INR", "INR")


def test_time_zone_is_fixed_once_the_account_holds_money(api: Api) -> None:
    """Daily financial records are cut at the account's local midnight, as are its reports: moving the zone
    afterwards would put money already recorded on one day on another."""
    admin = api.admin()
    adv = api.approved_account(admin)
    assert adv.account_id is not None
    url = f"/api/v1/accounts/{adv.account_id}"
    moved = expect(api.client.patch(url, headers=adv.headers, json={"time_zone": "Asia/Jakarta"}), 200)
    assert moved["time_zone"] == "Asia/Jakarta"
    expect(api.client.post(f"{FINANCE}/top-ups", headers=admin.headers,
                           json={"account_id": adv.account_id, "amount_micros": 5 * USD}), 201)
    assert _refused(api, adv, adv.account_id, {"time_zone": "America/Bogota"}) == (
        "time_zone", "fixed_once_funded", "Asia/Jakarta")
    # Sending the zone it already has is no change.
    expect(api.client.patch(url, headers=adv.headers, json={"time_zone": "Asia/Jakarta", "contact_name": "Wu"}),
           200)
