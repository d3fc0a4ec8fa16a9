"""Touchpoints, stored postbacks, attribution of installs and in-app events, CPA billing and the FX table.

A postback is answered 200 once it is in the event log; the pipeline's postbacks consumer stores it in the
`postbacks` table (unique per app and dedupe key, so a retry is stored once). Attribution runs afterwards, from
that table, in receipt order: each
postback is claimed inside the transaction that records its conversion, its CPA charge and marks it done,
so a crash at any point leaves it either untouched (and processed again) or completely processed.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from operator import itemgetter
from typing import Any, cast

from sqlalchemy import Connection, Table, Text, func, or_, select, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from adstack.accounts.models import Principal
from adstack.accounts.tenancy import visible_account_ids
from adstack.apps import service as apps
from adstack.apps.models import App
from adstack.attribution.models import (
    Conversion,
    FxRate,
    Postback,
    PostbackStatus,
    RejectedPostback,
    Touchpoint,
)
from adstack.attribution.postback_fields import ParsedPostback
from adstack.attribution.rules import (
    TouchKind,
)
from adstack.core.db import dialect_insert
from adstack.core.errors import NotFound
from adstack.core.money import MICROS_PER_UNIT
from adstack.core.timeutil import utcnow
from adstack.core.vocabulary import Partner
from adstack.events.models import Event
from adstack.tracking.devices import Gaid
from adstack.tracking.tokens import TokenError, verify_click_id

log = logging.getLogger("adstack.attribution")

PROCESS_BATCH = 2_000  # postbacks attributed per transaction (see worker.BATCH)
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
    insert = dialect_insert(session)
    # RETURNING rather than rowcount: drivers disagree on the rowcount of an insert that did nothing.
    inserted = session.execute(insert(table).values(**values).on_conflict_do_nothing()
                               .returning(table.c.id)).first()
    return inserted is not None


# ---------- FX ----------


def fx_rates(session: Session) -> dict[str, Decimal]:
    return {currency: Decimal(rate) for currency, rate in session.execute(
        select(FxRate.currency, FxRate.units_per_usd))}


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
                 gaid: Gaid | None, occurred_at: datetime, click_id: str | None = None) -> bool:
    """Store a click or an impression once per id; True the first time. `click_id`: an impression's, the one its
    links carry."""
    return insert_once(session, Touchpoint.__table__, {  # type: ignore[arg-type]
        "kind": kind.value, "touch_id": touch_id, "impression_id": impression_id,
        "click_id": click_id if kind is TouchKind.IMPRESSION else None, "account_id": account_id,
        "campaign_id": campaign_id, "ad_group_id": ad_group_id, "creative_id": creative_id,
        "ad_space_id": ad_space_id, "publisher_id": publisher_id, "bid_type": bid_type,
        "price_micros": price_micros, "country": country[:2], "placement_type": placement_type[:32],
        "app_package": app_package[:255], "gaid_md5": gaid.md5 if gaid else None,
        "gaid_sha1": gaid.sha1 if gaid else None, "occurred_at": occurred_at,
    })


def _device_condition(columns: Any, gaid: Gaid) -> ColumnElement[bool]:
    if gaid.md5 is not None:
        return columns.gaid_md5 == gaid.md5
    return columns.gaid_sha1 == gaid.sha1


# ---------- receiving ----------


@dataclass(frozen=True)
class IncomingPostback:
    app_id: int
    partner: Partner
    dedupe_key: str
    method: str
    fields: dict[str, str]
    received_at: datetime
    parsed: str | None = None  # the adapters' reading as JSON (`adapters.stored_parse`), or None to read it again
    signed: bool = False  # came to the app's signed URL: the receiver stored it under its own key, unprefixed


def accept_postbacks(connection: Connection, postbacks: list[IncomingPostback]) -> list[bool]:
    """Store postbacks once per (app, dedupe key) with one statement; the caller commits. For each, True
    when it is new (the first of equal ones in the list is the new one)."""
    if not postbacks:
        return []
    insert = dialect_insert(connection)
    table = Postback.__table__
    rows = [{"app_id": p.app_id, "partner": p.partner.value, "dedupe_key": p.dedupe_key, "method": p.method,
             "fields": p.fields, "parsed": p.parsed, "signed": p.signed, "status": PostbackStatus.PENDING.value,
             "detail": "", "received_at": p.received_at}
            for p in postbacks]
    stored = {(row.app_id, row.dedupe_key) for row in connection.execute(
        insert(table).values(rows).on_conflict_do_nothing()
        .returning(table.c.app_id, table.c.dedupe_key))}
    new: list[bool] = []
    for p in postbacks:
        key = (p.app_id, p.dedupe_key)
        new.append(key in stored)
        stored.discard(key)
    return new


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
    names one app: a package alone does not, since anyone can name a published app's package and the URL is
    unsigned (it would let anyone write installs and revenue into that advertiser's reports)."""
    if parsed.click_id:
        try:
            verify_click_id(parsed.click_id, secret)
        except TokenError:
            pass
        else:
            row = session.scalar(select(Touchpoint).where(Touchpoint.kind == TouchKind.CLICK.value,
                                                          Touchpoint.touch_id == parsed.click_id))
            if row is None:  # the click id of an impression, returned for a view-through install
                row = session.scalar(select(Touchpoint).where(Touchpoint.click_id == parsed.click_id,
                                                              Touchpoint.kind == TouchKind.IMPRESSION.value))
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
    return None


