"""Reports, report jobs, the overview and the media center, read from the event store's hourly rollup.

`run_report` is the one entry point the API, the console and connectors call. Measurement-partner
connectors add columns with `register_column_source`: their values are keyed by campaign and local day,
and by ad group, creative and country where the report groups by them, and joined onto report rows
grouped by date, account, campaign, ad group, creative and/or country.
"""

from __future__ import annotations

import importlib
import logging
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from adstack.accounts import service as accounts
from adstack.accounts.models import Account, AccountType, Principal, Role
from adstack.core.errors import FieldError, Forbidden, NotFound, ValidationFailed
from adstack.core.money import MICROS_PER_UNIT
from adstack.core.settings import Settings, get_settings
from adstack.core.timeutil import utcnow, zone
from adstack.events.schema import AD_SPACE_APPS_TABLE
from adstack.events.service import EventStore, get_event_store
from adstack.finance import service as finance
from adstack.reports import query as sql
from adstack.reports.export import CsvWriter, TableWriter, XlsxWriter, csv_bytes, xlsx_bytes
from adstack.reports.models import (
    DEFAULT_METRICS,
    MAX_IDS,
    PLATFORM_METRICS,
    SUPPLY_METRICS,
    ColumnRead,
    DailyPoint,
    Dimension,
    ExportFormat,
    FilterChoice,
    Granularity,
    JobStatus,
    MediaCenterQuery,
    MediaCenterRead,
    MediaGroup,
    MediaRow,
    Metric,
    OverviewRead,
    Rejection,
    ReportFilterChoices,
    ReportJob,
    ReportJobCreate,
    ReportQuery,
    ReportResult,
    ReviewCount,
    Share,
    SubAccountFigures,
)
from adstack.review import service as review
from adstack.review.models import ReviewItem

log = logging.getLogger("adstack.reports")

SYNC_MAX_DAYS = 92  # longer ranges run as report jobs
JOB_MAX_DAYS = 3 * 366
EXPORT_MAX_ROWS = 100_000
JOB_FILE_TTL = timedelta(days=7)
JOB_CHUNKS = 20

ColumnKind = Literal["count", "micros", "ratio"]


# ---------- connector columns ----------


@dataclass(frozen=True)
class ExtraColumn:
    """A column a connector adds, e.g. key "adjust_installs", label "Adjust installs"."""

    key: str
    label: str
    kind: ColumnKind
    additive: bool = True  # may be summed over days and campaigns (installs yes, ROAS no)
    compare_to: Metric | None = None  # our metric; the report then adds `<key>_diff` = theirs - ours


class PartnerKey(NamedTuple):
    """What a partner's figures are for: a campaign and local day, and the ad group, creative and country when
    the report groups by them (None: over all of them, or the partner did not say)."""

    campaign_id: int
    day: date
    ad_group_id: int | None = None
    creative_id: int | None = None
    country: str | None = None


# Report dimension -> the PartnerKey field a source breaks its figures down by when the report groups by it.
PARTNER_GRAIN: dict[Dimension, str] = {Dimension.AD_GROUP: "ad_group_id", Dimension.CREATIVE: "creative_id",
                                       Dimension.COUNTRY: "country"}


class ColumnSource(Protocol):
    """A partner's numbers per campaign and local day (the account's zone), for report columns."""

    name: str

    def columns(self) -> Sequence[ExtraColumn]: ...

    def fetch(self, session: Session, *, account_ids: list[int] | None, campaign_ids: list[int],
              start_date: date, end_date: date, by: frozenset[str] = frozenset()
              ) -> Mapping[tuple[Any, ...], Mapping[str, int | Decimal | None]]:
        """Values keyed by PartnerKey (or a (campaign_id, local date) pair), broken down by the PartnerKey
        fields in `by` and summed over the others; money as int micros, ratios as Decimal."""
        ...


_column_sources: dict[str, ColumnSource] = {}


def register_column_source(source: ColumnSource) -> None:
    """Make a connector's columns available as `extra_columns` of every report (idempotent by name)."""
    _column_sources[source.name] = source


def unregister_column_source(name: str) -> None:
    _column_sources.pop(name, None)


def available_extra_columns() -> dict[str, tuple[ColumnSource, ExtraColumn]]:
    return {c.key: (s, c) for s in _column_sources.values() for c in s.columns()}


# ---------- scope: who may see which accounts, in which zone and currency ----------


@dataclass(frozen=True)
class Scope:
    account_ids: list[int] | None  # None = every account (platform staff, no filter)
    time_zone: str
    currency: str | None


def _scope(session: Session, principal: Principal, requested: Sequence[int], *, time_zone: str | None,
           per_account: bool, field: str = "account_ids") -> Scope:
    visible = accounts.visible_account_ids(session, principal)
    if requested:
        for account_id in requested:
            accounts.ensure_account_visible(session, principal, account_id)
        ids: list[int] | None = sorted(set(requested))
    else:
        ids = None if visible is None else sorted(visible)
    stmt = select(Account.id, Account.currency, Account.time_zone)
    if ids is not None:
        stmt = stmt.where(Account.id.in_(ids))
    found = {row.id: (row.currency, row.time_zone) for row in session.execute(stmt)}
    if ids is not None and requested:
        missing = [i for i in ids if i not in found]
        if missing:
            raise NotFound(f"account {missing[0]} not found")
    currencies = {currency for currency, _ in found.values()}
    if len(currencies) > 1 and not per_account:
        raise ValidationFailed.single(
            field, "same_currency", "these accounts settle in different currencies; report them one by one "
            "(add the account dimension) or choose accounts of one currency", limit=sorted(currencies))
    if time_zone is None:
        if ids is not None and len(ids) == 1 and ids[0] in found:
            time_zone = found[ids[0]][1]
        elif principal.account_id is not None:
            own = session.get(Account, principal.account_id)
            time_zone = own.time_zone if own is not None else "UTC"
        else:
            time_zone = "UTC"
    return Scope(ids, time_zone, currencies.pop() if len(currencies) == 1 else None)


