"""Dynamic creative: which combination of titles, descriptions, images and videos to show, per impression.

Thompson sampling on CTR: each combination's click-through rate has a Beta posterior (a uniform-ish prior centred
on the creative's overall rate, updated with the combination's own impressions and clicks); every impression draws
one sample per combination and shows the combination with the highest draw. Combinations nobody has seen draw
widely and get explored; a combination that is clearly better wins almost every draw. Exploration fades by itself as
evidence accumulates, with no tuning knob.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

from adstack.serving.snapshot import AssetCombination

PRIOR_STRENGTH = 20.0  # pseudo-impressions of the prior around the creative's predicted CTR
# With this much evidence on both sides a Beta posterior is sampled through its normal approximation (same
# mean and variance), which is several times cheaper than two gamma draws and indistinguishable for ranking.
NORMAL_APPROXIMATION_AT = 30.0


def choose_combination(combinations: Sequence[AssetCombination], stats: Callable[[str], tuple[int, int]],
                       *, prior_ctr: float, rng: random.Random | None = None) -> AssetCombination:
    """Pick one combination; `stats(key)` gives (impressions, clicks) observed for it so far."""
    if len(combinations) == 1:
        return combinations[0]
    source = rng or random
    seen = [stats(c.key) for c in combinations]
    if not any(impressions for impressions, _ in seen):
        # Identical posteriors: every combination is equally likely to draw highest.
        return source.choice(combinations)
    alpha0 = max(prior_ctr, 1e-4) * PRIOR_STRENGTH
    beta0 = max(1.0 - prior_ctr, 1e-4) * PRIOR_STRENGTH
    best = combinations[0]
    best_sample = -1.0
    for combination, (impressions, clicks) in zip(combinations, seen, strict=True):
        clicks = min(clicks, impressions)
        alpha = alpha0 + clicks
        beta = beta0 + impressions - clicks
        if alpha >= NORMAL_APPROXIMATION_AT and beta >= NORMAL_APPROXIMATION_AT:
            total = alpha + beta
            mean = alpha / total
            sample = source.gauss(mean, math.sqrt(mean * (1 - mean) / (total + 1)))
        else:
            sample = source.betavariate(alpha, beta)
        if sample > best_sample:
            best, best_sample = combination, sample
    return best
