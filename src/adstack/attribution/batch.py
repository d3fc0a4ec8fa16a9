"""Set-based attribution of a batch of stored postbacks.

A batch costs a constant number of statements whatever its size: the claim, one read each for the apps, their
event mappings, the accounts, the FX rates, the click touches of every click id, the device touches of every
device, the devices' and click ids' earlier installs and charges, and the conversions a retry may repeat; then
the pure rules of `rules.py` run in memory in receipt order, each decision updating the in-memory view the
next one reads (an install earlier in the batch is the prior install of a later event), and everything is
written in bulk: the conversions, one `finance.apply_charges` for the CPA charges and the postback statuses.

The result is the one that attributing the postbacks one at a time gives, charge by charge: a charge whose
outcome a later conversion depends on (the one-charge-per-click-and-device rule) is applied before that
conversion is decided, which takes a second `apply_charges` only in a batch that holds both.
"""

from __future__ import annotations

import functools
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

import orjson
from sqlalchemy import Table, bindparam, or_, select, union_all, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from adstack.accounts.models import Account
from adstack.apps import service as apps
from adstack.apps.mapping import MappingRule, resolve_event
from adstack.apps.models import App, EventMapping
from adstack.attribution.adapters import ADAPTERS, ParsedPostback, PartnerVerdict, PostbackError, parse_postback
from adstack.attribution.bulk import insert_rows, update_column
from adstack.attribution.models import Conversion, Postback, PostbackStatus, Touchpoint
from adstack.attribution.rules import (
    CLICK_SPAM_WINDOW,
    DEVICE_FLAGS,
    AttributionType,
    Authority,
    Decision,
    FraudFlag,
    MatchType,
    PriorInstall,
    Touch,
    TouchKind,
    Windows,
    attribute_event,
    attribute_install,
    bounded_time,
    follow_partner,
    own_verdict,
)
from adstack.attribution.service import convert, micros
from adstack.core.errors import DomainError
from adstack.core.timeutil import utcnow
from adstack.core.vocabulary import ConversionEvent, Partner
from adstack.events.models import Event, EventType
from adstack.finance import service as finance
from adstack.finance.service import ChargeRequest
from adstack.tracking.devices import Gaid
from adstack.tracking.tokens import TokenError, verify_click_id

log = logging.getLogger("adstack.attribution")

DEVICE_TOUCH_LIMIT = 100
# The event store's attribution type of a conversion our touch would claim but a fraud flag voids: reports
# keep it under its campaign as flagged, never among the installs, events and revenue our ads brought.
FLAGGED = "flagged"
# Stored rows keep their ids as their order; rows of this batch come after all of them, in receipt order.
_IN_BATCH = 1 << 62
_ATTRIBUTED = frozenset({AttributionType.CLICK.value, AttributionType.VIEW.value})
_ATTRIBUTION_TYPES = {kind.value: kind for kind in AttributionType}
_MATCH_TYPES = {kind.value: kind for kind in MatchType}
_NO_DEVICE = ("", "")
_INSTALL = ConversionEvent.INSTALL.value
_BY_PARTNER, _BY_ADSTACK = Authority.PARTNER.value, Authority.ADSTACK.value

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

    @classmethod
    def of(cls, app: App) -> AppInfo:
        return cls(app.id, app.account_id, app.package_name, app.attribution_authority, windows_for(app),
                   apps.network_names(app))


@dataclass(frozen=True, slots=True)
class Served:
    """Where the conversion's touch was served, for the event store's dimensions: the report's country,
    placement and objective filters keep conversions and CPA charges with their clicks."""

    country: str = ""
    placement_type: str = ""
    objective: str = ""


@dataclass(frozen=True, slots=True)
class _Group:
    """What the CPA decision reads of an ad group."""

    id: int
    account_id: int
    bid_type: str
    bid_micros: int
    conversion_event: str | None


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
    # For the retry check: the postback it came from.
    dedupe_key: str = ""
    fields: dict[str, Any] | None = None
    # Its touch as a rules object: the one decided, for a conversion of this batch; built once from the
    # columns above for a stored one.
    touch: Touch | None = None

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
    status: PostbackStatus = PostbackStatus.ATTRIBUTED
    detail: str = ""
    app: AppInfo | None = None
    parsed: ParsedPostback | None = None
    event: ConversionEvent | None = None
    occurred_at: datetime | None = None
    clamped: bool = False
    forged: bool = False
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
    device_touches: dict[DeviceKey, list[tuple[Touch, str]]] = field(default_factory=lambda: defaultdict(list))
    installs_by_device: dict[tuple[int, DeviceKey], list[Known]] = field(default_factory=lambda: defaultdict(list))
    installs_by_click: dict[tuple[int, str], list[Known]] = field(default_factory=lambda: defaultdict(list))
    charged_by_device: dict[tuple[int, str, DeviceKey], list[Known]] = field(
        default_factory=lambda: defaultdict(list))
    charged_by_click: dict[tuple[int, str, str], list[Known]] = field(default_factory=lambda: defaultdict(list))
    # (app, account, event, source event name, click id, time, device) -> conversions a retry may repeat
    same: dict[tuple[Any, ...], list[Known]] = field(default_factory=lambda: defaultdict(list))
    pending_charges: list[tuple[Item, Any]] = field(default_factory=list)
    verified: dict[str, bool] = field(default_factory=dict)  # click id -> whether it is ours
    # GAID -> its MD5, SHA1 and device keys: an install and its events hash the device once a batch
    device_forms: dict[str, tuple[str | None, str | None, tuple[DeviceKey, ...]]] = field(default_factory=dict)

    def add_install(self, known: Known, keys: Sequence[DeviceKey]) -> None:
        for key in keys:
            self.installs_by_device[(known.app_id, key)].append(known)
        if known.click_id:
            self.installs_by_click[(known.app_id, known.click_id)].append(known)

    def add_charged(self, known: Known, keys: Sequence[DeviceKey]) -> None:
        for key in keys:
            self.charged_by_device[(known.app_id, known.conversion_event, key)].append(known)
        if known.click_id:
            self.charged_by_click[(known.app_id, known.conversion_event, known.click_id)].append(known)


