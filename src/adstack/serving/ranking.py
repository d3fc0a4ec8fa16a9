"""Ranking and pricing: expected revenue per thousand impressions (eCPM), score buckets and the clearing price.

eCPM, in USD micros per 1,000 impressions, from a bid in the account currency:

- CPM: the bid;
- CPC: bid x pCTR x 1,000;
- CPA: bid x pCTR x pCVR x 1,000.

Clearing price (what billing charges; it travels in the signed tracking token as `price_micros`, in the account
currency and in the unit of the bid type: per 1,000 impressions for CPM, per click for CPC, per conversion for
CPA):

- second price (the default): the smallest bid that would still have won the slot, i.e. the eCPM of the next
  ranked eligible ad group, or the floor (the ad space's reserve price, or the exchange's bid floor, whichever is
  higher; on an exchange's deal, the floor of the deal the winner bids on) when no one follows, converted back
  through the winner's own predicted rates into its bid unit and its currency, rounded up to a micro, never below
  the platform minimum of its bid type and never above its bid;
- first price: the winner's bid;
- an exact price, whoever follows: a fixed-price deal's price, or on a first-price exchange the price we bid
  there (which is what the exchange charges: OpenRTB 2.6 §3.2.1 and §3.2.12 `at`), converted into the winner's
  bid unit and currency rounded down, so the charge never exceeds it. A candidate whose exact price is below
  the slot's floor or the platform minimum of its bid type (through its own predicted rates: a 0.30 CPM is
  0.0075 a click at a 4% pCTR, below a 0.01 CPC minimum) does not take part: charging the minimum would cost
  more than the price agreed or bid.

The platform minimum (`MinimumPrices`, operator settings in USD micros: per click, per 1,000 impressions, per
action) is converted to the account currency through the snapshot's FX table with Decimal, rounded up. Without
it a lone bidder on a space without a reserve would clear at one micro. Like a reserve price, it also bars bids
below it from the auction: such a bid could only pay less than the minimum.

Reserved tiers do not take part: guaranteed CPM pays its booked CPM, CPT its booked slot (charged per slot by
billing, so a CPT impression carries price 0).

Early stopping: every auction ad group has an upper bound on its eCPM (its bid with the best rates any of its
creatives has on any placement it may serve). The auction visits candidates best bound first and stops once the
bound of everything left cannot beat the runner-up, so a decision over 100,000 ad groups evaluates about as many
candidates as one over 1,000.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyroaring import FrozenBitMap

from adstack.core.vocabulary import PlacementType
from adstack.serving.fx import FxRates
from adstack.serving.snapshot import CPA, CPC, CPM, GUARANTEED_CPM

if TYPE_CHECKING:
    from adstack.core.settings import Settings
    from adstack.serving.prediction import RateModel
    from adstack.serving.snapshot import AdGroupSnap, Snapshot

ALL_PLACEMENTS = tuple(p.value for p in PlacementType)


def ecpm_usd_micros(bid_type: str, bid_usd_micros: float, pctr: float, pcvr: float) -> float:
    if bid_type == CPM:
        return bid_usd_micros
    if bid_type == CPC:
        return bid_usd_micros * pctr * 1000
    if bid_type == CPA:
        return bid_usd_micros * pctr * pcvr * 1000
    return 0.0


@dataclass(frozen=True, slots=True)
class MinimumPrices:
    """The platform's minimum clearing price per auction bid type, in USD micros of the bid unit."""

    cpc_usd_micros: int = 10_000  # 0.01 USD per click
    cpm_usd_micros: int = 100_000  # 0.10 USD per 1,000 impressions
    cpa_usd_micros: int = 100_000  # 0.10 USD per action

    @classmethod
    def from_settings(cls, settings: Settings) -> MinimumPrices:
        return cls(settings.min_price_cpc_usd_micros, settings.min_price_cpm_usd_micros,
                   settings.min_price_cpa_usd_micros)

    def usd_micros(self, bid_type: str) -> int:
        if bid_type == CPC:
            return self.cpc_usd_micros
        if bid_type == CPM:
            return self.cpm_usd_micros
        if bid_type == CPA:
            return self.cpa_usd_micros
        return 0

    def admits(self, bid_type: str, bid_usd_micros: float) -> bool:
        """Whether a bid (as USD micros, for ranking) reaches the minimum; a part per billion of slack absorbs the
        float conversion of a bid placed exactly at the minimum in another currency."""
        return bid_usd_micros >= self.usd_micros(bid_type) * (1 - 1e-9)

    def in_currency(self, bid_type: str, currency: str, fx: FxRates) -> int:
        """The minimum in micros of `currency`, converted with Decimal and rounded up (0 for an unknown one)."""
        minimum = self.usd_micros(bid_type)
        if minimum <= 0 or not fx.knows(currency):
            return 0
        return fx.from_usd_micros(minimum, currency)


