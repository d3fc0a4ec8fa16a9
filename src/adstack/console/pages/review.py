"""The admin review queue: accounts, ad groups and creatives in order of submission; approve or reject."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Response
from sqlalchemy.orm import Session

from adstack.accounts import service as accounts
from adstack.accounts.models import Principal
from adstack.campaigns import service as campaigns
from adstack.console import forms
from adstack.console.i18n import N_
from adstack.console.web import PREFIX, ConsoleRoute, FormDep, ReviewerDep, redirect, render, with_notice
from adstack.core.deps import IdPath
from adstack.core.errors import ValidationFailed
from adstack.creatives import service as creatives
from adstack.review import service as review

router = APIRouter(route_class=ConsoleRoute)

PAGE_SIZE = 50
OBJECT_TYPES = ("account", "ad_group", "creative")

# Common reasons offered as one-click choices; reviewers may add their own text.
PRESET_REASONS = (
    N_("The qualification document is unclear or expired"),
    N_("The company name does not match the qualification document"),
    N_("The material is blurred, distorted or the wrong size"),
    N_("The landing page cannot be opened"),
    N_("The content breaks the advertising policy"),
    N_("The information is incomplete or inconsistent"),
)

Decider = Callable[..., Any]


def deciders() -> dict[str, Decider]:
    """The service function that decides each kind of object: the same one the API calls."""
    found: dict[str, Decider] = {"account": accounts.review_account}
    found.update(_ad_deciders())
    return found


def _ad_deciders() -> dict[str, Decider]:
    return {"ad_group": campaigns.review_ad_group, "creative": creatives.review_creative}


def object_link(object_type: str, object_id: int) -> str:
    if object_type == "account":
        return f"{PREFIX}/accounts/{object_id}"
    if object_type == "ad_group":
        return f"{PREFIX}/ads/ad-groups/{object_id}"
    return f"{PREFIX}/ads/creatives/{object_id}"


@router.get("/admin/review")
def review_queue(visitor: ReviewerDep, object_type: str | None = None, page: int = 1) -> Response:
    kind = object_type if object_type in OBJECT_TYPES else None
    page = max(1, min(page, 10_000))
    items = review.queue(visitor.session, object_type=kind, limit=PAGE_SIZE + 1, offset=(page - 1) * PAGE_SIZE)
    return render(visitor, "review/queue.html", {
        "items": items[:PAGE_SIZE], "has_next": len(items) > PAGE_SIZE, "page": page, "object_type": kind,
        "object_types": OBJECT_TYPES, "preset_reasons": PRESET_REASONS, "link": object_link,
        "decidable": set(deciders()),
    })


def decide(session: Session, principal: Principal, object_type: str, object_id: int, *, approve: bool,
           reasons: list[str]) -> None:
    decider = deciders().get(object_type)
    if decider is None:
        raise ValidationFailed.single("object_type", "one_of", "this kind of object is not reviewed here",
                                      limit=sorted(deciders()), actual=object_type)
    decider(session, principal, object_id, approve=approve, reasons=reasons)


@router.post("/admin/review/{object_type}/{object_id}")
def review_decision(object_type: str, object_id: IdPath, visitor: ReviewerDep, form: FormDep) -> Response:
    approve = forms.text(form, "decision") == "approve"
    reasons = forms.texts(form, "reasons")[:20]
    extra = forms.text(form, "reason_text")[:500]
    if extra:
        reasons.append(extra)
    if not approve and not reasons:
        raise ValidationFailed.single("reasons", "required", "at least one reason is required to reject")
    decide(visitor.session, visitor.me, object_type, object_id, approve=approve, reasons=reasons)
    visitor.session.commit()
    back = forms.text(form, "next")
    target = back if back.startswith(f"{PREFIX}/") else f"{PREFIX}/admin/review"
    return redirect(with_notice(target, "approved" if approve else "rejected"), request=visitor.request)
