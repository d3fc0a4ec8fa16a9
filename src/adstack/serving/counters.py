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

A reservation made with a `Hold` is also entered in a book under its impression id, so it ends in exactly one
way, from any process that shares the counters: `settle` when its ad is billed (the actual charge replaces the
reserved amount), `keep` when a CPA ad is shown (its expected cost stands as the day's spend; its share of the
total budget and of the account's funds is given back, since those counters never expire and billing charges its
conversions against them), `release_held` when its bid's loss notice is applied, or `expire` once its time has
passed unshown.

A refund frees what its charge took (`give_back`): once per refund, whichever process gets there first, its
amount comes off the counters the charge was counted on, never below what booked reservations still hold there.
Floors read before the refund (a serving state not yet refreshed) are lowered by it too, or the next reservation
from that state would raise the counter straight back to the ledger's figure before the refund.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from adstack.core.errors import Unavailable
from adstack.serving.redis_pipeline import PipelinedRedis


@dataclass(frozen=True, slots=True)
class Claim:
    key: str
    amount: int
    cap: int | None = None  # None = no cap
    floor: int = 0  # the counter is raised to at least this before the check
    ttl_seconds: int = 0  # 0 = keep; day counters expire after their day
    floor_as_of: int = 0  # the ledger entry id the floor was read at: refunds given back after it come off it


@dataclass(frozen=True, slots=True)
class GiveBack:
    """A refund (by its ledger entry id) and what it frees on each counter its charge was counted on."""

    refund_id: int
    amounts: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class Hold:
    """Book a reservation under an id until `expires_at` (epoch seconds), when it is given back unshown."""

    reservation_id: str
    expires_at: float


# Budget counters (day, total, account): a billed ad's actual charge replaces what was reserved on them. The
# others (delivery counts of guaranteed and CPT ads) stay, since the ad was shown; frequency is never returned.
MONEY_PREFIXES = ("d:", "t:", "a:")
EXPIRE_SCRIPT_HOLDS = 200  # holds one Redis expiry script ends at most
DAY_PREFIX = "d:"  # an ad group's spend today: the counter expires with the day
KEPT_PREFIXES = ("f:",)
# Counts no ledger can give back after a restart: frequency per device, guaranteed and CPT delivery, and an ad
# group's spend today, which holds what shown CPA ads keep beyond the ledger's charges. In one process they are
# saved to disk now and then (`export_delivery`, less what unshown ads still hold) and read back at start, with
# the last refund given back on them, so refunds made since come off them too.
DELIVERY_PREFIXES = ("f:", "g:", "c:", "d:")
# How long a refund lowers floors read before it: far longer than a serving state goes unrefreshed.
GIVEN_BACK_FLOOR_SECONDS = 3600


def _booked_claims(claims: Sequence[Claim]) -> list[tuple[str, int, bool]]:
    return [(c.key, c.amount, c.key.startswith(MONEY_PREFIXES)) for c in claims
            if not c.key.startswith(KEPT_PREFIXES) and c.amount]


@dataclass(frozen=True)
class Outstanding:
    reservations: int
    micros: int  # money held on account counters by booked reservations


class Counters(Protocol):
    shared: bool  # True when other processes see the same counters

    def get_many(self, keys: Sequence[str]) -> list[int]: ...

    def reserve(self, claims: Sequence[Claim], hold: Hold | None = None) -> int:
        """Apply all claims or none; -1 on success, else the index of the first claim that would pass its cap."""
        ...

    def release(self, claims: Sequence[Claim]) -> None: ...

    def settle(self, reservation_id: str, actual_micros: int) -> bool:
        """The booked ad was billed `actual_micros` (0 when shown but not charged); False if nothing was booked."""
        ...

    def keep(self, reservation_id: str) -> bool:
        """The booked ad was shown: what it reserved on its day's budget stands as that day's spend, the rest is
        given back; False if nothing was booked."""
        ...

    def release_held(self, reservation_id: str) -> bool:
        """Give back a booked reservation whose ad will not be shown; False if nothing was booked."""
        ...

    def expire(self, now: float, limit: int = 1000) -> int:
        """Give back booked reservations whose time has passed; how many."""
        ...

    def outstanding(self) -> Outstanding: ...

    def give_back(self, refunds: Sequence[GiveBack], through: int) -> int:
        """Lower the counters by each refund not given back yet (never below zero or what booked reservations
        hold on them), then note that every refund up to ledger entry `through` has been; how many were new."""
        ...

    def refunds_through(self) -> int | None:
        """The ledger entry up to which refunds have been given back; None when these counters do not know."""
        ...

    def close(self) -> None: ...

    # The same operations for a request in an event loop; shared counters answer them without blocking it.
    async def reserve_async(self, claims: Sequence[Claim], hold: Hold | None = None) -> int: ...

    async def get_many_async(self, keys: Sequence[str]) -> list[int]: ...

    async def release_held_async(self, reservation_id: str) -> bool: ...


