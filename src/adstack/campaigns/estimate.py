"""Audience-size estimate: how many devices a targeting reaches, and how many ads they could see a day.

Pure: it reads a PopulationSource (today the operator's device-population table; observed traffic or real
audience counts can implement the same protocol later) and assumes the dimensions are independent, so each
chosen dimension multiplies the population by the share of the values chosen.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from adstack.campaigns.targeting import Targeting, os_version_key
from adstack.inventory.population import CountryPopulation, PopulationSource


@dataclass(frozen=True)
class AudienceEstimate:
    users: int
    estimated_max_daily_impressions: int
    estimated_max_users: int
    countries: list[str]
    unestimated: list[str]


def _share(population: CountryPopulation, dimension: str, chosen: Iterable[str]) -> float:
    """Share of devices having one of the chosen values. Values the table does not list count zero."""
    values = population.shares.get(dimension, {})
    return min(1.0, sum(values.get(value, 0.0) for value in set(chosen)))


def _os_share(population: CountryPopulation, low: str | None, high: str | None) -> float:
    versions = population.shares.get("os_version", {})
    total = 0.0
    for version, share in versions.items():
        try:
            key = os_version_key(version)
        except ValueError:
            continue
        if low is not None and key < os_version_key(low):
            continue
        if high is not None and key > os_version_key(high):
            continue
        total += share
    return min(1.0, total)


def matching_devices(population: CountryPopulation, targeting: Targeting) -> float:
    factor = 1.0
    if targeting.genders:
        factor *= _share(population, "gender", targeting.genders)
    if targeting.age_ranges:
        factor *= _share(population, "age_range", targeting.age_ranges)
    if targeting.languages:
        factor *= _share(population, "language", targeting.languages)
    if targeting.networks:
        factor *= _share(population, "network", targeting.networks)
    if targeting.carriers:
        factor *= _share(population, "carrier", targeting.carriers)
    if targeting.device_models:
        factor *= _share(population, "device_model", targeting.device_models)
    if targeting.os_version_min is not None or targeting.os_version_max is not None:
        factor *= _os_share(population, targeting.os_version_min, targeting.os_version_max)
    return population.daily_active_devices * factor


def unestimated_criteria(targeting: Targeting) -> list[str]:
    """Criteria the population figures cannot size; the estimate is an upper bound for them."""
    names = ("installed_apps", "installed_app_categories", "not_installed_apps", "not_installed_app_categories",
             "app_behaviours", "app_usage", "include_audience_ids", "exclude_audience_ids", "deal_ids")
    return [name for name in names if getattr(targeting, name)]


def estimate_audience(
    source: PopulationSource,
    targeting: Targeting,
    placement_type: str,
    *,
    publisher_countries: set[str] | None = None,
    frequency_cap_per_day: int | None = None,
    audience_devices: int | None = None,
) -> AudienceEstimate:
    """`publisher_countries`: when publishers are chosen, only their countries can be reached.
    `audience_devices`: the real size of the included audiences, when known; reach cannot exceed it."""
    countries = set(targeting.countries) if targeting.countries else set(source.countries())
    if publisher_countries is not None:
        countries &= publisher_countries
    users = 0.0
    impressions = 0.0
    reached = 0.0
    covered = []
    for country in sorted(countries):
        population = source.population(country)
        if population is None:
            continue
        covered.append(country)
        devices = matching_devices(population, targeting)
        per_device = population.impressions_per_device.get(placement_type, 0.0)
        if frequency_cap_per_day is not None:
            per_device = min(per_device, float(frequency_cap_per_day))
        users += devices
        impressions += devices * per_device
        # Impressions land on devices roughly at random: P(at least one) = 1 - e^-rate (Poisson).
        reached += devices * (1 - math.exp(-per_device))
    unestimated = unestimated_criteria(targeting)
    if audience_devices is not None and users > 0:
        # Scale everything down to the audience's real size; the shares stay the table's.
        scale = min(1.0, audience_devices / users)
        users, impressions, reached = users * scale, impressions * scale, reached * scale
        unestimated = [name for name in unestimated if name != "include_audience_ids"]
    return AudienceEstimate(
        users=round(users),
        estimated_max_daily_impressions=round(impressions),
        estimated_max_users=round(reached),
        countries=covered,
        unestimated=unestimated,
    )
