"""Adjust's Report Service API: `GET /reports-service/report` with a bearer token.

Rows arrive with every metric as a string; totals arrive as numbers. 204 means no data. 429 and 5xx are
retried with backoff (Retry-After when sent); 401 means a bad API token, 403 an app token the account does
not own.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, Protocol

import httpx

from adstack.core.errors import DomainError
from adstack.core.outbound import FetchFailed, OutboundClient, OutboundPolicy, ResponseTooLarge

DEFAULT_BASE_URL = "https://automate.adjust.com"
REPORT_PATH = "/reports-service/report"
MAX_REPORT_BYTES = 64 * 1024 * 1024
DIMENSIONS = ("day", "campaign", "country")
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


class PartnerError(DomainError):
    status = 422


class PartnerUnauthorized(PartnerError):
    code = "partner_unauthorized"


class PartnerForbidden(PartnerError):
    code = "partner_forbidden"


class PartnerUnavailable(PartnerError):
    code = "partner_unavailable"


@dataclass(frozen=True)
class BindingSettings:
    app_token: str
    utc_offset: str = "+00:00"
    attribution_type: str = "click"
    attribution_source: str = "dynamic"
    attribution_status: Sequence[str] = ()
    ad_revenue_sources: Sequence[str] = ()


@dataclass(frozen=True)
class PulledRow:
    day: date
    campaign_label: str
    country: str
    metrics: dict[str, str] = field(default_factory=dict)


class ReportConnector(Protocol):
    """What reports need from a partner: daily rows per campaign and country. AppsFlyer's Pull API or
    another partner plugs in by implementing this."""

    partner: ClassVar[str]

    def fetch(self, *, token: str, binding: BindingSettings, date_from: date, date_to: date) -> list[PulledRow]: ...


def decimal_text(value: Any) -> str | None:
    """Normalise a partner metric to a decimal string; None when it is not a number."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return str(number) if number.is_finite() else None


class AdjustReportConnector:
    partner: ClassVar[str] = "adjust"

    def __init__(
        self,
        *,
        base_url: str = DEFAULT_BASE_URL,
        max_attempts: int = 5,
        timeout_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
        policy: OutboundPolicy | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.max_attempts = max_attempts
        self.timeout_s = timeout_s
        self.sleep = sleep
        self.transport = transport  # an in-process fake for tests; it bypasses the address checks
        self.policy = policy
        self.attempts_made = 0

    def params(self, binding: BindingSettings, date_from: date, date_to: date) -> dict[str, str]:
        params = {
            "app_token__in": binding.app_token,
            "date_period": f"{date_from.isoformat()}:{date_to.isoformat()}",
            "dimensions": ",".join(DIMENSIONS),
            "metrics": ",".join(METRICS),
            "utc_offset": binding.utc_offset,
            "attribution_type": binding.attribution_type,
            "attribution_source": binding.attribution_source,
        }
        if binding.attribution_status:
            params["attribution_status__in"] = ",".join(binding.attribution_status)
        if binding.ad_revenue_sources:
            params["ad_revenue_source__in"] = ",".join(binding.ad_revenue_sources)
        return params

    def fetch(self, *, token: str, binding: BindingSettings, date_from: date, date_to: date) -> list[PulledRow]:
        body = self._get(token, self.params(binding, date_from, date_to))
        if body is None:
            return []
        rows = body.get("rows") if isinstance(body, dict) else None
        if not isinstance(rows, list):
            raise PartnerUnavailable("Adjust answered without a rows list")
        return [row for raw in rows if (row := self._row(raw)) is not None]

    def _row(self, raw: Any) -> PulledRow | None:
        if not isinstance(raw, dict):
            return None
        try:
            day = date.fromisoformat(str(raw.get("day", "")))
        except ValueError:
            return None
        metrics = {name: text for name in METRICS if (text := decimal_text(raw.get(name))) is not None}
        return PulledRow(day=day, campaign_label=str(raw.get("campaign") or "unknown")[:255],
                         country=str(raw.get("country") or "")[:8].upper(), metrics=metrics)

    def _get(self, token: str, params: dict[str, str]) -> Any:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        last_status = 0
        policy = self.policy or OutboundPolicy.from_settings(read_timeout_s=self.timeout_s)
        with OutboundClient(policy, field="adjust_api_url", transport=self.transport) as client:
            for attempt in range(1, self.max_attempts + 1):
                self.attempts_made = attempt
                try:
                    response = client.get(self.base_url + REPORT_PATH, params=params, headers=headers,
                                          max_bytes=MAX_REPORT_BYTES)
                except ResponseTooLarge as exc:
                    raise PartnerUnavailable(f"Adjust's answer is larger than {MAX_REPORT_BYTES} bytes") from exc
                except FetchFailed as exc:
                    # The outbound client logged the reason; the message stays the same whatever it was.
                    last_status = 0
                    if attempt == self.max_attempts:
                        raise PartnerUnavailable("Adjust could not be reached") from exc
                    self.sleep(self._backoff(attempt, None))
                    continue
                last_status = response.status_code
                if response.status_code == 204:
                    return None
                if response.status_code == 200:
                    try:
                        return response.json()
                    except ValueError as exc:
                        raise PartnerUnavailable("Adjust answered with a body that is not JSON") from exc
                if response.status_code == 401:
                    raise PartnerUnauthorized("Adjust refused the API token (401): check the token in Adjust's "
                                              "dashboard under Account settings > API token")
                if response.status_code == 403:
                    raise PartnerForbidden(f"Adjust refused access to app token {params['app_token__in']} (403): "
                                           "the token's user cannot read this app")
                if response.status_code == 429 or response.status_code >= 500:
                    if attempt < self.max_attempts:
                        self.sleep(self._backoff(attempt, response.headers.get("Retry-After")))
                        continue
                    break
                raise PartnerUnavailable(f"Adjust answered {response.status_code}: {response.text[:200]}")
        raise PartnerUnavailable(f"Adjust kept answering {last_status} after {self.max_attempts} attempts")

    @staticmethod
    def _backoff(attempt: int, retry_after: str | None) -> float:
        if retry_after is not None:
            try:
                return min(max(float(retry_after), 0.0), 300.0)
            except ValueError:
                pass
        return float(min(2 ** (attempt - 1), 60)) + random.uniform(0, 0.5)