class MemoryCounters:
    shared = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, int] = {}
        self._expiry: dict[str, float] = {}
        self._writes = 0
        self._book: dict[str, tuple[list[tuple[str, int, bool]], float]] = {}
        self._deadlines: list[tuple[float, str]] = []  # a heap; entries of settled ids are skipped
        self._refunds_through: int | None = None
        self._given_back: dict[str, list[tuple[int, int, float]]] = {}  # key -> (refund id, micros, monotonic)

    def get(self, key: str) -> int:
        return self._values.get(key, 0)

    def get_many(self, keys: Sequence[str]) -> list[int]:
        values = self._values
        return [values.get(key, 0) for key in keys]

    def reserve(self, claims: Sequence[Claim], hold: Hold | None = None) -> int:
        with self._lock:
            values = self._values
            current = []
            for position, claim in enumerate(claims):
                value = values.get(claim.key, 0)
                if value < claim.floor:
                    value = max(value, claim.floor - self._given_back_since(claim.key, claim.floor_as_of))
                if claim.cap is not None and value + claim.amount > claim.cap:
                    return position
                current.append(value)
            now = time.monotonic()
            for claim, value in zip(claims, current, strict=True):
                values[claim.key] = value + claim.amount
                if claim.ttl_seconds:
                    self._expiry[claim.key] = now + claim.ttl_seconds
            if hold is not None:
                booked = _booked_claims(claims)
                if booked:
                    self._book[hold.reservation_id] = (booked, hold.expires_at)
                    heapq.heappush(self._deadlines, (hold.expires_at, hold.reservation_id))
            self._writes += 1
            if self._writes % 10_000 == 0:
                self._sweep(now)
            return -1

    def _given_back_since(self, key: str, as_of: int) -> int:
        records = self._given_back.get(key)
        return sum(micros for refund_id, micros, _ in records if refund_id > as_of) if records else 0

    def give_back(self, refunds: Sequence[GiveBack], through: int) -> int:
        with self._lock:
            done = self._refunds_through or 0
            due = [r for r in refunds if r.refund_id > done]
            if due:
                now = time.monotonic()
                held = self._held({key for refund in due for key, _ in refund.amounts})
                for key, records in list(self._given_back.items()):
                    fresh = [r for r in records if r[2] >= now - GIVEN_BACK_FLOOR_SECONDS]
                    if fresh:
                        self._given_back[key] = fresh
                    else:
                        del self._given_back[key]
                values = self._values
                for refund in due:
                    for key, micros in refund.amounts:
                        value = values.get(key)
                        if value is not None:
                            values[key] = max(value - micros, min(value, held.get(key, 0)))
                        self._given_back.setdefault(key, []).append((refund.refund_id, micros, now))
            self._refunds_through = max(done, through)
            return len(due)

    def refunds_through(self) -> int | None:
        return self._refunds_through

    def _held(self, keys: set[str]) -> dict[str, int]:
        """What booked reservations hold on `keys`."""
        held: dict[str, int] = {}
        for booked, _ in self._book.values():
            for key, amount, _money in booked:
                if key in keys:
                    held[key] = held.get(key, 0) + amount
        return held

    def _end(self, reservation_id: str, actual_micros: int | None) -> bool:
        entry = self._book.pop(reservation_id, None)
        if entry is None:
            return False
        values = self._values
        for key, amount, money in entry[0]:
            if key not in values:
                continue
            if actual_micros is None:
                values[key] = max(0, values[key] - amount)
            elif money:
                values[key] = max(0, values[key] - amount + actual_micros)
        return True

    def settle(self, reservation_id: str, actual_micros: int) -> bool:
        with self._lock:
            return self._end(reservation_id, actual_micros)

    def keep(self, reservation_id: str) -> bool:
        with self._lock:
            entry = self._book.pop(reservation_id, None)
            if entry is None:
                return False
            values = self._values
            for key, amount, _ in entry[0]:
                if key in values and not key.startswith(DAY_PREFIX):
                    values[key] = max(0, values[key] - amount)
            return True

    def release_held(self, reservation_id: str) -> bool:
        with self._lock:
            return self._end(reservation_id, None)

    def expire(self, now: float, limit: int = 1000) -> int:
        expired = 0
        with self._lock:
            while self._deadlines and self._deadlines[0][0] <= now and expired < limit:
                _, reservation_id = heapq.heappop(self._deadlines)
                entry = self._book.get(reservation_id)
                if entry is not None and entry[1] <= now and self._end(reservation_id, None):
                    expired += 1
        return expired

    def outstanding(self) -> Outstanding:
        with self._lock:
            micros = sum(amount for booked, _ in self._book.values() for key, amount, money in booked
                         if money and key.startswith("a:"))
            return Outstanding(len(self._book), micros)

    def release(self, claims: Sequence[Claim]) -> None:
        with self._lock:
            for claim in claims:
                if claim.key in self._values:
                    self._values[claim.key] = max(0, self._values[claim.key] - claim.amount)

    def export_delivery(self) -> dict[str, tuple[int, float]]:
        """The delivery counters: {key: (value, wall-clock expiry or 0)}, less what unshown reservations still hold
        on them (their ads may never be shown, and their book is not saved)."""
        with self._lock:
            held: dict[str, int] = {}
            for booked, _ in self._book.values():
                for key, amount, _money in booked:
                    held[key] = held.get(key, 0) + amount
            monotonic, wall = time.monotonic(), time.time()
            out = {}
            for key, value in self._values.items():
                if key.startswith(DELIVERY_PREFIXES) and value - held.get(key, 0) > 0:
                    expiry = self._expiry.get(key)
                    out[key] = (value - held.get(key, 0), wall + (expiry - monotonic) if expiry else 0.0)
            return out

    def import_delivery(self, saved: dict[str, tuple[int, float]], *, refunds_through: int | None = None) -> int:
        """Take back saved delivery counters (the larger value wins; expired ones are left out); how many.
        `refunds_through`: the last refund given back on them when they were saved."""
        taken = 0
        with self._lock:
            if refunds_through is not None:
                self._refunds_through = refunds_through
            monotonic, wall = time.monotonic(), time.time()
            for key, (value, expires) in saved.items():
                if not key.startswith(DELIVERY_PREFIXES) or (expires and expires <= wall):
                    continue
                if int(value) > self._values.get(key, 0):
                    self._values[key] = int(value)
                    if expires:
                        self._expiry[key] = monotonic + (expires - wall)
                    taken += 1
        return taken

    def _sweep(self, now: float) -> None:
        expired = [key for key, at in self._expiry.items() if at <= now]
        for key in expired:
            self._values.pop(key, None)
            self._expiry.pop(key, None)

    def close(self) -> None:
        pass

    async def reserve_async(self, claims: Sequence[Claim], hold: Hold | None = None) -> int:
        return self.reserve(claims, hold)

    async def get_many_async(self, keys: Sequence[str]) -> list[int]:
        return self.get_many(keys)

    async def release_held_async(self, reservation_id: str) -> bool:
        return self.release_held(reservation_id)


