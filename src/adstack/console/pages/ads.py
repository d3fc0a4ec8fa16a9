"""The ad list (campaigns, ad groups, creatives) with filters, batch actions, quick edit, copy and delete,
and the detail page of each object."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from starlette.datastructures import QueryParams

from adstack.accounts import service as accounts
from adstack.accounts.models import Account, Role
from adstack.campaigns import batch as campaign_batch
from adstack.campaigns import lists as campaign_lists
from adstack.campaigns import service as campaigns
from adstack.campaigns.enums import MarketingObjective, ServingStatus, StatusAction, UserStatus
from adstack.campaigns.models import (
    AdGroupSort,
    AdGroupUpdate,
    CampaignSort,
    CampaignUpdate,
    MutateIn,
    MutateOperation,
)
from adstack.console import forms
from adstack.console import service as console
from adstack.console.forms import FormErrors
from adstack.console.models import ListColumns
from adstack.console.pages import reports
from adstack.console.web import PREFIX, ConsoleRoute, FormDep, UserDep, Visitor, redirect, render, with_notice
from adstack.core.deps import IdPath
from adstack.core.errors import DomainError, NotFound, ValidationFailed
from adstack.core.vocabulary import PlacementType
from adstack.creatives import service as creatives
from adstack.creatives.models import CreativeSort, CreativeUpdate
from adstack.events.service import get_event_store
from adstack.inventory import service as inventory
from adstack.media import service as media
from adstack.media.models import MediaAsset, MediaKind
from adstack.reports import service as report_service
from adstack.reports.models import FIRST_DAY as REPORT_FIRST_DAY
from adstack.reports.models import LAST_DAY as REPORT_LAST_DAY
from adstack.reports.models import MAX_IDS, Dimension, ReportQuery
from adstack.review import service as review
from adstack.review.models import ReviewStatus

router = APIRouter(route_class=ConsoleRoute)

PAGE_SIZES = (20, 50, 100)
LEVELS = {"campaigns": "campaign", "ad-groups": "ad_group", "creatives": "creative"}
SORTS: dict[str, set[str]] = {
    "campaigns": {s.value for s in CampaignSort},
    "ad-groups": {s.value for s in AdGroupSort},
    "creatives": {s.value for s in CreativeSort},
}
# Columns a visitor may add to the list; metrics come from the reports service for the rows on the page only.
METRIC_COLUMNS = tuple(reports.LIST_METRICS)
DEFAULT_COLUMNS = ("impressions", "clicks", "ctr", "cost")
# A metric sort ranks every matching row: the list services are asked for all of them at once.
EVERY_ROW = 2**62
# Source: Mi Ads usage guide, 3.3 Ad List: "Custom columns: ... basic data, in-app data, and video data".
COLUMN_SETS: dict[str, tuple[str, ...]] = {
    "basic": ("impressions", "clicks", "ctr", "cost", "ecpm", "cpc", "installs", "cvr", "cpa", "revenue", "roas"),
    "in_app": tuple(c for c in METRIC_COLUMNS if c == "in_app_events" or c.startswith("event_")),
    "video": tuple(c for c in METRIC_COLUMNS if c.startswith("video_")),
}
# Header columns a click sorts by, per level: the sorts the campaigns and creatives services order by in SQL.
SORTABLE: dict[str, dict[str, str]] = {
    "campaigns": {"id": "id", "name": "name", "status": "status", "serving_status": "serving_status",
                  "objective": "objective", "spend": "spend_micros"},
    "ad-groups": {"id": "id", "name": "name", "status": "status", "serving_status": "serving_status",
                  "review": "review_status", "placement": "placement_type", "bid": "bid_micros",
                  "daily_budget": "daily_budget_micros", "total_budget": "total_budget_micros",
                  "spend": "spend_micros"},
    "creatives": {"id": "id", "name": "name", "status": "status", "review": "review_status"},
}


@dataclass(frozen=True)
class Row:
    """One line of the list, whatever the level."""

    level: str
    id: int
    name: str
    account_id: int
    status: str
    serving_status: str
    serving_reason: str
    review_status: str | None
    spend_micros: int | None
    obj: Any
    children: int = 0


def _level(level: str) -> str:
    if level not in LEVELS:
        raise NotFound("no such list")
    return level


def _bounded(value: str | None, allowed: set[str]) -> str | None:
    return value if value in allowed else None


def _int_param(value: str | None) -> int | None:
    return int(value) if value and value.isdecimal() and len(value) < 19 else None


def list_rows(visitor: Visitor, level: str, params: dict[str, str],
              window: tuple[int, int] | None = None) -> tuple[list[Row], int]:
    """One page of the level's list (or `window`: limit and offset), filtered and sorted by the campaigns and
    creatives services."""
    session, principal = visitor.session, visitor.me
    page = max(1, min(_int_param(params.get("page")) or 1, 1_000_000))
    size = _int_param(params.get("size")) or 50
    size = size if size in PAGE_SIZES else 50
    offset = (page - 1) * size
    if window is not None:
        size, offset = window
    query = (params.get("q") or "").strip()[:200] or None
    status = _bounded(params.get("status"), {s.value for s in UserStatus})
    serving = _bounded(params.get("serving_status"), {s.value for s in ServingStatus})
    review_status = _bounded(params.get("review_status"), {s.value for s in ReviewStatus})
    placement = _bounded(params.get("placement_type"), {p.value for p in PlacementType})
    objective = _bounded(params.get("objective"), {o.value for o in MarketingObjective})
    sort = params.get("sort") or "id"
    sort = sort if sort in SORTS[level] else "id"
    descending = params.get("dir", "desc") != "asc"
    campaign_id = _int_param(params.get("campaign_id"))
    ad_group_id = _int_param(params.get("ad_group_id"))
    publisher_id = _int_param(params.get("publisher_id"))
    account_id = _int_param(params.get("account_id"))
    rows: list[Row] = []
    if level == "campaigns":
        views, total = campaign_lists.list_campaigns(
            session, principal, account_id=account_id,
            query=query, objective=objective, status=status, serving_status=serving,
            placement_type=placement, publisher_id=publisher_id, sort=sort, descending=descending, limit=size,
            offset=offset)
        rows = [Row(level, v.campaign.id, v.campaign.name, v.campaign.account_id, v.campaign.status,
                    v.serving_status.value, v.serving_reason, None, v.spend_micros, v.campaign,
                    v.ad_group_count) for v in views]
    elif level == "ad-groups":
        group_views, total = campaign_lists.list_ad_groups(
            session, principal, account_id=account_id,
            query=query, campaign_id=campaign_id, objective=objective, status=status,
            serving_status=serving, review_status=review_status, placement_type=placement,
            publisher_id=publisher_id, sort=sort, descending=descending, limit=size, offset=offset)
        counts = console.live_creative_counts(session, [v.ad_group.id for v in group_views])
        rows = [Row(level, v.ad_group.id, v.ad_group.name, v.ad_group.account_id, v.ad_group.status,
                    v.serving_status.value, v.serving_reason, v.ad_group.review_status, v.spend_micros, v.ad_group,
                    counts.get(v.ad_group.id, 0)) for v in group_views]
    else:
        found, total, statuses = creatives.list_creatives(
            session, principal, account_id=account_id,
            query=query, ad_group_id=ad_group_id, campaign_id=campaign_id, status=status,
            review_status=review_status, serving_status=serving, placement_type=placement, publisher_id=publisher_id,
            objective=objective, sort=CreativeSort(sort), descending=descending, limit=size, offset=offset)
        rows = [Row(level, c.id, c.name, c.account_id, c.status, statuses[c.id][0].value, statuses[c.id][1],
                    c.review_status, None, c) for c in found]
    return rows, total


# The ad list's date ranges for its metric columns, in the account's time zone.
DATE_RANGES = ("today", "yesterday", "7d", "30d", "custom")
MAX_RANGE_DAYS = reports.LIST_MAX_DAYS


def row_list_params(visitor: Visitor) -> QueryParams:
    """The list's query (columns, date range) for a row htmx redraws: that of the page the row sits in."""
    current = urlsplit(visitor.request.headers.get("HX-Current-URL", ""))
    if current.path.startswith(f"{PREFIX}/ads/"):
        return QueryParams(current.query)
    return visitor.request.query_params


