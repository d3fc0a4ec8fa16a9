"""A local stand-in for Adjust's Report Service, built from Adjust's documentation and as strict as it.

Source: Adjust, Reports endpoint (https://dev.adjust.com/en/api/rs-api/reports) and the Reports Service API
page ("Use multiple accounts", "Fetch reporting data", "Response codes"):

- only the documented filters are accepted (`dimensions`, `metrics`, `date_period` required; `cohort_maturity`,
  `utc_offset`, `attribution_type`, `attribution_types`, `attribution_source`, `reattributed`,
  `iap_revenue_mode`, `ad_revenue_mode`, `ad_revenue_sources`, `os_names`, `ad_spend_mode`, `sandbox`, `sort`,
  `index`, `format_dates`, `period_over_period`, `currency`, `[dimension]__in` and the other documented
  dimension and metric operators); anything else is a 400 "unsupported parameters", as is a value outside a
  filter's documented list;
- rows carry the requested dimensions and every metric as a string, totals as numbers, and `warnings`;
  `country_code` is the ISO code and `country` the full name; a `[dimension]__in` filter keeps the rows whose
  dimension is one of its comma-separated values; every row names its `partner_name` (a row's own, else
  "adstack"), organic installs and other partners' included unless filtered;
- `X-Account-ID` picks which of the user's accounts is read; without it, the first;
- 204 when there is nothing; 401 for a bad token; 403 for an app token the account does not own; optionally one
  429 before the first success.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

REQUIRED = ("dimensions", "metrics", "date_period")
FILTERS = frozenset(
    {
        "dimensions",
        "metrics",
        "date_period",
        "cohort_maturity",
        "utc_offset",
        "attribution_type",
        "attribution_types",
        "attribution_source",
        "reattributed",
        "iap_revenue_mode",
        "ad_revenue_mode",
        "ad_revenue_sources",
        "os_names",
        "ad_spend_mode",
        "sandbox",
        "sort",
        "index",
        "format_dates",
        "period_over_period",
        "currency",
    }
)
DIMENSIONS = frozenset(
    {
        "hour",
        "day",
        "week",
        "month",
        "year",
        "quarter",
        "os_name",
        "device_type",
        "app",
        "app_token",
        "store_id",
        "store_type",
        "currency",
        "currency_code",
        "network",
        "campaign",
        "campaign_network",
        "campaign_id_network",
        "adgroup",
        "adgroup_network",
        "adgroup_id_network",
        "source_network",
        "source_id_network",
        "creative",
        "creative_network",
        "creative_id_network",
        "country",
        "country_code",
        "region",
        "partner_name",
        "partner_id",
        "partner",
        "channel",
        "platform",
    }
)
DIMENSION_OPERATORS = (
    "in",
    "not_in",
    "contains",
    "exclude",
    "starts_with",
    "not_starts_with",
    "ends_with",
    "not_ends_with",
)
METRIC_OPERATORS = ("lt", "lte", "gt", "gte", "eq", "ne")
# The Datascape metrics these tests use (Adjust's glossary has many more; the fake knows only these).
METRICS = frozenset(
    {
        "installs",
        "clicks",
        "impressions",
        "cost",
        "network_cost",
        "network_installs",
        "network_ecpi",
        "all_revenue",
        "roas",
        *(f"retention_rate_d{n}" for n in (1, 3, 7, 14, 30)),
        *(f"all_revenue_total_d{n}" for n in (0, 1, 3, 7, 14, 30)),
    }
)
COHORT_PREFIXES = ("retention_rate_d", "all_revenue_total_d")
MONEY = ("cost", "network_cost", "all_revenue", "all_revenue_total_d")
ALLOWED_VALUES: dict[str, frozenset[str]] = {
    "cohort_maturity": frozenset({"immature", "mature"}),
    "attribution_type": frozenset({"click", "impression", "all"}),
    "attribution_source": frozenset({"first", "dynamic"}),
    "reattributed": frozenset({"all", "false", "true"}),
    "ad_spend_mode": frozenset({"adjust", "network", "mixed"}),
    "iap_revenue_mode": frozenset({"GROSS_100", "GROSS_85", "GROSS_70", "GROSS_60"}),
    "ad_revenue_mode": frozenset({"GROSS_100", "GROSS_85", "GROSS_70", "GROSS_60"}),
}
ATTRIBUTION_TYPES = frozenset({"click", "impression", "engaged_ad"})
COUNTRY_NAMES = {"ID": "Indonesia", "IN": "India", "BR": "Brazil", "RU": "Russian Federation", "US": "United States"}
# Units per USD, Adjust's own conversion for the `currency` filter (money in the rows is kept in USD).
RATES = {"USD": Decimal(1), "EUR": Decimal("0.92"), "IDR": Decimal(15700), "INR": Decimal(83)}
UTC_OFFSET = re.compile(r"^[+-](0\d|1[0-4]):(00|30|45)$")


@dataclass
class FakeAdjust:
    token: str
    # account id -> app token -> rows. Each row: day, campaign, adgroup, creative, country_code and metrics
    # (numbers, money in USD). A row's "cohort" metrics may be callables of the request's `today`.
    accounts: dict[str, dict[str, list[dict[str, Any]]]]
    empty_apps: set[str] = field(default_factory=set)
    rate_limit_first: bool = False
    today: Callable[[], date] = date.today
    requests: list[dict[str, Any]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @classmethod
    def single(cls, token: str, apps: dict[str, list[dict[str, Any]]], **kwargs: Any) -> FakeAdjust:
        return cls(token=token, accounts={"1001": apps}, **kwargs)

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeAdjust:
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
    def _send(
        handler: BaseHTTPRequestHandler, status: int, body: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        payload = b"" if body is None else json.dumps(body).encode()
        handler.send_response(status)
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        if payload:
            handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    @staticmethod
    def unsupported(params: dict[str, str]) -> list[str]:
        """Parameters Adjust does not document."""
        wrong = []
        for name in params:
            if name in FILTERS:
                continue
            base, _, operator = name.rpartition("__")
            if base in DIMENSIONS and operator in DIMENSION_OPERATORS:
                continue
            if base in METRICS and operator in METRIC_OPERATORS:
                continue
            wrong.append(name)
        return wrong

    @staticmethod
    def invalid_values(params: dict[str, str]) -> list[str]:
        wrong = [
            f"{name}={params[name]}"
            for name, allowed in ALLOWED_VALUES.items()
            if name in params and params[name] not in allowed
        ]
        if "attribution_types" in params and not set(params["attribution_types"].split(",")) <= ATTRIBUTION_TYPES:
            wrong.append(f"attribution_types={params['attribution_types']}")
        if "utc_offset" in params and not UTC_OFFSET.match(params["utc_offset"]):
            wrong.append(f"utc_offset={params['utc_offset']}")
        if "currency" in params and params["currency"] not in RATES:
            wrong.append(f"currency={params['currency']}")
        wrong += [f"dimensions: {d}" for d in params.get("dimensions", "").split(",") if d not in DIMENSIONS]
        wrong += [f"metrics: {m}" for m in params.get("metrics", "").split(",") if m not in METRICS]
        return wrong

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlparse(handler.path)
        raw = parse_qs(url.query, keep_blank_values=True)
        params = {k: v[0] for k, v in raw.items()}
        self.requests.append(
            {
                "path": url.path,
                "params": params,
                "repeated": [k for k, v in raw.items() if len(v) > 1],
                "authorization": handler.headers.get("Authorization"),
                "account": handler.headers.get("X-Account-ID"),
            }
        )
        if url.path != "/reports-service/report":
            return self._send(handler, 404, {"error": "not found"})
        if handler.headers.get("Authorization") != f"Bearer {self.token}":
            return self._send(handler, 401, {"error": "Unauthorized"})
        unsupported = self.unsupported(params)
        if unsupported:
            return self._send(handler, 400, {"error": f"unsupported parameters: {', '.join(sorted(unsupported))}"})
        missing = [p for p in REQUIRED if not params.get(p)]
        invalid = self.invalid_values(params)
        if missing or invalid:
            return self._send(handler, 400, {"error": f"missing: {missing}; invalid: {invalid}"})
        account = handler.headers.get("X-Account-ID") or next(iter(self.accounts))
        if account not in self.accounts:
            return self._send(handler, 403, {"error": "Forbidden"})
        if self.rate_limit_first:
            self.rate_limit_first = False
            return self._send(handler, 429, {"error": "Too Many Requests"}, {"Retry-After": "0"})
        apps = self.accounts[account]
        tokens = params.get("app_token__in", "").split(",") if params.get("app_token__in") else list(apps)
        if all(t in self.empty_apps for t in tokens):
            return self._send(handler, 204)
        if any(t not in apps for t in tokens):
            return self._send(handler, 403, {"error": "Forbidden"})
        return self._send(handler, 200, self._report(params, [row for t in tokens for row in apps[t]]))

    def _report(self, params: dict[str, str], source: list[dict[str, Any]]) -> dict[str, Any]:
        start_text, end_text = params["date_period"].split(":")
        start, end = date.fromisoformat(start_text), date.fromisoformat(end_text)
        dimensions = params["dimensions"].split(",")
        metrics = params["metrics"].split(",")
        rate = RATES[params.get("currency", "USD")]
        mature_only = params.get("cohort_maturity") == "mature"
        today = self.today()
        rows, totals = [], dict.fromkeys(metrics, Decimal(0))
        wanted = {name[: -len("__in")]: set(value.split(",")) for name, value in params.items()
                  if name.endswith("__in") and name != "app_token__in"}
        for row in source:
            day = date.fromisoformat(row["day"])
            if not start <= day <= end:
                continue
            if any(self._dimension(row, name) not in values for name, values in wanted.items()):
                continue
            out: dict[str, Any] = {"attr_dependency": {"partner": self._dimension(row, "partner_name")}}
            for dimension in dimensions:
                out[dimension] = self._dimension(row, dimension)
            for metric in metrics:
                value = row.get(metric)
                if value is None:
                    continue
                if callable(value):
                    value = value(today)
                number = Decimal(str(value))
                cohort_day = next((int(metric[len(p) :]) for p in COHORT_PREFIXES if metric.startswith(p)), None)
                if mature_only and cohort_day is not None and (today - day).days <= cohort_day:
                    number = Decimal(0)
                if metric.startswith(MONEY):
                    number *= rate
                out[metric] = str(number)
                totals[metric] += number
            rows.append(out)
        return {"rows": rows, "totals": {k: float(v) for k, v in totals.items()}, "warnings": []}

    @staticmethod
    def _dimension(row: dict[str, Any], dimension: str) -> str:
        if dimension == "country":
            return COUNTRY_NAMES.get(row.get("country_code", ""), "unknown")
        if dimension == "partner_name":
            return str(row.get("partner_name", "adstack"))
        return str(row.get(dimension, "unknown"))


def days_back(n: int) -> str:
    return (date.today() - timedelta(days=n)).isoformat()