# ---------- reading the batch's world ----------


def _load_apps(session: Session, view: View, app_ids: set[int]) -> None:
    found = {a.id: a for a in session.scalars(select(App).where(App.id.in_(app_ids)))}
    view.apps = {i: AppInfo.of(a) for i, a in found.items() if a.deleted_at is None}
    for m in session.scalars(select(EventMapping).where(EventMapping.app_id.in_(found))
                             .order_by(EventMapping.app_id, EventMapping.position, EventMapping.id)):
        view.rules.setdefault(m.app_id, []).append(MappingRule(m.source_name, ConversionEvent(m.event),
                                                               tuple(m.conditions or ())))
    account_ids = {a.account_id for a in view.apps.values()}
    if account_ids:
        view.currencies = {account_id: currency for account_id, currency in session.execute(
            select(Account.id, Account.currency).where(Account.id.in_(account_ids)))}


def _prepare(view: View, item: Item) -> None:
    """Parse one postback and name its event, device and click id; no database."""
    app = view.apps.get(item.app_id)
    if app is None:
        item.finish(PostbackStatus.FAILED, f"app {item.app_id} does not exist")
        return
    item.app = app
    try:
        parsed = parse_postback(_PARTNERS.get(item.partner) or Partner(item.partner), item.fields, app.networks)
    except PostbackError as exc:  # stored before a parser change; keep it, do not count it
        item.finish(PostbackStatus.FAILED, exc.message)
        return
    item.parsed = parsed
    if parsed.is_install:
        item.event = ConversionEvent.INSTALL
    else:
        item.event = resolve_event(parsed.event_name, parsed.params, view.rules.get(app.id, []))
    if item.event is None:
        item.finish(PostbackStatus.UNMAPPED,
                    f"event {parsed.event_name!r} is not mapped, or its conditions do not hold")
        return
    item.occurred_at, item.clamped = bounded_time(parsed.occurred_at, item.received_at)
    if parsed.click_id:
        genuine = view.verified.get(parsed.click_id)
        if genuine is None:  # an install and its events carry the same click id: verified once a batch
            try:
                verify_click_id(parsed.click_id, view.secret)
                genuine = True
            except TokenError:
                genuine = False
            view.verified[parsed.click_id] = genuine
        if genuine:
            item.click_id = parsed.click_id
        else:
            item.forged = True
    item.gaid = gaid = parsed.gaid
    if gaid is not None:
        forms = view.device_forms.get(gaid.value)
        if forms is None:
            md5, sha1 = gaid.md5, gaid.sha1
            forms = view.device_forms[gaid.value] = (md5, sha1, _row_keys(md5, sha1))
        item.md5, item.sha1, item.keys = forms
        item.device = item.keys[0]


_KINDS = {kind.value: kind for kind in TouchKind}
_PARTNERS = {partner.value: partner for partner in Partner}


def _touch(row: Any, made: dict[tuple[str, str], Touch]) -> Touch:
    """The touch of a row of `_TOUCH_COLUMNS`; one object per touchpoint, however many reads return it."""
    kind, touch_id = row[0], row[1]
    found = made.get((kind, touch_id))
    if found is None:
        found = made[(kind, touch_id)] = Touch(
            kind=_KINDS[kind], touch_id=touch_id, occurred_at=row[2], account_id=row[3], campaign_id=row[4],
            ad_group_id=row[5], creative_id=row[6], ad_space_id=row[7], publisher_id=row[8], country=row[9],
            placement_type=row[10])
    return found


_TOUCHPOINTS = cast(Table, Touchpoint.__table__)
_CONVERSIONS = cast(Table, Conversion.__table__)
_POSTBACKS = cast(Table, Postback.__table__)
_T = _TOUCHPOINTS.c
_TOUCH_COLUMNS = (_T.kind, _T.touch_id, _T.occurred_at, _T.account_id, _T.campaign_id, _T.ad_group_id,
                  _T.creative_id, _T.ad_space_id, _T.publisher_id, _T.country, _T.placement_type, _T.app_package)
_C = _CONVERSIONS.c
_KNOWN_COLUMNS = (_C.id, _C.postback_id, _C.app_id, _C.conversion_event, _C.occurred_at, _C.click_id,
                  _C.attribution_type, _C.match_type, _C.is_reinstall, _C.touch_kind, _C.touch_id, _C.touch_at,
                  _C.account_id, _C.campaign_id, _C.ad_group_id, _C.creative_id, _C.ad_space_id, _C.publisher_id,
                  _C.fraud_flags, _C.charged_micros, _C.gaid_md5, _C.gaid_sha1)


