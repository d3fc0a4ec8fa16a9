"""Prebid Server's request extensions, checked as Prebid checks them where that needs no bidder registry.

Exchanges built on Prebid Server pass its extensions on (`ext.prebid`, bidder names in `imp.ext`,
`user.ext.prebid.buyeruids`, `site.ext.amp`, `app.ext.prebid.source`). A request whose extensions Prebid would
refuse is refused here too, with the same field, so we never buy what the auction in front of us would reject.
Checks that need Prebid's list of bidders (an alias naming an unknown bidder, a bidder's parameter schema) are
not made: no bidder has that list.

Source: Prebid Server, openrtb_ext/request.go and endpoints/openrtb2/auction.go (validateRequest,
validateBidAdjustmentFactors, validateAliases, validateImpExt, validateUser), and its invalid-whole samples.
"""

from __future__ import annotations

from typing import Any

from adstack.serving.openrtb.model import BidRequest, InvalidBidRequest

# Keys of imp.ext that are not bidder names (Prebid Server's reserved imp.ext keys).
_RESERVED_IMP_KEYS = frozenset({"prebid", "context", "data", "gpid", "skadn", "tid", "ae", "all", "general",
                                "rewarded", "bidder", "auctionenvironment", "igs", "paapi"})


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def bidders_named(request: BidRequest) -> set[str]:
    """Lower-cased bidder names the imps route to (imp.ext.<bidder> or imp.ext.prebid.bidder.<bidder>)."""
    names: set[str] = set()
    for imp in request.imp or ():
        ext = _obj(imp.ext)
        names.update(k.lower() for k in ext if k not in _RESERVED_IMP_KEYS)
        names.update(k.lower() for k in _obj(_obj(ext.get("prebid")).get("bidder")))
    return names


def check(request: BidRequest) -> None:
    named = bidders_named(request)
    prebid = _obj(request.ext).get("prebid")
    if prebid is not None:
        if not isinstance(prebid, dict):
            raise InvalidBidRequest("ext.prebid", "an object")
        _check_request_prebid(prebid, named)
    for n, imp in enumerate(request.imp or ()):
        if imp.ext is None:
            continue
        if not isinstance(imp.ext, dict):
            raise InvalidBidRequest(f"imp[{n}].ext", "an object")
        bidder = _obj(imp.ext.get("prebid")).get("bidder")
        if bidder is not None and (not isinstance(bidder, dict) or not bidder):
            raise InvalidBidRequest(f"imp[{n}].ext.prebid.bidder", "must name at least one bidder")
    site_ext = _obj(request.site.ext) if request.site else {}
    if site_ext.get("amp") not in (None, 0, 1):
        raise InvalidBidRequest("site.ext.amp", "must be 0, 1 or absent")
    source = _obj(_obj(request.app.ext).get("prebid")).get("source") if request.app else None
    if source is not None and not isinstance(source, str):
        raise InvalidBidRequest("app.ext.prebid.source", "a string")
    user_prebid = request.user.ext.prebid if request.user and request.user.ext else None
    if user_prebid is not None:
        buyeruids = user_prebid.get("buyeruids")
        if not isinstance(buyeruids, dict) or not buyeruids:
            raise InvalidBidRequest("user.ext.prebid.buyeruids", "at least one buyer id when user.ext.prebid is set")
        unknown = [k for k in buyeruids if k.lower() not in named | _aliases(prebid)]
        if unknown:
            raise InvalidBidRequest(f"user.ext.prebid.buyeruids.{unknown[0]}", "names no bidder of the request")


def _aliases(prebid: Any) -> set[str]:
    return {k.lower() for k in _obj(_obj(prebid).get("aliases"))}


def _check_request_prebid(prebid: dict[str, Any], named: set[str]) -> None:
    aliases = prebid.get("aliases")
    if aliases is not None:
        if not isinstance(aliases, dict):
            raise InvalidBidRequest("ext.prebid.aliases", "an object")
        for alias, core in aliases.items():
            if not isinstance(core, str) or not core:
                raise InvalidBidRequest(f"ext.prebid.aliases.{alias}", "a bidder name")
            if alias == core:
                raise InvalidBidRequest(f"ext.prebid.aliases.{alias}", "an alias of itself does nothing")
    factors = prebid.get("bidadjustmentfactors")
    if factors is not None:
        if not isinstance(factors, dict):
            raise InvalidBidRequest("ext.prebid.bidadjustmentfactors", "an object")
        seen: dict[str, str] = {}
        known = named | _aliases(prebid)
        for name, factor in factors.items():
            path = f"ext.prebid.bidadjustmentfactors.{name}"
            if name.lower() in seen:
                raise InvalidBidRequest(path, f"differs from {seen[name.lower()]} only in case")
            seen[name.lower()] = name
            if isinstance(factor, bool) or not isinstance(factor, int | float) or factor <= 0:
                raise InvalidBidRequest(path, "a positive number")
            if name.lower() not in known:
                raise InvalidBidRequest(path, "names no bidder of the request")
    cache = prebid.get("cache")
    if cache is not None and not ("bids" in _obj(cache) or "vastxml" in _obj(cache)):
        raise InvalidBidRequest("ext.prebid.cache", "needs bids or vastxml")
    stored = prebid.get("storedrequest")
    if stored is not None and not isinstance(_obj(stored).get("id"), str):
        raise InvalidBidRequest("ext.prebid.storedrequest.id", "a string")
