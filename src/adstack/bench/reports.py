# ruff: noqa: S608  (statements built from this module's constants; no outside input)
"""`adstack bench reports --events N`: report latency on the hourly rollup against raw-event scans.

N synthetic events are generated inside the engine (ClickHouse's numbers() table function, no Python
rows) into the event store's own schema, so the rollups are fed by the same materialized views as in
production. The synthetic platform's sizes (CARDINALITIES) are printed with the results, with how many
rollup rows each event costs. Then three reports over 30 days for one account run through the report SQL
builder, each next to the same aggregate written by hand over the raw events: by day and campaign, by hour
and creative, by country. Each pair must return the same columns and rows (the source of conversions
included); the JSON line gives the p50 latencies and their ratio (rollup / raw). Targets: each report
<= 1 s at 100 M events and a ratio <= 0.5.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from adstack.core.settings import get_settings
from adstack.events.engines import QueryResult
from adstack.events.schema import CAMPAIGN_ROLLUP_TABLE, DATA_TABLES, EVENTS_TABLE, ROLLUP_TABLE
from adstack.events.service import EventStore
from adstack.reports import query as report_sql
from adstack.reports.models import Dimension, Granularity, Metric, ReportQuery

ACCOUNT_ID = 1
TIME_ZONE = "Asia/Singapore"
DAYS = 30
CHUNK = 5_000_000
RUNS = 7
TARGET_MS = 1000.0
TARGET_RATIO = 0.5
METRICS = [Metric.IMPRESSIONS, Metric.CLICKS, Metric.COST_MICROS, Metric.INSTALLS]
COUNTRIES = ["ID", "IN", "TH", "VN", "PH", "MY", "SG", "BR", "MX", "RU", "TR", "EG", "NG", "PK", "BD", "SA", "AE",
             "US", "DE", "FR", "ES", "IT", "GB", "PL", "UA", "KZ", "CO", "AR", "CL", "PE"]
PLACEMENTS = ["banner", "interstitial", "rewarded_video", "push", "icon", "newsfeed"]

# The synthetic platform, sized like a small self-hosted network's month (100 M events: about a million
# impressions a day): 20 advertisers with 5 live campaigns each, 2 ad groups a campaign and 3 creatives an ad
# group, so a creative averages some 1,800 impressions a day. Traffic concentrates as real traffic does (a few
# campaigns, creatives and ad spaces take most of it), an ad space belongs to one publisher app in one country,
# and a campaign serves only in the countries it targets, so it meets only those countries' spaces. Every
# choice draws on a hash of its own, so event type, account, creative, country and ad space are independent.
ACCOUNTS = 20  # one (ACCOUNT_ID) takes a tenth of the events, the other 19 share the rest
CAMPAIGNS_PER_ACCOUNT = 5
AD_GROUPS_PER_CAMPAIGN = 2
CREATIVES_PER_AD_GROUP = 3
COUNTRIES_PER_CAMPAIGN = 2
AD_SPACES_PER_COUNTRY = 20
AD_SPACES_PER_PUBLISHER = 4
SKEW_POWER = 3
CREATIVES_PER_ACCOUNT = CAMPAIGNS_PER_ACCOUNT * AD_GROUPS_PER_CAMPAIGN * CREATIVES_PER_AD_GROUP
CREATIVES_PER_CAMPAIGN = AD_GROUPS_PER_CAMPAIGN * CREATIVES_PER_AD_GROUP
CARDINALITIES = {
    "accounts": ACCOUNTS, "campaigns": ACCOUNTS * CAMPAIGNS_PER_ACCOUNT,
    "ad_groups": ACCOUNTS * CAMPAIGNS_PER_ACCOUNT * AD_GROUPS_PER_CAMPAIGN,
    "creatives": ACCOUNTS * CREATIVES_PER_ACCOUNT, "countries": len(COUNTRIES),
    "countries_per_campaign": COUNTRIES_PER_CAMPAIGN, "ad_spaces": len(COUNTRIES) * AD_SPACES_PER_COUNTRY,
    "ad_spaces_per_country": AD_SPACES_PER_COUNTRY,
    "publishers": len(COUNTRIES) * AD_SPACES_PER_COUNTRY // AD_SPACES_PER_PUBLISHER, "placements": len(PLACEMENTS),
    "skew": f"a uniform draw to the power {SKEW_POWER} picks creatives and ad spaces: the first tenth of each "
            f"list takes about {round(100 * 0.1 ** (1 / SKEW_POWER))}% of the traffic",
    "conversions": "click-through (85%) or view-through (15%); ad requests under account 0, 70% filled",
}

# Event mix per 1000 events, as ad traffic looks: many ad requests, ads served and impressions, few conversions.
EVENT_MIX = [("ad_request", 150), ("request", 300), ("impression", 280), ("charge", 100), ("click", 40),
             ("video_start", 40), ("video_first_quartile", 20), ("video_complete", 20), ("install", 30),
             ("in_app_event", 20)]
assert sum(share for _, share in EVENT_MIX) == 1000


def _draw(seed: int) -> str:
    """A hash of the event number of its own for each choice, so choices do not correlate."""
    return f"cityHash64(number, {seed})"


def _event_type_sql() -> str:
    cases, bound = [], 0
    for name, share in EVENT_MIX:
        bound += share
        cases.append(f"{_draw(1)} % 1000 < {bound}, '{name}'")
    return f"multiIf({', '.join(cases[:-1])}, '{EVENT_MIX[-1][0]}')"


def _skewed(seed: int, size: int) -> str:
    """An index in 0..size-1 that favours the first entries, as real traffic does."""
    return f"toUInt64(floor(pow(({_draw(seed)} % 1000000) / 1000000.0, {SKEW_POWER}) * {size}))"


def _generate_sql(start: datetime, offset: int, count: int, total: int) -> str:
    """One INSERT ... SELECT of `count` synthetic events numbered from `offset` out of `total`.

    Events come in time order, as traffic does, so each inserted block covers minutes to hours, not the
    month, and the views aggregate it as they would in production.
    """
    supply = "event_type = 'ad_request'"  # the platform's: account 0, no campaign or ad
    conversion = "event_type IN ('install', 'in_app_event')"
    # One account in ten events is the reported one; per account, campaigns x ad groups x creatives, most
    # traffic on a few; a campaign targets COUNTRIES_PER_CAMPAIGN countries and serves on the (skewed) ad
    # spaces of the country it reached.
    country_index = (f"(intDiv(creative_index, {CREATIVES_PER_CAMPAIGN}) * 7 + account_draw * 3 + "
                     f"{_draw(5)} % {COUNTRIES_PER_CAMPAIGN}) % {len(COUNTRIES)}")
    countries = "[" + ", ".join(f"'{c}'" for c in COUNTRIES) + "]"
    placements = "[" + ", ".join(f"'{p}'" for p in PLACEMENTS) + "]"
    seconds = DAYS * 86400
    return f"""
