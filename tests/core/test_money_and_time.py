from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adstack.core.csv_export import neutralise, to_csv
from adstack.core.money import format_micros, from_micros, to_micros
from adstack.core.timeutil import validate_time_zone


@given(st.decimals(min_value=Decimal("-1e9"), max_value=Decimal("1e9"), places=6, allow_nan=False))
def test_micros_round_trip(amount: Decimal) -> None:
    assert from_micros(to_micros(amount)) == amount


def test_micros_rounding_and_format() -> None:
    assert to_micros("100.00") == 100_000_000
    assert to_micros("0.0000005") == 0  # half to even
    assert to_micros("0.0000015") == 2
    assert format_micros(1_234_567) == "1.23"
    with pytest.raises(ValueError):
        to_micros("NaN")


@pytest.mark.parametrize("value", ['=HYPERLINK("x")', "+1", "-2+3", "@SUM(A1)", "\tcmd"])
def test_csv_neutralises_formulas(value: str) -> None:
    assert neutralise(value) == "'" + value
    assert to_csv(["h"], [[value]]).splitlines()[1].lstrip('"').startswith("'")


def test_csv_leaves_numbers_and_plain_text() -> None:
    assert neutralise(-5) == -5
    assert neutralise("Acme (HK)") == "Acme (HK)"


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata", "America/New_York", "Pacific/Pago_Pago", "Etc/GMT+12"])
def test_time_zones_within_range(zone: str) -> None:
    assert validate_time_zone(zone) == zone


@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "Mars/Olympus", "Etc/GMT-14"])
def test_time_zones_refused(zone: str) -> None:
    with pytest.raises(ValueError):
        validate_time_zone(zone)
