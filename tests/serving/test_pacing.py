"""Pacing over a simulated day: even pacing follows the traffic curve; ASAP spends as traffic comes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from adstack.serving.pacing import DEFAULT_HOURLY_SHARES, TrafficCurve, TrafficLearner, even_allowance_micros
from adstack.serving.snapshot import Schedule
from tests.serving.support import engine, group, request, snapshot

DAY = datetime(2025, 6, 4, tzinfo=UTC)
BUDGET = 500_000  # micros; each impression costs 1,000 at the 1.00 CPM floor, so the budget buys 500
REQUESTS_PER_DAY = 6_000


def simulate(pacing: str, time_zone: str = "UTC") -> list[int]:
    """Spend per local hour of one day, with traffic following the default curve and ample demand."""
    eng = engine(snapshot([group(1, daily_budget_micros=BUDGET, pacing=pacing, schedule=Schedule(time_zone))]))
    spend = [0] * 24
    for hour, share in enumerate(DEFAULT_HOURLY_SHARES):
        requests = round(REQUESTS_PER_DAY * share)
        for n in range(requests):
            moment = DAY + timedelta(hours=hour, seconds=n * 3600 / requests)
            for decision in eng.decide(request(now=moment, floor_micros=1_000_000)):
                spend[hour] += decision.price_micros // 1000
    return spend


def test_even_pacing_gives_no_hour_more_than_twice_its_traffic_share() -> None:
    spend = simulate("even")
    assert sum(spend) <= BUDGET
    assert sum(spend) >= 0.95 * BUDGET  # the budget lasts the day and is spent
    for hour, share in enumerate(DEFAULT_HOURLY_SHARES):
        assert spend[hour] <= 2 * share * BUDGET, (hour, spend[hour], share * BUDGET)
    # ...and the evening peak gets more than the small hours.
    assert spend[20] > 3 * spend[3]


def test_asap_spends_the_budget_as_soon_as_traffic_allows() -> None:
    spend = simulate("asap")
    assert sum(spend) == BUDGET
    assert sum(spend[:7]) == BUDGET  # gone before seven in the morning


def test_curve_elapsed_share_is_monotonic_and_ends_at_one() -> None:
    curve = TrafficCurve()
    moments = [DAY + timedelta(minutes=15 * n) for n in range(96)]
    shares = [curve.elapsed(m) for m in moments]
    assert shares == sorted(shares)
    assert shares[0] == 0
    assert abs(curve.elapsed(DAY + timedelta(hours=23, minutes=59, seconds=59)) - 1) < 1e-3


def test_learned_curve_follows_traffic_in_each_zone() -> None:
    learner = TrafficLearner()
    for _ in range(100_000):  # all traffic at 14:00 UTC
        learner.observe(DAY + timedelta(hours=14), requests=1)
    learner.refresh()
    utc = learner.curve("UTC", DAY)
    jakarta = learner.curve("Asia/Jakarta", DAY)  # UTC+7: the same traffic at 21:00 local
    assert max(range(24), key=lambda h: utc.shares[h]) == 14
    assert max(range(24), key=lambda h: jakarta.shares[h]) == 21


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=0, max_value=24 * 60 - 1))
def test_even_allowance_never_exceeds_the_budget(budget: int, minute: int) -> None:
    allowance = even_allowance_micros(budget, TrafficCurve(), DAY + timedelta(minutes=minute), "UTC")
    assert 0 <= allowance <= budget
