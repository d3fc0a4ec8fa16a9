"""Connector columns: measurement-partner connectors add report columns with `register_column_source`.

Their values are keyed by campaign and local day, and by ad group, creative and country where the report groups
by them; service.py joins them onto report rows grouped by date, account, campaign, ad group, creative and/or
country."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Literal, NamedTuple, Protocol

from sqlalchemy.orm import Session

from adstack.reports.models import Dimension, Metric

ColumnKind = Literal["count", "micros", "ratio"]


# ---------- connector columns ----------


@dataclass(frozen=True)
class ExtraColumn:
    """A column a connector adds, e.g. key "adjust_installs", label "Adjust installs"."""

    key: str
    label: str
    kind: ColumnKind
    additive: bool = True  # may be summed over days and campaigns (installs yes, ROAS no)
    compare_to: Metric | None = None  # our metric; the report then adds `<key>_diff` = theirs - ours


class PartnerKey(NamedTuple):
    """What a partner's figures are for: a campaign and local day, and the ad group, creative and country when
    the report groups by them (None: over all of them, or the partner did not say)."""

    campaign_id: int
    day: date
    ad_group_id: int | None = None
    creative_id: int | None = None
    country: str | None = None


# Report dimension -> the PartnerKey field a source breaks its figures down by when the report groups by it.
PARTNER_GRAIN: dict[Dimension, str] = {Dimension.AD_GROUP: "ad_group_id", Dimension.CREATIVE: "creative_id",
                                       Dimension.COUNTRY: "country"}


class ColumnSource(Protocol):
    """A partner's numbers per campaign and local day (the account's zone), for report columns."""

    name: str

    def columns(self) -> Sequence[ExtraColumn]: ...

    def fetch(self, session: Session, *, account_ids: list[int] | None, campaign_ids: list[int],
              start_date: date, end_date: date, by: frozenset[str] = frozenset()
              ) -> Mapping[tuple[Any, ...], Mapping[str, int | Decimal | None]]:
        """Values keyed by PartnerKey (or a (campaign_id, local date) pair), broken down by the PartnerKey
        fields in `by` and summed over the others; money as int micros, ratios as Decimal."""
        ...


_column_sources: dict[str, ColumnSource] = {}


def register_column_source(source: ColumnSource) -> None:
    """Make a connector's columns available as `extra_columns` of every report (idempotent by name)."""
    _column_sources[source.name] = source


def unregister_column_source(name: str) -> None:
    _column_sources.pop(name, None)


def available_extra_columns() -> dict[str, tuple[ColumnSource, ExtraColumn]]:
    return {c.key: (s, c) for s in _column_sources.values() for c in s.columns()}
