"""Currency conversion for the auction: bids in different account currencies compete in one currency.

The auction ranks in USD micros. Rates are the operator-editable FX table kept by attribution
(`attribution.models.FxRate`, units of a currency per US dollar), read into the snapshot so a request never touches
the database to convert; until the table names a currency, round seed figures stand in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType

PLATFORM_CURRENCY = "USD"

# USD per one unit of the currency. Operators keep these current; these are only the seed.
DEFAULT_USD_PER_UNIT: Mapping[str, Decimal] = MappingProxyType({
    "USD": Decimal("1"),
    "CNY": Decimal("0.14"),
    "INR": Decimal("0.012"),
    "EUR": Decimal("1.08"),
    "GBP": Decimal("1.27"),
    "JPY": Decimal("0.0067"),
    "RUB": Decimal("0.011"),
    "IDR": Decimal("0.000063"),
    "SGD": Decimal("0.74"),
    "HKD": Decimal("0.128"),
    "KRW": Decimal("0.00073"),
    "BRL": Decimal("0.18"),
})


class FxRates:
    """Conversion to and from USD. Unknown currencies convert to nothing (a bid in them cannot compete)."""

    __slots__ = ("_factor", "usd_per_unit")

    def __init__(self, usd_per_unit: Mapping[str, Decimal] = DEFAULT_USD_PER_UNIT):
        self.usd_per_unit: Mapping[str, Decimal] = MappingProxyType(
            {code.upper(): Decimal(rate) for code, rate in usd_per_unit.items() if Decimal(rate) > 0})
        # Floats for ranking only; amounts that are charged are converted with Decimal.
        self._factor = {code: float(rate) for code, rate in self.usd_per_unit.items()}

    @classmethod
    def from_units_per_usd(cls, units_per_usd: Mapping[str, Decimal]) -> FxRates:
        """From the FX table's form (units per USD), over the seed figures for currencies it does not name."""
        rates = dict(DEFAULT_USD_PER_UNIT)
        for code, units in units_per_usd.items():
            if Decimal(units) > 0:
                rates[code.upper()] = Decimal(1) / Decimal(units)
        rates["USD"] = Decimal(1)
        return cls(rates)

    def knows(self, currency: str) -> bool:
        return currency.upper() in self._factor

    def to_usd(self, micros: float, currency: str) -> float:
        """For ranking: an amount in micros of `currency` as USD micros (0 when the currency is unknown)."""
        if currency == PLATFORM_CURRENCY:
            return micros
        return micros * self._factor.get(currency.upper(), 0.0)

    def from_usd_micros(self, usd_micros: float, currency: str, *, round_up: bool = True) -> int:
        """USD micros as integer micros of `currency` (rounded up by default: a floor is never undercut)."""
        if currency.upper() == PLATFORM_CURRENCY:
            value = Decimal(repr(usd_micros))
        else:
            rate = self.usd_per_unit.get(currency.upper())
            if rate is None:
                raise ValueError(f"no exchange rate for {currency}")
            value = Decimal(repr(usd_micros)) / rate
        return math.ceil(value) if round_up else math.floor(value)

    def convert_micros(self, micros: int, source: str, target: str) -> int:
        """Exact conversion of an amount between two known currencies, rounded half up to a micro."""
        if source.upper() == target.upper():
            return micros
        source_rate = self.usd_per_unit.get(source.upper())
        target_rate = self.usd_per_unit.get(target.upper())
        if source_rate is None or target_rate is None:
            raise ValueError(f"no exchange rate between {source} and {target}")
        return int((Decimal(micros) * source_rate / target_rate).to_integral_value())
