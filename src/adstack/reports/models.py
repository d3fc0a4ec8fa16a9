"""Reports: the query a caller asks, the result it gets, and the async report jobs for large ranges."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from sqlalchemy import JSON, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from adstack.core.db import Base
from adstack.core.ids import EntityId
from adstack.core.timeutil import utcnow, validate_time_zone
from adstack.core.vocabulary import IN_APP_EVENTS, ConversionEvent, PlacementType


class Granularity(StrEnum):
    TOTAL = "total"
    DAY = "day"
    HOUR = "hour"


class Dimension(StrEnum):
    DATE = "date"
    HOUR = "hour"
    ACCOUNT = "account"
    CAMPAIGN = "campaign"
    AD_GROUP = "ad_group"
    CREATIVE = "creative"
    COUNTRY = "country"
    AD_SPACE = "ad_space"
    PUBLISHER = "publisher"
    PLACEMENT_TYPE = "placement_type"
    OBJECTIVE = "objective"
    EVENT = "event"


TIME_DIMENSIONS = frozenset({Dimension.DATE, Dimension.HOUR})


def event_metric(event: ConversionEvent) -> str:
    return f"event_{event.value.lower()}"


class Metric(StrEnum):
    REQUESTS = "requests"  # ads served
    # The supply side: ad requests received (an SDK request or an exchange's imp), filled or not, and the share
    # that got at least one ad. Platform staff only; per ad space, publisher, placement type, country and time.
    AD_REQUESTS = "ad_requests"
    FILLED_AD_REQUESTS = "filled_ad_requests"
    FILL_RATE = "fill_rate"  # filled_ad_requests / ad_requests
    IMPRESSIONS = "impressions"
    CLICKS = "clicks"
    CTR = "ctr"
    COST_MICROS = "cost_micros"
    # What exchanges charged us for the impressions (their clearing prices), beside what we charged (cost):
    # margin is cost_micros - media_cost_micros. Platform staff only.
    MEDIA_COST_MICROS = "media_cost_micros"
    MEDIA_COST_IMPRESSIONS = "media_cost_impressions"  # impressions whose exchange price is known
    ECPM_MICROS = "ecpm_micros"
    CPC_MICROS = "cpc_micros"
    # Installs, in-app events and revenue count conversions attributed to adstack's ads (click- or view-through).
    INSTALLS = "installs"
    CLICK_THROUGH_INSTALLS = "click_through_installs"
    VIEW_THROUGH_INSTALLS = "view_through_installs"
    CVR = "cvr"  # click-through installs / clicks
    CPA_CONVERSIONS = "cpa_conversions"  # each ad group's own conversion event (installs unless CPA on an event)
    CPA_MICROS = "cpa_micros"  # cost / cpa_conversions
    IN_APP_EVENTS = "in_app_events"  # refunds (negative revenue) are not among them
    REFUNDS = "refunds"  # in-app events with negative revenue: a refund or cancellation, netted from revenue
    REVENUE_MICROS = "revenue_micros"
    ROAS = "roas"  # attributed revenue / cost
    # Cohort revenue: attributed conversions in whole day 0, or days 0-7, after their install; over cost.
    REVENUE_D0_MICROS = "revenue_d0_micros"
    REVENUE_D7_MICROS = "revenue_d7_micros"
    ROAS_D0 = "roas_d0"
    ROAS_D7 = "roas_d7"
    # Conversions our touch would claim but a fraud flag (click injection, click spamming, forged click id)
    # voids: never billed, never among installs, events or revenue above; shown under their campaign.
    FLAGGED_INSTALLS = "flagged_installs"
    FLAGGED_IN_APP_EVENTS = "flagged_in_app_events"
    # Conversions our touch would claim from postbacks without the app's signature (the guide's bare AppMetrica
    # URL): never billed, never among installs, events or revenue above; shown under their campaign.
    UNVERIFIED_INSTALLS = "unverified_installs"
    UNVERIFIED_IN_APP_EVENTS = "unverified_in_app_events"
    # Conversions adstack's ads did not bring: kept apart, never in the figures above.
    ORGANIC_INSTALLS = "organic_installs"
    OTHER_INSTALLS = "other_installs"
    ORGANIC_IN_APP_EVENTS = "organic_in_app_events"
    OTHER_IN_APP_EVENTS = "other_in_app_events"
    ORGANIC_REVENUE_MICROS = "organic_revenue_micros"
    OTHER_REVENUE_MICROS = "other_revenue_micros"
    VIDEO_STARTS = "video_starts"
    VIDEO_FIRST_QUARTILES = "video_first_quartiles"
    VIDEO_MIDPOINTS = "video_midpoints"
    VIDEO_THIRD_QUARTILES = "video_third_quartiles"
    VIDEO_COMPLETES = "video_completes"
    VIDEO_COMPLETION_RATE = "video_completion_rate"
    INVALID = "invalid"
    # One count per in-app event, e.g. event_purchase.
    EVENT_AD_REVENUE = "event_ad_revenue"
    EVENT_PURCHASE = "event_purchase"
    EVENT_FIRST_PURCHASE = "event_first_purchase"
    EVENT_APP_OPEN = "event_app_open"
    EVENT_REGISTRATION = "event_registration"
    EVENT_LOGIN = "event_login"
    EVENT_CUSTOMIZE1 = "event_customize1"
    EVENT_CUSTOMIZE2 = "event_customize2"
    EVENT_CUSTOMIZE3 = "event_customize3"
    EVENT_CREATE_ROLE = "event_create_role"
    EVENT_TUTORIAL_COMPLETION = "event_tutorial_completion"
    EVENT_ACHIEVEMENT_UNLOCKED = "event_achievement_unlocked"
    EVENT_LEVEL_ACHIEVED = "event_level_achieved"
    EVENT_ADD_TO_CART = "event_add_to_cart"
    EVENT_ADD_TO_WISHLIST = "event_add_to_wishlist"
    EVENT_ADD_PAYMENT_INFO = "event_add_payment_info"
    EVENT_LOAN_DISBURSAL = "event_loan_disbursal"
    EVENT_FIRST_TRADE = "event_first_trade"
    EVENT_FIRST_DEPOSIT = "event_first_deposit"
    EVENT_LOAN_CREDIT = "event_loan_credit"
    EVENT_LOAN_APPROVAL = "event_loan_approval"
    EVENT_SUBSCRIBE = "event_subscribe"


assert {event_metric(e) for e in IN_APP_EVENTS} <= {m.value for m in Metric}

# The platform's buying cost: what it pays exchanges is not the advertisers' to see.
PLATFORM_METRICS = frozenset({Metric.MEDIA_COST_MICROS, Metric.MEDIA_COST_IMPRESSIONS})
SUPPLY_METRICS = frozenset({Metric.AD_REQUESTS, Metric.FILLED_AD_REQUESTS, Metric.FILL_RATE})

DEFAULT_METRICS: tuple[Metric, ...] = (
    Metric.IMPRESSIONS, Metric.CLICKS, Metric.CTR, Metric.COST_MICROS, Metric.ECPM_MICROS, Metric.CPC_MICROS,
    Metric.INSTALLS, Metric.CVR, Metric.CPA_MICROS, Metric.REVENUE_MICROS, Metric.ROAS,
)

MAX_ID = 2**63 - 1
MAX_IDS = 500
CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
Objective = Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,32}$")]
SORT_PATTERN = r"^-?[a-z0-9_]{1,64}$"


FIRST_DAY = date(2000, 1, 1)
LAST_DAY = date(2100, 12, 31)
ReportDay = Annotated[date, Field(ge=FIRST_DAY, le=LAST_DAY)]


def end_not_before_start(value: date, info: ValidationInfo) -> date:
    """`end_date`'s check against the `start_date` validated before it, the start named as the limit."""
    start = info.data.get("start_date")
    if start is not None and value < start:
        raise PydanticCustomError("not_before_start_date", "end_date must not be before start_date ({limit})",
                                  {"limit": start.isoformat()})
    return value


