"""The pipeline bench's verdicts: each figure against its target, and an end-to-end run that dropped events fails."""

from __future__ import annotations

from typing import Any

from adstack.bench.pipeline import TARGETS, met


def _results(**changes: Any) -> dict[str, Any]:
    results: dict[str, Any] = {
        "imp": {"ratio": 0.8}, "click": {"ratio": 0.7}, "postback": {"ratio": 0.7}, "ads": {"ratio": 0.7},
        "end_to_end": {"acknowledged": 30_000, "not_acknowledged": 0, "charges": 30_000,
                       "p99_ack_to_ledger_seconds": 2.0},
        "billing": {"per_cpu_second": 20_000}, "attribution": {"attribution_events_per_cpu_second": 10_000},
    }
    for name, value in changes.items():
        results[name] = {**results[name], **value}
    return results


def test_figures_at_their_targets_meet_them() -> None:
    assert TARGETS["ads_ratio_min"] == 0.7
    assert all(met(_results()).values())


def test_each_figure_below_its_target_is_unmet_alone() -> None:
    below = {"imp": {"ratio": 0.79}, "click": {"ratio": 0.69}, "postback": {"ratio": 0.69}, "ads": {"ratio": 0.69},
             "end_to_end": {"p99_ack_to_ledger_seconds": 2.01}, "billing": {"per_cpu_second": 19_999},
             "attribution": {"attribution_events_per_cpu_second": 9_999}}
    for name, value in below.items():
        verdicts = met(_results(**{name: value}))
        assert [n for n, ok in verdicts.items() if not ok] == [name]


def test_an_end_to_end_run_that_refused_or_did_not_bill_events_is_unmet() -> None:
    assert not met(_results(end_to_end={"not_acknowledged": 3}))["end_to_end"]
    assert not met(_results(end_to_end={"charges": 29_999}))["end_to_end"]
    assert not met(_results(end_to_end={"p99_ack_to_ledger_seconds": None}))["end_to_end"]
