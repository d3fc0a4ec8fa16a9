"""Option lists for selects: countries in the visitor's language, time zones, enum values, the accounts a
visitor may act for."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import Enum
from functools import lru_cache
from typing import Any, TypeVar
from zoneinfo import available_timezones

from babel import Locale

from adstack.accounts import service as accounts
from adstack.console import i18n
from adstack.console.web import Visitor
from adstack.core.timeutil import MAX_UTC_OFFSET, MIN_UTC_OFFSET, zone

EnumT = TypeVar("EnumT", bound=Enum)


def account_choices(visitor: Visitor) -> list[Any]:
    """Agencies and platform staff create ads and audiences in an account they choose; advertisers in their
    own (an empty list: no chooser)."""
    principal = visitor.me
    if principal.role == "advertiser":
        return []
    return accounts.list_accounts(visitor.session, principal, limit=200)


@lru_cache(maxsize=len(i18n.LANGUAGES))
def countries(language: str) -> list[tuple[str, str]]:
    """(ISO code, localised name), sorted by name; CLDR names from Babel."""
    names = Locale.parse(i18n.LANGUAGES[language]).territories
    rows = [(code, name) for code, name in names.items() if len(code) == 2 and code.isalpha() and code != "ZZ"]
    return sorted(rows, key=lambda row: row[1])


def country_name(language: str, code: str) -> str:
    return dict(countries(language)).get(code, code)


@lru_cache(maxsize=1)
def time_zones() -> list[tuple[str, str]]:
    """IANA zones within UTC-12..UTC+12, labelled with their winter offset, ordered by offset."""
    rows = []
    moment = datetime(2025, 1, 15)
    for name in available_timezones():
        if "/" not in name or name.startswith(("Etc/", "SystemV/", "US/", "posix/", "right/")):
            continue
        offset = moment.replace(tzinfo=zone(name)).utcoffset() or timedelta(0)
        if not MIN_UTC_OFFSET <= offset <= MAX_UTC_OFFSET:
            continue
        minutes = int(offset.total_seconds() // 60)
        sign = "+" if minutes >= 0 else "-"
        label = f"(UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}) {name}"
        rows.append((minutes, name, label))
    rows.sort()
    return [("UTC", "(UTC+00:00) UTC"), *[(name, label) for _, name, label in rows]]


def enum_or_default(kind: type[EnumT], value: str | None, default: EnumT) -> EnumT:
    try:
        return kind(value)
    except ValueError:
        return default


def enum_or_none(kind: type[EnumT], value: str | None) -> EnumT | None:
    try:
        return kind(value) if value else None
    except ValueError:
        return None


def page_number(value: str | None, *, maximum: int = 1_000_000) -> int:
    """A ?page= value, bounded; anything odd is the first page."""
    return max(1, min(int(value), maximum)) if value and value.isdigit() and len(value) < 10 else 1
