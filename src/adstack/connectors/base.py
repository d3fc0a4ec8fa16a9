"""What every partner connector shares: the rows a pull yields, the binding settings it reads, its errors, and
one GET with the retry rules partners' report APIs document (429 and 5xx retried with backoff, Retry-After
honoured; 401 a bad token; 403 an app the token may not read). Calls go through the guarded outbound client.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, Protocol

import httpx

from adstack.core.errors import DomainError
from adstack.core.outbound import FetchedResponse, FetchFailed, OutboundClient, OutboundPolicy, ResponseTooLarge

MAX_REPORT_BYTES = 64 * 1024 * 1024
# A day's cohort metric for day N is final once day N has passed for every install of the day: D7 needs 8 days.
COHORT_MATURITY_DAYS = 8


class PartnerError(DomainError):
    status = 422


class PartnerUnauthorized(PartnerError):
    code = "partner_unauthorized"


class PartnerForbidden(PartnerError):
    code = "partner_forbidden"


class PartnerUnavailable(PartnerError):
    code = "partner_unavailable"


class PartnerRefused(PartnerError):
    """The partner refused the request itself (400): a parameter it does not support, a malformed value."""

    code = "partner_refused_request"


@dataclass(frozen=True)
class BindingSettings:
    """A bound app's settings, as every connector reads them; each connector sends the ones it documents."""

    app_token: str  # Adjust app token, AppsFlyer app id
    utc_offset: str = "+00:00"
    time_zone: str = ""  # an IANA zone, for partners that take one
    attribution_types: Sequence[str] = ("click",)
    attribution_source: str = "dynamic"
    reattributed: str = "all"
    ad_revenue_sources: Sequence[str] = ()
    ad_spend_mode: str = ""
    currency: str = "USD"
    account_id: str = ""  # the partner account to query when the token's user has several (Adjust X-Account-ID)
    # Our name in the partner's reports (AppsFlyer's media source `pid`, Adjust's `partner_name`): rows of
    # organic installs and of other networks are not ours.
    media_source: str = ""


@dataclass(frozen=True)
class PulledRow:
    day: date
    campaign_label: str
    country: str = ""  # ISO 3166-1 alpha-2, upper case; "" when the partner did not say
    adgroup_label: str = ""
    creative_label: str = ""
    currency: str = ""  # of the money metrics
    metrics: dict[str, str] = field(default_factory=dict)  # decimal strings as the partner sent them


class ReportConnector(Protocol):
    """A partner's report API: daily rows per campaign (and what else the partner breaks down by)."""

    partner: ClassVar[str]

    @property
    def attempts_made(self) -> int: ...

    def fetch(self, *, token: str, binding: BindingSettings, date_from: date, date_to: date) -> list[PulledRow]: ...