def clearing_price_micros(*, bid_type: str, bid_micros: int, currency: str, winner_ecpm: float,
                          runner_up_ecpm: float | None, floor_ecpm: float, pctr: float, pcvr: float,
                          fx: FxRates, auction_type: str = "second_price", minimum_micros: int = 0,
                          exact: bool = False) -> int:
    """The price the winner pays, in its currency and bid unit (see the module docstring).

    `minimum_micros` is the platform minimum for the bid type in the winner's currency (`MinimumPrices`).
    `exact`: `floor_ecpm` is what the winner pays whoever follows (a fixed-price deal, a first-price exchange's
    bid): converted rounded down, so the charge never exceeds it, and not lifted to the minimum, which the caller
    has checked it reaches.
    """
    if auction_type == "first_price":
        return bid_micros
    target = floor_ecpm if exact else max(runner_up_ecpm or 0.0, floor_ecpm)
    target = min(target, winner_ecpm)
    if bid_type == CPM:
        per_unit_usd = target
    elif bid_type == CPC:
        per_unit_usd = target / (1000 * pctr) if pctr > 0 else 0.0
    elif bid_type == CPA:
        per_unit_usd = target / (1000 * pctr * pcvr) if pctr > 0 and pcvr > 0 else 0.0
    else:
        return bid_micros
    price = fx.from_usd_micros(per_unit_usd, currency, round_up=not exact) if per_unit_usd > 0 else 0
    if exact:
        return max(1, min(bid_micros, price))
    return max(1, min(bid_micros, max(price, minimum_micros)))


def upper_bound_ecpm(group: AdGroupSnap, rates: RateModel, fx: FxRates) -> float:
    bid_usd = fx.to_usd(group.bid_micros, group.currency)
    if group.bid_type == CPM:
        return bid_usd
    placements = group.targeting.placement_types or ALL_PLACEMENTS
    best = 0.0
    for placement in placements:
        for creative in group.creatives:
            pctr, pcvr = rates.rates(placement, group.campaign_id, group.id, creative.id)
            best = max(best, ecpm_usd_micros(group.bid_type, bid_usd, pctr, pcvr))
    return best


class AuctionOrder:
    """Per ordinal, the eCPM upper bound under the current rates, and its suffix maximum.

    `suffix[o]` is the best bound of any auction ad group numbered o or later. Candidates are visited in ordinal
    order; once the runner-up found so far is at least `suffix[o]`, nothing from o on can change the outcome and
    the auction stops. The snapshot numbers ad groups best first, so the stop comes after a handful of candidates
    however many match; the rule stays exact when observed rates have reordered the bounds since.
    """

    __slots__ = ("bounds", "reserved", "suffix")

    def __init__(self, snapshot: Snapshot, rates: RateModel):
        fx = snapshot.fx
        reserved: list[int] = []
        bounds = array("d", bytes(8 * len(snapshot.by_ordinal)))
        for ordinal, group in enumerate(snapshot.by_ordinal):
            if group.reserved:
                reserved.append(ordinal)
            else:
                bounds[ordinal] = upper_bound_ecpm(group, rates, fx)
        suffix = array("d", bounds)
        running = 0.0
        for ordinal in range(len(suffix) - 1, -1, -1):
            running = max(running, suffix[ordinal])
            suffix[ordinal] = running
        self.reserved = FrozenBitMap(reserved)
        self.bounds = bounds
        self.suffix = suffix


def reservation_micros(bid_type: str, price_micros: int, pctr: float, pcvr: float) -> int:
    """What a served ad should hold against its budgets and funds, in account micros, so that billing can never be
    asked for more than was held: the most the ad can still bill.

    - CPM: one impression at the clearing CPM;
    - CPC: the full click price (one impression bills at most one click), so clicks beyond a cap cannot be served;
      an unclicked ad's hold must be given back after the click window, or the budget would buy only
      budget / price ads;
    - CPA: the expected cost, price x pCTR x pCVR: a conversion arrives up to the attribution window later, too late
      to hold a full price for, so CPA bursts past a cap are bounded only by how well pCVR predicts;
    - CPT: nothing, billed per booked slot.
    """
    if bid_type == CPC:
        return price_micros
    if bid_type == CPA:
        return math.ceil(price_micros * pctr * pcvr)
    if bid_type in (CPM, GUARANTEED_CPM):
        return math.ceil(price_micros / 1000)
    return 0
