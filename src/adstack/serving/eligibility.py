"""The per-candidate rules the targeting index cannot answer by set membership.

Each rule is a pure function of the ad group, the request and (for audiences) the membership index; each returns
None when the ad group may serve, else the reason it may not. Budgets, pacing and frequency depend on counters
and are checked by the decision engine, which owns them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Protocol

from adstack.core.timeutil import zone
from adstack.core.vocabulary import NO_LINGUISTIC_CONTENT
from adstack.pipeline.records import slot_second
from adstack.serving.installs import HISTORY_TARGET_GROUPS, NOT_INSTALLED_WINDOW
from adstack.serving.request import AdRequest, Slot
from adstack.serving.snapshot import AdGroupSnap, AssetCombination, CreativeSnap, Schedule, TargetingSnap

# Target groups that want devices without the promoted app. Source: Mi Ads Usage Guide, 3.1.2 Create Ad Group,
# "Select the target group": not currently installed, not installed within 90 days, never installed.
_NOT_INSTALLED_GROUPS = frozenset({"not_currently_installed", "not_installed_90d", "never_installed"})
_NOT_INSTALLED_WINDOW_SECONDS = NOT_INSTALLED_WINDOW.total_seconds()


class AudienceMembership(Protocol):
    def matches(self, include_ids: Iterable[int], exclude_ids: Iterable[int], device_key: int | None,
                sha256_key: int | None = None, *, gaid: str | None = None) -> bool: ...


class LocalTimes:
    """The request's moment in each time zone, converted once per zone per request."""

    __slots__ = ("_cache", "now")

    def __init__(self, now: datetime):
        self.now = now
        self._cache: dict[str, datetime] = {}

    def at(self, time_zone: str) -> datetime:
        local = self._cache.get(time_zone)
        if local is None:
            local = self._cache[time_zone] = self.now.astimezone(zone(time_zone))
        return local


def hour_of_week(local: datetime) -> int:
    return local.weekday() * 24 + local.hour


def check_schedule(schedule: Schedule, times: LocalTimes) -> str | None:
    now = times.now
    if schedule.start is not None and now < schedule.start:
        return "not_started"
    if schedule.end is not None and now >= schedule.end:
        return "ended"
    if schedule.hours_of_week is not None and hour_of_week(times.at(schedule.time_zone)) not in schedule.hours_of_week:
        return "out_of_daypart"
    if schedule.booked_slots and not any(start <= now < end for start, end in schedule.booked_slots):
        return "outside_booked_slots"
    return None


def check_slot_paid(schedule: Schedule, times: LocalTimes, unpaid: frozenset[int]) -> str | None:
    """A CPT slot serves only once its charge went through in full: one refused (no funds) or cut short by a
    budget is never billed again, and serving it would give the rest of the slot away."""
    now = times.now
    for start, end in schedule.booked_slots:
        if start <= now < end and slot_second(start) in unpaid:
            return "slot_unpaid"
    return None


def _padded(version: tuple[int, ...], length: int) -> tuple[int, ...]:
    return version + (0,) * (length - len(version)) if len(version) < length else version


def check_exceptions(targeting: TargetingSnap, request: AdRequest) -> str | None:
    """Source: Mi Ads Usage Guide, 3.1.2 Create Ad Group, "Set orientation": "Other: audience, excluded audience,
    exceptions": the publisher apps and ad spaces the ad group never serves on."""
    if targeting.excluded_ad_space_ids and request.ad_space_id in targeting.excluded_ad_space_ids:
        return "excepted_ad_space"
    if targeting.excluded_publisher_packages and request.app_package in targeting.excluded_publisher_packages:
        return "excepted_publisher"
    return None


