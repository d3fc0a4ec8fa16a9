"""Pure billing rules: what one billable event costs, and how much of it the caps still allow."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from adstack.finance.models import CapReason, ChargeStatus

IMPRESSIONS_PER_MILLE = 1000
SECONDS_PER_DAY = 86_400


def _round(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def cpm_impression_micros(price_cpm_micros: int) -> int:
    """One impression at a CPM price (the auction's clearing price, or a guaranteed CPM's booked rate).

    Rounded half to even to the micro: the error is at most 0.5 micro per impression and averages zero.
    """
    if price_cpm_micros < 0:
        raise ValueError("a CPM price cannot be negative")
    return _round(Decimal(price_cpm_micros) / IMPRESSIONS_PER_MILLE)


def cpt_slot_micros(price_per_day_micros: int, starts_at: datetime, ends_at: datetime) -> int:
    """A booked CPT slot, charged for its duration at the booking's daily rate (e.g. 6 h = a quarter day)."""
    if price_per_day_micros < 0:
        raise ValueError("a CPT price cannot be negative")
    duration = ends_at - starts_at
    if duration <= timedelta(0):
        raise ValueError("a CPT slot must end after it starts")
    return _round(Decimal(price_per_day_micros) * Decimal(int(duration.total_seconds())) / SECONDS_PER_DAY)


@dataclass(frozen=True, slots=True)
class CapDecision:
    status: ChargeStatus  # applied, truncated or refused
    charged_micros: int
    reason: CapReason | None  # the tightest cap, when it truncated or refused the charge
    exhausted: tuple[CapReason, ...]  # caps with nothing left once this charge is applied


def decide(amount_micros: int, remaining: Mapping[CapReason, int | None]) -> CapDecision:
    """Charge in full while every cap has room; truncate to the tightest cap's room; refuse when it has none.

    `remaining` maps each cap to what is left under it (None = no such cap). Because a charge is never
    more than the room left, billed spend never passes a cap.
    """
    if amount_micros <= 0:
        raise ValueError("a charge must be positive")
    caps = {reason: max(left, 0) for reason, left in remaining.items() if left is not None}
    tightest = min(caps, key=lambda reason: caps[reason]) if caps else None
    room = caps[tightest] if tightest is not None else amount_micros
    if room <= 0:
        return CapDecision(ChargeStatus.REFUSED, 0, tightest, tuple(r for r, left in caps.items() if left <= 0))
    charged = min(amount_micros, room)
    status = ChargeStatus.APPLIED if charged == amount_micros else ChargeStatus.TRUNCATED
    exhausted = tuple(r for r, left in caps.items() if left - charged <= 0)
    return CapDecision(status, charged, tightest if status is ChargeStatus.TRUNCATED else None, exhausted)
