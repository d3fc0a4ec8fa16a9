# ruff: noqa: S608  (statements built from this module's constants; no outside input)
"""The ClickHouse schema of the event store: one raw table, the dedup index and the hourly rollup.

The same statements run on embedded chDB and on a ClickHouse server. Every table keeps the last
block hashes (`non_replicated_deduplication_window`), so the loader can retry an insert with the same
`insert_deduplication_token` after a crash and the rows land once, in the raw table and in every view.

A store made by an earlier version is brought up to date when it is opened (`upgrade`): missing columns
are added (rows already stored read their default) and the views feeding a rollup that gained columns get
the current query, so nothing is rewritten and old data stays readable.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

EVENTS_TABLE = "events"
EVENT_IDS_TABLE = "event_ids"
# Every dimension, in half-hour slices (see SLICE_MINUTES).
ROLLUP_TABLE = "event_rollup_hourly"
# The same rollup without the supply side (ad space, publisher, placement type) and without quarter-hour
# slices: far fewer rows, for the everyday reports by time, campaign, ad group, creative, country,
# objective and event in zones whose offset is a whole number of hours.
CAMPAIGN_ROLLUP_TABLE = "event_rollup_campaign_hourly"
AD_SPACE_APPS_TABLE = "ad_space_apps"
DATA_TABLES = (EVENTS_TABLE, EVENT_IDS_TABLE, ROLLUP_TABLE, CAMPAIGN_ROLLUP_TABLE, AD_SPACE_APPS_TABLE)

DEDUP_WINDOW = 10_000
# The attr attribution sets on an in-app event that is a refund or a cancellation (negative revenue as sent).
REFUND_ATTR = "refund"

# Columns of the raw table in load order; the journal stores each event as a JSON object with exactly
# these keys, so the loader hands the journal's lines to ClickHouse unchanged.
EVENT_COLUMNS = (
    "event_id", "event_type", "occurred_at", "account_id", "campaign_id", "ad_group_id", "creative_id",
    "ad_space_id", "publisher_id", "placement_type", "country", "objective", "app_package", "device_hash",
    "conversion_event", "attribution_type", "partner", "revenue_micros", "cost_micros", "media_cost_micros",
    "attrs",
)

# The dimensions of each rollup's key, in key order after account and time. `attribution_type` comes last:
# a store made before it had the rest as its whole key, and ClickHouse only lets a new column join the end.
ROLLUP_DIMENSIONS = (
    "campaign_id", "ad_group_id", "creative_id", "country", "ad_space_id", "publisher_id", "placement_type",
    "objective", "conversion_event", "attribution_type",
)
# Key columns computed in the view rather than copied from the raw event.
_COMPUTED_DIMENSIONS = frozenset({"conversion_event", "attribution_type"})
SUPPLY_DIMENSIONS = frozenset({"ad_space_id", "publisher_id", "placement_type"})
CAMPAIGN_ROLLUP_DIMENSIONS = tuple(d for d in ROLLUP_DIMENSIONS if d not in SUPPLY_DIMENSIONS)
_TYPES = {"country": "LowCardinality(String)", "placement_type": "LowCardinality(String)",
          "objective": "LowCardinality(String)", "conversion_event": "LowCardinality(String)",
          "attribution_type": "LowCardinality(String)"}

# Summed columns of the rollup, each with the expression over a raw event that feeds it.
ROLLUP_METRICS: dict[str, str] = {
    "requests": "event_type = 'request'",
    "ad_requests": "event_type = 'ad_request'",
    "filled_ad_requests": f"event_type = 'ad_request' AND {EVENTS_TABLE}.attrs['filled'] = '1'",
    "impressions": "event_type = 'impression'",
    "clicks": "event_type = 'click'",
    "installs": "event_type = 'install'",
    # In-app events (which one is the conversion_event key). One with negative revenue is a refund or a
    # cancellation of an earlier event, not another occurrence of it: it nets the revenue and is counted apart,
    # marked by attribution from the sign as sent (an amount that rounds to 0 micros, or has no FX rate, is one).
    "conversions": f"event_type = 'in_app_event' AND {EVENTS_TABLE}.attrs['{REFUND_ATTR}'] != '1'",
    "refunds": f"event_type = 'in_app_event' AND {EVENTS_TABLE}.attrs['{REFUND_ATTR}'] = '1'",
    "video_starts": "event_type = 'video_start'",
    "video_first_quartiles": "event_type = 'video_first_quartile'",
    "video_midpoints": "event_type = 'video_midpoint'",
    "video_third_quartiles": "event_type = 'video_third_quartile'",
    "video_completes": "event_type = 'video_complete'",
    "invalid": "event_type = 'invalid'",
    # Impressions whose exchange clearing price is known, so media cost can be read against its coverage.
    # Qualified: in the view's SELECT the bare name is the alias of the summed column.
    "media_cost_impressions": f"event_type = 'impression' AND {EVENTS_TABLE}.media_cost_micros IS NOT NULL",
}
# Money: cost comes only from charge events (billing's record), revenue only from conversions, media cost
# (what an exchange charged us) only from impressions, where an unknown price counts as nothing.
MONEY_METRICS: dict[str, str] = {
    "cost_micros": "if(event_type = 'charge', cost_micros, 0)",
    "revenue_micros": "if(event_type IN ('install', 'in_app_event'), revenue_micros, 0)",
    "media_cost_micros": "if(event_type = 'impression', ifNull(media_cost_micros, 0), 0)",
    # Revenue by cohort day: a conversion's whole days since its install (attrs install_at; -1 when unknown).
    "revenue_d0_micros": f"if(event_type IN ('install', 'in_app_event') AND {{days}} = 0, "
                         f"{EVENTS_TABLE}.revenue_micros, 0)",
    "revenue_d7_micros": f"if(event_type IN ('install', 'in_app_event') AND {{days}} BETWEEN 0 AND 7, "
                         f"{EVENTS_TABLE}.revenue_micros, 0)",
}
# Whole days from the install to the conversion, floor; attrs keep the install's time as UTC ISO text.
DAYS_SINCE_INSTALL = (f"ifNull(intDiv(dateDiff('second', parseDateTime64BestEffortOrNull(attrs['install_at'], 3, "
                      f"'UTC'), {EVENTS_TABLE}.occurred_at), 86400), -1)")
MONEY_METRICS = {name: expr.replace("{days}", DAYS_SINCE_INSTALL) for name, expr in MONEY_METRICS.items()}

# The raw table's columns and their types.
EVENT_TABLE_COLUMNS: dict[str, str] = {
    "event_id": "String",
    "event_type": "LowCardinality(String)",
    "occurred_at": "DateTime64(3, 'UTC')",
    "account_id": "UInt64",
    "campaign_id": "UInt64",
    "ad_group_id": "UInt64",
    "creative_id": "UInt64",
    "ad_space_id": "UInt64",
    "publisher_id": "UInt64",
    "placement_type": "LowCardinality(String)",
    "country": "LowCardinality(String)",
    "objective": "LowCardinality(String)",
    "app_package": "String",
    "device_hash": "UInt64",
    "conversion_event": "LowCardinality(String)",
    "attribution_type": "LowCardinality(String)",
    "partner": "LowCardinality(String)",
    "revenue_micros": "Int64",
    "cost_micros": "Int64",
    "media_cost_micros": "Nullable(Int64)",  # NULL: the exchange's price is unknown (or there is no exchange)
    "attrs": "Map(String, String)",
    "loaded_at": "DateTime('UTC') DEFAULT now()",
}
assert set(EVENT_COLUMNS) <= set(EVENT_TABLE_COLUMNS)

_MERGE_TREE_SETTINGS = f"SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}"


def _conversion_event_expr() -> str:
    # Installs carry INSTALL whatever the writer put there; delivery events carry no conversion event, so
    # their rows are not split by a stray value.
    return ("multiIf(event_type = 'install', 'INSTALL', event_type = 'in_app_event', conversion_event, '')"
            " AS conversion_event")


SUPPLY_ATTRIBUTION = "supply"


def _attribution_type_expr() -> str:
    # Only conversions are attributed (click, view, organic, other); ad requests are keyed apart as "supply",
    # so demand reports leave them out; anything else keeps the row key empty.
    return (f"multiIf(event_type IN ('install', 'in_app_event'), attribution_type, "
            f"event_type = 'ad_request', '{SUPPLY_ATTRIBUTION}', '') AS attribution_type")


def _rollup_columns(dimensions: tuple[str, ...]) -> dict[str, str]:
    """A rollup table's columns and their types."""
    return {
        "account_id": "UInt64",
        "hour": "DateTime('UTC')",
        "quarter": "UInt8",
        **{d: _TYPES.get(d, "UInt64") for d in dimensions},
        **{name: "UInt64" for name in ROLLUP_METRICS},
        **{name: "Int64" for name in MONEY_METRICS},
    }