def _known(row: Any, **extra: Any) -> Known:
    return Known(seq=row.id, id=row.id, postback_id=row.postback_id, app_id=row.app_id,
                 conversion_event=row.conversion_event, occurred_at=row.occurred_at, click_id=row.click_id,
                 attribution_type=row.attribution_type, match_type=row.match_type, is_reinstall=row.is_reinstall,
                 touch_kind=row.touch_kind, touch_id=row.touch_id, touch_at=row.touch_at, account_id=row.account_id,
                 campaign_id=row.campaign_id, ad_group_id=row.ad_group_id, creative_id=row.creative_id,
                 ad_space_id=row.ad_space_id, publisher_id=row.publisher_id, fraud_flags=row.fraud_flags or (),
                 charged=row.charged_micros, **extra)


def _in(view: View, params: dict[str, Any], column: Any, name: str, values: Iterable[Any]) -> Any:
    """`column IN values` with the values bound as one list parameter (`finance.member_of`): an expanding IN of
    a batch's thousand device keys costs SQLAlchemy more than the look-up costs the database."""
    params[name] = list(values)
    return finance.member_of(column, name, view.dialect)


def _device_filter(view: View, params: dict[str, Any], columns: Any, items: list[Item]) -> list[Any]:
    md5s = {i.md5 for i in items if i.md5 is not None}
    sha1s = {i.sha1 for i in items if i.gaid is not None and i.md5 is None}
    found = []
    if md5s:
        found.append(_in(view, params, columns.gaid_md5, "p_md5", md5s))
    if sha1s:
        found.append(_in(view, params, columns.gaid_sha1, "p_sha1", sha1s))
    return found


def _load_touches(session: Session, view: View, items: list[Item]) -> None:
    made: dict[tuple[str, str], Touch] = {}
    clicks = {i.click_id for i in items if i.click_id}
    if clicks:
        params: dict[str, Any] = {}
        for row in session.execute(select(*_TOUCH_COLUMNS).where(
                _T.kind == TouchKind.CLICK.value, _in(view, params, _T.touch_id, "p_clicks", clicks)), params):
            view.click_touches[row[1]] = (_touch(row, made), row[11])
    with_device = [i for i in items if i.gaid is not None]
    if not with_device:
        return
    earliest, latest = [], []
    for i in with_device:
        assert i.app is not None and i.occurred_at is not None
        w = i.app.windows
        earliest.append(i.occurred_at - max(w.click_lookback, CLICK_SPAM_WINDOW, w.view_through or timedelta(0)))
        latest.append(i.occurred_at)
    packages = {i.app.package_name for i in with_device if i.app is not None}
    params = {}
    rows = session.execute(select(*_TOUCH_COLUMNS, _T.gaid_md5, _T.gaid_sha1).where(
        or_(*_device_filter(view, params, _T, with_device)), _T.app_package.in_(packages),
        _T.occurred_at >= min(earliest), _T.occurred_at <= max(latest)).order_by(_T.occurred_at.desc()), params)
    for row in rows:
        entry = (_touch(row, made), row[11])
        for key in _row_keys(row[12], row[13]):
            view.device_touches[key].append(entry)


def _load_conversions(session: Session, view: View, items: list[Item]) -> None:
    """The devices' and click ids' installs and charged conversions; then the charges of the click ids those
    installs carry, which a later event is charged under."""
    live = [i for i in items if i.event is not None]
    app_ids = {i.app_id for i in live}
    if not app_ids:
        return
    clicks = {i.click_id for i in live if i.click_id}
    params: dict[str, Any] = {}
    matches = _device_filter(view, params, _C, live)
    if clicks:
        matches.append(_in(view, params, _C.click_id, "p_clicks", clicks))
    seen: set[int] = set()
    if matches:
        # One branch per device form and one for the click ids, each through its (app, key) index: an OR of
        # them makes SQLite read every conversion of the app, a cost that grows with the table.
        wanted = or_(_C.conversion_event == ConversionEvent.INSTALL.value, _C.charged_micros > 0)
        branches = [select(*_KNOWN_COLUMNS).where(_C.app_id.in_(app_ids), wanted, match) for match in matches]
        stmt: Any = union_all(*branches) if len(branches) > 1 else branches[0]
        rows = {row.id: row for row in session.execute(stmt, params)}
        for _, row in sorted(rows.items()):
            seen.add(row.id)
            known, keys = _known(row), _row_keys(row.gaid_md5, row.gaid_sha1)
            if row.conversion_event == ConversionEvent.INSTALL.value:
                view.add_install(known, keys)
            if row.charged_micros > 0:
                view.add_charged(known, keys)
    install_clicks = {k.click_id for rows in view.installs_by_device.values() for k in rows if k.click_id} - clicks
    if install_clicks:
        params = {}
        for row in session.execute(select(*_KNOWN_COLUMNS).where(
                _C.app_id.in_(app_ids), _C.charged_micros > 0,
                _in(view, params, _C.click_id, "p_clicks", install_clicks)).order_by(_C.id), params):
            if row.id not in seen:
                view.add_charged(_known(row), ())  # matched by its click id only


