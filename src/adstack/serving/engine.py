"""The decision: from one ad opportunity to the ads that fill it, with their prices and reservations.

Order of work per request:

1. the targeting index gives the candidate ad groups (posting-list intersection);
2. reserved tiers first: CPT bookings, rotated so concurrent bookings of a slot share it evenly, then guaranteed
   CPM bookings that are behind their even delivery schedule, the furthest behind first;
3. the performance auction over the rest by eCPM, best score bucket first, stopping once the remaining buckets
   cannot change the outcome; each candidate is checked (schedule, device rules, account funds, format, budget,
   pacing, frequency) and priced with its best fitting creative;
4. each winner reserves its price against budgets, account funds and frequency in one atomic counter operation; a
   refused reservation (another process took the last of a budget) passes the slot to the next candidate;
5. the winner's creative assets are chosen by Thompson sampling (dynamic creative).

Nothing here touches the database: the engine reads one `ServingState` reference (snapshot, rates, score order,
exchange rates), which the refresher replaces whole.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import math
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from pyroaring import AbstractBitMap, BitMap

from adstack.core.security import random_token
from adstack.serving import eligibility
from adstack.serving.counters import Claim, Counters, Hold
from adstack.serving.dynamic import choose_combination
from adstack.serving.fx import FxRates
from adstack.serving.index import Plan, TargetingIndex
from adstack.serving.pacing import TrafficLearner, booking_allowance, even_allowance_micros
from adstack.serving.prediction import OutcomeCounter, RateModel
from adstack.serving.ranking import AuctionOrder, MinimumPrices, clearing_price_micros, ecpm_usd_micros
from adstack.serving.request import AdRequest, Slot
from adstack.serving.reservations import account_key, day_key, total_key
from adstack.serving.snapshot import (
    CPA,
    CPC,
    CPT,
    GUARANTEED_CPM,
    AdGroupSnap,
    AdSpaceSnap,
    AssetCombination,
    CreativeSnap,
    Snapshot,
)

log = logging.getLogger("adstack.serving")

DAY_KEY_TTL = 3 * 86400
TIER_CPT = "cpt"
TIER_GUARANTEED = "guaranteed_cpm"
TIER_AUCTION = "auction"
MAX_RESERVE_ATTEMPTS = 4  # per slot: refused reservations before the slot goes unfilled
PACING_BLOCK_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class ServingState:
    """Everything a decision reads, swapped as one reference."""

    snapshot: Snapshot
    rates: RateModel
    order: AuctionOrder

    @property
    def fx(self) -> FxRates:
        return self.snapshot.fx

    @classmethod
    def build(cls, snapshot: Snapshot, rates: RateModel | None = None) -> ServingState:
        rates = rates or RateModel()
        return cls(snapshot, rates, AuctionOrder(snapshot, rates))


@dataclass(frozen=True, slots=True)
class Decision:
    ad_group: AdGroupSnap
    creative: CreativeSnap
    combination: AssetCombination
    tier: str
    ecpm_usd_micros: float  # the value of the slot to us, USD micros per 1,000 impressions
    price_micros: int  # clearing price: account currency, in the unit of the bid type (see ranking)
    bid_usd_cpm_micros: float  # what this ad is worth as a CPM in USD micros (an exchange bid)
    impression_id: str
    pctr: float
    pcvr: float
    claims: tuple[Claim, ...]
    ad_space: AdSpaceSnap | None


@dataclass(frozen=True, slots=True)
class Floor:
    """One auction candidate's own floor, where the caller prices candidates apart (an exchange's deals and
    auction types): USD micros per 1,000 impressions."""

    ecpm: float
    fixed: bool = False  # a fixed price (a fixed-price deal): the candidate pays exactly this, whoever follows
    # What the candidate pays exactly otherwise, whoever follows: our bid on a first-price exchange, which charges
    # it. None: the second price.
    price: float | None = None

    @property
    def exact(self) -> float | None:
        """The price the candidate pays whoever follows, or None for the second price."""
        return self.ecpm if self.fixed else self.price


# Per auction candidate, given its eCPM: its floor, or None when it may not take the slot at all.
FloorOf = Callable[[AdGroupSnap, float], Floor | None]


@dataclass(slots=True)
class _Candidate:
    ordinal: int
    group: AdGroupSnap
    creatives: list[CreativeSnap]
    creative: CreativeSnap
    ecpm: float
    pctr: float
    pcvr: float
    floor: float
    exact: float | None = None  # the price it pays whoever follows (`Floor.exact`), USD micros CPM


@dataclass(frozen=True, slots=True)
class ReserveStep:
    """Ask the counters to apply `claims` (see `Counters.reserve`); the answer is the failed claim's index or -1."""

    claims: tuple[Claim, ...]
    hold: Hold | None


