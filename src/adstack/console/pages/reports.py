"""Data analysis (the report builder with chart, table and downloads) and the media center, both from the
reports service; plus the metric figures the overview and the ad list show."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from fastapi import APIRouter, BackgroundTasks, Response
from fastapi.responses import FileResponse
from pydantic import ValidationError
from sqlalchemy import select

from adstack.accounts.models import Account
from adstack.console import forms
from adstack.console.forms import FormErrors
from adstack.console.i18n import N_
from adstack.console.pages import choices
from adstack.console.vocabulary import code_name
from adstack.console.web import PREFIX, ConsoleRoute, FormDep, UserDep, Visitor, redirect, render, with_notice
from adstack.core.deps import IdPath
from adstack.core.errors import DomainError, FieldError, ValidationFailed
from adstack.core.http import validation_fields
from adstack.core.timeutil import utcnow, zone
from adstack.core.vocabulary import IN_APP_EVENTS, PlacementType
from adstack.events.service import get_event_store
from adstack.reports import connector_columns, downloads
from adstack.reports import filters as report_filters
from adstack.reports import jobs as report_jobs
from adstack.reports import media as report_media
from adstack.reports import overview as report_overview
from adstack.reports import service as reports
from adstack.reports.export import CSV_MEDIA_TYPE, XLSX_MEDIA_TYPE, csv_bytes, xlsx_bytes
from adstack.reports.models import (
    DEFAULT_METRICS,
    PLATFORM_METRICS,
    TIME_DIMENSIONS,
    Dimension,
    ExportFormat,
    FilterChoice,
    Granularity,
    JobStatus,
    MediaCenterQuery,
    MediaGroup,
    Metric,
    ReportJobCreate,
    ReportQuery,
    ReportResult,
    event_metric,
)
from adstack.reports.query import SOURCE_LABELS
from adstack.reports.scope import scope_currencies

router = APIRouter(route_class=ConsoleRoute)
QueryT = TypeVar("QueryT", bound=ReportQuery)

PAGE_SIZE = 50
CHART_POINTS = 400
TREND_POINTS = 10_000  # every hour of the longest range a report runs at once
# The ad list's custom columns -> the report metric behind each, so a column and a report never disagree.
# Source: Mi Ads usage guide, 3.3 "Ad List": "Custom columns: Display more metrics data in a list, including basic
# data, in-app data, and video data". In-app data: each of the 22 postback events of the partner integration
# guide ("A total of 22 events are available, including 3 customizable events"), named as the guide names them.
LIST_METRICS: dict[str, Metric] = {
    "impressions": Metric.IMPRESSIONS, "clicks": Metric.CLICKS, "ctr": Metric.CTR, "cost": Metric.COST_MICROS,
    "ecpm": Metric.ECPM_MICROS, "cpc": Metric.CPC_MICROS, "installs": Metric.INSTALLS, "cvr": Metric.CVR,
    "cpa": Metric.CPA_MICROS, "revenue": Metric.REVENUE_MICROS, "roas": Metric.ROAS,
    "video_starts": Metric.VIDEO_STARTS, "video_first_quartiles": Metric.VIDEO_FIRST_QUARTILES,
    "video_midpoints": Metric.VIDEO_MIDPOINTS, "video_third_quartiles": Metric.VIDEO_THIRD_QUARTILES,
    "video_completes": Metric.VIDEO_COMPLETES, "video_completion_rate": Metric.VIDEO_COMPLETION_RATE,
    "in_app_events": Metric.IN_APP_EVENTS,
    **{event_metric(event): Metric(event_metric(event)) for event in IN_APP_EVENTS},
}
LEVEL_DIMENSIONS = {
    "campaigns": (Dimension.CAMPAIGN, "campaign_ids"),
    "ad-groups": (Dimension.AD_GROUP, "ad_group_ids"),
    "creatives": (Dimension.CREATIVE, "creative_ids"),
}
PERCENT_METRICS = {"ctr", "cvr", "video_completion_rate"}
# The ad list's longest custom range for its metric columns (a year); the query covers one page's rows only.
LIST_MAX_DAYS = 366


def local_today(visitor: Visitor) -> date:
    return utcnow().astimezone(zone(visitor.time_zone)).date()


def _day(value: str | None, default: date) -> date | str:
    """A typed day; one that is no date (2025-02-30) stays as typed, for the query's validation to refuse it
    naming its field, rather than being replaced by the default."""
    if not value:
        return default
    try:
        return date.fromisoformat(value)
    except ValueError:
        return value.strip()[:40]


def _iso(day: date | str) -> str:
    return day.isoformat() if isinstance(day, date) else day


# Where a report row's conversions came from (the reports service's codes and its row labels in English).
SOURCE_NAMES: dict[str, str] = {"ads": N_("Ads"), "organic": N_("Organic"), "other": N_("Other sources")}


def account_currencies(visitor: Visitor, account_ids: Any) -> dict[Any, str]:
    """The settlement currency of each of these accounts (keyed by id, so a row's "account_id" finds its
    currency, and a labelled row's none): rows of several accounts show money in their own."""
    ids = sorted({int(i) for i in account_ids if isinstance(i, int)})
    if not ids:
        return {}
    return dict(visitor.session.execute(select(Account.id, Account.currency).where(Account.id.in_(ids))).all())


def mixes_currencies(visitor: Visitor) -> bool:
    """Whether the accounts the visitor reports on settle in more than one currency."""
    return len(scope_currencies(visitor.session, visitor.me)) > 1


def display(visitor: Visitor, key: str, value: Any, currency: str | None, kind: str = "count",
            source: str | None = None) -> str:
    """A report cell as people read it: money in the currency (none known: a sum across currencies, which is
    not shown), ratios as percentages, sources and the rows they label in words, names and ids as they are."""
    if value is None:
        return "—"
    if key == "hour" and kind == "time":
        return hour_label(value)
    if key == "source" and value in SOURCE_NAMES:
        return visitor.gettext(SOURCE_NAMES[value])
    if source in SOURCE_LABELS and value == SOURCE_LABELS[source]:  # an organic or other-sources row's label
        return visitor.gettext(SOURCE_NAMES[source])
    if kind not in ("count", "micros", "ratio"):
        return visitor.gettext("Yes") if value is True else ("" if value is False else str(value))
    fmt = visitor.fmt
    if key.endswith("_micros"):
        return fmt.money(int(value), currency) if currency else "—"
    if key in PERCENT_METRICS:
        return fmt.percent(Decimal(str(value)))
    if key == "roas":
        return fmt.number(Decimal(str(value)).quantize(Decimal("0.01")))
    if isinstance(value, int):
        return fmt.number(value)
    return str(value)


def _number(value: Any) -> float:
    """Chart.js plots floats; money is shown in currency units."""
    return float(Decimal(str(value))) if value is not None else 0.0


# ---------- the ad list's metric columns ----------


def list_metrics(visitor: Visitor, level: str, ids: list[int], columns: list[str],
                 period: tuple[date, date] | None = None) -> dict[int, dict[str, str]]:
    """Figures of `period` (the last 7 days by default) for the rows on one page of the ad list, in one report
    query, each row's money in its account's currency."""
    wanted = [c for c in columns if c in LIST_METRICS]
    if not ids or not wanted or level not in LEVEL_DIMENSIONS:
        return {}
    dimension, id_filter = LEVEL_DIMENSIONS[level]
    today = local_today(visitor)
    start, end = period or (today - timedelta(days=6), today)
    # Each row is one account's, so grouping by account too splits nothing; it lets an agency whose
    # sub-accounts settle in several currencies see every row (the service adds no money across currencies).
    result = reports.run_report(visitor.session, visitor.me, ReportQuery.model_validate({
        "start_date": start, "end_date": end, "dimensions": [dimension, Dimension.ACCOUNT],
        "metrics": [LIST_METRICS[c] for c in wanted], id_filter: ids, "limit": len(ids)}),
        store=get_event_store(visitor.settings), max_days=LIST_MAX_DAYS)
    key = f"{dimension.value}_id"
    currencies = account_currencies(visitor, (row.get("account_id") for row in result.rows))
    out: dict[int, dict[str, str]] = {}
    for row in result.rows:
        if not isinstance(row.get(key), int):
            continue
        currency = result.currency or currencies.get(row.get("account_id"))
        out[int(row[key])] = {c: display(visitor, LIST_METRICS[c].value, row.get(LIST_METRICS[c].value),
                                         currency) for c in wanted}
    return out


# ---------- data analysis ----------


# The guide's filters, picked from lists (console) or given as ids (API): the report field -> its picker's list.
# Source: Mi Ads usage guide, 4 "Data Analysis": "Filter dimensions: Performance/brand, ad campaign
# /group/creative, ad space, country/region, and publisher".
ID_FILTERS: dict[str, str] = {
    "campaign_ids": "campaigns", "ad_group_ids": "ad_groups", "creative_ids": "creatives",
    "ad_space_ids": "ad_spaces", "publisher_ids": "publishers",
}


def _picked(params: Any, name: str) -> list[str]:
    """A picker's values; a link may also carry them comma-separated ("campaign_ids=7,8"). Nothing is dropped
    here: a value that is no id is refused by the report's own validation, naming the field."""
    return [part.strip()[:40] for value in params.getlist(name) if isinstance(value, str)
            for part in value.split(",") if part.strip()]


def _query_from_params(visitor: Visitor, source: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The report builder's form values (from the query string, or a posted form), and the ReportQuery."""
    params = source if source is not None else visitor.request.query_params
    today = local_today(visitor)
    start = _day(params.get("start_date"), today - timedelta(days=6))
    end = _day(params.get("end_date"), today)
    dimensions = [d for d in params.getlist("dimensions") if d in {x.value for x in Dimension}]
    # Money of different currencies is never added up: when the visitor's accounts settle in several, the
    # report has one row per account (the account dimension), rather than being refused.
    if Dimension.ACCOUNT.value not in dimensions and mixes_currencies(visitor):
        dimensions.append(Dimension.ACCOUNT.value)
    metrics = [m for m in params.getlist("metrics") if m in {x.value for x in Metric}] or [
        m.value for m in DEFAULT_METRICS]
    granularity = params.get("granularity") if params.get("granularity") in {g.value for g in Granularity} else "day"
    countries = [c.strip().upper() for c in (params.get("countries") or "").split(",") if c.strip()]
    ids = {name: _picked(params, name) for name in ID_FILTERS}
    objectives = _picked(params, "objectives")
    placements = [p for p in params.getlist("placement_types") if p in {x.value for x in PlacementType}]
    page = choices.page_number(params.get("page"))
    sort = params.get("sort") or None
    # "Columns > Adjust", "Columns > AppsFlyer": the partner connectors' columns (Mi Ads XMP guide, Adjust API).
    extra = [c for c in params.getlist("extra_columns") if c in connector_columns.available_extra_columns()]
    values = {"start_date": _iso(start), "end_date": _iso(end), "granularity": granularity,
              "dimensions": dimensions, "metrics": metrics, "countries": ",".join(countries), **ids,
              "objectives": objectives, "placement_types": placements, "sort": sort or "", "page": page,
              "extra_columns": extra}
    query = {"start_date": start, "end_date": end, "granularity": granularity, "dimensions": dimensions,
             "metrics": metrics, "countries": countries, **ids, "objectives": objectives,
             "placement_types": placements, "sort": sort, "limit": PAGE_SIZE, "offset": (page - 1) * PAGE_SIZE,
             "extra_columns": extra}
    return values, query


def _chart_number(key: str, value: Any) -> float | None:
    """Chart.js plots floats; money is shown in currency units, a missing ratio as a gap."""
    if value is None:
        return None
    number = _number(value)
    return number / 1_000_000 if key.endswith("_micros") else number


def _chart(kind: str, labels: list[str], series: dict[str, list[float | None]], titles: dict[str, str]
           ) -> dict[str, Any]:
    datasets = [{"label": titles.get(m, m), "data": data, "yAxisID": "y" if i == 0 else "y1"}
                for i, (m, data) in enumerate(series.items())]
    scales: dict[str, Any] = {"y": {"beginAtZero": True, "position": "left"}}
    if len(datasets) > 1:
        scales["y1"] = {"beginAtZero": True, "position": "right", "grid": {"drawOnChartArea": False}}
    return {"type": kind, "data": {"labels": labels, "datasets": datasets}, "options": {"scales": scales}}


def chart_config(visitor: Visitor, result: ReportResult, metrics: list[str]) -> dict[str, Any] | None:
    """Bars over the first dimension of a grouped total, one per row of the page, of up to two chosen metrics."""
    dims = [c.key for c in result.columns if c.kind == "dimension"]
    shown = [m for m in metrics if m in {c.key for c in result.columns}][:2]
    if not result.rows or not dims or not shown:
        return None
    name_key = next((c.key for c in result.columns if c.key.endswith("_name")), None)
    labels: list[str] = []
    series: dict[str, list[float | None]] = {m: [] for m in shown}
    for row in result.rows[:CHART_POINTS]:
        label = row.get(name_key) if name_key else None
        labels.append(str(label if label is not None else row.get(dims[0])))
        for m in shown:
            series[m].append(_chart_number(m, row.get(m)) or 0.0)
    return _chart("bar", labels, series, {c.key: column_title(visitor, c.key, c.label) for c in result.columns})


def hour_label(value: Any) -> str:
    """A local hour as the table and the chart show it: 2025-05-20 14:00."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.strftime("%Y-%m-%d %H:%M")


def _time_slots(result: ReportResult, by_hour: bool) -> list[tuple[str, str]]:
    """Every local day (or hour, up to now) of the report's range as (row key, label), so a quiet day shows
    as zero rather than being skipped."""
    if not by_hour:
        days = (result.end_date - result.start_date).days + 1
        return [((result.start_date + timedelta(days=i)).isoformat(),) * 2 for i in range(days)]
    tz = zone(result.time_zone)
    first = datetime.combine(result.start_date, time(0), tzinfo=tz).timestamp()
    after = datetime.combine(result.end_date + timedelta(days=1), time(0), tzinfo=tz).timestamp()
    last = min(after, utcnow().timestamp())
    slots = []
    for stamp in range(int(first), int(last), 3600):  # UTC hours: a local day has its 23, 24 or 25 of them
        moment = datetime.fromtimestamp(stamp, tz=tz)
        slots.append((moment.isoformat(), hour_label(moment)))
    return slots


def trend_chart(visitor: Visitor, trend: ReportResult, metrics: list[str]) -> dict[str, Any] | None:
    """A line over the period's days or hours (the report's own time rows, without other grouping) of up to two
    of the chosen metrics."""
    by_hour = any(c.key == "hour" for c in trend.columns)
    time_key = "hour" if by_hour else "date"
    shown = [m for m in metrics if m in {c.key for c in trend.columns}][:2]
    if not shown:
        return None
    by_key = {str(row.get(time_key)): row for row in trend.rows}
    slots = _time_slots(trend, by_hour)
    known = {key for key, _ in slots}
    slots += [(key, hour_label(key) if by_hour else key) for key in by_key if key not in known]  # never lose a row
    labels = [label for _, label in slots]
    series: dict[str, list[float | None]] = {m: [] for m in shown}
    kinds = {c.key: c.kind for c in trend.columns}
    for key, _label in slots:
        row = by_key.get(key)
        for m in shown:
            value = row.get(m) if row is not None else None
            if value is None and kinds[m] != "ratio":
                value = 0
            series[m].append(_chart_number(m, value))
    return _chart("line", labels, series, {c.key: column_title(visitor, c.key, c.label) for c in trend.columns})


def report_chart(visitor: Visitor, report_query: ReportQuery, result: ReportResult, metrics: list[str]
                 ) -> dict[str, Any] | None:
    """A chart for every view: bars per row when a total is grouped; otherwise the period's trend by day (the
    day and total views) or by hour (the hour view), with the report's own filters."""
    grouped = any(d not in TIME_DIMENSIONS for d in report_query.dimensions)
    if report_query.granularity == Granularity.TOTAL and grouped:
        return chart_config(visitor, result, metrics)
    by_hour = report_query.granularity == Granularity.HOUR or Dimension.HOUR in report_query.dimensions
    trend_query = report_query.model_copy(update={
        "granularity": Granularity.HOUR if by_hour else Granularity.DAY, "dimensions": [], "extra_columns": [],
        "sort": None, "limit": TREND_POINTS, "offset": 0})
    whole = not report_query.dimensions and report_query.granularity != Granularity.TOTAL \
        and not report_query.extra_columns
    if whole and report_query.sort is None and result.offset == 0 and result.total_rows <= len(result.rows):
        trend = result  # the table already holds every time row, in time order
    else:
        try:
            trend = reports.run_report(visitor.session, visitor.me, trend_query,
                                       store=get_event_store(visitor.settings))
        except DomainError:
            return None
    return trend_chart(visitor, trend, metrics)