def check_os_version(targeting: TargetingSnap, request: AdRequest) -> str | None:
    if targeting.os_min is None and targeting.os_max is None:
        return None
    version = request.os_version
    if version is None:
        return "os_version_unknown"
    if targeting.os_min is not None and _padded(version, len(targeting.os_min)) < targeting.os_min:
        return "os_version_below_range"
    # A maximum of 12 admits 12.1 and 12.9: compare only as many parts as the maximum names.
    if targeting.os_max is not None and _padded(version, len(targeting.os_max))[:len(targeting.os_max)] \
            > targeting.os_max:
        return "os_version_above_range"
    return None


def check_installs(targeting: TargetingSnap, request: AdRequest, categories: Mapping[str, str]) -> str | None:
    """Installed / not-installed apps and categories, and the target group's install state of the promoted app."""
    installed = request.installed_packages
    wants_installed = targeting.installed_apps or targeting.installed_categories
    group = targeting.target_group
    if installed is None:
        # Nothing reported: positive install conditions cannot hold; negative ones cannot be refuted.
        if wants_installed:
            return "installed_apps_unknown"
        if targeting.promoted_package and group == "installed":
            return "target_group_installed_unknown"
        return check_install_history(targeting, request)
    if targeting.installed_apps and targeting.installed_apps.isdisjoint(installed):
        return "installed_apps"
    if targeting.installed_categories and not _any_category(installed, targeting.installed_categories, categories):
        return "installed_categories"
    if targeting.not_installed_apps and not targeting.not_installed_apps.isdisjoint(installed):
        return "not_installed_apps"
    if targeting.not_installed_categories and _any_category(installed, targeting.not_installed_categories,
                                                            categories):
        return "not_installed_categories"
    if targeting.promoted_package:
        has_app = targeting.promoted_package in installed
        if group == "installed" and not has_app:
            return "target_group_installed"
        if group in _NOT_INSTALLED_GROUPS and has_app:
            return "target_group_not_installed"
        return check_install_history(targeting, request)
    return None


def check_install_history(targeting: TargetingSnap, request: AdRequest) -> str | None:
    """"Not installed within 90 days" and "never installed" also look back: a device that reported the promoted
    app within the window (or ever) is refused, though it no longer has it."""
    group = targeting.target_group
    if group not in HISTORY_TARGET_GROUPS or not targeting.promoted_package:
        return None
    span = request.install_history.get(targeting.promoted_package)
    if span is None:
        return None
    if group == "never_installed":
        return "target_group_never_installed"
    if span[1] >= request.now.timestamp() - _NOT_INSTALLED_WINDOW_SECONDS:
        return "target_group_installed_within_90_days"
    return None


def _any_category(packages: Iterable[str], wanted: frozenset[str], categories: Mapping[str, str]) -> bool:
    return any(categories.get(package) in wanted for package in packages)


def check_behaviour_and_usage(targeting: TargetingSnap, request: AdRequest,
                              categories: Mapping[str, str]) -> str | None:
    installed = request.installed_packages or frozenset()
    for rule in targeting.behaviours:
        # What a request can attest is the present install state; past activations and payments are label
        # audiences' business (materialised from the device profile store).
        named = set(rule.packages) | {p for p in installed if categories.get(p) in rule.categories}
        if rule.action == "installed" and not (named & installed):
            return "app_behaviour"
        if rule.action == "uninstalled" and (set(rule.packages) & installed):
            return "app_behaviour"
        if rule.action in ("activated", "paid") and not (set(rule.packages) & installed):
            return "app_behaviour"
    for usage in targeting.usage:
        if usage.package is not None:
            minutes = request.usage_minutes.get(usage.package, 0)
        else:
            minutes = sum(m for p, m in request.usage_minutes.items() if categories.get(p) == usage.category)
        if minutes < usage.min_minutes:
            return "app_usage"
    return None


