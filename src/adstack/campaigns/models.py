"""Campaigns and ad groups: tables and API schemas."""

from __future__ import annotations

from adstack.campaigns.enums import (
    BID_TYPES_BY_OBJECTIVE,
    BidType,
    LandingKind,
    MarketingObjective,
    Pacing,
    PromotionChannel,
    PromotionType,
    ServingStatus,
    StatusAction,
    TargetGroup,
    UserStatus,
)

__all__ = [
    "BID_TYPES_BY_OBJECTIVE",
    "BidType",
    "LandingKind",
    "MarketingObjective",
    "Pacing",
    "PromotionChannel",
    "PromotionType",
    "ServingStatus",
    "StatusAction",
    "TargetGroup",
    "UserStatus",
]