def _load_retried(session: Session, view: View, items: list[Item]) -> None:
    """Conversions stored with the identifying fields of a postback of the batch (partner time, click id as
    sent, device): a retry under another key repeats one of them."""
    timed = [i for i in items if i.event is not None and i.parsed is not None and i.parsed.occurred_at is not None
             and not i.clamped]
    if not timed:
        return
    p = _POSTBACKS.c
    times = {i.occurred_at for i in timed}
    params: dict[str, Any] = {}
    clicks = _in(view, params, _C.click_id, "p_clicks", {i.parsed.click_id for i in timed if i.parsed is not None})

    def branch(*device: Any) -> Any:
        return select(_C.id, _C.postback_id, _C.app_id, _C.account_id, _C.conversion_event, _C.source_event_name,
                      _C.click_id, _C.occurred_at, _C.gaid_md5, _C.gaid_sha1, p.dedupe_key, p.fields) \
            .join(_POSTBACKS, p.id == _C.postback_id) \
            .where(_C.app_id.in_({i.app_id for i in timed}), _C.occurred_at.in_(times), clicks, *device)

    # One branch per device form, so each reads its (app, device, time) index rather than every conversion of
    # the account at that second.
    branches = [branch(term) for term in _device_filter(view, params, _C, timed)]
    if any(i.gaid is None for i in timed):
        branches.append(branch(_C.gaid_md5.is_(None), _C.gaid_sha1.is_(None),
                               _C.account_id.in_({i.app.account_id for i in timed if i.app is not None})))
    stmt: Any = union_all(*branches) if len(branches) > 1 else branches[0]
    seen: set[int] = set()
    for row in session.execute(stmt, params):
        if row.id in seen:
            continue
        seen.add(row.id)
        known = Known(seq=row.id, id=row.id, postback_id=row.postback_id, app_id=row.app_id,
                      conversion_event=row.conversion_event, occurred_at=row.occurred_at, click_id=row.click_id,
                      dedupe_key=row.dedupe_key, fields=row.fields)
        for key in _row_keys(row.gaid_md5, row.gaid_sha1) or (_NO_DEVICE,):
            view.same[(row.app_id, row.account_id, row.conversion_event, row.source_event_name, row.click_id,
                       row.occurred_at, key)].append(known)


def _load_ad_groups(session: Session, view: View) -> None:
    """Every ad group a touch of the batch may name: the CPA decision needs its bid and event."""
    from adstack.campaigns.models import AdGroup

    ids = {t.ad_group_id for t, _ in view.click_touches.values()}
    ids.update(t.ad_group_id for rows in view.device_touches.values() for t, _ in rows)
    ids.update(k.ad_group_id for rows in view.installs_by_device.values() for k in rows)
    ids.update(k.ad_group_id for rows in view.installs_by_click.values() for k in rows)
    ids.discard(0)
    if ids:
        g = cast(Table, AdGroup.__table__).c
        view.ad_groups = {row[0]: _Group(*row) for row in session.execute(
            select(g.id, g.account_id, g.bid_type, g.bid_micros, g.conversion_event).where(g.id.in_(ids)))}


# ---------- deciding, in memory ----------


def _device_touches(view: View, app: AppInfo, device: DeviceKey, until: datetime, windows: Windows) -> list[Touch]:
    """The device's clicks (and impressions, when view-through is on) on this app's ads that may count for a
    conversion at `until`, newest first."""
    click_from = until - max(windows.click_lookback, CLICK_SPAM_WINDOW)
    view_from = until - windows.view_through if windows.view_through is not None else None
    found: list[Touch] = []
    for touch, package in view.device_touches.get(device, ()):
        at = touch.occurred_at
        if at > until or touch.account_id != app.account_id or package != app.package_name:
            continue
        if at >= click_from if touch.kind is TouchKind.CLICK else view_from is not None and at >= view_from:
            found.append(touch)
            if len(found) == DEVICE_TOUCH_LIMIT:
                break
    return found


def _click_touch(view: View, app: AppInfo, click_id: str) -> Touch | None:
    found = view.click_touches.get(click_id)
    if found is None or found[0].account_id != app.account_id or found[1] != app.package_name:
        return None  # a click on another advertiser's or another app's ad does not credit this app
    return found[0]


def _same_conversion(view: View, item: Item) -> Known | None:
    """A conversion recorded from a postback with the same identifying fields (event, click id, device, partner
    time): the partner's retry of it under another dedupe key, e.g. without its event id. Two postbacks that
    both carry a partner event id, different ones, are two conversions."""
    app, parsed, event = item.app, item.parsed, item.event
    assert app is not None and parsed is not None and event is not None
    candidates = view.same.get((app.id, app.account_id, event.value, parsed.event_name[:100], parsed.click_id,
                                item.occurred_at, item.device))
    if not candidates:
        return None
    mine = parsed.dedupe_key
    for known in sorted(candidates, key=lambda k: k.seq)[:20]:
        if known.postback_id == item.id:
            continue
        if ":id:" in mine and ":id:" in known.dedupe_key and known.dedupe_key != mine:
            continue
        adapter = ADAPTERS.get(Partner(item.partner))
        if parsed.event_params and adapter is not None \
                and adapter.event_params(known.fields or {}) != parsed.event_params:
            continue
        return known
    return None


def _install_for_event(view: View, item: Item, at: datetime) -> Known | None:
    if item.gaid is not None:
        found = _latest(k for k in view.installs_by_device.get((item.app_id, item.device), ()) if k.occurred_at <= at)
        if found is not None:
            return found
    if item.click_id:
        return _latest(view.installs_by_click.get((item.app_id, item.click_id), ()))
    return None


def _device_flags(view: View, item: Item) -> tuple[FraudFlag, ...]:
    """Fraud flags any install of this device (or of this click) carries: the flag travels with the device."""
    installs: list[Known] = []
    if item.gaid is not None:
        installs.extend(view.installs_by_device.get((item.app_id, item.device), ()))
    if item.click_id:
        installs.extend(view.installs_by_click.get((item.app_id, item.click_id), ()))
    if not any(k.fraud_flags for k in installs):  # the usual case
        return ()
    rows = {k.seq: k for k in installs}
    found: dict[FraudFlag, None] = {}
    for seq in sorted(rows):
        for flag in rows[seq].fraud_flags or ():
            if flag in DEVICE_FLAGS:
                found[FraudFlag(flag)] = None
    return tuple(found)


