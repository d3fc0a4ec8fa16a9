"""Times are stored in UTC; schedules and reports use the account's IANA time zone."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

MAX_UTC_OFFSET = timedelta(hours=12)
MIN_UTC_OFFSET = timedelta(hours=-12)


# Shifts the process's notion of now; only the demo's traffic simulation moves it (see shifted_clock).
_clock_offset = timedelta(0)


def utcnow() -> datetime:
    return datetime.now(UTC) + _clock_offset


@contextmanager
def shifted_clock(offset: timedelta) -> Iterator[None]:
    """Run as if it were `offset` away from now, so a simulation can replay past days through the real
    endpoints (schedules, daily budgets and report days all follow). Not for use while serving real traffic."""
    global _clock_offset
    previous = _clock_offset
    _clock_offset = offset
    try:
        yield
    finally:
        _clock_offset = previous


def advance_clock(delta: timedelta) -> None:
    """Move a shifted clock forward: simulated time passing inside `shifted_clock` (the demo only)."""
    global _clock_offset
    _clock_offset += delta


def as_utc(value: datetime) -> datetime:
    """Naive datetimes are read as UTC (SQLite returns them naive)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def validate_time_zone(name: str) -> str:
    """Accept an IANA zone whose standard offset lies within UTC-12..UTC+12."""
    if name not in _known_zones() and name != "UTC":
        raise ValueError(f"unknown IANA time zone: {name}")
    try:
        tz = zone(name)
    except ZoneInfoNotFoundError as exc:
        raise ValueError(f"unknown IANA time zone: {name}") from exc
    offset = datetime(2025, 1, 15, tzinfo=tz).utcoffset() or timedelta(0)
    if not MIN_UTC_OFFSET <= offset <= MAX_UTC_OFFSET:
        raise ValueError(f"time zone {name} is outside UTC-12..UTC+12")
    return name


def local_date(moment: datetime, tz_name: str) -> datetime:
    return as_utc(moment).astimezone(zone(tz_name))
