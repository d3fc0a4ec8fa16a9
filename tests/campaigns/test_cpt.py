"""CPT: a slot on an ad space is booked by one ad group at a time, and each booked slot is billed once, at its
start, through the event pipeline."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from adstack.campaigns.status import SLOT_UNPAID
from adstack.core.timeutil import utcnow
from adstack.finance.pricing import cpt_slot_micros
from tests.campaigns.helpers import ad_space, approved_ad_group, campaign, publisher
from tests.serving.test_api import ads_now, approved_creative, eventually
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


def _submit(api: Api, advertiser: Actor, group: dict[str, Any]) -> Any:
    return api.client.post(f"/api/v1/ad-groups/{group['id']}/submit", headers=advertiser.headers)


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
    expect(_submit(api, advertiser, first), 200)  # submitted: it holds its slots
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
    other = expect(
        _brand(
            api,
            advertiser,
            other_space["id"],
            [{"start": _iso(start), "end": _iso(start + timedelta(hours=6))}],
            name="d",
        ),
        201,
    )
    expect(_submit(api, advertiser, other), 200)
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
    start = utcnow().replace(second=0, microsecond=0) + timedelta(minutes=5)  # booked ahead, as slots are
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
    assert pipeline.bill_due_slots() == 0  # none has started
    started = start + timedelta(minutes=1)
    assert pipeline.bill_due_slots(started) == 1  # only the slot that has started
    api.settle()
    assert pipeline.bill_due_slots(started) == 0
    pipeline._slots_appended.clear()  # as after a restart: the slot is appended again, and billed once
    assert pipeline.bill_due_slots(started) == 1
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
    # Dated at the slot's start, whenever billing ran: the slot's day carries it in budgets and reports.
    assert charges[0]["occurred_at"].startswith(start.isoformat()[:16])
    # Reports place the slot's cost on its ad space, publisher and placement, so their filters keep it.
    day = start.astimezone(ZoneInfo(advertiser_time_zone(api, advertiser))).date().isoformat()
    for scope in ({}, {"publisher_ids": [space["publisher_id"]]}, {"placement_types": ["banner"]},
                  {"ad_space_ids": [space["id"]]}):
        report = expect(api.client.get("/api/v1/reports", headers=advertiser.headers, params={
            "start_date": day, "end_date": day, "metrics": ["cost_micros"], **scope}), 200)
        assert report["totals"]["cost_micros"] == 6_000_000, scope


def test_a_long_slot_enabled_days_into_it_is_billed_while_it_runs(api: Api) -> None:
    """It serves from the day it is enabled to its end: billed then, however long after its start."""
    admin = api.admin()
    advertiser = api.approved_account(admin)
    expect(api.client.post("/api/v1/finance/top-ups", headers=admin.headers,
                           json={"account_id": advertiser.account_id, "amount_micros": 1_000_000_000}), 201)
    space = ad_space(api, admin, publisher(api, admin)["id"])
    start = utcnow().replace(second=0, microsecond=0) + timedelta(minutes=5)
    week = {"start": _iso(start), "end": _iso(start + timedelta(days=7))}
    brand = campaign(api, advertiser, objective="brand", name="Week", promotion_type="app_download")
    approved_ad_group(api, advertiser, admin, brand["id"], placement_type="banner", bid_type="cpt",
                      bid_micros=DAY_RATE, ad_space_ids=[space["id"]], booked_slots=[week],
                      daily_budget_micros=None, total_budget_micros=None)
    pipeline = api.client.app.state.pipeline  # type: ignore[attr-defined]
    assert pipeline.bill_due_slots(start + timedelta(days=3)) == 1  # past the catch-up window, still running
    api.settle()
    assert pipeline.bill_due_slots(start + timedelta(days=5)) == 0  # once
    assert pipeline.bill_due_slots(start + timedelta(days=10)) == 0  # ended, past catch-up: nothing new
    api.settle()
    entries = expect(api.client.get(f"/api/v1/finance/accounts/{advertiser.account_id}/ledger",
                                    headers=advertiser.headers), 200)
    items = entries["items"] if isinstance(entries, dict) else entries
    assert [-e["amount_micros"] for e in items if e["entry_type"] == "charge"] == [7 * DAY_RATE]


def advertiser_time_zone(api: Api, advertiser: Actor) -> str:
    account = expect(api.client.get(f"/api/v1/accounts/{advertiser.account_id}", headers=advertiser.headers), 200)
    return str(account["time_zone"])


def _slot(start: Any, hours: float) -> dict[str, str]:
    return {"start": _iso(start), "end": _iso(start + timedelta(hours=hours))}


def _fields(response: Any) -> list[tuple[str, str]]:
    return [(f["field"], f["rule"]) for f in expect(response, 422)["error"]["fields"]]


def test_a_slot_is_booked_ahead_once_within_the_schedule_and_kept_once_it_has_started(api: Api) -> None:
    """A slot is billed in full at its start: a started slot cannot be moved (billed again), extended (unpaid)
    or dropped; a new one cannot start in the past (never billed) or outside the ad group's schedule."""
    from adstack.campaigns.models import AdGroup

    admin = api.admin()
    advertiser = api.approved_account(admin)
    space = ad_space(api, admin, publisher(api, admin)["id"])
    now = utcnow().replace(microsecond=0)
    ahead = now + timedelta(days=1)
    assert _fields(_brand(api, advertiser, space["id"], [_slot(now - timedelta(minutes=1), 1)])) == [
        ("booked_slots.0.start", "in_future")]
    assert _fields(_brand(api, advertiser, space["id"], [_slot(ahead, 6), _slot(ahead + timedelta(hours=5), 2)],
                          name="x")) == [("booked_slots.1", "no_overlap")]
    group = expect(_brand(api, advertiser, space["id"], [_slot(ahead, 6)], name="y"), 201)
    late = api.client.patch(f"/api/v1/ad-groups/{group['id']}", headers=advertiser.headers,
                            json={"end_at": _iso(ahead + timedelta(hours=3))})
    assert _fields(late) == [("booked_slots.0", "within_schedule")]

    # Time passes: the slot has started (and been billed).
    started = _slot(now - timedelta(hours=1), 6)
    stored = api.session.get(AdGroup, group["id"])
    assert stored is not None
    stored.booked_slots = [started]
    api.session.commit()
    for change in ([_slot(now - timedelta(hours=1), 24)], [_slot(now - timedelta(minutes=59), 6)],
                   [_slot(ahead, 6)]):
        edit = api.client.patch(f"/api/v1/ad-groups/{group['id']}", headers=advertiser.headers,
                                json={"booked_slots": change})
        assert ("booked_slots", "started_slot_kept") in _fields(edit), change
    gone = api.client.patch(f"/api/v1/ad-groups/{group['id']}", headers=advertiser.headers,
                            json={"bid_type": "guaranteed_cpm", "booked_impressions": 1000})
    assert ("booked_slots", "started_slot_kept") in _fields(gone)
    # A future slot may be added beside it, and other fields edited.
    added = [started, _slot(ahead + timedelta(days=1), 2)]
    expect(api.client.patch(f"/api/v1/ad-groups/{group['id']}", headers=advertiser.headers,
                            json={"booked_slots": added, "name": "Launch week"}), 200)


