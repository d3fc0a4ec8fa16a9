"""Label rules: conditions over the device profile store (and the measurement partners' postbacks) that define a
label audience.

Every condition must hold (AND); a condition's list matches any of its values unless it says `match: all`.
Pure schema; `label_audiences.py` materialises a rule into a bitmap of device keys.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    model_serializer,
    model_validator,
)

from adstack.core.ids import EntityId
from adstack.core.vocabulary import ConversionEvent

PackageName = Annotated[
    str,
    StringConstraints(max_length=255, pattern=r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)+$"),
]
CategoryCode = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_]{0,63}$")]
Days = Annotated[int, Field(ge=1, le=90, description="Look back this many days (the store keeps 90).")]
Seconds = Annotated[int, Field(ge=0, le=86_400 * 90)]
Match = Literal["any", "all"]
ConversionDays = Annotated[int, Field(ge=1, le=365, description="Look back this many days.")]


class _Condition(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InstalledApps(_Condition):
    """Devices with these apps installed."""

    kind: Literal["installed_apps"]
    packages: list[PackageName] = Field(min_length=1, max_length=200)
    match: Match = "any"


class NotInstalledApps(_Condition):
    """Devices with none of these apps installed."""

    kind: Literal["not_installed_apps"]
    packages: list[PackageName] = Field(min_length=1, max_length=200)


class InstalledCategories(_Condition):
    """Devices with an app of these categories installed."""

    kind: Literal["installed_categories"]
    categories: list[CategoryCode] = Field(min_length=1, max_length=50)
    match: Match = "any"


class NotInstalledCategories(_Condition):
    """Devices with no app of these categories installed."""

    kind: Literal["not_installed_categories"]
    categories: list[CategoryCode] = Field(min_length=1, max_length=50)


class ActiveInApps(_Condition):
    """App behaviour: devices that used one of these apps within the last N days."""

    kind: Literal["active_in_apps"]
    packages: list[PackageName] = Field(min_length=1, max_length=200)
    within_days: Days = 7


class ActiveInCategories(_Condition):
    """App behaviour by categories: devices that used an app of these categories within the last N days."""

    # Source: Mi Ads guide §6.1.1 "Select labels" (app behaviors by categories).
    kind: Literal["active_in_categories"]
    categories: list[CategoryCode] = Field(min_length=1, max_length=50)
    within_days: Days = 7


class PortraitTags(_Condition):
    """A portrait package: devices a portrait pipeline tagged with these tags."""

    # Source: Mi Ads guide §6.1.1 "Portrait information" (crowd packages from the portrait platform).
    kind: Literal["portrait_tags"]
    tags: list[Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.:-]{0,63}$")]] = Field(
        min_length=1, max_length=50)
    match: Match = "any"


class UsageTime(_Condition):
    """Devices whose reported usage of an app, or of the apps of a category, over the last N days lies in
    [min_seconds, max_seconds]. With min_seconds 0, devices that reported no usage qualify too."""

    kind: Literal["usage_time"]
    package: PackageName | None = None
    category: CategoryCode | None = None
    within_days: Days = 7
    min_seconds: Seconds = 0
    max_seconds: Seconds | None = None

    @model_validator(mode="after")
    def _bounds(self) -> UsageTime:
        if (self.package is None) == (self.category is None):
            raise ValueError("name exactly one of package or category")
        if self.max_seconds is not None and self.max_seconds < self.min_seconds:
            raise ValueError("max_seconds must not be below min_seconds")
        if self.min_seconds == 0 and self.max_seconds is None:
            raise ValueError("set min_seconds above 0 or a max_seconds; the range holds every device")
        return self


class Converted(_Condition):
    """Devices a measurement partner reported one of these events for (an install or one of the in-app events,
    attributed to any source or organic) in one of the account's own apps within the last N days: buyers to win
    back, or existing users to leave out of an acquisition campaign (an excluded audience)."""

    kind: Literal["converted"]
    app_ids: list[EntityId] = Field(min_length=1, max_length=50, description="The account's apps (GET /apps).")
    events: list[ConversionEvent] = Field(default_factory=lambda: [ConversionEvent.INSTALL], min_length=1,
                                          max_length=len(ConversionEvent))
    within_days: ConversionDays = 30
    # The partner's postback is the record: the devices are those it named (by GAID, kept as its MD5).


Condition = Annotated[
    InstalledApps | NotInstalledApps | InstalledCategories | NotInstalledCategories | ActiveInApps
    | ActiveInCategories | UsageTime | PortraitTags | Converted,
    Field(discriminator="kind"),
]


class LabelRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    conditions: list[Condition] = Field(min_length=1, max_length=20, description="All must hold.")
    seen_within_days: Days = Field(default=30, description="Only devices seen in ad requests this recently.")
    # Source: Mi Ads guide §6.1.1: a portrait package auto-updates only while its ad group is delivering and
    # auto update is checked.
    auto_update: bool = Field(default=True, description="Portrait packages: rebuilt daily while an ad group "
                                                        "using the audience is delivering (its serving status "
                                                        "is eligible); off: only on demand.")

    @property
    def is_portrait(self) -> bool:
        return any(isinstance(c, PortraitTags) for c in self.conditions)

    @model_serializer(mode="wrap")
    def _only_portraits_say_auto_update(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Auto update means something only for portrait packages; other rules are stored as they were.
        data: dict[str, Any] = handler(self)
        if not self.is_portrait:
            data.pop("auto_update", None)
        return data
