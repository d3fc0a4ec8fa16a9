"""What attributing a batch (batch.py) holds in memory: the claimed postbacks on their way through it, the
conversions later decisions read, the apps and ad groups as the rules read them, and the view indexing them
the way the rules look them up."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from adstack.apps import service as apps
from adstack.apps.mapping import MappingRule
from adstack.apps.models import App
from adstack.attribution.models import PostbackStatus
from adstack.attribution.postback_fields import ParsedPostback
from adstack.attribution.rules import AttributionType, MatchType, PriorInstall, Touch, TouchKind, Windows
from adstack.core.vocabulary import ConversionEvent
from adstack.tracking.devices import Gaid

# Stored rows keep their ids as their order; rows of this batch come after all of them, in receipt order.
_IN_BATCH = 1 << 62
_ATTRIBUTED = frozenset({AttributionType.CLICK.value, AttributionType.VIEW.value})
_ATTRIBUTION_TYPES = {kind.value: kind for kind in AttributionType}
_MATCH_TYPES = {kind.value: kind for kind in MatchType}
_NO_DEVICE = ("", "")
_INSTALL = ConversionEvent.INSTALL.value

DeviceKey = tuple[str, str]  # ("m", md5) or ("s", sha1): how a GAID is matched, as `_device_condition` does


def _row_keys(md5: str | None, sha1: str | None) -> tuple[DeviceKey, ...]:
    if md5 is None:
        return () if sha1 is None else (("s", sha1),)
    return (("m", md5),) if sha1 is None else (("m", md5), ("s", sha1))


def windows_for(app: App) -> Windows:
    return Windows(
        click_lookback=timedelta(days=app.click_lookback_days),
        view_through=timedelta(hours=app.view_through_hours) if app.view_through_enabled else None,
        reattribution=timedelta(days=app.reattribution_window_days),
        event_window=timedelta(days=app.event_window_days) if app.event_window_days else None,
    )


@dataclass(frozen=True, slots=True)
class AppInfo:
    """What attribution reads of an app, copied once per batch out of the ORM object."""

    id: int
    account_id: int
    package_name: str
    attribution_authority: str
    windows: Windows
    networks: frozenset[str]
    partner: str = ""  # the measurement partner the app is set up with

    @classmethod
    def of(cls, app: App) -> AppInfo:
        return cls(app.id, app.account_id, app.package_name, app.attribution_authority, windows_for(app),
                   apps.network_names(app), app.partner or "")


@dataclass(frozen=True, slots=True)
class _Group:
    """What the CPA decision reads of an ad group."""

    id: int
    account_id: int
    bid_type: str
    bid_micros: int
    conversion_event: str | None


def charged_touch(touch_kind: str, touch_id: str, click_id: str) -> tuple[str, str]:
    """(click, impression) a conversion is charged once for: the touch it was attributed to, else the click id its
    postback named. A view-through is the impression's, whether its postback returned the impression's click id
    or it was matched by device."""
    if touch_kind == TouchKind.CLICK.value and touch_id:
        return touch_id, ""
    if touch_kind == TouchKind.IMPRESSION.value and touch_id:
        return "", touch_id
    return click_id, ""


@dataclass(slots=True, eq=False)
class Known:
    """A conversion that later decisions in the batch may read: stored before, or decided in this batch."""

    seq: int  # the id of a stored one; _IN_BATCH + position for one of this batch
    postback_id: int
    app_id: int
    conversion_event: str
    occurred_at: datetime
    click_id: str
    attribution_type: str = ""
    match_type: str = ""
    is_reinstall: bool = False
    touch_kind: str = ""
    touch_id: str = ""
    touch_at: datetime | None = None
    account_id: int = 0
    campaign_id: int = 0
    ad_group_id: int = 0
    creative_id: int = 0
    ad_space_id: int = 0
    publisher_id: int = 0
    fraud_flags: Sequence[str] = ()
    charged: int | None = 0  # None while its CPA charge is requested but not yet applied
    id: int | None = None
    # For the retry check: the postback it came from, and the revenue and currency as sent ("" for none).
    dedupe_key: str = ""
    fields: dict[str, Any] | None = None
    revenue: str = ""
    currency: str = ""
    # From the app's signed postback URL. An unsigned conversion is never a signed one's prior install, retry or
    # source of device flags: anyone who saw a click id could have sent it.
    signed: bool = True
    # Its touch as a rules object: the one decided, for a conversion of this batch; built once from the
    # columns above for a stored one.
    touch: Touch | None = None

    def attributed_click(self) -> str:
        """The click it was attributed to (whatever the postback named), else the click id the postback named."""
        return charged_touch(self.touch_kind, self.touch_id, self.click_id)[0]

    def clicks(self) -> tuple[str, ...]:
        """Every click id it is known by: the one its postback named and the one it was attributed to, which a
        device match finds without the postback naming it."""
        attributed = self.attributed_click()
        if not self.click_id or attributed == self.click_id:
            return (attributed,) if attributed else ()
        return (self.click_id, attributed) if attributed else (self.click_id,)

    def impression(self) -> str:
        """The impression of a view-through: how one found by device and one by its click id are known as one."""
        return self.touch_id if self.touch_kind == TouchKind.IMPRESSION.value else ""

    def prior(self) -> PriorInstall:
        touch = None
        if self.attribution_type in _ATTRIBUTED and self.touch_at is not None:
            touch = self.touch
            if touch is None:
                touch = self.touch = Touch(
                    kind=TouchKind(self.touch_kind), touch_id=self.touch_id, occurred_at=self.touch_at,
                    account_id=self.account_id, campaign_id=self.campaign_id, ad_group_id=self.ad_group_id,
                    creative_id=self.creative_id, ad_space_id=self.ad_space_id, publisher_id=self.publisher_id)
        return PriorInstall(installed_at=self.occurred_at, attribution_type=_ATTRIBUTION_TYPES[self.attribution_type],
                            match_type=_MATCH_TYPES[self.match_type], touch=touch, conversion_id=self.id or 0)


def _latest(rows: Iterable[Known]) -> Known | None:
    return max(rows, key=lambda k: (k.occurred_at, k.seq), default=None)


@dataclass(slots=True)
class Item:
    """One claimed postback on its way through the batch."""

    id: int
    app_id: int
    partner: str
    dedupe_key: str
    fields: dict[str, Any]
    received_at: datetime
    stored_parse: str | None = None
    status: PostbackStatus = PostbackStatus.ATTRIBUTED
    detail: str = ""
    app: AppInfo | None = None
    parsed: ParsedPostback | None = None
    event: ConversionEvent | None = None
    occurred_at: datetime | None = None
    clamped: bool = False
    forged: bool = False
    signed: bool = False  # sent to the app's own postback URL (`app` and its `sig`): only these are charged
    click_id: str = ""  # ours, verified; "" when absent or forged
    gaid: Gaid | None = None
    device: DeviceKey = _NO_DEVICE
    md5: str | None = None
    sha1: str | None = None
    keys: tuple[DeviceKey, ...] = ()  # every form of the device, as a stored row of it is found by
    # Decided: the conversion row, its install, its touch and its charge.
    row: dict[str, Any] | None = None
    known: Known | None = None
    install: Known | None = None
    touch: Touch | None = None
    charge_id: str = ""

    def finish(self, status: PostbackStatus, detail: str = "") -> None:
        self.status, self.detail = status, detail


@dataclass
class View:
    """What the batch reads once, and the conversions it decides, indexed the way the rules look them up."""

    secret: bytes
    rates: dict[str, Decimal]
    dialect: str
    apps: dict[int, AppInfo] = field(default_factory=dict)
    rules: dict[int, list[MappingRule]] = field(default_factory=dict)
    currencies: dict[int, str] = field(default_factory=dict)
    ad_groups: dict[int, _Group] = field(default_factory=dict)
    click_touches: dict[str, tuple[Touch, str]] = field(default_factory=dict)  # click id -> (touch, package)
    # the click id an impression's links carried -> (the impression, package)
    impression_touches: dict[str, tuple[Touch, str]] = field(default_factory=dict)
    device_touches: dict[DeviceKey, list[tuple[Touch, str]]] = field(default_factory=lambda: defaultdict(list))
    installs_by_device: dict[tuple[int, DeviceKey], list[Known]] = field(default_factory=lambda: defaultdict(list))
    installs_by_click: dict[tuple[int, str], list[Known]] = field(default_factory=lambda: defaultdict(list))
    charged_by_device: dict[tuple[int, str, DeviceKey], list[Known]] = field(
        default_factory=lambda: defaultdict(list))
    charged_by_click: dict[tuple[int, str, str], list[Known]] = field(default_factory=lambda: defaultdict(list))
    installs_by_impression: dict[tuple[int, str], list[Known]] = field(default_factory=lambda: defaultdict(list))
    charged_by_impression: dict[tuple[int, str, str], list[Known]] = field(
        default_factory=lambda: defaultdict(list))
    # (app, account, event, source event name, click id, time, device) -> conversions a retry may repeat
    same: dict[tuple[Any, ...], list[Known]] = field(default_factory=lambda: defaultdict(list))
    pending_charges: list[tuple[Item, Any]] = field(default_factory=list)
    verified: dict[str, bool] = field(default_factory=dict)  # click id -> whether it is ours
    # GAID -> its MD5, SHA1 and device keys: an install and its events hash the device once a batch
    device_forms: dict[str, tuple[str | None, str | None, tuple[DeviceKey, ...]]] = field(default_factory=dict)

    def add_install(self, known: Known, keys: Sequence[DeviceKey]) -> None:
        for key in keys:
            self.installs_by_device[(known.app_id, key)].append(known)
        for click_id in known.clicks():
            self.installs_by_click[(known.app_id, click_id)].append(known)
        if impression := known.impression():
            self.installs_by_impression[(known.app_id, impression)].append(known)

    def add_charged(self, known: Known, keys: Sequence[DeviceKey]) -> None:
        for key in keys:
            self.charged_by_device[(known.app_id, known.conversion_event, key)].append(known)
        for click_id in known.clicks():
            self.charged_by_click[(known.app_id, known.conversion_event, click_id)].append(known)
        if impression := known.impression():
            self.charged_by_impression[(known.app_id, known.conversion_event, impression)].append(known)
