"""Money is integer micros of the account currency: 1 USD = 1_000_000 micros. Never a float."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from enum import StrEnum
from typing import Annotated

from pydantic import Field

MICROS_PER_UNIT = 1_000_000


class Currency(StrEnum):
    USD = "USD"
    CNY = "CNY"
    INR = "INR"


# A non-negative amount of micros, as used by budgets, bids and top-ups in the API.
Micros = Annotated[int, Field(ge=0, le=10**15, description="Integer micros of the account currency.")]


def to_micros(amount: Decimal | str | int) -> int:
    """Convert a decimal amount in currency units to micros, rounding half to even."""
    try:
        value = Decimal(str(amount)) if not isinstance(amount, Decimal) else amount
    except InvalidOperation as exc:
        raise ValueError(f"not a decimal amount: {amount!r}") from exc
    if not value.is_finite():
        raise ValueError(f"not a finite amount: {amount!r}")
    return int((value * MICROS_PER_UNIT).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def from_micros(micros: int) -> Decimal:
    return (Decimal(micros) / MICROS_PER_UNIT).quantize(Decimal("0.000001"))


def format_micros(micros: int, places: int = 2) -> str:
    quantum = Decimal(1).scaleb(-places)
    return str((Decimal(micros) / MICROS_PER_UNIT).quantize(quantum, rounding=ROUND_HALF_EVEN))
