"""Option lists for selects: countries in the visitor's language, time zones, enum values, the accounts a
visitor may act for."""

from __future__ import annotations

from collections import Counter
from enum import Enum
from functools import lru_cache
from typing import Any, TypeVar
from zoneinfo import available_timezones

from babel import Locale
from babel.core import get_global

from adstack.accounts import service as accounts
from adstack.console import i18n
from adstack.console.vocabulary import time_zone_name
from adstack.console.web import Visitor
from adstack.core.countries import iso_country_codes
from adstack.core.timeutil import MAX_UTC_OFFSET, MIN_UTC_OFFSET, fixed_offset_zone, standard_offset

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
    """(ISO 3166-1 alpha-2 code, localised name), sorted by name; CLDR names from Babel for the ISO codes only
    (CLDR also names regions such as EU, UN or XK that are no ISO country)."""
    names = Locale.parse(i18n.LANGUAGES[language]).territories
    rows = [(code, str(names.get(code, code))) for code in iso_country_codes()]
    return sorted(rows, key=lambda row: row[1])


def country_name(language: str, code: str) -> str:
    return dict(countries(language)).get(code, code)


@lru_cache(maxsize=len(i18n.LANGUAGES))
def time_zones(language: str = i18n.DEFAULT_LANGUAGE) -> list[tuple[str, str]]:
    """The guide's fixed offsets (UTC-12..UTC+12, as Etc/GMT zones), then IANA zones whose standard offset lies
    within UTC-12..UTC+12, labelled with that offset and the zone's name in `language` and ordered by offset."""
    fixed = [(fixed_offset_zone(f"UTC{hours:+d}") or "UTC", f"UTC{hours:+d}") for hours in range(-12, 13)]
    rows = []
    for name in available_timezones():
        if "/" not in name or name.startswith(("Etc/", "SystemV/", "US/", "posix/", "right/")):
            continue
        offset = standard_offset(name)
        if not MIN_UTC_OFFSET <= offset <= MAX_UTC_OFFSET:
            continue
        minutes = int(offset.total_seconds() // 60)
        sign = "+" if minutes >= 0 else "-"
        label = f"(UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}) {time_zone_name(name, language)}"
        rows.append((minutes, name, label))
    rows.sort()
    # Old names of a zone (America/Ensenada for America/Tijuana) read alike in CLDR's location form: those that
    # repeat a label are told apart by their IANA name, the current name keeping the plain label.
    aliases = get_global("zone_aliases")
    repeated = Counter(label for _, _, label in rows)
    plain = {label for _, name, label in rows if repeated[label] > 1 and name not in aliases}
    return [*fixed, *[(name, label if repeated[label] == 1 or (label in plain and name not in aliases)
                      else f"{label} · {name}") for _, name, label in rows]]


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
    return max(1, min(int(value), maximum)) if value and value.isdecimal() and len(value) < 10 else 1
