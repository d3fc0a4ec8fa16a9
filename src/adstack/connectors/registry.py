"""The one place partner connectors are registered. A connector is one module with a class that implements
`base.ReportConnector` and names its `partner`, `display_name` and default base URL; adding a partner is that
module plus one line in CONNECTORS below. Everything else (bindings, pulls, report columns, console pages)
reads this registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from adstack.connectors import adjust, appsflyer
from adstack.connectors.base import ReportConnector


@dataclass(frozen=True)
class ConnectorSpec:
    partner: str
    display_name: str
    factory: Callable[..., ReportConnector]  # (base_url=...) -> connector
    default_base_url: str
    base_url_setting: str  # the Settings field an operator may point elsewhere
    # The binding settings this partner's API takes (the others are ignored for it), for forms and checks.
    binding_fields: tuple[str, ...]
    documentation: tuple[str, ...]
    # The shortest gap between scheduled pulls of one connection, where the partner's quota needs one.
    min_scheduled_interval_s: int = 0


CONNECTORS: dict[str, ConnectorSpec] = {spec.partner: spec for spec in (
    ConnectorSpec("adjust", "Adjust", adjust.AdjustReportConnector, adjust.DEFAULT_BASE_URL, "adjust_api_url",
                  ("utc_offset", "attribution_types", "attribution_source", "reattributed", "ad_revenue_sources",
                   "ad_spend_mode", "currency"),
                  ("https://dev.adjust.com/en/api/rs-api/reports",
                   "https://dev.adjust.com/en/api/reports-service")),
    ConnectorSpec("appsflyer", "AppsFlyer", appsflyer.AppsFlyerReportConnector, appsflyer.DEFAULT_BASE_URL,
                  "appsflyer_api_url", ("time_zone", "attribution_types", "reattributed", "currency"),
                  ("https://support.appsflyer.com/hc/en-us/articles/207034346",
                   "https://dev.appsflyer.com/hc/reference/overview-11",
                   "https://support.appsflyer.com/hc/en-us/articles/207034366"),
                  # Source: AppsFlyer, "Report generation quotas": 24 calls of 3+ days per app per day. Hourly
                  # pulls would spend all 24 and leave none for an advertiser's own pulls; every 2 hours, 12.
                  min_scheduled_interval_s=2 * 3600),
)}


def partners() -> list[str]:
    return list(CONNECTORS)


def spec_of(partner: str) -> ConnectorSpec | None:
    return CONNECTORS.get(partner)


def build(partner: str, settings: Any) -> ReportConnector:
    """The partner's connector, at the base URL the settings name (or its public default)."""
    spec = CONNECTORS[partner]
    base_url = getattr(settings, spec.base_url_setting, None) or spec.default_base_url
    return spec.factory(base_url=base_url)
