"""The vocabularies of campaigns and ad groups, imported by serving, finance, tracking and the console."""

from __future__ import annotations

from enum import StrEnum


class MarketingObjective(StrEnum):
    PERFORMANCE = "performance"
    BRAND = "brand"


class PromotionType(StrEnum):
    APP_DOWNLOAD = "app_download"
    NON_DOWNLOAD = "non_download"


class LandingKind(StrEnum):
    H5 = "h5"
    WEBSITE = "website"


class UserStatus(StrEnum):
    """What the user set. Deleted is final (soft delete)."""

    ENABLED = "enabled"
    PAUSED = "paused"
    DELETED = "deleted"


class StatusAction(StrEnum):
    ENABLE = "enable"
    PAUSE = "pause"
    DELETE = "delete"


class PromotionChannel(StrEnum):
    GETAPPS = "getapps"
    GOOGLE_PLAY = "google_play"


class TargetGroup(StrEnum):
    NOT_CURRENTLY_INSTALLED = "not_currently_installed"
    NOT_INSTALLED_90D = "not_installed_90d"
    NEVER_INSTALLED = "never_installed"
    INSTALLED = "installed"
    ALL_USERS = "all_users"


class BidType(StrEnum):
    GUARANTEED_CPM = "guaranteed_cpm"  # brand: booked impressions at a fixed CPM
    CPT = "cpt"  # brand: booked time slots
    CPC = "cpc"  # performance
    CPA = "cpa"  # performance, names its conversion event


BID_TYPES_BY_OBJECTIVE: dict[MarketingObjective, frozenset[BidType]] = {
    MarketingObjective.BRAND: frozenset({BidType.GUARANTEED_CPM, BidType.CPT}),
    MarketingObjective.PERFORMANCE: frozenset({BidType.CPC, BidType.CPA}),
}


class Pacing(StrEnum):
    EVEN = "even"  # spread the daily budget over the day
    ASAP = "asap"  # spend as fast as traffic allows


class ServingStatus(StrEnum):
    """Why an ad group serves or not, in the order the checks run (the first that applies wins)."""

    DELETED = "deleted"
    PAUSED = "paused"
    CAMPAIGN_PAUSED = "campaign_paused"
    CAMPAIGN_DELETED = "campaign_deleted"
    ACCOUNT_SUSPENDED = "account_suspended"  # taken down by a platform reviewer, with a reason
    ACCOUNT_UNDER_REVIEW = "account_under_review"
    TO_BE_SUBMITTED = "to_be_submitted"
    UNDER_REVIEW = "under_review"
    REJECTED = "rejected"
    SUSPENDED = "suspended"  # taken down by a reviewer; only a reviewer lifts it
    # What serving would find missing: a creative it may show, an ad space it may show on.
    CREATIVES_UNDER_REVIEW = "creatives_under_review"
    NO_APPROVED_CREATIVE = "no_approved_creative"
    NO_INVENTORY = "no_inventory"
    NO_AUDIENCE_MEMBERS = "no_audience_members"  # every audience it includes is building, failed or empty
    BALANCE_INSUFFICIENT = "balance_insufficient"
    BUDGET_EXHAUSTED = "budget_exhausted"
    DAILY_BUDGET_EXHAUSTED = "daily_budget_exhausted"
    # What is left of today's budget is held by ads served and not yet shown, billed or expired.
    DAILY_BUDGET_RESERVED = "daily_budget_reserved"
    BUDGET_RESERVED = "budget_reserved"  # the same, of its total budget
    OUT_OF_SCHEDULE = "out_of_schedule"
    ELIGIBLE = "eligible"
    NO_ACTIVE_AD_GROUPS = "no_active_ad_groups"  # campaigns only: nothing under it could serve
