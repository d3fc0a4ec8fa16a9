"""The event record: one row per ad request, ad served, impression, click, video event, install, in-app event or charge.

Every writer (serving, tracking, attribution, billing) produces these; the event store keeps them
append-only and counts each event_id once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class EventType(StrEnum):
    # One per ad request (an SDK request or an exchange's imp), filled or not: the supply side's count, kept
    # under account 0 and attribution type "supply", so fill rate = filled ad requests / ad requests.
    AD_REQUEST = "ad_request"
    REQUEST = "request"  # one per ad served, under the ad's account
    IMPRESSION = "impression"
    CLICK = "click"
    VIDEO_START = "video_start"
    VIDEO_FIRST_QUARTILE = "video_first_quartile"
    VIDEO_MIDPOINT = "video_midpoint"
    VIDEO_THIRD_QUARTILE = "video_third_quartile"
    VIDEO_COMPLETE = "video_complete"
    INSTALL = "install"
    IN_APP_EVENT = "in_app_event"
    CHARGE = "charge"
    INVALID = "invalid"  # refused tracking (forged or expired token): kept, never billed


@dataclass(frozen=True, slots=True)
class Event:
    event_id: str  # unique per event; a retry with the same id is counted once
    event_type: EventType
    occurred_at: datetime  # UTC
    account_id: int
    campaign_id: int = 0
    ad_group_id: int = 0
    creative_id: int = 0
    ad_space_id: int = 0
    publisher_id: int = 0
    placement_type: str = ""
    country: str = ""
    objective: str = ""
    app_package: str = ""  # the publisher app the ad ran in, or the advertised app for conversions
    device_hash: int = 0  # 64-bit hash of the normalised device id; 0 when unknown
    conversion_event: str = ""  # INSTALL or one of the 22 in-app events
    attribution_type: str = ""  # click, view or organic
    partner: str = ""  # measurement partner of a conversion
    revenue_micros: int = 0  # conversion revenue, in the account currency
    cost_micros: int = 0  # charge amount, in the account currency
    # What the exchange charged us for an impression (its clearing price per impression), in the account
    # currency; None when unknown or when no exchange sold it.
    media_cost_micros: int | None = None
    attrs: dict[str, str] = field(default_factory=dict)  # anything else worth keeping (reason of invalid, ...)
