"""Answering the SDK's ad request: normalise it, decide, and assemble the ads with their tracking URLs.

Serving has no tables and no per-request database work: `ServingRuntime` (see runtime.py) holds the snapshot
and counters; this module turns requests into decisions and decisions into responses.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from adstack.core.errors import NotFound
from adstack.core.security import random_token
from adstack.events.models import Event, EventType
from adstack.serving.engine import Decision
from adstack.serving.installs import NO_HISTORY, InstallHistory
from adstack.serving.models import AdRequestData
from adstack.serving.request import AdRequest, parse_os_version
from adstack.serving.runtime import ServingRuntime, observe_events
from adstack.serving.snapshot import AdSpaceSnap, PublisherSnap
from adstack.tracking.devices import GaidForm, device_hash_of_md5, normalise_gaid
from adstack.tracking.urls import TrackingUrls, build_tracking_urls, expand_macros

__all__ = ["ServingRuntime", "build_request", "observe_events", "serve_sdk_request", "tracking_for"]


def device_identity(gaid: str | None) -> tuple[str | None, int | None, int]:
    """(canonical raw GAID, audience device key, event-store device hash); None and 0 for absent or zeroed ids.
    An MD5-hashed GAID has no raw form but is the audience key itself (its first 64 bits), so MD5-space audiences
    still match it, and the same device hash as its raw form."""
    device = normalise_gaid(gaid)
    if device is None:
        return None, None, 0
    if device.form is GaidForm.MD5:
        return None, int(device.value[:16], 16), device.device_hash
    if device.form is not GaidForm.RAW:
        return None, None, 0
    # One MD5 for both: the audience key is its first 64 bits, the device hash is taken from its hex form
    # (`audiences.ids.device_key` and `Gaid.device_hash`, which a test holds this to).
    digest = hashlib.md5(device.value.encode(), usedforsecurity=False).digest()
    return device.value, int.from_bytes(digest[:8], "big"), device_hash_of_md5(digest.hex())


def build_request(data: AdRequestData, space: AdSpaceSnap, publisher: PublisherSnap | None, *,
                  now: datetime, installs: InstallHistory | None = None) -> AdRequest:
    gaid, key, device_hash = device_identity(data.device.gaid)
    country = data.device.country or (publisher.country if publisher is not None else None)
    installed = frozenset(data.app.installed_packages) if data.app.installed_packages is not None else None
    usage = {p: s // 60 for p, s in (data.app.usage_seconds or {}).items()}
    return AdRequest(
        now=now, placement_type=space.placement_type, slot=space.slot, count=data.count,
        ad_space_id=space.id, publisher_id=space.publisher_id,
        app_package=data.app.package or (publisher.app_package if publisher else ""),
        country=country.upper() if country else None,
        # Android's Locale.toString() writes "hi_IN"; targeting reads BCP 47 tags ("hi-IN", then "hi").
        language=data.device.language.lower().replace("_", "-") if data.device.language else None,
        gender=data.user.gender.value if data.user.gender else None, age=data.user.age,
        network=data.device.network.value if data.device.network else None,
        carrier=data.device.carrier.lower() if data.device.carrier else None,
        device_model=data.device.model.lower() if data.device.model else None,
        os_version=parse_os_version(data.device.os_version), gaid=gaid, device_key=key, device_hash=device_hash,
        installed_packages=installed, usage_minutes=usage,
        install_history=installs.of(key) if installs is not None else NO_HISTORY,
    )


def tracking_for(runtime: ServingRuntime, decision: Decision, request: AdRequest) -> TrackingUrls:
    group = decision.ad_group
    space = decision.ad_space
    return build_tracking_urls(
        base_url=runtime.base_url, secret=runtime.secret, impression_id=decision.impression_id,
        account_id=group.account_id, campaign_id=group.campaign_id, ad_group_id=group.id,
        creative_id=decision.creative.id, ad_space_id=space.id if space else 0,
        publisher_id=space.publisher_id if space else 0, bid_type=group.bid_type, price_micros=decision.price_micros,
        issued_at=request.now, gaid=request.gaid, country=request.country or "",
        placement_type=request.placement_type or "")


def third_party_urls(templates: Iterable[str], decision: Decision, request: AdRequest, click_id: str) -> list[str]:
    space = decision.ad_space
    return [expand_macros(t, click_id=click_id, gaid=request.gaid, timestamp=request.now,
                          campaign_id=decision.ad_group.campaign_id, ad_group_id=decision.ad_group.id,
                          creative_id=decision.creative.id, ad_space_id=space.id if space else None,
                          publisher_id=space.publisher_id if space else None) for t in templates]


def impression_monitors(decision: Decision, request: AdRequest, click_id: str) -> list[str]:
    """Third-party URLs the device fires with our impression pixel: the creative's monitors, then the promoted
    app's measurement-partner view-through link, which carries the click id a later click would carry."""
    templates = list(decision.creative.impression_monitor_urls)
    if decision.ad_group.view_through_url:
        templates.append(decision.ad_group.view_through_url)
    return third_party_urls(templates, decision, request, click_id)


