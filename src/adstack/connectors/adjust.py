"""Adjust's Report Service API: `GET /reports-service/report` with a bearer token.

Source: Adjust, "Reports Service API" (https://dev.adjust.com/en/api/rs-api/reports and the Reports Service
API page of Adjust's developer docs, "Use multiple accounts" and "Fetch reporting data"). Only parameters
those pages document are sent: `app_token__in` (the `[dimension]__in` filter), `date_period`, `dimensions`,
`metrics`, `cohort_maturity`, `utc_offset`, `attribution_types`, `attribution_source`, `reattributed`,
`ad_revenue_sources`, `ad_spend_mode`, `currency`; and the `X-Account-ID` header for a user with several
Adjust accounts. Rows carry every metric as a string; 204 means no data; 400 a malformed request or one with
unsupported parameters.

The report holds every source of the app's installs: organic ones and every other partner's, each row naming
its `partner_name` (Adjust's example answer has a "partner_name": "Organic" row). Only adstack's are ours, so
the pull asks for `partner_name__in=<our partner name>` and drops any other partner's row it still receives;
another network's campaign labelled like one of ours must not count as ours.
Source: Adjust, "Datascape dimensions" (https://help.adjust.com/en/article/datascape-dimensions-glossary):
Partner, "Partner name in Adjust", API slug `partner_name`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date
from typing import Any, ClassVar

import httpx

from adstack.connectors.base import (
    BindingSettings,
    PartnerUnavailable,
    PulledRow,
    ReportFetcher,
    decimal_text,
)
from adstack.core.outbound import OutboundPolicy

DEFAULT_BASE_URL = "https://automate.adjust.com"
REPORT_PATH = "/reports-service/report"
# Source: Adjust Reports endpoint, "Dimensions": campaign, adgroup and creative are tracker sub-levels 1 to 3;
# country_code is the 2-character ISO 3166 code (country is the full name).
DIMENSIONS = ("day", "partner_name", "campaign", "adgroup", "creative", "country_code")
RETENTION_DAYS = (1, 3, 7)
COHORT_DAYS = (0, 1, 3, 7)
METRICS: tuple[str, ...] = (
    "installs",
    "network_cost",
    "all_revenue",
    "roas",
    *(f"retention_rate_d{n}" for n in RETENTION_DAYS),
    *(f"all_revenue_total_d{n}" for n in COHORT_DAYS),
)
# Source: Adjust Reports endpoint, "Filters": the values each documented filter takes.
ATTRIBUTION_TYPES = ("click", "impression", "engaged_ad")
ATTRIBUTION_SOURCES = ("first", "dynamic")
REATTRIBUTED = ("all", "false", "true")
AD_SPEND_MODES = ("adjust", "network", "mixed")
# Cohort metrics are pulled with their current values and re-pulled until mature (see base.COHORT_MATURITY_DAYS),
# rather than as zeros while immature.
COHORT_MATURITY = "immature"


class AdjustReportConnector:
    partner: ClassVar[str] = "adjust"
    display_name: ClassVar[str] = "Adjust"

    def __init__(self, *, base_url: str = DEFAULT_BASE_URL, max_attempts: int = 5, timeout_s: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep, transport: httpx.BaseTransport | None = None,
                 policy: OutboundPolicy | None = None):
        self.base_url = base_url.rstrip("/")
        self._fetcher = ReportFetcher(partner_name="Adjust", field_name="adjust_api_url", max_attempts=max_attempts,
                                      timeout_s=timeout_s, sleep=sleep, transport=transport, policy=policy)

    @property
    def attempts_made(self) -> int:
        return self._fetcher.attempts_made

    def params(self, binding: BindingSettings, date_from: date, date_to: date) -> dict[str, str]:
        params = {
            "app_token__in": binding.app_token,
            "date_period": f"{date_from.isoformat()}:{date_to.isoformat()}",
            "dimensions": ",".join(DIMENSIONS),
            "metrics": ",".join(METRICS),
            "cohort_maturity": COHORT_MATURITY,
            "utc_offset": binding.utc_offset,
            "attribution_types": ",".join(binding.attribution_types or ("click",)),
            "attribution_source": binding.attribution_source,
            "reattributed": binding.reattributed,
            "currency": binding.currency,
        }
        if binding.ad_revenue_sources:
            params["ad_revenue_sources"] = ",".join(binding.ad_revenue_sources)
        if binding.ad_spend_mode:
            params["ad_spend_mode"] = binding.ad_spend_mode
        if binding.media_source:
            params["partner_name__in"] = binding.media_source
        return params

    def headers(self, token: str, binding: BindingSettings) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if binding.account_id:
            headers["X-Account-ID"] = binding.account_id
        return headers

    def fetch(self, *, token: str, binding: BindingSettings, date_from: date, date_to: date) -> list[PulledRow]:
        response = self._fetcher.get(self.base_url + REPORT_PATH, params=self.params(binding, date_from, date_to),
                                     headers=self.headers(token, binding), app=binding.app_token)
        if response is None:
            return []
        try:
            body = response.json()
        except ValueError as exc:
            raise PartnerUnavailable("Adjust answered with a body that is not JSON") from exc
        rows = body.get("rows") if isinstance(body, dict) else None
        if not isinstance(rows, list):
            raise PartnerUnavailable("Adjust answered without a rows list")
        ours = binding.media_source.casefold()
        return [row for raw in rows if (row := self._row(raw, binding.currency, ours)) is not None]

    @staticmethod
    def _row(raw: Any, currency: str, partner: str = "") -> PulledRow | None:
        if not isinstance(raw, dict):
            return None
        if partner and str(raw.get("partner_name", "")).strip().casefold() != partner:
            return None  # organic, or another partner's
        try:
            day = date.fromisoformat(str(raw.get("day", "")))
        except ValueError:
            return None
        metrics = {name: text for name, value in raw.items() if name in METRICS
                   and (text := decimal_text(value)) is not None}
        country = str(raw.get("country_code") or "").strip().upper()
        return PulledRow(day=day, campaign_label=str(raw.get("campaign") or "unknown")[:255],
                         adgroup_label=str(raw.get("adgroup") or "")[:255],
                         creative_label=str(raw.get("creative") or "")[:255],
                         country=country if len(country) == 2 and country.isalpha() else "",
                         currency=currency, metrics=metrics)
