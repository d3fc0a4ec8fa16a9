"""Who an ad group reaches: the targeting schema stored as JSON on the ad group, and its vocabularies.

Pure: no database. Serving evaluates it; the estimate sizes it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from adstack.core.countries import check_country_code
from adstack.core.ids import EntityId

PackageName = Annotated[
    str,
    StringConstraints(max_length=255, pattern=r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)+$"),
]
CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$"), AfterValidator(check_country_code)]
LanguageCode = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}(-[A-Z]{2})?$")]
Label = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
CategoryCode = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_]{0,63}$")]
OsVersion = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,3}(\.[0-9]{1,3}){0,2}$")]
DealId = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[\x21-\x7e]+$")]


class Gender(StrEnum):
    MALE = "male"
    FEMALE = "female"


class AgeRange(StrEnum):
    AGE_18_24 = "18-24"
    AGE_25_34 = "25-34"
    AGE_35_44 = "35-44"
    AGE_45_54 = "45-54"
    AGE_55_PLUS = "55+"


class Network(StrEnum):
    WIFI = "wifi"
    G2 = "2g"
    G3 = "3g"
    G4 = "4g"
    G5 = "5g"


class AppAction(StrEnum):
    INSTALLED = "installed"
    ACTIVATED = "activated"
    PAID = "paid"
    UNINSTALLED = "uninstalled"


def os_version_key(version: str) -> tuple[int, ...]:
    """'12.0.1' -> (12, 0, 1), so versions compare as numbers, not text."""
    return tuple(int(part) for part in version.split("."))


class AppBehaviour(BaseModel):
    """Devices that did something with these apps, or with apps of these categories, recently."""

    model_config = ConfigDict(extra="forbid")

    action: AppAction
    packages: list[PackageName] = Field(default_factory=list, max_length=200)
    categories: list[CategoryCode] = Field(default_factory=list, max_length=50)
    within_days: int = Field(default=30, ge=1, le=365)

    @model_validator(mode="after")
    def _names_apps(self) -> AppBehaviour:
        if not self.packages and not self.categories:
            raise ValueError("name at least one package or category")
        return self


class AppUsage(BaseModel):
    """Devices that use an app (or apps of a category) at least this many minutes a day."""

    model_config = ConfigDict(extra="forbid")

    package: PackageName | None = None
    category: CategoryCode | None = None
    min_minutes: int = Field(ge=1, le=1440)

    @model_validator(mode="after")
    def _one_of(self) -> AppUsage:
        if (self.package is None) == (self.category is None):
            raise ValueError("name exactly one of package or category")
        return self


class Exceptions(BaseModel):
    """Where the ad group never serves, whatever else it targets.

    Source: Mi Ads Usage Guide, 3.1.2 Create Ad Group, "Set orientation": "Other: audience, excluded audience,
    exceptions"; the guide does not define exceptions further, so they name the two things an ad group chooses
    by in "Determine placement": publishers (by their app's package) and ad spaces."""

    model_config = ConfigDict(extra="forbid")

    publisher_packages: list[PackageName] = Field(default_factory=list, max_length=500,
                                                  description="Publisher apps (package names) never served on.")
    ad_space_ids: list[EntityId] = Field(default_factory=list, max_length=500,
                                          description="Ad spaces never served on.")

    @field_validator("publisher_packages", "ad_space_ids")
    @classmethod
    def _unique(cls, values: list[object]) -> list[object]:
        return list(dict.fromkeys(values))


class Targeting(BaseModel):
    """Every list is an OR of its values; lists are ANDed together. An empty list does not restrict."""

    model_config = ConfigDict(extra="forbid")

    countries: list[CountryCode] = Field(default_factory=list, max_length=250,
                                         description="ISO 3166-1 alpha-2 codes: the distribution area.")
    genders: list[Gender] = Field(default_factory=list, max_length=2)
    age_ranges: list[AgeRange] = Field(default_factory=list, max_length=len(AgeRange))
    languages: list[LanguageCode] = Field(default_factory=list, max_length=100)
    networks: list[Network] = Field(default_factory=list, max_length=len(Network))
    carriers: list[Label] = Field(default_factory=list, max_length=100)
    device_models: list[Label] = Field(default_factory=list, max_length=500)
    os_version_min: OsVersion | None = None
    os_version_max: OsVersion | None = None
    installed_apps: list[PackageName] = Field(default_factory=list, max_length=200)
    installed_app_categories: list[CategoryCode] = Field(default_factory=list, max_length=50)
    not_installed_apps: list[PackageName] = Field(default_factory=list, max_length=200)
    not_installed_app_categories: list[CategoryCode] = Field(default_factory=list, max_length=50)
    app_behaviours: list[AppBehaviour] = Field(default_factory=list, max_length=20)
    app_usage: list[AppUsage] = Field(default_factory=list, max_length=50)
    include_audience_ids: list[EntityId] = Field(default_factory=list, max_length=50)
    exclude_audience_ids: list[EntityId] = Field(default_factory=list, max_length=50)
    deal_ids: list[DealId] = Field(default_factory=list, max_length=50, description="OpenRTB private-market deals.")
    exceptions: Exceptions = Field(default_factory=Exceptions)

    @field_validator("countries", "genders", "age_ranges", "languages", "networks", "carriers", "device_models",
                     "installed_apps", "not_installed_apps", "include_audience_ids", "exclude_audience_ids",
                     "deal_ids")
    @classmethod
    def _unique(cls, values: list[object]) -> list[object]:
        return list(dict.fromkeys(values))

    @field_validator("os_version_max")
    @classmethod
    def _range(cls, value: str | None, info: ValidationInfo) -> str | None:
        data = info.data
        low = data.get("os_version_min")
        if value is not None and low is not None and os_version_key(value) < os_version_key(low):
            raise ValueError(f"must not be below os_version_min ({low})")
        return value

    @field_validator("exclude_audience_ids")
    @classmethod
    def _disjoint(cls, value: list[int], info: ValidationInfo) -> list[int]:
        included = set(info.data.get("include_audience_ids") or ())
        if included & set(value):
            raise ValueError("an audience cannot be both included and excluded")
        return value
