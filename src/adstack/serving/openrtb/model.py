"""The OpenRTB 2.6 bid request as typed structs, decoded and checked in one pass (msgspec).

Types follow the specification's object tables (section 3.2); a value of the wrong type, a negative size, bit
rate, accuracy or tmax is refused with the path of the field, as Prebid Server refuses it
(endpoints/openrtb2/sample-requests/invalid-whole in prebid/prebid-server). The checks msgspec cannot express
(unique imp ids, one of site/app/dooh, banner sizes, native request assets; an imp offering no media at all is
only nothing to bid on, as Prebid's stored imps look to a bidder) are in `check`, which names the field
and the rule. Absurd but well-typed numbers (a floor of 1e308, a size of 10^9) are not errors: they simply fit no
ad, and the bidder answers no bid.

Source: IAB Tech Lab, OpenRTB 2.6 (https://github.com/InteractiveAdvertisingBureau/openrtb2.x/blob/main/2.6.md),
sections 3.2.1-3.2.32; Native Ads API 1.2, section 4 (request assets).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta, Struct

NonNegative = Annotated[int, Meta(ge=0)]
Positive = Annotated[int, Meta(ge=1)]
NonNegativeFloat = Annotated[float, Meta(ge=0)]
MAX_IMPS = 50


class Struct_(Struct, kw_only=True, omit_defaults=True):
    """Unknown fields are ignored, as the specification asks of every party."""


class Format(Struct_):
    w: NonNegative | None = None
    h: NonNegative | None = None
    wratio: NonNegative | None = None
    hratio: NonNegative | None = None
    wmin: NonNegative | None = None
    ext: Any = None


class Banner(Struct_):
    format: list[Format] | None = None
    w: NonNegative | None = None
    h: NonNegative | None = None
    # Removed in 2.6 (replaced by `format`); refused as Prebid refuses them.
    wmax: Any = None
    hmax: Any = None
    wmin: Any = None
    hmin: Any = None
    btype: list[int] | None = None
    battr: list[int] | None = None
    pos: int | None = None
    mimes: list[str] | None = None
    topframe: int | None = None
    expdir: list[int] | None = None
    api: list[int] | None = None
    id: str | None = None
    vcm: int | None = None
    ext: Any = None


class Video(Struct_):
    mimes: list[str] | None = None
    minduration: NonNegative | None = None
    maxduration: NonNegative | None = None
    startdelay: int | None = None
    protocols: list[int] | None = None
    w: NonNegative | None = None
    h: NonNegative | None = None
    placement: int | None = None
    plcmt: int | None = None
    linearity: int | None = None
    skip: int | None = None
    battr: list[int] | None = None
    minbitrate: NonNegative | None = None
    maxbitrate: NonNegative | None = None
    maxseq: NonNegative | None = None
    api: list[int] | None = None
    ext: Any = None


class Audio(Struct_):
    mimes: list[str] | None = None
    minbitrate: NonNegative | None = None
    maxbitrate: NonNegative | None = None
    maxseq: NonNegative | None = None
    sequence: NonNegative | None = None
    battr: list[int] | None = None
    ext: Any = None


class Native(Struct_):
    request: str | dict[str, Any] | None = None
    ver: str | float | None = None  # a string in OpenRTB; some exchanges send the number
    api: list[int] | None = None
    battr: list[int] | None = None
    ext: Any = None


class Deal(Struct_):
    id: str | None = None
    bidfloor: NonNegativeFloat = 0.0
    bidfloorcur: str = "USD"
    at: int | None = None
    wseat: list[str] | None = None
    wadomain: list[str] | None = None
    ext: Any = None


class Pmp(Struct_):
    private_auction: int = 0
    deals: list[Deal] | None = None
    ext: Any = None


class Metric(Struct_):
    type: str | None = None
    value: float | None = None
    vendor: str | None = None


class Imp(Struct_):
    id: str | None = None
    metric: list[Metric] | None = None
    banner: Banner | None = None
    video: Video | None = None
    audio: Audio | None = None
    native: Native | None = None
    pmp: Pmp | None = None
    displaymanager: str | None = None
    displaymanagerver: str | None = None
    instl: int = 0
    tagid: str | None = None
    bidfloor: NonNegativeFloat = 0.0
    bidfloorcur: str = "USD"
    clickbrowser: int | None = None
    secure: int | None = None
    iframebuster: list[str] | None = None
    rwdd: int = 0
    exp: int | None = None
    ext: Any = None


class Geo(Struct_):
    lat: float | None = None
    lon: float | None = None
    type: int | None = None
    accuracy: NonNegative | None = None
    country: str | None = None
    region: str | None = None
    city: str | None = None
    zip: str | None = None
    utcoffset: int | None = None
    ext: Any = None


class Device(Struct_):
    geo: Geo | None = None
    dnt: int | None = None
    lmt: int | None = None
    ua: str | None = None
    ip: str | None = None
    ipv6: str | None = None
    devicetype: int | None = None
    make: str | None = None
    model: str | None = None
    os: str | None = None
    osv: str | None = None
    h: NonNegative | None = None
    w: NonNegative | None = None
    ppi: NonNegative | None = None
    pxratio: float | None = None
    js: int | None = None
    language: str | None = None
    langb: str | None = None
    carrier: str | None = None
    mccmnc: str | None = None
    connectiontype: int | None = None
    ifa: str | None = None
    ext: Any = None


class UserExt(Struct_):
    consent: str | None = None  # the 2.5 extension of `user.consent`
    prebid: dict[str, Any] | None = None  # Prebid Server's buyer ids (prebid_ext.py)


class User(Struct_):
    id: str | None = None
    buyeruid: str | None = None
    yob: int | None = None
    gender: str | None = None
    keywords: str | None = None
    consent: str | None = None
    geo: Geo | None = None
    ext: UserExt | None = None


class Publisher(Struct_):
    id: str | None = None
    name: str | None = None
    domain: str | None = None


class Site(Struct_):
    id: str | None = None
    name: str | None = None
    domain: str | None = None
    cat: list[str] | None = None
    page: str | None = None
    ref: str | None = None
    publisher: Publisher | None = None
    mobile: int | None = None
    ext: Any = None


class App(Struct_):
    id: str | None = None
    name: str | None = None
    bundle: str | None = None
    domain: str | None = None
    storeurl: str | None = None
    cat: list[str] | None = None
    ver: str | None = None
    publisher: Publisher | None = None
    ext: Any = None


class RegsExt(Struct_):
    gdpr: int | None = None  # the 2.5 extensions of `regs.gdpr` and `regs.us_privacy`
    us_privacy: str | None = None


class Regs(Struct_):
    coppa: int | None = None
    gdpr: int | None = None
    us_privacy: str | None = None
    gpp: str | None = None
    gpp_sid: list[int] | None = None
    ext: RegsExt | None = None


class BidRequest(Struct_):
    id: str | None = None
    imp: list[Imp] | None = None
    site: Site | None = None
    app: App | None = None
    dooh: dict[str, Any] | None = None
    device: Device | None = None
    user: User | None = None
    test: int = 0
    at: int = 2
    tmax: NonNegative | None = None
    wseat: list[str] | None = None
    bseat: list[str] | None = None
    allimps: int = 0
    cur: list[str] | None = None
    wlang: list[str] | None = None
    wlangb: list[str] | None = None
    bcat: list[str] | None = None
    acat: list[str] | None = None
    cattax: int | None = None
    badv: list[str] | None = None
    bapp: list[str] | None = None
    regs: Regs | None = None
    ext: Any = None


class InvalidBidRequest(ValueError):
    """Why a bid request is refused: `field` is its path, e.g. `imp[1].id`."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


