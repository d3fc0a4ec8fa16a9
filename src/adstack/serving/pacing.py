"""Pacing: how much of a budget or a booking may be used by now.

Even pacing (the default) lets an ad group's spend today reach `daily budget x share of the day's traffic seen so
far` in its own time zone, looking a few minutes ahead so spend never stalls between checks. Traffic follows a
24-hour curve: learned from the requests this server sees (per UTC hour, decayed so it tracks the season) and
shifted into each zone, blended with a default mobile curve until enough traffic has been seen. Spend therefore
follows traffic: little at dawn, more in the evening, and the budget lasts the whole day instead of running out at
dawn. ASAP pacing allows the whole daily budget at once.

Guaranteed-CPM bookings are delivered evenly over their booking: by any moment at most the booked volume times
the elapsed share of the booking (plus an hour's worth of slack) may have been delivered.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta

from adstack.core.timeutil import as_utc, zone

# Share of a day's mobile ad requests per local hour: quiet at night, peaks at lunch and in the evening.
DEFAULT_HOURLY_SHARES: tuple[float, ...] = tuple(x / 1000 for x in (
    22, 14, 10, 8, 8, 12, 22, 36, 46, 50, 52, 54,
    56, 52, 50, 50, 52, 56, 62, 70, 74, 70, 54, 38,
))
LOOKAHEAD = timedelta(minutes=5)
BOOKING_SLACK = timedelta(hours=1)
# Requests a curve needs before the learned shape fully replaces the default.
LEARNED_WEIGHT_AT = 50_000


def _normalised(shares: Sequence[float]) -> tuple[float, ...]:
    total = float(sum(shares))
    if total <= 0:
        return DEFAULT_HOURLY_SHARES
    return tuple(s / total for s in shares)


class TrafficCurve:
    """24 hourly shares of a day's traffic in local time, summing to 1."""

    __slots__ = ("cumulative", "shares")

    def __init__(self, shares: Sequence[float] = DEFAULT_HOURLY_SHARES):
        if len(shares) != 24:
            raise ValueError("a traffic curve has 24 hourly shares")
        self.shares = _normalised(shares)
        running = [0.0]
        for share in self.shares:
            running.append(running[-1] + share)
        self.cumulative = tuple(running)

    def elapsed(self, local: datetime) -> float:
        """Share of the day's traffic before this local moment, interpolated within the hour."""
        within = (local.minute * 60 + local.second) / 3600
        return min(1.0, self.cumulative[local.hour] + self.shares[local.hour] * within)


def even_allowance_micros(daily_budget_micros: int, curve: TrafficCurve, now: datetime, time_zone: str) -> int:
    """How much of today's budget even pacing allows to have been spent by `now` (in the ad group's zone)."""
    local = as_utc(now).astimezone(zone(time_zone))
    ahead = local + LOOKAHEAD
    share = 1.0 if ahead.date() != local.date() else curve.elapsed(ahead)
    return min(daily_budget_micros, math.ceil(daily_budget_micros * share))


def booking_allowance(booked: int, start: datetime | None, end: datetime | None, now: datetime) -> int:
    """Impressions a guaranteed booking may have delivered by `now`, delivering evenly from start to end."""
    if start is None or end is None or end <= start:
        return booked
    span = (end - start).total_seconds()
    elapsed = (as_utc(now) - start + BOOKING_SLACK).total_seconds()
    return min(booked, max(0, math.ceil(booked * elapsed / span)))


class TrafficLearner:
    """Counts requests per UTC hour of day with a slow decay; gives the curve for any time zone."""

    def __init__(self, half_life_days: float = 7.0):
        self._lock = threading.Lock()
        self._counts = [0.0] * 24
        self._decay_per_day = 0.5 ** (1 / half_life_days)
        self._day: int | None = None
        self._cache: dict[int, TrafficCurve] = {}
        self._observed = 0.0

    def observe(self, now: datetime, requests: int = 1) -> None:
        moment = as_utc(now)
        day = moment.toordinal()
        with self._lock:
            if self._day is None:
                self._day = day
            elif day > self._day:
                factor = self._decay_per_day ** (day - self._day)
                self._counts = [c * factor for c in self._counts]
                self._observed *= factor
                self._day = day
            self._counts[moment.hour] += requests
            self._observed += requests

    def refresh(self) -> None:
        """Recompute the cached curves from the counts; called in the background, not per request."""
        with self._lock:
            counts = list(self._counts)
            observed = self._observed
        weight = min(1.0, observed / LEARNED_WEIGHT_AT)
        curves: dict[int, TrafficCurve] = {}
        learned = _normalised(counts) if observed else DEFAULT_HOURLY_SHARES
        for offset in range(-12, 15):
            # Local hour h is UTC hour h - offset.
            shifted = [learned[(h - offset) % 24] for h in range(24)]
            blended = [weight * s + (1 - weight) * d for s, d in zip(shifted, DEFAULT_HOURLY_SHARES, strict=True)]
            curves[offset] = TrafficCurve(blended)
        self._cache = curves

    def curve(self, time_zone: str, now: datetime) -> TrafficCurve:
        offset = as_utc(now).astimezone(zone(time_zone)).utcoffset() or timedelta(0)
        hours = round(offset.total_seconds() / 3600)
        cached = self._cache.get(hours)
        if cached is None:
            if not self._cache:
                self.refresh()
            cached = self._cache.get(hours) or TrafficCurve()
        return cached