def _charged_before(view: View, item: Item, click_id: str, device: DeviceKey, at: datetime,
                    window: timedelta) -> list[Known]:
    """Conversions charged for this click id and event, or for this device and app within the re-attribution
    window, whatever postback they came in (their charge may still be pending)."""
    event = item.event
    assert event is not None
    found: list[Known] = []
    if click_id:
        found.extend(view.charged_by_click.get((item.app_id, event.value, click_id), ()))
    charged = view.charged_by_device.get((item.app_id, event.value, device), ()) if device != _NO_DEVICE else ()
    if charged:
        earliest, latest = at - window, at + window
        found.extend(k for k in charged if earliest <= k.occurred_at <= latest)
    return [k for k in found if k.charged is None or k.charged > 0]


def charge_anchor(click_id: str, device: DeviceKey, postback_id: int) -> str:
    """What a CPA charge is charged once for: the click id, else the device (its MD5 or SHA1 form), else the
    postback."""
    if click_id:
        return f"c{click_id}"
    if device != _NO_DEVICE:
        return f"d{device[1]}"
    return f"pb{postback_id}"


def cpa_charge_id(ad_group_id: int, anchor: str, event: ConversionEvent) -> str:
    return f"cpa:{ad_group_id}:{anchor}:{event.value}"[:120]


