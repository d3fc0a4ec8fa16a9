"""Attribution rules as pure functions: windows, precedence, re-attribution and fraud flags.

Installs go to the last click within the click lookback window, matched by click id first and by device
(GAID) second; otherwise to the last impression within the view-through window, the one whose click id the
partner returned first (our view-through link carries the click id a click would), by device second; otherwise
they are organic.
A click always beats an impression. A reinstall within the re-attribution window keeps the original
install's attribution and is not a new attributed install. In-app events follow their install's attribution
within the event window (lifetime by default); those of an install another network won stay `other`.

Who decides: by default the partner. When its postback carries a verdict, that verdict is the attribution and our
own rules only pick the touch (click id, else device) that names the campaign; when it says organic, another
network or rejected, the conversion is kept as organic or other and never billed. Without a verdict, our own
rules decide. Both verdicts are recorded, so their disagreement can be measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class AttributionType(StrEnum):
    CLICK = "click"
    VIEW = "view"
    ORGANIC = "organic"
    OTHER = "other"  # the partner attributed it to another network, or rejected it


class Authority(StrEnum):
    """Who decides an app's attribution."""

    PARTNER = "partner"  # the partner's verdict where it sends one, our rules otherwise (the default)
    ADSTACK = "adstack"  # always our rules; the partner's verdict is recorded only


class MatchType(StrEnum):
    CLICK_ID = "click_id"
    GAID = "gaid"
    NONE = "none"


class TouchKind(StrEnum):
    CLICK = "click"
    IMPRESSION = "impression"


class FraudFlag(StrEnum):
    CLICK_INJECTION = "click_injection"  # install too soon after the click to be caused by it
    CLICK_SPAMMING = "click_spamming"  # the device clicked far more than a person does
    FORGED_CLICK_ID = "forged_click_id"  # the postback's click id was not issued by us
    PARTNER_REJECTED = "partner_rejected"  # the partner blocked or rejected the install as fraud


# Flags that mark the device, not one conversion: nothing downstream of a flagged install is billed.
DEVICE_FLAGS = frozenset({FraudFlag.CLICK_INJECTION, FraudFlag.CLICK_SPAMMING, FraudFlag.PARTNER_REJECTED})
# A partner time further ahead of receipt than this is not believed.
FUTURE_TOLERANCE = timedelta(minutes=10)


CLICK_INJECTION_THRESHOLD = timedelta(seconds=10)
CLICK_SPAM_WINDOW = timedelta(hours=24)
CLICK_SPAM_THRESHOLD = 20  # clicks by one device in the 24 h before an install
_NO_TIME = timedelta(0)


@dataclass(frozen=True)
class Touch:
    kind: TouchKind
    touch_id: str
    occurred_at: datetime
    account_id: int = 0
    campaign_id: int = 0
    ad_group_id: int = 0
    creative_id: int = 0
    ad_space_id: int = 0
    publisher_id: int = 0
    country: str = ""
    placement_type: str = ""


@dataclass(frozen=True)
class Windows:
    click_lookback: timedelta = timedelta(days=7)
    view_through: timedelta | None = timedelta(hours=24)  # None = view-through attribution off
    reattribution: timedelta = timedelta(days=90)
    event_window: timedelta | None = None  # None = lifetime


@dataclass(frozen=True)
class PriorInstall:
    """The device's earlier install of the same app, with the attribution it received."""

    installed_at: datetime
    attribution_type: AttributionType
    match_type: MatchType
    touch: Touch | None
    conversion_id: int = 0


@dataclass(frozen=True)
class Decision:
    attribution_type: AttributionType
    match_type: MatchType
    touch: Touch | None
    click_to_install: timedelta | None = None
    reinstall: bool = False
    fraud_flags: tuple[FraudFlag, ...] = ()

    @property
    def attributed(self) -> bool:
        return self.attribution_type in (AttributionType.CLICK, AttributionType.VIEW)


