"""Counting and billing impressions, clicks and video events from signed tracking tokens.

Every counted event gets an id derived from the impression (or its click id), so a retried pixel or a double
click is counted and charged once: the touchpoint table stores each impression and click once, the event
store counts each event id once, and finance applies each charge id once.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from adstack.apps import service as apps
from adstack.attribution import service as attribution
from adstack.attribution.rules import TouchKind
from adstack.core.errors import DomainError
from adstack.events.models import Event, EventType
from adstack.tracking.auction_price import impression_cost_micros
from adstack.tracking.devices import normalise_gaid
from adstack.tracking.models import InvalidTraffic
from adstack.tracking.tokens import TokenError, TrackingClaims, decode_token, new_click_id
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


@dataclass
class Tracked:
    """The outcome of one tracking request: whether it was new, what to append to the event store."""

    new: bool
    events: list[Event] = field(default_factory=list)
    charged_micros: int = 0
    click_id: str = ""
    destination: str | None = None


def verify(token: str, secret: bytes, *, now: datetime) -> TrackingClaims:
    return decode_token(token, secret, now=now)


def _base_event(claims: TrackingClaims, event_id: str, event_type: EventType, at: datetime,
                **extra: object) -> Event:
    gaid = normalise_gaid(claims.gaid)
    return Event(event_id=event_id, event_type=event_type, occurred_at=at, account_id=claims.account_id,
                 campaign_id=claims.campaign_id, ad_group_id=claims.ad_group_id, creative_id=claims.creative_id,
                 ad_space_id=claims.ad_space_id, publisher_id=claims.publisher_id,
                 placement_type=claims.placement_type, country=claims.country,
                 device_hash=gaid.device_hash if gaid else 0, **extra)  # type: ignore[arg-type]


def _charge(session: Session, claims: TrackingClaims, *, charge_id: str, amount_micros: int, kind: str,
            at: datetime) -> int:
    from adstack.finance import service as finance

    if amount_micros <= 0:
        return 0
    try:
        result = finance.apply_charge(session, charge_id=charge_id, account_id=claims.account_id,
                                      campaign_id=claims.campaign_id, ad_group_id=claims.ad_group_id,
                                      creative_id=claims.creative_id, amount_micros=amount_micros, kind=kind,
                                      occurred_at=at)
    except DomainError as exc:  # the ad group or account is gone: count the event, charge nothing
        log.warning("charge %s refused: %s", charge_id, exc.message)
        return 0
    return result.charged_micros if result.applied else 0


def _bill(session: Session, claims: TrackingClaims, outcome: Tracked, *, charge_id: str, amount_micros: int,
          kind: str, at: datetime) -> None:
    """Charge once and record the charge in the event store under the charge's own id, so reported cost is
    exactly the ledger's."""
    outcome.charged_micros = _charge(session, claims, charge_id=charge_id, amount_micros=amount_micros, kind=kind,
                                     at=at)
    if outcome.charged_micros > 0:
        outcome.events.append(_base_event(claims, f"charge:{charge_id}", EventType.CHARGE, at,
                                          cost_micros=outcome.charged_micros, attrs={"kind": kind}))


def advertised_package(session: Session, campaign_id: int) -> str:
    """The app a campaign promotes, "" for web promotion: touchpoints carry it so device matches stay within
    one app."""
    from adstack.campaigns.models import Campaign

    campaign = session.get(Campaign, campaign_id)
    return (campaign.package_name or "") if campaign is not None else ""


def _record(session: Session, claims: TrackingClaims, kind: TouchKind, touch_id: str, at: datetime) -> bool:
    return attribution.record_touch(
        session, kind=kind, touch_id=touch_id, impression_id=claims.impression_id, account_id=claims.account_id,
        campaign_id=claims.campaign_id, ad_group_id=claims.ad_group_id, creative_id=claims.creative_id,
        ad_space_id=claims.ad_space_id, publisher_id=claims.publisher_id, bid_type=claims.bid_type,
        price_micros=claims.price_micros, country=claims.country, placement_type=claims.placement_type,
        app_package=advertised_package(session, claims.campaign_id), gaid=normalise_gaid(claims.gaid),
        occurred_at=at)


def exchange_media_cost(session: Session, claims: TrackingClaims, *, auction_price: Decimal | None,
                        price_currency: str | None, usd_per_unit: Mapping[str, Decimal]) -> int | None:
    """What the exchange charged us for this impression, in the account currency; None when unknown."""
    from adstack.accounts.models import Account

    if auction_price is None or price_currency is None:
        return None
    account = session.get(Account, claims.account_id)
    if account is None:
        return None
    return impression_cost_micros(auction_price, price_currency=price_currency, account_currency=account.currency,
                                  usd_per_unit=usd_per_unit)


def track_impression(session: Session, claims: TrackingClaims, *, now: datetime,
                     media_cost_micros: int | None = None) -> Tracked:
    """The first impression of an impression id is counted and, for CPM and guaranteed CPM, charged.

    `media_cost_micros` (the exchange's clearing price for it) is recorded on the impression event and never
    changes the charge, which is our own auction's price from the token. The event's id is the impression's,
    so the first request that reaches the store decides both the count and the media cost; a retry changes
    neither."""
    from adstack.finance.pricing import cpm_impression_micros

    new = _record(session, claims, TouchKind.IMPRESSION, claims.impression_id, now)
    outcome = Tracked(new=new, events=[_base_event(claims, f"imp:{claims.impression_id}", EventType.IMPRESSION,
                                                   now, media_cost_micros=media_cost_micros)])
    if new and claims.bid_type in IMPRESSION_BILLED:
        _bill(session, claims, outcome, charge_id=f"imp:{claims.impression_id}",
              amount_micros=cpm_impression_micros(claims.price_micros), kind=claims.bid_type, at=now)
    return outcome