_DECODER = msgspec.json.Decoder(BidRequest)
_NATIVE_DECODER = msgspec.json.Decoder(dict[str, Any])


def decode(body: bytes) -> BidRequest:
    """Decode and check a bid request; raises InvalidBidRequest naming the field."""
    try:
        request = _DECODER.decode(body)
    except msgspec.ValidationError as exc:
        text = str(exc)
        field = text.rsplit("`$", 1)[-1].rstrip("`") if "`$" in text else "request"
        raise InvalidBidRequest(field.lstrip(".") or "request", text) from None
    except msgspec.DecodeError as exc:
        raise InvalidBidRequest("request", f"malformed JSON: {exc}") from None
    except RecursionError:
        raise InvalidBidRequest("request", "JSON nested too deeply to decode") from None
    check(request)
    from adstack.serving.openrtb import prebid_ext

    prebid_ext.check(request)
    return request


def check(request: BidRequest) -> None:
    if not request.id:
        raise InvalidBidRequest("id", "a bid request needs a non-empty string id")
    if not request.imp:
        raise InvalidBidRequest("imp", "a bid request needs at least one imp")
    if len(request.imp) > MAX_IMPS:
        raise InvalidBidRequest("imp", f"at most {MAX_IMPS} imps per request")
    if sum(x is not None for x in (request.site, request.app, request.dooh)) > 1:
        raise InvalidBidRequest("site", "at most one of site, app and dooh may be present")
    if request.site is not None and not (request.site.id or request.site.page):
        raise InvalidBidRequest("site", "a site needs its id or page")
    regs = request.regs
    if regs is not None:
        for name, value in (("regs.gdpr", regs.gdpr), ("regs.ext.gdpr", regs.ext.gdpr if regs.ext else None)):
            if value not in (None, 0, 1):
                raise InvalidBidRequest(name, "must be 0 or 1")
    seen: dict[str, int] = {}
    for n, imp in enumerate(request.imp):
        path = f"imp[{n}]"
        if not imp.id:
            raise InvalidBidRequest(f"{path}.id", "every imp needs a non-empty string id")
        if imp.id in seen:
            raise InvalidBidRequest(f"{path}.id", f"duplicates imp[{seen[imp.id]}].id {imp.id!r}: imp ids are unique")
        seen[imp.id] = n
        for m, metric in enumerate(imp.metric or ()):
            if not metric.type or metric.value is None:
                raise InvalidBidRequest(f"{path}.metric[{m}]", "a metric needs its type and value")
        if imp.banner is not None:
            _check_banner(imp.banner, f"{path}.banner", interstitial=imp.instl == 1)
        if imp.video is not None and not imp.video.mimes:
            raise InvalidBidRequest(f"{path}.video.mimes", "a video names at least one MIME type")
        if imp.audio is not None and not imp.audio.mimes:
            raise InvalidBidRequest(f"{path}.audio.mimes", "an audio names at least one MIME type")
        if imp.native is not None:
            check_native(imp.native, f"{path}.native")
        for d, deal in enumerate(imp.pmp.deals or () if imp.pmp else ()):
            if not deal.id:
                raise InvalidBidRequest(f"{path}.pmp.deals[{d}].id", "every deal needs its id")