def video_trackers(decision: Decision, request: AdRequest, urls: TrackingUrls) -> dict[str, list[str]]:
    video: dict[str, list[str]] = {event: [url] for event, url in urls.video_urls.items()}
    for event, template in decision.creative.video_tracking_urls:
        video.setdefault(event, []).extend(third_party_urls([template], decision, request, urls.click_id))
    return video


def _ad(runtime: ServingRuntime, decision: Decision, request: AdRequest) -> dict[str, Any]:
    """One ad in the shape of `AdOut` (built as a plain dict: this is the hot path)."""
    urls = tracking_for(runtime, decision, request)
    combination = decision.combination
    creative = decision.creative
    impression = [urls.impression_url, *impression_monitors(decision, request, urls.click_id)]
    return {
        "impression_id": decision.impression_id, "campaign_id": decision.ad_group.campaign_id,
        "ad_group_id": decision.ad_group.id, "creative_id": creative.id, "format": creative.format,
        "title": combination.title, "description": combination.description, "image_url": combination.image_url,
        "video_url": combination.video_url, "icon_url": combination.icon_url, "button": combination.button,
        "width": combination.width, "height": combination.height, "duration_ms": combination.duration_ms,
        # The page a click ends on: the creative's click URL (tracking/service.py), its macros filled.
        "click_url": urls.click_url,
        "landing_url": third_party_urls([creative.click_url], decision, request, urls.click_id)[0],
        "deeplink": third_party_urls([creative.deeplink], decision, request, urls.click_id)[0]
        if creative.deeplink else "",
        "business_name": creative.business_name, "business_phone": creative.business_phone,
        "subtitles": list(creative.subtitles), "button_1": creative.button_1, "button_2": creative.button_2,
        "background_color": creative.background_color, "top_button": creative.top_button,
        "cover_image_url": creative.cover_image_url, "cover_width": creative.cover_width,
        "cover_height": creative.cover_height,
        "tracking": {"impression": impression, "click": [],
                     "video": video_trackers(decision, request, urls) if combination.video_url else {}},
    }


def request_events(decisions: Iterable[Decision], request: AdRequest) -> list[Event]:
    """One request event per ad served (the event store keys every event to an account)."""
    device_hash = request.device_hash
    return [Event(event_id=f"req:{d.impression_id}", event_type=EventType.REQUEST, occurred_at=request.now,
                  account_id=d.ad_group.account_id, campaign_id=d.ad_group.campaign_id, ad_group_id=d.ad_group.id,
                  creative_id=d.creative.id, ad_space_id=request.ad_space_id or 0,
                  publisher_id=request.publisher_id or 0, placement_type=request.placement_type or "",
                  country=request.country or "", objective=d.ad_group.objective, app_package=request.app_package,
                  device_hash=device_hash,
                  attrs={"tier": d.tier, "bid_type": d.ad_group.bid_type, "price_micros": str(d.price_micros)})
            for d in decisions]


def ad_request_event(request_id: str, request: AdRequest, *, wanted: int, filled: int) -> Event:
    """The supply side's record of one ad request, filled or not (fill rate = filled / all)."""
    return Event(event_id=f"ar:{request_id}", event_type=EventType.AD_REQUEST, occurred_at=request.now,
                 account_id=0, ad_space_id=request.ad_space_id or 0, publisher_id=request.publisher_id or 0,
                 placement_type=request.placement_type or "", country=request.country or "",
                 app_package=request.app_package, device_hash=request.device_hash,
                 attrs={"filled": "1" if filled else "0", "wanted": str(wanted), "ads": str(filled)})


async def serve_sdk_request(runtime: ServingRuntime, data: AdRequestData, *, now: datetime) -> dict[str, Any]:
    """The response to an SDK ad request, in the shape of `AdResponseOut`."""
    snapshot = runtime.state.snapshot
    space = snapshot.ad_spaces.get(data.ad_space_id)
    if space is None:
        raise NotFound("no active ad space has this id", code="ad_space_not_found")
    request = build_request(data, space, snapshot.publishers.get(space.publisher_id), now=now,
                            installs=runtime.install_history)
    decisions = await runtime.engine.decide_async(request, space=space)
    if request.gaid:
        runtime.note_device(request.gaid, data.app.installed_packages, data.app.usage_seconds, now,
                           country=request.country)
    request_id = random_token(12)
    runtime.record([ad_request_event(request_id, request, wanted=data.count, filled=len(decisions)),
                    *request_events(decisions, request)])
    return {"request_id": request_id, "ad_space_id": space.id,
            "ads": [_ad(runtime, d, request) for d in decisions]}
