"""Reports, read from the event store's hourly rollup: one page of a report with its totals.

`run_report` is the one entry point the API, the console and connectors call. Measurement-partner
connectors add columns with `register_column_source`: their values are keyed by campaign and local day,
and by ad group, creative and country where the report groups by them, and joined onto report rows
grouped by date, account, campaign, ad group, creative and/or country.

Connector columns are in connector_columns.py, who may see which accounts (in which zone and currency) in
scope.py, names from the control plane in names.py, filter choices in filters.py, downloads in downloads.py,
report jobs in jobs.py, the overview in overview.py and the media center in media.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from adstack.accounts.models import Principal
from adstack.core.errors import FieldError, Forbidden, ValidationFailed
from adstack.core.settings import get_settings
from adstack.core.timeutil import zone
from adstack.events.service import EventStore, get_event_store
from adstack.reports import query as sql
from adstack.reports.connector_columns import (
    PARTNER_GRAIN,
    ColumnSource,
    ExtraColumn,
    PartnerKey,
    available_extra_columns,
)
from adstack.reports.models import (
    DEFAULT_METRICS,
    PLATFORM_METRICS,
    SUPPLY_METRICS,
    ColumnRead,
    Dimension,
    Metric,
    ReportQuery,
    ReportResult,
)
from adstack.reports.names import _NAMED, _model, resolve_names
from adstack.reports.scope import Scope, _scope

SYNC_MAX_DAYS = 92  # longer ranges run as report jobs
JOB_MAX_DAYS = 3 * 366


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
            allowed = sorted(m.value for m in Metric if m not in PLATFORM_METRICS and m not in SUPPLY_METRICS)
            raise Forbidden(f"{hidden[0]} is visible to platform staff only", fields=[FieldError(
                field="metrics", rule="platform_only", message="visible to platform staff only", limit=allowed,
                actual=hidden)])
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
    if dim == Dimension.HOUR:  # see query.local_hour_sql
        wall = datetime.fromtimestamp(int(raw) // 2, tz=UTC).replace(tzinfo=zone(tz_name), fold=int(raw) % 2)
        return wall.isoformat()
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
    rows = [_row(prepared, values, by_source=fetched.by_source) for values in fetched.rows]
    totals: dict[str, Any] = {m: sql.derive(fetched.totals, m) for m in prepared.metrics}
    return rows, totals, fetched.total_rows


def _row(prepared: _Prepared, values: Mapping[str, Any], *, by_source: bool) -> dict[str, Any]:
    """One report row (names not yet resolved) from a result row's d_<dimension> values and m_<metric> sums."""
    row = {sql.DIMENSION_SQL[d][0]: _dimension_value(d, values[f"d_{sql.DIMENSION_SQL[d][0]}"],
                                                     prepared.scope.time_zone) for d in prepared.dims}
    if by_source:
        row["source"] = values["d_source"]
        label = sql.SOURCE_LABELS.get(values["d_source"])
        if label is not None:  # organic or other sources: labelled, never campaign (or country) "0"
            row.update({sql.DIMENSION_SQL[d][0]: label for d in prepared.dims if d not in _TIME})
    sums = _sums(values)
    row.update({m: sql.derive(sums, m) for m in prepared.metrics})
    return row


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
    # Accounts of several currencies, one per row (the account dimension): money has no total across them.
    mixed = prepared.scope.currency is None and prepared.scope.account_ids != []
    return ReportResult(
        start_date=prepared.query.start_date, end_date=prepared.query.end_date,
        time_zone=prepared.scope.time_zone, currency=prepared.scope.currency,
        granularity=prepared.query.granularity, columns=columns,
        rows=[{k: row.get(k) for k in keys} for row in rows],
        totals={c.key: None if mixed and sql.in_money(c.key) else totals.get(c.key)
                for c in columns if c.kind in ("count", "micros", "ratio")},
        total_rows=total_rows, limit=limit, offset=offset,
    )
