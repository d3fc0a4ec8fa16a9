"""Console languages: Babel message catalogs (.po) read at start-up, and locale-aware formatting.

The .po files in locale/ are the source of truth; they are compiled in memory when first used, so there is
no build step and no stale .mo file to forget.
"""

from __future__ import annotations

import gettext
import io
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from babel import Locale
from babel.dates import format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal, format_percent

from adstack.core.money import MICROS_PER_UNIT
from adstack.core.timeutil import as_utc, zone

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DOMAIN = "messages"

# Language code in the cookie and on the user -> Babel locale of the catalog.
LANGUAGES: dict[str, str] = {"en": "en", "zh": "zh_Hans_CN"}
LANGUAGE_NAMES: dict[str, str] = {"en": "English", "zh": "简体中文"}
DEFAULT_LANGUAGE = "en"


def N_(message: str) -> str:
    """Marks a message for extraction where it is defined; it is translated where it is shown."""
    return message


def normalise_language(value: str | None) -> str | None:
    """Map 'zh-CN', 'zh_Hans', 'en-US' and the like to a console language, or None."""
    if not value:
        return None
    head = value.strip().lower().replace("_", "-").split("-")[0]
    return head if head in LANGUAGES else None


def from_accept_language(header: str | None) -> str | None:
    for part in (header or "").split(","):
        language = normalise_language(part.split(";")[0])
        if language:
            return language
    return None


def catalog_path(language: str) -> Path:
    return LOCALE_DIR / LANGUAGES[language] / "LC_MESSAGES" / f"{DOMAIN}.po"


@lru_cache(maxsize=len(LANGUAGES))
def translations(language: str) -> gettext.NullTranslations:
    path = catalog_path(language)
    if not path.exists():
        return gettext.NullTranslations()
    with path.open("rb") as po_file:
        catalog = read_po(po_file, locale=LANGUAGES[language])
    buffer = io.BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


def plain_amount(micros: int) -> str:
    """Micros as the shortest exact decimal, at least two places: 15_000 -> "0.015", 1_500_000 -> "1.50"."""
    value = Decimal(micros) / MICROS_PER_UNIT
    text = f"{value:f}"
    whole, _, places = text.partition(".")
    places = places.rstrip("0")
    return f"{whole}.{places.ljust(2, '0')}"


class Formatter:
    """Numbers, money and times in the visitor's language; times in the account's zone."""

    def __init__(self, language: str, time_zone: str = "UTC"):
        self.locale = Locale.parse(LANGUAGES[language])
        self.time_zone = time_zone

    def money(self, micros: int | None, currency: str, *, exact: bool = False) -> str:
        """Rounded to the currency's places; `exact` keeps every place needed (a limit of 1 micro is $0.000001,
        not $0.00)."""
        if micros is None:
            return "—"
        code = currency or "USD"
        return format_currency(Decimal(micros) / MICROS_PER_UNIT, code, locale=self.locale,
                               decimal_quantization=not exact)

    def amount(self, micros: int | None) -> str:
        """Micros as a plain decimal for an input field (no grouping, no currency sign), exact: a pre-filled
        input saved unchanged must save the same micros, so 15_000 is "0.015", never "0.02"."""
        if micros is None:
            return ""
        return plain_amount(micros)

    def number(self, value: int | float | Decimal | None) -> str:
        if value is None:
            return "—"
        return format_decimal(value, locale=self.locale)

    def percent(self, value: float | Decimal | None) -> str:
        if value is None:
            return "—"
        return format_percent(value, format="#,##0.00%", locale=self.locale)

    def datetime(self, moment: datetime | None, time_zone: str | None = None) -> str:
        if moment is None:
            return "—"
        local = as_utc(moment).astimezone(zone(time_zone or self.time_zone))
        return format_datetime(local, "yyyy-MM-dd HH:mm", locale=self.locale)
