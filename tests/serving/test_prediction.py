"""Predicted rates: priors until data exists, then smoothed empirical rates along the hierarchy; and the
Thompson-sampling choice of creative combinations."""

from __future__ import annotations

import random

from adstack.serving.dynamic import choose_combination
from adstack.serving.prediction import CVR_PRIOR, DEFAULT_CTR_PRIORS, OutcomeCounter, Outcomes, RateModel
from adstack.serving.snapshot import AssetCombination


def test_without_data_every_level_uses_the_placement_prior() -> None:
    model = RateModel()
    assert model.rates("banner", 1, 2, 3) == (DEFAULT_CTR_PRIORS["banner"].mean, CVR_PRIOR.mean)
    assert model.rates("interstitial", 1, 2, 3)[0] > model.rates("banner", 1, 2, 3)[0]


def test_observations_move_the_rate_towards_the_data_in_proportion_to_evidence() -> None:
    prior = DEFAULT_CTR_PRIORS["banner"].mean
    few = RateModel({("banner", 1, 2, 3): Outcomes(impressions=100, clicks=10)})
    many = RateModel({("banner", 1, 2, 3): Outcomes(impressions=100_000, clicks=10_000)})
    assert prior < few.rates("banner", 1, 2, 3)[0] < many.rates("banner", 1, 2, 3)[0] < 0.1
    assert abs(many.rates("banner", 1, 2, 3)[0] - 0.1) < 0.01


def test_a_new_creative_inherits_its_ad_groups_record_and_a_new_ad_group_its_campaigns() -> None:
    model = RateModel({("banner", 1, 2, 3): Outcomes(impressions=50_000, clicks=2_500, conversions=250)})
    creative = model.rates("banner", 1, 2, 3)
    new_creative = model.rates("banner", 1, 2, 99)
    new_group = model.rates("banner", 1, 98, 99)
    other_campaign = model.rates("banner", 7, 97, 96)
    assert creative[0] > new_creative[0] > new_group[0] > other_campaign[0] > DEFAULT_CTR_PRIORS["banner"].mean
    assert creative[1] > CVR_PRIOR.mean  # 10% of clicks converted, against a 3% prior


def test_counter_feeds_a_model() -> None:
    counter = OutcomeCounter()
    for _ in range(1000):
        counter.add(("push", 1, 2, 3), impressions=1)
    counter.add(("push", 1, 2, 3), clicks=200)
    assert counter.model().rates("push", 1, 2, 3)[0] > DEFAULT_CTR_PRIORS["push"].mean


def test_thompson_sampling_explores_then_exploits() -> None:
    combinations = [AssetCombination(key=k) for k in ("a", "b", "c")]
    rng = random.Random(3)
    fresh = [choose_combination(combinations, lambda key: (0, 0), prior_ctr=0.02, rng=rng).key for _ in range(300)]
    assert min(fresh.count(k) for k in "abc") > 60  # all explored
    evidence = {"a": (5_000, 50), "b": (5_000, 400), "c": (5_000, 60)}
    learned = [choose_combination(combinations, evidence.__getitem__, prior_ctr=0.02, rng=rng).key for _ in range(300)]
    assert learned.count("b") > 290
    # Little evidence keeps exploring the others now and then.
    thin = {"a": (20, 1), "b": (20, 3), "c": (20, 1)}
    mixed = [choose_combination(combinations, thin.__getitem__, prior_ctr=0.02, rng=rng).key for _ in range(300)]
    assert mixed.count("b") < 290 and mixed.count("b") == max(mixed.count(k) for k in "abc")
