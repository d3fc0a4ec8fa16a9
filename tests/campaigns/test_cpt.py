"""CPT: a slot on an ad space is booked by one ad group at a time, and each booked slot is billed once, at its
start, through the event pipeline."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from adstack.core.timeutil import utcnow
from adstack.finance.pricing import cpt_slot_micros
from tests.campaigns.helpers import ad_space, approved_ad_group, campaign, publisher
from tests.support import Actor, Api, expect

DAY_RATE = 24_000_000  # 24 USD a day: a 6-hour slot costs 6 USD


def _brand(api: Api, advertiser: Actor, space_id: int, slots: list[dict[str, str]], **extra: Any) -> Any:
    brand = campaign(
        api,
        advertiser,
        objective="brand",
        name=f"Launch {len(slots)}{extra.get('name', '')}",
        promotion_type="app_download",
    )
    body = {
        "campaign_id": brand["id"],
        "name": "Launch day",
        "placement_type": "banner",
        "bid_type": "cpt",
        "bid_micros": DAY_RATE,
        "ad_space_ids": [space_id],
        "booked_slots": slots,
        "targeting": {"countries": ["ID"]},
        "start_at": "2024-01-01T00:00:00Z",
    }
    return api.client.post("/api/v1/ad-groups", headers=advertiser.headers, json=body)


def _iso(moment: Any) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def test_an_overlapping_booking_of_the_same_ad_space_is_refused_with_the_booking_it_hits(api: Api) -> None:
    admin = api.admin()
    advertiser = api.approved_account(admin)
    space = ad_space(api, admin, publisher(api, admin)["id"])
    other_space = ad_space(api, admin, space["publisher_id"], name="Second banner")
    start = (utcnow() + timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
    first = expect(
        _brand(api, advertiser, space["id"], [{"start": _iso(start), "end": _iso(start + timedelta(hours=6))}]), 201
    )
    clash = _brand(
        api,
        advertiser,
        space["id"],
        [{"start": _iso(start + timedelta(hours=5)), "end": _iso(start + timedelta(hours=8))}],
        name="b",
    )
    error = expect(clash, 409)["error"]
    assert error["code"] == "slot_taken" and f"ad group {first['id']}" in error["message"]
    assert error["fields"][0]["field"] == "booked_slots.0" and error["fields"][0]["actual"] == first["id"]
    # Back to back on the same space, or the same hours on another space, are free.
    back_to_back = [{"start": _iso(start + timedelta(hours=6)), "end": _iso(start + timedelta(hours=9))}]
    expect(_brand(api, advertiser, space["id"], back_to_back, name="c"), 201)
    expect(
        _brand(
            api,
            advertiser,
            other_space["id"],
            [{"start": _iso(start), "end": _iso(start + timedelta(hours=6))}],
            name="d",
        ),
        201,
    )
    # Moving the first booking onto the second space's hours is refused too.
    moved = api.client.patch(
        f"/api/v1/ad-groups/{first['id']}", headers=advertiser.headers, json={"ad_space_ids": [other_space["id"]]}
    )
    assert expect(moved, 409)["error"]["code"] == "slot_taken"


def test_a_started_slot_is_billed_once(api: Api) -> None:
    admin = api.admin()
    advertiser = api.approved_account(admin)
    expect(
        api.client.post(
            "/api/v1/finance/top-ups",
            headers=admin.headers,
            json={"account_id": advertiser.account_id, "amount_micros": 100_000_000},
        ),
        201,
    )
    space = ad_space(api, admin, publisher(api, admin)["id"])
    start = utcnow().replace(second=0, microsecond=0) - timedelta(minutes=5)
    later = start + timedelta(days=1)
    slots = [
        {"start": _iso(start), "end": _iso(start + timedelta(hours=6))},
        {"start": _iso(later), "end": _iso(later + timedelta(hours=6))},
    ]
    brand = campaign(api, advertiser, objective="brand", name="Launch", promotion_type="app_download")
    group = approved_ad_group(
        api,
        advertiser,
        admin,
        brand["id"],
        placement_type="banner",
        bid_type="cpt",
        bid_micros=DAY_RATE,
        ad_space_ids=[space["id"]],
        booked_slots=slots,
        daily_budget_micros=None,
        total_budget_micros=None,
    )
    pipeline = api.client.app.state.pipeline  # type: ignore[attr-defined]
    assert pipeline.bill_due_slots() == 1  # only the slot that has started
    api.settle()
    assert pipeline.bill_due_slots() == 0
    pipeline._slots_appended.clear()  # as after a restart: the slot is appended again, and billed once
    assert pipeline.bill_due_slots() == 1
    api.settle()
    entries = expect(
        api.client.get(f"/api/v1/finance/accounts/{advertiser.account_id}/ledger", headers=advertiser.headers), 200
    )
    items = entries["items"] if isinstance(entries, dict) else entries
    charges = [e for e in items if e["entry_type"] == "charge"]
    assert [(-c["amount_micros"], c["ad_group_id"]) for c in charges] == [
        (cpt_slot_micros(DAY_RATE, start, start + timedelta(hours=6)), group["id"])
    ]
    assert -charges[0]["amount_micros"] == 6_000_000
