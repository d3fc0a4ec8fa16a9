"""Tracking URLs for an ad response, and macro expansion in third-party monitoring URLs."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from urllib.parse import quote

from adstack.tracking.devices import GaidForm, normalise_gaid
from adstack.tracking.tokens import DEFAULT_TOKEN_TTL, TrackingClaims, encode_token, new_click_id


class VideoEvent(StrEnum):
    START = "start"
    FIRST_QUARTILE = "first_quartile"
    MIDPOINT = "midpoint"
    THIRD_QUARTILE = "third_quartile"
    COMPLETE = "complete"


@dataclass(frozen=True, slots=True)
class TrackingUrls:
    base_url: str
    token: str
    click_id: str = ""

    @property
    def impression_url(self) -> str:
        return f"{self.base_url}/t/imp?t={self.token}"

    @property
    def click_url(self) -> str:
        return f"{self.base_url}/t/click?t={self.token}"

    @property
    def video_urls(self) -> dict[str, str]:
        return {event.value: f"{self.base_url}/t/video?e={event.value}&t={self.token}" for event in VideoEvent}


def build_tracking_urls(
    *,
    base_url: str,
    secret: bytes,
    impression_id: str,
    account_id: int,
    campaign_id: int,
    ad_group_id: int,
    creative_id: int,
    ad_space_id: int,
    publisher_id: int,
    bid_type: str,
    price_micros: int,
    issued_at: datetime,
    gaid: str | None,
    country: str,
    placement_type: str,
    device_hash: int = 0,
    exchange_bid_micros: int = 0,
    exchange_currency: str = "",
    test: bool = False,
    clears_at_bid: bool = False,
) -> TrackingUrls:
    """The impression, click and video URLs of one served ad.

    `secret` is the platform secret (`settings.resolved_secret_key`); keys for tokens and click ids are
    derived from it. `price_micros` is the clearing price in the account currency: per thousand impressions
    for CPM and guaranteed CPM, per click for CPC (CPT and CPA are not charged by tracking).
    `impression_id` is 1-64 characters of [A-Za-z0-9_-]. `device_hash` identifies the device in events where
    no raw `gaid` may travel in the URL (exchange traffic). An exchange's bid also signs its price
    (`exchange_bid_micros`, CPM in `exchange_currency`), whether its auction was a test and whether the exchange
    clears it at its price (`clears_at_bid`: first price, a fixed-price deal), which caps an impression's charge
    at the clearing price the exchange reports.
    """
    device = normalise_gaid(gaid)
    claims = TrackingClaims(
        impression_id=impression_id, account_id=account_id, campaign_id=campaign_id, ad_group_id=ad_group_id,
        creative_id=creative_id, ad_space_id=ad_space_id, publisher_id=publisher_id, bid_type=bid_type,
        price_micros=price_micros, issued_at=issued_at, expires_at=issued_at + DEFAULT_TOKEN_TTL,
        country=country, placement_type=placement_type,
        gaid=device.value if device is not None and device.form is GaidForm.RAW else "",
        device_hash=0 if device is not None else device_hash,
        exchange_bid_micros=exchange_bid_micros, exchange_currency=exchange_currency, test=test,
        clears_at_bid=clears_at_bid,
    )
    return TrackingUrls(base_url=base_url.rstrip("/"), token=encode_token(claims, secret),
                        click_id=new_click_id(impression_id, issued_at, secret))


# Macros accepted in advertisers' third-party impression-monitoring and video-tracking URLs, in the two
# spellings ad servers commonly use: {click_id} and __CLICK_ID__.
MACRO_ALIASES: dict[str, tuple[str, ...]] = {
    "click_id": ("click_id", "clickid", "CLICK_ID", "CLICKID"),
    "gaid": ("gaid", "GAID", "advertising_id", "ADVERTISING_ID", "google_aid"),
    "timestamp": ("timestamp", "ts", "TS", "TIMESTAMP"),
    "timestamp_ms": ("timestamp_ms", "TS_MS", "TIMESTAMP_MS"),
    "campaign_id": ("campaign_id", "CAMPAIGN_ID", "campaignid"),
    "ad_group_id": ("ad_group_id", "adgroup_id", "AD_GROUP_ID", "ADGROUP_ID", "adgroupid"),
    "creative_id": ("creative_id", "CREATIVE_ID", "creativeid"),
    "ad_space_id": ("ad_space_id", "AD_SPACE_ID"),
    "publisher_id": ("publisher_id", "PUBLISHER_ID"),
}
_ALIAS_TO_NAME = {alias: name for name, aliases in MACRO_ALIASES.items() for alias in aliases}
_MACRO = re.compile(r"\{([A-Za-z_]+)\}|__([A-Z_]+)__")


def expand_macros(
    template: str,
    *,
    click_id: str = "",
    gaid: str | None = None,
    timestamp: datetime | None = None,
    campaign_id: int | None = None,
    ad_group_id: int | None = None,
    creative_id: int | None = None,
    ad_space_id: int | None = None,
    publisher_id: int | None = None,
) -> str:
    """Fill the known macros of a third-party URL, URL-encoded; unknown macros are left as they are, and a
    known macro without a value becomes empty rather than leaking the placeholder to the third party."""
    parts = _parsed(template)
    if parts is None:
        return template
    values: Mapping[str, str] = {
        "click_id": click_id,
        "gaid": gaid or "",
        "timestamp": str(int(timestamp.timestamp())) if timestamp else "",
        "timestamp_ms": str(int(timestamp.timestamp() * 1000)) if timestamp else "",
        "campaign_id": "" if campaign_id is None else str(campaign_id),
        "ad_group_id": "" if ad_group_id is None else str(ad_group_id),
        "creative_id": "" if creative_id is None else str(creative_id),
        "ad_space_id": "" if ad_space_id is None else str(ad_space_id),
        "publisher_id": "" if publisher_id is None else str(publisher_id),
    }
    return "".join([part if name is None else _encoded(values[name]) for part, name in parts])


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")


def _encoded(value: str) -> str:
    """`quote(value, safe="")`, skipped for the ids and digits that make up nearly every value."""
    return value if _UNRESERVED.fullmatch(value) else quote(value, safe="")


@functools.lru_cache(maxsize=8192)
def _parsed(template: str) -> tuple[tuple[str, str | None], ...] | None:
    """A template as literal text and known macro names, in order; None when it has no known macro. Cached:
    the same few creatives' templates are filled on every ad served."""
    parts: list[tuple[str, str | None]] = []
    position = 0
    for match in _MACRO.finditer(template):
        name = _ALIAS_TO_NAME.get(match.group(1) or match.group(2))
        if name is None:
            continue
        parts.append((template[position:match.start()], None))
        parts.append(("", name))
        position = match.end()
    if not parts:
        return None
    parts.append((template[position:], None))
    return tuple(parts)