def check_audiences(targeting: TargetingSnap, request: AdRequest, audiences: AudienceMembership | None) -> str | None:
    if not targeting.uses_audiences:
        return None
    if not request.use_audiences:
        return "audiences_not_allowed"  # COPPA: no audience targeting at all
    if audiences is None:
        return "audiences_unavailable"
    # The raw GAID lets the index probe every key space an upload can be stored in (MD5 and SHA-256).
    if not audiences.matches(targeting.include_audiences, targeting.exclude_audiences, request.device_key,
                             gaid=request.gaid):
        return "audience"
    return None


def creative_fits(creative: CreativeSnap, slot: Slot) -> bool:
    if slot.formats and creative.format not in slot.formats:
        return False
    if slot.languages and creative.language not in slot.languages and creative.language != NO_LINGUISTIC_CONTENT:
        return False
    if slot.sizes and creative.width and (creative.width, creative.height) not in slot.sizes:
        return False
    if slot.sizes and not creative.width:
        return False
    media = slot.media
    fits_media = (("image" in media and creative.has_image and not creative.has_video
                   and (not slot.image_mimes or bool(allowed_combinations(creative, slot))))
                  or ("video" in media and creative.has_video)
                  or ("native" in media and creative.is_native_capable))
    if not fits_media:
        return False
    if creative.has_video and slot.max_duration_ms and creative.duration_ms > slot.max_duration_ms:
        return False
    return not (creative.has_video and slot.min_duration_ms and creative.duration_ms < slot.min_duration_ms)


def allowed_combinations(creative: CreativeSnap, slot: Slot) -> tuple[AssetCombination, ...]:
    """The creative's image combinations whose file type the slot takes (all of them when it names none)."""
    if not slot.image_mimes:
        return creative.combinations
    return tuple(c for c in creative.combinations if c.image_mime and c.image_mime in slot.image_mimes)


def fitting_creatives(group: AdGroupSnap, slot: Slot) -> list[CreativeSnap]:
    return [c for c in group.creatives if creative_fits(c, slot)]


def check_advertiser(group: AdGroupSnap, request: AdRequest) -> str | None:
    # A blocked domain blocks its subdomains: badv nike.com blocks adomain shop.nike.com.
    # Source: OpenRTB 2.6 §3.2.1 badv, advertisers blocked "by their domains": a subdomain is the same advertiser's.
    if request.blocked_domains and not request.blocked_domains.isdisjoint(group.domain_suffixes):
        return "advertiser_blocked"
    if request.blocked_apps and group.targeting.promoted_package in request.blocked_apps:
        return "app_blocked"
    # An uncategorised campaign could be anything the exchange blocks; one filed under a tier (IAB9) could be in
    # its blocked subcategory (IAB9-30). Source: OpenRTB 2.6 §3.2.1 bcat; IAB Content Taxonomy 1.0 (tiers).
    if request.blocked_categories and (not group.categories or any(
            category_blocked(c, request.blocked_categories) or c in request.blocked_category_tiers
            for c in group.categories)):
        return "category_blocked"
    allowed = request.allowed_categories
    if allowed is not None and (not group.categories or not all(category_blocked(c, allowed)
                                                                for c in group.categories)):
        return "category_not_allowed"
    return None


def category_blocked(category: str, blocked: frozenset[str]) -> bool:
    """A blocked tier-1 category (IAB9) blocks its subcategories (IAB9-30) too (and, as a list of allowed ones,
    allows them)."""
    return category in blocked or category.split("-", 1)[0] in blocked


Rule = Callable[[AdGroupSnap, AdRequest], str | None]


def check_device_rules(group: AdGroupSnap, request: AdRequest, *, categories: Mapping[str, str],
                       audiences: AudienceMembership | None) -> str | None:
    """Every request-dependent targeting rule beyond the index, cheapest first."""
    targeting = group.targeting
    if not targeting.needs_device_checks:
        return None
    return (check_exceptions(targeting, request)
            or check_os_version(targeting, request)
            or check_installs(targeting, request, categories)
            or check_behaviour_and_usage(targeting, request, categories)
            or check_audiences(targeting, request, audiences))
