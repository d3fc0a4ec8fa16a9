"""Predicted click-through and conversion rates: smoothed empirical rates with Beta priors along the hierarchy.

Each level's rate is the posterior mean of a Beta prior centred on its parent's rate, updated with the level's own
observations:

    rate(level) = (strength * rate(parent) + successes) / (strength + trials)

The chain is placement -> campaign -> ad group -> creative. The placement level starts from a prior per placement
type (an interstitial is clicked far more often than a banner) and learns from all traffic on that placement, so a
new creative inherits its ad group's record, a new ad group its campaign's, and a new campaign its placement's,
and each moves towards its own data as impressions accumulate. CTR counts clicks per impression; CVR counts
conversions (of the ad group's chosen event) per click.

Observations arrive as tracking events (`OutcomeCounter.observe`); a `RateModel` is an immutable view computed
from the counts at one moment, rebuilt in the background so ranking reads plain dictionaries.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from adstack.core.vocabulary import PlacementType


@dataclass(frozen=True, slots=True)
class Prior:
    mean: float
    strength: float  # pseudo-trials: how much data the prior is worth


# Typical mobile rates per placement type: what a placement is assumed to do before it has data.
DEFAULT_CTR_PRIORS: Mapping[str, Prior] = {
    PlacementType.BANNER: Prior(0.006, 5000),
    PlacementType.INTERSTITIAL: Prior(0.04, 2000),
    PlacementType.REWARDED_VIDEO: Prior(0.03, 2000),
    PlacementType.PUSH: Prior(0.02, 2000),
    PlacementType.ICON: Prior(0.02, 2000),
    PlacementType.NEWSFEED: Prior(0.012, 3000),
    PlacementType.SMS: Prior(0.005, 5000),
    PlacementType.WALLPAPER_CAROUSEL: Prior(0.01, 3000),
}
FALLBACK_CTR_PRIOR = Prior(0.01, 3000)
CVR_PRIOR = Prior(0.03, 200)  # conversions per click
# How many observations a child level needs before its own data outweighs its parent.
CTR_LEVEL_STRENGTH = 400.0
CVR_LEVEL_STRENGTH = 40.0

# Keys of the leaf counts: (placement, campaign, ad group, creative).
Leaf = tuple[str, int, int, int]


@dataclass(slots=True)
class Outcomes:
    impressions: int = 0
    clicks: int = 0
    conversions: int = 0


def _smooth(prior_mean: float, strength: float, successes: int, trials: int) -> float:
    # Successes are clipped to trials so a click without a counted impression cannot push a rate past 1.
    successes = min(successes, trials) if trials else 0
    return (strength * prior_mean + successes) / (strength + trials)


class RateModel:
    """Smoothed CTR and CVR at every level that has data; lookups fall back to the nearest parent that has."""

    __slots__ = ("_campaign", "_creative", "_group", "_placement")

    def __init__(self, leaves: Mapping[Leaf, Outcomes] | None = None, *,
                 ctr_priors: Mapping[str, Prior] = DEFAULT_CTR_PRIORS, cvr_prior: Prior = CVR_PRIOR):
        leaves = leaves or {}
        totals: dict[tuple[object, ...], list[int]] = defaultdict(lambda: [0, 0, 0])
        for (placement, campaign, group, creative), seen in leaves.items():
            for key in (("p", placement), ("c", placement, campaign), ("g", placement, group),
                        ("r", placement, creative)):
                row = totals[key]
                row[0] += seen.impressions
                row[1] += seen.clicks
                row[2] += seen.conversions
        self._placement: dict[str, tuple[float, float]] = {}
        for placement, prior in ctr_priors.items():
            self._placement[placement] = (prior.mean, cvr_prior.mean)
        for total_key, (imps, clicks, convs) in totals.items():
            if total_key[0] == "p":
                placement = str(total_key[1])
                prior = ctr_priors.get(placement, FALLBACK_CTR_PRIOR)
                self._placement[placement] = (_smooth(prior.mean, prior.strength, clicks, imps),
                                              _smooth(cvr_prior.mean, cvr_prior.strength, convs, clicks))
        self._campaign: dict[tuple[str, int], tuple[float, float]] = {}
        self._group: dict[tuple[str, int], tuple[float, float]] = {}
        self._creative: dict[tuple[str, int], tuple[float, float]] = {}
        # Walk the leaves top-down so each level smooths towards its parent's already smoothed rate.
        for (placement, campaign, group, creative) in sorted(leaves, key=lambda leaf: (leaf[0], leaf[1], leaf[2])):
            parent = self.placement_rates(placement)
            ckey = (placement, campaign)
            if ckey not in self._campaign:
                imps, clicks, convs = totals[("c", placement, campaign)]
                self._campaign[ckey] = (_smooth(parent[0], CTR_LEVEL_STRENGTH, clicks, imps),
                                        _smooth(parent[1], CVR_LEVEL_STRENGTH, convs, clicks))
            parent = self._campaign[ckey]
            gkey = (placement, group)
            if gkey not in self._group:
                imps, clicks, convs = totals[("g", placement, group)]
                self._group[gkey] = (_smooth(parent[0], CTR_LEVEL_STRENGTH, clicks, imps),
                                     _smooth(parent[1], CVR_LEVEL_STRENGTH, convs, clicks))
            parent = self._group[gkey]
            rkey = (placement, creative)
            imps, clicks, convs = totals[("r", placement, creative)]
            self._creative[rkey] = (_smooth(parent[0], CTR_LEVEL_STRENGTH, clicks, imps),
                                    _smooth(parent[1], CVR_LEVEL_STRENGTH, convs, clicks))

    def placement_rates(self, placement: str) -> tuple[float, float]:
        rates = self._placement.get(placement)
        if rates is None:
            return (FALLBACK_CTR_PRIOR.mean, CVR_PRIOR.mean)
        return rates

    def rates(self, placement: str, campaign_id: int, ad_group_id: int, creative_id: int) -> tuple[float, float]:
        """(pCTR, pCVR) for a creative on a placement type."""
        found = self._creative.get((placement, creative_id))
        if found is not None:
            return found
        found = self._group.get((placement, ad_group_id))
        if found is not None:
            return found
        found = self._campaign.get((placement, campaign_id))
        if found is not None:
            return found
        return self.placement_rates(placement)

    def has_data_for_group(self, placement: str, ad_group_id: int) -> bool:
        return (placement, ad_group_id) in self._group

    def groups_with_data(self) -> set[int]:
        return {group for (_, group) in self._group}


class OutcomeCounter:
    """Thread-safe counts of impressions, clicks and conversions per leaf, and per creative asset combination."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._leaves: dict[Leaf, Outcomes] = {}
        self._combinations: dict[tuple[int, str], list[int]] = {}
        self.changes = 0  # bumped on every observation, so a refresher can tell whether to rebuild

    def add(self, leaf: Leaf, *, impressions: int = 0, clicks: int = 0, conversions: int = 0) -> None:
        with self._lock:
            seen = self._leaves.get(leaf)
            if seen is None:
                seen = self._leaves[leaf] = Outcomes()
            seen.impressions += impressions
            seen.clicks += clicks
            seen.conversions += conversions
            self.changes += 1

    def add_combination(self, creative_id: int, combination: str, *, impressions: int = 0, clicks: int = 0) -> None:
        with self._lock:
            row = self._combinations.get((creative_id, combination))
            if row is None:
                row = self._combinations[(creative_id, combination)] = [0, 0]
            row[0] += impressions
            row[1] += clicks

    def replace(self, leaves: dict[Leaf, Outcomes]) -> None:
        """Take authoritative counts (from the event store) in place of what this process counted."""
        with self._lock:
            self._leaves = leaves
            self.changes += 1

    def combination(self, creative_id: int, combination: str) -> tuple[int, int]:
        row = self._combinations.get((creative_id, combination))
        return (row[0], row[1]) if row else (0, 0)

    def leaves(self) -> dict[Leaf, Outcomes]:
        with self._lock:
            return {leaf: Outcomes(o.impressions, o.clicks, o.conversions) for leaf, o in self._leaves.items()}

    def model(self) -> RateModel:
        return RateModel(self.leaves())