def bounded_time(partner_time: datetime | None, received_at: datetime) -> tuple[datetime, bool]:
    """The conversion's time: the partner's, unless it lies more than FUTURE_TOLERANCE after receipt (then
    receipt, and True for the flag). A missing time is the receipt. Within the tolerance the partner's time is
    kept (a retry is matched by it), but attribution judges an install at the earlier of it and the receipt
    (`attribution.deciding`), since no install follows its own postback."""
    if partner_time is None:
        return received_at, False
    if partner_time - received_at > FUTURE_TOLERANCE:
        return received_at, True
    return partner_time, False


def within(touch_at: datetime, conversion_at: datetime, window: timedelta | None) -> bool:
    """A touch counts when it happened before the conversion, no longer ago than the window."""
    if window is None:
        return False
    elapsed = conversion_at - touch_at
    return _NO_TIME <= elapsed <= window


def last_within(touches: Sequence[Touch], conversion_at: datetime, window: timedelta | None) -> Touch | None:
    eligible = [t for t in touches if within(t.occurred_at, conversion_at, window)]
    return max(eligible, key=lambda t: t.occurred_at) if eligible else None


def fraud_flags(*, click_to_install: timedelta | None, device_clicks_24h: int,
                forged_click_id: bool) -> tuple[FraudFlag, ...]:
    flags = []
    if click_to_install is not None and click_to_install < CLICK_INJECTION_THRESHOLD:
        flags.append(FraudFlag.CLICK_INJECTION)
    if device_clicks_24h > CLICK_SPAM_THRESHOLD:
        flags.append(FraudFlag.CLICK_SPAMMING)
    if forged_click_id:
        flags.append(FraudFlag.FORGED_CLICK_ID)
    return tuple(flags)


def attribute_install(
    *,
    installed_at: datetime,
    windows: Windows,
    touch_by_click_id: Touch | None = None,
    device_clicks: Sequence[Touch] = (),
    device_impressions: Sequence[Touch] = (),
    prior_install: PriorInstall | None = None,
    forged_click_id: bool = False,
    impression_by_click_id: Touch | None = None,
) -> Decision:
    """`touch_by_click_id`: the click of the postback's click id; `impression_by_click_id`: the impression whose
    links carried that click id (the partner's view-through link), which counts as a view-through."""
    if impression_by_click_id is None and touch_by_click_id is not None \
            and touch_by_click_id.kind is TouchKind.IMPRESSION:
        touch_by_click_id, impression_by_click_id = None, touch_by_click_id
    if prior_install is not None and within(prior_install.installed_at, installed_at, windows.reattribution):
        return Decision(prior_install.attribution_type, prior_install.match_type, prior_install.touch,
                        reinstall=True, fraud_flags=(FraudFlag.FORGED_CLICK_ID,) if forged_click_id else ())
    kind, match, touch = AttributionType.ORGANIC, MatchType.NONE, None
    if (touch_by_click_id is not None and touch_by_click_id.kind is TouchKind.CLICK
            and within(touch_by_click_id.occurred_at, installed_at, windows.click_lookback)):
        kind, match, touch = AttributionType.CLICK, MatchType.CLICK_ID, touch_by_click_id
    elif (click := last_within(device_clicks, installed_at, windows.click_lookback)) is not None:
        kind, match, touch = AttributionType.CLICK, MatchType.GAID, click
    elif (impression_by_click_id is not None
          and within(impression_by_click_id.occurred_at, installed_at, windows.view_through)):
        kind, match, touch = AttributionType.VIEW, MatchType.CLICK_ID, impression_by_click_id
    elif (view := last_within(device_impressions, installed_at, windows.view_through)) is not None:
        kind, match, touch = AttributionType.VIEW, MatchType.GAID, view
    click_to_install = installed_at - touch.occurred_at if touch is not None and kind is AttributionType.CLICK \
        else None
    spam_clicks = sum(1 for t in device_clicks if within(t.occurred_at, installed_at, CLICK_SPAM_WINDOW))
    flags = fraud_flags(click_to_install=click_to_install, device_clicks_24h=spam_clicks,
                        forged_click_id=forged_click_id)
    return Decision(kind, match, touch, click_to_install=click_to_install, fraud_flags=flags)


