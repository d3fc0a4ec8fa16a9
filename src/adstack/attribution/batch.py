"""Set-based attribution of a batch of stored postbacks.

A batch costs a constant number of statements whatever its size: the claim, one read each for the apps, their
event mappings, the accounts, the FX rates, the click touches of every click id, the device touches of every
device, the devices' and click ids' earlier installs and charges, and the conversions a retry may repeat; then
the pure rules of `rules.py` run in memory in receipt order, each decision updating the in-memory view the
next one reads (an install earlier in the batch is the prior install of a later event), and everything is
written in bulk: the conversions, one `finance.charges.apply_charges` for the CPA charges and the postback statuses.

The result is the one that attributing the postbacks one at a time gives, charge by charge: a charge whose
outcome a later conversion depends on (the one-charge-per-click-and-device rule) is applied before that
conversion is decided, which takes a second `apply_charges` only in a batch that holds both.

What a batch holds in memory is in view.py, reading it in loading.py and deciding it in deciding.py;
this module runs the batch and writes its results.
"""

from __future__ import annotations

import functools
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import orjson
from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from adstack.attribution.bulk import insert_rows, update_column
from adstack.attribution.deciding import _decide, apply_pending, is_refund
from adstack.attribution.loading import (
    _C,
    _CONVERSIONS,
    _POSTBACKS,
    _T,
    _in,
    _load_ad_groups,
    _load_apps,
    _load_conversions,
    _load_retried,
    _load_touches,
    _prepare,
    drop_unsigned_copies,
)
from adstack.attribution.models import UNSIGNED_NOT_CHARGED, PostbackStatus
from adstack.attribution.rules import AttributionType
from adstack.attribution.view import _IN_BATCH, _INSTALL, AppInfo, DeviceKey, Item, View
from adstack.core.timeutil import utcnow
from adstack.events.models import Event, EventType
from adstack.events.schema import REFUND_ATTR
from adstack.finance import service as finance

log = logging.getLogger("adstack.attribution")

# The event store's attribution type of a conversion our touch would claim but a fraud flag voids: reports
# keep it under its campaign as flagged, never among the installs, events and revenue our ads brought.
FLAGGED = "flagged"
# The event store's attribution type of a conversion our touch would claim from an unsigned postback: reported
# apart (unverified installs and events), never among installs, events or revenue.
UNVERIFIED = "unverified"


@dataclass(frozen=True, slots=True)
class Served:
    """Where the conversion's touch was served, for the event store's dimensions: the report's country,
    placement and objective filters keep conversions and CPA charges with their clicks."""

    country: str = ""
    placement_type: str = ""
    objective: str = ""


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
        if is_refund(row["conversion_event"], row["data_flags"]):
            attrs[REFUND_ATTR] = "1"  # reported in `refunds`, not as another occurrence of its event
    attribution_type = row["attribution_type"]
    claimed = attribution_type in (AttributionType.CLICK.value, AttributionType.VIEW.value)
    if row["fraud_flags"]:
        attrs["fraud_flags"] = ",".join(row["fraud_flags"])
    if UNSIGNED_NOT_CHARGED in row["data_flags"]:
        # Whatever it was judged (ours, organic, another network's): an unsigned postback counts apart.
        attrs["attributed_as"] = attribution_type
        attribution_type = UNVERIFIED
    elif claimed and row["fraud_flags"]:
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
    app id, partner, dedupe key, fields, receipt time and stored reading); returns each postback's status and
    detail, for the caller to write, and the event-store records."""
    view = View(secret=secret, rates=rates, dialect=session.get_bind().dialect.name)
    items = [Item(pid, app_id, partner, key, _fields(fields), received, parsed)
             for pid, app_id, partner, key, fields, received, parsed in postbacks]
    _load_apps(session, view, {i.app_id for i in items})
    for item in items:
        try:
            _prepare(view, item)
        except Exception as exc:  # one bad postback must not hold back the rest
            log.exception("attributing postback %s failed", item.id)
            item.finish(PostbackStatus.FAILED, f"attribution failed: {exc}")
            item.event = None
    drop_unsigned_copies(session, items)
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
    detail), one executemany for the rest: per-row parameters cost more than the update itself. The stored
    reading is dropped once a postback is processed: its fields are kept, and read again if it ever is again."""
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
                            .values(status=status.value, detail=detail, processed_at=now, parsed=None),
                            {"p_ids": ids})
    if single:
        session.execute(update(_POSTBACKS).where(p.id == bindparam("p_id"))
                        .values(status=bindparam("p_status"), detail=bindparam("p_detail"), processed_at=now,
                                parsed=None),
                        single)