# The slice a sliced rollup splits each UTC hour into. Every zone in use is a whole or half hour from UTC
# except a few 45-minute ones (Nepal, Chatham, Eucla), whose reports read the raw events instead; quarter-hour
# slices cost a third more rows for them. The column keeps its name and unit (`quarter`, 0..3, 15 minutes),
# so rows stored in quarter-hour slices by an earlier version stay exact.
SLICE_MINUTES = 30


def _slice_expr(minutes: int) -> str:
    return f"toUInt8(intDiv(toMinute(occurred_at), {minutes}) * {minutes // 15})"


def _rollup_view_query(dimensions: tuple[str, ...], *, quarters: bool, slice_minutes: int | None = None,
                       where: str = "") -> str:
    """The SELECT of the materialized view that feeds a rollup from the raw events.

    Hourly (UTC); with `quarters`, each hour is split into `slice_minutes` slices (the column `quarter`
    counts quarter hours from the hour), which make local days and hours exact in every zone whose offset
    is a multiple of the slice. Without, `quarter` is always 0 and the table only serves zones with
    whole-hour offsets. `where` narrows the raw events read (the report's own scan of raw events).
    """
    quarter = _slice_expr(slice_minutes or SLICE_MINUTES) if quarters else "toUInt8(0)"
    selects = ", ".join(d for d in dimensions if d not in _COMPUTED_DIMENSIONS)
    computed = "".join(f"{expr()},\n  " for name, expr in (("conversion_event", _conversion_event_expr),
                                                            ("attribution_type", _attribution_type_expr))
                       if name in dimensions).rstrip()
    metric_selects = ",\n  ".join(f"countIf({expr}) AS {name}" for name, expr in ROLLUP_METRICS.items())
    money_selects = ",\n  ".join(f"sum({expr}) AS {name}" for name, expr in MONEY_METRICS.items())
    return f"""SELECT
  account_id,
  toStartOfHour(occurred_at) AS hour,
  {quarter} AS quarter,
  {selects},
  {computed}
  {metric_selects},
  {money_selects}
FROM {EVENTS_TABLE}{f"{chr(10)}WHERE {where}" if where else ""}
GROUP BY account_id, hour, quarter, {", ".join(dimensions)}"""