INSERT INTO {EVENTS_TABLE} (event_id, event_type, occurred_at, account_id, campaign_id, ad_group_id, creative_id,
  ad_space_id, publisher_id, placement_type, country, objective, app_package, conversion_event, attribution_type,
  revenue_micros, cost_micros, attrs)
SETTINGS optimize_on_insert = 0
SELECT
  concat('bench-', toString(number)) AS event_id,
  event_type,
  toDateTime64({int(start.timestamp())} + intDiv(number * {seconds}, {total}), 3, 'UTC') AS occurred_at,
  if({supply}, 0, account_draw) AS account_id,
  if({supply}, 0, account_draw * 1000 + intDiv(creative_index, {CREATIVES_PER_CAMPAIGN}) + 1) AS campaign_id,
  if({supply}, 0, account_draw * 10000 + intDiv(creative_index, {CREATIVES_PER_AD_GROUP}) + 1) AS ad_group_id,
  if({supply}, 0, account_draw * 100000 + creative_index + 1) AS creative_id,
  1 + country_index * {AD_SPACES_PER_COUNTRY} + space_slot AS ad_space_id,
  1 + intDiv(ad_space_id - 1, {AD_SPACES_PER_PUBLISHER}) AS publisher_id,
  {placements}[1 + ad_space_id % {len(PLACEMENTS)}] AS placement_type,
  {countries}[1 + country_index] AS country,
  if({supply}, '', if((account_draw * 1000 + intDiv(creative_index, {CREATIVES_PER_CAMPAIGN}) + 1) % 4 = 0,
     'brand', 'performance')) AS objective,
  concat('com.publisher.app', toString(publisher_id)) AS app_package,
  multiIf(event_type = 'install', 'INSTALL', event_type = 'in_app_event',
          if({_draw(6)} % 3 = 0, 'PURCHASE', 'APP_OPEN'), '') AS conversion_event,
  if({conversion}, if({_draw(7)} % 100 < 85, 'click', 'view'), '') AS attribution_type,
  if(conversion_event = 'PURCHASE', 1000000 + {_draw(8)} % 9000000, 0) AS revenue_micros,
  if(event_type = 'charge', 500 + {_draw(8)} % 5000, 0) AS cost_micros,
  if({supply}, map('filled', if({_draw(9)} % 10 < 7, '1', '0')), map()) AS attrs