# ---------- names from the control plane ----------


# Dimension -> (module, model, name attribute). Looked up lazily so reports work before every domain exists.
_NAMED: dict[Dimension, tuple[str, str, str]] = {
    Dimension.ACCOUNT: ("adstack.accounts.models", "Account", "company_name"),
    Dimension.CAMPAIGN: ("adstack.campaigns.models", "Campaign", "name"),
    Dimension.AD_GROUP: ("adstack.campaigns.models", "AdGroup", "name"),
    Dimension.CREATIVE: ("adstack.creatives.models", "Creative", "name"),
    Dimension.AD_SPACE: ("adstack.inventory.models", "AdSpace", "name"),
    Dimension.PUBLISHER: ("adstack.inventory.models", "Publisher", "name"),
}


def _model(dimension: Dimension) -> tuple[Any, str] | None:
    module_name, model_name, attribute = _NAMED[dimension]
    try:
        model = getattr(importlib.import_module(module_name), model_name, None)
    except ImportError:
        return None
    return (model, attribute) if model is not None else None


def resolve_names(session: Session, dimension: Dimension, ids: set[int]) -> dict[int, tuple[str | None, bool]]:
    """id -> (name, deleted). Soft-deleted objects keep their name and are marked; vanished ones too."""
    wanted = {i for i in ids if i}
    if not wanted:
        return {}
    found = _model(dimension)
    if found is None:
        return {}
    model, attribute = found
    names: dict[int, tuple[str | None, bool]] = {i: (None, True) for i in wanted}
    for start in range(0, len(wanted), 1000):
        chunk = sorted(wanted)[start:start + 1000]
        for obj in session.scalars(select(model).where(model.id.in_(chunk))):
            deleted = getattr(obj, "deleted_at", None) is not None or getattr(obj, "status", "") == "deleted"
            names[obj.id] = (getattr(obj, attribute), deleted)
    return names


# ---------- running a report ----------


DIMENSION_LABELS: dict[str, str] = {
    "date": "Date", "hour": "Hour", "account_id": "Account ID", "campaign_id": "Campaign ID",
    "ad_group_id": "Ad group ID", "creative_id": "Creative ID", "country": "Country or region",
    "ad_space_id": "Ad space ID", "publisher_id": "Publisher ID", "placement_type": "Placement type",
    "objective": "Objective", "event": "Event",
}
METRIC_LABELS: dict[str, str] = {
    "ctr": "CTR", "cvr": "CVR", "roas": "ROAS", "ecpm_micros": "eCPM (micros)", "cpc_micros": "CPC (micros)",
    "cpa_micros": "CPA (micros)", "cost_micros": "Cost (micros)", "revenue_micros": "Revenue (micros)",
    "media_cost_micros": "Media cost (micros)", "media_cost_impressions": "Impressions with media cost",
    "roas_d0": "ROAS D0", "roas_d7": "ROAS D7", "revenue_d0_micros": "Revenue D0 (micros)",
    "revenue_d7_micros": "Revenue D7 (micros)",
}


def _metric_kind(metric: str) -> Literal["count", "micros", "ratio"]:
    formula = sql.DERIVED.get(metric)
    if formula is not None:
        return "micros" if formula.money else "ratio"
    return "micros" if metric.endswith("_micros") else "count"


def _label(metric: str) -> str:
    return METRIC_LABELS.get(metric) or metric.replace("_", " ").capitalize()


def _parse_sort(query: ReportQuery, dims: list[Dimension], metrics: list[str]) -> tuple[str, bool] | None:
    columns = {sql.DIMENSION_SQL[d][0]: d for d in dims}
    aliases = {d.value: sql.DIMENSION_SQL[d][0] for d in dims}
    if query.sort is None:
        if Dimension.DATE in dims or Dimension.HOUR in dims:
            return None  # time first, then the other dimensions
        return (Metric.COST_MICROS.value, True) if dims else None
    descending = query.sort.startswith("-")
    key = query.sort.lstrip("-")
    key = aliases.get(key, key)
    if key in columns or key in metrics:
        return key, descending
    allowed = sorted(set(columns) | set(metrics))
    raise ValidationFailed.single("sort", "allowed_values", f"sort by one of the report's columns: {allowed}",
                                  limit=allowed, actual=query.sort)


@dataclass
class _Prepared:
    query: ReportQuery
    scope: Scope
    dims: list[Dimension]
    metrics: list[str]
    sort: tuple[str, bool] | None
    extras: list[tuple[ColumnSource, ExtraColumn]]
    params: dict[str, Any] = field(default_factory=dict)  # extra SQL parameters (campaign objectives)


def _cpa_params(session: Session, metrics: list[str], sort: tuple[str, bool] | None, scope: Scope) -> dict[str, Any]:
    """The CPA ad groups that pay for an in-app event, when the report shows CPA or its conversions."""
    wanted = {Metric.CPA_MICROS.value, Metric.CPA_CONVERSIONS.value}
    if not wanted & {*metrics, *([sort[0]] if sort else [])}:
        return {}
    from adstack.campaigns.models import AdGroup

    stmt = select(AdGroup.id, AdGroup.conversion_event).where(
        AdGroup.bid_type == "cpa", AdGroup.conversion_event.is_not(None), AdGroup.conversion_event != "INSTALL")
    if scope.account_ids is not None:
        stmt = stmt.where(AdGroup.account_id.in_(scope.account_ids))
    return sql.cpa_params({int(i): str(e) for i, e in session.execute(stmt)})