# KEYS: the counters, then the book (a hash), its deadlines (a sorted set) and the refunds given back (a hash, see
# _GIVE_BACK). ARGV, five per counter: amount, cap (-1 = none), floor, ttl seconds (0 = keep), the ledger entry id
# the floor was read at; then the reservation id ("" = not booked), its deadline and what it holds, encoded by
# `_encode_booked`. Returns 0 when every claim was applied, else the 1-based position of the first that did not fit.
_RESERVE = """
local n = #KEYS - 3
local values = {}
for i = 1, n do
  local base = (i - 1) * 5
  local value = tonumber(redis.call('GET', KEYS[i]) or '0')
  local floor = tonumber(ARGV[base + 3])
  if value < floor then
    local given = redis.call('HGET', KEYS[n + 3], KEYS[i])
    if given then
      local as_of = tonumber(ARGV[base + 5])
      for id, micros in string.gmatch(given, '(%d+) (%d+) %d+\\n') do
        if tonumber(id) > as_of then floor = floor - tonumber(micros) end
      end
    end
    if value < floor then value = floor end
  end
  local cap = tonumber(ARGV[base + 2])
  if cap >= 0 and value + tonumber(ARGV[base + 1]) > cap then return i end
  values[i] = value
end
for i = 1, n do
  local base = (i - 1) * 5
  local ttl = tonumber(ARGV[base + 4])
  local updated = values[i] + tonumber(ARGV[base + 1])
  if ttl > 0 then
    redis.call('SET', KEYS[i], updated, 'EX', ttl)
  else
    redis.call('SET', KEYS[i], updated)
  end
end
local rid = ARGV[n * 5 + 1]
if rid ~= '' then
  redis.call('HSET', KEYS[n + 1], rid, ARGV[n * 5 + 3])
  redis.call('ZADD', KEYS[n + 2], ARGV[n * 5 + 2], rid)
end
return 0
"""