def _check_banner(banner: Banner, path: str, *, interstitial: bool) -> None:
    """An interstitial banner may leave its size to the device's screen; any other needs one."""
    for name in ("wmax", "hmax", "wmin", "hmin"):
        if getattr(banner, name) is not None:
            raise InvalidBidRequest(f"{path}.{name}", "removed in OpenRTB 2.6: use format")
    if banner.format is None and not (banner.w and banner.h) and not interstitial:
        raise InvalidBidRequest(path, "a banner needs w and h, or a format")
    if banner.format is not None:
        if not banner.format and not (banner.w and banner.h) and not interstitial:
            raise InvalidBidRequest(f"{path}.format", "at least one format")
        for n, item in enumerate(banner.format):
            fixed = item.w is not None or item.h is not None
            flexible = item.wratio is not None or item.hratio is not None or item.wmin is not None
            if fixed == flexible:
                raise InvalidBidRequest(f"{path}.format[{n}]", "either w and h, or wmin, wratio and hratio")
            if fixed and not (item.w and item.h):
                raise InvalidBidRequest(f"{path}.format[{n}]", "w and h must both be above 0")
            if flexible and not (item.wratio and item.hratio and item.wmin):
                raise InvalidBidRequest(f"{path}.format[{n}]", "wmin, wratio and hratio must all be above 0")


# ---------- native (Native Ads API 1.2) ----------

_CONTEXT_SUBTYPES = {1: range(10, 16), 2: range(20, 23), 3: range(30, 33)}
_DATA_TYPES = range(1, 13)