def decimal_text(value: Any) -> str | None:
    """Normalise a partner metric to a decimal string; None when it is not a number."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value).strip().replace(",", ""))
    except InvalidOperation:
        return None
    return str(number) if number.is_finite() else None


# Metrics that are sums of their rows: two rows of one key (a campaign of ours under two agencies, say) add up.
# The others are ratios (ROI, ARPU, eCPI, ROAS, retention rates), which no sum of rows gives: dropped when merged.
ADDITIVE_METRICS = frozenset({"impressions", "clicks", "installs", "sessions", "loyal_users", "all_revenue",
                              "network_cost", "all_revenue_total_d0", "all_revenue_total_d1", "all_revenue_total_d3",
                              "all_revenue_total_d7"})


def added_metrics(first: Mapping[str, str], second: Mapping[str, str]) -> dict[str, str]:
    """Two partner rows of one key as one: additive metrics summed, ratios dropped."""
    out: dict[str, str] = {}
    for name in (first.keys() | second.keys()) & ADDITIVE_METRICS:
        out[name] = str(Decimal(first.get(name, "0")) + Decimal(second.get(name, "0")))
    return out


MAX_RETRY_AFTER_SECONDS = 300.0


def backoff(attempt: int, retry_after: str | None, *, now: datetime | None = None) -> float:
    """Seconds to wait before the next try: the server's Retry-After, as delay-seconds or an HTTP-date (RFC 9110,
    10.2.3), at most five minutes; otherwise exponential from one second, with jitter."""
    waited = _retry_after_seconds(retry_after.strip(), now or datetime.now(UTC)) if retry_after else None
    if waited is not None:
        return min(max(waited, 0.0), MAX_RETRY_AFTER_SECONDS)
    return float(min(2 ** (attempt - 1), 60)) + random.uniform(0, 0.5)


def _retry_after_seconds(value: str, now: datetime) -> float | None:
    if value.isascii() and value.isdigit():
        digits = value.lstrip("0") or "0"  # "0030" is 30 s
        return MAX_RETRY_AFTER_SECONDS if len(digits) > 6 else float(int(digits))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": a time in UTC without a zone of its own
        when = when.replace(tzinfo=UTC)
    return (when - now).total_seconds()


class ReportFetcher:
    """GET a partner report with retries; one instance per connector, so `attempts_made` counts a pull's tries."""

    def __init__(self, *, partner_name: str, field_name: str, max_attempts: int = 5, timeout_s: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep, transport: httpx.BaseTransport | None = None,
                 policy: OutboundPolicy | None = None):
        self.partner_name = partner_name
        self.field_name = field_name
        self.max_attempts = max_attempts
        self.timeout_s = timeout_s
        self.sleep = sleep
        self.transport = transport  # an in-process fake for tests; it bypasses the address checks
        self.policy = policy
        self.attempts_made = 0

    def get(self, url: str, *, params: Mapping[str, str], headers: Mapping[str, str], app: str
            ) -> FetchedResponse | None:
        """The 200 response, or None for 204 (no data). Raises a PartnerError for anything else."""
        name = self.partner_name
        last_status = 0
        policy = self.policy or OutboundPolicy.from_settings(purpose="connectors", read_timeout_s=self.timeout_s)
        with OutboundClient(policy, field=self.field_name, transport=self.transport) as client:
            for attempt in range(1, self.max_attempts + 1):
                self.attempts_made = attempt
                try:
                    response = client.get(url, params=dict(params), headers=dict(headers),
                                          max_bytes=MAX_REPORT_BYTES)
                except ResponseTooLarge as exc:
                    raise PartnerUnavailable(f"{name}'s answer is larger than {MAX_REPORT_BYTES} bytes") from exc
                except FetchFailed as exc:
                    # The outbound client logged the reason; the message stays the same whatever it was. A
                    # destination the policy forbids stays forbidden: no retry, no backoff to wait through.
                    last_status = 0
                    if exc.forbidden or attempt == self.max_attempts:
                        raise PartnerUnavailable(f"{name} could not be reached") from exc
                    self.sleep(backoff(attempt, None))
                    continue
                last_status = response.status_code
                if response.status_code == 204:
                    return None
                if response.status_code == 200:
                    return response
                if response.status_code == 400:
                    raise PartnerRefused(f"{name} refused the request (400): {response.text[:200]}")
                if response.status_code == 401:
                    raise PartnerUnauthorized(f"{name} refused the API token (401): check the token in {name}'s "
                                              "dashboard")
                if response.status_code == 403:
                    raise PartnerForbidden(f"{name} refused access to app {app} (403): the token's user cannot "
                                           "read this app")
                if response.status_code == 429 or response.status_code >= 500:
                    if attempt < self.max_attempts:
                        # The first of repeated headers: httpx joins them with commas, which no form reads.
                        retry_after = next(iter(response.headers.get_list("Retry-After")), None)
                        self.sleep(backoff(attempt, retry_after))
                        continue
                    break
                raise PartnerUnavailable(f"{name} answered {response.status_code}: {response.text[:200]}")
        raise PartnerUnavailable(f"{name} kept answering {last_status} after {self.max_attempts} attempts")