@dataclass(frozen=True, slots=True)
class ReadStep:
    """Ask the counters for the values of `keys`."""

    keys: list[str]


# The decision as a generator of counter operations: the same code runs against in-process counters (answered at
# once, `decide`) and against Redis (awaited, `decide_async`), where the event loop serves other requests while
# the round trip is on its way and concurrent requests' operations travel in one pipeline.
Steps = Generator[ReserveStep | ReadStep, Any, list[Decision]]
Step = Generator[ReserveStep | ReadStep, Any, Any]

_TOKEN_CHARS = 16  # random_token(12)
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def new_impression_id(combination_key: str = "") -> str:
    """Unguessable, and ends with the key of the asset combination shown, so outcomes can credit it."""
    key = combination_key if combination_key and len(combination_key) <= 40 and set(combination_key) <= _SAFE \
        else hashlib.sha256(combination_key.encode()).hexdigest()[:16]
    return random_token(12) + key


def combination_of(impression_id: str) -> str | None:
    """The asset combination key an impression id carries (see `new_impression_id`)."""
    return impression_id[_TOKEN_CHARS:] if len(impression_id) > _TOKEN_CHARS else None


class DecisionEngine:
    def __init__(self, state: ServingState, *, counters: Counters, outcomes: OutcomeCounter | None = None,
                 traffic: TrafficLearner | None = None, audiences: Any = None, auction_type: str = "second_price",
                 rng_seed: int | None = None, minimum_prices: MinimumPrices | None = None):
        import random

        from adstack.core.settings import get_settings

        self.state = state
        self.minimum_prices = minimum_prices or MinimumPrices.from_settings(get_settings())
        self.counters = counters
        self.outcomes = outcomes or OutcomeCounter()
        self.traffic = traffic or TrafficLearner()
        self.audiences = audiences
        self.auction_type = auction_type
        self._rng = random.Random(rng_seed)
        self._block_lock = threading.Lock()
        self._blocked_until: dict[int, float] = {}  # ad group id -> epoch seconds
        self._blocked_cache: tuple[Snapshot, int, BitMap] | None = None  # (snapshot, generation, ordinals)
        self._blocked_generation = 0
        self._next_expiry = math.inf
        self._last_counter_failure_log = 0.0
        self.sdk_hold_seconds = 30 * 60.0

    # ---------- state ----------

    def swap(self, state: ServingState) -> None:
        """Serve from a new state. Remembered refusals are dropped: a raised budget or a top-up may lift them."""
        self.state = state
        with self._block_lock:
            if self._blocked_until:
                self._blocked_until.clear()
                self._next_expiry = math.inf
                self._blocked_generation += 1

    def block(self, ad_group_id: int, until: float) -> None:
        """Skip an ad group until `until` (epoch seconds): its budget, pacing or booking refused a reservation."""
        with self._block_lock:
            self._blocked_until[ad_group_id] = until
            self._next_expiry = min(self._next_expiry, until)
            self._blocked_generation += 1

    def _blocked_ordinals(self, snapshot: Snapshot, now_ts: float) -> BitMap | None:
        if not self._blocked_until:
            return None
        if now_ts >= self._next_expiry:
            with self._block_lock:
                for group_id in [g for g, until in self._blocked_until.items() if until <= now_ts]:
                    del self._blocked_until[group_id]
                self._next_expiry = min(self._blocked_until.values(), default=math.inf)
                self._blocked_generation += 1
        cache = self._blocked_cache
        if cache is not None and cache[0] is snapshot and cache[1] == self._blocked_generation:
            return cache[2]
        with self._block_lock:
            generation = self._blocked_generation
            ids = list(self._blocked_until)
        blocked = BitMap(o for o in (snapshot.ordinal_of(g) for g in ids) if o is not None)
        self._blocked_cache = (snapshot, generation, blocked)
        return blocked

    # ---------- the decision ----------

    def decide(self, request: AdRequest, *, space: AdSpaceSnap | None = None,
               slot_filter: Callable[[AdGroupSnap], bool] | None = None,
               floor_of: FloorOf | None = None) -> list[Decision]:
        """The ads for one opportunity, waiting for the counters in this thread.

        `floor_of` gives each auction candidate its own floor (at least `request.floor_micros`, which then is the
        lowest any candidate may face) and says which may not bid; without it the request's floor is everyone's."""
        counters = self.counters
        steps = self._decide(request, space, slot_filter, floor_of)
        try:
            step = next(steps)
            while True:
                try:
                    reply = counters.reserve(step.claims, step.hold) if isinstance(step, ReserveStep) \
                        else counters.get_many(step.keys)
                except Exception as exc:
                    step = steps.throw(exc)
                else:
                    step = steps.send(reply)
        except StopIteration as done:
            return done.value

    async def decide_async(self, request: AdRequest, *, space: AdSpaceSnap | None = None,
                           slot_filter: Callable[[AdGroupSnap], bool] | None = None,
                           floor_of: FloorOf | None = None) -> list[Decision]:
        """The same decision, awaiting shared counters instead of blocking the event loop on them."""
        counters = self.counters
        if not counters.shared:
            return self.decide(request, space=space, slot_filter=slot_filter, floor_of=floor_of)
        steps = self._decide(request, space, slot_filter, floor_of)
        try:
            step = next(steps)
            while True:
                try:
                    reply = await (counters.reserve_async(step.claims, step.hold) if isinstance(step, ReserveStep)
                                   else counters.get_many_async(step.keys))
                except Exception as exc:
                    step = steps.throw(exc)
                else:
                    step = steps.send(reply)
        except StopIteration as done:
            return done.value

    def _decide(self, request: AdRequest, space: AdSpaceSnap | None,
                slot_filter: Callable[[AdGroupSnap], bool] | None, floor_of: FloorOf | None = None) -> Steps:
        state = self.state
        snapshot = state.snapshot
        now = request.now
        now_ts = now.timestamp()
        self.traffic.observe(now)
        times = eligibility.LocalTimes(now)
        blocked = self._blocked_ordinals(snapshot, now_ts)
        count = max(1, request.count)
        floor = float(max(request.floor_micros, space.reserve_price_micros if space else 0))
        decisions: list[Decision] = []
        taken: set[int] = set()

        plan = snapshot.index.plan(request)
        if state.order.reserved:
            reserved = plan.candidates(within=state.order.reserved)
            if blocked is not None and reserved:
                reserved -= blocked
            if reserved:
                for decision in (yield from self._reserved(request, reserved, plan, state, times, space,
                                                           slot_filter, count)):
                    decisions.append(decision)
                    taken.add(decision.ad_group.id)
        if len(decisions) < count:
            decisions += yield from self._auction(request, plan, blocked, state, times, space, floor,
                                                  count - len(decisions), taken, slot_filter, floor_of)
        return decisions

    # ---------- per-candidate checks ----------

    def _eligible(self, group: AdGroupSnap, request: AdRequest, state: ServingState,
                  times: eligibility.LocalTimes, slot_filter: Callable[[AdGroupSnap], bool] | None,
                  ) -> list[CreativeSnap] | None:
        if eligibility.check_schedule(group.schedule, times) is not None:
            return None
        unpaid = state.snapshot.unpaid_slots.get(group.id)
        if unpaid and eligibility.check_slot_paid(group.schedule, times, unpaid) is not None:
            return None
        account = state.snapshot.accounts.get(group.account_id)
        if account is None or account.available_micros <= 0:
            return None
        if eligibility.check_advertiser(group, request) is not None:
            return None
        if eligibility.check_device_rules(group, request, categories=state.snapshot.package_categories,
                                          audiences=self.audiences) is not None:
            return None
        if slot_filter is not None and not slot_filter(group):
            return None
        if group.frequency_cap is not None and request.device_key is None:
            return None  # a cap per device cannot hold for a device we cannot tell apart (no or a zeroed id)
        creatives = eligibility.fitting_creatives(group, request.slot)
        if not creatives:
            return None
        if not self.counters.shared and not self._local_counters_allow(group, request, times):
            return None
        return creatives

    def _local_counters_allow(self, group: AdGroupSnap, request: AdRequest, times: eligibility.LocalTimes) -> bool:
        """A cheap look at in-process counters, so exhausted or capped ad groups are skipped before pricing."""
        day = times.at(group.schedule.time_zone).date()
        keys = [_day_key(group.id, day)]
        if group.frequency_cap is not None and request.device_key is not None:
            keys.append(_frequency_key(group.id, request.device_key, day))
        values = self.counters.get_many(keys)
        ledger = self.state.snapshot.ledger_spend.get(group.id)
        spent_today = max(values[0], ledger.today_micros if ledger and ledger.day == day else 0)
        if group.daily_budget_micros is not None and spent_today >= group.daily_budget_micros:
            return False
        return not (len(values) > 1 and group.frequency_cap is not None and values[1] >= group.frequency_cap)

    # ---------- reserved tiers ----------

    def _reserved(self, request: AdRequest, ordinals: AbstractBitMap, plan: Plan, state: ServingState,
                  times: eligibility.LocalTimes, space: AdSpaceSnap | None,
                  slot_filter: Callable[[AdGroupSnap], bool] | None, slots: int) -> Steps:
        snapshot = state.snapshot
        cpt: list[tuple[AdGroupSnap, list[CreativeSnap]]] = []
        guaranteed: list[tuple[AdGroupSnap, list[CreativeSnap]]] = []
        for ordinal in ordinals:
            if not plan.admits(ordinal):
                continue
            group = snapshot.by_ordinal[ordinal]
            creatives = self._eligible(group, request, state, times, slot_filter)
            if creatives is None:
                continue
            (cpt if group.bid_type == CPT else guaranteed).append((group, creatives))
        out: list[Decision] = []
        if cpt:
            # Even share of voice among concurrent bookings: the one shown least today goes first.
            days = [times.at(g.schedule.time_zone).date() for g, _ in cpt]
            try:
                shown = yield ReadStep([_delivered_key(g.id, d) for (g, _), d in zip(cpt, days, strict=True)])
            except Exception:  # the shared counters are unreachable: the reservation would fail too
                self._log_counter_failure()
                return out
            order = sorted(range(len(cpt)), key=lambda i: (shown[i], self._rng.random()))
            for i in order:
                if len(out) >= slots:
                    return out
                group, creatives = cpt[i]
                shown_today = Claim(_delivered_key(group.id, days[i]), 1, ttl_seconds=DAY_KEY_TTL)
                decision = yield from self._commit(request, state, times, space, group, creatives, tier=TIER_CPT,
                                                   ecpm=0.0, price=group.bid_micros, extra=(shown_today,))
                if decision is not None:
                    out.append(decision)
        if guaranteed:
            now = times.now
            try:
                delivered = yield ReadStep([_booked_key(g.id) for g, _ in guaranteed])
            except Exception:  # as above
                self._log_counter_failure()
                return out
            # What billing counted is delivered at least: the in-memory count starts from it after a restart.
            billed = [_billed_units(snapshot, g.id) for g, _ in guaranteed]
            behind: list[tuple[float, int]] = []
            for i, (group, _) in enumerate(guaranteed):
                allowance = self._booking_allowance(group, now)
                shown = max(delivered[i], billed[i])
                if shown < allowance:
                    behind.append((shown / max(allowance, 1), i))
            for _, i in sorted(behind):
                if len(out) >= slots:
                    return out
                group, creatives = guaranteed[i]
                allowance = self._booking_allowance(group, now)
                booked = Claim(_booked_key(group.id), 1, cap=allowance, floor=billed[i])
                bid_usd = state.fx.to_usd(group.bid_micros, group.currency)
                decision = yield from self._commit(request, state, times, space, group, creatives,
                                                   tier=TIER_GUARANTEED, ecpm=bid_usd, price=group.bid_micros,
                                                   extra=(booked,))
                if decision is not None:
                    out.append(decision)
        return out

    def _booking_allowance(self, group: AdGroupSnap, now: datetime) -> int:
        if group.booked_impressions is None:
            # A booking without a volume is paced by its budgets alone.
            return 2**62
        return booking_allowance(group.booked_impressions, group.schedule.start, group.schedule.end, now)

    # ---------- the auction ----------

    def _auction(self, request: AdRequest, plan: Plan, blocked: AbstractBitMap | None, state: ServingState,
                 times: eligibility.LocalTimes, space: AdSpaceSnap | None, floor: float, slots: int, taken: set[int],
                 slot_filter: Callable[[AdGroupSnap], bool] | None, floor_of: FloorOf | None = None) -> Steps:
        snapshot = state.snapshot
        index = snapshot.index
        rates = state.rates
        fx = state.fx
        placement = request.placement_type or ""
        need = slots + 1  # the runner-up sets the second price
        best: list[float] = []  # min-heap of the top `need` eCPMs found so far
        found: list[_Candidate] = []
        suffix = state.order.suffix
        reserved = state.order.reserved
        minimums = self.minimum_prices
        lazy = bool(plan.lazy)
        for ordinal in self._auction_ordinals(plan, index, blocked, suffix, floor, need, best):
            remaining = suffix[ordinal]
            if remaining < floor or remaining <= 0 or (len(best) >= need and best[0] >= remaining):
                break  # nothing from here on can win a slot or set a price
            if ordinal in reserved or (lazy and not plan.admits(ordinal)):
                continue
            group = snapshot.by_ordinal[ordinal]
            if group.id in taken:
                continue
            creatives = self._eligible(group, request, state, times, slot_filter)
            if creatives is None:
                continue
            bid_usd = fx.to_usd(group.bid_micros, group.currency)
            if not minimums.admits(group.bid_type, bid_usd):
                continue  # like a reserve price: it could only clear below the platform minimum
            top: _Candidate | None = None
            for creative in creatives:
                pctr, pcvr = rates.rates(placement, group.campaign_id, group.id, creative.id)
                ecpm = ecpm_usd_micros(group.bid_type, bid_usd, pctr, pcvr)
                if top is None or ecpm > top.ecpm:
                    top = _Candidate(ordinal, group, creatives, creative, ecpm, pctr, pcvr, floor)
            if top is None or top.ecpm <= 0:
                continue
            if floor_of is None:
                if top.ecpm < floor:
                    continue
            else:
                own = floor_of(group, top.ecpm)  # it checks the candidate reaches it
                if own is None:
                    continue
                exact = own.exact
                if exact is not None and not self._may_charge(group.bid_type, exact, floor, top):
                    continue
                top.floor, top.exact = max(own.ecpm, floor), exact
                if top.ecpm < top.floor:
                    continue  # below its deal's floor or the slot's (the space's reserve)
            found.append(top)
            if len(best) < need:
                heapq.heappush(best, top.ecpm)
            elif top.ecpm > best[0]:
                heapq.heapreplace(best, top.ecpm)
        if not found:
            return []
        found.sort(key=lambda c: (-c.ecpm, c.group.id))
        out: list[Decision] = []
        for position, candidate in enumerate(found):
            if len(out) >= slots or position >= slots * MAX_RESERVE_ATTEMPTS:
                break
            runner_up = found[position + 1].ecpm if position + 1 < len(found) else None
            group = candidate.group
            # An exact price (a fixed-price deal, a first-price exchange's bid) is paid whoever follows, never
            # more: `_may_charge` kept it at or above the minimum, so the minimum does not lift it.
            exact = candidate.exact
            auction_type = "second_price" if exact is not None else self.auction_type
            if exact is not None:
                runner_up = None
            price = clearing_price_micros(bid_type=group.bid_type, bid_micros=group.bid_micros,
                                          currency=group.currency, winner_ecpm=candidate.ecpm,
                                          runner_up_ecpm=runner_up,
                                          floor_ecpm=candidate.floor if exact is None else exact,
                                          pctr=candidate.pctr, pcvr=candidate.pcvr, fx=fx, auction_type=auction_type,
                                          minimum_micros=minimums.in_currency(group.bid_type, group.currency, fx),
                                          exact=exact is not None)
            # What the slot costs the advertiser, as USD CPM (the minimum counted through the winner's own rates).
            minimum_ecpm = self._minimum_ecpm(group.bid_type, candidate)
            if exact is not None:
                cleared = min(candidate.ecpm, exact)
            elif auction_type == "second_price":
                cleared = min(candidate.ecpm, max(candidate.floor, minimum_ecpm, runner_up or 0.0))
            else:
                cleared = candidate.ecpm
            decision = yield from self._commit(request, state, times, space, group, [candidate.creative],
                                               tier=TIER_AUCTION, ecpm=candidate.ecpm, price=price,
                                               pctr=candidate.pctr, pcvr=candidate.pcvr, exchange_cpm=cleared)
            if decision is not None:
                out.append(decision)
        return out

    def _minimum_ecpm(self, bid_type: str, candidate: _Candidate) -> float:
        """The platform minimum of the candidate's bid type as USD CPM, through its own predicted rates."""
        return ecpm_usd_micros(bid_type, self.minimum_prices.usd_micros(bid_type), candidate.pctr, candidate.pcvr)

    def _may_charge(self, bid_type: str, exact: float, floor: float, candidate: _Candidate) -> bool:
        """Whether a candidate that pays exactly `exact` (USD CPM) may take the slot: not when that is below the
        slot's floor (the space's reserve), nor below the platform minimum of its bid type counted through its
        rates (a fixed price of 0.30 CPM is 0.0075 a click at a 4% pCTR): the minimum would lift its charge above
        the price agreed or bid. A part per billion of slack absorbs float conversions."""
        least = max(floor, self._minimum_ecpm(bid_type, candidate))
        return exact >= least * (1 - 1e-9)

    @staticmethod
    def _auction_ordinals(plan: Plan, index: TargetingIndex, blocked: AbstractBitMap | None,
                          suffix: Sequence[float], floor: float, need: int, best: list[float]) -> Iterator[int]:
        """The ordinals the request's plan keeps, in order, intersected a block at a time (see `ordinal_blocks`):
        the next block is intersected only when the auction has visited the last and its best bound could still
        win a slot or set a price."""
        for start, block in index.blocks:
            if start >= len(suffix):
                return
            remaining = suffix[start]
            if remaining < floor or remaining <= 0 or (len(best) >= need and best[0] >= remaining):
                return
            candidates = plan.candidates(within=block)
            if blocked is not None and candidates:
                candidates -= blocked
            yield from candidates

    # ---------- reservation and assembly ----------

    def _commit(self, request: AdRequest, state: ServingState, times: eligibility.LocalTimes,
                space: AdSpaceSnap | None, group: AdGroupSnap, creatives: Sequence[CreativeSnap], *, tier: str,
                ecpm: float, price: int, pctr: float | None = None, pcvr: float | None = None,
                extra: tuple[Claim, ...] = (), exchange_cpm: float | None = None) -> Step:
        placement = request.placement_type or ""
        creative = creatives[0]
        if pctr is None or pcvr is None:
            pctr, pcvr = state.rates.rates(placement, group.campaign_id, group.id, creative.id)
            if len(creatives) > 1:
                creative = self._rng.choice(list(creatives))
        cost = expected_cost_micros(group.bid_type, price, pctr, pcvr)
        claims = self._claims(group, request, state, times, cost) + extra
        combination = self._combination(creative, pctr, request.slot)
        impression_id = new_impression_id(combination.key)
        hold = Hold(impression_id, times.now.timestamp() + (request.hold_seconds or self.sdk_hold_seconds))
        try:
            failed = yield ReserveStep(claims, hold)
        except Exception:  # the shared counters are unreachable: serve nothing rather than spend blind
            self._log_counter_failure()
            return None
        if failed >= 0:
            self._on_refused(group, claims[failed], times)
            return None
        bid_usd_cpm = exchange_cpm if exchange_cpm is not None else ecpm
        return Decision(ad_group=group, creative=creative, combination=combination, tier=tier,
                        ecpm_usd_micros=ecpm, price_micros=price, bid_usd_cpm_micros=bid_usd_cpm,
                        impression_id=impression_id, pctr=pctr, pcvr=pcvr, claims=claims, ad_space=space)

    def _claims(self, group: AdGroupSnap, request: AdRequest, state: ServingState, times: eligibility.LocalTimes,
                cost: int) -> tuple[Claim, ...]:
        local = times.at(group.schedule.time_zone)
        day = local.date()
        snapshot = state.snapshot
        ledger = snapshot.ledger_spend.get(group.id)
        as_of = snapshot.ledger_mark
        claims: list[Claim] = []
        if group.daily_budget_micros is not None:
            cap = group.daily_budget_micros
            if group.pacing == "even" and group.bid_type != CPT:
                curve = self.traffic.curve(group.schedule.time_zone, times.now)
                cap = even_allowance_micros(cap, curve, times.now, group.schedule.time_zone)
            claims.append(Claim(_day_key(group.id, day), cost, cap=cap,
                                floor=ledger.today_micros if ledger and ledger.day == day else 0,
                                ttl_seconds=DAY_KEY_TTL, floor_as_of=as_of))
        if group.total_budget_micros is not None:
            claims.append(Claim(_total_key(group.id), cost, cap=group.total_budget_micros,
                                floor=ledger.total_micros if ledger else 0, floor_as_of=as_of))
        account = snapshot.accounts.get(group.account_id)
        if account is not None:
            claims.append(Claim(_account_key(account.id), cost, cap=account.spend_cap_micros,
                                floor=account.charged_micros, floor_as_of=as_of))
        if group.frequency_cap is not None and request.device_key is not None:
            claims.append(Claim(_frequency_key(group.id, request.device_key, day), 1, cap=group.frequency_cap,
                                ttl_seconds=DAY_KEY_TTL))
        return tuple(claims)

    def _log_counter_failure(self) -> None:
        now = time.monotonic()
        if now - self._last_counter_failure_log >= 10:
            self._last_counter_failure_log = now
            log.exception("budget counters unavailable; not serving until they answer")

    def _on_refused(self, group: AdGroupSnap, claim: Claim, times: eligibility.LocalTimes) -> None:
        """Remember a refusal so the next requests skip the ad group without another round trip."""
        key = claim.key
        now_ts = times.now.timestamp()
        if key.startswith("d:"):
            if group.daily_budget_micros is not None and claim.cap is not None \
                    and claim.cap >= group.daily_budget_micros:
                self.block(group.id, _next_local_midnight(times.at(group.schedule.time_zone)))
            else:
                self.block(group.id, now_ts + PACING_BLOCK_SECONDS)
        elif key.startswith(("t:", "a:")):
            self.block(group.id, now_ts + 60)
        elif key.startswith("g:"):
            self.block(group.id, now_ts + PACING_BLOCK_SECONDS)

    def _combination(self, creative: CreativeSnap, pctr: float, slot: Slot) -> AssetCombination:
        combinations = creative.combinations
        if slot.image_mimes and creative.has_image and not creative.has_video:
            combinations = eligibility.allowed_combinations(creative, slot) or combinations
        if len(combinations) == 1:
            return combinations[0]
        outcomes = self.outcomes
        return choose_combination(combinations, lambda key: outcomes.combination(creative.id, key),
                                  prior_ctr=pctr, rng=self._rng)

    def release(self, decision: Decision) -> None:
        """Give back a reservation whose ad will not be shown (a bid we withdrew or lost)."""
        self.counters.release_held(decision.impression_id)

    async def release_async(self, decision: Decision) -> None:
        counters = self.counters
        if counters.shared:
            await counters.release_held_async(decision.impression_id)
        else:
            counters.release_held(decision.impression_id)


