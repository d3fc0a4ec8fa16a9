"""Report SQL over the hourly rollup, and the metric formulas. Pure: no database, no web.

Local time: every rollup row is an hour or a slice of a UTC hour. Each slice is converted to the
report's zone and then grouped, so a local day is exactly its own 23, 24 or 25 hours, in half-hour
zones too; a report the rollups cannot answer exactly (a 45-minute zone) aggregates the raw events the
same way instead. Money and ratios are computed here from integer sums with Decimal, never floats.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from functools import total_ordering
from typing import Any

from adstack.core.timeutil import zone
from adstack.core.vocabulary import IN_APP_EVENTS
from adstack.events.schema import (
    CAMPAIGN_ROLLUP_TABLE,
    EVENTS_TABLE,
    ROLLUP_TABLE,
    ROLLUPS,
    SLICE_MINUTES,
    SUPPLY_ATTRIBUTION,
    SUPPLY_DIMENSIONS,
    raw_rollup_sql,
)
from adstack.reports.models import (
    SUPPLY_METRICS,
    TIME_DIMENSIONS,
    Dimension,
    Metric,
    ReportQuery,
    event_metric,
)

SLOT = "(hour + toIntervalMinute(quarter * 15))"


def local_hour_sql(instant: str) -> str:
    """The hour the account's clock read at `instant`, as an integer: its wall-clock start (seconds since the
    epoch, read as if UTC) times two, plus one for the second of two readings of that hour when a clock goes
    back. So after a 30- or 45-minute change the hours still start at :00 local (ClickHouse's toStartOfHour
    keeps counting whole hours from before the change), a repeated half hour joins the hour the clock shows,
    and a whole repeated hour (01:00 EDT, 01:00 EST) is two rows. service._dimension_value reads it back."""
    def offset(at: str) -> str:
        return f"timeZoneOffset(toTimeZone({at}, {{tz:String}}))"

    shift = offset(instant)
    wall = f"toStartOfHour({instant} + toIntervalSecond({shift}))"
    start = f"({wall} - toIntervalSecond({shift}))"  # when the clock read the hour's :00 at this offset
    # The offset before a change just behind `start` (clocks go back by two hours at most).
    before = offset(f"{start} - toIntervalHour(3)")
    second = (f"({offset(start)} = {shift} AND {before} > {shift} "
              f"AND {offset(f'{wall} - toIntervalSecond({before})')} = {before})")
    return f"toUnixTimestamp({wall}) * 2 + {second}"


# Dimension -> (output column, SQL expression over the rollup).
DIMENSION_SQL: dict[Dimension, tuple[str, str]] = {
    Dimension.DATE: ("date", f"toDate(toTimeZone({SLOT}, {{tz:String}}))"),
    Dimension.HOUR: ("hour", local_hour_sql(SLOT)),
    Dimension.ACCOUNT: ("account_id", "account_id"),
    Dimension.CAMPAIGN: ("campaign_id", "campaign_id"),
    Dimension.AD_GROUP: ("ad_group_id", "ad_group_id"),
    Dimension.CREATIVE: ("creative_id", "creative_id"),
    Dimension.COUNTRY: ("country", "country"),
    Dimension.AD_SPACE: ("ad_space_id", "ad_space_id"),
    Dimension.PUBLISHER: ("publisher_id", "publisher_id"),
    Dimension.PLACEMENT_TYPE: ("placement_type", "placement_type"),
    Dimension.OBJECTIVE: ("objective", "objective"),
    Dimension.EVENT: ("event", "conversion_event"),
}

# Where a conversion came from. Organic and other-network conversions carry no campaign and are never billed;
# rollup rows written before the rollup kept the attribution type read '' and are told apart by their campaign
# (an unattributed conversion had none).
NOT_OURS = "(attribution_type IN ('organic', 'other') OR (attribution_type = '' AND campaign_id = 0))"
# A fraud-flagged conversion keeps its campaign (its source is still our ad) but is not counted as ours.
FLAGGED = "attribution_type = 'flagged'"
# One from an unsigned postback (anyone who saw a click id could send it) is reported apart, as unverified.
UNVERIFIED = "attribution_type = 'unverified'"
OURS = f"(NOT {NOT_OURS} AND NOT {FLAGGED} AND NOT {UNVERIFIED})"
SOURCE_SQL = f"multiIf(attribution_type = 'other', 'other', {NOT_OURS}, 'organic', 'ads')"
SOURCE_LABELS = {"organic": "Organic", "other": "Other sources"}

# CPA counts each ad group's own conversion event (installs unless a CPA ad group pays for another event);
# the caller passes the ad groups that pay for something else (`cpa_ids`, `cpa_events`).
CPA_EVENT = "transform(ad_group_id, {cpa_ids:Array(UInt64)}, {cpa_events:Array(String)}, 'INSTALL')"

# Sums read straight from the rollup. Installs, events and revenue count only what adstack's ads brought
# (click- and view-through); organic and other-network conversions have their own columns.
BASE_SQL: dict[str, str] = {
    "requests": "sum(requests)",
    "ad_requests": "sum(ad_requests)",
    "filled_ad_requests": "sum(filled_ad_requests)",
    "impressions": "sum(impressions)",
    "clicks": "sum(clicks)",
    "cost_micros": "sum(cost_micros)",
    "media_cost_micros": "sum(media_cost_micros)",
    "media_cost_impressions": "sum(media_cost_impressions)",
    "installs": f"sumIf(installs, {OURS})",
    # A rollup row from before attribution types were kept counts as click-through.
    "click_through_installs": f"sumIf(installs, {OURS} AND attribution_type != 'view')",
    "view_through_installs": "sumIf(installs, attribution_type = 'view')",
    "organic_installs": f"sumIf(installs, {SOURCE_SQL} = 'organic')",
    "other_installs": "sumIf(installs, attribution_type = 'other')",
    "in_app_events": f"sumIf(conversions, {OURS})",
    "refunds": f"sumIf(refunds, {OURS})",
    "organic_in_app_events": f"sumIf(conversions, {SOURCE_SQL} = 'organic')",
    "other_in_app_events": "sumIf(conversions, attribution_type = 'other')",
    "cpa_conversions": f"sumIf(installs + conversions, {OURS} AND conversion_event = {CPA_EVENT})",
    "revenue_micros": f"sumIf(revenue_micros, {OURS})",
    "revenue_d0_micros": f"sumIf(revenue_d0_micros, {OURS})",
    "revenue_d7_micros": f"sumIf(revenue_d7_micros, {OURS})",
    "flagged_installs": f"sumIf(installs, {FLAGGED})",
    # Set aside whatever their revenue's sign: every one the partner sent shows here.
    "flagged_in_app_events": f"sumIf(conversions + refunds, {FLAGGED})",
    "unverified_installs": f"sumIf(installs, {UNVERIFIED})",
    "unverified_in_app_events": f"sumIf(conversions + refunds, {UNVERIFIED})",
    "organic_revenue_micros": f"sumIf(revenue_micros, {SOURCE_SQL} = 'organic')",
    "other_revenue_micros": "sumIf(revenue_micros, attribution_type = 'other')",
    "video_starts": "sum(video_starts)",
    "video_first_quartiles": "sum(video_first_quartiles)",
    "video_midpoints": "sum(video_midpoints)",
    "video_third_quartiles": "sum(video_third_quartiles)",
    "video_completes": "sum(video_completes)",
    "invalid": "sum(invalid)",
}
for _event in IN_APP_EVENTS:
    BASE_SQL[event_metric(_event)] = f"sumIf(conversions, {OURS} AND conversion_event = '{_event.value}')"


@dataclass(frozen=True)
class Derived:
    numerator: str
    denominator: str
    scale: int = 1  # eCPM is per thousand
    money: bool = False  # integer micros; otherwise a decimal fraction


DERIVED: dict[str, Derived] = {
    Metric.CTR: Derived("clicks", "impressions"),
    Metric.ECPM_MICROS: Derived("cost_micros", "impressions", scale=1000, money=True),
    Metric.CPC_MICROS: Derived("cost_micros", "clicks", money=True),
    # Click-through only: a view-through install followed no click.
    Metric.CVR: Derived("click_through_installs", "clicks"),
    Metric.CPA_MICROS: Derived("cost_micros", "cpa_conversions", money=True),
    Metric.ROAS: Derived("revenue_micros", "cost_micros"),
    Metric.ROAS_D0: Derived("revenue_d0_micros", "cost_micros"),
    Metric.ROAS_D7: Derived("revenue_d7_micros", "cost_micros"),
    Metric.VIDEO_COMPLETION_RATE: Derived("video_completes", "video_starts"),
    Metric.FILL_RATE: Derived("filled_ad_requests", "ad_requests"),
}
RATIO_PLACES = Decimal("0.000001")

# Filters: query field -> rollup column and its ClickHouse type.
FILTERS: dict[str, tuple[str, str]] = {
    "campaign_ids": ("campaign_id", "Array(UInt64)"),
    "ad_group_ids": ("ad_group_id", "Array(UInt64)"),
    "creative_ids": ("creative_id", "Array(UInt64)"),
    "ad_space_ids": ("ad_space_id", "Array(UInt64)"),
    "publisher_ids": ("publisher_id", "Array(UInt64)"),
    "countries": ("country", "Array(String)"),
    "placement_types": ("placement_type", "Array(String)"),
    "events": ("conversion_event", "Array(String)"),
}

# Only request events carry the objective; impressions, clicks and charges do not. When the caller passes the
# campaigns' objectives from the control plane (`obj_ids`, `obj_values`), every row takes its campaign's.
OBJECTIVE_BY_CAMPAIGN = "transform(campaign_id, {obj_ids:Array(UInt64)}, {obj_values:Array(String)}, objective)"


def objective_params(objectives: Mapping[int, str]) -> dict[str, Any]:
    """Query parameters giving each campaign its objective (see OBJECTIVE_BY_CAMPAIGN)."""
    ids = sorted(objectives)
    return {"obj_ids": ids, "obj_values": [objectives[i] for i in ids]}


def cpa_params(events: Mapping[int, str]) -> dict[str, Any]:
    """Query parameters naming the ad groups whose CPA counts another event than installs (see CPA_EVENT)."""
    ids = sorted(i for i, e in events.items() if e and e != "INSTALL")
    return {"cpa_ids": ids, "cpa_events": [events[i] for i in ids]}


def base_metrics_for(metrics: list[str]) -> list[str]:
    """The rollup sums the requested metrics need, in a stable order."""
    needed: set[str] = set()
    for metric in metrics:
        if metric in DERIVED:
            needed.update((DERIVED[metric].numerator, DERIVED[metric].denominator))
        else:
            needed.add(metric)
    return [m for m in BASE_SQL if m in needed]


def derive(sums: Mapping[str, int], metric: str) -> int | str | None:
    """One metric of a row from its integer sums: counts and micros as int, ratios as decimal strings."""
    formula = DERIVED.get(metric)
    if formula is None:
        return int(sums.get(metric) or 0)
    numerator, denominator = int(sums.get(formula.numerator) or 0), int(sums.get(formula.denominator) or 0)
    if not formula.money:
        return ratio(numerator, denominator)
    if denominator == 0:
        return None
    value = Decimal(numerator * formula.scale) / Decimal(denominator)
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def in_money(metric: str) -> bool:
    """Whether the metric is an amount of money or a ratio with one: meaningless summed across currencies."""
    formula = DERIVED.get(metric)
    if formula is None:
        return metric.endswith("_micros")
    return formula.money or formula.numerator.endswith("_micros") or formula.denominator.endswith("_micros")


def ratio(numerator: int, denominator: int) -> str | None:
    """A decimal fraction with six places, half to even; None when the denominator is zero."""
    if denominator == 0:
        return None
    return str((Decimal(numerator) / Decimal(denominator)).quantize(RATIO_PLACES, rounding=ROUND_HALF_EVEN))


def sort_sql(column: str, dimension_columns: list[str]) -> str:
    """ORDER BY expression of an output column, over the query's aliases."""
    if column in dimension_columns:
        return f"d_{column}"
    formula = DERIVED.get(column)
    if formula is None:
        return f"m_{column}"
    return f"(m_{formula.numerator} * {formula.scale}) / nullIf(m_{formula.denominator}, 0)"