def native_spec(native: Native) -> dict[str, Any] | None:
    """The native request object (`request` is a JSON string, or an object some exchanges send)."""
    raw = native.request
    if isinstance(raw, str):
        try:
            parsed: Any = _NATIVE_DECODER.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            return None
    else:
        parsed = raw
    if not isinstance(parsed, dict):
        return None
    inner = parsed.get("native")
    if isinstance(inner, dict):
        # Only a request before Native 1.2 wraps itself in `native`, whose `ver` is optional there.
        return inner if "ver" in inner else {**inner, "ver": "1.1"}
    return parsed


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def check_native(native: Native, path: str) -> None:
    """Source: Native Ads API 1.2, sections 4.1-4.7 (request, asset, title, image, video, data, event trackers)."""
    if native.request is None:
        raise InvalidBidRequest(f"{path}.request", "a native imp carries its request")
    spec = native_spec(native)
    path += ".request"
    if spec is None:
        raise InvalidBidRequest(path, "the native request is a JSON object")
    for name in ("context", "contextsubtype", "plcmttype"):
        value = spec.get(name)
        if value is not None and ((_int(value) or 0) <= 0):
            raise InvalidBidRequest(f"{path}.{name}", "a positive integer")
    context, subtype, plcmttype = (_int(spec.get(n)) for n in ("context", "contextsubtype", "plcmttype"))
    if context is not None and not (1 <= context <= 3 or context >= 500):
        raise InvalidBidRequest(f"{path}.context", "1-3, or 500 and above for exchange-specific values")
    if subtype is not None and subtype < 500:
        if not any(subtype in r for r in _CONTEXT_SUBTYPES.values()):
            raise InvalidBidRequest(f"{path}.contextsubtype", "one of 10-15, 20-22, 30-32")
        if context is not None and context in _CONTEXT_SUBTYPES and subtype not in _CONTEXT_SUBTYPES[context]:
            raise InvalidBidRequest(f"{path}.contextsubtype", f"not a subtype of context {context}")
    if plcmttype is not None and not (1 <= plcmttype <= 4 or plcmttype >= 500):
        raise InvalidBidRequest(f"{path}.plcmttype", "1-4, or 500 and above")
    assets = spec.get("assets")
    if not isinstance(assets, list) or not assets:
        raise InvalidBidRequest(f"{path}.assets", "at least one asset")
    ids = [a.get("id") for a in assets if isinstance(a, dict)]
    if any(i is not None for i in ids) and (any(i is None for i in ids) or len(set(map(str, ids))) != len(ids)):
        raise InvalidBidRequest(f"{path}.assets", "asset ids are all present and unique, or all absent")
    for n, asset in enumerate(assets):
        _check_asset(asset, f"{path}.assets[{n}]")
    trackers = spec.get("eventtrackers")
    if trackers is not None:
        if not isinstance(trackers, list):
            raise InvalidBidRequest(f"{path}.eventtrackers", "a list")
        for n, tracker in enumerate(trackers):
            _check_tracker(tracker, f"{path}.eventtrackers[{n}]")


def _check_asset(asset: Any, path: str) -> None:
    if not isinstance(asset, dict):
        raise InvalidBidRequest(path, "an object")
    kinds = [k for k in ("title", "img", "video", "data") if k in asset]
    if len(kinds) != 1:
        raise InvalidBidRequest(path, "exactly one of title, img, video and data")
    body = asset[kinds[0]]
    if not isinstance(body, dict):
        raise InvalidBidRequest(f"{path}.{kinds[0]}", "an object")
    if kinds[0] == "title" and not (_int(body.get("len")) or 0) > 0:
        raise InvalidBidRequest(f"{path}.title.len", "a title needs a positive len")
    if kinds[0] == "img":
        for name in ("w", "h", "wmin", "hmin"):
            value = body.get(name)
            if value is not None and (_int(value) is None or value < 0):
                raise InvalidBidRequest(f"{path}.img.{name}", "a non-negative integer")
    if kinds[0] == "video":
        for name in ("mimes", "protocols"):
            if not isinstance(body.get(name), list) or not body[name]:
                raise InvalidBidRequest(f"{path}.video.{name}", "a non-empty list")
        for name in ("minduration", "maxduration"):
            if _int(body.get(name)) is None:
                raise InvalidBidRequest(f"{path}.video.{name}", "required")
        if any(_int(p) is None or not 1 <= p <= 10 for p in body["protocols"]):
            raise InvalidBidRequest(f"{path}.video.protocols", "protocols 1-10 (Protocols list)")
    if kinds[0] == "data":
        kind = _int(body.get("type"))
        if kind is None or not (kind in _DATA_TYPES or kind >= 500):
            raise InvalidBidRequest(f"{path}.data.type", "1-12, or 500 and above")


def _check_tracker(tracker: Any, path: str) -> None:
    if not isinstance(tracker, dict):
        raise InvalidBidRequest(path, "an object")
    event = _int(tracker.get("event"))
    if event is None or not (1 <= event <= 4 or event >= 500):
        raise InvalidBidRequest(f"{path}.event", "1-4, or 500 and above")
    methods = tracker.get("methods")
    if not isinstance(methods, list) or not methods:
        raise InvalidBidRequest(f"{path}.methods", "a non-empty list")
    if any(_int(m) is None or not (1 <= m <= 2 or m >= 500) for m in methods):
        raise InvalidBidRequest(f"{path}.methods", "1 (img), 2 (js), or 500 and above")