def track_click(session: Session, claims: TrackingClaims, *, secret: bytes, now: datetime) -> Tracked:
    """A valid click is counted once per impression, charged for CPC, and sent on to its destination."""
    click_id = new_click_id(claims.impression_id, claims.issued_at, secret)
    new = _record(session, claims, TouchKind.CLICK, click_id, now)
    outcome = Tracked(new=new, click_id=click_id,
                      events=[_base_event(claims, f"click:{click_id}", EventType.CLICK, now,
                                          attrs={"click_id": click_id, "impression_id": claims.impression_id})])
    if new and claims.bid_type in CLICK_BILLED:
        _bill(session, claims, outcome, charge_id=f"click:{click_id}", amount_micros=claims.price_micros,
              kind="cpc", at=now)
    outcome.destination = click_destination(session, claims, click_id=click_id, now=now)
    return outcome


def click_destination(session: Session, claims: TrackingClaims, *, click_id: str, now: datetime) -> str | None:
    """Where a click goes: the app partner's tracking link (which then opens the store), else the creative's
    deeplink, else the campaign's landing page, else the app's store page."""
    from adstack.campaigns.models import AdGroup, Campaign
    from adstack.creatives.models import Creative

    campaign = session.get(Campaign, claims.campaign_id)
    if campaign is None:
        return None
    macros = dict(click_id=click_id, gaid=claims.gaid or None, timestamp=now, campaign_id=claims.campaign_id,
                  ad_group_id=claims.ad_group_id, creative_id=claims.creative_id, ad_space_id=claims.ad_space_id,
                  publisher_id=claims.publisher_id)
    if campaign.package_name:
        app = apps.app_for_package(session, campaign.account_id, campaign.package_name)
        template = apps.click_tracking_link(app) if app is not None else None
        if template:
            return expand_macros(template, **macros)  # type: ignore[arg-type]
    creative = session.get(Creative, claims.creative_id)
    deeplink = getattr(creative, "deeplink", None) if creative is not None else None
    if deeplink:
        return expand_macros(deeplink, **macros)  # type: ignore[arg-type]
    if campaign.landing_url:
        return expand_macros(campaign.landing_url, **macros)  # type: ignore[arg-type]
    if campaign.package_name:
        ad_group = session.get(AdGroup, claims.ad_group_id)
        channel = ad_group.promotion_channel if ad_group is not None else "google_play"
        return STORE_URLS.get(channel, STORE_URLS["google_play"]).format(package=campaign.package_name)
    return None


def track_video(session: Session, claims: TrackingClaims, event: VideoEvent, *, now: datetime) -> Tracked:
    """Video progress is counted once per impression and quartile; it is never billed on its own."""
    event_type = VIDEO_EVENT_TYPES[event]
    return Tracked(new=True, events=[_base_event(claims, f"video:{claims.impression_id}:{event.value}", event_type,
                                                 now)])


def record_invalid(session: Session, *, kind: str, error: TokenError, token: str, client_ip: str,
                   user_agent: str, secret: bytes, now: datetime) -> list[Event]:
    """Keep a refused request; an expired token still names its ad, so it is counted against it as invalid
    traffic in the event store too (never billed)."""
    claims: TrackingClaims | None = None
    if error.reason == "expired":
        try:
            claims = decode_token(token, secret, now=datetime.min.replace(tzinfo=now.tzinfo))
        except TokenError:
            claims = None
    token, user_agent = token.replace("\x00", "\\x00"), user_agent.replace("\x00", "\\x00")  # for PostgreSQL
    session.add(InvalidTraffic(kind=kind, reason=error.reason, message=error.message[:300], token=token[:300],
                               account_id=claims.account_id if claims else None,
                               ad_group_id=claims.ad_group_id if claims else None,
                               impression_id=claims.impression_id if claims else "", client_ip=client_ip[:64],
                               user_agent=user_agent[:300], occurred_at=now))
    if claims is None:
        return []
    return [_base_event(claims, f"invalid:{uuid.uuid4().hex}", EventType.INVALID, now,
                        attrs={"reason": error.reason, "kind": kind})]


def invalid_traffic(session: Session, *, account_ids: set[int] | None, limit: int,
                    offset: int) -> tuple[list[InvalidTraffic], dict[str, int]]:
    stmt = select(InvalidTraffic)
    count = select(InvalidTraffic.reason, func.count()).group_by(InvalidTraffic.reason)
    if account_ids is not None:
        stmt = stmt.where(InvalidTraffic.account_id.in_(account_ids))
        count = count.where(InvalidTraffic.account_id.in_(account_ids))
    rows = list(session.scalars(stmt.order_by(InvalidTraffic.id.desc()).limit(limit).offset(offset)))
    return rows, {reason: int(n) for reason, n in session.execute(count)}