def test_another_advertisers_booking_is_not_named_and_a_copy_books_anew(api: Api) -> None:
    admin = api.admin()
    first, second = api.approved_account(admin), api.approved_account(admin)
    space = ad_space(api, admin, publisher(api, admin)["id"])
    start = utcnow().replace(microsecond=0) + timedelta(days=2)
    held = expect(_brand(api, first, space["id"], [_slot(start, 6)]), 201)
    # A draft holds nothing: it cannot keep competitors off an ad space at no cost.
    draft = expect(_brand(api, second, space["id"], [_slot(start + timedelta(hours=1), 1)], name="draft"), 201)
    expect(_submit(api, first, held), 200)
    assert expect(_submit(api, second, draft), 409)["error"]["code"] == "slot_taken"
    error = expect(_brand(api, second, space["id"], [_slot(start + timedelta(hours=1), 1)]), 409)["error"]
    assert "another advertiser" in error["message"] and f"ad group {held['id']}" not in error["message"]
    assert error["fields"][0].get("actual") is None
    # A copy of a CPT ad group would hold the same hours twice.
    copied = api.client.post(f"/api/v1/ad-groups/{held['id']}/copy", headers=first.headers, json={})
    assert expect(copied, 409)["error"]["code"] == "slot_taken"


def test_two_bookings_of_the_same_hours_at_once_cannot_both_succeed(api: Api) -> None:
    """The check of a booking and its hold (its submission) run under a lock the next one waits for: two drafts
    of the same hours submitted at the same moment cannot both hold them."""
    import threading
    import time

    from sqlalchemy.orm import Session

    from adstack.accounts import auth
    from adstack.campaigns.service import submit_ad_group
    from adstack.core.errors import Conflict

    admin = api.admin()
    advertiser = api.approved_account(admin)
    space = ad_space(api, admin, publisher(api, admin)["id"])
    start = utcnow().replace(microsecond=0) + timedelta(days=4)
    drafts = [expect(_brand(api, advertiser, space["id"], [_slot(start, 6)], name=str(n)), 201) for n in range(2)]
    bind = api.session.get_bind()
    outcomes: list[str] = []

    def submit(group_id: int, hold_seconds: float) -> None:
        with Session(bind) as session:
            try:
                submit_ad_group(session, auth.authenticate(session, advertiser.token), group_id)
            except Conflict:
                outcomes.append("refused")
                return
            session.flush()
            time.sleep(hold_seconds)  # the other submission runs its check meanwhile
            session.commit()
            outcomes.append("held")

    first = threading.Thread(target=submit, args=(drafts[0]["id"], 0.5))
    first.start()
    time.sleep(0.15)
    submit(drafts[1]["id"], 0.0)
    first.join()
    assert sorted(outcomes) == ["held", "refused"]


