"""The overview dashboard: balance, spend today, review counts, rejection history, trends and distribution."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Response
from pydantic import ValidationError

from adstack.accounts import service as accounts
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
from adstack.finance import service as finance
from adstack.review import service as review

router = APIRouter(route_class=ConsoleRoute)


def _balances(visitor: Visitor) -> list[dict[str, Any]]:
    """The signed-in account first, then any sub-accounts an agency manages."""
    principal = visitor.me
    if principal.account_id is None:
        return []
    rows = [accounts.get_account(visitor.session, principal, principal.account_id)]
    rows += accounts.list_accounts(visitor.session, principal, parent_agency_id=principal.account_id, limit=50)
    return [{"account": a, "balance_micros": finance.balance_micros(visitor.session, a.id),
             "low": 0 < a.low_balance_threshold_micros >= finance.balance_micros(visitor.session, a.id)}
            for a in rows]


@router.get("/")
def overview(visitor: UserDep) -> Response:
    session, principal = visitor.session, visitor.me
    visible = accounts.visible_account_ids(session, principal)
    context: dict[str, Any] = {
        "balances": _balances(visitor),
        "review_counts": console.review_counts(session, visible,
                                               object_types=("account", "ad_group", "creative")),
        "rejections": review.rejections(session, account_ids=visible, limit=10),
        "announcements": console.list_announcements(session, limit=5),
    }
    context.update(overview_reports(visitor))
    return render(visitor, "overview/overview.html", context)


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