def attribute_event(
    *,
    occurred_at: datetime,
    windows: Windows,
    install: PriorInstall | None,
    touch_by_click_id: Touch | None = None,
    forged_click_id: bool = False,
) -> Decision:
    """An in-app event follows its install within the event window; without a known install, a click the
    partner names by our click id still counts within the click lookback. The events of an install another
    network won (`other`) are that network's user's: `other` too, never organic."""
    forged = (FraudFlag.FORGED_CLICK_ID,) if forged_click_id else ()
    if install is not None:
        if install.attribution_type is AttributionType.OTHER:
            return Decision(AttributionType.OTHER, MatchType.NONE, None, fraud_flags=forged)
        in_window = windows.event_window is None or within(install.installed_at, occurred_at, windows.event_window)
        if install.attribution_type in (AttributionType.CLICK, AttributionType.VIEW) and in_window \
                and occurred_at >= install.installed_at:
            return Decision(install.attribution_type, install.match_type, install.touch, fraud_flags=forged)
        return Decision(AttributionType.ORGANIC, MatchType.NONE, None, fraud_flags=forged)
    if (touch_by_click_id is not None and touch_by_click_id.kind is TouchKind.CLICK
            and within(touch_by_click_id.occurred_at, occurred_at, windows.click_lookback)):
        return Decision(AttributionType.CLICK, MatchType.CLICK_ID, touch_by_click_id, fraud_flags=forged)
    return Decision(AttributionType.ORGANIC, MatchType.NONE, None, fraud_flags=forged)


def follow_partner(
    *,
    verdict: str,
    own: Decision,
    occurred_at: datetime,
    is_install: bool,
    touch_by_click_id: Touch | None,
    device_touches: Sequence[Touch] = (),
    partner_touch_type: str = "",
) -> Decision:
    """The attribution when the partner's verdict decides. `verdict` is the partner's (attributed, organic,
    other_network, rejected). Attributed: our touch names the campaign, the click id's first, then the one our
    rules chose, then the device's latest; the partner's own windows apply, so our lookback does not. Anything
    else: organic or other, without a touch."""
    if verdict == "organic":
        return Decision(AttributionType.ORGANIC, MatchType.NONE, None, fraud_flags=own.fraud_flags)
    if verdict == "other_network":
        return Decision(AttributionType.OTHER, MatchType.NONE, None, fraud_flags=own.fraud_flags)
    if verdict == "rejected":
        flags = tuple(dict.fromkeys((*own.fraud_flags, FraudFlag.PARTNER_REJECTED)))
        return Decision(AttributionType.OTHER, MatchType.NONE, None, fraud_flags=flags)
    touch, match = None, MatchType.NONE
    if touch_by_click_id is not None and touch_by_click_id.occurred_at <= occurred_at:
        touch, match = touch_by_click_id, MatchType.CLICK_ID
    elif own.touch is not None:
        touch, match = own.touch, own.match_type
    else:
        earlier = [t for t in device_touches if t.occurred_at <= occurred_at]
        wanted = TouchKind.IMPRESSION if partner_touch_type == "impression" else TouchKind.CLICK
        preferred = [t for t in earlier if t.kind is wanted] or earlier
        if preferred:
            touch, match = max(preferred, key=lambda t: t.occurred_at), MatchType.GAID
    if touch is None:
        kind = AttributionType.VIEW if partner_touch_type == "impression" else AttributionType.CLICK
        return Decision(kind, MatchType.NONE, None, reinstall=own.reinstall, fraud_flags=own.fraud_flags)
    kind = AttributionType.VIEW if touch.kind is TouchKind.IMPRESSION else AttributionType.CLICK
    click_to_install = occurred_at - touch.occurred_at if is_install and kind is AttributionType.CLICK else None
    found = list(own.fraud_flags)
    if click_to_install is not None and click_to_install < CLICK_INJECTION_THRESHOLD \
            and FraudFlag.CLICK_INJECTION not in found:
        found.append(FraudFlag.CLICK_INJECTION)
    return Decision(kind, match, touch, click_to_install=click_to_install, reinstall=own.reinstall,
                    fraud_flags=tuple(found))


def own_verdict(decision: Decision) -> str:
    """Our rules' answer in the partner's vocabulary, to compare the two."""
    return "attributed" if decision.attributed else "organic"