def _objective_params(session: Session, query: ReportQuery, dims: list[Dimension], scope: Scope) -> dict[str, Any]:
    """Campaign objectives from the control plane, when the report groups or filters by objective."""
    if Dimension.OBJECTIVE not in dims and not query.objectives:
        return {}
    from adstack.campaigns.models import Campaign

    stmt = select(Campaign.id, Campaign.objective)
    if scope.account_ids is not None:
        stmt = stmt.where(Campaign.account_id.in_(scope.account_ids))
    return sql.objective_params({int(i): str(o) for i, o in session.execute(stmt)})


JOINABLE_DIMENSIONS = frozenset({Dimension.DATE, Dimension.ACCOUNT, Dimension.CAMPAIGN, *PARTNER_GRAIN})


# What an ad request is known by before any ad is chosen.
SUPPLY_REPORT_DIMENSIONS = frozenset({Dimension.DATE, Dimension.HOUR, Dimension.COUNTRY, Dimension.AD_SPACE,
                                      Dimension.PUBLISHER, Dimension.PLACEMENT_TYPE})


def _prepare(session: Session, principal: Principal, query: ReportQuery, *, max_days: int) -> _Prepared:
    days = (query.end_date - query.start_date).days + 1
    if days > max_days:
        raise ValidationFailed.single(
            "end_date", "max_range_days",
            f"a report covers at most {max_days} days here; run longer ranges as a report job "
            "(POST /api/v1/reports/jobs)" if max_days == SYNC_MAX_DAYS else f"at most {max_days} days",
            limit=max_days, actual=days)
    dims = query.effective_dimensions()
    scope = _scope(session, principal, query.account_ids, time_zone=query.time_zone,
                   per_account=Dimension.ACCOUNT in dims)
    metrics = list(dict.fromkeys(m.value for m in (query.metrics or DEFAULT_METRICS)))
    if not principal.is_platform:
        hidden = sorted(m for m in metrics if m in PLATFORM_METRICS or m in SUPPLY_METRICS)
        if hidden:
            raise Forbidden(f"{hidden[0]} is visible to platform staff only", fields=[FieldError(
                field="metrics", rule="platform_only", message="visible to platform staff only", actual=hidden)])
    supply = sorted(m for m in metrics if m in SUPPLY_METRICS)
    demand_dims = sorted(d.value for d in dims if d not in SUPPLY_REPORT_DIMENSIONS)
    if supply and demand_dims:
        raise ValidationFailed.single(
            "metrics", "supply_dimensions",
            f"{supply[0]} counts ad requests, which belong to no account, campaign or ad: group it by "
            "date, hour, country, ad space, publisher or placement type",
            limit=sorted(d.value for d in SUPPLY_REPORT_DIMENSIONS), actual=demand_dims)
    extras: list[tuple[ColumnSource, ExtraColumn]] = []
    if query.extra_columns:
        known = available_extra_columns()
        for key in query.extra_columns:
            if key not in known:
                raise ValidationFailed.single("extra_columns", "known_column", f"no connector provides {key!r}",
                                              limit=sorted(known), actual=key)
            extras.append(known[key])
        if not set(dims) <= JOINABLE_DIMENSIONS:
            raise ValidationFailed.single(
                "extra_columns", "joinable_dimensions",
                "partner columns join on campaign, day, ad group, creative and country: group by date, account, "
                "campaign, ad group, creative and country only",
                limit=sorted(d.value for d in JOINABLE_DIMENSIONS))
        for _, column in extras:
            if column.compare_to is not None and column.compare_to.value not in metrics:
                metrics.append(column.compare_to.value)
    sort = _parse_sort(query, dims, metrics)
    params = _objective_params(session, query, dims, scope) | _cpa_params(session, metrics, sort, scope)
    return _Prepared(query, scope, dims, metrics, sort, extras, params)


def _by_source(dims: Sequence[Dimension]) -> bool:
    return any(d not in (Dimension.DATE, Dimension.HOUR) for d in dims)


def _columns(prepared: _Prepared) -> list[ColumnRead]:
    columns: list[ColumnRead] = []
    for dim in prepared.dims:
        key = sql.DIMENSION_SQL[dim][0]
        columns.append(ColumnRead(key=key, label=DIMENSION_LABELS[key],
                                  kind="time" if dim in (Dimension.DATE, Dimension.HOUR) else "dimension"))
        if dim in _NAMED:
            base = key.removesuffix("_id")
            columns.append(ColumnRead(key=f"{base}_name", label=DIMENSION_LABELS[key].removesuffix(" ID") + " name",
                                      kind="text"))
            columns.append(ColumnRead(key=f"{base}_deleted", label=DIMENSION_LABELS[key].removesuffix(" ID")
                                      + " deleted", kind="flag"))
    if _by_source(prepared.dims):
        columns.append(ColumnRead(key="source", label="Source", kind="dimension"))
    columns += [ColumnRead(key=m, label=_label(m), kind=_metric_kind(m)) for m in prepared.metrics]
    for _, extra in prepared.extras:
        columns.append(ColumnRead(key=extra.key, label=extra.label, kind=extra.kind))
        if extra.compare_to is not None:
            columns.append(ColumnRead(key=f"{extra.key}_diff", label=f"{extra.label} - ours", kind=extra.kind))
    return columns


def _dimension_value(dim: Dimension, raw: Any, tz_name: str) -> Any:
    if dim == Dimension.HOUR:
        return datetime.fromtimestamp(int(raw), tz=zone(tz_name)).isoformat()
    return raw


