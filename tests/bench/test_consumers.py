"""The in-process consumer benches at a tiny size: their figures are only worth reading when what they applied is
what they should have (each charge once, crawlers never billed, ledger = event store to the micro)."""

from __future__ import annotations

from adstack.bench.consumers import billing_per_cpu_second, impressions_per_cpu_second


def test_billing_bench_bills_every_charge_once() -> None:
    result = billing_per_cpu_second(2_000, batch=500)

    assert result["charges"] == 1_500  # the first batch warms up and is not timed
    assert result["billed_micros"] == result["expected_micros"] == 2_000 * 2_000
    assert result["per_cpu_second"] > 0 and result["per_wall_second"] > 0


def test_impression_bench_passes_every_consumer_and_agrees_with_the_ledger() -> None:
    result = impressions_per_cpu_second(2_000, batch=500, bot_every=20)

    assert result["impressions"] == 1_500
    valid = 2_000 - 2_000 // 20
    assert result["expected_micros"] == valid * 2_000
    assert result["billed_micros"] == result["store_charged_micros"] == result["expected_micros"]
    assert result["touchpoints"] == result["expected_touchpoints"] == valid
    assert result["impression_events"] == valid
    assert result["invalid_events"] == result["expected_invalid"] == 100
    assert result["per_cpu_second"] > 0 and result["per_wall_second"] > 0