def _report_day(value: str | None) -> date | None:
    try:
        day = date.fromisoformat(value) if value else None
    except ValueError:
        return None
    return day if day is not None and REPORT_FIRST_DAY <= day <= REPORT_LAST_DAY else None


def metric_period(visitor: Visitor, params: QueryParams | None = None) -> tuple[str, date, date]:
    """The range the metric columns cover: today, yesterday, the last 7 or 30 days (today included), or custom
    days; a custom range that is not one (a missing or reversed day, more than a year) falls back to 7 days."""
    params = params if params is not None else visitor.request.query_params
    today = reports.local_today(visitor)
    choice = str(params.get("range")) if params.get("range") in DATE_RANGES else "7d"
    if choice == "custom":
        # A day that is no date, or lies outside the days a report covers, is no range either.
        start, end = _report_day(params.get("start")), _report_day(params.get("end"))
        if start is not None and end is not None and start <= end and (end - start).days < MAX_RANGE_DAYS:
            return choice, start, end
        choice = "7d"
    if choice == "today":
        return choice, today, today
    if choice == "yesterday":
        return choice, today - timedelta(days=1), today - timedelta(days=1)
    return choice, today - timedelta(days=29 if choice == "30d" else 6), today


def metric_values(visitor: Visitor, level: str, rows: list[Row], columns: list[str],
                  params: QueryParams | None = None) -> dict[int, dict[str, Any]]:
    """Metrics of the chosen date range for the rows on this page only, from the reports service."""
    _, start, end = metric_period(visitor, params)
    return reports.list_metrics(visitor, level, [row.id for row in rows], columns, (start, end))