# Refunds. KEYS: the refunds given back (a hash: per counter, lines "refund id, micros, epoch seconds" that lower
# floors read before them) and the ledger entry up to which refunds have been given back. ARGV: the key prefix,
# that entry after this call, the time, how long a line lowers floors, then four per counter of a refund: the
# refund's id, the counter, the micros, what booked reservations hold on it. A refund up to the mark is skipped:
# some process gave it back already. Returns how many refunds were given back.
_GIVE_BACK = """
local prefix = ARGV[1]
local done = tonumber(redis.call('GET', KEYS[2]) or '0')
local now = tonumber(ARGV[3])
local horizon = now - tonumber(ARGV[4])
local given = {}
local count = 0
for i = 5, #ARGV, 4 do
  local id = tonumber(ARGV[i])
  if id > done then
    if not given[id] then
      given[id] = true
      count = count + 1
    end
    local full = prefix .. ARGV[i + 1]
    local micros = tonumber(ARGV[i + 2])
    local value = redis.call('GET', full)
    if value then
      value = tonumber(value)
      local held = tonumber(ARGV[i + 3])
      if held > value then held = value end
      local updated = value - micros
      if updated < held then updated = held end
      redis.call('SET', full, updated, 'KEEPTTL')
    end
    local lines = redis.call('HGET', KEYS[1], full) or ''
    redis.call('HSET', KEYS[1], full, lines .. ARGV[i] .. ' ' .. ARGV[i + 2] .. ' ' .. math.floor(now) .. '\\n')
  end
end
if count > 0 then
  local all = redis.call('HGETALL', KEYS[1])
  for j = 1, #all, 2 do
    local kept = ''
    for line, at in string.gmatch(all[j + 1], '(%d+ %d+ (%d+)\\n)') do
      if tonumber(at) >= horizon then kept = kept .. line end
    end
    if kept == '' then redis.call('HDEL', KEYS[1], all[j]) elseif kept ~= all[j + 1] then
      redis.call('HSET', KEYS[1], all[j], kept)
    end
  end
end
if tonumber(ARGV[2]) > done then redis.call('SET', KEYS[2], ARGV[2]) end
return count
"""

