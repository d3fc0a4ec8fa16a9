"""Tracking rules shared by the endpoints and the pipeline's consumers: which bid types bill on what, the event
a tracked request becomes, and where a click goes.

Every counted event gets an id derived from the impression (or its click id), so a retried pixel or a double
click is counted and charged once: the touchpoint table stores each impression and click once, the event
store counts each event id once, and finance applies each charge id once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from adstack.apps import service as apps
from adstack.events.models import Event, EventType
from adstack.tracking.devices import normalise_gaid
from adstack.tracking.models import InvalidTraffic, InvalidTrafficOverflow
from adstack.tracking.tokens import TrackingClaims, decode_token
from adstack.tracking.urls import VideoEvent, expand_macros

log = logging.getLogger("adstack.tracking")

# Bid types charged per impression and per click; CPT is charged per booked slot, CPA per conversion.
IMPRESSION_BILLED = frozenset({"cpm", "guaranteed_cpm"})
CLICK_BILLED = frozenset({"cpc"})
VIDEO_EVENT_TYPES = {
    VideoEvent.START: EventType.VIDEO_START,
    VideoEvent.FIRST_QUARTILE: EventType.VIDEO_FIRST_QUARTILE,
    VideoEvent.MIDPOINT: EventType.VIDEO_MIDPOINT,
    VideoEvent.THIRD_QUARTILE: EventType.VIDEO_THIRD_QUARTILE,
    VideoEvent.COMPLETE: EventType.VIDEO_COMPLETE,
}
STORE_URLS = {
    "google_play": "https://play.google.com/store/apps/details?id={package}",
    "getapps": "https://global.app.mi.com/details?id={package}",
}


def verify(token: str, secret: bytes, *, now: datetime) -> TrackingClaims:
    return decode_token(token, secret, now=now)


def event_for(claims: TrackingClaims, event_id: str, event_type: EventType, at: datetime,
                **extra: object) -> Event:
    gaid = normalise_gaid(claims.gaid)
    return Event(event_id=event_id, event_type=event_type, occurred_at=at, account_id=claims.account_id,
                 campaign_id=claims.campaign_id, ad_group_id=claims.ad_group_id, creative_id=claims.creative_id,
                 ad_space_id=claims.ad_space_id, publisher_id=claims.publisher_id,
                 placement_type=claims.placement_type, country=claims.country,
                 device_hash=gaid.device_hash if gaid else 0, **extra)  # type: ignore[arg-type]


def advertised_package(session: Session, campaign_id: int) -> str:
    """The app a campaign promotes, "" for web promotion: touchpoints carry it so device matches stay within
    one app."""
    from adstack.campaigns.models import Campaign

    campaign = session.get(Campaign, campaign_id)
    return (campaign.package_name or "") if campaign is not None else ""


def destination_template(session: Session, campaign_id: int, ad_group_id: int, creative_id: int) -> str | None:
    """Where a click goes, before its macros are filled: the app partner's tracking link (which then opens the
    store), else the creative's deeplink, else the campaign's landing page, else the app's store page."""
    from adstack.campaigns.models import AdGroup, Campaign
    from adstack.creatives.models import Creative

    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        return None
    if campaign.package_name:
        app = apps.app_for_package(session, campaign.account_id, campaign.package_name)
        template = apps.click_tracking_link(app) if app is not None else None
        if template:
            return template
    creative = session.get(Creative, creative_id)
    deeplink = getattr(creative, "deeplink", None) if creative is not None else None
    if deeplink:
        return str(deeplink)
    if campaign.landing_url:
        return campaign.landing_url
    if campaign.package_name:
        ad_group = session.get(AdGroup, ad_group_id)
        channel = ad_group.promotion_channel if ad_group is not None else "google_play"
        return STORE_URLS.get(channel, STORE_URLS["google_play"]).format(package=campaign.package_name)
    return None


def expand_destination(template: str | None, claims: TrackingClaims, *, click_id: str, now: datetime) -> str | None:
    if template is None:
        return None
    return expand_macros(template, click_id=click_id, gaid=claims.gaid or None, timestamp=now,
                         campaign_id=claims.campaign_id, ad_group_id=claims.ad_group_id,
                         creative_id=claims.creative_id, ad_space_id=claims.ad_space_id,
                         publisher_id=claims.publisher_id)


def click_destination(session: Session, claims: TrackingClaims, *, click_id: str, now: datetime) -> str | None:
    template = destination_template(session, claims.campaign_id, claims.ad_group_id, claims.creative_id)
    return expand_destination(template, claims, click_id=click_id, now=now)


class DestinationCache:
    """Click destinations per (campaign, ad group, creative), read from the control plane once a minute at most,
    so a click is answered from memory."""

    def __init__(self, session_factory: Callable[[], Session], *, ttl_seconds: float = 60.0,
                 capacity: int = 100_000):
        self._session_factory = session_factory
        self._ttl = ttl_seconds
        self._capacity = capacity
        self._entries: dict[tuple[int, int, int], tuple[float, str | None]] = {}

    def cached(self, claims: TrackingClaims) -> tuple[bool, str | None]:
        entry = self._entries.get((claims.campaign_id, claims.ad_group_id, claims.creative_id))
        if entry is None or entry[0] < time.monotonic():
            return False, None
        return True, entry[1]

    def load(self, claims: TrackingClaims) -> str | None:
        key = (claims.campaign_id, claims.ad_group_id, claims.creative_id)
        with self._session_factory() as session:
            template = destination_template(session, *key)
        if len(self._entries) >= self._capacity:
            self._entries.clear()
        self._entries[key] = (time.monotonic() + self._ttl, template)
        return template


def invalid_traffic(session: Session, *, account_ids: set[int] | None, limit: int,
                    offset: int) -> tuple[list[InvalidTraffic], dict[str, int]]:
    stmt = select(InvalidTraffic)
    count = select(InvalidTraffic.reason, func.count()).group_by(InvalidTraffic.reason)
    if account_ids is not None:
        stmt = stmt.where(InvalidTraffic.account_id.in_(account_ids))
        count = count.where(InvalidTraffic.account_id.in_(account_ids))
    rows = list(session.scalars(stmt.order_by(InvalidTraffic.id.desc()).limit(limit).offset(offset)))
    by_reason = {reason: int(n) for reason, n in session.execute(count)}
    if account_ids is None:  # past the per-minute row bound only counts were kept, with no account
        for reason, n in session.execute(select(InvalidTrafficOverflow.reason, func.sum(InvalidTrafficOverflow.count))
                                         .group_by(InvalidTrafficOverflow.reason)):
            by_reason[reason] = by_reason.get(reason, 0) + int(n or 0)
    return rows, by_reason
