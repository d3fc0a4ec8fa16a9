"""Default device-population figures and the read side of the population table.

The figures are plausible starting values for an operator to correct, not measurements.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from adstack.core.vocabulary import PlacementType


@dataclass(frozen=True)
class CountryPopulation:
    """One country's active devices, value shares per dimension, and daily ads seen per device per placement."""

    country: str
    daily_active_devices: int
    shares: dict[str, dict[str, float]] = field(default_factory=dict)
    impressions_per_device: dict[str, float] = field(default_factory=dict)


class PopulationSource(Protocol):
    """Where audience sizes come from. Today the operator table; later, observed traffic or real audience
    counts can implement the same two methods and the estimate does not change."""

    def countries(self) -> list[str]: ...

    def population(self, country: str) -> CountryPopulation | None: ...


class StaticPopulationSource:
    """A population source over figures already in memory (the table's rows, or test data)."""

    def __init__(self, rows: list[CountryPopulation]):
        self._rows = {row.country: row for row in rows}

    def countries(self) -> list[str]:
        return sorted(self._rows)

    def population(self, country: str) -> CountryPopulation | None:
        return self._rows.get(country)


_GENDER = {"male": 0.57, "female": 0.43}
_AGE = {"18-24": 0.27, "25-34": 0.33, "35-44": 0.21, "45-54": 0.12, "55+": 0.07}
_NETWORK = {"wifi": 0.46, "4g": 0.44, "5g": 0.06, "3g": 0.03, "2g": 0.01}
_OS = {"10": 0.06, "11": 0.12, "12": 0.18, "13": 0.26, "14": 0.28, "15": 0.10}
_MODELS = {
    "Redmi Note 13": 0.09, "Redmi Note 12": 0.08, "Redmi 13C": 0.07, "Redmi 12": 0.06, "POCO X6": 0.04,
    "Xiaomi 14": 0.03, "Redmi A3": 0.05, "POCO M6": 0.03, "Xiaomi 13T": 0.02,
}
_IMPRESSIONS = {
    PlacementType.BANNER: 6.0,
    PlacementType.INTERSTITIAL: 2.5,
    PlacementType.REWARDED_VIDEO: 1.2,
    PlacementType.PUSH: 0.8,
    PlacementType.ICON: 4.0,
    PlacementType.NEWSFEED: 5.0,
    PlacementType.SMS: 0.3,
    PlacementType.WALLPAPER_CAROUSEL: 3.0,
}

# country: (daily active devices, languages, carriers)
_COUNTRIES: dict[str, tuple[int, dict[str, float], dict[str, float]]] = {
    "IN": (95_000_000, {"hi": 0.45, "en": 0.30, "ta": 0.08, "te": 0.07, "bn": 0.06},
           {"Jio": 0.45, "Airtel": 0.35, "Vi": 0.17, "BSNL": 0.03}),
    "ID": (42_000_000, {"id": 0.88, "en": 0.10}, {"Telkomsel": 0.48, "Indosat": 0.27, "XL Axiata": 0.22}),
    "RU": (21_000_000, {"ru": 0.93, "en": 0.05}, {"MTS": 0.31, "MegaFon": 0.28, "Beeline": 0.23, "Tele2": 0.17}),
    "BR": (14_000_000, {"pt": 0.95, "es": 0.03}, {"Vivo": 0.38, "Claro": 0.33, "TIM": 0.27}),
    "MX": (9_000_000, {"es": 0.96, "en": 0.03}, {"Telcel": 0.62, "AT&T": 0.21, "Movistar": 0.14}),
    "TR": (8_000_000, {"tr": 0.94, "en": 0.04}, {"Turkcell": 0.42, "Vodafone": 0.31, "Turk Telekom": 0.26}),
    "PH": (7_000_000, {"en": 0.55, "tl": 0.43}, {"Globe": 0.52, "Smart": 0.45}),
    "VN": (6_000_000, {"vi": 0.95, "en": 0.04}, {"Viettel": 0.53, "Vinaphone": 0.26, "MobiFone": 0.19}),
    "TH": (5_000_000, {"th": 0.93, "en": 0.06}, {"AIS": 0.45, "True": 0.42, "dtac": 0.12}),
    "ES": (4_000_000, {"es": 0.90, "ca": 0.06, "en": 0.03}, {"Movistar": 0.33, "Orange": 0.27, "Vodafone": 0.24}),
    "DE": (3_500_000, {"de": 0.92, "en": 0.06}, {"Telekom": 0.37, "Vodafone": 0.32, "O2": 0.29}),
    "SG": (1_200_000, {"en": 0.70, "zh": 0.24, "ms": 0.04}, {"Singtel": 0.48, "StarHub": 0.26, "M1": 0.24}),
}


def default_populations() -> list[CountryPopulation]:
    return [
        CountryPopulation(
            country=country,
            daily_active_devices=devices,
            shares={"gender": dict(_GENDER), "age_range": dict(_AGE), "language": dict(languages),
                    "network": dict(_NETWORK), "carrier": dict(carriers), "device_model": dict(_MODELS),
                    "os_version": dict(_OS)},
            impressions_per_device={p.value: v for p, v in _IMPRESSIONS.items()},
        )
        for country, (devices, languages, carriers) in _COUNTRIES.items()
    ]