def partner_column_groups() -> list[tuple[str, list[tuple[str, str]]]]:
    """The connectors' report columns by partner, as (partner name, [(key, label)])."""
    groups: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    for source, column in connector_columns.available_extra_columns().values():
        name = getattr(source, "display_name", source.name)
        groups.setdefault(source.name, (name, []))[1].append((column.key, column.label))
    return list(groups.values())


def picker_options(visitor: Visitor, report_query: ReportQuery | None) -> dict[str, list[tuple[str, str]]]:
    """Each filter's (value, label) options: only what the visitor may see; for agencies and staff each object
    names its account."""
    found = report_filters.filter_choices(visitor.session, visitor.me, chosen=report_query)
    account_names = {a.id: a.company_name for a in choices.account_choices(visitor)}
    deleted = visitor.gettext(N_("deleted"))

    def label(choice: FilterChoice) -> str:
        text = f"{choice.name} · {choice.id}"
        if choice.account_id is not None and account_names and choice.account_id != visitor.me.account_id:
            text += f" · {account_names.get(choice.account_id, choice.account_id)}"
        return f"{text} ({deleted})" if choice.deleted else text

    options = {field: [(str(c.id), label(c)) for c in getattr(found, kind)] for field, kind in ID_FILTERS.items()}
    options["objectives"] = [(o, code_name(o, visitor.language)) for o in found.objectives]
    return options