def _decide(session: Session, view: View, item: Item, position: int) -> None:
    """Attribute one postback against the view, record its conversion there and queue its CPA charge."""
    app, parsed, event, occurred_at = item.app, item.parsed, item.event, item.occurred_at
    assert app is not None and parsed is not None and event is not None and occurred_at is not None
    data_flags = [f"unreadable:{name}:{rule}" for name, rule in parsed.unreadable.items()]
    data_flags.extend(parsed.notes)
    if item.clamped:
        data_flags.append("future_time_clamped")
    windows = app.windows
    if parsed.occurred_at is not None and not item.clamped:
        same = _same_conversion(view, item)
        if same is not None:
            item.finish(PostbackStatus.DUPLICATE,
                        f"the conversion of postback {same.postback_id}, retried under another key")
            return

    forged, gaid, click_id = item.forged, item.gaid, item.click_id
    touch_by_click = _click_touch(view, app, click_id) if click_id else None
    install: Known | None = None
    touches: list[Touch] = []
    if event is ConversionEvent.INSTALL:
        prior = _latest(k for k in view.installs_by_device.get((app.id, item.device), ())
                        if k.occurred_at <= occurred_at and not k.is_reinstall) if gaid is not None else None
        touches = _device_touches(view, app, item.device, occurred_at, windows) if gaid is not None else []
        own: Decision = attribute_install(
            installed_at=occurred_at, windows=windows, touch_by_click_id=touch_by_click,
            device_clicks=[t for t in touches if t.kind is TouchKind.CLICK],
            device_impressions=[t for t in touches if t.kind is TouchKind.IMPRESSION],
            prior_install=prior.prior() if prior is not None else None, forged_click_id=forged)
    else:
        install = _install_for_event(view, item, occurred_at)
        own = attribute_event(occurred_at=occurred_at, windows=windows,
                              install=install.prior() if install is not None else None,
                              touch_by_click_id=touch_by_click, forged_click_id=forged)

    decision = own
    partner_says = parsed.verdict.value if parsed.verdict is not None else ""
    follows_partner = bool(partner_says) and app.attribution_authority != _BY_ADSTACK
    if follows_partner:
        if not touches and gaid is not None and parsed.verdict is PartnerVerdict.ATTRIBUTED and not own.attributed:
            touches = _device_touches(view, app, item.device, occurred_at, windows)
        decision = follow_partner(verdict=partner_says, own=own, occurred_at=occurred_at,
                                  is_install=event is ConversionEvent.INSTALL, touch_by_click_id=touch_by_click,
                                  device_touches=touches, partner_touch_type=parsed.touch_type)
    if event is not ConversionEvent.INSTALL:
        inherited = _device_flags(view, item)
        if inherited:
            decision = Decision(decision.attribution_type, decision.match_type, decision.touch,
                                decision.click_to_install, decision.reinstall,
                                tuple(dict.fromkeys((*decision.fraud_flags, *inherited))))
    if item.clamped and decision.click_to_install is not None:
        # Measured to the receipt, which no install can follow: an upper bound of the real time.
        data_flags.append("click_to_install_to_receipt")
    ours = own_verdict(own)
    disagree = None if not partner_says else (partner_says == PartnerVerdict.ATTRIBUTED.value) != (
        ours == "attributed")

    currency = view.currencies.get(app.account_id, "USD")
    revenue_micros = revenue_usd_micros = 0
    detail = "; ".join(data_flags)
    if parsed.revenue is not None:
        in_account = convert(parsed.revenue, parsed.currency, currency, view.rates) if parsed.currency else None
        in_usd = in_account if currency == "USD" else \
            convert(parsed.revenue, parsed.currency, "USD", view.rates) if parsed.currency else None
        if in_account is None or in_usd is None:
            detail = "; ".join([*data_flags, f"no FX rate for {parsed.currency or 'an unreadable currency'}; "
                                             "revenue kept as sent"])
        else:
            revenue_micros = micros(in_account)
            revenue_usd_micros = revenue_micros if in_usd is in_account else micros(in_usd)

    touch = decision.touch
    fraud = [f.value for f in decision.fraud_flags]
    if touch is not None:
        touch_kind, touch_id, touch_at = touch.kind.value, touch.touch_id, touch.occurred_at
        campaign_id, ad_group_id, creative_id = touch.campaign_id, touch.ad_group_id, touch.creative_id
        ad_space_id, publisher_id = touch.ad_space_id, touch.publisher_id
    else:
        touch_kind, touch_id, touch_at = "", "", None
        campaign_id = ad_group_id = creative_id = ad_space_id = publisher_id = 0
    event_name = event.value
    attribution_type, match_type = decision.attribution_type.value, decision.match_type.value
    row: dict[str, Any] = {
        "postback_id": item.id, "app_id": app.id, "account_id": app.account_id, "partner": item.partner,
        "conversion_event": event_name, "source_event_name": parsed.event_name[:100],
        "attribution_type": attribution_type, "match_type": match_type,
        "partner_attributed": parsed.partner_attributed, "partner_verdict": partner_says, "own_verdict": ours,
        "verdict_source": _BY_PARTNER if follows_partner else _BY_ADSTACK,
        "verdict_reason": parsed.verdict_reason[:200], "verdicts_disagree": disagree,
        "is_reinstall": decision.reinstall, "install_conversion_id": install.id if install is not None else None,
        "touch_kind": touch_kind, "touch_id": touch_id, "touch_at": touch_at, "campaign_id": campaign_id,
        "ad_group_id": ad_group_id, "creative_id": creative_id, "ad_space_id": ad_space_id,
        "publisher_id": publisher_id,
        "click_id": click_id, "gaid_md5": item.md5, "gaid_sha1": item.sha1,
        "click_to_install_seconds": int(decision.click_to_install.total_seconds())
        if decision.click_to_install is not None else None,
        "fraud_flags": fraud, "data_flags": data_flags,
        "revenue": "" if parsed.revenue is None else format(parsed.revenue, "f")[:40],
        "currency": parsed.currency[:3], "revenue_micros": revenue_micros, "revenue_usd_micros": revenue_usd_micros,
        "charged_micros": 0, "occurred_at": occurred_at, "received_at": item.received_at,
    }
    known = Known(seq=_IN_BATCH + position, postback_id=item.id, app_id=app.id, conversion_event=event_name,
                  occurred_at=occurred_at, click_id=click_id, attribution_type=attribution_type,
                  match_type=match_type, is_reinstall=decision.reinstall, touch_kind=touch_kind, touch_id=touch_id,
                  touch_at=touch_at, account_id=app.account_id, campaign_id=campaign_id, ad_group_id=ad_group_id,
                  creative_id=creative_id, ad_space_id=ad_space_id, publisher_id=publisher_id, fraud_flags=fraud,
                  dedupe_key=item.dedupe_key, fields=item.fields, touch=touch)
    item.row, item.known, item.install, item.touch = row, known, install, touch

    billable = decision.attributed and not decision.reinstall and not decision.fraud_flags and touch is not None
    if billable:
        assert touch is not None
        # An event after a known install is charged under the install's click id.
        charge_click = click_id if event is ConversionEvent.INSTALL or install is None else install.click_id
        before = _charged_before(view, item, charge_click, item.device, occurred_at, windows.reattribution)
        if any(k.charged is None for k in before):
            apply_pending(session, view)  # its outcome decides this one, as if charged one by one
            before = [k for k in before if k.charged]
        if before:
            detail = "; ".join([*([detail] if detail else []), "already charged for this click or device"])
        else:
            _request_charge(view, item, known, touch, event, charge_anchor(charge_click, item.device, item.id))
    item.detail = detail
    _remember(view, item, known)


def _remember(view: View, item: Item, known: Known) -> None:
    """What later postbacks of the batch read, as the database would show them this conversion."""
    same_key = (known.app_id, known.account_id, known.conversion_event, item.row["source_event_name"]
                if item.row else "", known.click_id, known.occurred_at)
    for key in item.keys or (_NO_DEVICE,):
        view.same[(*same_key, key)].append(known)
    if known.conversion_event == _INSTALL:
        view.add_install(known, item.keys)
    if known.charged is None:
        view.add_charged(known, item.keys)


def _request_charge(view: View, item: Item, known: Known, touch: Touch, event: ConversionEvent,
                    anchor: str) -> None:
    """Queue the ad group's CPA bid once per install lifetime and event, when this is its chosen event."""
    group = view.ad_groups.get(touch.ad_group_id)
    if group is None or group.bid_type != "cpa" or group.conversion_event != event.value:
        return
    if group.bid_micros <= 0 or group.account_id != known.account_id or known.account_id not in view.currencies:
        # apply_charges would refuse the whole batch for it
        log.warning("CPA charge for conversion of postback %s refused: ad group %s cannot charge account %s "
                    "%s micros", item.id, group.id, known.account_id, group.bid_micros)
        return
    item.charge_id = cpa_charge_id(group.id, anchor, event)
    known.charged = None
    view.pending_charges.append((item, ChargeRequest(
        item.charge_id, known.account_id, touch.campaign_id, group.id, touch.creative_id, group.bid_micros, "cpa",
        item.received_at)))  # charged on the day it is received