FROM (SELECT number, event_type, account_draw, creative_index, {country_index} AS country_index,
             {_skewed(4, AD_SPACES_PER_COUNTRY)} AS space_slot
      FROM (SELECT number, {_event_type_sql()} AS event_type,
                   if({_draw(2)} % 10 = 0, {ACCOUNT_ID}, 2 + {_draw(2)} DIV 10 % {ACCOUNTS - 1}) AS account_draw,
                   {_skewed(3, CREATIVES_PER_ACCOUNT)} AS creative_index
            FROM numbers({offset}, {count})))"""


# The three reports and the same aggregates by hand over the raw events.
REPORTS: dict[str, list[Dimension]] = {
    "day_and_campaign": [Dimension.DATE, Dimension.CAMPAIGN],
    "hour_and_creative": [Dimension.HOUR, Dimension.CREATIVE],
    "country": [Dimension.COUNTRY],
}
_RAW_DIMENSIONS = {
    Dimension.DATE: "toDate(toTimeZone(occurred_at, {tz:String}))",
    Dimension.HOUR: report_sql.local_hour_sql("occurred_at"),
    Dimension.CAMPAIGN: "campaign_id",
    Dimension.CREATIVE: "creative_id",
    Dimension.COUNTRY: "country",
}
_RAW_METRICS = {
    "impressions": "countIf(event_type = 'impression')",
    "clicks": "countIf(event_type = 'click')",
    "cost_micros": "sumIf(cost_micros, event_type = 'charge')",
    "installs": "countIf(event_type = 'install' AND attribution_type IN ('click', 'view'))",
}
# Where a row's conversions came from: adstack's ads unless organic or another network's; a report grouped by
# anything but time keeps these apart.
_RAW_SOURCE = ("multiIf(attribution_type = 'other', 'other', attribution_type = 'organic' OR "
               "(event_type IN ('install', 'in_app_event') AND campaign_id = 0), 'organic', 'ads')")


def _raw_sql(dimensions: list[Dimension], plan: report_sql.Plan) -> str:
    """The report's page, count and totals, written directly over the raw events."""
    columns = plan.dimension_columns
    groups = [f"d_{c}" for c in columns]
    selects = [f"{_RAW_DIMENSIONS[d]} AS d_{c}" for d, c in zip(dimensions, columns, strict=True)]
    order = []
    if plan.by_source:
        selects.append(f"{_RAW_SOURCE} AS d_source")
        groups.append("d_source")
        order = ["d_source != 'ads'", "d_source"]
    selects += [f"{_RAW_METRICS[m]} AS m_{m}" for m in plan.base_metrics]
    selects.append("count() OVER () AS n_rows")
    selects += [f"sum(m_{m}) OVER () AS t_{m}" for m in plan.base_metrics]
    return f"""SELECT {', '.join(selects)}
FROM {EVENTS_TABLE}
WHERE account_id IN {{accounts:Array(UInt64)}}
  AND occurred_at >= {{t_from:DateTime('UTC')}} AND occurred_at < {{t_to:DateTime('UTC')}}
GROUP BY {', '.join(groups)}
ORDER BY {', '.join([*order, 'm_cost_micros DESC', *(f'd_{c}' for c in columns)])}
LIMIT 100"""


def _p50(store: EventStore, statement: str, params: dict[str, Any]) -> tuple[float, QueryResult]:
    result = store.query(statement, params, fresh=False)  # warm-up, and the rows to compare
    timings = []
    for _ in range(RUNS):
        began = time.perf_counter()
        store.query(statement, params, fresh=False)
        timings.append((time.perf_counter() - began) * 1000)
    return statistics.median(timings), result


def _bench_store(root: Path) -> EventStore:
    url = get_settings().clickhouse_url
    if url:  # a server: a database of its own, never the platform's
        parts = urlsplit(url)
        return EventStore(journal_dir=root / "journal",
                          clickhouse_url=urlunsplit(parts._replace(path="/adstack_bench")))
    return EventStore(journal_dir=root / "journal", chdb_path=root / "chdb")


