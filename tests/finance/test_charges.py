"""Exactly-once charges under concurrency, and caps that hold: daily and total budget, funds, booked volume."""

from __future__ import annotations

import random
import threading
from collections import Counter
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from adstack.campaigns.enums import ServingStatus
from adstack.campaigns.models import AdGroup
from adstack.campaigns.serving_status import ad_group_serving_status
from adstack.core.db import make_session_factory
from adstack.core.errors import NotFound, ValidationFailed
from adstack.finance import budgets
from adstack.finance import service as finance
from adstack.finance.charges import ChargeRequest, ChargeResult, apply_charge, apply_charges
from adstack.finance.models import CapReason, ChargeStatus, EntryType, LedgerEntry
from tests.finance.conftest import ad_group, approve_ad_group, campaign, top_up
from tests.support import Api, expect

USD = 1_000_000


def _charge(
    session: Session, group: dict, charge_id: str, amount: int, at: datetime, kind: str = "cpc"
) -> ChargeResult:
    result = apply_charge(
        session,
        charge_id=charge_id,
        account_id=group["account_id"],
        campaign_id=group["campaign_id"],
        ad_group_id=group["id"],
        creative_id=7,
        amount_micros=amount,
        kind=kind,
        occurred_at=at,
    )
    session.commit()
    return result


def _run_workers(engine: Engine, slices: list[list[ChargeRequest]], batch: int) -> list[ChargeResult]:
    """Each worker has its own session (connection) and commits a batch at a time."""
    factory = make_session_factory(engine)
    results: list[ChargeResult] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(len(slices))

    def work(items: list[ChargeRequest]) -> None:
        mine: list[ChargeResult] = []
        try:
            with factory() as session:
                start.wait()
                for offset in range(0, len(items), batch):
                    mine.extend(apply_charges(session, items[offset : offset + batch]))
                    session.commit()
        except BaseException as exc:  # surfaced in the test thread below
            errors.append(exc)
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=work, args=(items,)) for items in slices]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return results


def test_eight_workers_apply_ten_thousand_charges_and_five_hundred_duplicates_exactly_once(
    api: Api, session: Session, db: Engine
) -> None:
    admin = api.admin()
    advertiser = api.approved_account()
    group = ad_group(api, advertiser)
    opening = 10_000 * USD
    top_up(api, admin, advertiser.account_id, opening)

    rng = random.Random(20250115)
    at = datetime(2031, 5, 14, 12, 0, tzinfo=UTC)
    charges = [
        ChargeRequest(
            f"imp-{n:05d}",
            advertiser.account_id,
            group["campaign_id"],
            group["id"],
            1 + n % 5,
            rng.randint(1, 900_000),
            "cpm",
            at + timedelta(milliseconds=n),
        )
        for n in range(10_000)
    ]
    workers = 8
    slices: list[list[ChargeRequest]] = [charges[w::workers] for w in range(workers)]
    # Each duplicate goes to the next worker at the same position, so original and copy race each other.
    for n in rng.sample(range(10_000), 500):
        worker, position = n % workers, n // workers
        slices[(worker + 1) % workers].insert(position, charges[n])

    results = _run_workers(db, slices, batch=100)

    statuses = Counter(r.status for r in results)
    assert statuses == {ChargeStatus.APPLIED: 10_000, ChargeStatus.DUPLICATE: 500}
    distinct_sum = sum(c.amount_micros for c in charges)
    assert sum(r.charged_micros for r in results) == distinct_sum
    session.expire_all()
    assert finance.balance_micros(session, advertiser.account_id) == opening - distinct_sum
    assert finance.reconcile(session, advertiser.account_id) == (opening - distinct_sum, opening - distinct_sum)
    charge_rows = session.scalar(
        select(func.count())
        .select_from(LedgerEntry)
        .where(LedgerEntry.entry_type == EntryType.CHARGE.value, LedgerEntry.account_id == advertiser.account_id)
    )
    assert charge_rows == 10_000
    repeated = session.scalars(
        select(LedgerEntry.idempotency_key).group_by(LedgerEntry.idempotency_key).having(func.count() > 1)
    ).all()
    assert [key for key in repeated if key is not None] == []
    assert budgets.ad_group_spend_micros(session, group["id"]) == distinct_sum