def expected_cost_micros(bid_type: str, price_micros: int, pctr: float, pcvr: float) -> int:
    """What one served ad is expected to cost, in account micros: reserved against budgets when it is served."""
    if bid_type == CPT:
        return 0  # billed per booked slot, not per impression
    if bid_type == CPC:
        return math.ceil(price_micros * pctr)
    if bid_type == CPA:
        return math.ceil(price_micros * pctr * pcvr)
    return math.ceil(price_micros / 1000)  # CPM and guaranteed CPM: price is per 1,000 impressions


def _day_key(group_id: int, day: date) -> str:
    return day_key(group_id, day)


def _total_key(group_id: int) -> str:
    return total_key(group_id)


def _account_key(account_id: int) -> str:
    return account_key(account_id)


def _frequency_key(group_id: int, device_key: int, day: date) -> str:
    return f"f:{group_id}:{device_key}:{day.isoformat()}"


def _billed_units(snapshot: Snapshot, group_id: int) -> int:
    spend = snapshot.ledger_spend.get(group_id)
    return spend.total_units if spend is not None else 0


def _booked_key(group_id: int) -> str:
    return f"g:{group_id}"


def _delivered_key(group_id: int, day: date) -> str:
    return f"c:{group_id}:{day.isoformat()}"


def _next_local_midnight(local: datetime) -> float:
    tomorrow = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return tomorrow.timestamp()


__all__ = ["GUARANTEED_CPM", "Decision", "DecisionEngine", "Floor", "FloorOf", "ServingState", "expected_cost_micros"]
