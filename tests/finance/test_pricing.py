"""The pure billing rules: event prices and the cap decision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adstack.finance.models import CapReason, ChargeStatus
from adstack.finance.pricing import cpm_impression_micros, cpt_slot_micros, decide


def test_cpm_is_the_price_per_thousand_rounded_half_to_even() -> None:
    assert cpm_impression_micros(2_500_000) == 2_500  # 2.50 USD CPM -> 0.0025 USD an impression
    assert cpm_impression_micros(1_234_567) == 1_235
    assert cpm_impression_micros(2_500) == 2 and cpm_impression_micros(3_500) == 4  # half to even
    with pytest.raises(ValueError):
        cpm_impression_micros(-1)


def test_cpt_slot_is_charged_for_its_duration() -> None:
    start = datetime(2031, 1, 1, tzinfo=UTC)
    assert cpt_slot_micros(480_000_000, start, start + timedelta(hours=6)) == 120_000_000
    assert cpt_slot_micros(480_000_000, start, start + timedelta(days=1)) == 480_000_000
    with pytest.raises(ValueError):
        cpt_slot_micros(1, start, start)


def test_decide_charges_in_full_truncates_then_refuses() -> None:
    full = decide(300, {CapReason.DAILY_BUDGET: 1_000, CapReason.FUNDS: None})
    assert (full.status, full.charged_micros, full.reason, full.exhausted) == (ChargeStatus.APPLIED, 300, None, ())
    cut = decide(300, {CapReason.DAILY_BUDGET: 1_000, CapReason.FUNDS: 120})
    assert (cut.status, cut.charged_micros, cut.reason, cut.exhausted) == (
        ChargeStatus.TRUNCATED,
        120,
        CapReason.FUNDS,
        (CapReason.FUNDS,),
    )
    exact = decide(120, {CapReason.DAILY_BUDGET: 120})
    assert (exact.status, exact.exhausted) == (ChargeStatus.APPLIED, (CapReason.DAILY_BUDGET,))
    none_left = decide(5, {CapReason.TOTAL_BUDGET: 0, CapReason.FUNDS: -3})
    assert (none_left.status, none_left.charged_micros) == (ChargeStatus.REFUSED, 0)
    assert set(none_left.exhausted) == {CapReason.TOTAL_BUDGET, CapReason.FUNDS}
    uncapped = decide(7, {})
    assert (uncapped.status, uncapped.charged_micros) == (ChargeStatus.APPLIED, 7)


caps = st.dictionaries(st.sampled_from(list(CapReason)), st.one_of(st.none(), st.integers(-(10**6), 10**9)))


@given(amount=st.integers(1, 10**9), remaining=caps)
def test_decide_never_charges_past_a_cap_or_the_amount(amount: int, remaining: dict[CapReason, int | None]) -> None:
    decision = decide(amount, remaining)
    rooms = [max(v, 0) for v in remaining.values() if v is not None]
    assert 0 <= decision.charged_micros <= amount
    assert all(decision.charged_micros <= room for room in rooms)
    assert decision.charged_micros == min([amount, *rooms])
    expected = (
        ChargeStatus.REFUSED
        if decision.charged_micros == 0
        else ChargeStatus.APPLIED
        if decision.charged_micros == amount
        else ChargeStatus.TRUNCATED
    )
    assert decision.status is expected
