"""AppsFlyer's Pull API, aggregate data: the partners-by-date report as CSV.

Source: AppsFlyer, "Pull API aggregate data" (https://support.appsflyer.com/hc/en-us/articles/207034346) and
the developer hub's "Aggregate Pull API" reference (https://dev.appsflyer.com/hc/reference/overview-11,
https://dev.appsflyer.com/hc/reference/aggregate-user-acquisition-and-retargeting): an API V2 token as a bearer
token; `GET /api/agg-data/export/app/<app_id>/partners_by_date_report/v5` with `from` and `to` (yyyy-mm-dd, the
install date range), and optionally `media_source` with `category` (facebook, twitter or standard),
`attribution_touch_type`, `currency`, `reattr` and `timezone`. Its columns: Date, Agency/PMD (af_prt), Media
Source (pid), Campaign (c), Impressions, Clicks, CTR, Installs, Conversion Rate, Sessions, Loyal Users, Loyal
Users/Installs, Total Revenue, Total Cost, ROI, ARPU, Average eCPI. Money is in the app's currency in AppsFlyer,
which the binding names.

One request covers the whole range. Source: AppsFlyer, "Report generation quotas (rate limitations)"
(https://support.appsflyer.com/hc/en-us/articles/207034366): Pull API aggregate calls of up to 2 days are
limited to "1 call per minute per app per report", and of 3+ days to 24 calls per day per app and 120 per
account. The partners report (no date column) needed one call per day, nine in a row for a pull, which that
per-minute limit refuses.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from datetime import date, timedelta
from typing import ClassVar
from urllib.parse import quote

import httpx

from adstack.connectors.base import BindingSettings, PartnerUnavailable, PulledRow, ReportFetcher, decimal_text
from adstack.core.outbound import OutboundPolicy

DEFAULT_BASE_URL = "https://hq1.appsflyer.com"
REPORT_PATH = "/api/agg-data/export/app/{app_id}/partners_by_date_report/v5"
MAX_DAYS_PER_PULL = 93
DATE_COLUMN = "Date"
CAMPAIGN_COLUMN = "Campaign (c)"
MEDIA_SOURCE_COLUMN = "Media Source (pid)"
# CSV column -> the metric name partner columns read (shared with Adjust where they mean the same).
METRIC_COLUMNS: dict[str, str] = {
    "Impressions": "impressions",
    "Clicks": "clicks",
    "Installs": "installs",
    "Sessions": "sessions",
    "Loyal Users": "loyal_users",
    "Total Revenue": "all_revenue",
    "Total Cost": "network_cost",
    "ROI": "roi",
    "ARPU": "arpu",
    "Average eCPI": "ecpi",
}


# The media sources that are their own `category`; every other one is `standard`.
OWN_CATEGORY_SOURCES = frozenset({"facebook", "twitter"})


def category_of(media_source: str) -> str:
    source = media_source.strip().lower()
    return source if source in OWN_CATEGORY_SOURCES else "standard"


class AppsFlyerReportConnector:
    partner: ClassVar[str] = "appsflyer"
    display_name: ClassVar[str] = "AppsFlyer"

    def __init__(self, *, base_url: str = DEFAULT_BASE_URL, max_attempts: int = 5, timeout_s: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep, transport: httpx.BaseTransport | None = None,
                 policy: OutboundPolicy | None = None):
        self.base_url = base_url.rstrip("/")
        self._fetcher = ReportFetcher(partner_name="AppsFlyer", field_name="appsflyer_api_url",
                                      max_attempts=max_attempts, timeout_s=timeout_s, sleep=sleep,
                                      transport=transport, policy=policy)
        self._attempts = 0

    @property
    def attempts_made(self) -> int:
        return self._attempts

    @staticmethod
    def params(binding: BindingSettings, date_from: date, date_to: date) -> dict[str, str]:
        params = {"from": date_from.isoformat(), "to": date_to.isoformat()}
        if binding.media_source:
            params["media_source"] = binding.media_source  # the report holds every network's rows
            # Source: AppsFlyer developer hub, "Aggregate user acquisition and retargeting": set both category and
            # media_source, category being facebook or twitter for those two and standard for every other source.
            params["category"] = category_of(binding.media_source)
        if binding.time_zone:
            params["timezone"] = binding.time_zone
        if tuple(binding.attribution_types) == ("impression",):
            params["attribution_touch_type"] = "impression"  # view-through KPIs
        if binding.reattributed == "true":
            params["reattr"] = "true"  # retargeting conversions
        return params

    def fetch(self, *, token: str, binding: BindingSettings, date_from: date, date_to: date) -> list[PulledRow]:
        url = self.base_url + REPORT_PATH.format(app_id=quote(binding.app_token, safe=""))
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/csv"}
        date_to = min(date_to, date_from + timedelta(days=MAX_DAYS_PER_PULL - 1))
        response = self._fetcher.get(url, params=self.params(binding, date_from, date_to), headers=headers,
                                     app=binding.app_token)
        self._attempts = self._fetcher.attempts_made
        if response is None:
            return []
        return self._rows(response.text, date_from, date_to, binding.currency, binding.media_source)

    @staticmethod
    def _rows(text: str, date_from: date, date_to: date, currency: str, media_source: str = "") -> list[PulledRow]:
        reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
        if reader.fieldnames is None:
            return []
        if not {DATE_COLUMN, CAMPAIGN_COLUMN, MEDIA_SOURCE_COLUMN} <= set(reader.fieldnames):
            raise PartnerUnavailable("AppsFlyer answered a CSV without the partners-by-date report's columns")
        rows = []
        ours = media_source.lower()
        for raw in reader:
            if ours and (raw.get(MEDIA_SOURCE_COLUMN) or "").strip().lower() != ours:
                continue  # another network's row (a partner that ignored the filter would otherwise count it)
            try:
                day = date.fromisoformat((raw.get(DATE_COLUMN) or "").strip())
            except ValueError:
                continue
            if not date_from <= day <= date_to:
                continue
            metrics = {name: value for column, name in METRIC_COLUMNS.items()
                       if (value := decimal_text(raw.get(column))) is not None}
            rows.append(PulledRow(day=day, campaign_label=(raw.get(CAMPAIGN_COLUMN) or "unknown")[:255],
                                  adgroup_label="", creative_label="", country="", currency=currency,
                                  metrics=metrics))
        return rows