@dataclass
class _Fetched:
    rows: list[dict[str, Any]]  # d_<dimension> values and m_<metric> sums
    totals: dict[str, int]  # sums over every row, not just the page
    total_rows: int
    by_source: bool = False


def _fetch(store: EventStore, query: ReportQuery, *, scope: Scope, metrics: list[str],
           sort: tuple[str, bool] | None, limit: int | None, offset: int, where: Sequence[str] = (),
           params: Mapping[str, Any] | None = None) -> _Fetched:
    def run(page_limit: int | None, page_offset: int) -> tuple[sql.Plan, list[dict[str, Any]]]:
        plan = sql.build(query, account_ids=scope.account_ids, tz_name=scope.time_zone, metrics=metrics, sort=sort,
                         limit=page_limit, offset=page_offset, where=where, params=params)
        return plan, store.query(plan.sql, plan.params).dicts()

    plan, rows = run(limit, offset)
    by_source = plan.by_source
    if not plan.grouped:
        sums = {m: int(rows[0].get(f"m_{m}") or 0) for m in plan.base_metrics} if rows else {}
        return _Fetched(rows, sums, len(rows))
    summary = rows
    if not rows and offset > 0:
        _, summary = run(1, 0)  # past the last page: the count and totals still hold
    if not summary:
        return _Fetched([], {}, 0, by_source)
    totals = {m: int(summary[0].get(f"t_{m}") or 0) for m in plan.base_metrics}
    return _Fetched(rows, totals, int(summary[0]["n_rows"]), by_source)


def _sums(values: Mapping[str, Any]) -> dict[str, int]:
    return {k[2:]: int(v or 0) for k, v in values.items() if k.startswith("m_")}


def _execute(store: EventStore, prepared: _Prepared, query: ReportQuery, *, limit: int | None, offset: int
             ) -> tuple[list[dict[str, Any]], dict[str, Any], int]:
    """Rows of one page (dimensions and metrics, names not yet resolved), the totals and the row count."""
    fetched = _fetch(store, query, scope=prepared.scope, metrics=prepared.metrics, sort=prepared.sort, limit=limit,
                     offset=offset, params=prepared.params)
    rows: list[dict[str, Any]] = []
    for values in fetched.rows:
        row = {sql.DIMENSION_SQL[d][0]: _dimension_value(d, values[f"d_{sql.DIMENSION_SQL[d][0]}"],
                                                         prepared.scope.time_zone) for d in prepared.dims}
        if fetched.by_source:
            row["source"] = values["d_source"]
            label = sql.SOURCE_LABELS.get(values["d_source"])
            if label is not None:  # organic or other sources: labelled, never campaign (or country) "0"
                row.update({sql.DIMENSION_SQL[d][0]: label for d in prepared.dims if d not in _TIME})
        sums = _sums(values)
        row.update({m: sql.derive(sums, m) for m in prepared.metrics})
        rows.append(row)
    totals: dict[str, Any] = {m: sql.derive(fetched.totals, m) for m in prepared.metrics}
    return rows, totals, fetched.total_rows


_TIME = frozenset({Dimension.DATE, Dimension.HOUR})


def _attach_names(session: Session, prepared: _Prepared, rows: list[dict[str, Any]]) -> None:
    for dim in prepared.dims:
        if dim not in _NAMED:
            continue
        key = sql.DIMENSION_SQL[dim][0]
        base = key.removesuffix("_id")
        names = resolve_names(session, dim, {int(r[key]) for r in rows if isinstance(r[key], int)})
        for row in rows:
            if not isinstance(row[key], int):  # a labelled row (Organic, Other sources) names itself
                row[f"{base}_name"], row[f"{base}_deleted"] = row[key], False
                continue
            name, deleted = names.get(int(row[key]), (None, False))
            row[f"{base}_name"] = name
            row[f"{base}_deleted"] = deleted


def _campaign_accounts(session: Session, campaign_ids: set[int]) -> dict[int, int]:
    found = _model(Dimension.CAMPAIGN)
    if found is None or not campaign_ids:
        return {}
    model = found[0]
    return dict(session.execute(select(model.id, model.account_id).where(model.id.in_(sorted(campaign_ids)))).all())