def apply_pending(session: Session, view: View) -> None:
    """Apply the queued CPA charges, in order, in one `apply_charges`; only the amounts are read back, so the
    ledger entries are written without returning their ids."""
    queued, view.pending_charges = view.pending_charges, []
    if not queued:
        return
    requests = [request for _, request in queued]
    try:
        with session.begin_nested():
            charged = [r.charged_micros if r.applied else 0 for r in finance.apply_charges(
                session, requests, with_entry_ids=False)]
    except DomainError:  # one charge it refuses must not refuse the others: charge them one by one
        charged = []
        for item, request in queued:
            try:
                with session.begin_nested():
                    result = finance.apply_charges(session, [request], with_entry_ids=False)[0]
                charged.append(result.charged_micros if result.applied else 0)
            except DomainError as exc:
                log.warning("CPA charge for conversion of postback %s refused: %s", item.id, exc.message)
                charged.append(0)
    for (item, _), amount in zip(queued, charged, strict=True):
        assert item.known is not None and item.row is not None
        item.known.charged = amount
        item.row["charged_micros"] = amount


# ---------- writing ----------


def _served(session: Session, items: list[Item]) -> dict[int, Served]:
    """Country, placement and objective of each decided touch: one read of the touchpoints an install row only
    names, one of the campaigns."""
    from adstack.campaigns.models import Campaign

    decided = [i for i in items if i.touch is not None]
    missing = {(i.touch.kind.value, i.touch.touch_id) for i in decided if i.touch is not None
               and not i.touch.country and not i.touch.placement_type}
    places: dict[tuple[str, str], tuple[str, str]] = {}
    if missing:
        # kind as well as id, so the read goes through the touchpoints' (kind, touch id) index
        for row in session.execute(select(_T.kind, _T.touch_id, _T.country, _T.placement_type).where(
                _T.kind.in_({kind for kind, _ in missing}), _T.touch_id.in_({touch for _, touch in missing}))):
            places[(row.kind, row.touch_id)] = (row.country, row.placement_type)
    objectives: dict[int, str] = {}
    campaign_ids = {i.touch.campaign_id for i in decided if i.touch is not None}
    if campaign_ids:
        c = cast(Table, Campaign.__table__).c
        objectives = {campaign_id: objective for campaign_id, objective in session.execute(
            select(c.id, c.objective).where(c.id.in_(campaign_ids)))}
    served: dict[int, Served] = {}
    shared: dict[tuple[str, str, str], Served] = {}  # one per place: a batch has few
    for i in decided:
        touch = i.touch
        assert touch is not None
        country, placement = touch.country, touch.placement_type
        if not country and not placement:  # a touch rebuilt from an install row: the touchpoint's own
            country, placement = places.get((touch.kind.value, touch.touch_id), ("", ""))
        where = (country, placement, objectives.get(touch.campaign_id) or "")
        found = shared.get(where)
        if found is None:
            found = shared[where] = Served(*where)
        served[i.id] = found
    return served


