"""Touchpoints, the postback inbox, attribution of installs and in-app events, CPA billing and the FX table.

A postback is answered 200 as soon as it is committed to the `postbacks` inbox (unique per app and dedupe
key, so a retry is stored once). Attribution runs afterwards, from the inbox, in receipt order: each
postback is claimed inside the transaction that records its conversion, its CPA charge and marks it done,
so a crash at any point leaves it either untouched (and processed again) or completely processed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy import Connection, Table, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from adstack.accounts.models import Account, Principal
from adstack.accounts.service import visible_account_ids
from adstack.apps import service as apps
from adstack.apps.mapping import MappingRule, resolve_event
from adstack.apps.models import App
from adstack.attribution.adapters import (
    ADAPTERS,
    ParsedPostback,
    PartnerVerdict,
    PostbackError,
    parse_postback,
)
from adstack.attribution.models import (
    Conversion,
    FxRate,
    Postback,
    PostbackStatus,
    RejectedPostback,
    Touchpoint,
)
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
from adstack.core.errors import DomainError, NotFound
from adstack.core.money import MICROS_PER_UNIT
from adstack.core.timeutil import utcnow
from adstack.core.vocabulary import ConversionEvent, Partner
from adstack.events.models import Event, EventType
from adstack.tracking.devices import Gaid
from adstack.tracking.tokens import TokenError, verify_click_id

log = logging.getLogger("adstack.attribution")

PROCESS_BATCH = 200
DEVICE_TOUCH_LIMIT = 100

# Units per US dollar; operators edit them at /api/v1/fx-rates.
DEFAULT_FX_RATES: dict[str, str] = {
    "USD": "1", "CNY": "7.20", "INR": "83.00", "EUR": "0.92", "GBP": "0.79", "JPY": "150.0", "KRW": "1350",
    "RUB": "90.0", "IDR": "15700", "BRL": "5.00", "MXN": "17.00", "TRY": "32.0", "VND": "24500", "THB": "36.0",
    "PHP": "56.0", "MYR": "4.70", "SGD": "1.35", "HKD": "7.80", "TWD": "32.0", "AED": "3.6725", "SAR": "3.75",
    "EGP": "47.0", "PKR": "278", "BDT": "110", "NGN": "1500", "ZAR": "18.5", "UAH": "39.0", "KZT": "450",
    "PLN": "4.00", "CAD": "1.36", "AUD": "1.52",
}


def seed(session: Session) -> None:
    """Insert the default FX rates once per currency; an operator's later edits are kept."""
    known = set(session.scalars(select(FxRate.currency)))
    for currency, rate in DEFAULT_FX_RATES.items():
        if currency not in known:
            session.add(FxRate(currency=currency, units_per_usd=Decimal(rate)))
    session.flush()


# ---------- insert-once plumbing ----------


