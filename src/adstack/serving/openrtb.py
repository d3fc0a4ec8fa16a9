"""An OpenRTB 2.6 bidder: exchanges send bid requests, adstack answers with bids from the same engine.

Mapping a request onto the engine:

- each `imp` is one opportunity; banner, video and native are bid on (tried in that order, first fill wins);
  audio and anything else get no bid;
- banner sizes (`w`/`h` and `format`) must match a creative's size exactly; `instl=1` makes the placement an
  interstitial; video is an interstitial, or rewarded video with `rwdd=1`, and honours `minduration` and
  `maxduration`; native is a newsfeed slot whose required assets must all be fillable;
- an `imp.tagid` naming one of our ad spaces by id makes the request that ad space's (its placement, formats,
  reserve price and publisher targeting); otherwise it is open-exchange inventory that only ad groups without
  publisher or ad-space restrictions may buy;
- `bidfloor`/`bidfloorcur` is converted through the FX table. The bid is the winner's eCPM, its value to us,
  on a second-price exchange (`at=2`, the default) and on a first-price one (`at=1`) alike: our own auction's
  clearing price is no value to bid there, since with one bidder it falls to the floor or the platform minimum
  and loses every first-price auction. Never below the floor, in the first currency of `cur` we can convert to.
  The advertiser is charged our auction's clearing price (the tracking token's price), whatever the exchange
  cleared at;
- `imp.pmp`: ad groups that target deal ids bid only on those deals and name the deal in `dealid`; with
  `private_auction=1` only they may bid;
- `regs.coppa=1` turns audience targeting off for the request (ad groups that use audiences do not bid);
- `tmax` is a deadline: once the time is nearly spent, remaining imps are not bid on;
- `device.ifa`, `os`/`osv`, `model`, `language`, `carrier`, `connectiontype`, `geo.country` (alpha-3) and
  `user.yob`/`gender`, `app.bundle` and `badv` feed the targeting.

Markup: banner `adm` is an HTML snippet; video `adm` is inline VAST 4 XML with impression, click and quartile
tracking; native `adm` is a Native 1.2 response. `burl` is our signed impression URL (billing counts and charges
it once), `nurl` the win notice and `lurl` the loss notice, which gives the reservation back; all three carry
`${AUCTION_PRICE}`. No bid is HTTP 204; a body that is not JSON, or not a bid request, is 400 with the reason.

Media cost: our impression URL, as `burl` and as the VAST impression (exchanges substitute macros in `adm` too),
carries `ap=${AUCTION_PRICE}&cur=<the response's currency>`. Tracking converts the exchange's clearing price
through the same FX table to the account currency and records a thousandth of it as the impression event's
`media_cost_micros`; reports sum it as `media_cost_micros` beside spend (`cost_micros`) for platform staff, so
margin is spend minus media cost. The first hit of an impression decides its media cost, as it decides the
count; a macro left unsubstituted, a negative or unreadable price, or an unknown currency count the impression
with its media cost unknown, never refuse it. The win notice's `p` is read the same way and never refused.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import orjson
from babel.core import get_global

from adstack.core.errors import DomainError
from adstack.serving.engine import Decision
from adstack.serving.request import AdRequest, Slot, parse_os_version
from adstack.serving.runtime import ServingRuntime
from adstack.serving.service import (
    device_identity,
    impression_monitors,
    request_events,
    tracking_for,
    video_trackers,
)
from adstack.serving.snapshot import AdSpaceSnap

MAX_IMPS = 50
DEADLINE_MARGIN_MS = 10.0
SEAT = "adstack"
AUCTION_PRICE = "${AUCTION_PRICE}"
AUCTION_LOSS = "${AUCTION_LOSS}"
_NETWORKS = {2: "wifi", 4: "2g", 5: "3g", 6: "4g", 7: "5g"}
_MTYPE = {"banner": 1, "video": 2, "native": 4}
_ALPHA3: dict[str, str] = {k: v[0] for k, v in get_global("territory_aliases").items()
                           if len(k) == 3 and k.isalpha() and v and len(v[0]) == 2}


class BadBidRequest(DomainError):
    code = "bad_request"
    status = 400


def parse_bid_request(body: bytes) -> dict[str, Any]:
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadBidRequest(f"malformed JSON: {exc}", code="malformed_json") from exc
    if not isinstance(request, dict):
        raise BadBidRequest("a bid request is a JSON object")
    if not isinstance(request.get("id"), str) or not request["id"]:
        raise BadBidRequest("id: a bid request needs a non-empty string id")
    imps = request.get("imp")
    if not isinstance(imps, list) or not imps:
        raise BadBidRequest("imp: a bid request needs at least one imp")
    if len(imps) > MAX_IMPS:
        raise BadBidRequest(f"imp: at most {MAX_IMPS} imps per request")
    for position, imp in enumerate(imps):
        if not isinstance(imp, dict) or not isinstance(imp.get("id"), str) or not imp["id"]:
            raise BadBidRequest(f"imp.{position}.id: every imp needs a non-empty string id")
    return request


# ---------- small readers that never raise on odd input ----------


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and -2**53 < value < 2**53 else None


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _str(value: Any, limit: int = 200) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


class PendingBids:
    """Reservations of bids not yet won or lost, so a loss notice can give them back (bounded, in memory)."""

    def __init__(self, capacity: int = 100_000):
        self._items: OrderedDict[str, Decision] = OrderedDict()
        self._lock = threading.Lock()
        self._capacity = capacity

    def add(self, decision: Decision) -> None:
        with self._lock:
            self._items[decision.impression_id] = decision
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)

    def pop(self, impression_id: str) -> Decision | None:
        with self._lock:
            return self._items.pop(impression_id, None)


# ---------- the request ----------


def _device_fields(request: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    device = _obj(request.get("device"))
    geo = _obj(device.get("geo")) or _obj(_obj(request.get("user")).get("geo"))
    user = _obj(request.get("user"))
    country_code = _str(geo.get("country"), 3)
    country = _ALPHA3.get(country_code.upper()) if country_code and len(country_code) == 3 else (
        country_code.upper() if country_code and len(country_code) == 2 else None)
    gaid, key = device_identity(_str(device.get("ifa"), 64))
    language = _str(device.get("language"), 35) or _str(device.get("langb"), 35)
    yob = _int(user.get("yob"))
    gender = {"M": "male", "F": "female"}.get(_str(user.get("gender"), 1) or "")
    regs = _obj(request.get("regs"))
    app = _obj(request.get("app"))
    return {
        "country": country,
        "language": language.lower() if language else None,
        "gender": gender,
        "age": now.year - yob if yob and 1900 < yob <= now.year else None,
        "network": _NETWORKS.get(_int(device.get("connectiontype")) or 0),
        "carrier": (_str(device.get("carrier"), 100) or "").lower() or None,
        "device_model": (_str(device.get("model"), 100) or "").lower() or None,
        "os_version": parse_os_version(_str(device.get("osv"), 32)),
        "gaid": gaid,
        "device_key": key,
        "use_audiences": _int(regs.get("coppa")) != 1,
        "app_package": _str(app.get("bundle"), 255) or "",
        "blocked_domains": frozenset(d.lower() for d in _strings(request.get("badv"))[:500]),
    }


def _banner_slot(banner: Mapping[str, Any]) -> Slot:
    sizes = set()
    w, h = _int(banner.get("w")), _int(banner.get("h"))
    if w and h:
        sizes.add((w, h))
    for item in banner.get("format") or () if isinstance(banner.get("format"), list) else ():
        fw, fh = _int(_obj(item).get("w")), _int(_obj(item).get("h"))
        if fw and fh:
            sizes.add((fw, fh))
    return Slot(media=frozenset({"image"}), sizes=frozenset(sizes))


def _video_slot(video: Mapping[str, Any]) -> Slot:
    mimes = _strings(video.get("mimes"))
    low = _int(video.get("minduration")) or 0
    high = _int(video.get("maxduration")) or 0
    if mimes and "video/mp4" not in mimes:
        return Slot(media=frozenset())  # we only have MP4 to offer
    return Slot(media=frozenset({"video"}), min_duration_ms=max(low, 0) * 1000, max_duration_ms=max(high, 0) * 1000)


def native_request(native: Mapping[str, Any]) -> dict[str, Any] | None:
    raw = native.get("request")
    if isinstance(raw, str):
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
    else:
        parsed = raw
    if not isinstance(parsed, dict):
        return None
    inner = parsed.get("native")
    return inner if isinstance(inner, dict) else parsed


def _floor_usd_micros(value: Any, currency: str, runtime: ServingRuntime) -> int | None:
    """The floor as USD micros CPM; None when its currency cannot be converted (no bid then)."""
    floor = _num(value) or 0.0
    if floor <= 0:
        return 0
    fx = runtime.state.fx
    if not fx.knows(currency):
        return None
    return math.ceil(fx.to_usd(floor * 1_000_000, currency))


def _deals(imp: Mapping[str, Any]) -> tuple[dict[str, float], bool]:
    pmp = _obj(imp.get("pmp"))
    deals: dict[str, float] = {}
    for deal in pmp.get("deals") or () if isinstance(pmp.get("deals"), list) else ():
        deal_id = _str(_obj(deal).get("id"), 100)
        if deal_id:
            deals[deal_id] = _num(_obj(deal).get("bidfloor")) or 0.0
    return deals, _int(pmp.get("private_auction")) == 1


def _opportunities(imp: Mapping[str, Any]) -> list[tuple[str, Slot, str, dict[str, Any] | None]]:
    """(media type, slot, placement type, native request) for each kind of ad the imp takes."""
    out: list[tuple[str, Slot, str, dict[str, Any] | None]] = []
    interstitial = _int(imp.get("instl")) == 1
    if isinstance(imp.get("banner"), dict):
        out.append(("banner", _banner_slot(imp["banner"]), "interstitial" if interstitial else "banner", None))
    if isinstance(imp.get("video"), dict):
        rewarded = _int(imp.get("rwdd")) == 1
        out.append(("video", _video_slot(imp["video"]), "rewarded_video" if rewarded else "interstitial", None))
    if isinstance(imp.get("native"), dict):
        spec = native_request(imp["native"])
        if spec is not None:
            out.append(("native", Slot(media=frozenset({"native"})), "newsfeed", spec))
    return out


# ---------- markup ----------


def _cdata(text: str) -> str:
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _duration(ms: int) -> str:
    seconds, millis = divmod(max(ms, 0), 1000)
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}.{millis:03d}"


def vast(decision: Decision, *, impression_urls: list[str], click_url: str, video: dict[str, list[str]]) -> str:
    """Inline VAST 4.0 for a linear MP4 video."""
    combination = decision.combination
    creative = decision.creative
    trackers = "".join(f'<Tracking event={quoteattr(_VAST_EVENTS[e])}>{_cdata(u)}</Tracking>'
                       for e, urls in video.items() if e in _VAST_EVENTS for u in urls)
    impressions = "".join(f'<Impression id="i{n}">{_cdata(u)}</Impression>' for n, u in enumerate(impression_urls))
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<VAST version="4.0"><Ad id={quoteattr(decision.impression_id)}><InLine>'
        '<AdSystem version="1.0">adstack</AdSystem>'
        f'<AdServingId>{escape(decision.impression_id)}</AdServingId>'
        f'<AdTitle>{_cdata(combination.title or creative.name)}</AdTitle>'
        f'{impressions}'
        f'<Creatives><Creative id={quoteattr(str(creative.id))} adId={quoteattr(str(decision.ad_group.id))}>'
        f'<UniversalAdId idRegistry="adstack">{creative.id}</UniversalAdId>'
        f'<Linear><Duration>{_duration(combination.duration_ms)}</Duration>'
        f'<TrackingEvents>{trackers}</TrackingEvents>'
        f'<VideoClicks><ClickThrough id="c">{_cdata(click_url)}</ClickThrough></VideoClicks>'
        '<MediaFiles><MediaFile delivery="progressive" type="video/mp4" '
        f'width="{combination.width}" height="{combination.height}">{_cdata(combination.video_url)}</MediaFile>'
        '</MediaFiles></Linear></Creative></Creatives></InLine></Ad></VAST>'
    )


_VAST_EVENTS = {"start": "start", "first_quartile": "firstQuartile", "midpoint": "midpoint",
                "third_quartile": "thirdQuartile", "complete": "complete"}


def banner_html(decision: Decision, *, click_url: str, impression_urls: list[str]) -> str:
    combination = decision.combination
    pixels = "".join(f'<img src={quoteattr(u)} width="1" height="1" style="display:none" alt="">'
                     for u in impression_urls)
    return (f'<a href={quoteattr(click_url)} target="_blank">'
            f'<img src={quoteattr(combination.image_url)} width="{combination.width}" '
            f'height="{combination.height}" alt={quoteattr(combination.title)}></a>{pixels}')


def native_markup(decision: Decision, spec: Mapping[str, Any], *, click_url: str, impression_urls: list[str],
                  video_xml: str | None) -> dict[str, Any] | None:
    """A Native 1.2 response for the request's assets; None when a required asset cannot be filled."""
    combination = decision.combination
    assets: list[dict[str, Any]] = []
    raw_assets: list[Any] = spec["assets"] if isinstance(spec.get("assets"), list) else []
    for position, raw in enumerate(raw_assets):
        asset = _obj(raw)
        asset_id = _int(asset.get("id"))
        asset_id = position if asset_id is None else asset_id
        required = _int(asset.get("required")) == 1
        filled: dict[str, Any] | None = None
        if isinstance(asset.get("title"), dict):
            limit = _int(asset["title"].get("len")) or 0
            text = combination.title or decision.creative.name
            if text:
                filled = {"title": {"text": text[:limit] if limit > 0 else text}}
        elif isinstance(asset.get("img"), dict):
            kind = _int(asset["img"].get("type"))
            if kind == 1 and combination.icon_url:
                filled = {"img": {"url": combination.icon_url}}
            elif combination.image_url:
                filled = {"img": {"url": combination.image_url, "w": combination.width, "h": combination.height}}
        elif isinstance(asset.get("video"), dict):
            if video_xml is not None:
                filled = {"video": {"vasttag": video_xml}}
        elif isinstance(asset.get("data"), dict):
            kind = _int(asset["data"].get("type"))
            limit = _int(asset["data"].get("len")) or 0
            value = {1: decision.ad_group.campaign_name, 2: combination.description,
                     12: combination.button}.get(kind or 0, "")
            if value:
                filled = {"data": {"value": value[:limit] if limit > 0 else value}}
        if filled is None:
            if required:
                return None
            continue
        filled["id"] = asset_id
        assets.append(filled)
    if not assets:
        return None
    return {"ver": "1.2", "assets": assets, "link": {"url": click_url},
            "eventtrackers": [{"event": 1, "method": 1, "url": u} for u in impression_urls]}


