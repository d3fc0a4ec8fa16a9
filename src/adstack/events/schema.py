# ruff: noqa: S608  (statements built from this module's constants; no outside input)
"""The ClickHouse schema of the event store: one raw table, the dedup index and the hourly rollup.

The same statements run on embedded chDB and on a ClickHouse server. Every table keeps the last
block hashes (`non_replicated_deduplication_window`), so the loader can retry an insert with the same
`insert_deduplication_token` after a crash and the rows land once, in the raw table and in every view.
"""

from __future__ import annotations

EVENTS_TABLE = "events"
EVENT_IDS_TABLE = "event_ids"
ROLLUP_TABLE = "event_rollup_hourly"
# The same rollup without the supply side (ad space, publisher, placement type) and without quarter-hour
# slices: far fewer rows, for the everyday reports by time, campaign, ad group, creative, country,
# objective and event in zones whose offset is a whole number of hours.
CAMPAIGN_ROLLUP_TABLE = "event_rollup_campaign_hourly"
AD_SPACE_APPS_TABLE = "ad_space_apps"
DATA_TABLES = (EVENTS_TABLE, EVENT_IDS_TABLE, ROLLUP_TABLE, CAMPAIGN_ROLLUP_TABLE, AD_SPACE_APPS_TABLE)

DEDUP_WINDOW = 10_000

# Columns of the raw table in load order; the journal stores each event as a JSON object with exactly
# these keys, so the loader hands the journal's lines to ClickHouse unchanged.
EVENT_COLUMNS = (
    "event_id", "event_type", "occurred_at", "account_id", "campaign_id", "ad_group_id", "creative_id",
    "ad_space_id", "publisher_id", "placement_type", "country", "objective", "app_package", "device_hash",
    "conversion_event", "attribution_type", "partner", "revenue_micros", "cost_micros", "attrs",
)

# The dimensions of each rollup's key, in key order after account and time.
ROLLUP_DIMENSIONS = (
    "campaign_id", "ad_group_id", "creative_id", "country", "ad_space_id", "publisher_id", "placement_type",
    "objective", "conversion_event",
)
SUPPLY_DIMENSIONS = frozenset({"ad_space_id", "publisher_id", "placement_type"})
CAMPAIGN_ROLLUP_DIMENSIONS = tuple(d for d in ROLLUP_DIMENSIONS if d not in SUPPLY_DIMENSIONS)
_TYPES = {"country": "LowCardinality(String)", "placement_type": "LowCardinality(String)",
          "objective": "LowCardinality(String)", "conversion_event": "LowCardinality(String)"}

# Summed columns of the rollup, each with the expression over a raw event that feeds it.
ROLLUP_METRICS: dict[str, str] = {
    "requests": "event_type = 'request'",
    "impressions": "event_type = 'impression'",
    "clicks": "event_type = 'click'",
    "installs": "event_type = 'install'",
    "conversions": "event_type = 'in_app_event'",  # in-app events; which one is the conversion_event key
    "video_starts": "event_type = 'video_start'",
    "video_first_quartiles": "event_type = 'video_first_quartile'",
    "video_midpoints": "event_type = 'video_midpoint'",
    "video_third_quartiles": "event_type = 'video_third_quartile'",
    "video_completes": "event_type = 'video_complete'",
    "invalid": "event_type = 'invalid'",
}
# Money: cost comes only from charge events (billing's record), revenue only from conversions.
MONEY_METRICS: dict[str, str] = {
    "cost_micros": "if(event_type = 'charge', cost_micros, 0)",
    "revenue_micros": "if(event_type IN ('install', 'in_app_event'), revenue_micros, 0)",
}

_MERGE_TREE_SETTINGS = f"SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}"


def _conversion_event_expr() -> str:
    # Installs carry INSTALL whatever the writer put there; delivery events carry no conversion event, so
    # their rows are not split by a stray value.
    return ("multiIf(event_type = 'install', 'INSTALL', event_type = 'in_app_event', conversion_event, '')"
            " AS conversion_event")


def _rollup(table: str, dimensions: tuple[str, ...], metric_columns: str, metric_selects: str,
            money_selects: str, *, quarters: bool) -> list[str]:
    """A rollup table and the materialized view that feeds it from the raw events.

    Hourly (UTC); with `quarters`, each hour is split into quarter-hour slices (the column `quarter`),
    which make local days and hours exact in every zone in use, half-hour and 45-minute ones included.
    Without, `quarter` is always 0 and the table only serves zones with whole-hour offsets.
    """
    quarter = "toUInt8(toMinute(occurred_at) DIV 15)" if quarters else "toUInt8(0)"
    columns = ",\n  ".join(f"{d} {_TYPES.get(d, 'UInt64')}" for d in dimensions)
    selects = ", ".join(d for d in dimensions if d != "conversion_event")
    return [
        f"""CREATE TABLE IF NOT EXISTS {table} (
  account_id UInt64,
  hour DateTime('UTC'),
  quarter UInt8,
  {columns},
  {metric_columns},
  cost_micros Int64,
  revenue_micros Int64
) ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (account_id, hour, quarter, {", ".join(dimensions)})
{_MERGE_TREE_SETTINGS}""",
        f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {table}_mv TO {table} AS
SELECT
  account_id,
  toStartOfHour(occurred_at) AS hour,
  {quarter} AS quarter,
  {selects},
  {_conversion_event_expr()},
  {metric_selects},
  {money_selects}
FROM {EVENTS_TABLE}
GROUP BY account_id, hour, quarter, {", ".join(dimensions)}""",
    ]


def ddl() -> list[str]:
    """Idempotent statements that create the schema in the current database."""
    metric_columns = ",\n  ".join(f"{name} UInt64" for name in ROLLUP_METRICS)
    metric_selects = ",\n  ".join(f"countIf({expr}) AS {name}" for name, expr in ROLLUP_METRICS.items())
    money_selects = ",\n  ".join(f"sum({expr}) AS {name}" for name, expr in MONEY_METRICS.items())
    return [
        f"""CREATE TABLE IF NOT EXISTS {EVENTS_TABLE} (
  event_id String,
  event_type LowCardinality(String),
  occurred_at DateTime64(3, 'UTC'),
  account_id UInt64,
  campaign_id UInt64,
  ad_group_id UInt64,
  creative_id UInt64,
  ad_space_id UInt64,
  publisher_id UInt64,
  placement_type LowCardinality(String),
  country LowCardinality(String),
  objective LowCardinality(String),
  app_package String,
  device_hash UInt64,
  conversion_event LowCardinality(String),
  attribution_type LowCardinality(String),
  partner LowCardinality(String),
  revenue_micros Int64,
  cost_micros Int64,
  attrs Map(String, String),
  loaded_at DateTime('UTC') DEFAULT now()
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
        *_rollup(ROLLUP_TABLE, ROLLUP_DIMENSIONS, metric_columns, metric_selects, money_selects, quarters=True),
        *_rollup(CAMPAIGN_ROLLUP_TABLE, CAMPAIGN_ROLLUP_DIMENSIONS, metric_columns, metric_selects, money_selects,
                 quarters=False),
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