def insert_once(session: Session, table: Table, values: dict[str, Any]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; True when the row is new."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # RETURNING rather than rowcount: drivers disagree on the rowcount of an insert that did nothing.
    inserted = session.execute(insert(table).values(**values).on_conflict_do_nothing()
                               .returning(table.c.id)).first()
    return inserted is not None


# ---------- FX ----------


def fx_rates(session: Session) -> dict[str, Decimal]:
    return {row.currency: Decimal(row.units_per_usd) for row in session.scalars(select(FxRate))}


def convert(amount: Decimal, source: str, target: str, rates: dict[str, Decimal]) -> Decimal | None:
    if source == target:
        return amount
    if source not in rates or target not in rates or rates[source] <= 0:
        return None
    return amount / rates[source] * rates[target]


def micros(amount: Decimal) -> int:
    return int((amount * MICROS_PER_UNIT).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def list_fx_rates(session: Session) -> list[FxRate]:
    return list(session.scalars(select(FxRate).order_by(FxRate.currency)))


def set_fx_rate(session: Session, principal: Principal, currency: str, units_per_usd: Decimal) -> FxRate:
    from adstack.oplog import service as oplog

    row = session.get(FxRate, currency)
    before = {"units_per_usd": row.units_per_usd} if row else None
    if row is None:
        row = FxRate(currency=currency, units_per_usd=units_per_usd)
        session.add(row)
    else:
        row.units_per_usd = units_per_usd
        row.updated_at = utcnow()
    session.flush()
    oplog.record(session, actor=principal, operation="update", object_type="fx_rate", object_id=None,
                 object_name=currency, before=before, after={"units_per_usd": units_per_usd})
    return row


# ---------- touchpoints ----------


def record_touch(session: Session, *, kind: TouchKind, touch_id: str, impression_id: str, account_id: int,
                 campaign_id: int, ad_group_id: int, creative_id: int, ad_space_id: int, publisher_id: int,
                 bid_type: str, price_micros: int, country: str, placement_type: str, app_package: str,
                 gaid: Gaid | None, occurred_at: datetime) -> bool:
    """Store a click or an impression once per id; True the first time."""
    return insert_once(session, Touchpoint.__table__, {  # type: ignore[arg-type]
        "kind": kind.value, "touch_id": touch_id, "impression_id": impression_id, "account_id": account_id,
        "campaign_id": campaign_id, "ad_group_id": ad_group_id, "creative_id": creative_id,
        "ad_space_id": ad_space_id, "publisher_id": publisher_id, "bid_type": bid_type,
        "price_micros": price_micros, "country": country[:2], "placement_type": placement_type[:32],
        "app_package": app_package[:255], "gaid_md5": gaid.md5 if gaid else None,
        "gaid_sha1": gaid.sha1 if gaid else None, "occurred_at": occurred_at,
    })


def _touch(row: Touchpoint) -> Touch:
    return Touch(kind=TouchKind(row.kind), touch_id=row.touch_id, occurred_at=row.occurred_at,
                 account_id=row.account_id, campaign_id=row.campaign_id, ad_group_id=row.ad_group_id,
                 creative_id=row.creative_id, ad_space_id=row.ad_space_id, publisher_id=row.publisher_id,
                 country=row.country, placement_type=row.placement_type)


def _device_condition(columns: Any, gaid: Gaid) -> ColumnElement[bool]:
    if gaid.md5 is not None:
        return columns.gaid_md5 == gaid.md5
    return columns.gaid_sha1 == gaid.sha1


def device_touches(session: Session, app: App, gaid: Gaid, *, until: datetime, windows: Windows) -> list[Touch]:
    """The device's clicks (and impressions, when view-through is on) on this app's ads that may count for a
    conversion at `until`, newest first, in one query."""
    click_window = max(windows.click_lookback, CLICK_SPAM_WINDOW)
    eligible = (Touchpoint.kind == TouchKind.CLICK.value) & (Touchpoint.occurred_at >= until - click_window)
    if windows.view_through is not None:
        eligible = eligible | ((Touchpoint.kind == TouchKind.IMPRESSION.value)
                               & (Touchpoint.occurred_at >= until - windows.view_through))
    rows = session.scalars(
        select(Touchpoint).where(
            _device_condition(Touchpoint, gaid), eligible, Touchpoint.occurred_at <= until,
            Touchpoint.account_id == app.account_id, Touchpoint.app_package == app.package_name,
        ).order_by(Touchpoint.occurred_at.desc()).limit(DEVICE_TOUCH_LIMIT))
    return [_touch(r) for r in rows]


def click_touch(session: Session, app: App, click_id: str) -> Touch | None:
    row = session.scalar(select(Touchpoint).where(Touchpoint.kind == TouchKind.CLICK.value,
                                                  Touchpoint.touch_id == click_id))
    if row is None or row.account_id != app.account_id or row.app_package != app.package_name:
        return None  # a click on another advertiser's or another app's ad does not credit this app
    return _touch(row)


# ---------- receiving ----------


@dataclass(frozen=True)
class IncomingPostback:
    app_id: int
    partner: Partner
    dedupe_key: str
    method: str
    fields: dict[str, str]
    received_at: datetime


def accept_postbacks(connection: Connection, postbacks: list[IncomingPostback]) -> list[bool]:
    """Store postbacks once per (app, dedupe key) with one statement; the caller commits. For each, True
    when it is new (the first of equal ones in the list is the new one)."""
    if not postbacks:
        return []
    dialect = connection.dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = Postback.__table__
    rows = [{"app_id": p.app_id, "partner": p.partner.value, "dedupe_key": p.dedupe_key, "method": p.method,
             "fields": p.fields, "status": PostbackStatus.PENDING.value, "detail": "", "received_at": p.received_at}
            for p in postbacks]
    stored = {(row.app_id, row.dedupe_key) for row in connection.execute(
        insert(table).values(rows).on_conflict_do_nothing()  # type: ignore[arg-type]
        .returning(table.c.app_id, table.c.dedupe_key))}
    new: list[bool] = []
    for p in postbacks:
        key = (p.app_id, p.dedupe_key)
        new.append(key in stored)
        stored.discard(key)
    return new


def accept_postback(session: Session, *, app_id: int, partner: Partner, parsed: ParsedPostback, method: str,
                    fields: dict[str, str], received_at: datetime) -> bool:
    """Store one postback once per (app, dedupe key); the caller commits. True when it is new."""
    return accept_postbacks(session.connection(), [IncomingPostback(app_id, partner, parsed.dedupe_key, method,
                                                                    fields, received_at)])[0]


def reject_postback(session: Session, *, partner: str, reason: str, message: str, method: str, query: str,
                    content_type: str, body: bytes, client_ip: str) -> RejectedPostback:
    def text(value: str, limit: int) -> str:  # kept readable; PostgreSQL text cannot hold NUL
        return value.replace("\x00", "\\x00")[:limit]

    row = RejectedPostback(partner=text(partner, 40), reason=text(reason, 40), message=text(message, 500),
                           method=text(method, 8), query=text(query, 8000), content_type=text(content_type, 200),
                           body=text(body[:8000].decode("utf-8", "replace"), 8000), client_ip=text(client_ip, 64))
    session.add(row)
    return row


def identify_app(session: Session, *, secret: bytes, partner: Partner, parsed: ParsedPostback) -> int | None:
    """The app of a postback URL without `app` (the integration guide's AppMetrica URL carries only the click id
    and the GAID): from our signed click id, else from the package and the device's touches. None when nothing
    names one app."""
    if parsed.click_id:
        try:
            verify_click_id(parsed.click_id, secret)
        except TokenError:
            pass
        else:
            row = session.scalar(select(Touchpoint).where(Touchpoint.kind == TouchKind.CLICK.value,
                                                          Touchpoint.touch_id == parsed.click_id))
            if row is not None and row.app_package:
                app = apps.app_for_package(session, row.account_id, row.app_package)
                if app is not None:
                    return app.id
    stmt = select(App).where(App.deleted_at.is_(None), App.partner == partner.value)
    if parsed.package:
        stmt = stmt.where(App.package_name == parsed.package)
    candidates = {(a.account_id, a.package_name): a for a in session.scalars(stmt.limit(1000))}
    if parsed.gaid is not None and candidates:
        packages = {package for _, package in candidates}
        for touch in session.scalars(select(Touchpoint).where(
                _device_condition(Touchpoint, parsed.gaid), Touchpoint.app_package.in_(packages))
                .order_by(Touchpoint.occurred_at.desc()).limit(DEVICE_TOUCH_LIMIT)):
            app = candidates.get((touch.account_id, touch.app_package))
            if app is not None:
                return app.id
    if parsed.package and len(candidates) == 1:
        return next(iter(candidates.values())).id
    return None


# ---------- attribution ----------


def windows_for(app: App) -> Windows:
    return Windows(
        click_lookback=timedelta(days=app.click_lookback_days),
        view_through=timedelta(hours=app.view_through_hours) if app.view_through_enabled else None,
        reattribution=timedelta(days=app.reattribution_window_days),
        event_window=timedelta(days=app.event_window_days) if app.event_window_days else None,
    )


def _prior(row: Conversion) -> PriorInstall:
    touch = None
    if row.attribution_type in (AttributionType.CLICK, AttributionType.VIEW) and row.touch_at is not None:
        touch = Touch(kind=TouchKind(row.touch_kind), touch_id=row.touch_id, occurred_at=row.touch_at,
                      account_id=row.account_id, campaign_id=row.campaign_id, ad_group_id=row.ad_group_id,
                      creative_id=row.creative_id, ad_space_id=row.ad_space_id, publisher_id=row.publisher_id)
    return PriorInstall(installed_at=row.occurred_at, attribution_type=AttributionType(row.attribution_type),
                        match_type=MatchType(row.match_type), touch=touch, conversion_id=row.id)


def _installs(app: App) -> Any:
    return select(Conversion).where(Conversion.app_id == app.id,
                                    Conversion.conversion_event == ConversionEvent.INSTALL.value)


def original_install_before(session: Session, app: App, gaid: Gaid, at: datetime) -> Conversion | None:
    """The device's latest first-time install (not a reinstall) of this app up to `at`."""
    return session.scalar(_installs(app).where(_device_condition(Conversion, gaid), Conversion.occurred_at <= at,
                                               Conversion.is_reinstall.is_(False))
                          .order_by(Conversion.occurred_at.desc(), Conversion.id.desc()).limit(1))


def install_for_event(session: Session, app: App, gaid: Gaid | None, click_id: str,
                      at: datetime) -> Conversion | None:
    if gaid is not None:
        row = session.scalar(_installs(app).where(_device_condition(Conversion, gaid), Conversion.occurred_at <= at)
                             .order_by(Conversion.occurred_at.desc(), Conversion.id.desc()).limit(1))
        if row is not None:
            return row
    if click_id:
        return session.scalar(_installs(app).where(Conversion.click_id == click_id)
                              .order_by(Conversion.occurred_at.desc(), Conversion.id.desc()).limit(1))
    return None


@dataclass
class BatchContext:
    """What one processing batch looks up once: apps, their rules, accounts' currencies, FX rates."""

    secret: bytes
    rates: dict[str, Decimal]
    apps: dict[int, App | None] = field(default_factory=dict)
    rules: dict[int, list[MappingRule]] = field(default_factory=dict)
    currencies: dict[int, str] = field(default_factory=dict)
    objectives: dict[int, str] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)


def _app(session: Session, ctx: BatchContext, app_id: int) -> App | None:
    if app_id not in ctx.apps:
        app = session.get(App, app_id)
        ctx.apps[app_id] = app if app is not None and app.deleted_at is None else None
        if app is not None:
            ctx.rules[app_id] = apps.mapping_rules(session, app_id)
    return ctx.apps[app_id]


def _account_currency(session: Session, ctx: BatchContext, account_id: int) -> str:
    if account_id not in ctx.currencies:
        account = session.get(Account, account_id)
        ctx.currencies[account_id] = account.currency if account is not None else "USD"
    return ctx.currencies[account_id]


@dataclass(frozen=True)
class Served:
    """Where the conversion's touch was served, for the event store's dimensions: the report's country,
    placement and objective filters keep conversions and CPA charges with their clicks."""

    country: str = ""
    placement_type: str = ""
    objective: str = ""


def _served(session: Session, ctx: BatchContext, touch: Touch | None) -> Served:
    if touch is None:
        return Served()
    country, placement = touch.country, touch.placement_type
    if not country and not placement:  # a touch rebuilt from an install row: read the touchpoint itself
        row = session.execute(select(Touchpoint.country, Touchpoint.placement_type).where(
            Touchpoint.kind == touch.kind.value, Touchpoint.touch_id == touch.touch_id)).first()
        if row is not None:
            country, placement = row.country, row.placement_type
    if touch.campaign_id not in ctx.objectives:
        from adstack.campaigns.models import Campaign

        ctx.objectives[touch.campaign_id] = session.scalar(
            select(Campaign.objective).where(Campaign.id == touch.campaign_id)) or ""
    return Served(country, placement, ctx.objectives[touch.campaign_id])


def charge_event_record(conversion: Conversion, charge_id: str, served: Served = Served()) -> Event:
    """The CPA charge in the event store under the charge's own id, so reported cost is the ledger's."""
    return Event(event_id=f"charge:{charge_id}", event_type=EventType.CHARGE,
                 occurred_at=conversion.received_at or conversion.occurred_at,
                 account_id=conversion.account_id, campaign_id=conversion.campaign_id,
                 ad_group_id=conversion.ad_group_id, creative_id=conversion.creative_id,
                 ad_space_id=conversion.ad_space_id, publisher_id=conversion.publisher_id,
                 placement_type=served.placement_type, country=served.country, objective=served.objective,
                 conversion_event=conversion.conversion_event, cost_micros=conversion.charged_micros,
                 attrs={"kind": "cpa"})


def cpa_charge_id(ad_group_id: int, anchor: str, event: ConversionEvent) -> str:
    return f"cpa:{ad_group_id}:{anchor}:{event.value}"[:120]


def _cpa_charge(session: Session, conversion: Conversion, event: ConversionEvent, anchor: str) -> int:
    """Charge the ad group's CPA bid once per install lifetime and event, when this is its chosen event."""
    from adstack.campaigns.models import AdGroup
    from adstack.finance import service as finance

    ad_group = session.get(AdGroup, conversion.ad_group_id)
    if ad_group is None or ad_group.bid_type != "cpa" or ad_group.conversion_event != event.value:
        return 0
    try:
        result = finance.apply_charge(
            session, charge_id=cpa_charge_id(ad_group.id, anchor, event), account_id=conversion.account_id,
            campaign_id=conversion.campaign_id, ad_group_id=ad_group.id, creative_id=conversion.creative_id,
            amount_micros=ad_group.bid_micros, kind="cpa",
            occurred_at=conversion.received_at or conversion.occurred_at)  # charged on the day it is received
    except DomainError as exc:
        log.warning("CPA charge for conversion of postback %s refused: %s", conversion.postback_id, exc.message)
        return 0
    return result.charged_micros if result.applied else 0


def _finish(session: Session, postback: Postback, status: PostbackStatus, detail: str = "") -> None:
    postback.status = status.value
    postback.detail = detail[:500]
    postback.processed_at = utcnow()


def _already_charged(session: Session, app: App, event: ConversionEvent, click_id: str, gaid: Gaid | None,
                     at: datetime, window: timedelta) -> bool:
    """One charge per billable conversion: per click id and event, and per device and app within the
    re-attribution window, whatever postback it came in."""
    same: list[ColumnElement[bool]] = []
    if click_id:
        same.append(Conversion.click_id == click_id)
    if gaid is not None:
        same.append(_device_condition(Conversion, gaid) & (Conversion.occurred_at >= at - window)
                    & (Conversion.occurred_at <= at + window))
    if not same:
        return False
    return session.scalar(select(Conversion.id).where(
        Conversion.app_id == app.id, Conversion.conversion_event == event.value, Conversion.charged_micros > 0,
        or_(*same)).limit(1)) is not None


def device_flags(session: Session, app: App, gaid: Gaid | None, click_id: str) -> tuple[FraudFlag, ...]:
    """Fraud flags any install of this device (or of this click) carries: the flag travels with the device."""
    same: list[ColumnElement[bool]] = []
    if gaid is not None:
        same.append(_device_condition(Conversion, gaid))
    if click_id:
        same.append(Conversion.click_id == click_id)
    if not same:
        return ()
    found: dict[FraudFlag, None] = {}
    for flags in session.scalars(_installs(app).with_only_columns(Conversion.fraud_flags).where(or_(*same))):
        for flag in flags or ():
            if flag in DEVICE_FLAGS:
                found[FraudFlag(flag)] = None
    return tuple(found)


def _charge_anchor(click_id: str, gaid: Gaid | None, postback_id: int) -> str:
    if click_id:
        return f"c{click_id}"
    if gaid is not None:
        return f"d{gaid.md5 or gaid.sha1}"
    return f"pb{postback_id}"


def _same_conversion(session: Session, app: App, postback: Postback, parsed: ParsedPostback,
                     event: ConversionEvent, click_id: str, occurred_at: datetime) -> Conversion | None:
    """A conversion already recorded from a postback with the same identifying fields (event, click id,
    device, partner time): the partner's retry of it under another dedupe key, e.g. without its event id.
    Two postbacks that both carry a partner event id, different ones, are two conversions."""
    gaid = parsed.gaid
    stmt = select(Conversion, Postback.dedupe_key).join(Postback, Postback.id == Conversion.postback_id).where(
        Conversion.app_id == app.id, Conversion.account_id == app.account_id,
        Conversion.conversion_event == event.value, Conversion.source_event_name == parsed.event_name[:100],
        Conversion.click_id == click_id, Conversion.occurred_at == occurred_at, Conversion.postback_id != postback.id,
        _device_condition(Conversion, gaid) if gaid is not None
        else Conversion.gaid_md5.is_(None) & Conversion.gaid_sha1.is_(None))
    mine = parsed.dedupe_key
    for conversion, key in session.execute(stmt.order_by(Conversion.id).limit(20)):
        if ":id:" in mine and ":id:" in key and key != mine:
            continue
        if parsed.event_params and Partner(postback.partner) in ADAPTERS:
            theirs = ADAPTERS[Partner(postback.partner)].event_params(
                session.scalar(select(Postback.fields).where(Postback.id == conversion.postback_id)) or {})
            if theirs != parsed.event_params:
                continue
        return conversion
    return None


def process_postback(session: Session, ctx: BatchContext, postback: Postback) -> Conversion | None:
    """Attribute one stored postback: record its conversion, charge CPA, collect its event-store record."""
    app = _app(session, ctx, postback.app_id)
    if app is None:
        _finish(session, postback, PostbackStatus.FAILED, f"app {postback.app_id} does not exist")
        return None
    try:
        parsed = parse_postback(Partner(postback.partner), postback.fields, apps.network_names(app))
    except PostbackError as exc:  # stored before a parser change; keep it, do not count it
        _finish(session, postback, PostbackStatus.FAILED, exc.message)
        return None
    if parsed.is_install:
        event: ConversionEvent | None = ConversionEvent.INSTALL
    else:
        event = resolve_event(parsed.event_name, parsed.params, ctx.rules.get(app.id, []))
    if event is None:
        _finish(session, postback, PostbackStatus.UNMAPPED,
                f"event {parsed.event_name!r} is not mapped, or its conditions do not hold")
        return None
    received_at = postback.received_at
    occurred_at, clamped = bounded_time(parsed.occurred_at, received_at)
    data_flags = [f"unreadable:{name}:{rule}" for name, rule in parsed.unreadable.items()] + list(parsed.notes)
    if clamped:
        data_flags.append("future_time_clamped")
    windows = windows_for(app)
    if parsed.occurred_at is not None and not clamped:
        same = _same_conversion(session, app, postback, parsed, event, parsed.click_id, occurred_at)
        if same is not None:
            _finish(session, postback, PostbackStatus.DUPLICATE,
                    f"the conversion of postback {same.postback_id}, retried under another key")
            return None

    forged = False
    touch_by_click: Touch | None = None
    if parsed.click_id:
        try:
            verify_click_id(parsed.click_id, ctx.secret)
            touch_by_click = click_touch(session, app, parsed.click_id)
        except TokenError:
            forged = True
    gaid = parsed.gaid

    install_row: Conversion | None = None
    touches: list[Touch] = []
    if event is ConversionEvent.INSTALL:
        prior = original_install_before(session, app, gaid, occurred_at) if gaid is not None else None
        touches = device_touches(session, app, gaid, until=occurred_at, windows=windows) if gaid else []
        own: Decision = attribute_install(
            installed_at=occurred_at, windows=windows, touch_by_click_id=touch_by_click,
            device_clicks=[t for t in touches if t.kind is TouchKind.CLICK],
            device_impressions=[t for t in touches if t.kind is TouchKind.IMPRESSION],
            prior_install=_prior(prior) if prior is not None else None, forged_click_id=forged)
    else:
        install_row = install_for_event(session, app, gaid, parsed.click_id if not forged else "", occurred_at)
        own = attribute_event(occurred_at=occurred_at, windows=windows,
                              install=_prior(install_row) if install_row is not None else None,
                              touch_by_click_id=touch_by_click, forged_click_id=forged)

    decision = own
    partner_says = parsed.verdict.value if parsed.verdict is not None else ""
    follows_partner = bool(partner_says) and app.attribution_authority != Authority.ADSTACK.value
    if follows_partner:
        if not touches and gaid is not None and parsed.verdict is PartnerVerdict.ATTRIBUTED and not own.attributed:
            touches = device_touches(session, app, gaid, until=occurred_at, windows=windows)
        decision = follow_partner(verdict=partner_says, own=own, occurred_at=occurred_at,
                                  is_install=event is ConversionEvent.INSTALL, touch_by_click_id=touch_by_click,
                                  device_touches=touches, partner_touch_type=parsed.touch_type)
    if event is not ConversionEvent.INSTALL:
        inherited = device_flags(session, app, gaid, parsed.click_id if not forged else "")
        if inherited:
            decision = Decision(decision.attribution_type, decision.match_type, decision.touch,
                                decision.click_to_install, decision.reinstall,
                                tuple(dict.fromkeys((*decision.fraud_flags, *inherited))))
    if clamped and decision.click_to_install is not None:
        # Measured to the receipt, which no install can follow: an upper bound of the real time.
        data_flags.append("click_to_install_to_receipt")
    ours = own_verdict(own)
    disagree = None if not partner_says else (partner_says == PartnerVerdict.ATTRIBUTED.value) != (
        ours == "attributed")

    currency = _account_currency(session, ctx, app.account_id)
    revenue_micros = revenue_usd_micros = 0
    detail = "; ".join(data_flags)
    if parsed.revenue is not None:
        in_account = convert(parsed.revenue, parsed.currency, currency, ctx.rates) if parsed.currency else None
        in_usd = convert(parsed.revenue, parsed.currency, "USD", ctx.rates) if parsed.currency else None
        if in_account is None or in_usd is None:
            detail = "; ".join([*data_flags, f"no FX rate for {parsed.currency or 'an unreadable currency'}; "
                                             "revenue kept as sent"])
        else:
            revenue_micros, revenue_usd_micros = micros(in_account), micros(in_usd)

    touch = decision.touch
    conversion = Conversion(
        postback_id=postback.id, app_id=app.id, account_id=app.account_id, partner=postback.partner,
        conversion_event=event.value, source_event_name=parsed.event_name[:100],
        attribution_type=decision.attribution_type.value, match_type=decision.match_type.value,
        partner_attributed=parsed.partner_attributed, partner_verdict=partner_says, own_verdict=ours,
        verdict_source=Authority.PARTNER.value if follows_partner else Authority.ADSTACK.value,
        verdict_reason=parsed.verdict_reason[:200], verdicts_disagree=disagree, is_reinstall=decision.reinstall,
        install_conversion_id=install_row.id if install_row is not None else None,
        touch_kind=touch.kind.value if touch else "", touch_id=touch.touch_id if touch else "",
        touch_at=touch.occurred_at if touch else None, campaign_id=touch.campaign_id if touch else 0,
        ad_group_id=touch.ad_group_id if touch else 0, creative_id=touch.creative_id if touch else 0,
        ad_space_id=touch.ad_space_id if touch else 0, publisher_id=touch.publisher_id if touch else 0,
        click_id=parsed.click_id if not forged else "", gaid_md5=gaid.md5 if gaid else None,
        gaid_sha1=gaid.sha1 if gaid else None,
        click_to_install_seconds=int(decision.click_to_install.total_seconds())
        if decision.click_to_install is not None else None,
        fraud_flags=[f.value for f in decision.fraud_flags], data_flags=data_flags,
        revenue="" if parsed.revenue is None else format(parsed.revenue, "f")[:40], currency=parsed.currency[:3],
        revenue_micros=revenue_micros, revenue_usd_micros=revenue_usd_micros, occurred_at=occurred_at,
        received_at=received_at,
    )
    session.add(conversion)
    session.flush()

    served = _served(session, ctx, touch)
    billable = decision.attributed and not decision.reinstall and not decision.fraud_flags and touch is not None
    if billable:
        if event is ConversionEvent.INSTALL or install_row is None:
            charge_click, charge_device = conversion.click_id, gaid
        else:
            charge_click = install_row.click_id
            charge_device = gaid
        anchor = _charge_anchor(charge_click, charge_device, postback.id)
        if _already_charged(session, app, event, charge_click, charge_device, occurred_at, windows.reattribution):
            detail = "; ".join([*([detail] if detail else []), "already charged for this click or device"])
        else:
            conversion.charged_micros = _cpa_charge(session, conversion, event, anchor)
            if conversion.charged_micros > 0:
                ctx.events.append(charge_event_record(conversion, cpa_charge_id(conversion.ad_group_id, anchor,
                                                                                event), served))

    if not decision.reinstall:
        ctx.events.append(conversion_event_record(
            app, conversion, gaid, served,
            install_at=install_row.occurred_at if install_row is not None else None))
    _finish(session, postback, PostbackStatus.ATTRIBUTED, detail)
    return conversion


# The event store's attribution type of a conversion our touch would claim but a fraud flag voids: reports
# keep it under its campaign as flagged, never among the installs, events and revenue our ads brought.
FLAGGED = "flagged"


def conversion_event_record(app: App, conversion: Conversion, gaid: Gaid | None, served: Served = Served(),
                            install_at: datetime | None = None) -> Event:
    """`install_at`: when the device installed (the conversion's own time for an install), for D0/D7 cohorts."""
    attrs = {"match_type": conversion.match_type, "source_event": conversion.source_event_name,
             "revenue_usd_micros": str(conversion.revenue_usd_micros), "currency": conversion.currency,
             "partner_verdict": conversion.partner_verdict, "own_verdict": conversion.own_verdict,
             "verdict_reason": conversion.verdict_reason, "verdict_source": conversion.verdict_source}
    is_install = conversion.conversion_event == ConversionEvent.INSTALL.value
    if is_install:
        install_at = conversion.occurred_at
    if install_at is not None:
        attrs["install_at"] = install_at.astimezone(UTC).isoformat(timespec="milliseconds")
    if conversion.data_flags:
        attrs["data_flags"] = ",".join(conversion.data_flags)
    attribution_type = conversion.attribution_type
    if conversion.fraud_flags:
        attrs["fraud_flags"] = ",".join(conversion.fraud_flags)
        if attribution_type in (AttributionType.CLICK.value, AttributionType.VIEW.value):
            attrs["attributed_as"] = attribution_type
            attribution_type = FLAGGED
    if conversion.click_to_install_seconds is not None:
        attrs["click_to_install_seconds"] = str(conversion.click_to_install_seconds)
    return Event(
        event_id=f"conversion:{conversion.postback_id}",
        event_type=EventType.INSTALL if is_install else EventType.IN_APP_EVENT,
        occurred_at=conversion.occurred_at, account_id=conversion.account_id, campaign_id=conversion.campaign_id,
        ad_group_id=conversion.ad_group_id, creative_id=conversion.creative_id,
        ad_space_id=conversion.ad_space_id, publisher_id=conversion.publisher_id,
        placement_type=served.placement_type, country=served.country, objective=served.objective,
        app_package=app.package_name, device_hash=gaid.device_hash if gaid else 0,
        conversion_event=conversion.conversion_event, attribution_type=attribution_type,
        partner=conversion.partner, revenue_micros=conversion.revenue_micros, attrs=attrs,
    )


def process_pending(session: Session, *, secret: bytes, limit: int = PROCESS_BATCH,
                    received_before: datetime | None = None) -> tuple[int, list[Event]]:
    """Attribute up to `limit` stored postbacks in receipt order, in the caller's transaction.

    Returns how many were processed and the event-store records to append before committing. Each
    postback is claimed with a conditional update, so two processors never both handle one. With
    `received_before`, only postbacks received before then: every touch acknowledged before them is applied.
    """
    ctx = BatchContext(secret=secret, rates=fx_rates(session))
    pending = select(Postback.id).where(Postback.status == PostbackStatus.PENDING.value)
    if received_before is not None:
        pending = pending.where(Postback.received_at < received_before)
    ids = list(session.scalars(pending.order_by(Postback.id).limit(limit)))
    if not ids:
        return 0, []
    claimed = set(session.scalars(update(Postback).where(Postback.id.in_(ids),
                                                         Postback.status == PostbackStatus.PENDING.value)
                                  .values(processed_at=utcnow()).returning(Postback.id)))
    postbacks = {p.id: p for p in session.scalars(select(Postback).where(Postback.id.in_(claimed)))}
    for postback_id in sorted(claimed):  # receipt order: an install before the events that follow it
        postback = postbacks[postback_id]
        events_before = len(ctx.events)
        try:
            with session.begin_nested():
                process_postback(session, ctx, postback)
        except Exception as exc:  # one bad postback must not hold back the rest
            log.exception("attributing postback %s failed", postback_id)
            del ctx.events[events_before:]
            session.refresh(postback)
            _finish(session, postback, PostbackStatus.FAILED, f"attribution failed: {exc}")
    return len(claimed), ctx.events


# ---------- reading ----------


def _scoped(session: Session, principal: Principal, stmt: Any, column: Any) -> Any:
    visible = visible_account_ids(session, principal)
    return stmt if visible is None else stmt.where(column.in_(visible))


def list_conversions(session: Session, principal: Principal, *, app_id: int | None = None,
                     attribution_type: str | None = None, conversion_event: str | None = None,
                     limit: int = 50, offset: int = 0) -> list[Conversion]:
    stmt = _scoped(session, principal, select(Conversion), Conversion.account_id)
    if app_id is not None:
        apps.get_app(session, principal, app_id)
        stmt = stmt.where(Conversion.app_id == app_id)
    if attribution_type:
        stmt = stmt.where(Conversion.attribution_type == attribution_type)
    if conversion_event:
        stmt = stmt.where(Conversion.conversion_event == conversion_event)
    return list(session.scalars(stmt.order_by(Conversion.id.desc()).limit(limit).offset(offset)))


def list_postbacks(session: Session, principal: Principal, *, app_id: int, status: str | None = None,
                   limit: int = 50, offset: int = 0) -> list[Postback]:
    app = apps.get_app(session, principal, app_id)
    stmt = select(Postback).where(Postback.app_id == app.id)
    if status:
        stmt = stmt.where(Postback.status == status)
    return list(session.scalars(stmt.order_by(Postback.id.desc()).limit(limit).offset(offset)))


def list_rejected(session: Session, *, reason: str | None = None, limit: int = 50,
                  offset: int = 0) -> tuple[list[RejectedPostback], int]:
    stmt = select(RejectedPostback)
    if reason:
        stmt = stmt.where(RejectedPostback.reason == reason)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.scalars(stmt.order_by(RejectedPostback.id.desc()).limit(limit).offset(offset))
    return list(rows), int(total)


def verdict_agreement(session: Session, principal: Principal, *, app_id: int | None = None,
                      since: datetime | None = None, until: datetime | None = None) -> list[dict[str, Any]]:
    """Per partner: conversions, how many carried the partner's verdict, and how often it disagreed with
    adstack's own rules, over the conversions the principal can see."""
    attributed = Conversion.partner_verdict == "attributed"
    stmt = _scoped(session, principal, select(
        Conversion.partner, func.count(),
        func.count().filter(Conversion.partner_verdict != ""),
        func.count().filter(Conversion.verdicts_disagree.is_(True)),
        func.count().filter(attributed & (Conversion.own_verdict == "organic")),
        func.count().filter((Conversion.partner_verdict != "") & ~attributed
                            & (Conversion.own_verdict == "attributed")),
    ), Conversion.account_id)
    if app_id is not None:
        stmt = stmt.where(Conversion.app_id == apps.get_app(session, principal, app_id).id)
    if since is not None:
        stmt = stmt.where(Conversion.occurred_at >= since)
    if until is not None:
        stmt = stmt.where(Conversion.occurred_at < until)
    rows = session.execute(stmt.group_by(Conversion.partner).order_by(Conversion.partner)).all()
    return [{"partner": partner, "conversions": total, "with_partner_verdict": judged, "disagreements": disagree,
             "disagreement_rate": round(disagree / judged, 6) if judged else None,
             "partner_attributed_own_organic": partner_only, "partner_unattributed_own_attributed": own_only}
            for partner, total, judged, disagree, partner_only, own_only in rows]


def get_fx_rate(session: Session, currency: str) -> FxRate:
    row = session.get(FxRate, currency)
    if row is None:
        raise NotFound(f"no FX rate for {currency}")
    return row
