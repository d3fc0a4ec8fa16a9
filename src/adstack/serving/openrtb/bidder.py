"""An OpenRTB 2.6 bidder: exchanges send bid requests, adstack answers with bids from the same engine.

Mapping a request onto the engine:

- the request is decoded into typed structs and checked (model.py): what Prebid Server refuses is 400 with the
  field and the rule; what is well formed but cannot be bought (absurd sizes or floors, unknown currencies, a
  deadline too short) is no bid, 204;
- each `imp` is one opportunity; banner, video and native are bid on (tried in that order, first fill wins);
  audio and anything else get no bid;
- banner sizes (`w`/`h` and `format`) must match a creative's size exactly; a banner with no usable size is
  refused before it gets here, so "no size" never means "any size". `instl=1` makes the placement an
  interstitial; video is an interstitial, or rewarded video with `rwdd=1`, and honours `minduration` and
  `maxduration`, `protocols` (we send inline VAST 4.0, protocol 7) and `linearity` (ours is linear); native is a
  newsfeed slot whose required assets must all be fillable from the creative's native assets, image assets within
  `wmin`/`hmin`, video assets by the same MIME type, protocol and duration rules;
- an `imp.tagid` naming one of our ad spaces by id, in a request whose `app.bundle` is that ad space's
  publisher's app, makes the request that ad space's (its placement, formats, reserve price and publisher
  targeting); otherwise (another app, a site) it is open-exchange inventory that only ad groups without
  publisher or ad-space restrictions may buy;
- `bidfloor`/`bidfloorcur` is converted through the FX table; a floor no ad could reach is no bid;
- prices: on a second-price exchange (`at=2`, the default) the bid is the winner's eCPM, its value to us; on a
  first-price one (`at=1`) the value less the configured margin (`openrtb_first_price_margin_percent`), never
  above the ad group's own bid. Either is never below the floor nor the platform's minimum CPM (ranking's
  `MinimumPrices`): a bid that would be is withdrawn. A guaranteed booking bids its booked CPM on either. The
  advertiser is charged the tracking token's price: on a second price our auction's clearing price, whatever the
  exchange cleared at; on a first price our bid, which is what the exchange clears at (OpenRTB 2.6 §4.4.1), so
  each candidate is priced at its own bid (`_floor_of`), and one whose bid is below the space's reserve or, through
  its predicted rates, below the platform minimum of its bid type takes no part;
- `imp.pmp`: ad groups that target deal ids bid only on those deals and name the deal in `dealid`; with
  `private_auction=1` only they may bid. A deal's `wseat` and `wadomain` (our ad group's advertiser domain must be
  listed) are honoured; its `at` overrides the request's: 1 and 2 are priced as above, 3 is a fixed price, its
  `bidfloor`, bid exactly where our value reaches it (another type, an exchange's own, is not bid on). Of several
  deals, the bid goes to the one with the highest floor it reaches (then the lowest deal id). The advertiser's
  charge (and its budget reservation) is priced against that deal inside our auction (`_floor_of`): on a fixed
  price exactly that price, on a first price our bid, otherwise the second price with the deal's floor (the imp's
  floor when higher) for floor. Source: OpenRTB 2.6 §3.2.12 `at`, "3 = the value passed in bidfloor is the agreed
  upon deal price": a fixed price below what we may charge (the platform minimum of the buyer's bid type through
  its rates, a booking's booked CPM) is not bid on. A deal buyer whose deals are all out of its reach takes no
  part, so the next candidate may bid;
- privacy (privacy.py): under COPPA, GDPR without our consent, `lmt`/`dnt` or a US opt-out, no device id is used;
  our tracking URLs never carry the raw device id in any case;
- brand safety: `badv` (advertiser domains), `bapp` (promoted app), `bcat` (the campaign's IAB categories) and
  `battr` (the attributes of what we would show) are honoured; with `imp.secure=1` every URL we hand out must be
  https, else no bid;
- `tmax` is a deadline covering decoding, deciding and encoding: below `openrtb_min_tmax_ms` the answer is 204 at
  once; once the time is nearly spent remaining imps are not bid on, and an answer ready too late is withdrawn
  (its reservations given back) and 204;
- `device.ifa`, `os`/`osv`, `model`, `language`, `carrier`, `connectiontype`, `geo.country` (alpha-3) and
  `user.yob`/`gender`, `app.bundle` feed the targeting;
- `wlang`/`wlangb` allow only creatives whose declared language (`materials.language`) is listed; a creative
  that declares none bids only where the request names no languages. A bid carries its creative's `language`.

Markup (markup.py): `burl` is our signed impression URL (billing counts and charges it once), and the same URL is
in `adm` as the impression tracker; `nurl` the win notice and `lurl` the loss notice, which gives the reservation
back; all carry `${AUCTION_PRICE}`.

Media cost: our impression URL carries `ap=${AUCTION_PRICE}&cur=<the response's currency>`. Tracking converts the
exchange's clearing price through the FX table to the account currency and records a thousandth of it as the
impression event's `media_cost_micros`; the first hit of an impression decides it, as it decides the count. The
token signs the bid's price and currency, which cap and denominate that price, `test=1`, whose impressions
are never billed, and whether the exchange clears the bid at its price (first price, a fixed-price deal): then an
impression billed per thousand is charged no more than the exchange's price (OpenRTB 2.6 §4.4, "the final price
after discount").
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from babel.core import get_global

from adstack.core.errors import DomainError
from adstack.core.security import derive_key, hmac_sign, hmac_verify, random_hex
from adstack.creatives.iab_sizes import Variant, sizes_of
from adstack.events.models import Event, EventType
from adstack.serving.engine import Decision, Floor, FloorOf
from adstack.serving.openrtb.markup import (
    VAST_PROTOCOL,
    VIDEO_MIME,
    allowed_mimes,
    banner_html,
    legacy_native,
    legacy_response,
    native_markup,
    vast,
)
from adstack.serving.openrtb.model import BidRequest, Device, Imp, InvalidBidRequest, decode, native_spec
from adstack.serving.openrtb.privacy import privacy_of
from adstack.serving.ranking import CPM
from adstack.serving.request import AdRequest, Slot, parse_os_version
from adstack.serving.runtime import ServingRuntime
from adstack.serving.service import device_identity, impression_monitors, request_events, video_trackers
from adstack.serving.snapshot import GUARANTEED_CPM, AdGroupSnap, AdSpaceSnap, Snapshot
from adstack.tracking.urls import build_tracking_urls

log = logging.getLogger("adstack.serving.api")

DEADLINE_MARGIN_MS = 5.0
MAX_FLOOR = 100_000.0  # USD CPM (after conversion: 100,001 IDR is an ordinary floor): above it is no bid
MAX_SIZE = 20_000  # pixels: a larger banner size fits no creative
XHTML_BANNER_AD = 2  # OpenRTB 2.5 list 5.2, banner ad types; `btype` blocks them
NON_LINEAR = 2  # OpenRTB 2.5 list 5.7, video linearity
SEAT = "adstack"
CATEGORY_TAXONOMY = 1  # IAB Content Category Taxonomy 1.0 (AdCOM list "Category Taxonomies"), our categories
AUCTION_PRICE = "${AUCTION_PRICE}"
AUCTION_LOSS = "${AUCTION_LOSS}"
_NETWORKS = {2: "wifi", 4: "2g", 5: "3g", 6: "4g", 7: "5g"}
_MTYPE = {"banner": 1, "video": 2, "native": 4}
# Creative attributes (OpenRTB list 5.3 in AdCOM: "Creative Attributes"): 6 in-banner video, autoplay.
ATTR_IN_BANNER_VIDEO_AUTOPLAY = 6
_ALPHA3: dict[str, str] = {k: v[0] for k, v in get_global("territory_aliases").items()
                           if len(k) == 3 and k.isalpha() and v and len(v[0]) == 2}


class BadBidRequest(DomainError):
    code = "bad_request"
    status = 400


def parse_bid_request(body: bytes) -> BidRequest:
    try:
        return decode(body)
    except InvalidBidRequest as exc:
        code = "malformed_json" if exc.message.startswith("malformed JSON") else "invalid_bid_request"
        raise BadBidRequest(str(exc), code=code) from None


# ---------- the request ----------


def _country(code: str | None) -> str | None:
    """ISO alpha-2 from the alpha-3 OpenRTB sends (or an alpha-2); anything else, e.g. "ÉÉ", is unknown."""
    if not code or not code.isascii() or not code.isalpha():
        return None
    if len(code) == 3:
        return _ALPHA3.get(code.upper())
    return code.upper() if len(code) == 2 else None


def _text(value: str | None, limit: int) -> str | None:
    return value[:limit] if value else None


def _device_fields(request: BidRequest, now: datetime, *, restricted: bool) -> dict[str, Any]:
    device = request.device
    user = request.user
    geo = (device.geo if device and device.geo else None) or (user.geo if user else None)
    language = _text(device.language, 35) or _text(device.langb, 35) if device else None
    yob = user.yob if user else None
    gender = {"M": "male", "F": "female"}.get(user.gender or "") if user else None
    gaid, key, device_hash = device_identity(_text(device.ifa, 64) if device else None)
    app = request.app
    fields: dict[str, Any] = {
        "country": _country(geo.country if geo else None),
        "language": language.lower() if language else None,
        "network": _NETWORKS.get(device.connectiontype or 0) if device else None,
        "carrier": (_text(device.carrier, 100) or "").lower() or None if device else None,
        "device_model": (_text(device.model, 100) or "").lower() or None if device else None,
        "os_version": parse_os_version(_text(device.osv, 32)) if device else None,
        "app_package": _text(app.bundle, 255) or "" if app else "",
        # Every entry counts (the body cap bounds them); sets keep each check one lookup.
        "blocked_domains": frozenset(d.strip().rstrip(".").lower() for d in request.badv or () if d),
        "blocked_apps": frozenset(b for b in request.bapp or () if b),
        "blocked_categories": frozenset(c for c in request.bcat or () if c),
        "blocked_category_tiers": frozenset(c.split("-", 1)[0] for c in request.bcat or () if "-" in c),
        "allowed_categories": frozenset(c for c in request.acat or () if c) if request.acat else None,
    }
    if restricted:
        fields.update(gaid=None, device_key=None, device_hash=0, use_audiences=False, gender=None, age=None)
    else:
        fields.update(gaid=gaid, device_key=key, device_hash=device_hash, use_audiences=True, gender=gender,
                      age=now.year - yob if yob and 1900 < yob <= now.year else None)
    return fields


def _banner_slot(imp: Imp, device: Device | None) -> Slot:
    banner = imp.banner
    assert banner is not None
    if banner.btype and XHTML_BANNER_AD in banner.btype:
        return Slot(media=frozenset())  # our banner markup is an XHTML banner ad: an image in a link (list 5.2)
    # OpenRTB 2.6, 3.2.6: `format` is "the banner sizes permitted"; `w`/`h` only stand in where it is absent.
    sizes = {(item.w, item.h) for item in banner.format or () if item.w and item.h}
    if not banner.format and banner.w and banner.h:
        sizes.add((banner.w, banner.h))
    if not sizes and imp.instl == 1 and device is not None and device.w and device.h:
        # An interstitial without sizes takes the screen: the IAB interstitial sizes that fit on it.
        sizes = {(w, h) for w, h in sizes_of(Variant.INTERSTITIAL) if w <= device.w and h <= device.h}
    sizes = {s for s in sizes if s[0] <= MAX_SIZE and s[1] <= MAX_SIZE}
    # No usable size: nothing fits (an empty set would mean any size to the engine).
    return Slot(media=frozenset({"image"}) if sizes else frozenset(), sizes=frozenset(sizes),
                image_mimes=allowed_mimes(banner.mimes))


def _video_slot(imp: Imp) -> Slot:
    video = imp.video
    assert video is not None
    if video.mimes and VIDEO_MIME not in video.mimes:
        return Slot(media=frozenset())  # we only have MP4 to offer
    # Source: OpenRTB 2.6 §3.2.7 protocols (our inline VAST 4.0 must be supported) and linearity (2 is
    # non-linear, an overlay: our ad is linear).
    if video.protocols and VAST_PROTOCOL not in video.protocols:
        return Slot(media=frozenset())
    if video.linearity == NON_LINEAR:
        return Slot(media=frozenset())
    low, high = video.minduration or 0, video.maxduration or 0
    if high > 86_400 or low > 86_400:
        return Slot(media=frozenset())
    return Slot(media=frozenset({"video"}), min_duration_ms=low * 1000, max_duration_ms=high * 1000)


def _opportunities(imp: Imp, device: Device | None) -> list[tuple[str, Slot, str, dict[str, Any] | None]]:
    """(media type, slot, placement type, native request) for each kind of ad the imp takes."""
    out: list[tuple[str, Slot, str, dict[str, Any] | None]] = []
    if imp.banner is not None:
        out.append(("banner", _banner_slot(imp, device), "interstitial" if imp.instl == 1 else "banner", None))
    if imp.video is not None:
        out.append(("video", _video_slot(imp), "rewarded_video" if imp.rwdd == 1 else "interstitial", None))
    if imp.native is not None:
        spec = native_spec(imp.native)
        if spec is not None:
            out.append(("native", Slot(media=frozenset({"native"})), "newsfeed", spec))
    return out


def _usd_micros(value: float, currency: str, runtime: ServingRuntime) -> int | None:
    """A CPM in `currency` as USD micros; None when the currency is unknown or the amount absurd."""
    if value <= 0:
        return 0
    fx = runtime.state.fx
    if not math.isfinite(value) or not fx.knows(currency):
        return None
    usd = fx.to_usd(value * 1_000_000, currency)
    if not math.isfinite(usd) or usd > MAX_FLOOR * 1_000_000:
        return None
    return math.ceil(usd)


# ---------- bidding ----------


def _price(usd_cpm_micros: float, currency: str, runtime: ServingRuntime) -> float:
    fx = runtime.state.fx
    rate = fx.usd_per_unit.get(currency, Decimal(1))
    value = Decimal(repr(usd_cpm_micros)) / Decimal(1_000_000) / rate
    return float(math.ceil(value * 10_000) / 10_000)  # up: a price at the floor never falls below it


def _currency(request: BidRequest, runtime: ServingRuntime) -> str | None:
    wanted = [c.upper() for c in request.cur or () if isinstance(c, str)]
    if not wanted or "USD" in wanted:
        return "USD"
    return next((c for c in wanted if runtime.state.fx.knows(c)), None)


def identified(request: BidRequest) -> bool:
    """We buy only inventory we can name (and so check against bapp and the advertiser's exclusions): an app with
    its bundle, store URL or name, a site with its page or domain, or a digital out-of-home screen."""
    if request.app is not None:
        return bool(request.app.bundle or request.app.storeurl or request.app.name)
    if request.site is not None:
        return bool(request.site.page or request.site.domain)
    return request.dooh is not None


@dataclasses.dataclass
class Context:
    runtime: ServingRuntime
    request: BidRequest
    now: datetime
    currency: str
    fields: dict[str, Any]
    first_price: bool


async def bid(runtime: ServingRuntime, request: BidRequest, *, now: datetime, started: float,
        deadline: float | None = None,
        ) -> tuple[dict[str, Any], list[Decision]] | None:
    """The bid response for a checked bid request and the decisions behind it, or None for no bid.

    `deadline` (monotonic seconds) is when bidding stops; the caller withdraws an answer it cannot send in time."""
    currency = _currency(request, runtime)
    if currency is None or not identified(request) or not _may_bid(request):
        return None
    languages = allowed_languages(request)
    if languages is not None and not languages:
        return None  # it allows only languages we cannot read
    privacy = privacy_of(request, vendor_id=runtime.settings.openrtb_tcf_vendor_id)
    context = Context(runtime, request, now, currency, _device_fields(request, now, restricted=privacy.restricted),
                      first_price=request.at == 1)
    snapshot = runtime.state.snapshot
    bids: list[dict[str, Any]] = []
    decisions: list[Decision] = []
    for imp in request.imp or ():
        if deadline is not None and time.monotonic() >= deadline:
            break
        space = _ad_space(snapshot, imp.tagid, request)
        floor = _usd_micros(imp.bidfloor, imp.bidfloorcur.upper(), runtime)
        filled = False
        for media, slot, placement, spec in _opportunities(imp, request.device) if floor is not None else ():
            if not slot.media:
                continue
            if languages:
                slot = dataclasses.replace(slot, languages=languages)
            assert floor is not None
            made = await _bid_for(context, imp, media, slot, placement, spec, space, floor)
            if made is not None:
                bid_object, decision, ad_request = made
                bids.append(bid_object)
                decisions.append(decision)
                runtime.record(request_events([decision], ad_request))
                filled = True
                break
        runtime.record([_ad_request_event(context, imp, space, filled=filled)])
    if not bids:
        return None
    return ({"id": request.id, "bidid": random_hex(8), "cur": currency,
             "seatbid": [{"seat": SEAT, "bid": bids}]}, decisions)


def allowed_languages(request: BidRequest) -> frozenset[str] | None:
    """The languages a creative may be in: `wlang` (ISO 639-1) or `wlangb` (BCP 47, read by its primary language
    subtag), OpenRTB 2.6, 3.2.1; None when the request names none. Empty when it names only codes that are no
    language: then nothing may bid."""
    listed = [*(request.wlang or ()), *(request.wlangb or ())]
    if not listed:
        return None
    primary = (code.split("-", 1)[0].strip().lower() for code in listed[:200])
    return frozenset(code for code in primary if len(code) == 2 and code.isascii() and code.isalpha())


def _may_bid(request: BidRequest) -> bool:
    """Whether our seat may take part at all (`wseat`/`bseat`), and whether our categories can be held to the
    request's (`bcat`/`acat` in a taxonomy other than ours, IAB Content Category 1.0, cannot)."""
    if request.bseat and SEAT in request.bseat:
        return False
    if request.wseat and SEAT not in request.wseat:
        return False
    return not ((request.bcat or request.acat) and request.cattax not in (None, CATEGORY_TAXONOMY))


def _ad_space(snapshot: Snapshot, tag: str | None, request: BidRequest) -> AdSpaceSnap | None:
    """The ad space a numeric `tagid` names, only on its publisher's app: a tag id is the exchange's, and may be
    another placement's that happens to equal one of our ids. Our publishers are apps, so a site never maps."""
    if not tag or not tag.isdecimal() or len(tag) > 18:
        return None
    space = snapshot.ad_spaces.get(int(tag))
    if space is None or request.app is None:
        return None
    publisher = snapshot.publishers.get(space.publisher_id)
    if publisher is None or not publisher.app_package or request.app.bundle != publisher.app_package:
        return None
    return space


def _ad_request_event(context: Context, imp: Imp, space: AdSpaceSnap | None, *, filled: bool) -> Event:
    """The supply side's record of one imp, bid on or not (fill rate); never a device id."""
    fields = context.fields
    request_id, imp_id = (context.request.id or "")[:80], (imp.id or "")[:40]
    return Event(event_id=f"ar:x:{request_id}:{imp_id}", event_type=EventType.AD_REQUEST,
                 occurred_at=context.now, account_id=0, ad_space_id=space.id if space else 0,
                 publisher_id=space.publisher_id if space else 0,
                 placement_type=space.placement_type if space else "", country=fields.get("country") or "",
                 app_package=fields.get("app_package") or "",
                 attrs={"filled": "1" if filled else "0", "wanted": "1", "ads": "1" if filled else "0",
                        "source": "openrtb"})


async def withdraw(runtime: ServingRuntime, decisions: list[Decision]) -> None:
    """Give back the reservations of bids that will not be sent. One the counters cannot take back now (Redis
    does not answer) is left to expire with its hold (`exchange_reservation_seconds`): the exchange still gets
    its no-bid, not an error."""
    for decision in decisions:
        try:
            await runtime.engine.release_async(decision)
        except Exception:
            log.warning("reservation %s not given back; it expires with its hold", decision.impression_id,
                        exc_info=True)


FIRST_PRICE, SECOND_PRICE, FIXED_PRICE = 1, 2, 3  # auction types. Source: OpenRTB 2.6 §3.2.1 at, §3.2.12 at


@dataclasses.dataclass(frozen=True, slots=True)
class DealTerms:
    floor: int  # USD micros CPM; on a fixed-price deal, its price
    at: int | None  # the deal's own auction type, overriding the request's; None: the request's
    bidfloor: float  # as the deal states it, in `currency`: a fixed price is bid exactly
    currency: str
    adomains: frozenset[str] | None  # wadomain, lower-case: the advertisers allowed; None: any


def _deals(imp: Imp, runtime: ServingRuntime) -> tuple[dict[str, DealTerms], bool]:
    """Deal id -> its terms (deals with an unusable floor or an auction type we do not know are left out), and
    private_auction."""
    pmp = imp.pmp
    if pmp is None:
        return {}, False
    deals: dict[str, DealTerms] = {}
    for deal in pmp.deals or ():
        if deal.wseat and SEAT not in deal.wseat:
            continue  # a deal for other buyers
        if deal.at is not None and deal.at not in (FIRST_PRICE, SECOND_PRICE, FIXED_PRICE):
            continue  # an exchange's own auction type: we cannot tell what we would pay
        currency = (deal.bidfloorcur or imp.bidfloorcur).upper()
        floor = _usd_micros(deal.bidfloor, currency, runtime)
        if deal.id and floor is not None:
            adomains = frozenset(d.lower() for d in deal.wadomain if d) if deal.wadomain else None
            deals[deal.id[:100]] = DealTerms(floor, deal.at, deal.bidfloor, currency, adomains)
    return deals, pmp.private_auction == 1


def _all_secure(urls: list[str]) -> bool:
    return all(u.startswith("https://") for u in urls if u)


async def _bid_for(context: Context, imp: Imp, media: str, slot: Slot, placement: str,
                   native_spec_: dict[str, Any] | None, space: AdSpaceSnap | None, floor: int
                   ) -> tuple[dict[str, Any], Decision, AdRequest] | None:
    runtime = context.runtime
    if space is not None:
        placement = space.placement_type
        slot = dataclasses.replace(slot, sizes=slot.sizes or space.sizes, formats=space.accepted_formats)
    if not runtime.state.snapshot.index.fits_any(slot):
        return None  # no creative has this media and size: nothing else is worth working out
    deals, private = _deals(imp, runtime)
    if private and not deals:
        return None  # 3.2.11: "bids are restricted to the deals specified", and none is ours to meet
    minimum = runtime.engine.minimum_prices.usd_micros(CPM)
    floor = max(floor, minimum)
    lowest = floor
    # Each candidate prices itself (`_floor_of`) where the bid decides what the advertiser pays: a first-price
    # exchange charges our bid, and a deal its own terms.
    floor_of: FloorOf | None = _floor_of(context, deals, floor, minimum) if context.first_price else None
    if deals:
        # Each candidate is priced against what it would bid on (a deal's terms, or the imp's floor): the engine
        # starts from the lowest of those floors and asks `floor_of` for each candidate's own.
        floors = [f for f in (_deal_floor(context, terms, floor, minimum)[0] for terms in deals.values())
                  if f is not None]
        if not private:
            floors.append(floor)
        if not floors:
            return None  # only fixed prices below the platform minimum
        lowest = min(floors)
        floor_of = _floor_of(context, deals, floor, minimum)
    ad_request = AdRequest(now=context.now, placement_type=placement, slot=slot, count=1,
                           ad_space_id=space.id if space else None, publisher_id=space.publisher_id if space else None,
                           deal_ids=frozenset(deals), private_auction=private,
                           floor_micros=lowest,
                           hold_seconds=runtime.settings.exchange_reservation_seconds, **context.fields)
    decisions = await runtime.engine.decide_async(ad_request, space=space, floor_of=floor_of)
    if not decisions:
        return None
    decision = decisions[0]
    made = _assemble(context, imp, media, native_spec_, decision, ad_request, deals, floor, minimum)
    if made is None:
        await runtime.engine.release_async(decision)
        return None
    return made, decision, ad_request


def _bid_price(context: Context, ecpm: float, *, first_price: bool, booked: bool = False) -> float:
    """USD micros CPM: the value on second price; on first price the value less the margin. The value (`ecpm`) is
    the ad group's own bid as an eCPM (a CPM bid itself; CPC and CPA through the predicted rates), so neither is
    above the bid. A guaranteed booking (`booked`) pays its booked CPM whoever bids, so that is its bid on either:
    less would charge the advertiser more than we bid."""
    if not first_price or booked:
        return ecpm
    margin = context.runtime.settings.openrtb_first_price_margin_percent / 100
    return ecpm * (1 - margin)


def _reaches(value: float, floor: float) -> bool:
    return value >= floor * (1 - 1e-9)


def _deal_floor(context: Context, terms: DealTerms, floor: int, minimum: int) -> tuple[int | None, int]:
    """A deal's floor (USD micros CPM; on a fixed-price deal, its price; None where no bid may be made on it, a
    fixed price below the platform minimum) and its auction type.

    Source: OpenRTB 2.6 §3.2.12 at: the deal's auction type overrides the request's; 3 is a fixed price, the
    deal's bidfloor."""
    auction = terms.at if terms.at is not None else context.request.at
    if auction == FIXED_PRICE:
        return (terms.floor if terms.floor >= minimum else None), auction
    return max(floor, terms.floor), auction


@dataclasses.dataclass(frozen=True, slots=True)
class DealBid:
    deal_id: str
    floor: int  # USD micros CPM: what the advertiser pays at least (on a fixed-price deal, exactly)
    fixed: bool
    price: float  # the bid, in the response's currency
    first_price: float | None = None  # on a first-price deal, the bid as USD micros CPM: what the advertiser pays


def _deal_bid(context: Context, group: AdGroupSnap, ecpm: float, deals: dict[str, DealTerms], floor: int,
              minimum: int) -> DealBid | None:
    """The deal a deal buyer worth `ecpm` bids on, or None when none of its deals takes the bid. Among the deals
    whose floor the bid reaches, the highest floor (then the lowest id); a fixed price is bid exactly where our
    value reaches it. The engine prices the advertiser's charge against the same deal (`_floor_of`)."""
    domains = {d.lower() for d in group.advertiser_domains}
    booked = group.bid_type == GUARANTEED_CPM
    usable: list[DealBid] = []
    for deal_id in group.targeting.deal_ids & deals.keys():
        terms = deals[deal_id]
        if terms.adomains is not None and terms.adomains.isdisjoint(domains):
            continue  # Source: OpenRTB 2.6 §3.2.12 wadomain, the advertisers allowed to bid on the deal
        needed, auction = _deal_floor(context, terms, floor, minimum)
        if needed is None:
            continue
        if auction == FIXED_PRICE:
            if not _reaches(ecpm, needed) or (booked and not _reaches(needed, ecpm)):
                continue  # out of reach, or below the booked CPM a guaranteed booking is charged
            exact = terms.currency == context.currency
            price = round(terms.bidfloor, 6) if exact else _price(needed, context.currency, context.runtime)
            usable.append(DealBid(deal_id, needed, True, price))
            continue
        first_price = auction == FIRST_PRICE
        value = _bid_price(context, ecpm, first_price=first_price, booked=booked)
        if _reaches(value, needed):
            bid_usd = max(value, float(needed))
            usable.append(DealBid(deal_id, needed, False, _price(bid_usd, context.currency, context.runtime),
                                  bid_usd if first_price else None))
    if not usable:
        return None
    return min(usable, key=lambda u: (-u.floor, u.deal_id))


def _floor_of(context: Context, deals: dict[str, DealTerms], floor: int, minimum: int) -> FloorOf:
    """Each auction candidate's floor on an imp with deals: a deal buyer's is the deal it would bid on (so its
    clearing price, the advertiser's charge, and its reservation follow that deal's terms), anyone else's the
    imp's; None for a candidate that could not bid."""

    def floor_of(group: AdGroupSnap, ecpm: float) -> Floor | None:
        if group.targeting.deal_ids:
            dealt = _deal_bid(context, group, ecpm, deals, floor, minimum)
            return None if dealt is None else Floor(dealt.floor, fixed=dealt.fixed, price=dealt.first_price)
        value = _bid_price(context, ecpm, first_price=context.first_price)
        if not _reaches(value, floor):
            return None
        return Floor(floor, price=max(value, float(floor)) if context.first_price else None)

    return floor_of


def _assemble(context: Context, imp: Imp, media: str, spec: dict[str, Any] | None, decision: Decision,
              ad_request: AdRequest, deals: dict[str, DealTerms], floor: int, minimum: int) -> dict[str, Any] | None:
    runtime = context.runtime
    deal_id = None
    if decision.ad_group.targeting.deal_ids:  # a deal buyer bids on its deals only
        dealt = _deal_bid(context, decision.ad_group, decision.ecpm_usd_micros, deals, floor, minimum)
        if dealt is None:
            return None
        deal_id, price = dealt.deal_id, dealt.price
        clears_at_bid = dealt.fixed or dealt.first_price is not None
    else:
        value = _bid_price(context, decision.ecpm_usd_micros, first_price=context.first_price,
                           booked=decision.ad_group.bid_type == GUARANTEED_CPM)
        if not _reaches(value, floor):
            return None
        price = _price(max(value, float(floor)), context.currency, runtime)
        clears_at_bid = context.first_price
    if price <= 0:
        return None
    attrs = _attributes(decision, media)
    blocked_attrs = _blocked_attributes(imp, media)
    if blocked_attrs & set(attrs):
        return None
    # The tracking token never carries the device id, only its event-store hash, and none under a privacy signal.
    urls = build_tracking_urls(
        base_url=runtime.base_url, secret=runtime.secret, impression_id=decision.impression_id,
        account_id=decision.ad_group.account_id, campaign_id=decision.ad_group.campaign_id,
        ad_group_id=decision.ad_group.id, creative_id=decision.creative.id,
        ad_space_id=decision.ad_space.id if decision.ad_space else 0,
        publisher_id=decision.ad_space.publisher_id if decision.ad_space else 0,
        bid_type=decision.ad_group.bid_type, price_micros=decision.price_micros, issued_at=ad_request.now,
        gaid=None, country=ad_request.country or "", placement_type=ad_request.placement_type or "",
        device_hash=ad_request.device_hash, exchange_bid_micros=round(price * 1_000_000),
        exchange_currency=context.currency, test=context.request.test == 1, clears_at_bid=clears_at_bid)
    priced_impression_url = f"{urls.impression_url}&ap={AUCTION_PRICE}&cur={context.currency}"
    monitors = impression_monitors(decision, ad_request, urls.click_id)
    impression_urls = [priced_impression_url, *monitors]
    combination = decision.combination
    markup: str
    media_urls: list[str]
    if media == "banner":
        markup = banner_html(decision, click_url=urls.click_url, impression_urls=impression_urls)
        media_urls = [combination.image_url]
    elif media == "video":
        trackers = video_trackers(decision, ad_request, urls)
        markup = vast(decision, impression_urls=impression_urls, click_url=urls.click_url, video=trackers)
        media_urls = [combination.video_url, *(u for us in trackers.values() for u in us)]
    else:
        trackers = video_trackers(decision, ad_request, urls) if combination.video_url else {}
        video_xml = vast(decision, impression_urls=impression_urls, click_url=urls.click_url,
                         video=trackers) if combination.video_url else None
        native = native_markup(decision, spec or {}, click_url=urls.click_url, impression_urls=impression_urls,
                               video_xml=video_xml)
        if native is None:
            return None
        legacy = legacy_native(spec or {}, imp.native.ver if imp.native is not None else None)
        markup = orjson.dumps(legacy_response(native, impression_urls) if legacy else native).decode()
        # Every image the response offers (a video's cover image among them), not only the combination's.
        media_urls = [combination.image_url, combination.icon_url, combination.video_url,
                      *(u for us in trackers.values() for u in us),
                      *(a["img"]["url"] for a in native["assets"] if "img" in a)]
    base = runtime.base_url.rstrip("/")
    nurl = f"{base}/openrtb2/win?i={decision.impression_id}&p={AUCTION_PRICE}"
    signature = loss_signature(runtime.secret, decision.impression_id)
    lurl = f"{base}/openrtb2/loss?i={decision.impression_id}&s={signature}&r={AUCTION_LOSS}&p={AUCTION_PRICE}"
    if imp.secure == 1 and not _all_secure([nurl, lurl, urls.click_url, priced_impression_url, *monitors,
                                            *media_urls]):
        return None  # a secure placement takes https only
    group = decision.ad_group
    creative = decision.creative
    bid_object: dict[str, Any] = {
        "id": decision.impression_id,
        "impid": imp.id,
        "price": price,
        "adid": str(creative.id),
        "crid": str(creative.id),
        "cid": str(group.campaign_id),
        "adomain": list(group.advertiser_domains),
        "cat": list(group.categories),
        "attr": attrs,
        "nurl": nurl,
        "burl": priced_impression_url,
        "lurl": lurl,
        "adm": markup,
        "mtype": _MTYPE[media],
    }
    if group.categories:
        bid_object["cattax"] = CATEGORY_TAXONOMY
    if group.targeting.promoted_package:
        bid_object["bundle"] = group.targeting.promoted_package
    if creative.language:
        bid_object["language"] = creative.language  # OpenRTB 2.6 Bid: ISO 639-1 of the creative
    if combination.width and combination.height and media != "native":
        bid_object["w"] = combination.width
        bid_object["h"] = combination.height
    if deal_id is not None:
        bid_object["dealid"] = deal_id
    return bid_object


def loss_signature(secret: bytes, bid_id: str) -> str:
    """Signs a bid's loss notice URL: only an exchange we bid to holds it, so nobody else (a publisher reading an
    impression id from a tracking URL, say) can void a bid's billing with a loss notice."""
    return hmac_sign(derive_key(secret, "openrtb-loss-notice"), bid_id.encode(), 12)


def verify_loss_signature(secret: bytes, bid_id: str, signature: str) -> bool:
    return hmac_verify(derive_key(secret, "openrtb-loss-notice"), bid_id.encode(), signature, 12)


def _attributes(decision: Decision, media: str) -> list[int]:
    """What the ad shown is, in the Creative Attributes list: a video answering a native imp plays in-feed."""
    if media == "native" and decision.combination.video_url:
        return [ATTR_IN_BANNER_VIDEO_AUTOPLAY]
    return []


def _blocked_attributes(imp: Imp, media: str) -> set[int]:
    kind = {"banner": imp.banner, "video": imp.video, "native": imp.native}.get(media)
    return set(getattr(kind, "battr", None) or ())
