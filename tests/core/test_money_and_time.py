from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite

from adstack.core.csv_export import neutralise, to_csv
from adstack.core.db import _sqlite_datetime
from adstack.core.money import format_micros, from_micros, to_micros
from adstack.core.timeutil import validate_time_zone
from adstack.events.models import Event, EventType
from adstack.events.service import event_record


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


@given(
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30)),
    st.sampled_from([None, UTC, timezone(timedelta(hours=7)), timezone(timedelta(hours=-9, minutes=-30))]),
)
def test_bulk_inserted_and_event_store_times_keep_their_stored_formats(moment: datetime, tz: timezone | None) -> None:
    value = moment.replace(tzinfo=tz)  # naive is read as UTC, as SQLite hands it back
    naive_utc = (value if tz is None else value.astimezone(UTC)).replace(tzinfo=None)
    sqlalchemy_text = sqlite.DATETIME().bind_processor(sqlite.dialect())
    assert sqlalchemy_text is not None
    assert _sqlite_datetime(value) == sqlalchemy_text(naive_utc)
    record = event_record(Event(event_id="e", event_type=EventType.IMPRESSION, occurred_at=value, account_id=1))
    assert record["occurred_at"] == naive_utc.isoformat(" ", "milliseconds")


@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "Pacific/Chatham", "Pacific/Tongatapu", "Asia/Kathmandu"])
def test_an_account_or_report_may_be_in_any_places_zone(zone: str) -> None:
    assert validate_time_zone(zone, guide_range=False) == zone


@pytest.mark.parametrize("zone", ["localtime", "Factory", "posixrules", "Mars/Olympus"])
def test_zones_that_name_no_place_are_refused_everywhere(zone: str) -> None:
    for guide_range in (True, False):
        with pytest.raises(ValueError):
            validate_time_zone(zone, guide_range=guide_range)