def test_daily_budget_stops_at_one_hundred_dollars_until_the_next_local_day(api: Api, session: Session) -> None:
    admin = api.admin()
    advertiser = api.approved_account()
    tz = "America/Los_Angeles"
    group = ad_group(api, advertiser, daily_budget_micros=100 * USD, time_zone=tz)
    approve_ad_group(api, admin, advertiser, group)
    top_up(api, admin, advertiser.account_id, 1_000 * USD)

    local_morning = datetime.combine(datetime(2031, 3, 7).date(), time(8, 0), tzinfo=ZoneInfo(tz))
    rng = random.Random(7)
    results, spent, n = [], 0, 0
    while not results or results[-1].status is not ChargeStatus.REFUSED:
        amount = rng.randint(150_000, 2_500_000)  # 0.15 to 2.50 USD a click
        results.append(_charge(session, group, f"click-{n}", amount, local_morning + timedelta(seconds=30 * n)))
        spent += results[-1].charged_micros
        n += 1
    for extra in range(5):  # clicks still in flight once the cap is reached
        results.append(_charge(session, group, f"late-click-{extra}", 400_000, local_morning + timedelta(hours=5)))

    largest = max(r.requested_micros for r in results)
    assert 100 * USD <= spent <= 100 * USD + largest  # the bound; billing holds it exactly:
    assert spent == 100 * USD
    assert [r.status for r in results].count(ChargeStatus.TRUNCATED) <= 1
    assert all(r.status is ChargeStatus.REFUSED and r.reason is CapReason.DAILY_BUDGET for r in results[-6:])
    billed = [r for r in results if r.charged_micros]
    assert CapReason.DAILY_BUDGET in billed[-1].exhausted  # the charge that reached the cap says so
    assert all(CapReason.DAILY_BUDGET not in r.exhausted for r in billed[:-1])

    row = session.get(AdGroup, group["id"])
    assert row is not None
    last_minute = datetime.combine(local_morning.date(), time(23, 59), tzinfo=ZoneInfo(tz))
    next_midnight = datetime.combine(local_morning.date() + timedelta(days=1), time(0), tzinfo=ZoneInfo(tz))
    assert ad_group_serving_status(session, row, now=last_minute)[0] is ServingStatus.DAILY_BUDGET_EXHAUSTED
    assert (
        budgets.budget_state(session, group["id"], at=last_minute).exhausted_reason
        is ServingStatus.DAILY_BUDGET_EXHAUSTED
    )
    assert budgets.remaining_budget_micros(session, group["id"], at=last_minute) == 0
    # Midnight in Los Angeles, not in UTC, opens the next day's budget.
    assert next_midnight.astimezone(UTC).hour == 8
    assert ad_group_serving_status(session, row, now=next_midnight)[0] is ServingStatus.ELIGIBLE
    assert budgets.remaining_budget_micros(session, group["id"], at=next_midnight) == 100 * USD
    assert _charge(session, group, "next-day", 500_000, next_midnight).status is ChargeStatus.APPLIED


def test_concurrent_stream_never_bills_past_the_daily_budget(api: Api, session: Session, db: Engine) -> None:
    admin = api.admin()
    advertiser = api.approved_account()
    group = ad_group(api, advertiser, daily_budget_micros=100 * USD, time_zone="Asia/Kolkata")
    top_up(api, admin, advertiser.account_id, 1_000 * USD)
    at = datetime(2031, 3, 7, 6, 0, tzinfo=UTC)
    rng = random.Random(3)
    charges = [
        ChargeRequest(
            f"c-{n}",
            advertiser.account_id,
            group["campaign_id"],
            group["id"],
            1,
            rng.randint(500_000, 3_000_000),
            "cpc",
            at,
        )
        for n in range(240)
    ]
    results = _run_workers(db, [charges[w::6] for w in range(6)], batch=5)
    session.expire_all()
    assert budgets.ad_group_spend_micros(session, group["id"]) == 100 * USD
    assert sum(r.charged_micros for r in results) == 100 * USD
    assert Counter(r.status for r in results)[ChargeStatus.TRUNCATED] <= 1
    assert finance.balance_micros(session, advertiser.account_id) == 900 * USD


def test_total_budget_and_balance_caps(api: Api, session: Session) -> None:
    admin = api.admin()
    advertiser = api.approved_account()
    group = ad_group(api, advertiser, total_budget_micros=5 * USD)
    approve_ad_group(api, admin, advertiser, group)
    top_up(api, admin, advertiser.account_id, 3 * USD)
    day = datetime(2031, 1, 1, tzinfo=UTC)
    first = _charge(session, group, "a", 2 * USD, day)
    second = _charge(session, group, "b", 2 * USD, day + timedelta(days=1))  # only 1 USD of balance is left
    assert (first.status, second.status, second.charged_micros) == (ChargeStatus.APPLIED, ChargeStatus.TRUNCATED, USD)
    assert second.reason is CapReason.FUNDS and CapReason.FUNDS in second.exhausted
    assert finance.available_micros(session, advertiser.account_id) == 0
    row = session.get(AdGroup, group["id"])
    assert row is not None
    assert ad_group_serving_status(session, row)[0] is ServingStatus.BALANCE_INSUFFICIENT
    assert _charge(session, group, "c", USD, day + timedelta(days=2)).reason is CapReason.FUNDS

    top_up(api, admin, advertiser.account_id, 10 * USD)
    third = _charge(session, group, "d", 4 * USD, day + timedelta(days=3))
    assert (third.status, third.charged_micros, third.reason) == (
        ChargeStatus.TRUNCATED,
        2 * USD,
        CapReason.TOTAL_BUDGET,
    )
    assert budgets.ad_group_spend_micros(session, group["id"]) == 5 * USD
    assert budgets.budget_state(session, group["id"]).exhausted_reason is ServingStatus.BUDGET_EXHAUSTED
    assert finance.balance_micros(session, advertiser.account_id) == 8 * USD