# ---------- bidding ----------


def _price(usd_cpm_micros: float, currency: str, runtime: ServingRuntime) -> float:
    fx = runtime.state.fx
    rate = fx.usd_per_unit.get(currency, Decimal(1))
    value = Decimal(repr(usd_cpm_micros)) / Decimal(1_000_000) / rate
    return float(math.ceil(value * 10_000) / 10_000)


def _currency(request: Mapping[str, Any], runtime: ServingRuntime) -> str | None:
    wanted = [c.upper() for c in _strings(request.get("cur"))]
    if not wanted or "USD" in wanted:
        return "USD"
    return next((c for c in wanted if runtime.state.fx.knows(c)), None)


def bid(runtime: ServingRuntime, request: dict[str, Any], *, now: datetime, started: float,
        pending: PendingBids | None = None) -> dict[str, Any] | None:
    """The bid response for a parsed bid request, or None for no bid."""
    currency = _currency(request, runtime)
    if currency is None:
        return None
    tmax = _int(request.get("tmax"))
    deadline = started + (tmax - DEADLINE_MARGIN_MS) / 1000 if tmax and tmax > 0 else None
    fields = _device_fields(request, now)
    snapshot = runtime.state.snapshot
    bids: list[dict[str, Any]] = []
    for imp in request["imp"]:
        if deadline is not None and time.monotonic() >= deadline:
            break
        floor_currency = (_str(imp.get("bidfloorcur"), 3) or "USD").upper()
        floor = _floor_usd_micros(imp.get("bidfloor"), floor_currency, runtime)
        if floor is None:
            continue
        deals, private = _deals(imp)
        tag = _str(imp.get("tagid"), 20)
        space = snapshot.ad_spaces.get(int(tag)) if tag and tag.isdigit() and len(tag) <= 18 else None
        for media, slot, placement, native_spec in _opportunities(imp):
            if not slot.media:
                continue
            made = _bid_for(runtime, request, imp, media, slot, placement, native_spec, space, fields, floor,
                            deals, private, currency, now)
            if made is not None:
                bid_object, decision, ad_request = made
                bids.append(bid_object)
                runtime.record(request_events([decision], ad_request))
                if pending is not None:
                    pending.add(decision)
                break
    if not bids:
        return None
    return {"id": request["id"], "bidid": secrets.token_hex(8), "cur": currency,
            "seatbid": [{"seat": SEAT, "bid": bids}]}