@functools.lru_cache(maxsize=4096)
def _milliseconds(moment: datetime) -> str:
    """A time as the event store's attrs keep it; an install's time is written for it and for each of its events."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def charge_event_record(row: dict[str, Any], charge_id: str, served: Served = Served()) -> Event:
    """The CPA charge in the event store under the charge's own id, so reported cost is the ledger's."""
    return Event(event_id=f"charge:{charge_id}", event_type=EventType.CHARGE,
                 occurred_at=row["received_at"] or row["occurred_at"],
                 account_id=row["account_id"], campaign_id=row["campaign_id"], ad_group_id=row["ad_group_id"],
                 creative_id=row["creative_id"], ad_space_id=row["ad_space_id"], publisher_id=row["publisher_id"],
                 placement_type=served.placement_type, country=served.country, objective=served.objective,
                 conversion_event=row["conversion_event"], cost_micros=row["charged_micros"], attrs={"kind": "cpa"})


def conversion_event_record(app: AppInfo, row: dict[str, Any], device_hash: int, served: Served = Served(),
                            install_at: datetime | None = None) -> Event:
    """`device_hash`: `Gaid.device_hash`, 0 without a device. `install_at`: when the device installed (the
    conversion's own time for an install), for D0/D7 cohorts."""
    attrs = {"match_type": row["match_type"], "source_event": row["source_event_name"],
             "revenue_usd_micros": str(row["revenue_usd_micros"]), "currency": row["currency"],
             "partner_verdict": row["partner_verdict"], "own_verdict": row["own_verdict"],
             "verdict_reason": row["verdict_reason"], "verdict_source": row["verdict_source"]}
    is_install = row["conversion_event"] == _INSTALL
    if is_install:
        install_at = row["occurred_at"]
    if install_at is not None:
        attrs["install_at"] = _milliseconds(install_at)
    if row["data_flags"]:
        attrs["data_flags"] = ",".join(row["data_flags"])
    attribution_type = row["attribution_type"]
    if row["fraud_flags"]:
        attrs["fraud_flags"] = ",".join(row["fraud_flags"])
        if attribution_type in (AttributionType.CLICK.value, AttributionType.VIEW.value):
            attrs["attributed_as"] = attribution_type
            attribution_type = FLAGGED
    if row["click_to_install_seconds"] is not None:
        attrs["click_to_install_seconds"] = str(row["click_to_install_seconds"])
    return Event(
        event_id=f"conversion:{row['postback_id']}",
        event_type=EventType.INSTALL if is_install else EventType.IN_APP_EVENT,
        occurred_at=row["occurred_at"], account_id=row["account_id"], campaign_id=row["campaign_id"],
        ad_group_id=row["ad_group_id"], creative_id=row["creative_id"], ad_space_id=row["ad_space_id"],
        publisher_id=row["publisher_id"], placement_type=served.placement_type, country=served.country,
        objective=served.objective, app_package=app.package_name, device_hash=device_hash,
        conversion_event=row["conversion_event"], attribution_type=attribution_type, partner=row["partner"],
        revenue_micros=row["revenue_micros"], attrs=attrs,
    )


def _insert_conversions(session: Session, view: View, items: list[Item]) -> None:
    decided = [i for i in items if i.row is not None]
    if not decided:
        return
    # A plain executemany, then the ids by postback: cheaper than RETURNING over many rows.
    insert_rows(session.connection(), _CONVERSIONS, [i.row for i in decided if i.row is not None],
                {"created_at": utcnow()})
    params: dict[str, Any] = {}
    ids = {postback_id: conversion_id for postback_id, conversion_id in session.execute(
        select(_C.postback_id, _C.id).where(_in(view, params, _C.postback_id, "p_postbacks",
                                                [i.id for i in decided])), params)}
    for i in decided:
        assert i.known is not None
        i.known.id = ids[i.id]
    # An event that follows an install of this batch learns the install's id only now.
    update_column(session.connection(), _CONVERSIONS, "install_conversion_id",
                  [(i.known.id, i.install.id) for i in decided
                   if i.install is not None and i.install.seq >= _IN_BATCH and i.known is not None])


def _fields(stored: str | dict[str, Any] | None) -> dict[str, Any]:
    """A postback's fields, read as JSON text or already read."""
    if isinstance(stored, str):
        stored = orjson.loads(stored)
    return stored if isinstance(stored, dict) else {}


def attribute(session: Session, *, secret: bytes, rates: dict[str, Decimal], postbacks: Sequence[Sequence[Any]]
              ) -> tuple[list[Item], list[Event]]:
    """Decide and write the conversions and CPA charges of claimed postbacks (in receipt order; each row is id,
    app id, partner, dedupe key, fields and receipt time); returns each postback's status and detail, for the
    caller to write, and the event-store records."""
    view = View(secret=secret, rates=rates, dialect=session.get_bind().dialect.name)
    items = [Item(pid, app_id, partner, key, _fields(fields), received)
             for pid, app_id, partner, key, fields, received in postbacks]
    _load_apps(session, view, {i.app_id for i in items})
    for item in items:
        try:
            _prepare(view, item)
        except Exception as exc:  # one bad postback must not hold back the rest
            log.exception("attributing postback %s failed", item.id)
            item.finish(PostbackStatus.FAILED, f"attribution failed: {exc}")
            item.event = None
    live = [i for i in items if i.event is not None and i.status is PostbackStatus.ATTRIBUTED]
    _load_touches(session, view, live)
    _load_conversions(session, view, live)
    _load_retried(session, view, live)
    _load_ad_groups(session, view)
    for position, item in enumerate(live):
        try:
            _decide(session, view, item, position)
        except SQLAlchemyError:
            raise  # the batch's writes are at stake: the caller attributes its postbacks one by one
        except Exception as exc:  # one bad postback must not hold back the rest
            log.exception("attributing postback %s failed", item.id)
            item.finish(PostbackStatus.FAILED, f"attribution failed: {exc}")
            item.row = item.known = item.touch = None
            view.pending_charges = [(i, r) for i, r in view.pending_charges if i is not item]
    apply_pending(session, view)
    _insert_conversions(session, view, items)

    served = _served(session, items)
    events: list[Event] = []
    hashes: dict[DeviceKey, int] = {}  # a device's install and its events: hashed once
    nowhere = Served()
    for item in items:
        row = item.row
        if row is None or item.app is None:
            continue
        where = served.get(item.id, nowhere)
        if row["charged_micros"] > 0:
            events.append(charge_event_record(row, item.charge_id, where))
        if not row["is_reinstall"]:
            device_hash = 0
            if item.gaid is not None:
                device_hash = hashes.get(item.device, -1)
                if device_hash < 0:
                    device_hash = hashes[item.device] = item.gaid.device_hash
            events.append(conversion_event_record(item.app, row, device_hash, where,
                                                  install_at=item.install.occurred_at if item.install else None))
    return items, events


def write_statuses(session: Session, statuses: dict[int, tuple[PostbackStatus, str]]) -> None:
    """One UPDATE per status and detail shared by several postbacks (most of a batch is "attributed", no
    detail), one executemany for the rest: per-row parameters cost more than the update itself."""
    if not statuses:
        return
    p = _POSTBACKS.c
    now = utcnow()
    dialect = session.get_bind().dialect.name
    groups: dict[tuple[PostbackStatus, str], list[int]] = defaultdict(list)
    for pid, (status, detail) in statuses.items():
        groups[(status, detail[:500])].append(pid)
    single = []
    for (status, detail), ids in groups.items():
        if len(ids) == 1:
            single.append({"p_id": ids[0], "p_status": status.value, "p_detail": detail})
        else:
            session.execute(update(_POSTBACKS).where(finance.member_of(p.id, "p_ids", dialect))
                            .values(status=status.value, detail=detail, processed_at=now), {"p_ids": ids})
    if single:
        session.execute(update(_POSTBACKS).where(p.id == bindparam("p_id"))
                        .values(status=bindparam("p_status"), detail=bindparam("p_detail"), processed_at=now),
                        single)