@router.get("/reports")
def report_builder(visitor: UserDep) -> Response:
    values, query = _query_from_params(visitor)
    errors = FormErrors()
    result: ReportResult | None = None
    report_query: ReportQuery | None = None
    status = 200
    try:
        report_query = ReportQuery.model_validate(query)
        result = reports.run_report(visitor.session, visitor.me, report_query, store=get_event_store(visitor.settings))
    except ValidationError as exc:
        errors, status = FormErrors.from_validation(exc), 422
    except DomainError as exc:
        if exc.status == 404:
            raise
        errors, status = FormErrors.from_domain(exc), exc.status
    cells: list[list[str]] = []
    totals: list[str] = []
    if result is not None:
        # Rows of accounts in several currencies (result.currency None): each row's money in its account's.
        currencies = account_currencies(visitor, (row.get("account_id") for row in result.rows))
        cells = [[display(visitor, c.key, row.get(c.key), result.currency or currencies.get(row.get("account_id")),
                          c.kind, row.get("source")) for c in result.columns]
                 for row in result.rows]
        totals = [display(visitor, c.key, result.totals.get(c.key), result.currency, c.kind)
                  if c.key in result.totals else "" for c in result.columns]
    download = visitor.request.url.query
    return render(visitor, "reports/reports.html", {
        "values": values, "errors": errors, "result": result, "cells": cells, "totals": totals,
        "titles": [column_title(visitor, c.key, c.label) for c in result.columns] if result else [],
        "chart": report_chart(visitor, report_query, result, values["metrics"])
        if result and report_query else None,
        "pickers": picker_options(visitor, report_query),
        "dimensions": [d.value for d in Dimension],
        "all_metrics": [m.value for m in Metric if visitor.me.is_platform or m not in PLATFORM_METRICS],
        "granularities": [g.value for g in Granularity], "placements": [p.value for p in PlacementType],
        "partner_columns": partner_column_groups(),
        "pages": max(1, -(-(result.total_rows if result else 0) // PAGE_SIZE)), "download_query": download,
        "too_long": report_query is not None
        and (report_query.end_date - report_query.start_date).days >= reports.SYNC_MAX_DAYS,
        "mixed_currencies": result is not None and result.currency is None
        and any(c.kind == "micros" for c in result.columns),
    }, status=status)


# Report column keys -> catalog titles (the reports service's own labels are English and speak of micros).
COLUMN_TITLES: dict[str, str] = {
    "date": N_("Date"), "hour": N_("Hour"), "account_id": N_("Account ID"), "account_name": N_("Account name"),
    "campaign_id": N_("Campaign ID"), "campaign_name": N_("Campaign name"), "ad_group_id": N_("Ad group ID"),
    "ad_group_name": N_("Ad group name"), "creative_id": N_("Creative ID"), "creative_name": N_("Creative name"),
    "ad_space_id": N_("Ad space ID"), "ad_space_name": N_("Ad space name"), "publisher_id": N_("Publisher ID"),
    "publisher_name": N_("Publisher name"), "country": N_("Country or region"), "placement_type": N_("Placement"),
    "objective": N_("Objective"), "event": N_("Event"), "source": N_("Source"),
    "impressions": N_("Impressions"), "clicks": N_("Clicks"), "ctr": N_("CTR"), "cost_micros": N_("Cost"),
    "ecpm_micros": N_("eCPM"), "cpc_micros": N_("CPC"), "cpa_micros": N_("CPA"), "installs": N_("Installs"),
    "cvr": N_("CVR"), "revenue_micros": N_("Revenue"), "roas": N_("ROAS"), "requests": N_("Requests"),
    "conversions": N_("Conversions"), "video_starts": N_("Video starts"), "video_completes": N_("Video completes"),
    "video_completion_rate": N_("Completion rate"), "media_cost_micros": N_("Media cost"),
    "media_cost_impressions": N_("Impressions with media cost"), "in_app_events": N_("In-app events"),
    "video_first_quartiles": N_("Video 1/4"), "video_midpoints": N_("Video 1/2"),
    "video_third_quartiles": N_("Video 3/4"), "invalid": N_("Invalid traffic"),
    "ad_requests": N_("Ad requests"), "filled_ad_requests": N_("Filled ad requests"), "fill_rate": N_("Fill rate"),
    "organic_installs": N_("Organic installs"), "other_installs": N_("Installs from other sources"),
    "click_through_installs": N_("Click-through installs"),
    "view_through_installs": N_("View-through installs"),
    "cpa_conversions": N_("CPA conversions"),
    "revenue_d0_micros": N_("Revenue, day 0"),
    "revenue_d7_micros": N_("Revenue, days 0-7"),
    "roas_d0": N_("ROAS, day 0"),
    "roas_d7": N_("ROAS, days 0-7"),
    "flagged_installs": N_("Flagged installs"),
    "flagged_in_app_events": N_("Flagged in-app events"),
    "unverified_installs": N_("Unverified installs"),
    "unverified_in_app_events": N_("Unverified in-app events"),
    "refunds": N_("Refund events"),
    "organic_in_app_events": N_("Organic in-app events"),
    "other_in_app_events": N_("In-app events from other sources"),
    "organic_revenue_micros": N_("Organic revenue"),
    "other_revenue_micros": N_("Revenue from other sources"),
}


def column_title(visitor: Visitor, key: str, label: str) -> str:
    """A report column's heading in the visitor's language; a deleted-flag column reads "… deleted"."""
    if key in COLUMN_TITLES:
        return visitor.gettext(COLUMN_TITLES[key])
    if key.endswith("_deleted"):
        return visitor.gettext(N_("Deleted"))
    if key.startswith("event_"):
        return code_name(key.removeprefix("event_").upper(), visitor.language)
    return label.replace(" (micros)", "")


def _export_cell(value: Any, kind: str) -> Any:
    """Money in currency units (a number Excel can add up), never micros."""
    if value is None:
        return None
    return downloads.money_units(value) if kind == "micros" else value


def _validated(schema: type[QueryT], query: dict[str, Any]) -> QueryT:
    """The report as asked, or a 422 naming each refused field and its rule (a picked id that is no number)."""
    try:
        return schema.model_validate(query)
    except ValidationError as exc:
        raise ValidationFailed("the report has invalid fields", fields=[
            FieldError(item["field"], item["rule"], item.get("message", ""), limit=item.get("limit"))
            for item in validation_fields(list(exc.errors()))]) from None


@router.get("/reports/download")
def download_report(visitor: UserDep, format: str = "csv") -> Response:
    """Every row and the totals, as CSV (UTF-8 with a byte-order mark, so Excel reads Chinese names) or XLSX;
    headings in the visitor's language, money in the report's currency."""
    export_format = choices.enum_or_default(ExportFormat, format, ExportFormat.CSV)
    _values, query = _query_from_params(visitor)
    report_query = _validated(ReportQuery, query).model_copy(update={"limit": downloads.EXPORT_MAX_ROWS, "offset": 0})
    result = reports.run_report(visitor.session, visitor.me, report_query, store=get_event_store(visitor.settings))
    if result.total_rows > downloads.EXPORT_MAX_ROWS:
        raise ValidationFailed.single("end_date", "max_export_rows", "too many rows to download at once",
                                      limit=downloads.EXPORT_MAX_ROWS, actual=result.total_rows)
    # Rows of several currencies (by account) name no currency rather than a wrong one.
    currency = result.currency
    header = [column_title(visitor, c.key, c.label) + (f" ({currency})" if c.kind == "micros" and currency else "")
              for c in result.columns]
    rows = [[_export_cell(row.get(c.key), c.kind) for c in result.columns] for row in result.rows]
    if result.totals:
        totals = [_export_cell(result.totals.get(c.key), c.kind) if c.key in result.totals else None
                  for c in result.columns]
        totals[0] = visitor.gettext(N_("Total"))
        rows.append(totals)
    filename = f"report-{report_query.start_date}-{report_query.end_date}.{export_format.value}"
    if export_format == ExportFormat.CSV:
        body = csv_bytes(header, rows)  # with the UTF-8 byte-order mark Excel needs for Chinese names
        media_type = CSV_MEDIA_TYPE
    else:
        body, media_type = xlsx_bytes(header, rows), XLSX_MEDIA_TYPE
    return Response(body, media_type=media_type,
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


# ---------- report jobs: long ranges run in the background ----------


@router.post("/reports/jobs")
def start_job(visitor: UserDep, form: FormDep, background: BackgroundTasks) -> Response:
    """The report as it is set up, for a range too long to run at once: queued, then written to a file."""
    _values, query = _query_from_params(visitor, form)
    query.pop("offset")
    export_format = choices.enum_or_default(ExportFormat, forms.text(form, "format"), ExportFormat.CSV)
    job = report_jobs.create_job(visitor.session, visitor.me, _validated(
        ReportJobCreate, {**query, "limit": 1_000_000, "format": export_format}))
    visitor.session.commit()
    background.add_task(report_jobs.run_job, visitor.request.app.state.session_factory, job.id,
                        settings=visitor.settings, store=get_event_store(visitor.settings))
    return redirect(with_notice(f"{PREFIX}/reports/jobs", "requested"))


@router.get("/reports/jobs")
def jobs_page(visitor: UserDep) -> Response:
    jobs = report_jobs.list_jobs(visitor.session, visitor.me, limit=50)
    running = any(j.status in (JobStatus.QUEUED.value, JobStatus.RUNNING.value) for j in jobs)
    template = "reports/_jobs.html" if visitor.request.headers.get("HX-Request") == "true" else "reports/jobs.html"
    return render(visitor, template, {"jobs": jobs, "running": running})


@router.get("/reports/jobs/{job_id}/download")
def download_job(job_id: IdPath, visitor: UserDep) -> Response:
    job = report_jobs.get_job(visitor.session, visitor.me, job_id)
    path = report_jobs.job_file(visitor.settings, job)
    media_type = CSV_MEDIA_TYPE if job.format == ExportFormat.CSV.value else XLSX_MEDIA_TYPE
    return FileResponse(path, media_type=media_type, filename=f"report-{job.id}.{job.format}")


# ---------- overview figures ----------


def overview_figures(visitor: Visitor) -> dict[str, Any] | None:
    """Spend today, 14-day trends and the split by placement and country, for an account's home page."""
    if visitor.me.account_id is None:
        return None
    try:
        data = report_overview.overview(visitor.session, visitor.me, account_id=visitor.me.account_id, days=14,
                                        store=get_event_store(visitor.settings))
    except DomainError:
        return None
    labels = [p.date.isoformat()[5:] for p in data.trend]
    return {
        "spend_today_micros": data.today_spend_micros, "yesterday_micros": data.yesterday_spend_micros,
        "currency": data.currency, "today_impressions": data.today_impressions, "today_clicks": data.today_clicks,
        "today_installs": data.today_installs,
        "trend_chart": {"type": "line", "data": {"labels": labels, "datasets": [
            {"label": visitor.gettext("Impressions"), "data": [p.impressions for p in data.trend], "yAxisID": "y"},
            {"label": visitor.gettext("Clicks"), "data": [p.clicks for p in data.trend], "yAxisID": "y1"}]},
            "options": {"scales": {"y": {"beginAtZero": True}, "y1": {"beginAtZero": True, "position": "right",
                                                                      "grid": {"drawOnChartArea": False}}}}},
        "cost_chart": {"type": "bar", "data": {"labels": labels, "datasets": [
            {"label": visitor.gettext("Cost"), "data": [p.cost_micros / 1_000_000 for p in data.trend],
             "yAxisID": "y"},
            {"label": visitor.gettext("Installs"), "data": [p.installs for p in data.trend], "yAxisID": "y1",
             "type": "line"}]},
            "options": {"scales": {"y": {"beginAtZero": True}, "y1": {"beginAtZero": True, "position": "right",
                                                                      "grid": {"drawOnChartArea": False}}}}},
        "placement_chart": _share_chart(visitor, data.by_placement),
        "country_chart": _share_chart(visitor, data.by_country),
        "has_shares": bool(data.by_placement or data.by_country),
        "sub_accounts": data.sub_accounts,
        "sub_account_totals": _sub_account_totals(data),
    }


def _sub_account_totals(data: Any) -> list[dict[str, Any]]:
    """An agency's sub-accounts added up per currency (amounts of different currencies are never summed)."""
    totals: dict[str, dict[str, Any]] = {}
    for row in data.sub_accounts:
        total = totals.setdefault(row.currency, {"currency": row.currency, "accounts": 0, "balance_micros": 0,
                                                 "today_spend_micros": 0, "serving_ad_groups": 0})
        total["accounts"] += 1
        total["balance_micros"] += row.balance_micros
        total["today_spend_micros"] += row.today_spend_micros
        total["serving_ad_groups"] += row.serving_ad_groups
    return list(totals.values())


def _share_chart(visitor: Visitor, shares: list[Any]) -> dict[str, Any]:
    """Shares of cost; of impressions while nothing has cost anything yet."""
    by_cost = any(s.cost_micros for s in shares)
    return {"type": "doughnut", "data": {
        "labels": [s.key for s in shares] or [visitor.gettext("No data yet")],
        "datasets": [{"label": visitor.gettext("Cost") if by_cost else visitor.gettext("Impressions"),
                      "data": [s.cost_micros / 1_000_000 if by_cost else s.impressions for s in shares] or [1]}]}}


# ---------- media center ----------


@router.get("/media-center")
def media_center(visitor: UserDep) -> Response:
    params = visitor.request.query_params
    today = local_today(visitor)
    values = {
        "start_date": _iso(_day(params.get("start_date"), today - timedelta(days=6))),
        "end_date": _iso(_day(params.get("end_date"), today)),
        "group_by": params.get("group_by") if params.get("group_by") in {g.value for g in MediaGroup} else "ad_space",
        "package": (params.get("package") or "")[:255], "source": (params.get("source") or "")[:200],
        "media_id": params.get("media_id") or "", "country": (params.get("country") or "").upper()[:2],
        "account_id": (params.get("account_id") or "")[:19],
    }
    page = choices.page_number(params.get("page"))
    errors = FormErrors()
    data = None
    try:
        query = MediaCenterQuery.model_validate({
            **{k: v for k, v in values.items() if v},
            "limit": PAGE_SIZE, "offset": (page - 1) * PAGE_SIZE,
        })
        data = report_media.media_center(visitor.session, visitor.me, query, store=get_event_store(visitor.settings))
    except ValidationError as exc:
        errors = FormErrors.from_validation(exc)
    except DomainError as exc:
        if exc.status == 404:
            raise
        errors = FormErrors.from_domain(exc)
    return render(visitor, "reports/media_center.html", {
        "values": values, "errors": errors, "data": data, "page": page,
        "account_choices": choices.account_choices(visitor),
        "pages": max(1, -(-(data.total_rows if data else 0) // PAGE_SIZE)),
    })