class ReportQuery(BaseModel):
    """What to report. Dates are local days in the report's time zone, both ends included."""

    model_config = ConfigDict(extra="forbid")

    start_date: ReportDay
    end_date: ReportDay
    granularity: Granularity = Field(default=Granularity.TOTAL, description="total, or one row per local day/hour.")
    dimensions: list[Dimension] = Field(default_factory=list, max_length=12)
    metrics: list[Metric] = Field(default_factory=lambda: list(DEFAULT_METRICS), max_length=len(Metric))
    account_ids: list[EntityId] = Field(default_factory=list, max_length=MAX_IDS,
                                  description="Accounts to sum; empty = every account you can see.")
    campaign_ids: list[EntityId] = Field(default_factory=list, max_length=MAX_IDS)
    ad_group_ids: list[EntityId] = Field(default_factory=list, max_length=MAX_IDS)
    creative_ids: list[EntityId] = Field(default_factory=list, max_length=MAX_IDS)
    ad_space_ids: list[EntityId] = Field(default_factory=list, max_length=MAX_IDS)
    publisher_ids: list[EntityId] = Field(default_factory=list, max_length=MAX_IDS)
    countries: list[CountryCode] = Field(default_factory=list, max_length=300)
    placement_types: list[PlacementType] = Field(default_factory=list, max_length=len(PlacementType))
    objectives: list[Objective] = Field(default_factory=list, max_length=20)
    events: list[ConversionEvent] = Field(default_factory=list, max_length=len(ConversionEvent))
    time_zone: str | None = Field(default=None, max_length=64,
                                  description="IANA zone; defaults to the account's (the agency's when summing).")
    sort: str | None = Field(default=None, pattern=SORT_PATTERN,
                             description="A dimension or metric, '-' first for descending.")
    limit: int = Field(default=100, ge=1, le=10_000)
    offset: int = Field(default=0, ge=0, le=10_000_000)
    extra_columns: list[Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,64}$")]] = Field(
        default_factory=list, max_length=50, description="Columns from measurement-partner connectors.")

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else validate_time_zone(value, guide_range=False)

    @field_validator("end_date")
    @classmethod
    def _range(cls, value: date, info: ValidationInfo) -> date:
        return end_not_before_start(value, info)

    def effective_dimensions(self) -> list[Dimension]:
        """Dimensions with the granularity's time column first and duplicates removed."""
        dims: list[Dimension] = []
        if self.granularity == Granularity.DAY or Dimension.DATE in self.dimensions:
            dims.append(Dimension.DATE)
        if self.granularity == Granularity.HOUR or Dimension.HOUR in self.dimensions:
            dims = [Dimension.HOUR]  # an hour names its day too
        for dim in self.dimensions:
            if dim not in TIME_DIMENSIONS and dim not in dims:
                dims.append(dim)
        return dims


