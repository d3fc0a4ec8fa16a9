"""The exchange's clearing price as OpenRTB reports it, read without trusting it.

An exchange replaces `${AUCTION_PRICE}` in a winning bid's URLs with what it charged: a CPM in the bid's
currency as a decimal string. Exchanges also leave the macro as it is, send it encrypted or send anything else;
none of that may refuse the request it rides on, so whatever is not a plain non-negative decimal is unknown.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal

from adstack.core.money import MICROS_PER_UNIT

DEFAULT_PRICE_CURRENCY = "USD"  # OpenRTB's default `cur`
IMPRESSIONS_PER_MILLE = 1000
# Digits enough for any real CPM in any currency; a cost past the cap is not a price but a mistake.
_PRICE = re.compile(r"^(?:[0-9]{1,9}(?:\.[0-9]{0,12})?|\.[0-9]{1,12})$")
MAX_IMPRESSION_COST_MICROS = 10**15
_CURRENCY = re.compile(r"^[A-Za-z]{3}$")


def parse_auction_price(text: str | None) -> Decimal | None:
    """A substituted clearing price (CPM); None when absent, unsubstituted, negative or not a plain number."""
    if text is None:
        return None
    value = text.strip()
    if not _PRICE.match(value):
        return None
    return Decimal(value)


def parse_price_currency(text: str | None) -> str | None:
    """The bid's currency as our bid URLs carry it; USD when absent (OpenRTB's default), None when garbled."""
    if text is None or text == "":
        return DEFAULT_PRICE_CURRENCY
    return text.upper() if _CURRENCY.match(text) else None


def impression_cost_micros(price_cpm: Decimal, *, price_currency: str, account_currency: str,
                           usd_per_unit: Mapping[str, Decimal]) -> int | None:
    """One impression at a CPM clearing price, in integer micros of the account currency, converted exactly
    and rounded half to even once; None when either currency has no rate or the cost is past any real one."""
    amount = price_cpm * MICROS_PER_UNIT / IMPRESSIONS_PER_MILLE
    source, target = price_currency.upper(), account_currency.upper()
    if source != target:
        source_rate, target_rate = usd_per_unit.get(source), usd_per_unit.get(target)
        if source_rate is None or target_rate is None or source_rate <= 0 or target_rate <= 0:
            return None
        amount = amount * source_rate / target_rate
    if amount > MAX_IMPRESSION_COST_MICROS:
        return None
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