# ---------- attribution ----------


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while a batch runs. A batch keeps thousands of small objects alive until it
    ends, which sets off the collector's full passes over every object of the process again and again (about a
    third of the batch's CPU); they hold no reference cycles, so reference counting frees them all the same."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def process_pending(session: Session, *, secret: bytes, limit: int = PROCESS_BATCH,
                    received_before: datetime | None = None, unsigned_hold: timedelta = timedelta(0),
                    ) -> tuple[int, list[Event]]:
    """Attribute up to `limit` stored postbacks in receipt order, in the caller's transaction.

    Returns how many were processed and the event-store records to append before committing. The postbacks
    are claimed with a conditional update, so two processors never both handle one; the batch then costs a
    constant number of statements (`attribution/batch.py`). With `received_before`, only postbacks received
    before then: every touch acknowledged before them is applied. An unsigned postback waits `unsigned_hold` after
    its receipt, so that a signed copy sent with it replaces it (`accept_postbacks`) before it is attributed.
    """
    with collector_paused():
        return _process_pending(session, secret=secret, limit=limit, received_before=received_before,
                                unsigned_before=utcnow() - unsigned_hold)


def _process_pending(session: Session, *, secret: bytes, limit: int, received_before: datetime | None,
                     unsigned_before: datetime) -> tuple[int, list[Event]]:
    from adstack.attribution import batch

    table = cast(Table, Postback.__table__)
    c = table.c
    pending = select(c.id).where(c.status == PostbackStatus.PENDING.value,
                                 or_(c.signed.is_(True), c.received_at < unsigned_before))
    if received_before is not None:
        pending = pending.where(c.received_at < received_before)
    claimed = session.execute(
        update(table).where(c.id.in_(pending.order_by(c.id).limit(limit).scalar_subquery()),
                            c.status == PostbackStatus.PENDING.value)
        .values(processed_at=utcnow())
        # The fields as text, read by orjson: several times faster than the JSON type's own reader.
        .returning(c.id, c.app_id, c.partner, c.dedupe_key, sql_cast(c.fields, Text).label("fields"),
                   c.received_at, c.parsed)).all()
    claimed = sorted(claimed, key=itemgetter(0))  # by id, receipt order: an install before the events after it
    if not claimed:
        return 0, []
    rates = fx_rates(session)
    statuses: dict[int, tuple[PostbackStatus, str]] = {}
    try:
        with session.begin_nested():
            items, events = batch.attribute(session, secret=secret, rates=rates, postbacks=claimed)
            statuses = {i.id: (i.status, i.detail) for i in items}
    except Exception:
        # A write the database refused (the old per-postback savepoint's case): find the postback one by one.
        log.exception("attributing a batch of %s postbacks failed; attributing them one by one", len(claimed))
        events = []
        for row in claimed:
            try:
                with session.begin_nested():
                    items, found = batch.attribute(session, secret=secret, rates=rates, postbacks=[row])
            except Exception as exc:  # one bad postback must not hold back the rest
                log.exception("attributing postback %s failed", row.id)
                statuses[row.id] = (PostbackStatus.FAILED, f"attribution failed: {exc}")
            else:
                statuses.update((i.id, (i.status, i.detail)) for i in items)
                events.extend(found)
    batch.write_statuses(session, statuses)
    return len(claimed), events


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
