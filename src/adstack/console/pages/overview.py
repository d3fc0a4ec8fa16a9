"""The overview dashboard: balance, spend today, review counts, rejection history, trends and distribution."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import APIRouter, Response
from pydantic import ValidationError
from sqlalchemy import func, select

from adstack.accounts import service as accounts
from adstack.accounts import tenancy
from adstack.accounts.models import Account
from adstack.console import forms
from adstack.console import service as console
from adstack.console.models import AnnouncementIn
from adstack.console.pages import reports
from adstack.console.web import (
    PREFIX,
    ConsoleRoute,
    FormDep,
    PlatformDep,
    UserDep,
    Visitor,
    redirect,
    render,
    with_notice,
)
from adstack.core.deps import IdPath
from adstack.core.errors import DomainError
from adstack.core.timeutil import as_utc, utcnow
from adstack.events.service import get_event_store
from adstack.finance import service as finance
from adstack.pipeline.service import pending_postbacks
from adstack.reports import service as report_service
from adstack.reports.models import Dimension, Metric, ReportQuery
from adstack.review import service as review
from adstack.review.models import ReviewItem, ReviewStatus

router = APIRouter(route_class=ConsoleRoute)
log = logging.getLogger(__name__)


def _balances(visitor: Visitor) -> list[dict[str, Any]]:
    """The signed-in account first, then any sub-accounts an agency manages."""
    principal = visitor.me
    if principal.account_id is None:
        return []
    rows = [tenancy.get_account(visitor.session, principal, principal.account_id)]
    rows += accounts.list_accounts(visitor.session, principal, parent_agency_id=principal.account_id, limit=50)
    return [{"account": a, "balance_micros": finance.balance_micros(visitor.session, a.id),
             "low": 0 < a.low_balance_threshold_micros >= finance.balance_micros(visitor.session, a.id)}
            for a in rows]


@router.get("/")
def overview(visitor: UserDep) -> Response:
    session, principal = visitor.session, visitor.me
    visible = tenancy.visible_account_ids(session, principal)
    context: dict[str, Any] = {
        "balances": _balances(visitor),
        "review_counts": console.review_counts(session, visible,
                                               object_types=("account", "ad_group", "creative")),
        "rejections": review.rejections(session, account_ids=visible, limit=10),
        "announcements": console.list_announcements(session, limit=5),
        "platform": platform_figures(visitor) if principal.is_platform else None,
    }
    context.update(overview_reports(visitor))
    return render(visitor, "overview/overview.html", context)


TOP_ACCOUNTS = 10


def platform_figures(visitor: Visitor) -> dict[str, Any]:
    """What staff check first: today's spend per currency, the top accounts, fill rate, pipeline lag and how long
    the oldest item has waited in the review queue. A figure that cannot be read right now is left out."""
    session = visitor.session
    store = get_event_store(visitor.settings)
    today = utcnow().date()
    figures: dict[str, Any] = {"spend": [], "top_accounts": [], "fill_rate": None, "ad_requests": None,
                               "lag": None, "queue": _review_queue_age(session)}
    try:
        result = report_service.run_report(session, visitor.me, ReportQuery.model_validate({
            "start_date": today, "end_date": today, "time_zone": "UTC", "dimensions": [Dimension.ACCOUNT],
            "metrics": [Metric.COST_MICROS, Metric.IMPRESSIONS], "sort": "-cost_micros", "limit": 1000}),
            store=store)
    except DomainError:
        result = None
    if result is not None:
        key = next(c.key for c in result.columns if c.kind == "dimension")
        # Organic and other-network rows carry a label, not an account id: they cost nothing.
        ours = [r for r in result.rows if r.get(key) is not None and r.get("source", "ads") == "ads"]
        ids = [int(r[key]) for r in ours]
        known = {a.id: a for a in session.scalars(select(Account).where(Account.id.in_(ids)))} if ids else {}
        spend: dict[str, int] = {}
        for row in ours:
            account = known.get(int(row[key]))
            if account is None:
                continue
            spend[account.currency] = spend.get(account.currency, 0) + int(row.get("cost_micros") or 0)
            if len(figures["top_accounts"]) < TOP_ACCOUNTS and row.get("cost_micros"):
                figures["top_accounts"].append({"account": account, "cost_micros": int(row["cost_micros"]),
                                                "impressions": int(row.get("impressions") or 0)})
        figures["spend"] = sorted(spend.items())
    try:
        supply = report_service.run_report(session, visitor.me, ReportQuery.model_validate({
            "start_date": today, "end_date": today, "time_zone": "UTC",
            "metrics": [Metric.AD_REQUESTS, Metric.FILL_RATE]}), store=store)
        figures["ad_requests"] = supply.totals.get(Metric.AD_REQUESTS.value)
        if figures["ad_requests"]:
            figures["fill_rate"] = supply.totals.get(Metric.FILL_RATE.value)
    except DomainError:
        pass
    pipeline = getattr(visitor.request.app.state, "pipeline", None)
    if pipeline is not None:
        try:
            status = pipeline.status(pending_postbacks=pending_postbacks(session))
            figures["lag"] = {"seconds": max((c.lag_seconds for c in status.consumers), default=0.0),
                              "events": sum(c.lag_events for c in status.consumers),
                              "pending_postbacks": status.pending_postbacks}
        except Exception:  # the log may be unreachable; the page still shows the rest
            log.warning("pipeline status unavailable for the overview", exc_info=True)
    return figures


def _review_queue_age(session: Any) -> dict[str, Any]:
    waiting, oldest = session.execute(
        select(func.count(), func.min(ReviewItem.submitted_at))
        .where(ReviewItem.status == ReviewStatus.UNDER_REVIEW.value)).one()
    hours = None
    if oldest is not None:
        hours = max(0.0, (utcnow() - as_utc(oldest)).total_seconds() / 3600)
    return {"waiting": int(waiting or 0), "oldest": oldest, "oldest_hours": hours}


def overview_reports(visitor: Visitor) -> dict[str, Any]:
    """Spend today, trends and the distribution by placement and country, from the reports service."""
    return {"reports": reports.overview_figures(visitor)}


# ---------- announcements ----------


@router.get("/announcements")
def announcements_page(visitor: UserDep, page: int = 1) -> Response:
    page = max(1, min(page, 10_000))
    rows = console.list_announcements(visitor.session, limit=21, offset=(page - 1) * 20)
    return render(visitor, "overview/announcements.html", {
        "rows": rows[:20], "has_next": len(rows) > 20, "page": page, "errors": {}, "values": {},
    })


def _announcement_errors(exc: ValidationError) -> forms.FormErrors:
    """The Chinese text's refusals under its own inputs (`translations.zh.title` is `title_zh`)."""
    errors = forms.FormErrors()
    for items in forms.FormErrors.from_validation(exc).values():
        for item in items:
            field = re.sub(r"^translations\.(\w+)\.(\w+)$", r"\2_\1", item["field"])
            errors.add(field, item["rule"], item["message"], limit=item["limit"], actual=item["actual"])
    return errors


@router.post("/announcements")
def publish(visitor: PlatformDep, form: FormDep) -> Response:
    values = {name: forms.text(form, name) for name in ("title", "body", "title_zh", "body_zh")}
    payload: dict[str, Any] = {"title": values["title"], "body": values["body"]}
    if values["title_zh"] or values["body_zh"]:
        payload["translations"] = {"zh": {"title": values["title_zh"], "body": values["body_zh"]}}
    try:
        data = forms.parse(AnnouncementIn, payload)
    except ValidationError as exc:
        rows = console.list_announcements(visitor.session, limit=20)
        return render(visitor, "overview/announcements.html", {
            "rows": rows, "has_next": False, "page": 1, "values": values,
            "errors": _announcement_errors(exc)}, status=422)
    console.publish_announcement(visitor.session, visitor.me, data)
    visitor.session.commit()
    return redirect(with_notice(f"{PREFIX}/announcements", "published"))


@router.post("/announcements/{announcement_id}/delete")
def remove(announcement_id: IdPath, visitor: PlatformDep) -> Response:
    console.delete_announcement(visitor.session, visitor.me, announcement_id)
    visitor.session.commit()
    return redirect(with_notice(f"{PREFIX}/announcements", "deleted"))