def _cpt_booked(api: Api, advertiser: Actor, admin: Actor, *, funds: int, slot_hours: float,
                daily_budget: int | None) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """A CPT ad group with a creative whose booked slot starts in a moment; the slot's start."""
    if funds:
        expect(api.client.post("/api/v1/finance/top-ups", headers=admin.headers,
                               json={"account_id": advertiser.account_id, "amount_micros": funds}), 201)
    space = ad_space(api, admin, publisher(api, admin)["id"])
    start = utcnow().replace(microsecond=500_000) + timedelta(seconds=2)  # charge ids name whole seconds
    brand = campaign(api, advertiser, objective="brand", name="On air", promotion_type="app_download")
    group = approved_ad_group(api, advertiser, admin, brand["id"], placement_type="banner", bid_type="cpt",
                              bid_micros=DAY_RATE, ad_space_ids=[space["id"]], booked_slots=[_slot(start, slot_hours)],
                              targeting={"countries": ["ID"]}, daily_budget_micros=daily_budget,
                              total_budget_micros=None)
    approved_creative(api, advertiser, admin, group["id"])
    return space, group, start


def _bill_started(api: Api, starts: list[Any]) -> None:
    """Once every slot has started, bill them (each once) through the pipeline."""
    while utcnow() < max(starts) + timedelta(seconds=1):
        time.sleep(0.1)
    pipeline = api.client.app.state.pipeline  # type: ignore[attr-defined]
    assert pipeline.bill_due_slots() == len(starts)
    api.settle()


def _serves(api: Api, space: dict[str, Any], group: dict[str, Any]) -> bool:
    return any(ad["ad_group_id"] == group["id"] for ad in ads_now(api.client, space["id"]))


def _off_air(api: Api, space: dict[str, Any], group: dict[str, Any]) -> bool:
    """It stops serving once the refresher has read the slot's charge, and stays off through the refreshes that
    read the money after it and rebuild the snapshot."""
    if not eventually(lambda: not _serves(api, space, group)):
        return False
    serving = api.client.app.state.serving  # type: ignore[attr-defined]
    for refresh in (serving.refresh_money, lambda: serving.refresh(force=True)):
        refresh()
        if _serves(api, space, group):
            return False
    return True


def test_a_slot_paid_in_full_serves_and_one_refused_or_cut_short_never_does(api: Api) -> None:
    """A slot's charge refused (no funds at its start) or cut short by a budget is never billed again: serving
    it would give the slot away, even once money arrives."""
    admin = api.admin()
    paid, broke, short = (api.approved_account(admin) for _ in range(3))
    # Booked one after the other, their slots start within seconds of each other: one wait for all three.
    booked = [
        _cpt_booked(api, paid, admin, funds=100 * 1_000_000, slot_hours=6, daily_budget=None),
        _cpt_booked(api, broke, admin, funds=0, slot_hours=6, daily_budget=None),
        # A week's slot at 24 USD a day, a 10 USD daily budget.
        _cpt_booked(api, short, admin, funds=1_000 * 1_000_000, slot_hours=7 * 24, daily_budget=10 * 1_000_000),
    ]
    _bill_started(api, [start for _, _, start in booked])

    space, group, _ = booked[0]
    assert eventually(lambda: _serves(api, space, group))

    space, group, _ = booked[1]
    expect(api.client.post("/api/v1/finance/top-ups", headers=admin.headers,
                           json={"account_id": broke.account_id, "amount_micros": 100 * 1_000_000}), 201)
    assert _off_air(api, space, group)
    # Its serving status says why, as the engine decides it.
    shown = expect(api.client.get(f"/api/v1/ad-groups/{group['id']}", headers=broke.headers), 200)
    assert (shown["serving_status"], shown["serving_reason"]) == ("out_of_schedule", SLOT_UNPAID)

    space, group, _ = booked[2]
    assert _off_air(api, space, group)
