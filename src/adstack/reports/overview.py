"""The overview: an account's home page (balance, today's spend, trends, review state and distributions) and the
figures of an agency's sub-accounts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from adstack.accounts import tenancy
from adstack.accounts.models import Account, AccountType, Principal
from adstack.core.timeutil import utcnow, zone
from adstack.events.service import EventStore
from adstack.finance import service as finance
from adstack.reports import query as sql
from adstack.reports.models import (
    DailyPoint,
    Dimension,
    Metric,
    OverviewRead,
    Rejection,
    ReportQuery,
    ReportResult,
    ReviewCount,
    Share,
    SubAccountFigures,
)
from adstack.reports.service import SYNC_MAX_DAYS, _store, run_report
from adstack.review import service as review
from adstack.review.models import ReviewItem

# ---------- overview ----------


def _local_today(tz_name: str) -> date:
    return utcnow().astimezone(zone(tz_name)).date()


def overview(session: Session, principal: Principal, *, account_id: int | None, days: int = 7,
             store: EventStore | None = None) -> OverviewRead:
    """The account's home page: balance, today's spend so far, trends, review state and distributions."""
    account_id = tenancy.resolve_account_id(session, principal, account_id)
    account = tenancy.get_account(session, principal, account_id)
    today = _local_today(account.time_zone)
    start = today - timedelta(days=days - 1)
    subs = _sub_accounts(session, account)
    # An agency's spend is on its sub-accounts; money of another currency is not added, only listed.
    included = [account_id, *(s.id for s in subs if s.currency == account.currency)]
    base = {"account_ids": included, "time_zone": account.time_zone,
            "metrics": [Metric.COST_MICROS, Metric.IMPRESSIONS, Metric.CLICKS, Metric.INSTALLS]}
    store = _store(store)

    def report(**kwargs: Any) -> ReportResult:
        query = ReportQuery.model_validate(base | kwargs)
        return run_report(session, principal, query, store=store, max_days=SYNC_MAX_DAYS)

    trend_rows = {r["date"]: r for r in report(start_date=start, end_date=today, granularity="day",
                                                  limit=days).rows}
    trend = []
    for offset in range(days):
        day = start + timedelta(days=offset)
        row = trend_rows.get(day.isoformat(), {})
        trend.append(DailyPoint(date=day, cost_micros=row.get("cost_micros") or 0,
                                impressions=row.get("impressions") or 0, clicks=row.get("clicks") or 0,
                                installs=row.get("installs") or 0))
    today_point = trend[-1]
    yesterday = report(start_date=today - timedelta(days=1), end_date=today - timedelta(days=1)).totals

    def shares(dimension: Dimension) -> list[Share]:
        result = report(start_date=start, end_date=today, dimensions=[dimension], sort="-cost_micros", limit=50)
        total_cost = int(result.totals.get("cost_micros") or 0)
        key = sql.DIMENSION_SQL[dimension][0]
        return [Share(key=str(r[key]), impressions=r["impressions"] or 0, clicks=r["clicks"] or 0,
                      cost_micros=r["cost_micros"] or 0, installs=r["installs"] or 0,
                      cost_share=sql.ratio(r["cost_micros"] or 0, total_cost) or "0")
                for r in result.rows if r.get("source") == "ads"]

    every_id = [account_id, *(s.id for s in subs)]
    counts = session.execute(
        select(ReviewItem.object_type, ReviewItem.status, func.count())
        .where(ReviewItem.account_id.in_(every_id))
        .group_by(ReviewItem.object_type, ReviewItem.status)
        .order_by(ReviewItem.object_type, ReviewItem.status)).all()
    recent = review.rejections(session, account_ids=set(every_id), limit=20)
    names = {(i.object_type, i.object_id): i.object_name for i in session.scalars(
        select(ReviewItem).where(ReviewItem.account_id.in_(every_id),
                                 ReviewItem.object_id.in_({r.object_id for r in recent})))}
    rejections = [Rejection(object_type=r.object_type, object_id=r.object_id,
                            object_name=names.get((r.object_type, r.object_id)), reasons=list(r.reasons or []),
                            rejected_at=r.created_at)
                  for r in recent]
    return OverviewRead(
        account_id=account.id, account_name=account.company_name, currency=account.currency,
        time_zone=account.time_zone, balance_micros=finance.balance_micros(session, account.id), today=today,
        today_spend_micros=today_point.cost_micros, today_impressions=today_point.impressions,
        today_clicks=today_point.clicks, today_installs=today_point.installs,
        yesterday_spend_micros=int(yesterday.get("cost_micros") or 0), trend=trend,
        review_status_counts=[ReviewCount(object_type=t, status=s, count=c) for t, s, c in counts],
        rejections=rejections, by_placement=shares(Dimension.PLACEMENT_TYPE), by_country=shares(Dimension.COUNTRY),
        sub_accounts=_sub_account_figures(session, principal, subs, today=today, time_zone=account.time_zone,
                                          store=store),
    )


MAX_SUB_ACCOUNTS = 500


def _sub_accounts(session: Session, account: Account) -> list[Account]:
    if account.type != AccountType.AGENCY:
        return []
    return list(session.scalars(select(Account).where(Account.parent_agency_id == account.id)
                                .order_by(Account.id).limit(MAX_SUB_ACCOUNTS)))


def _sub_account_figures(session: Session, principal: Principal, subs: Sequence[Account], *, today: date,
                         time_zone: str, store: EventStore) -> list[SubAccountFigures]:
    """Balance, today's spend (the agency's day) and serving ad groups of each sub-account, in a few queries."""
    if not subs:
        return []
    from adstack.campaigns.enums import ServingStatus, UserStatus
    from adstack.campaigns.models import AdGroup
    from adstack.campaigns.serving_status import serving_statuses

    ids = [s.id for s in subs]
    spend = run_report(session, principal, ReportQuery.model_validate({
        "account_ids": ids, "time_zone": time_zone, "start_date": today, "end_date": today,
        "dimensions": [Dimension.ACCOUNT], "metrics": [Metric.COST_MICROS], "limit": len(ids)}),
        store=store, max_days=SYNC_MAX_DAYS)
    key = sql.DIMENSION_SQL[Dimension.ACCOUNT][0]
    # Organic and other-network rows carry a label, not an account id: they cost nothing.
    spent = {int(r[key]): int(r.get("cost_micros") or 0) for r in spend.rows
             if r.get(key) is not None and r.get("source", "ads") == "ads"}
    groups = list(session.scalars(select(AdGroup).where(AdGroup.account_id.in_(ids),
                                                        AdGroup.status != UserStatus.DELETED.value)))
    serving: dict[int, int] = {}
    statuses = serving_statuses(session, groups)
    for group in groups:
        if statuses.get(group.id, (None,))[0] == ServingStatus.ELIGIBLE:
            serving[group.account_id] = serving.get(group.account_id, 0) + 1
    return [SubAccountFigures(account_id=s.id, account_name=s.company_name, currency=s.currency,
                              review_status=s.review_status, balance_micros=finance.balance_micros(session, s.id),
                              today_spend_micros=spent.get(s.id, 0), serving_ad_groups=serving.get(s.id, 0))
            for s in subs]
