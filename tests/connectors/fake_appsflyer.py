"""A local stand-in for AppsFlyer's Pull API aggregate data, partners reports, built from AppsFlyer's
documentation and as strict as it.

Source: AppsFlyer, "Pull API aggregate data" (https://support.appsflyer.com/hc/en-us/articles/207034346) and
the developer hub's Aggregate Pull API reference (https://dev.appsflyer.com/hc/reference/overview-11):

- `GET /api/agg-data/export/app/<app_id>/partners_report/v5` and `.../partners_by_date_report/v5` with the API
  V2 token as a bearer token;
- parameters `from` and `to` (yyyy-mm-dd, required; the install date range), and optionally `media_source`,
  `attribution_touch_type` (impression), `currency`, `reattr` (true for retargeting) and `timezone`; any other
  parameter, or a malformed value, is a 400;
- `media_source` comes with `category`, as the developer hub's "Aggregate user acquisition and retargeting"
  reference (https://dev.appsflyer.com/hc/reference/aggregate-user-acquisition-and-retargeting) says to "Set
  both": facebook or twitter for those two media sources, standard for every other (an enum); one without the
  other, another value or a pair that does not match is a 400 here;
- the answer is CSV, one row per agency, media source and campaign summed over the range, with the partners
  report's columns; the partners-by-date report has one such row per day, its date in a first `Date` column;
- quotas, from "Report generation quotas (rate limitations)"
  (https://support.appsflyer.com/hc/en-us/articles/207034366): a range of up to 2 days, "1 call per minute per
  app per report"; of 3 or more days, 24 calls per day per app. A call past either is refused (with 429 here:
  the page does not state the code) and counts nothing.
An app the token cannot read is refused with 403 here (the pages above do not state the code).
"""

from __future__ import annotations

import csv
import io
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse
from zoneinfo import available_timezones

PATH = re.compile(r"^/api/agg-data/export/app/([^/]+)/(partners_report|partners_by_date_report)/v5$")
SHORT_RANGE_DAYS = 2
CALLS_PER_DAY_PER_APP = 24
PARAMS = frozenset(
    {"from", "to", "media_source", "category", "attribution_touch_type", "currency", "reattr", "timezone"}
)
CATEGORIES = ("standard", "facebook", "twitter")
COLUMNS = (
    "Agency/PMD (af_prt)",
    "Media Source (pid)",
    "Campaign (c)",
    "Impressions",
    "Clicks",
    "CTR",
    "Installs",
    "Conversion Rate",
    "Sessions",
    "Loyal Users",
    "Loyal Users/Installs",
    "Total Revenue",
    "Total Cost",
    "ROI",
    "ARPU",
    "Average eCPI",
)
SUMMED = ("Impressions", "Clicks", "Installs", "Sessions", "Loyal Users", "Total Revenue", "Total Cost")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass
class FakeAppsFlyer:
    token: str
    # app id -> rows: day, media_source, campaign, and any of SUMMED as numbers (money in the app's currency)
    apps: dict[str, list[dict[str, Any]]]
    requests: list[dict[str, Any]] = field(default_factory=list)
    clock: Callable[[], float] = time.time
    # (app, report) -> when its last short-range call was answered; (app, UTC day) -> long-range calls answered.
    _short_calls: dict[tuple[str, str], float] = field(default_factory=dict)
    _long_calls: dict[tuple[str, date], int] = field(default_factory=dict)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeAppsFlyer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake.handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, body: str = "", content_type: str = "text/plain") -> None:
        payload = body.encode()
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    @staticmethod
    def invalid(params: dict[str, str]) -> list[str]:
        wrong = sorted(set(params) - PARAMS)
        for name in ("from", "to"):
            if not DATE.match(params.get(name, "")):
                wrong.append(f"{name} must be yyyy-mm-dd")
        source, category = params.get("media_source"), params.get("category")
        if (source is None) != (category is None):
            wrong.append("media_source and category go together")
        elif source is not None and category != (source if source in CATEGORIES[1:] else "standard"):
            wrong.append("category")
        if params.get("attribution_touch_type", "impression") != "impression":
            wrong.append("attribution_touch_type")
        if params.get("reattr", "true") not in ("true", "false"):
            wrong.append("reattr")
        zone = params.get("timezone")
        if zone is not None and zone != "preferred" and zone not in available_timezones():
            wrong.append("timezone")
        return wrong

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlparse(handler.path)
        params = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        matched = PATH.match(url.path)
        self.requests.append(
            {
                "path": url.path,
                "params": params,
                "authorization": handler.headers.get("Authorization"),
                "app_id": unquote(matched.group(1)) if matched else None,
            }
        )
        if matched is None:
            return self._send(handler, 404, "Not found")
        if handler.headers.get("Authorization") != f"Bearer {self.token}":
            return self._send(handler, 401, "Unauthorized")
        wrong = self.invalid(params)
        if wrong:
            return self._send(handler, 400, f"Bad request: {', '.join(wrong)}")
        app_id = unquote(matched.group(1))
        if app_id not in self.apps:
            return self._send(handler, 403, "Forbidden")
        start, end = date.fromisoformat(params["from"]), date.fromisoformat(params["to"])
        report = matched.group(2)
        if not self._within_quota(app_id, report, (end - start).days + 1):
            return self._send(handler, 429, "Limit reached for " + report)
        by_date = report == "partners_by_date_report"
        groups: dict[tuple[str, str, str], dict[str, Decimal]] = {}
        for row in self.apps[app_id]:
            if not start <= date.fromisoformat(row["day"]) <= end:
                continue
            if "media_source" in params and row["media_source"] != params["media_source"]:
                continue
            key = (row["day"] if by_date else "", row["media_source"], row["campaign"])
            sums = groups.setdefault(key, dict.fromkeys(SUMMED, Decimal(0)))
            for column in SUMMED:
                sums[column] += Decimal(str(row.get(column, 0)))
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow((("Date",) if by_date else ()) + COLUMNS)
        for (day, media_source, campaign), sums in sorted(groups.items()):
            installs, cost, revenue = sums["Installs"], sums["Total Cost"], sums["Total Revenue"]
            writer.writerow(
                ([day] if by_date else [])
                + [
                    "None",
                    media_source,
                    campaign,
                    sums["Impressions"],
                    sums["Clicks"],
                    _ratio(sums["Clicks"], sums["Impressions"]),
                    installs,
                    _ratio(installs, sums["Clicks"]),
                    sums["Sessions"],
                    sums["Loyal Users"],
                    _ratio(sums["Loyal Users"], installs),
                    revenue,
                    cost,
                    _ratio(revenue - cost, cost),
                    _ratio(revenue, installs),
                    _ratio(cost, installs),
                ]
            )
        return self._send(handler, 200, out.getvalue(), "text/csv")

    def _within_quota(self, app_id: str, report: str, days: int) -> bool:
        now = self.clock()
        if days <= SHORT_RANGE_DAYS:
            last = self._short_calls.get((app_id, report))
            if last is not None and now - last < 60:
                return False
            self._short_calls[(app_id, report)] = now
            return True
        today = datetime.fromtimestamp(now, UTC).date()
        used = self._long_calls.get((app_id, today), 0)
        if used >= CALLS_PER_DAY_PER_APP:
            return False
        self._long_calls[(app_id, today)] = used + 1
        return True


def _ratio(numerator: Decimal, denominator: Decimal) -> str:
    return "N/A" if not denominator else str((numerator / denominator).quantize(Decimal("0.0001")))