def _attach_extras(session: Session, prepared: _Prepared, rows: list[dict[str, Any]],
                   totals: dict[str, Any]) -> None:
    if not prepared.extras:
        return
    query = prepared.query
    dims = set(prepared.dims)
    # Broken down by what the report groups or filters by, so a filtered report sums only the matching cells.
    filtered = {"ad_group_id": query.ad_group_ids, "creative_id": query.creative_ids, "country": query.countries}
    by = frozenset({field for dim, field in PARTNER_GRAIN.items() if dim in dims}
                   | {field for field, values in filtered.items() if values})
    by_source: dict[str, tuple[ColumnSource, list[ExtraColumn]]] = {}
    for source, column in prepared.extras:
        by_source.setdefault(source.name, (source, []))[1].append(column)
    for source, columns in by_source.values():
        fetched = source.fetch(session, account_ids=prepared.scope.account_ids, campaign_ids=list(query.campaign_ids),
                               start_date=query.start_date, end_date=query.end_date, by=by)
        data = {PartnerKey(*key): values for key, values in fetched.items()}
        keys = [k for k in data if query.start_date <= k.day <= query.end_date
                and (not query.campaign_ids or k.campaign_id in query.campaign_ids)
                and (not query.ad_group_ids or k.ad_group_id in query.ad_group_ids)
                and (not query.creative_ids or k.creative_id in query.creative_ids)
                and (not query.countries or k.country in query.countries)]
        owners = _campaign_accounts(session, {k.campaign_id for k in keys}) if Dimension.ACCOUNT in dims else {}

        def matches(row: Mapping[str, Any], key: PartnerKey, owners: Mapping[int, int] = owners) -> bool:
            if Dimension.CAMPAIGN in dims and row["campaign_id"] != key.campaign_id:
                return False
            if Dimension.DATE in dims and row["date"] != key.day.isoformat():
                return False
            if any(row[sql.DIMENSION_SQL[dim][0]] != getattr(key, field)
                   for dim, field in PARTNER_GRAIN.items() if dim in dims):
                return False
            return not (Dimension.ACCOUNT in dims and owners.get(key.campaign_id) != row["account_id"])

        # A row is one partner cell when it is one campaign (an ad group or creative names one too) on one day.
        exact = Dimension.DATE in dims and bool({Dimension.CAMPAIGN, Dimension.AD_GROUP, Dimension.CREATIVE} & dims)
        if query.offset == 0 and Dimension.CAMPAIGN in dims and dims <= _PARTNER_JOIN_DIMS:
            rows.extend(_partner_only_rows(prepared, rows, keys, matches))
        for target, selected in [*((row, [k for k in keys if matches(row, k)]) for row in rows), (totals, keys)]:
            single = exact and target is not totals and len(selected) == 1
            for column in columns:
                present = [data[k].get(column.key) for k in selected if data[k].get(column.key) is not None]
                value: int | Decimal | None
                if not present:
                    value = None
                elif column.additive:
                    value = sum(present)  # type: ignore[arg-type]
                else:
                    value = present[0] if single else None
                target[column.key] = str(value) if isinstance(value, Decimal) else value
                if column.compare_to is not None:
                    ours = target.get(column.compare_to.value)
                    diff: Any = None
                    if value is not None and ours is not None:
                        diff = Decimal(str(value)) - Decimal(str(ours))
                        diff = int(diff) if column.kind != "ratio" else str(diff)
                    target[f"{column.key}_diff"] = diff


_PARTNER_JOIN_DIMS = frozenset({Dimension.CAMPAIGN, Dimension.DATE, *PARTNER_GRAIN})


def _partner_only_rows(prepared: _Prepared, rows: list[dict[str, Any]], keys: list[PartnerKey],
                       matches: Callable[[Mapping[str, Any], PartnerKey], bool]) -> list[dict[str, Any]]:
    """Cells the partner reports and adstack has no event for, as rows with our figures at zero, so the
    difference is shown rather than dropped (on the first page; they are not counted in total_rows)."""
    dims = set(prepared.dims)
    grain = [(dim, field) for dim, field in PARTNER_GRAIN.items() if dim in dims]
    wanted = {(k.campaign_id, k.day if Dimension.DATE in dims else None, *(getattr(k, f) for _, f in grain))
              for k in keys if not any(matches(row, k) for row in rows)}
    added = []
    for cell in sorted(wanted, key=lambda c: (c[0], c[1] or date.min, *(("" if v is None else str(v)) for v in c[2:]))):
        row: dict[str, Any] = {"campaign_id": cell[0], "source": "ads"}
        if cell[1] is not None:
            row["date"] = cell[1].isoformat()
        for (dim, _), value in zip(grain, cell[2:], strict=True):
            row[sql.DIMENSION_SQL[dim][0]] = value
        for metric in prepared.metrics:
            row[metric] = None if _metric_kind(metric) == "ratio" else 0
        added.append(row)
    return added


def _store(store: EventStore | None) -> EventStore:
    return store if store is not None else get_event_store(get_settings())


def run_report(session: Session, principal: Principal, query: ReportQuery, *, store: EventStore | None = None,
               max_days: int = SYNC_MAX_DAYS) -> ReportResult:
    """One page of a report with a totals row over every row, in the account's zone and currency."""
    prepared = _prepare(session, principal, query, max_days=max_days)
    rows, totals, total_rows = _execute(_store(store), prepared, query, limit=query.limit, offset=query.offset)
    return _finish(session, prepared, rows, totals, total_rows, limit=query.limit, offset=query.offset)


def _finish(session: Session, prepared: _Prepared, rows: list[dict[str, Any]], totals: dict[str, Any],
            total_rows: int, *, limit: int, offset: int) -> ReportResult:
    _attach_extras(session, prepared, rows, totals)  # first: it may add partner-only rows that need names too
    _attach_names(session, prepared, rows)
    columns = _columns(prepared)
    keys = [c.key for c in columns]
    return ReportResult(
        start_date=prepared.query.start_date, end_date=prepared.query.end_date,
        time_zone=prepared.scope.time_zone, currency=prepared.scope.currency,
        granularity=prepared.query.granularity, columns=columns,
        rows=[{k: row.get(k) for k in keys} for row in rows],
        totals={c.key: totals.get(c.key) for c in columns if c.kind in ("count", "micros", "ratio")},
        total_rows=total_rows, limit=limit, offset=offset,
    )


# ---------- filter choices ----------

FILTER_CHOICES_LIMIT = 500


def _filter_choices(session: Session, model: Any, *, visible: set[int] | None, limit: int,
                    chosen: Sequence[int], tenant_owned: bool = True) -> list[FilterChoice]:
    columns = [model.id, model.name]
    if tenant_owned:
        columns += [model.account_id, model.deleted_at]
    stmt = select(*columns)
    if tenant_owned and visible is not None:
        stmt = stmt.where(model.account_id.in_(sorted(visible)))
    rows = list(session.execute(stmt.order_by(model.id.desc()).limit(limit)))
    missing = sorted(set(chosen) - {row.id for row in rows})
    if missing:  # asked for, but beyond the newest: still offered (when visible), so the choice stays shown
        rows += list(session.execute(stmt.where(model.id.in_(missing[:MAX_IDS]))))
    choices = [FilterChoice(id=row.id, name=row.name, account_id=row.account_id if tenant_owned else None,
                            deleted=tenant_owned and row.deleted_at is not None) for row in rows]
    return sorted(choices, key=lambda c: (c.deleted, c.name.casefold(), c.id))


