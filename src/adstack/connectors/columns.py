"""Partners' numbers as report columns ("Columns > Adjust", "Columns > AppsFlyer"), per campaign and day, and
per ad group, creative and country when the report asks and the partner's rows carry them (Adjust's report is
pulled by campaign, adgroup, creative and country_code; AppsFlyer's partners report only by campaign).

Money is stored in the currency the partner reported it in and converted here, through the FX table, into the
account's currency, so the `_diff` columns compare like with like. ROI is revenue / cost; LTV is cohort
revenue per install; "cohorts mature" is the share of the partner's rows behind a cell whose cohort metrics
are final.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from adstack.accounts.models import Account
from adstack.attribution.service import convert, fx_rates
from adstack.connectors.models import PartnerMetricRow
from adstack.connectors.registry import CONNECTORS
from adstack.core.money import to_micros
from adstack.reports.connector_columns import ExtraColumn, PartnerKey
from adstack.reports.models import Metric

MONEY_METRICS = frozenset({"network_cost", "all_revenue", *(f"all_revenue_total_d{n}" for n in (0, 1, 3, 7))})
COHORT_DAYS = (0, 1, 3, 7)
RETENTION_DAYS = (1, 3, 7)

PartnerValues = dict[str, Decimal | None]


@dataclass(frozen=True)
class _Converted:
    installs: Decimal | None
    metrics: dict[str, Decimal]  # money already in the account's currency
    weight: Decimal
    mature: bool


def _convert(row: PartnerMetricRow, target: str, rates: dict[str, Decimal]) -> _Converted | None:
    """The row's metrics with money in `target`; None when the FX table cannot convert the row's currency."""
    metrics: dict[str, Decimal] = {}
    for name, text in row.metrics.items():
        value = Decimal(text)
        if name in MONEY_METRICS and row.currency and row.currency != target:
            converted = convert(value, row.currency, target, rates)
            if converted is None:
                return None
            value = converted
        metrics[name] = value
    installs = metrics.get("installs")
    return _Converted(installs, metrics, installs or Decimal(0), row.mature)


def _sum(rows: Sequence[_Converted], metric: str) -> Decimal | None:
    values = [r.metrics[metric] for r in rows if metric in r.metrics]
    return sum(values, Decimal(0)) if values else None


def _weighted_rate(rows: Sequence[_Converted], metric: str) -> Decimal | None:
    """Retention rates are per-row ratios: weight them by installs when summing rows."""
    pairs = [(r.metrics[metric], r.weight) for r in rows if metric in r.metrics]
    if not pairs:
        return None
    weight = sum((w for _, w in pairs), Decimal(0))
    if weight == 0:
        return sum((v for v, _ in pairs), Decimal(0)) / len(pairs)
    return sum((v * w for v, w in pairs), Decimal(0)) / weight


def _ratio(numerator: Decimal | None, denominator: Decimal | None) -> Decimal | None:
    return numerator / denominator if numerator is not None and denominator else None


def _key(row: PartnerMetricRow, by: frozenset[str]) -> PartnerKey:
    assert row.campaign_id is not None
    return PartnerKey(row.campaign_id, row.day,
                      ad_group_id=row.ad_group_id if "ad_group_id" in by else None,
                      creative_id=row.creative_id if "creative_id" in by else None,
                      country=(row.country or None) if "country" in by else None)


def partner_columns(session: Session, *, account_ids: set[int] | None, date_from: date, date_to: date,
                    partner: str = "adjust", by: frozenset[str] = frozenset()) -> dict[PartnerKey, PartnerValues]:
    """A partner's metrics per adstack campaign and day, broken down by the PartnerKey fields in `by` (ad group,
    creative, country; None where the partner's row did not name one adstack knows): money as decimals in the
    account's currency, rates as fractions. Rows whose currency the FX table cannot convert are left out rather
    than mixed in."""
    stmt = select(PartnerMetricRow).where(PartnerMetricRow.partner == partner, PartnerMetricRow.day >= date_from,
                                          PartnerMetricRow.day <= date_to, PartnerMetricRow.campaign_id.is_not(None))
    if account_ids is not None:
        stmt = stmt.where(PartnerMetricRow.account_id.in_(account_ids))
    rows = list(session.scalars(stmt))
    if not rows:
        return {}
    currencies = {row.id: row.currency for row in session.execute(select(Account.id, Account.currency).where(
        Account.id.in_({r.account_id for r in rows})))}
    rates = fx_rates(session)
    groups: dict[PartnerKey, list[_Converted]] = defaultdict(list)
    for row in rows:
        converted = _convert(row, currencies.get(row.account_id, row.currency), rates)
        if converted is not None:
            groups[_key(row, by)].append(converted)
    result: dict[PartnerKey, PartnerValues] = {}
    for key, group in groups.items():
        installs = _sum(group, "installs")
        cost = _sum(group, "network_cost")
        revenue = _sum(group, "all_revenue")
        columns: PartnerValues = {
            "installs": installs, "network_cost": cost, "revenue": revenue, "roi": _ratio(revenue, cost),
            "ltv": _ratio(revenue, installs),
            "cohorts_mature": Decimal(sum(1 for r in group if r.mature)) / len(group),
        }
        for n in COHORT_DAYS:
            cohort = _sum(group, f"all_revenue_total_d{n}")
            columns[f"revenue_d{n}"] = cohort
            columns[f"ltv_d{n}"] = _ratio(cohort, installs)
        columns["roas_d7"] = _ratio(columns["revenue_d7"], cost)
        for n in RETENTION_DAYS:
            columns[f"retention_d{n}"] = _weighted_rate(group, f"retention_rate_d{n}")
        result[key] = columns
    return result


# Column key (after the partner's prefix) -> (label after the partner's name, kind, additive, compared metric).
_COLUMNS: dict[str, tuple[str, str, bool, Metric | None]] = {
    "installs": ("installs", "count", True, Metric.INSTALLS),
    "network_cost_micros": ("network cost", "micros", True, Metric.COST_MICROS),
    "revenue_micros": ("revenue", "micros", True, Metric.REVENUE_MICROS),
    "roi": ("ROI", "ratio", False, None),
    "ltv_micros": ("LTV", "micros", False, None),
    "roas_d7": ("ROAS D7", "ratio", False, None),
    **{f"retention_d{n}": (f"retention D{n}", "ratio", False, None) for n in RETENTION_DAYS},
    **{f"revenue_d{n}_micros": (f"cohort revenue D{n}", "micros", True, None) for n in COHORT_DAYS},
    **{f"ltv_d{n}_micros": (f"LTV D{n}", "micros", False, None) for n in COHORT_DAYS},
    "cohorts_mature": ("cohorts mature", "ratio", False, None),
}
# What each partner's report carries (AppsFlyer's partners report has no cohort days or retention).
PARTNER_COLUMN_KEYS: dict[str, tuple[str, ...]] = {
    "adjust": tuple(_COLUMNS),
    "appsflyer": ("installs", "network_cost_micros", "revenue_micros", "roi", "ltv_micros"),
}


def _value(values: PartnerValues, key: str) -> int | Decimal | None:
    if key == "installs":
        installs = values["installs"]
        return None if installs is None else int(installs)
    if key.endswith("_micros"):
        base = key.removesuffix("_micros")
        amount = values.get("network_cost" if base == "network_cost" else base)
        return None if amount is None else to_micros(amount)
    return values.get(key)


class PartnerColumnSource:
    """One partner's numbers as report columns, joined on campaign and day (and ad group, creative and country
    when the report groups by them); where adstack measures the same thing (installs, cost, revenue) the report
    also shows the difference."""

    def __init__(self, partner: str):
        self.name = partner
        self.display_name = CONNECTORS[partner].display_name
        self.keys = PARTNER_COLUMN_KEYS.get(partner, PARTNER_COLUMN_KEYS["appsflyer"])

    def columns(self) -> list[ExtraColumn]:
        result = []
        for key in self.keys:
            label, kind, additive, compare_to = _COLUMNS[key]
            result.append(ExtraColumn(f"{self.name}_{key}", f"{self.display_name} {label}", kind,  # type: ignore[arg-type]
                                      additive=additive, compare_to=compare_to))
        return result

    def fetch(self, session: Session, *, account_ids: list[int] | None, campaign_ids: list[int],
              start_date: date, end_date: date, by: frozenset[str] = frozenset()
              ) -> dict[tuple[Any, ...], dict[str, int | Decimal | None]]:
        wanted = set(campaign_ids)
        columns = partner_columns(session, account_ids=None if account_ids is None else set(account_ids),
                                  date_from=start_date, date_to=end_date, partner=self.name, by=by)
        return {cell: {f"{self.name}_{key}": _value(values, key) for key in self.keys}
                for cell, values in columns.items() if not wanted or cell.campaign_id in wanted}


def column_sources() -> list[PartnerColumnSource]:
    return [PartnerColumnSource(partner) for partner in CONNECTORS]