def shows_accounts(visitor: Visitor) -> bool:
    """Agencies and platform staff see rows of many accounts, so the list names each row's account."""
    return visitor.me.is_platform or visitor.me.role == Role.AGENCY


def account_names(visitor: Visitor, rows: list[Row]) -> dict[int, str]:
    ids = {row.account_id for row in rows}
    if not ids or not shows_accounts(visitor):
        return {}
    found = visitor.session.execute(select(Account.id, Account.company_name).where(Account.id.in_(ids)))
    return {account_id: name for account_id, name in found}


def thumbnails(visitor: Visitor, level: str, rows: list[Row]) -> dict[int, MediaAsset]:
    """Per creative row, the image that stands for it: a video's cover, else its first image, else its icon."""
    if level != "creatives":
        return {}
    wanted: dict[int, tuple[int, int]] = {}  # creative id -> (account id, asset id)
    for row in rows:
        materials = row.obj.materials or {}
        picked = materials.get("cover_image") or next(iter(materials.get("images") or []), None) \
            or materials.get("icon")
        if isinstance(picked, int):
            wanted[row.id] = (row.account_id, picked)
    found: dict[int, MediaAsset] = {}
    for account_id in {account for account, _ in wanted.values()}:
        found |= media.assets_of_account(visitor.session, account_id,
                                         {asset for account, asset in wanted.values() if account == account_id})
    return {row_id: found[asset] for row_id, (_, asset) in wanted.items()
            if asset in found and found[asset].kind == MediaKind.IMAGE}


def sort_links(level: str, query: QueryParams) -> dict[str, tuple[str, str | None]]:
    """Per sortable column: the URL a click on its header opens, and its aria-sort value when the list is sorted
    by it. A first click sorts ascending, the next one descending; the page goes back to the first."""
    current = query.get("sort") or "id"
    current = current if current in SORTS[level] or current in METRIC_COLUMNS else "id"
    descending = query.get("dir", "desc") != "asc"
    # Every chosen column, filter and the date range stay in the link.
    kept = [(k, v) for k, v in query.multi_items() if k not in ("sort", "dir", "page", "notice")]
    links: dict[str, tuple[str, str | None]] = {}
    for column, sort in {**SORTABLE[level], **{c: c for c in METRIC_COLUMNS}}.items():
        active = sort == current
        direction = "desc" if active and not descending else "asc"
        url = f"{PREFIX}/ads/{level}?{urlencode([*kept, ('sort', sort), ('dir', direction)])}"
        links[column] = (url, ("descending" if descending else "ascending") if active else None)
    return links