@total_ordering
class _Descending:
    """A sort value compared the other way round."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Descending) and self.value == other.value

    def __lt__(self, other: _Descending) -> bool:
        return bool(other.value < self.value)

    def __hash__(self) -> int:
        return hash(self.value)


def order_key(sort: tuple[str, bool] | None, dimension_columns: list[str],
              by_source: bool) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """build's ORDER BY in Python, over a result row's d_ and m_ values: the key that puts rows of several
    results (a report job's date chunks) in the order one query over the whole range gives."""
    formula = DERIVED.get(sort[0]) if sort is not None else None
    rest = [f"d_{c}" for c in dimension_columns if sort is None or c != sort[0]]

    def sort_value(values: Mapping[str, Any]) -> Any:
        assert sort is not None
        if sort[0] in dimension_columns:
            return values[f"d_{sort[0]}"]
        if formula is None:
            return values[f"m_{sort[0]}"]
        denominator = values[f"m_{formula.denominator}"]
        if not denominator:
            return None
        # As ClickHouse divides: integers as Float64.
        return float(values[f"m_{formula.numerator}"] * formula.scale) / float(denominator)

    def key(values: Mapping[str, Any]) -> tuple[Any, ...]:
        parts: list[Any] = [values["d_source"] != "ads", values["d_source"]] if by_source else []
        if sort is not None:
            value = sort_value(values)
            parts += [value is None, None if value is None else _Descending(value) if sort[1] else value]
        return (*parts, *(values[a] for a in rest))

    return key


def utc_range(start: date, end: date, tz_name: str) -> tuple[datetime, datetime]:
    """The UTC instants bounding local days start..end (inclusive) in the zone."""
    tz = zone(tz_name)
    begin = datetime.combine(start, time(0), tzinfo=tz)
    finish = datetime.combine(end + timedelta(days=1), time(0), tzinfo=tz)
    return begin.astimezone(zone("UTC")), finish.astimezone(zone("UTC"))


@dataclass
class Plan:
    """The SQL of one report and what is needed to read its result back."""

    sql: str
    params: dict[str, Any]
    dimension_columns: list[str]
    base_metrics: list[str]
    grouped: bool
    table: str
    by_source: bool = False  # rows carry `d_source`: ads, organic or other


def build(query: ReportQuery, *, account_ids: list[int] | None, tz_name: str, metrics: list[str],
          sort: tuple[str, bool] | None, limit: int | None, offset: int, where: Sequence[str] = (),
          params: Mapping[str, Any] | None = None) -> Plan:
    """SELECT dimensions and sums for the query; `sort` is (column, descending). `where` adds conditions
    (fixed SQL whose values are in `params`)."""
    dims = query.effective_dimensions()
    t_from, t_to = utc_range(query.start_date, query.end_date, tz_name)
    params = {"cpa_ids": [], "cpa_events": []} | dict(params or {}) | {
        "tz": tz_name,
        "t_from": t_from.replace(tzinfo=None),
        "t_to": t_to.replace(tzinfo=None),
        "h_from": t_from.replace(minute=0, second=0, microsecond=0, tzinfo=None),
    }
    conditions = [
        "hour >= {h_from:DateTime('UTC')}", "hour < {t_to:DateTime('UTC')}",
        f"{SLOT} >= {{t_from:DateTime('UTC')}}", f"{SLOT} < {{t_to:DateTime('UTC')}}",
    ]
    if account_ids is not None:
        conditions.insert(0, "account_id IN {accounts:Array(UInt64)}")
        params["accounts"] = sorted(account_ids)
    for name, (column, ch_type) in FILTERS.items():
        values = getattr(query, name)
        if values:
            conditions.append(f"{column} IN {{f_{name}:{ch_type}}}")
            params[f"f_{name}"] = sorted(str(v) for v in values) if ch_type == "Array(String)" else sorted(values)
    objective = OBJECTIVE_BY_CAMPAIGN if params.get("obj_ids") else "objective"
    if query.objectives:
        conditions.append(f"{objective} IN {{f_objectives:Array(String)}}")
        params["f_objectives"] = sorted(str(v) for v in query.objectives)
    conditions += where
    if not SUPPLY_METRICS & {*metrics, *([sort[0]] if sort else [])}:
        # Ad requests are rows of their own (account 0, no campaign): only supply reports read them.
        conditions.append(f"attribution_type != '{SUPPLY_ATTRIBUTION}'")
    base = base_metrics_for(metrics + ([sort[0]] if sort and sort[0] in DERIVED else []))
    if sort and sort[0] in BASE_SQL and sort[0] not in base:
        base.append(sort[0])
    table = rollup_for(query, dims, where, tz_name, base)
    source = table
    if table == EVENTS_TABLE:
        raw_where = ["occurred_at >= {t_from:DateTime('UTC')}", "occurred_at < {t_to:DateTime('UTC')}"]
        if account_ids is not None:
            raw_where.insert(0, "account_id IN {accounts:Array(UInt64)}")
        source = f"({raw_rollup_sql(' AND '.join(raw_where))})"
    dimension_columns = [DIMENSION_SQL[d][0] for d in dims]
    # Aliases are prefixed: ClickHouse aliases are visible in the whole query and must not shadow columns.
    selects = [f"{objective if d == Dimension.OBJECTIVE else DIMENSION_SQL[d][1]} AS d_{DIMENSION_SQL[d][0]}"
               for d in dims]
    # Grouped by anything but time, organic and other-network conversions are rows of their own rather than a
    # campaign (or country, ad space, ...) "0" beside the real ones.
    by_source = any(d not in TIME_DIMENSIONS for d in dims)
    if by_source:
        selects.append(f"{SOURCE_SQL} AS d_source")
    selects += [f"{BASE_SQL[m]} AS m_{m}" for m in base]
    if dims:
        # The row count and the totals over every group ride along on each row of the page (window
        # functions run before LIMIT), so one scan serves the page, the count and the totals row.
        selects.append("count() OVER () AS n_rows")
        selects += [f"sum(m_{m}) OVER () AS t_{m}" for m in base]
    if not selects:
        selects = ["count() AS slices"]
    sql = f"SELECT {', '.join(selects)}\nFROM {source}\nWHERE {' AND '.join(conditions)}"
    if dims:
        aliases = [f"d_{c}" for c in dimension_columns]
        sql += f"\nGROUP BY {', '.join(aliases + (['d_source'] if by_source else []))}"
        order = ["d_source != 'ads'", "d_source"] if by_source else []
        if sort is not None:
            order.append(f"{sort_sql(sort[0], dimension_columns)} {'DESC' if sort[1] else 'ASC'} NULLS LAST")
        order += [a for a in aliases if sort is None or a != f"d_{sort[0]}"]
        sql += f"\nORDER BY {', '.join(order)}"
        if limit is not None:
            sql += f"\nLIMIT {int(limit)} OFFSET {int(offset)}"
    return Plan(sql=sql, params=params, dimension_columns=dimension_columns, base_metrics=base, grouped=bool(dims),
                table=table, by_source=by_source)


def _columns_needed(query: ReportQuery, dims: list[Dimension], where: Sequence[str], base: list[str]) -> set[str]:
    """The rollup key columns a report reads (besides account, time and attribution type)."""
    needed = {DIMENSION_SQL[d][1] for d in dims if d not in TIME_DIMENSIONS}
    needed |= {column for name, (column, _) in FILTERS.items() if getattr(query, name)}
    if Dimension.OBJECTIVE in dims or query.objectives:
        needed |= {"objective", "campaign_id"}
    if "cpa_conversions" in base:
        needed.add("ad_group_id")  # CPA_EVENT
    if where:  # the media center's conditions name publishers and ad spaces
        needed |= SUPPLY_DIMENSIONS
    return needed


def rollup_for(query: ReportQuery, dims: list[Dimension], where: Sequence[str], tz_name: str,
               base: Sequence[str] = ()) -> str:
    """The smallest table that answers exactly: the campaign rollup unless the report looks at the supply
    side (ad spaces, publishers, placement types) or the zone needs slices of the hour; the sliced rollup
    when the zone's offsets are multiples of its slice; else the raw events."""
    needed = _columns_needed(query, dims, where, list(base))
    step = offset_step_minutes(tz_name, query.start_date, query.end_date)
    for table in (CAMPAIGN_ROLLUP_TABLE, ROLLUP_TABLE):
        dimensions, sliced = ROLLUPS[table]
        exact_in_zone = step % SLICE_MINUTES == 0 if sliced else step == 60
        if needed <= set(dimensions) and exact_in_zone:
            return table
    return EVENTS_TABLE


def offset_step_minutes(tz_name: str, start: date, end: date) -> int:
    """The largest of 60, 30 and 15 minutes dividing the zone's UTC offset on every day of the range (and the
    day either side, where a local day begins or ends); 1 when none does."""
    tz = zone(tz_name)
    offsets: set[int] = set()
    day = start - timedelta(days=1)
    while day <= end + timedelta(days=1):
        for moment in (time(0), time(12)):
            offsets.add(int((datetime.combine(day, moment, tzinfo=tz).utcoffset() or timedelta(0)).total_seconds()))
        day += timedelta(days=1)
    return next((step for step in (60, 30, 15) if all(o % (step * 60) == 0 for o in offsets)), 1)