def filter_choices(session: Session, principal: Principal, *, limit: int = FILTER_CHOICES_LIMIT,
                   chosen: ReportQuery | None = None) -> ReportFilterChoices:
    """The objects a report can be filtered by that this caller may see: the campaigns, ad groups and creatives
    of its own account (and an agency's sub-accounts; every account for platform staff), deleted ones included,
    and the catalogue's publishers and ad spaces, which every signed-in user sees."""
    # Source: Mi Ads usage guide, 4 "Data Analysis": "Filter dimensions: Performance/brand, ad campaign
    # /group/creative, ad space, country/region, and publisher". 3.3 "Ad List": "The cost generated by the
    # deleted ad group/creative will still be reflected in [...] the data report page", so deleted objects stay
    # choosable.
    from adstack.campaigns.enums import MarketingObjective
    from adstack.campaigns.models import AdGroup, Campaign
    from adstack.creatives.models import Creative
    from adstack.inventory.models import AdSpace, Publisher

    visible = accounts.visible_account_ids(session, principal)

    def wanted(name: str) -> list[int]:
        return list(getattr(chosen, name)) if chosen is not None else []

    return ReportFilterChoices(
        objectives=[o.value for o in MarketingObjective],
        campaigns=_filter_choices(session, Campaign, visible=visible, limit=limit, chosen=wanted("campaign_ids")),
        ad_groups=_filter_choices(session, AdGroup, visible=visible, limit=limit, chosen=wanted("ad_group_ids")),
        creatives=_filter_choices(session, Creative, visible=visible, limit=limit, chosen=wanted("creative_ids")),
        ad_spaces=_filter_choices(session, AdSpace, visible=visible, limit=limit, chosen=wanted("ad_space_ids"),
                                  tenant_owned=False),
        publishers=_filter_choices(session, Publisher, visible=visible, limit=limit,
                                   chosen=wanted("publisher_ids"), tenant_owned=False),
        limit=limit,
    )


# ---------- downloads ----------


def money_units(micros: int) -> Decimal:
    """An amount in the currency's units, to the cent, as the console's table shows it (never micros)."""
    return (Decimal(int(micros)) / MICROS_PER_UNIT).quantize(Decimal("0.01"))


def file_label(column: ColumnRead, currency: str | None) -> str:
    """A column's heading in a downloaded file: money is in currency units, so it names the currency (none when
    the rows mix currencies), never micros."""
    label = column.label.replace(" (micros)", "")
    return f"{label} ({currency})" if column.kind == "micros" and currency else label


def _table(result: ReportResult) -> tuple[list[str], list[list[Any]]]:
    header = [file_label(c, result.currency) for c in result.columns]
    kinds = {c.key: c.kind for c in result.columns}

    def cell(key: str, value: Any) -> Any:
        if value is None:
            return None
        if kinds[key] == "micros":
            return money_units(value)
        return Decimal(value) if kinds[key] == "ratio" else value

    body = [[cell(c.key, row.get(c.key)) for c in result.columns] for row in result.rows]
    total_row: list[Any] = ["Total" if i == 0 else None for i in range(len(result.columns))]
    for i, column in enumerate(result.columns):
        if column.key in result.totals:
            total_row[i] = cell(column.key, result.totals[column.key])
    return header, [*body, total_row]


def export_report(session: Session, principal: Principal, query: ReportQuery, export_format: ExportFormat, *,
                  store: EventStore | None = None) -> bytes:
    """Every row of the report (not one page) and the totals row, as CSV or XLSX, money in currency units."""
    full = query.model_copy(update={"limit": EXPORT_MAX_ROWS, "offset": 0})
    result = run_report(session, principal, full, store=store)
    if result.total_rows > EXPORT_MAX_ROWS:
        raise ValidationFailed.single("end_date", "max_export_rows",
                                      "too many rows to download at once; run a report job", limit=EXPORT_MAX_ROWS,
                                      actual=result.total_rows)
    header, rows = _table(result)
    return csv_bytes(header, rows) if export_format == ExportFormat.CSV else xlsx_bytes(header, rows)


# ---------- report jobs ----------


def create_job(session: Session, principal: Principal, body: ReportJobCreate) -> ReportJob:
    """Validate and queue a report job; run it with run_job (the API schedules it in the background)."""
    query = ReportQuery.model_validate(body.model_dump(exclude={"format"}) | {"limit": 10_000})
    _prepare(session, principal, query, max_days=JOB_MAX_DAYS)
    job = ReportJob(user_id=principal.user_id, role=principal.role, account_id=principal.account_id,
                    query=body.model_dump(mode="json", exclude={"format"}), format=body.format.value,
                    status=JobStatus.QUEUED.value)
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, principal: Principal, job_id: int) -> ReportJob:
    job = session.get(ReportJob, job_id)
    if job is None or (job.user_id != principal.user_id and not principal.is_platform):
        raise NotFound(f"report job {job_id} not found")
    return job


def list_jobs(session: Session, principal: Principal, *, limit: int = 50, offset: int = 0) -> list[ReportJob]:
    stmt = select(ReportJob).where(ReportJob.user_id == principal.user_id)
    return list(session.scalars(stmt.order_by(ReportJob.id.desc()).limit(limit).offset(offset)))


def job_file(settings: Settings, job: ReportJob) -> Path:
    if job.status != JobStatus.DONE.value or not job.file_name:
        raise NotFound("the report file is not ready")
    if job.expires_at is not None and job.expires_at <= utcnow():
        raise NotFound("the report file has expired; run the job again")
    path = reports_dir(settings) / job.file_name
    if not path.exists():
        raise NotFound("the report file has expired; run the job again")
    return path


