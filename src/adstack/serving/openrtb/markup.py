"""What a bid carries to the device: banner HTML, inline VAST 4 and Native 1.2 responses.

Every markup carries our own impression tracker, so an exchange that fires only `nurl` (or only renders `adm`)
still counts and bills the impression: the banner a 1x1 pixel, native an `eventtrackers` entry (event 1,
impression) with the first method the request allows, video a VAST `<Impression>`. The tracker is the same
signed impression URL as `burl`: tracking counts an impression once per impression id, whichever fires first.

Source: OpenRTB 2.6, 4.3 (substitution macros, `adm` vs `burl`); Native Ads API 1.2, 5.8 (eventtrackers
response), 7.6 (event types), 7.7 (methods: 1 img, 2 js); IAB VAST 4.0, 3.4 (InLine), 3.9 (Linear).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from adstack.creatives.formats import get_spec
from adstack.serving.engine import Decision

_VAST_EVENTS = {"start": "start", "first_quartile": "firstQuartile", "midpoint": "midpoint",
                "third_quartile": "thirdQuartile", "complete": "complete"}
IMPRESSION_EVENT = 1
IMG_METHOD, JS_METHOD = 1, 2
# What `vast` writes: an inline VAST 4.0 document, protocol 7 (8 is a 4.0 wrapper, which we do not send), of a
# linear MP4. Source: AdCOM 1.0 "Creative Subtypes - Audio/Video" (OpenRTB 2.5 list 5.8, Protocols).
VAST_PROTOCOL = 7
VIDEO_MIME = "video/mp4"


# What XML 1.0 cannot carry (Source: XML 1.0, 2.2 Characters): C0 controls but tab and line breaks, surrogates,
# U+FFFE and U+FFFF. Material validation refuses them; creatives stored before it did are cleaned here.
_NOT_XML = dict.fromkeys([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0xD800, 0xE000), 0xFFFE,
                          0xFFFF])


def xml_text(text: str) -> str:
    """The text without the characters XML cannot carry."""
    return text.translate(_NOT_XML) if text and not text.isprintable() else text


def _cdata(text: str) -> str:
    return "<![CDATA[" + xml_text(text).replace("]]>", "]]]]><![CDATA[>") + "]]>"


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


def banner_html(decision: Decision, *, click_url: str, impression_urls: list[str]) -> str:
    """The image with its click link, then one hidden pixel per impression tracker (ours first)."""
    combination = decision.combination
    pixels = "".join(f'<img src={quoteattr(u)} width="1" height="1" style="display:none" alt="">'
                     for u in impression_urls)
    return (f'<a href={quoteattr(click_url)} target="_blank">'
            f'<img src={quoteattr(combination.image_url)} width="{combination.width}" '
            f'height="{combination.height}" alt={quoteattr(xml_text(combination.title))}></a>{pixels}')


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@lru_cache(maxsize=256)
def _icon_size(format_code: str) -> tuple[int, int] | None:
    """The icon size the shipped rules of this format allow; None when they allow no single one. Only for icons
    whose uploaded size the snapshot does not know."""
    spec = get_spec(format_code)
    if spec is None or spec.icon is None or len(spec.icon.sizes) != 1:
        return None
    return spec.icon.sizes[0].width, spec.icon.sizes[0].height


_MIME_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg"}


def allowed_mimes(allowlist: Any) -> frozenset[str]:
    """A request's `mimes` allowlist as the lower-case types a file must have (aliases resolved); empty when the
    request allows any. A list of nothing usable allows nothing: an impossible type stands for it."""
    if not isinstance(allowlist, list) or not allowlist:
        return frozenset()
    named = frozenset(_MIME_ALIASES.get(m.strip().lower(), m.strip().lower())
                      for m in allowlist[:100] if isinstance(m, str) and m.strip())
    return named or frozenset({"-"})


def mime_allowed(allowlist: Any, mime: str) -> bool:
    """A file's MIME type against a request's `mimes` allowlist (OpenRTB 2.6 3.2.6, Native 1.2 4.4): absent or
    empty allows any; against a list, a type we do not know is not allowed. "image/jpg", common in requests, is
    taken as "image/jpeg"."""
    if not isinstance(allowlist, list) or not allowlist:
        return True
    if not mime:
        return False
    return any(isinstance(m, str) and _MIME_ALIASES.get(m.strip().lower(), m.strip().lower()) == mime
               for m in allowlist[:100])


def _image_fits(asset: Mapping[str, Any], width: int, height: int) -> bool:
    """An image asset's size: exactly w x h when given, else at least wmin x hmin (Native 1.2, 4.4)."""
    w, h = _int(asset.get("w")), _int(asset.get("h"))
    if w and h and (w, h) != (width, height):
        return False
    wmin, hmin = _int(asset.get("wmin")) or 0, _int(asset.get("hmin")) or 0
    return width >= wmin and height >= hmin


def video_fits(video: Mapping[str, Any], duration_ms: int) -> bool:
    """A native video asset (Native 1.2, 4.5) takes our VAST: an MP4 among its `mimes`, our protocol among its
    `protocols`, the duration within `minduration`..`maxduration` seconds (a maximum of 0 or none: no limit)."""
    if not mime_allowed(video.get("mimes"), VIDEO_MIME):
        return False
    protocols = video.get("protocols")
    if isinstance(protocols, list) and protocols and VAST_PROTOCOL not in protocols:
        return False
    low, high = _int(video.get("minduration")) or 0, _int(video.get("maxduration")) or 0
    return duration_ms >= low * 1000 and (high <= 0 or duration_ms <= high * 1000)


