"""`adstack bench reports` on a small load: each report read from the rollups equals the same aggregate written
by hand over the raw events, columns (the source of conversions among them) and rows."""

from __future__ import annotations

import pytest

from adstack.bench import reports as bench


def test_every_bench_report_on_the_rollups_equals_its_raw_recomputation(capsys: pytest.CaptureFixture[str]) -> None:
    line = bench.main(events=60_000)
    capsys.readouterr()
    assert set(line["reports"]) == {"day_and_campaign", "hour_and_creative", "country"}
    for name, result in line["reports"].items():
        assert result["same_result"], name
        assert result["rows"] > 0, name
    assert 0 < line["account_events"] < line["events"]
    assert line["cardinalities"]["creatives"] == bench.ACCOUNTS * bench.CREATIVES_PER_ACCOUNT
