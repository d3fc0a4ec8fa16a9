"""Hot counters: spend today and in total, account spend, frequency and guaranteed delivery.

One interface, two implementations:

- `MemoryCounters`, the embedded default: one process, counters in a dictionary under a lock;
- `RedisCounters`, when several serving processes share budgets (`ADSTACK_REDIS_URL`): the same operations as one
  Lua script each, so they are atomic across every process that talks to the same Redis.

The one write is `reserve(claims)`: every claim names a counter, an amount, a cap and a floor. Atomically, each
counter is first raised to its floor (the ledger's figure, so counters never lag behind billing after a restart or
a charge that did not pass through serving), then either every claim fits under its cap and all are added, or
nothing changes and the first claim that did not fit is reported. A served ad reserves its price against its ad
group's day and total budgets and its account's funds, and one unit of its frequency cap, in one round trip;
`release` gives back a reservation whose ad was never shown (a lost OpenRTB auction). Since no reservation is ever
granted past a cap, spend past a cap is bounded by the charges that billing applies without a reservation
(clicks and conversions priced above their expected cost), never by the number of serving processes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Claim:
    key: str
    amount: int
    cap: int | None = None  # None = no cap
    floor: int = 0  # the counter is raised to at least this before the check
    ttl_seconds: int = 0  # 0 = keep; day counters expire after their day


class Counters(Protocol):
    shared: bool  # True when other processes see the same counters

    def get_many(self, keys: Sequence[str]) -> list[int]: ...

    def reserve(self, claims: Sequence[Claim]) -> int:
        """Apply all claims or none; -1 on success, else the index of the first claim that would pass its cap."""
        ...

    def release(self, claims: Sequence[Claim]) -> None: ...

    def close(self) -> None: ...


class MemoryCounters:
    shared = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, int] = {}
        self._expiry: dict[str, float] = {}
        self._writes = 0

    def get(self, key: str) -> int:
        return self._values.get(key, 0)

    def get_many(self, keys: Sequence[str]) -> list[int]:
        values = self._values
        return [values.get(key, 0) for key in keys]

    def reserve(self, claims: Sequence[Claim]) -> int:
        with self._lock:
            values = self._values
            current = []
            for position, claim in enumerate(claims):
                value = max(values.get(claim.key, 0), claim.floor)
                if claim.cap is not None and value + claim.amount > claim.cap:
                    return position
                current.append(value)
            now = time.monotonic()
            for claim, value in zip(claims, current, strict=True):
                values[claim.key] = value + claim.amount
                if claim.ttl_seconds:
                    self._expiry[claim.key] = now + claim.ttl_seconds
            self._writes += 1
            if self._writes % 10_000 == 0:
                self._sweep(now)
            return -1

    def release(self, claims: Sequence[Claim]) -> None:
        with self._lock:
            for claim in claims:
                if claim.key in self._values:
                    self._values[claim.key] = max(0, self._values[claim.key] - claim.amount)

    def _sweep(self, now: float) -> None:
        expired = [key for key, at in self._expiry.items() if at <= now]
        for key in expired:
            self._values.pop(key, None)
            self._expiry.pop(key, None)

    def close(self) -> None:
        pass


# KEYS: the counters. ARGV, four per key: amount, cap (-1 = none), floor, ttl seconds (0 = keep).
# Returns 0 when every claim was applied, else the 1-based position of the first that did not fit.
_RESERVE = """
local values = {}
for i = 1, #KEYS do
  local base = (i - 1) * 4
  local value = tonumber(redis.call('GET', KEYS[i]) or '0')
  local floor = tonumber(ARGV[base + 3])
  if value < floor then value = floor end
  local cap = tonumber(ARGV[base + 2])
  if cap >= 0 and value + tonumber(ARGV[base + 1]) > cap then return i end
  values[i] = value
end
for i = 1, #KEYS do
  local base = (i - 1) * 4
  local ttl = tonumber(ARGV[base + 4])
  local updated = values[i] + tonumber(ARGV[base + 1])
  if ttl > 0 then
    redis.call('SET', KEYS[i], updated, 'EX', ttl)
  else
    redis.call('SET', KEYS[i], updated)
  end
end
return 0
"""

_RELEASE = """
for i = 1, #KEYS do
  local value = tonumber(redis.call('GET', KEYS[i]) or '0')
  local updated = value - tonumber(ARGV[i])
  if updated < 0 then updated = 0 end
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('SET', KEYS[i], updated, 'KEEPTTL') end
end
return 0
"""


class RedisCounters:
    """Counters in one Redis (keys share a prefix; a cluster would need hash tags per ad group)."""

    shared = True

    def __init__(self, url: str, *, prefix: str = "adstack:serving:", client: Any = None):
        import redis

        self._redis = client or redis.Redis.from_url(url, socket_timeout=0.25, socket_connect_timeout=0.5,
                                                     health_check_interval=30)
        self._prefix = prefix
        self._reserve = self._redis.register_script(_RESERVE)
        self._release = self._redis.register_script(_RELEASE)

    def get_many(self, keys: Sequence[str]) -> list[int]:
        if not keys:
            return []
        raw = self._redis.mget([self._prefix + k for k in keys])
        return [int(v) if v is not None else 0 for v in raw]

    def reserve(self, claims: Sequence[Claim]) -> int:
        keys = [self._prefix + c.key for c in claims]
        args: list[int] = []
        for c in claims:
            args += [c.amount, -1 if c.cap is None else c.cap, c.floor, c.ttl_seconds]
        failed = int(self._reserve(keys=keys, args=args))
        return failed - 1

    def release(self, claims: Sequence[Claim]) -> None:
        if claims:
            self._release(keys=[self._prefix + c.key for c in claims], args=[c.amount for c in claims])

    def close(self) -> None:
        self._redis.close()


def make_counters(redis_url: str | None) -> Counters:
    return RedisCounters(redis_url) if redis_url else MemoryCounters()