def test_same_charge_id_is_decided_once_even_after_refusal(api: Api, session: Session) -> None:
    admin = api.admin()
    advertiser = api.approved_account()
    group = ad_group(api, advertiser)
    at = datetime(2031, 1, 1, tzinfo=UTC)
    refused = _charge(session, group, "early", USD, at)  # no balance yet
    assert refused.status is ChargeStatus.REFUSED and refused.reason is CapReason.FUNDS
    top_up(api, admin, advertiser.account_id, 10 * USD)
    retried = _charge(session, group, "early", USD, at)
    assert retried.duplicate and retried.charged_micros == 0
    applied = _charge(session, group, "ok", 3 * USD, at)
    again = _charge(session, group, "ok", 3 * USD, at)
    assert applied.applied and again.duplicate and again.entry_id == applied.entry_id
    assert finance.balance_micros(session, advertiser.account_id) == 7 * USD


def test_guaranteed_cpm_bills_up_to_the_booked_volume(api: Api, session: Session) -> None:
    admin = api.admin()
    advertiser = api.approved_account()
    brand = campaign(api, advertiser, objective="brand")
    group = ad_group(api, advertiser, brand["id"], bid_type="guaranteed_cpm", bid_micros=3 * USD, booked_impressions=3)
    top_up(api, admin, advertiser.account_id, 10 * USD)
    price = finance_pricing_cpm(3 * USD)
    at = datetime(2031, 1, 1, tzinfo=UTC)
    results = [_charge(session, group, f"g{n}", price, at, kind="guaranteed_cpm") for n in range(5)]
    assert [r.status for r in results] == [ChargeStatus.APPLIED] * 3 + [ChargeStatus.REFUSED] * 2
    assert CapReason.BOOKED_VOLUME in results[2].exhausted and CapReason.BOOKED_VOLUME not in results[1].exhausted
    assert results[3].reason is CapReason.BOOKED_VOLUME
    assert budgets.ad_group_spend_micros(session, group["id"]) == 3 * 3000


def finance_pricing_cpm(price: int) -> int:
    from adstack.finance.pricing import cpm_impression_micros

    return cpm_impression_micros(price)


def test_charges_of_deleted_ad_groups_stay_in_the_ledger_and_campaign_spend(api: Api, session: Session) -> None:
    admin = api.admin()
    advertiser = api.approved_account()
    group = ad_group(api, advertiser)
    top_up(api, admin, advertiser.account_id, 10 * USD)
    at = datetime(2031, 1, 1, tzinfo=UTC)
    _charge(session, group, "before-delete", 2 * USD, at)
    expect(api.client.delete(f"/api/v1/ad-groups/{group['id']}", headers=advertiser.headers), 200)
    late = _charge(session, group, "late-event", USD, at + timedelta(minutes=1))  # served before the delete
    assert late.applied
    session.expire_all()
    assert budgets.ad_group_spend_micros(session, group["id"]) == 3 * USD
    assert budgets.campaign_spend_micros(session, group["campaign_id"]) == 3 * USD
    assert budgets.creative_spend_micros(session, 7) == 3 * USD
    read = expect(api.client.get(f"/api/v1/campaigns/{group['campaign_id']}", headers=advertiser.headers), 200)
    assert read["spend_micros"] == 3 * USD


def test_charge_input_is_checked(api: Api, session: Session) -> None:
    advertiser = api.approved_account()
    other = api.approved_account()
    group = ad_group(api, advertiser)
    at = datetime(2031, 1, 1, tzinfo=UTC)
    for kwargs, field in [
        ({"amount_micros": 0}, "amount_micros"),
        ({"amount_micros": -5}, "amount_micros"),
        ({"kind": "cpx"}, "kind"),
        ({"charge_id": ""}, "charge_id"),
        ({"charge_id": "x" * 121}, "charge_id"),
        ({"account_id": other.account_id}, "ad_group_id"),
    ]:
        args = {
            "charge_id": "c",
            "account_id": advertiser.account_id,
            "campaign_id": group["campaign_id"],
            "ad_group_id": group["id"],
            "creative_id": 1,
            "amount_micros": 5,
            "kind": "cpc",
            "occurred_at": at,
            **kwargs,
        }
        with pytest.raises(ValidationFailed) as caught:
            apply_charge(session, **args)  # type: ignore[arg-type]
        assert caught.value.fields[0].field == field
        session.rollback()
    with pytest.raises(NotFound):
        apply_charge(
            session,
            charge_id="c",
            account_id=2**62,
            campaign_id=1,
            ad_group_id=1,
            creative_id=1,
            amount_micros=5,
            kind="cpc",
            occurred_at=at,
        )
