"""The media center: where the ads ran, per publisher app (package) or per ad space."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from adstack.accounts import tenancy
from adstack.accounts.models import Principal, Role
from adstack.core.errors import ValidationFailed
from adstack.events.schema import AD_SPACE_APPS_TABLE
from adstack.events.service import EventStore
from adstack.reports import query as sql
from adstack.reports.models import (
    Dimension,
    MediaCenterQuery,
    MediaCenterRead,
    MediaGroup,
    MediaRow,
    Metric,
    ReportQuery,
)
from adstack.reports.scope import scope_currencies
from adstack.reports.service import JOB_MAX_DAYS, _fetch, _prepare, _store, _sums

# ---------- media center ----------


def _inventory() -> tuple[Any, Any] | None:
    try:
        module = importlib.import_module("adstack.inventory.models")
    except ImportError:
        return None
    publisher, ad_space = getattr(module, "Publisher", None), getattr(module, "AdSpace", None)
    return (publisher, ad_space) if publisher is not None and ad_space is not None else None


def media_center(session: Session, principal: Principal, query: MediaCenterQuery, *,
                 store: EventStore | None = None) -> MediaCenterRead:
    """Where the ads ran: per publisher app (package) or per ad space, searchable by package, source,
    media id, country and time."""
    store = _store(store)
    requested = [query.account_id] if query.account_id is not None else []
    if principal.role == Role.ADVERTISER and not requested and principal.account_id is not None:
        requested = [principal.account_id]
    if query.account_id is not None:
        tenancy.ensure_account_visible(session, principal, query.account_id, field="account_id")
    else:
        # Rows add up every account's spend per app or ad space: money of two currencies cannot be added, so an
        # agency (or staff) whose accounts settle in several currencies chooses one account.
        currencies = scope_currencies(session, principal, requested)
        if len(currencies) > 1:
            raise ValidationFailed.single(
                "account_id", "one_currency", "the accounts you can see settle in different currencies; choose "
                "one account (account_id) to see where its ads ran", limit=sorted(currencies))
    publisher_ids: set[int] | None = None
    ad_space_ids: set[int] | None = None
    inventory = _inventory()
    if query.package or query.source:
        publisher_ids = set()
        if inventory is not None:
            publisher_model = inventory[0]
            conditions = []
            if query.package:
                conditions.append(publisher_model.app_package.icontains(query.package, autoescape=True))
            if query.source:
                conditions.append(publisher_model.name.icontains(query.source, autoescape=True))
            publisher_ids.update(session.scalars(select(publisher_model.id).where(*conditions)))
        if query.package and not query.source:
            seen = store.query(
                f"SELECT DISTINCT publisher_id, ad_space_id FROM {AD_SPACE_APPS_TABLE} "  # noqa: S608
                "WHERE positionCaseInsensitiveUTF8(app_package, {package:String}) > 0", {"package": query.package})
            ad_space_ids = {int(r[1]) for r in seen.rows}
            publisher_ids.update(int(r[0]) for r in seen.rows if r[0])
    dims = [Dimension.PUBLISHER] + ([Dimension.AD_SPACE] if query.group_by == MediaGroup.AD_SPACE else [])
    metrics = [Metric.IMPRESSIONS, Metric.CLICKS, Metric.COST_MICROS, Metric.INSTALLS, Metric.CTR, Metric.CVR,
               Metric.ECPM_MICROS]
    empty = MediaRow(publisher_id=0, publisher_name=None, app_package=None, ad_space_id=None, ad_space_name=None,
                     placement_type=None, impressions=0, clicks=0, cost_micros=0, conversions=0, ctr=None, cvr=None,
                     ecpm_micros=None)
    report_query = ReportQuery(
        start_date=query.start_date, end_date=query.end_date, dimensions=dims, metrics=metrics,
        account_ids=requested, countries=[query.country] if query.country else [],
        sort=_media_sort(query.sort, query.group_by), limit=query.limit, offset=query.offset)
    prepared = _prepare(session, principal, report_query, max_days=JOB_MAX_DAYS)
    matched_nothing = (publisher_ids is not None and not publisher_ids and not ad_space_ids)
    if matched_nothing:
        return MediaCenterRead(start_date=query.start_date, end_date=query.end_date,
                               time_zone=prepared.scope.time_zone, currency=prepared.scope.currency, rows=[],
                               totals=empty, total_rows=0)
    plan_where: list[str] = [sql.OURS]  # where ads ran: organic and other-network conversions ran nowhere
    params: dict[str, Any] = {}
    if publisher_ids is not None or ad_space_ids is not None:
        plan_where.append("(publisher_id IN {m_publishers:Array(UInt64)} OR ad_space_id IN {m_spaces:Array(UInt64)})")
        params |= {"m_publishers": sorted(publisher_ids or []), "m_spaces": sorted(ad_space_ids or [])}
    if query.media_id is not None:
        plan_where.append("publisher_id = {media_id:UInt64}")
        params["media_id"] = query.media_id
    if query.ad_space_id is not None:
        plan_where.append("ad_space_id = {ad_space_id:UInt64}")
        params["ad_space_id"] = query.ad_space_id
    fetched = _fetch(store, report_query, scope=prepared.scope, metrics=prepared.metrics, sort=prepared.sort,
                     limit=query.limit, offset=query.offset, where=plan_where, params=params)
    publishers: dict[int, Any] = {}
    spaces: dict[int, Any] = {}
    packages: dict[int, str] = {}
    raw_rows = fetched.rows
    if inventory is not None:
        publisher_model, ad_space_model = inventory
        wanted_publishers = sorted({int(r["d_publisher_id"]) for r in raw_rows})
        wanted_spaces = sorted({int(r.get("d_ad_space_id") or 0) for r in raw_rows})
        publishers = {p.id: p for p in session.scalars(select(publisher_model).where(
            publisher_model.id.in_(wanted_publishers)))}
        spaces = {s.id: s for s in session.scalars(select(ad_space_model).where(
            ad_space_model.id.in_(wanted_spaces)))}
    if raw_rows:
        seen = store.query(
            f"SELECT publisher_id, argMax(app_package, last_seen) FROM {AD_SPACE_APPS_TABLE} "  # noqa: S608
            "WHERE publisher_id IN {ids:Array(UInt64)} GROUP BY publisher_id",
            {"ids": sorted({int(r["d_publisher_id"]) for r in raw_rows})}, fresh=False)
        packages = {int(r[0]): r[1] for r in seen.rows}

    def media_row(sums: Mapping[str, int], publisher_id: int, ad_space_id: int | None) -> MediaRow:
        publisher = publishers.get(publisher_id)
        space = spaces.get(ad_space_id) if ad_space_id else None
        return MediaRow(
            publisher_id=publisher_id, publisher_name=getattr(publisher, "name", None),
            app_package=getattr(publisher, "app_package", None) or packages.get(publisher_id),
            ad_space_id=ad_space_id, ad_space_name=getattr(space, "name", None),
            placement_type=getattr(space, "placement_type", None),
            impressions=sums.get("impressions", 0), clicks=sums.get("clicks", 0),
            cost_micros=sums.get("cost_micros", 0), conversions=sums.get("installs", 0),
            ctr=_str(sql.derive(sums, Metric.CTR)), cvr=_str(sql.derive(sums, Metric.CVR)),
            ecpm_micros=_int(sql.derive(sums, Metric.ECPM_MICROS)))

    rows = [media_row(_sums(d), int(d["d_publisher_id"]), int(d["d_ad_space_id"]) if "d_ad_space_id" in d else None)
            for d in raw_rows]
    totals = media_row(fetched.totals, 0, None)
    return MediaCenterRead(start_date=query.start_date, end_date=query.end_date, time_zone=prepared.scope.time_zone,
                           currency=prepared.scope.currency, rows=rows, totals=totals,
                           total_rows=fetched.total_rows)


# The media center's columns by the report columns they sort by (its `conversions` are the report's installs).
_MEDIA_SORT = {"publisher_id": "publisher_id", "ad_space_id": "ad_space_id", "impressions": "impressions",
               "clicks": "clicks", "cost_micros": "cost_micros", "conversions": "installs", "ctr": "ctr",
               "cvr": "cvr", "ecpm_micros": "ecpm_micros"}


def _media_sort(sort: str | None, group_by: MediaGroup) -> str | None:
    if sort is None:
        return "-cost_micros"
    descending, key = sort.startswith("-"), sort.lstrip("-")
    allowed = sorted(k for k in _MEDIA_SORT if group_by == MediaGroup.AD_SPACE or k != "ad_space_id")
    if key not in allowed:
        raise ValidationFailed.single("sort", "allowed_values", f"sort by one of the media center's columns: "
                                      f"{allowed}", limit=allowed, actual=sort)
    return ("-" if descending else "") + _MEDIA_SORT[key]


def _str(value: int | str | None) -> str | None:
    return None if value is None else str(value)


def _int(value: int | str | None) -> int | None:
    return None if value is None else int(value)