# Ends booked reservations. KEYS: the book, its deadlines. ARGV: the key prefix, the mode ("settle", "keep",
# "release" or "expire"), then for settle/keep/release one id and the actual charge, for expire the time and a
# limit (it answers how many it ended and how many deadlines were due). "keep" ends the booking, leaving what it
# added to the day's budget and giving back the rest.
_END = r"""
local prefix = ARGV[1]
local mode = ARGV[2]
local function finish(rid, actual)
  local held = redis.call('HGET', KEYS[1], rid)
  if not held then return 0 end
  redis.call('HDEL', KEYS[1], rid)
  redis.call('ZREM', KEYS[2], rid)
  for key, amount, money in string.gmatch(held, '([^\t]+)\t(%d+)\t(%d)\n') do
    local full = prefix .. key
    local value = redis.call('GET', full)
    if value then
      local updated = tonumber(value)
      if actual == nil then
        updated = updated - tonumber(amount)
      elseif money == '1' then
        updated = updated - tonumber(amount) + actual
      end
      if updated < 0 then updated = 0 end
      redis.call('SET', full, updated, 'KEEPTTL')
    end
  end
  return 1
end
if mode == 'expire' then
  local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[3], 'LIMIT', 0, tonumber(ARGV[4]))
  local ended = 0
  for _, rid in ipairs(due) do
    ended = ended + finish(rid, nil)
    redis.call('ZREM', KEYS[2], rid)  -- a deadline whose hold already ended is dropped too
  end
  return {ended, #due}
elseif mode == 'settle' then
  return finish(ARGV[3], tonumber(ARGV[4]))
elseif mode == 'keep' then
  local held = redis.call('HGET', KEYS[1], ARGV[3])
  if not held then return 0 end
  redis.call('HDEL', KEYS[1], ARGV[3])
  redis.call('ZREM', KEYS[2], ARGV[3])
  for key, amount in string.gmatch(held, '([^\t]+)\t(%d+)\t%d\n') do
    local full = prefix .. key
    local value = redis.call('GET', full)
    if value and string.sub(key, 1, 2) ~= 'd:' then
      local updated = tonumber(value) - tonumber(amount)
      if updated < 0 then updated = 0 end
      redis.call('SET', full, updated, 'KEEPTTL')
    end
  end
  return 1
else
  return finish(ARGV[3], nil)
end
"""