class FilterChoice(BaseModel):
    """One object a report can be filtered by: an id and the name people pick it by."""

    id: int
    name: str
    account_id: int | None = Field(default=None, description="Its account; null for publishers and ad spaces.")
    deleted: bool = False


class ReportFilterChoices(BaseModel):
    """What the caller may filter a report by: objectives, and the campaigns, ad groups and creatives of the
    accounts it can see (deleted ones too: their cost stays in reports), the publishers and ad spaces of the
    catalogue. Each list holds at most `limit` objects, newest first, plus any asked for by id."""

    objectives: list[str]
    campaigns: list[FilterChoice]
    ad_groups: list[FilterChoice]
    creatives: list[FilterChoice]
    ad_spaces: list[FilterChoice]
    publishers: list[FilterChoice]
    limit: int


class ColumnRead(BaseModel):
    key: str
    label: str
    kind: Literal["dimension", "count", "micros", "ratio", "text", "flag", "time"]


class ReportResult(BaseModel):
    """Rows of one page, the totals of every row (not just the page) and how many rows there are."""

    start_date: date
    end_date: date
    time_zone: str
    currency: str | None = Field(description="Currency of every money column; null when rows mix currencies.")
    granularity: Granularity
    columns: list[ColumnRead]
    rows: list[dict[str, Any]]
    totals: dict[str, Any]
    total_rows: int
    limit: int
    offset: int


# ---------- async report jobs ----------


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class ExportFormat(StrEnum):
    CSV = "csv"
    XLSX = "xlsx"


