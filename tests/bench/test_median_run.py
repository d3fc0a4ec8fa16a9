"""A bench figure measured several times reports the median run, whole, and every run's figure."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from adstack.bench import median_run


def test_the_median_run_is_reported_with_every_runs_figure() -> None:
    runs: Iterator[dict[str, Any]] = iter([{"rate": 9, "run": "a"}, {"rate": 30, "run": "b"}, {"rate": 12, "run": "c"}])
    result = median_run(lambda: next(runs), "rate")
    assert result == {"rate": 12, "run": "c", "rate_runs": [9, 12, 30]}