def raw_rollup_sql(where: str) -> str:
    """The raw events selected by `where`, aggregated exactly as the rollups are (every dimension, quarter-hour
    slices), as a subquery: a report no rollup answers reads this with the same SQL, so the same rules count."""
    return _rollup_view_query(ROLLUP_DIMENSIONS, quarters=True, slice_minutes=15, where=where)


def _rollup(table: str, dimensions: tuple[str, ...], *, quarters: bool) -> list[str]:
    """A rollup table and the materialized view that feeds it from the raw events."""
    columns = ",\n  ".join(f"{name} {kind}" for name, kind in _rollup_columns(dimensions).items())
    return [
        f"""CREATE TABLE IF NOT EXISTS {table} (
  {columns}
) ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (account_id, hour, quarter, {", ".join(dimensions)})
{_MERGE_TREE_SETTINGS}""",
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {table}_mv TO {table} AS\n"
        + _rollup_view_query(dimensions, quarters=quarters),
    ]


# Rollup table -> (its dimensions, whether it has quarter-hour slices).
ROLLUPS: dict[str, tuple[tuple[str, ...], bool]] = {
    ROLLUP_TABLE: (ROLLUP_DIMENSIONS, True),
    CAMPAIGN_ROLLUP_TABLE: (CAMPAIGN_ROLLUP_DIMENSIONS, False),
}


