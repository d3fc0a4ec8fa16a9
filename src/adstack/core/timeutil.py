"""Times are stored in UTC; schedules and reports use the account's IANA time zone."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic_core import PydanticCustomError

MAX_UTC_OFFSET = timedelta(hours=12)
MIN_UTC_OFFSET = timedelta(hours=-12)
# Where any place keeps its clocks (Pacific/Kiritimati is UTC+14): accounts and reports may be in any real zone;
# only ad groups follow the guide's UTC-12..UTC+12.
WORLD_MAX_UTC_OFFSET = timedelta(hours=14)
# Names that mean whatever the server is set to, not a place: a report in them would change with the host.
_SERVER_DEPENDENT_ZONES = frozenset({"localtime", "Factory", "posixrules"})


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


# The years a search may name (those of a contract): a bound around year 1 or 9999 in a far zone is past what a
# datetime can represent once moved to UTC.
EARLIEST_SEARCH = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_SEARCH = datetime(2200, 1, 1, tzinfo=UTC)


def search_bound(field: str, value: datetime | None) -> datetime | None:
    """A `since`/`until` a request searches by, in UTC; outside the searchable years a 422 naming the field."""
    from adstack.core.errors import ValidationFailed  # errors build on pydantic only; kept out of import time

    if value is None:
        return None
    limit = [EARLIEST_SEARCH.isoformat(), LATEST_SEARCH.isoformat()]
    try:
        moment: datetime | None = as_utc(value)
    except (OverflowError, ValueError):
        moment = None
    if moment is None or not EARLIEST_SEARCH <= moment <= LATEST_SEARCH:
        raise ValidationFailed.single(field, "datetime_range", f"{field} must be between {limit[0]} and {limit[1]}",
                                      limit=limit, actual=str(value)[:40]) from None
    return moment


def search_day(value: str | None) -> date | None:
    """A day typed into a search form: None (no bound) when unreadable or outside the searchable years."""
    try:
        day = date.fromisoformat(value) if value else None
    except ValueError:
        return None
    if day is None or not EARLIEST_SEARCH.date() <= day < LATEST_SEARCH.date():
        return None
    return day


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones()) - _SERVER_DEPENDENT_ZONES


# Source: Mi Ads Usage Guide, 3.1.2 Create Ad Group, "Set budget and schedule": "Time zone: UTC+0, UTC+1 ~
# UTC+12:00, UTC-1 ~ UTC−12:00". The guide writes both "UTC+1" and "UTC+12:00", and a true minus sign.
_UTC_OFFSET = re.compile(r"^UTC\s*([+\-\u2212])\s*(\d{1,2})(?::?(\d{2}))?$")


def fixed_offset_zone(text: str) -> str | None:
    """'UTC+8', 'UTC+08:00', 'UTC−12:00' -> the IANA zone of that fixed offset ('Etc/GMT-8': POSIX signs, so
    inverted); 'UTC+0' -> 'UTC'. None when the text is not in that form. Only whole hours have IANA zones (tzdata's
    "etcetera" file), so 'UTC+5:30' is refused with a pointer to a named zone."""
    match = _UTC_OFFSET.match(text.strip())
    if match is None:
        return None
    sign, hours, minutes = match.group(1), int(match.group(2)), int(match.group(3) or 0)
    if minutes:
        raise ValueError(f"{text}: fixed offsets are whole hours (UTC-12..UTC+12); for a zone such as UTC+5:30 "
                         "choose its IANA name, e.g. Asia/Kolkata")
    if hours > 12:
        raise ValueError(f"time zone {text} is outside UTC-12..UTC+12")
    if hours == 0:
        return "UTC"
    return f"Etc/GMT{'-' if sign == '+' else '+'}{hours}"


def standard_offset(name: str, *, year: int = 2025) -> timedelta:
    """The zone's standard (non-daylight-saving) offset: what it is in its own winter, north or south."""
    tz = zone(name)
    moment = datetime(year, 1, 15, 12, tzinfo=tz)
    return (moment.utcoffset() or timedelta(0)) - (moment.dst() or timedelta(0))


def validate_time_zone(name: str, *, guide_range: bool = True) -> str:
    """Accept an IANA zone whose standard offset lies within UTC-12..UTC+12 (Pacific/Auckland is +12, +13 only in
    its summer), or the guide's 'UTC+8' form, returned as its IANA name. Without `guide_range` (an account's or a
    report's zone), any place's zone, up to UTC+14."""
    fixed = fixed_offset_zone(name)
    if fixed is not None:
        return fixed
    if name not in _known_zones() and name != "UTC":
        raise _unknown_zone(name)
    try:
        offset = standard_offset(name)
    except ZoneInfoNotFoundError as exc:
        raise _unknown_zone(name) from exc
    limit = "UTC-12..UTC+12" if guide_range else "UTC-12..UTC+14"
    if not MIN_UTC_OFFSET <= offset <= (MAX_UTC_OFFSET if guide_range else WORLD_MAX_UTC_OFFSET):
        raise PydanticCustomError("time_zone_range", "time zone {name} is outside {limit} (standard offset {offset})",
                                  {"name": name, "limit": limit, "offset": _format_offset(offset)})
    return name


def _unknown_zone(name: str) -> PydanticCustomError:
    return PydanticCustomError("known_time_zone", "unknown IANA time zone: {name}",
                               {"name": name, "limit": "an IANA zone name, e.g. Asia/Singapore"})


def _format_offset(offset: timedelta) -> str:
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def local_date(moment: datetime, tz_name: str) -> datetime:
    return as_utc(moment).astimezone(zone(tz_name))