def reports_dir(settings: Settings) -> Path:
    path = settings.data_dir / "reports"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _chunks(start: date, end: date, pieces: int) -> Iterator[tuple[date, date]]:
    days = (end - start).days + 1
    step = max(1, -(-days // pieces))
    cursor = start
    while cursor <= end:
        last = min(end, cursor + timedelta(days=step - 1))
        yield cursor, last
        cursor = last + timedelta(days=1)


def run_job(factory: sessionmaker[Session], job_id: int, *, settings: Settings, store: EventStore | None = None,
            on_progress: Callable[[int], None] | None = None) -> None:
    """Run a queued job: by date chunks when the report is by day or hour, so progress can be reported."""
    with factory() as session:
        job = session.get(ReportJob, job_id)
        if job is None or job.status not in (JobStatus.QUEUED.value, JobStatus.RUNNING.value):
            return
        job.status, job.started_at, job.percent_done = JobStatus.RUNNING.value, utcnow(), 0
        session.commit()
        principal = Principal(user_id=job.user_id, email="", role=job.role, account_id=job.account_id, client="job")
        name = f"report-{job.id}-{secrets.token_hex(8)}.{job.format}"
        path = reports_dir(settings) / name
        try:
            query = ReportQuery.model_validate(job.query | {"limit": 10_000, "offset": 0})
            prepared = _prepare(session, principal, query, max_days=JOB_MAX_DAYS)
            row_limit = int(job.query.get("limit") or 1_000_000)
            columns = _columns(prepared)
            header = [file_label(c, prepared.scope.currency) for c in columns]
            writer: TableWriter
            handle = None
            if job.format == ExportFormat.CSV.value:
                handle = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115 - closed below
                writer = CsvWriter(handle, header)
            else:
                writer = XlsxWriter(path, header)
            by_time = bool({Dimension.DATE, Dimension.HOUR} & set(prepared.dims))
            ranges = list(_chunks(query.start_date, query.end_date, JOB_CHUNKS)) if by_time else [
                (query.start_date, query.end_date)]
            written = 0
            for index, (chunk_start, chunk_end) in enumerate(ranges):
                part = query.model_copy(update={"start_date": chunk_start, "end_date": chunk_end})
                part_prepared = _Prepared(part, prepared.scope, prepared.dims, prepared.metrics, prepared.sort,
                                          prepared.extras, prepared.params)
                rows, totals, total = _execute(_store(store), part_prepared, part, limit=row_limit - written, offset=0)
                result = _finish(session, part_prepared, rows, totals, total, limit=row_limit, offset=0)
                _, table = _table(result)
                writer.write_rows(table[:-1])
                written += len(rows)
                job.percent_done = min(99, (index + 1) * 100 // len(ranges))
                job.row_count = written
                session.commit()
                if on_progress is not None:
                    on_progress(job.percent_done)
                if written >= row_limit:
                    break
            whole = query.model_copy(update={"dimensions": [], "granularity": Granularity.TOTAL})
            sums = _fetch(_store(store), whole, scope=prepared.scope, metrics=prepared.metrics, sort=None, limit=None,
                          offset=0, params=prepared.params).totals
            totals = {m: sql.derive(sums, m) for m in prepared.metrics}
            result = _finish(session, prepared, [], totals, 0, limit=row_limit, offset=0)
            writer.write_rows([_table(result)[1][-1]])
            writer.close()
            if handle is not None:
                handle.close()
            job.status, job.percent_done, job.file_name = JobStatus.DONE.value, 100, name
            job.finished_at = utcnow()
            job.expires_at = job.finished_at + JOB_FILE_TTL
            session.commit()
        except Exception as exc:
            session.rollback()
            log.exception("report job %s failed", job_id)
            path.unlink(missing_ok=True)
            job = session.get(ReportJob, job_id)
            if job is not None:
                job.status, job.finished_at = JobStatus.FAILED.value, utcnow()
                job.error = (exc.message if hasattr(exc, "message") else "the report could not be produced")[:1000]
                session.commit()


def resume_jobs(factory: sessionmaker[Session]) -> list[int]:
    """Jobs a stopped process left queued or running, to start again."""
    with factory() as session:
        stmt = select(ReportJob.id).where(ReportJob.status.in_([JobStatus.QUEUED.value, JobStatus.RUNNING.value]))
        return list(session.scalars(stmt.order_by(ReportJob.id)))


# ---------- overview ----------


def _local_today(tz_name: str) -> date:
    return utcnow().astimezone(zone(tz_name)).date()


def overview(session: Session, principal: Principal, *, account_id: int | None, days: int = 7,
             store: EventStore | None = None) -> OverviewRead:
    """The account's home page: balance, today's spend so far, trends, review state and distributions."""
    account_id = accounts.resolve_account_id(session, principal, account_id)
    account = accounts.get_account(session, principal, account_id)
    today = _local_today(account.time_zone)
    start = today - timedelta(days=days - 1)
    subs = _sub_accounts(session, account)
    # An agency's spend is on its sub-accounts; money of another currency is not added, only listed.
    included = [account_id, *(s.id for s in subs if s.currency == account.currency)]
    base = {"account_ids": included, "time_zone": account.time_zone,
            "metrics": [Metric.COST_MICROS, Metric.IMPRESSIONS, Metric.CLICKS, Metric.INSTALLS]}
    store = _store(store)

    def report(**kwargs: Any) -> ReportResult:
        query = ReportQuery.model_validate(base | kwargs)
        return run_report(session, principal, query, store=store, max_days=SYNC_MAX_DAYS)

    trend_rows = {r["date"]: r for r in report(start_date=start, end_date=today, granularity="day",
                                                  limit=days).rows}
    trend = []
    for offset in range(days):
        day = start + timedelta(days=offset)
        row = trend_rows.get(day.isoformat(), {})
        trend.append(DailyPoint(date=day, cost_micros=row.get("cost_micros") or 0,
                                impressions=row.get("impressions") or 0, clicks=row.get("clicks") or 0,
                                installs=row.get("installs") or 0))
    today_point = trend[-1]
    yesterday = report(start_date=today - timedelta(days=1), end_date=today - timedelta(days=1)).totals

    def shares(dimension: Dimension) -> list[Share]:
        result = report(start_date=start, end_date=today, dimensions=[dimension], sort="-cost_micros", limit=50)
        total_cost = int(result.totals.get("cost_micros") or 0)
        key = sql.DIMENSION_SQL[dimension][0]
        return [Share(key=str(r[key]), impressions=r["impressions"] or 0, clicks=r["clicks"] or 0,
                      cost_micros=r["cost_micros"] or 0, installs=r["installs"] or 0,
                      cost_share=sql.ratio(r["cost_micros"] or 0, total_cost) or "0")
                for r in result.rows if r.get("source") == "ads"]

    every_id = [account_id, *(s.id for s in subs)]
    counts = session.execute(
        select(ReviewItem.object_type, ReviewItem.status, func.count())
        .where(ReviewItem.account_id.in_(every_id))
        .group_by(ReviewItem.object_type, ReviewItem.status)
        .order_by(ReviewItem.object_type, ReviewItem.status)).all()
    recent = review.rejections(session, account_ids=set(every_id), limit=20)
    names = {(i.object_type, i.object_id): i.object_name for i in session.scalars(
        select(ReviewItem).where(ReviewItem.account_id.in_(every_id),
                                 ReviewItem.object_id.in_({r.object_id for r in recent})))}
    rejections = [Rejection(object_type=r.object_type, object_id=r.object_id,
                            object_name=names.get((r.object_type, r.object_id)), reasons=list(r.reasons or []),
                            rejected_at=r.created_at)
                  for r in recent]
    return OverviewRead(
        account_id=account.id, account_name=account.company_name, currency=account.currency,
        time_zone=account.time_zone, balance_micros=finance.balance_micros(session, account.id), today=today,
        today_spend_micros=today_point.cost_micros, today_impressions=today_point.impressions,
        today_clicks=today_point.clicks, today_installs=today_point.installs,
        yesterday_spend_micros=int(yesterday.get("cost_micros") or 0), trend=trend,
        review_status_counts=[ReviewCount(object_type=t, status=s, count=c) for t, s, c in counts],
        rejections=rejections, by_placement=shares(Dimension.PLACEMENT_TYPE), by_country=shares(Dimension.COUNTRY),
        sub_accounts=_sub_account_figures(session, principal, subs, today=today, time_zone=account.time_zone,
                                          store=store),
    )


MAX_SUB_ACCOUNTS = 500


def _sub_accounts(session: Session, account: Account) -> list[Account]:
    if account.type != AccountType.AGENCY:
        return []
    return list(session.scalars(select(Account).where(Account.parent_agency_id == account.id)
                                .order_by(Account.id).limit(MAX_SUB_ACCOUNTS)))


def _sub_account_figures(session: Session, principal: Principal, subs: Sequence[Account], *, today: date,
                         time_zone: str, store: EventStore) -> list[SubAccountFigures]:
    """Balance, today's spend (the agency's day) and serving ad groups of each sub-account, in a few queries."""
    if not subs:
        return []
    from adstack.campaigns import service as campaigns
    from adstack.campaigns.enums import ServingStatus, UserStatus
    from adstack.campaigns.models import AdGroup

    ids = [s.id for s in subs]
    spend = run_report(session, principal, ReportQuery.model_validate({
        "account_ids": ids, "time_zone": time_zone, "start_date": today, "end_date": today,
        "dimensions": [Dimension.ACCOUNT], "metrics": [Metric.COST_MICROS], "limit": len(ids)}),
        store=store, max_days=SYNC_MAX_DAYS)
    key = sql.DIMENSION_SQL[Dimension.ACCOUNT][0]
    spent = {int(r[key]): int(r.get("cost_micros") or 0) for r in spend.rows if r.get(key) is not None}
    groups = list(session.scalars(select(AdGroup).where(AdGroup.account_id.in_(ids),
                                                        AdGroup.status != UserStatus.DELETED.value)))
    serving: dict[int, int] = {}
    statuses = campaigns.serving_statuses(session, groups)
    for group in groups:
        if statuses.get(group.id, (None,))[0] == ServingStatus.ELIGIBLE:
            serving[group.account_id] = serving.get(group.account_id, 0) + 1
    return [SubAccountFigures(account_id=s.id, account_name=s.company_name, currency=s.currency,
                              review_status=s.review_status, balance_micros=finance.balance_micros(session, s.id),
                              today_spend_micros=spent.get(s.id, 0), serving_ad_groups=serving.get(s.id, 0))
            for s in subs]


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
        sort=_media_sort(query.sort), limit=query.limit, offset=query.offset)
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


_MEDIA_SORT = {"conversions": "installs"}


def _media_sort(sort: str | None) -> str | None:
    if sort is None:
        return "-cost_micros"
    descending, key = sort.startswith("-"), sort.lstrip("-")
    return ("-" if descending else "") + _MEDIA_SORT.get(key, key)


def _str(value: int | str | None) -> str | None:
    return None if value is None else str(value)


def _int(value: int | str | None) -> int | None:
    return None if value is None else int(value)