def ddl() -> list[str]:
    """Idempotent statements that create the schema in the current database."""
    event_columns = ",\n  ".join(f"{name} {kind}" for name, kind in EVENT_TABLE_COLUMNS.items())
    return [
        f"""CREATE TABLE IF NOT EXISTS {EVENTS_TABLE} (
  {event_columns}
) ENGINE = MergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (account_id, toStartOfHour(occurred_at), event_type, event_id)
{_MERGE_TREE_SETTINGS}""",
        # Every id ever loaded, sorted by id: the loader looks a batch's ids up here before inserting.
        f"""CREATE TABLE IF NOT EXISTS {EVENT_IDS_TABLE} (
  event_id String,
  account_id UInt64
) ENGINE = ReplacingMergeTree
ORDER BY event_id
{_MERGE_TREE_SETTINGS}""",
        f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {EVENT_IDS_TABLE}_mv TO {EVENT_IDS_TABLE} AS
SELECT event_id, account_id FROM {EVENTS_TABLE}""",
        *(statement for table, (dimensions, quarters) in ROLLUPS.items()
          for statement in _rollup(table, dimensions, quarters=quarters)),
        # Which publisher app each ad space was seen in, for the media center's package search.
        f"""CREATE TABLE IF NOT EXISTS {AD_SPACE_APPS_TABLE} (
  ad_space_id UInt64,
  publisher_id UInt64,
  app_package String,
  last_seen DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(last_seen)
ORDER BY (ad_space_id, app_package)
{_MERGE_TREE_SETTINGS}""",
        f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {AD_SPACE_APPS_TABLE}_mv TO {AD_SPACE_APPS_TABLE} AS
SELECT ad_space_id, any(publisher_id) AS publisher_id, app_package, max(occurred_at) AS last_seen
FROM {EVENTS_TABLE}
WHERE event_type IN ('request', 'impression') AND ad_space_id != 0 AND app_package != ''
GROUP BY ad_space_id, app_package""",
    ]


def upgrade(existing: Mapping[str, Collection[str]]) -> list[str]:
    """Statements that bring tables made by an earlier version up to this schema, given the column names
    of each table and view that exists (run before `ddl`, which creates what does not). Added columns take
    their default in rows already stored; a view that does not yet select every column of its rollup gets
    the current query, so later events fill them."""
    statements: list[str] = []

    def add_missing(table: str, columns: Mapping[str, str], key: tuple[str, ...] = ()) -> None:
        have = existing.get(table)
        if have is None:
            return
        previous = ""
        present = set(have)
        for name, kind in columns.items():
            if name not in have:
                position = f" AFTER {previous}" if previous else " FIRST"
                statement = f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {name} {kind}{position}"
                present.add(name)
                if name in key:
                    # A new key column joins the end of the sorting key in the same ALTER, the only way
                    # ClickHouse allows; rows already stored read its default there, so they keep their order.
                    statement += f", MODIFY ORDER BY ({', '.join(k for k in key if k in present)})"
                statements.append(statement)
            previous = name

    add_missing(EVENTS_TABLE, EVENT_TABLE_COLUMNS)
    for table, (dimensions, quarters) in ROLLUPS.items():
        columns = _rollup_columns(dimensions)
        add_missing(table, columns, ("account_id", "hour", "quarter", *dimensions))
        view = existing.get(f"{table}_mv")
        # Columns are not all a view can lack (the slice changed once): restating the query costs one
        # metadata change, so it is done on every open rather than guessed from the columns.
        if view is not None and (quarters or not set(columns) <= set(view)):
            statements.append(f"ALTER TABLE {table}_mv MODIFY QUERY\n"
                              + _rollup_view_query(dimensions, quarters=quarters))
    return statements
