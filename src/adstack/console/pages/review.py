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
from adstack.review import enforcement
from adstack.review import service as review
from adstack.review.models import BatchItemRef

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
        "decidable": set(deciders()), "suspended": review.suspended(visitor.session, limit=PAGE_SIZE),
    })


def decide(session: Session, principal: Principal, object_type: str, object_id: int, *, approve: bool,
           reasons: list[str]) -> None:
    decider = deciders().get(object_type)
    if decider is None:
        raise ValidationFailed.single("object_type", "one_of", "this kind of object is not reviewed here",
                                      limit=sorted(deciders()), actual=object_type)
    decider(session, principal, object_id, approve=approve, reasons=reasons)


def _reasons(form: Any) -> list[str]:
    reasons = forms.texts(form, "reasons")[:20]
    extra = forms.text(form, "reason_text")[:500]
    if extra:
        reasons.append(extra)
    return reasons


def _back(form: Any, notice: str, visitor: Any) -> Response:
    back = forms.text(form, "next")
    target = back if back.startswith(f"{PREFIX}/") else f"{PREFIX}/admin/review"
    return redirect(with_notice(target, notice), request=visitor.request)


@router.post("/admin/review/batch")
def review_batch(visitor: ReviewerDep, form: FormDep) -> Response:
    """Approve or reject every ticked row; each is decided alone, and what could not be decided is listed."""
    approve = forms.text(form, "decision") == "approve"
    reasons = _reasons(form)
    if not approve and not reasons:
        raise ValidationFailed.single("reasons", "required", "at least one reason is required to reject")
    items = []
    for raw in forms.texts(form, "items")[:200]:
        kind, _, number = raw.partition(":")
        if kind in OBJECT_TYPES and number.isdecimal() and len(number) < 16:
            items.append(BatchItemRef(object_type=kind, object_id=int(number)))
    if not items:
        raise ValidationFailed.single("items", "required", "tick at least one row", limit=1, actual=0)
    results = enforcement.decide_batch(visitor.session, visitor.me, items, approve=approve, reasons=reasons,
                                       deciders=deciders())
    visitor.session.commit()
    failed = [r for r in results if not r.ok]
    return _back(form, "batch_partial" if failed else "batch_done", visitor)


@router.post("/admin/review/suspend")
def suspend_object(visitor: ReviewerDep, form: FormDep) -> Response:
    kind = forms.text(form, "object_type")
    if kind not in OBJECT_TYPES:
        raise ValidationFailed.single("object_type", "one_of", "choose an account, ad group or creative",
                                      limit=list(OBJECT_TYPES), actual=kind[:40])
    object_id = forms.integer(form, "object_id", minimum=1, maximum=2**53)
    reason = "; ".join(_reasons(form))[:500]
    if object_id is None:
        raise ValidationFailed.single("object_id", "required", "the id of the object to suspend")
    if not reason:
        raise ValidationFailed.single("reasons", "required", "a suspension needs a reason")
    enforcement.suspend(visitor.session, visitor.me, kind, object_id, reason=reason)
    visitor.session.commit()
    return _back(form, "suspended", visitor)


@router.post("/admin/review/{object_type}/{object_id}/lift")
def lift_suspension(object_type: str, object_id: IdPath, visitor: ReviewerDep, form: FormDep) -> Response:
    if object_type not in OBJECT_TYPES:
        raise ValidationFailed.single("object_type", "one_of", "an account, ad group or creative",
                                      limit=list(OBJECT_TYPES), actual=object_type[:40])
    enforcement.lift(visitor.session, visitor.me, object_type, object_id)
    visitor.session.commit()
    return _back(form, "suspension_lifted", visitor)


@router.post("/admin/review/{object_type}/{object_id}")
def review_decision(object_type: str, object_id: IdPath, visitor: ReviewerDep, form: FormDep) -> Response:
    approve = forms.text(form, "decision") == "approve"
    reasons = _reasons(form)
    if not approve and not reasons:
        raise ValidationFailed.single("reasons", "required", "at least one reason is required to reject")
    decide(visitor.session, visitor.me, object_type, object_id, approve=approve, reasons=reasons)
    visitor.session.commit()
    return _back(form, "approved" if approve else "rejected", visitor)