def _encode_booked(booked: list[tuple[str, int, bool]]) -> str:
    return "".join(f"{key}\t{amount}\t{int(money)}\n" for key, amount, money in booked)

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

        # Ad decisions wait for Redis a quarter second at most, then go without; the sweeper and the operators'
        # figures run off the request path and may wait for a long expiry script on a busy machine.
        self._redis = client or redis.Redis.from_url(url, socket_timeout=0.25, socket_connect_timeout=0.5,
                                                     health_check_interval=30)
        self._patient = client or redis.Redis.from_url(url, socket_timeout=10.0, socket_connect_timeout=2.0,
                                                       health_check_interval=30)
        self._prefix = prefix
        self._reserve = self._redis.register_script(_RESERVE)
        self._release = self._redis.register_script(_RELEASE)
        self._end = self._redis.register_script(_END)
        self._give_back = self._patient.register_script(_GIVE_BACK)
        # Beside the counters' prefix, not under it: whoever lists the counters finds only counters.
        book = prefix.rstrip(":") + "-book"
        self._book_keys = [book, book + ":deadlines"]
        refunds = prefix.rstrip(":") + "-refunds"
        self._refund_keys = [refunds, refunds + ":through"]
        self._pipelined = PipelinedRedis(url, socket_timeout=0.25, socket_connect_timeout=0.5) \
            if client is None else None

    def get_many(self, keys: Sequence[str]) -> list[int]:
        if not keys:
            return []
        raw = self._redis.mget([self._prefix + k for k in keys])
        return [int(v) if v is not None else 0 for v in raw]

    def _reserve_command(self, claims: Sequence[Claim], hold: Hold | None) -> tuple[list[str], list[Any]]:
        prefix = self._prefix
        keys = [prefix + c.key for c in claims] + self._book_keys + self._refund_keys[:1]
        args: list[Any] = []
        for c in claims:
            args += [c.amount, -1 if c.cap is None else c.cap, c.floor, c.ttl_seconds, c.floor_as_of]
        booked = _booked_claims(claims) if hold is not None else []
        if hold is not None and booked:
            args += [hold.reservation_id, hold.expires_at, _encode_booked(booked)]
        else:
            args += ["", 0, ""]
        return keys, args

    def reserve(self, claims: Sequence[Claim], hold: Hold | None = None) -> int:
        keys, args = self._reserve_command(claims, hold)
        return int(self._reserve(keys=keys, args=args)) - 1

    async def reserve_async(self, claims: Sequence[Claim], hold: Hold | None = None) -> int:
        if self._pipelined is None:
            return self.reserve(claims, hold)
        keys, args = self._reserve_command(claims, hold)
        return int(await self._pipelined.run_script(_RESERVE, keys, args)) - 1

    async def get_many_async(self, keys: Sequence[str]) -> list[int]:
        if self._pipelined is None or not keys:
            return self.get_many(keys)
        raw = await self._pipelined.execute("MGET", *[self._prefix + k for k in keys])
        return [int(v) if v is not None else 0 for v in raw]

    async def release_held_async(self, reservation_id: str) -> bool:
        if self._pipelined is None:
            return self.release_held(reservation_id)
        return bool(await self._pipelined.run_script(_END, self._book_keys,
                                                     [self._prefix, "release", reservation_id, 0]))

    def settle(self, reservation_id: str, actual_micros: int) -> bool:
        return bool(self._end(keys=self._book_keys, args=[self._prefix, "settle", reservation_id, actual_micros]))

    def keep(self, reservation_id: str) -> bool:
        return bool(self._end(keys=self._book_keys, args=[self._prefix, "keep", reservation_id, 0]))

    def release_held(self, reservation_id: str) -> bool:
        return bool(self._end(keys=self._book_keys, args=[self._prefix, "release", reservation_id, 0]))

    def expire(self, now: float, limit: int = 1000) -> int:
        # In short scripts: Redis runs one script at a time, and serving's calls wait behind it with a timeout of
        # a fraction of a second, so a sweep of thousands of holds is never one long script.
        expired = scanned = 0
        while scanned < limit:
            step = min(EXPIRE_SCRIPT_HOLDS, limit - scanned)
            ended, due = self._end(keys=self._book_keys, args=[self._prefix, "expire", now, step],
                                   client=self._patient)
            expired, scanned = expired + int(ended), scanned + int(due)
            if int(due) < step:
                break
        return expired

    def outstanding(self) -> Outstanding:
        import redis

        try:
            count = int(self._patient.hlen(self._book_keys[0]))
            book = self._patient.hvals(self._book_keys[0]) if count <= 10_000 else []
        except redis.RedisError as exc:
            raise Unavailable("the reservation book in Redis cannot be read now; retry") from exc
        micros = 0
        if count <= 10_000:  # summed exactly while cheap; past that the count is what an operator watches
            for held in book:
                text = held.decode() if isinstance(held, bytes) else str(held)
                for line in text.splitlines():
                    key, amount, money = line.split("\t")
                    if money == "1" and key.startswith("a:"):
                        micros += int(amount)
        return Outstanding(count, micros)

    def give_back(self, refunds: Sequence[GiveBack], through: int) -> int:
        done = (self.refunds_through() or 0) if refunds else 0
        due = [r for r in refunds if r.refund_id > done]
        held = self._held({key for refund in due for key, _ in refund.amounts}) if due else {}
        args: list[Any] = [self._prefix, through, time.time(), GIVEN_BACK_FLOOR_SECONDS]
        for refund in due:
            for key, micros in refund.amounts:
                args += [refund.refund_id, key, micros, held.get(key, 0)]
        return int(self._give_back(keys=self._refund_keys, args=args, client=self._patient))

    def refunds_through(self) -> int | None:
        value = self._patient.get(self._refund_keys[1])
        return int(value) if value is not None else None

    def _held(self, keys: set[str]) -> dict[str, int]:
        """What booked reservations hold on `keys`, read a page of the book at a time rather than in one script that
        would stop every other command (refunds are rare; reservations booked or ended meanwhile are missed)."""
        held: dict[str, int] = {}
        for _, raw in self._patient.hscan_iter(self._book_keys[0], count=10_000):
            text = raw.decode() if isinstance(raw, bytes) else str(raw)
            for line in text.splitlines():
                key, amount, _money = line.split("\t")
                if key in keys:
                    held[key] = held.get(key, 0) + int(amount)
        return held

    def release(self, claims: Sequence[Claim]) -> None:
        if claims:
            self._release(keys=[self._prefix + c.key for c in claims], args=[c.amount for c in claims])

    def close(self) -> None:
        self._redis.close()
        self._patient.close()
        if self._pipelined is not None:
            self._pipelined.close()


def make_counters(redis_url: str | None, prefix: str = "adstack:") -> Counters:
    """`prefix`: the deployment's (settings.redis_prefix); the counters' keys are under `<prefix>serving:`."""
    return RedisCounters(redis_url, prefix=f"{prefix}serving:") if redis_url else MemoryCounters()
