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
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from adstack.apps import partners
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
                 device_hash=gaid.device_hash if gaid else claims.device_hash, **extra)  # type: ignore[arg-type]


def advertised_package(session: Session, campaign_id: int) -> str:
    """The app a campaign promotes, "" for web promotion: touchpoints carry it so device matches stay within
    one app."""
    from adstack.campaigns.models import Campaign

    campaign = session.get(Campaign, campaign_id)
    return (campaign.package_name or "") if campaign is not None else ""


@dataclass(frozen=True, slots=True)
class ClickRoute:
    """Where clicks on one (campaign, ad group, creative) go, before their macros are filled.

    Source: Mi Ads Usage Guide, 3.1.3 "Upload address and monitoring information": the click address is "the URL
    that users are directed to after clicking the ad (required)"; the deeplink is "the in-app page URL that the
    user is directed to after clicking the ad (optional)"."""

    click_url: str = ""  # the creative's; "" when the token names no creative of this ad group
    deeplink: str = ""
    partner_link: str = ""  # the promoted app's measurement-partner click link
    redirect_parameter: str = ""  # how partner_link carries the click URL; "" when the partner documents none
    fallback: str = ""  # the campaign's landing page or the app's store page, for a creative we cannot find


@dataclass(frozen=True, slots=True)
class Destination:
    location: str  # where the click redirects: the click URL, wrapped by the partner's link where it can be
    landing_url: str  # the page the user ends on
    deeplink: str = ""  # tried first by the interstitial page, which falls back to `location`


NO_ROUTE = ClickRoute()


def click_route(session: Session, campaign_id: int, ad_group_id: int, creative_id: int) -> ClickRoute:
    from adstack.apps.partners import SPECS
    from adstack.campaigns.models import AdGroup, Campaign
    from adstack.core.vocabulary import Partner
    from adstack.creatives.models import Creative

    campaign = session.get(Campaign, campaign_id)
    ad_group = session.get(AdGroup, ad_group_id)
    if campaign is None or ad_group is None or ad_group.campaign_id != campaign.id:
        return NO_ROUTE
    partner_link = redirect_parameter = ""
    if campaign.package_name:
        app = apps.app_for_package(session, campaign.account_id, campaign.package_name)
        link = apps.click_tracking_link(app) if app is not None else None
        if app is not None and app.partner and link:
            partner_link = link
            redirect_parameter = SPECS[Partner(app.partner)].redirect_parameter
    creative = session.get(Creative, creative_id)
    if creative is not None and creative.ad_group_id == ad_group.id:  # a token never reaches another tenant's ad
        return ClickRoute(click_url=creative.click_url, deeplink=creative.deeplink or "", partner_link=partner_link,
                          redirect_parameter=redirect_parameter)
    fallback = campaign.landing_url or ""
    if not fallback and campaign.package_name:
        fallback = STORE_URLS.get(ad_group.promotion_channel, STORE_URLS["google_play"]).format(
            package=campaign.package_name)
    return ClickRoute(partner_link=partner_link, redirect_parameter=redirect_parameter, fallback=fallback)


def _fill(template: str, claims: TrackingClaims, click_id: str, now: datetime) -> str:
    return expand_macros(template, click_id=click_id, gaid=claims.gaid or None, timestamp=now,
                         campaign_id=claims.campaign_id, ad_group_id=claims.ad_group_id,
                         creative_id=claims.creative_id, ad_space_id=claims.ad_space_id,
                         publisher_id=claims.publisher_id)


def resolve(route: ClickRoute, claims: TrackingClaims, *, click_id: str, now: datetime) -> Destination | None:
    """The click's destination: the creative's click URL, through the partner's link where the partner documents
    a redirect parameter. A partner without one is left out of the chain: its link does not know our click URL,
    so the advertiser uses the partner's link as the click URL itself (docs/partners.md)."""
    if route.click_url:
        landing = _fill(route.click_url, claims, click_id, now)
        location = landing
        if route.partner_link and route.redirect_parameter:
            location = partners.wrap_destination(route.redirect_parameter,
                                                 _fill(route.partner_link, claims, click_id, now), landing)
        deeplink = _fill(route.deeplink, claims, click_id, now) if route.deeplink else ""
        return Destination(location=location, landing_url=landing, deeplink=deeplink)
    if route.partner_link:  # the creative is gone: the partner still records the click and opens the store
        location = _fill(route.partner_link, claims, click_id, now)
        return Destination(location=location, landing_url=location)
    if route.fallback:
        location = _fill(route.fallback, claims, click_id, now)
        return Destination(location=location, landing_url=location)
    return None


class DestinationCache:
    """Click routes per (campaign, ad group, creative), read from the control plane once a minute at most, so a
    click is answered from memory."""

    def __init__(self, session_factory: Callable[[], Session], *, ttl_seconds: float = 60.0,
                 capacity: int = 100_000):
        self._session_factory = session_factory
        self._ttl = ttl_seconds
        self._capacity = capacity
        self._entries: dict[tuple[int, int, int], tuple[float, ClickRoute]] = {}

    def cached(self, claims: TrackingClaims) -> ClickRoute | None:
        entry = self._entries.get((claims.campaign_id, claims.ad_group_id, claims.creative_id))
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def load(self, claims: TrackingClaims) -> ClickRoute:
        key = (claims.campaign_id, claims.ad_group_id, claims.creative_id)
        with self._session_factory() as session:
            route = click_route(session, *key)
        if len(self._entries) >= self._capacity:
            self._entries.clear()
        self._entries[key] = (time.monotonic() + self._ttl, route)
        return route


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