def chosen_columns(visitor: Visitor, query: QueryParams, *, remember: bool) -> tuple[str, list[str]]:
    """The column set and metric columns: a set's button, else the ticked boxes (custom), else what the user
    chose last time, else the default four. A new choice is remembered for the user when `remember`."""
    column_set = query.get("colset")
    if column_set in COLUMN_SETS:
        chosen = list(COLUMN_SETS[str(column_set)])
    elif "cols" in query:
        chosen = list(dict.fromkeys(c for c in query.getlist("cols") if c in METRIC_COLUMNS))
        column_set = next((name for name, cols in COLUMN_SETS.items() if list(cols) == chosen), "custom")
    else:
        stored = visitor.session.get(ListColumns, visitor.user.id) if visitor.user is not None else None
        if stored is None:
            return "custom", list(DEFAULT_COLUMNS)
        return stored.column_set, [c for c in stored.columns if c in METRIC_COLUMNS]
    if remember and visitor.user is not None:
        stored = visitor.session.get(ListColumns, visitor.user.id)
        try:
            if stored is None:
                visitor.session.add(ListColumns(user_id=visitor.user.id, column_set=column_set, columns=chosen))
                visitor.session.commit()
            elif (stored.column_set, stored.columns) != (column_set, chosen):
                stored.column_set, stored.columns = str(column_set), chosen
                visitor.session.commit()
        except IntegrityError:
            # Another tab stored its choice first: this page still shows what it asked for.
            visitor.session.rollback()
    return str(column_set), chosen


def metric_figures(visitor: Visitor, level: str, ids: list[int], column: str) -> dict[int, float]:
    """Each row's raw figure of one metric over the chosen date range, from the reports service (the same query
    as the list's metric columns, a chunk of ids at a time)."""
    _, start, end = metric_period(visitor)
    dimension, id_filter = reports.LEVEL_DIMENSIONS[level]
    metric = reports.LIST_METRICS[column]
    values: dict[int, float] = {}
    for chunk in range(0, len(ids), MAX_IDS):
        part = ids[chunk:chunk + MAX_IDS]
        try:
            # By account too, as the metric columns are: accounts of several currencies are then no refusal.
            result = report_service.run_report(visitor.session, visitor.me, ReportQuery.model_validate({
                "start_date": start, "end_date": end, "dimensions": [dimension, Dimension.ACCOUNT],
                "metrics": [metric], id_filter: part, "limit": len(part)}), store=get_event_store(visitor.settings),
                max_days=MAX_RANGE_DAYS)
        except DomainError:
            continue
        key = f"{dimension.value}_id"
        for line in result.rows:
            try:
                values[int(line[key])] = float(line[metric.value])
            except (TypeError, ValueError):
                continue  # no figure: ranked as zero
    return values


def metric_sorted_rows(visitor: Visitor, level: str, params: dict[str, str], column: str) -> tuple[list[Row], int]:
    """One page of the list ordered by a metric of the chosen date range: every matching row, however many, is
    ranked by its raw figure (rows without data as zero, ties by id), and only then is the page cut."""
    found, total = list_rows(visitor, level, {**params, "sort": "id", "dir": "asc"}, window=(EVERY_ROW, 0))
    values = metric_figures(visitor, level, [row.id for row in found], column)
    descending = params.get("dir", "desc") != "asc"
    found.sort(key=lambda row: (values.get(row.id, 0.0), row.id), reverse=descending)
    page = max(1, min(_int_param(params.get("page")) or 1, 1_000_000))
    size = _int_param(params.get("size")) or 50
    size = size if size in PAGE_SIZES else 50
    return found[(page - 1) * size:page * size], total