def tracker_method(spec: Mapping[str, Any]) -> int | None:
    """The method our impression tracker uses: img where the request allows it for impressions (or names no
    trackers at all, the 1.2 default), else None (then no native bid, as it could not be counted)."""
    trackers = spec.get("eventtrackers")
    if not isinstance(trackers, list):
        return IMG_METHOD
    for tracker in trackers:
        if isinstance(tracker, dict) and tracker.get("event") == IMPRESSION_EVENT:
            methods = tracker.get("methods")
            if isinstance(methods, list) and IMG_METHOD in methods:
                return IMG_METHOD
    return None


def legacy_native(spec: Mapping[str, Any], declared: str | float | None) -> bool:
    """Whether the request speaks Native 1.0 or 1.1 (its own `ver`, else the imp's `native.ver`), whose renderers
    read the response inside a `native` object and fire `imptrackers`; they know no `eventtrackers`.
    Source: Native Ads API 1.2, 5.1 (the root `native` node before 1.2) and 5.1 `imptrackers`."""
    version = str(spec.get("ver") or declared or "")
    return version.startswith(("1.0", "1.1")) or version == "1"


def legacy_response(native: Mapping[str, Any], impression_urls: list[str]) -> dict[str, Any]:
    """A 1.2 response in the 1.1 shape: wrapped in `native`, the impression trackers as `imptrackers`."""
    body = {key: value for key, value in native.items() if key != "eventtrackers"}
    return {"native": {**body, "ver": "1.1", "imptrackers": list(impression_urls)}}


# Native 1.2 data asset types (7.4) filled from the creative.
SPONSORED, DESC, PHONE, DESC2, CTATEXT = 1, 2, 8, 10, 12


def _data_value(decision: Decision, kind: int) -> str:
    combination, creative = decision.combination, decision.creative
    if kind == SPONSORED:
        return creative.business_name or decision.ad_group.campaign_name
    if kind == DESC:
        return combination.description
    if kind == PHONE:
        return creative.business_phone
    if kind == DESC2:
        return " ".join(creative.subtitles)
    if kind == CTATEXT:
        return combination.button or creative.button_1
    return ""


def native_markup(decision: Decision, spec: Mapping[str, Any], *, click_url: str, impression_urls: list[str],
                  video_xml: str | None) -> dict[str, Any] | None:
    """A Native 1.2 response for the request's assets from the creative's native assets (title, sponsor,
    description, subtitles as desc2, phone, icon, main image or a video's cover, call to action, video); None
    when a required asset cannot be filled or the impression could not be counted."""
    method = tracker_method(spec)
    if method is None:
        return None
    combination = decision.combination
    creative = decision.creative
    assets: list[dict[str, Any]] = []
    raw_assets: list[Any] = spec["assets"] if isinstance(spec.get("assets"), list) else []
    for position, raw in enumerate(raw_assets):
        asset = raw if isinstance(raw, dict) else {}
        asset_id = _int(asset.get("id"))
        asset_id = position if asset_id is None else asset_id
        required = _int(asset.get("required")) == 1
        filled: dict[str, Any] | None = None
        if isinstance(asset.get("title"), dict):
            limit = _int(asset["title"].get("len")) or 0
            text = xml_text(combination.title or creative.name)
            if text:
                filled = {"title": {"text": text[:limit] if limit > 0 else text}}
        elif isinstance(asset.get("img"), dict):
            image = asset["img"]
            kind = _int(image.get("type"))
            mimes = image.get("mimes")
            if kind == 1:  # icon: the uploaded icon's size, else the one its format's icon rule allows
                size = (combination.icon_width, combination.icon_height) \
                    if combination.icon_width and combination.icon_height else _icon_size(creative.format)
                if combination.icon_url and size is not None and _image_fits(image, *size) \
                        and mime_allowed(mimes, combination.icon_mime):
                    filled = {"img": {"url": combination.icon_url, "w": size[0], "h": size[1]}}
            elif combination.image_url and _image_fits(image, combination.width, combination.height) \
                    and mime_allowed(mimes, combination.image_mime):
                filled = {"img": {"url": combination.image_url, "w": combination.width, "h": combination.height}}
            elif kind == 3 and creative.cover_image_url and _image_fits(image, creative.cover_width,
                                                                       creative.cover_height) \
                    and mime_allowed(mimes, creative.cover_image_mime):
                # A video creative's cover image is its still main image.
                filled = {"img": {"url": creative.cover_image_url, "w": creative.cover_width,
                                  "h": creative.cover_height}}
        elif isinstance(asset.get("video"), dict):
            if video_xml is not None and video_fits(asset["video"], combination.duration_ms):
                filled = {"video": {"vasttag": video_xml}}
        elif isinstance(asset.get("data"), dict):
            kind = _int(asset["data"].get("type"))
            limit = _int(asset["data"].get("len")) or 0
            value = xml_text(_data_value(decision, kind or 0))
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
            "eventtrackers": [{"event": IMPRESSION_EVENT, "method": method, "url": u} for u in impression_urls]}