def _cpu_seconds() -> float:
    """This process's user + system CPU time: with embedded chDB the engine's threads are counted too, and on a
    shared machine the per-CPU-second rate holds where wall time also counts others' use of the cores."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(events: int = 100_000_000) -> dict[str, Any]:
    console = Console(stderr=True)
    root = Path(tempfile.mkdtemp(prefix="adstack-bench-reports-"))
    store = _bench_store(root)
    try:
        for table in DATA_TABLES:
            store.command(f"TRUNCATE TABLE IF EXISTS {table}")
        today = datetime.now(UTC).date()
        first_day = today - timedelta(days=DAYS - 1)
        start = datetime.combine(first_day, datetime.min.time(), UTC) - timedelta(hours=8)
        began, cpu_began = time.perf_counter(), _cpu_seconds()
        with Progress(TextColumn("loading events"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console) as progress:
            task = progress.add_task("load", total=events)
            for offset in range(0, events, CHUNK):
                count = min(CHUNK, events - offset)
                store.command(_generate_sql(start, offset, count, events))
                progress.advance(task, count)
        load_seconds = time.perf_counter() - began
        load_cpu = _cpu_seconds() - cpu_began if store.embedded else None  # a server's CPU is not ours to read
        load_average = os.getloadavg()
        rollup_rows = {table: store.query(f"SELECT count() FROM {table}", fresh=False).rows[0][0]
                       for table in (ROLLUP_TABLE, CAMPAIGN_ROLLUP_TABLE)}
        account_events = store.query(f"SELECT count() FROM {EVENTS_TABLE} WHERE account_id = {ACCOUNT_ID}",
                                     fresh=False).rows[0][0]

        results: dict[str, Any] = {}
        for name, dimensions in REPORTS.items():
            time_dims = [d for d in dimensions if d in (Dimension.DATE, Dimension.HOUR)]
            granularity = Granularity.HOUR if Dimension.HOUR in time_dims else (
                Granularity.DAY if time_dims else Granularity.TOTAL)
            query = ReportQuery(start_date=first_day, end_date=today, granularity=granularity,
                                dimensions=[d for d in dimensions if d not in time_dims], metrics=METRICS,
                                account_ids=[ACCOUNT_ID], time_zone=TIME_ZONE, sort="-cost_micros", limit=100)
            plan = report_sql.build(query, account_ids=[ACCOUNT_ID], tz_name=TIME_ZONE,
                                    metrics=[m.value for m in METRICS], sort=("cost_micros", True), limit=100,
                                    offset=0)
            raw = _raw_sql(query.effective_dimensions(), plan)
            rollup_ms, rollup_out = _p50(store, plan.sql, plan.params)
            raw_ms, raw_out = _p50(store, raw, plan.params)
            results[name] = {
                "p50_ms": round(rollup_ms, 1), "raw_p50_ms": round(raw_ms, 1),
                "ratio": round(rollup_ms / raw_ms, 3) if raw_ms else None,
                "rows": rollup_out.dicts()[0]["n_rows"] if rollup_out.rows else 0,
                "same_result": (rollup_out.columns, rollup_out.rows) == (raw_out.columns, raw_out.rows),
            }
        passed = all(r["same_result"] and r["p50_ms"] <= TARGET_MS and (r["ratio"] or 0) <= TARGET_RATIO
                     for r in results.values())
        line = {
            "bench": "reports", "engine": "clickhouse" if store.clickhouse_url else "chdb", "events": events,
            "cardinalities": CARDINALITIES, "account_events": account_events, "rollup_rows": rollup_rows,
            "rollup_rows_per_event": {table: round(rows / events, 4) for table, rows in rollup_rows.items()},
            "load_seconds": round(load_seconds, 1),
            "events_per_second": round(events / load_seconds) if load_seconds else None,
            "load_cpu_seconds": None if load_cpu is None else round(load_cpu, 1),
            "events_per_cpu_second": round(events / load_cpu) if load_cpu else None,
            "load_average_after_load": [round(x, 2) for x in load_average],
            "load_average_after_reports": [round(x, 2) for x in os.getloadavg()], "days": DAYS,
            "time_zone": TIME_ZONE, "reports": results, "target_ms": TARGET_MS, "target_ratio": TARGET_RATIO,
            "meets_targets": passed,
        }
        print(orjson.dumps(line).decode(), flush=True)
        return line
    finally:
        store.close()
        shutil.rmtree(root, ignore_errors=True)