def _list_context(visitor: Visitor, level: str) -> dict[str, Any]:
    params = {k: v for k, v in visitor.request.query_params.items() if k != "notice"}
    if params.get("sort") in METRIC_COLUMNS:
        rows, total = metric_sorted_rows(visitor, level, params, params["sort"])
    else:
        rows, total = list_rows(visitor, level, params)
    column_set, columns = chosen_columns(visitor, visitor.request.query_params, remember=True)
    page = max(1, min(_int_param(params.get("page")) or 1, 1_000_000))
    size = _int_param(params.get("size")) or 50
    size = size if size in PAGE_SIZES else 50
    date_range, start, end = metric_period(visitor)
    return {
        "date_ranges": DATE_RANGES, "date_range": date_range, "period_start": start, "period_end": end,
        "sort_links": sort_links(level, visitor.request.query_params), "show_account": shows_accounts(visitor),
        "accounts": accounts.list_accounts(visitor.session, visitor.me, limit=500) if shows_accounts(visitor) else [],
        "account_names": account_names(visitor, rows), "thumbnails": thumbnails(visitor, level, rows),
        "account_currencies": reports.account_currencies(visitor, [row.account_id for row in rows]),
        "level": level, "rows": rows, "total": total, "page": page, "size": size, "editing": False,
        "errors": FormErrors(),
        "pages": max(1, -(-total // size)), "params": params, "columns": columns,
        "metric_columns": METRIC_COLUMNS, "column_set": column_set, "column_sets": tuple(COLUMN_SETS),
        "metrics": metric_values(visitor, level, rows, columns),
        "serving_statuses": [s.value for s in ServingStatus], "user_statuses": [s.value for s in UserStatus],
        "review_statuses": [s.value for s in ReviewStatus], "placements": [p.value for p in PlacementType],
        "objectives": [o.value for o in MarketingObjective],
        "publishers": inventory.list_publishers(visitor.session, limit=200)[0],
        "list_url": f"{PREFIX}/ads/{level}",
        # Every ticked column stays in the URL, or a later visit would remember only the last one.
        "self_url": f"{PREFIX}/ads/{level}?" + urlencode(
            [(k, v) for k, v in visitor.request.query_params.multi_items() if k != "notice"]),
    }


@router.get("/ads")
def ads_home(visitor: UserDep) -> Response:
    return redirect(f"{PREFIX}/ads/campaigns")


@router.get("/ads/{level}")
def ad_list(level: str, visitor: UserDep) -> Response:
    return render(visitor, "ads/list.html", _list_context(visitor, _level(level)))


# ---------- batch actions ----------


@router.post("/ads/{level}/batch")
def batch_action(level: str, visitor: UserDep, form: FormDep) -> Response:
    """Enable, pause or delete the ticked rows through the batch mutate service; each row succeeds or fails
    alone, and the failures are reported by id."""
    object_type = LEVELS[_level(level)]
    action = forms.text(form, "action")
    if action not in {a.value for a in StatusAction}:
        raise ValidationFailed.single("action", "enum", "choose enable, pause or delete",
                                      limit=[a.value for a in StatusAction], actual=action)
    chosen = [int(v) for v in form.getlist("ids") if isinstance(v, str) and v.isdecimal() and len(v) < 19][:500]
    back = forms.text(form, "back")
    target = back if back.startswith(f"{PREFIX}/ads/") else f"{PREFIX}/ads/{level}"
    if not chosen:
        return redirect(target, request=visitor.request)
    results = campaign_batch.mutate(visitor.session, visitor.me, MutateIn(
        operations=[MutateOperation(object_type=object_type, action=action, id=i)
                    for i in chosen],
        partial_failure=True))
    visitor.session.commit()
    failed = [str(chosen[r.index]) for r in results if not r.ok]
    url = with_notice(target, "batch_done")
    if failed:
        url += "&failed=" + ",".join(failed[:50])
    return redirect(url, request=visitor.request)


# ---------- quick edit (name, budget, bid), inline ----------


def _row(visitor: Visitor, level: str, object_id: int) -> Row:
    session, principal = visitor.session, visitor.me
    if level == "campaigns":
        view = campaign_lists.campaign_view(session, campaigns.get_campaign(session, principal, object_id))
        c = view.campaign
        return Row(level, c.id, c.name, c.account_id, c.status, view.serving_status.value, view.serving_reason,
                   None, view.spend_micros, c, view.ad_group_count)
    if level == "ad-groups":
        g = campaigns.get_ad_group(session, principal, object_id)
        group_view = campaign_lists.ad_group_views(session, [g])[0]
        return Row(level, g.id, g.name, g.account_id, g.status, group_view.serving_status.value,
                   group_view.serving_reason, g.review_status, group_view.spend_micros, g,
                   console.live_creative_counts(session, [g.id]).get(g.id, 0))
    creative = creatives.get_creative(session, principal, object_id)
    status, reason = creatives.creative_serving_status(session, creative)
    return Row(level, creative.id, creative.name, creative.account_id, creative.status, status.value, reason,
               creative.review_status, None, creative)


def _row_fragment(visitor: Visitor, level: str, object_id: int, *, editing: bool = False,
                  errors: FormErrors | None = None, typed: dict[str, str] | None = None,
                  status: int = 200) -> Response:
    row = _row(visitor, level, object_id)
    params = row_list_params(visitor)
    _, columns = chosen_columns(visitor, params, remember=False)
    return render(visitor, "ads/_row.html", {
        "row": row, "level": level, "editing": editing, "errors": errors or FormErrors(), "columns": columns,
        "typed": typed or {}, "show_account": shows_accounts(visitor), "account_names": account_names(visitor, [row]),
        "account_currencies": reports.account_currencies(visitor, [row.account_id]),
        "thumbnails": thumbnails(visitor, level, [row]),
        "metrics": metric_values(visitor, level, [row], columns, params),
    }, status=status)


@router.get("/ads/{level}/{object_id}/quick-edit")
def quick_edit_form(level: str, object_id: IdPath, visitor: UserDep, cancel: str | None = None) -> Response:
    return _row_fragment(visitor, _level(level), object_id, editing=cancel is None)


@router.post("/ads/{level}/{object_id}/quick-edit")
def quick_edit(level: str, object_id: IdPath, visitor: UserDep, form: FormDep) -> Response:
    """Name, budgets and bid: quick edits that never send an object back to review."""
    _level(level)
    session, principal = visitor.session, visitor.me
    # A refused edit shows the values as typed, beside their messages.
    typed = {field: forms.text(form, field) for field in ("name", "bid", "daily_budget", "total_budget")}
    try:
        name = forms.text(form, "name")
        if level == "campaigns":
            campaigns.update_campaign(session, principal, object_id, CampaignUpdate.model_validate({"name": name}))
        elif level == "ad-groups":
            changes: dict[str, Any] = {"name": name, "bid_micros": forms.money(form, "bid", required=True)}
            changes["daily_budget_micros"] = forms.money(form, "daily_budget")
            changes["total_budget_micros"] = forms.money(form, "total_budget")
            campaigns.update_ad_group(session, principal, object_id, AdGroupUpdate.model_validate(changes))
        else:
            creatives.update_creative(session, principal, object_id, CreativeUpdate.model_validate({"name": name}))
        session.commit()
    except ValidationError as exc:
        session.rollback()
        return _row_fragment(visitor, level, object_id, editing=True, errors=FormErrors.from_validation(exc),
                             typed=typed, status=422)
    except DomainError as exc:
        session.rollback()
        if exc.status == 404:
            raise
        return _row_fragment(visitor, level, object_id, editing=True, errors=FormErrors.from_domain(exc),
                             typed=typed, status=exc.status)
    return _row_fragment(visitor, level, object_id)


# ---------- status, copy, delete, submit ----------


def detail_url(level: str, object_id: int) -> str:
    return f"{PREFIX}/ads/{level}/{object_id}"


@router.post("/ads/{level}/{object_id}/status")
def change_status(level: str, object_id: IdPath, visitor: UserDep, form: FormDep) -> Response:
    _level(level)
    action = forms.text(form, "action")
    session, principal = visitor.session, visitor.me
    if action not in {a.value for a in StatusAction}:
        raise ValidationFailed.single("action", "enum", "choose enable, pause or delete",
                                      limit=[a.value for a in StatusAction], actual=action)
    if level == "campaigns":
        campaigns.set_campaign_status(session, principal, object_id, action)
    elif level == "ad-groups":
        campaigns.set_ad_group_status(session, principal, object_id, action)
    else:
        creatives.set_creative_status(session, principal, object_id,
                                      {"enable": "enabled", "pause": "paused", "delete": "deleted"}[action])
    session.commit()
    back = forms.text(form, "back")
    target = back if back.startswith(f"{PREFIX}/ads/") else detail_url(level, object_id)
    return redirect(with_notice(target, "deleted" if action == "delete" else "saved"), request=visitor.request)


@router.post("/ads/{level}/{object_id}/copy")
def copy(level: str, object_id: IdPath, visitor: UserDep, form: FormDep) -> Response:
    """Quick copy (a prefilled draft) or deep copy (with everything below it)."""
    _level(level)
    deep = forms.checkbox(form, "deep")
    session, principal = visitor.session, visitor.me
    if level == "campaigns":
        new_id = campaigns.copy_campaign(session, principal, object_id, deep=deep).id
    elif level == "ad-groups":
        new_id = campaigns.copy_ad_group(session, principal, object_id, deep=deep).id
    else:
        # A creative has nothing below it: both copies are the API's copy (a draft in the same ad group).
        new_id = creatives.copy_creative(session, principal, object_id).id
    session.commit()
    return redirect(with_notice(detail_url(level, new_id), "copied"), request=visitor.request)


def _back_or(form: Any, fallback: str) -> str:
    """The list page a row's button was pressed on (filters, sort and columns kept), else `fallback`."""
    back = forms.text(form, "back")
    return back if back.startswith(f"{PREFIX}/ads/") else fallback


@router.post("/ads/ad-groups/{ad_group_id}/submit")
def submit_ad_group(ad_group_id: IdPath, visitor: UserDep, form: FormDep) -> Response:
    """Submit the ad group and every creative of it that waits to be submitted."""
    session, principal = visitor.session, visitor.me
    group = campaigns.get_ad_group(session, principal, ad_group_id)
    if group.review_status in (ReviewStatus.TO_BE_SUBMITTED, ReviewStatus.REJECTED):
        campaigns.submit_ad_group(session, principal, ad_group_id)
    waiting, _, _ = creatives.list_creatives(session, principal, ad_group_id=ad_group_id, limit=500)
    for creative in waiting:
        if creative.review_status in (ReviewStatus.TO_BE_SUBMITTED, ReviewStatus.REJECTED):
            creatives.submit_creative(session, principal, creative.id)
    session.commit()
    target = _back_or(form, detail_url("ad-groups", ad_group_id))
    return redirect(with_notice(target, "submitted"), request=visitor.request)


@router.post("/ads/creatives/{creative_id}/submit")
def submit_creative(creative_id: IdPath, visitor: UserDep, form: FormDep) -> Response:
    """The API's submit (creatives service); back to the list when pressed on its row."""
    creatives.submit_creative(visitor.session, visitor.me, creative_id)
    visitor.session.commit()
    target = _back_or(form, detail_url("creatives", creative_id))
    return redirect(with_notice(target, "submitted"), request=visitor.request)


# ---------- detail pages ----------


@router.get("/ads/campaigns/{campaign_id}")
def campaign_page(campaign_id: IdPath, visitor: UserDep) -> Response:
    session, principal = visitor.session, visitor.me
    campaign = campaigns.get_campaign(session, principal, campaign_id)
    view = campaign_lists.campaign_view(session, campaign)
    groups, _ = campaign_lists.list_ad_groups(session, principal, campaign_id=campaign_id, limit=200)
    return render(visitor, "ads/campaign.html", {"campaign": campaign, "view": view, "groups": groups})


@router.get("/ads/ad-groups/{ad_group_id}")
def ad_group_page(ad_group_id: IdPath, visitor: UserDep) -> Response:
    session, principal = visitor.session, visitor.me
    group = campaigns.get_ad_group(session, principal, ad_group_id)
    view = campaign_lists.ad_group_views(session, [group])[0]
    campaign = campaigns.get_campaign(session, principal, group.campaign_id)
    found, _, statuses = creatives.list_creatives(session, principal, ad_group_id=ad_group_id, limit=200)
    return render(visitor, "ads/ad_group.html", {
        "group": group, "view": view, "campaign": campaign, "creatives": found, "statuses": statuses,
        "history": review.history(session, "ad_group", ad_group_id),
        "expected_review_at": review.expected_review_time_of(session, "ad_group", ad_group_id),
        "publishers": inventory.publishers_by_id(session, group.publisher_ids or []),
        "spaces": inventory.ad_spaces_by_id(session, group.ad_space_ids or []),
    })


@router.get("/ads/creatives/{creative_id}")
def creative_page(creative_id: IdPath, visitor: UserDep) -> Response:
    session, principal = visitor.session, visitor.me
    creative = creatives.get_creative(session, principal, creative_id)
    status, reason = creatives.creative_serving_status(session, creative)
    return render(visitor, "ads/creative.html", {
        "creative": creative, "serving_status": status.value, "serving_status_reason": reason,
        "group": campaigns.get_ad_group(session, principal, creative.ad_group_id),
        "preview_html": creatives.preview_creative(session, principal, creative_id),
        "history": review.history(session, "creative", creative_id),
    })


@router.get("/ads/creatives/{creative_id}/preview")
def creative_preview(creative_id: IdPath, visitor: UserDep) -> Response:
    html = creatives.preview_creative(visitor.session, visitor.me, creative_id)
    return Response(html, media_type="text/html; charset=utf-8")