class ReportJob(Base):
    """A report run in the background for a large range, with progress and a file to download.

    One process runs a job at a time: it claims the row (a new `lease_token`) and holds it by renewing
    `lease_until` while it works; a job whose lease lapsed (its process died) may be claimed by another. A queued
    job with a lease is waiting to be tried again by its holder (see jobs.STORE_RETRY_DELAYS_S)."""

    __tablename__ = "report_jobs"
    __table_args__ = (Index("ix_report_jobs_user", "user_id", "created_at"),
                      Index("ix_report_jobs_pending", "status", "lease_until"))

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int]
    role: Mapped[str] = mapped_column(String(32))
    account_id: Mapped[int | None]  # the requester's own account, for tenancy when the job runs
    query: Mapped[dict[str, Any]] = mapped_column(JSON)
    format: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED)
    percent_done: Mapped[int] = mapped_column(default=0)
    row_count: Mapped[int] = mapped_column(default=0)
    file_name: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    lease_token: Mapped[str | None] = mapped_column(String(32))
    lease_until: Mapped[datetime | None]


class ReportJobCreate(ReportQuery):
    format: ExportFormat = ExportFormat.CSV
    limit: int = Field(default=1_000_000, ge=1, le=1_000_000, description="Most rows to write.")


class ReportJobRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    status: JobStatus
    percent_done: int
    row_count: int
    format: ExportFormat
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    expires_at: datetime | None
    download_url: str | None = None


# ---------- overview and media center ----------


class DailyPoint(BaseModel):
    date: date
    cost_micros: int
    impressions: int
    clicks: int
    installs: int


class Share(BaseModel):
    key: str
    impressions: int
    clicks: int
    cost_micros: int
    installs: int
    cost_share: str = Field(description="Share of the period's cost, a decimal fraction.")


class ReviewCount(BaseModel):
    object_type: str
    status: str
    count: int


class Rejection(BaseModel):
    object_type: str
    object_id: int
    object_name: str | None
    reasons: list[str]
    rejected_at: datetime


class SubAccountFigures(BaseModel):
    """One sub-account on its agency's overview, in its own currency."""

    account_id: int
    account_name: str
    currency: str
    review_status: str
    balance_micros: int
    today_spend_micros: int
    serving_ad_groups: int


class OverviewRead(BaseModel):
    account_id: int
    account_name: str
    currency: str
    time_zone: str
    balance_micros: int
    today: date
    today_spend_micros: int
    today_impressions: int
    today_clicks: int
    today_installs: int
    yesterday_spend_micros: int
    trend: list[DailyPoint]
    review_status_counts: list[ReviewCount]
    rejections: list[Rejection]
    by_placement: list[Share]
    by_country: list[Share]
    sub_accounts: list[SubAccountFigures] = Field(
        default_factory=list, description="An agency's sub-accounts. The totals above include those that settle "
        "in the agency's currency.")


class MediaGroup(StrEnum):
    PUBLISHER = "publisher"
    AD_SPACE = "ad_space"


class MediaCenterQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start_date: ReportDay
    end_date: ReportDay
    account_id: EntityId | None = Field(default=None, description="Defaults to your own account; staff may omit it.")
    group_by: MediaGroup = MediaGroup.AD_SPACE
    package: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,255}$",
                                description="Publisher app package contains this.")
    source: str | None = Field(default=None, max_length=200, description="Publisher (media source) name contains.")
    media_id: EntityId | None = Field(default=None, description="The publisher app's (media) id.")
    ad_space_id: EntityId | None = None
    country: CountryCode | None = None
    sort: str | None = Field(default=None, pattern=SORT_PATTERN)
    limit: int = Field(default=100, ge=1, le=1000)
    offset: int = Field(default=0, ge=0, le=10_000_000)

    @field_validator("end_date")
    @classmethod
    def _range(cls, value: date, info: ValidationInfo) -> date:
        return end_not_before_start(value, info)


class MediaRow(BaseModel):
    publisher_id: int
    publisher_name: str | None
    app_package: str | None
    ad_space_id: int | None
    ad_space_name: str | None
    placement_type: str | None
    impressions: int
    clicks: int
    cost_micros: int
    conversions: int
    ctr: str | None
    cvr: str | None
    ecpm_micros: int | None


class MediaCenterRead(BaseModel):
    start_date: date
    end_date: date
    time_zone: str
    currency: str | None
    rows: list[MediaRow]
    totals: MediaRow
    total_rows: int