def _bid_for(runtime: ServingRuntime, request: Mapping[str, Any], imp: Mapping[str, Any], media: str, slot: Slot,
             placement: str, native_spec: dict[str, Any] | None, space: AdSpaceSnap | None,
             fields: dict[str, Any], floor: int, deals: dict[str, float], private: bool, currency: str,
             now: datetime) -> tuple[dict[str, Any], Decision, AdRequest] | None:
    if space is not None:
        placement = space.placement_type
        slot = Slot(media=slot.media, sizes=slot.sizes or space.sizes, formats=space.accepted_formats,
                    min_duration_ms=slot.min_duration_ms, max_duration_ms=slot.max_duration_ms)
    if private and deals:
        deal_floors = [runtime.state.fx.to_usd(v * 1_000_000, (_str(imp.get("bidfloorcur"), 3) or "USD").upper())
                       for v in deals.values()]
        floor = max(floor, math.ceil(min(deal_floors)))
    ad_request = AdRequest(now=now, placement_type=placement, slot=slot, count=1,
                           ad_space_id=space.id if space else None, publisher_id=space.publisher_id if space else None,
                           deal_ids=frozenset(deals), private_auction=private and bool(deals), floor_micros=floor,
                           hold_seconds=runtime.settings.exchange_reservation_seconds, **fields)
    decisions = runtime.engine.decide(ad_request, space=space)
    if not decisions:
        return None
    decision = decisions[0]
    deal_id = None
    targeted = decision.ad_group.targeting.deal_ids & set(deals)
    if targeted:
        deal_id = max(targeted, key=lambda d: deals[d])
        deal_floor = runtime.state.fx.to_usd(deals[deal_id] * 1_000_000,
                                             (_str(imp.get("bidfloorcur"), 3) or "USD").upper())
        if decision.ecpm_usd_micros < deal_floor:
            runtime.engine.release(decision)
            return None
    urls = tracking_for(runtime, decision, ad_request)
    # The exchange fills in what it charged us: recorded as the impression's media cost, never billed.
    priced_impression_url = f"{urls.impression_url}&ap={AUCTION_PRICE}&cur={currency}"
    creative = decision.creative
    monitors = impression_monitors(decision, ad_request, urls.click_id)
    impression_urls = [priced_impression_url, *monitors]
    markup: str | None
    combination = decision.combination
    if media == "banner":
        markup = banner_html(decision, click_url=urls.click_url, impression_urls=monitors)
    elif media == "video":
        markup = vast(decision, impression_urls=impression_urls, click_url=urls.click_url,
                      video=video_trackers(decision, ad_request, urls))
    else:
        video_xml = vast(decision, impression_urls=impression_urls, click_url=urls.click_url,
                         video=video_trackers(decision, ad_request, urls)) if combination.video_url else None
        native = native_markup(decision, native_spec or {}, click_url=urls.click_url, impression_urls=monitors,
                               video_xml=video_xml)
        if native is None:
            runtime.engine.release(decision)
            return None
        markup = orjson.dumps(native).decode()
    # Both auction types are bid our value of the slot (see the module docstring).
    price = max(_price(max(decision.ecpm_usd_micros, float(floor)), currency, runtime), 0.0001)
    base = runtime.base_url.rstrip("/")
    bid_object: dict[str, Any] = {
        "id": decision.impression_id,
        "impid": imp["id"],
        "price": price,
        "adid": str(creative.id),
        "crid": str(creative.id),
        "cid": str(decision.ad_group.campaign_id),
        "adomain": list(decision.ad_group.advertiser_domains),
        "nurl": f"{base}/openrtb2/win?i={decision.impression_id}&p={AUCTION_PRICE}",
        "burl": priced_impression_url,
        "lurl": f"{base}/openrtb2/loss?i={decision.impression_id}&r={AUCTION_LOSS}&p={AUCTION_PRICE}",
        "adm": markup,
        "mtype": _MTYPE[media],
    }
    if combination.width and combination.height:
        bid_object["w"] = combination.width
        bid_object["h"] = combination.height
    if deal_id is not None:
        bid_object["dealid"] = deal_id
    return bid_object, decision, ad_request
