"""Enforcement: a reviewer suspends an approved account, ad group or creative (it stops serving) and is the
only one who lifts it; platform staff's pauses hold until staff resume; batch decisions in the queue."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from adstack.accounts.models import Principal
from adstack.core.errors import DomainError, Forbidden, InvalidState, NotFound
from adstack.core.timeutil import utcnow
from adstack.oplog import service as oplog
from adstack.oplog.models import Operation
from adstack.review import service as review
from adstack.review.models import BatchItemRef, BatchItemResult, PlatformHold, ReviewAction, ReviewStatus

OBJECT_TYPES = ("account", "ad_group", "creative")


def _load(session: Session, object_type: str, object_id: int) -> Any:
    from adstack.accounts.models import Account
    from adstack.campaigns.models import AdGroup
    from adstack.creatives.models import Creative

    model = {"account": Account, "ad_group": AdGroup, "creative": Creative}.get(object_type)
    obj = session.get(model, object_id) if model is not None else None
    if obj is None or getattr(obj, "status", "") == "deleted":
        raise NotFound(f"{object_type.replace('_', ' ')} {object_id} not found")
    return obj


def _name(object_type: str, obj: Any) -> str:
    return str(obj.company_name if object_type == "account" else obj.name)


def _account_id(object_type: str, obj: Any) -> int:
    return int(obj.id if object_type == "account" else obj.account_id)


def _move(session: Session, principal: Principal, object_type: str, object_id: int, action: ReviewAction,
          reason: str) -> Any:
    if not principal.can_review:
        raise Forbidden("only reviewers suspend and lift suspensions")
    obj = _load(session, object_type, object_id)
    before = {"review_status": obj.review_status}
    obj.review_status = review.apply(
        session, object_type=object_type, object_id=obj.id, account_id=_account_id(object_type, obj),
        object_name=_name(object_type, obj), current=obj.review_status, action=action,
        actor_user_id=principal.user_id, reasons=[reason] if reason.strip() else [],
    ).value
    if hasattr(obj, "rejection_reasons"):
        obj.rejection_reasons = reason.strip()[:2000] if action == ReviewAction.SUSPEND else ""
    oplog.record(session, actor=principal,
                 operation=Operation.SUSPEND if action == ReviewAction.SUSPEND else Operation.LIFT_SUSPENSION,
                 object_type=object_type, object_id=obj.id, object_name=_name(object_type, obj),
                 account_id=_account_id(object_type, obj), before=before,
                 after={"review_status": obj.review_status, "reason": reason.strip()})
    return obj


def suspend(session: Session, principal: Principal, object_type: str, object_id: int, *, reason: str) -> Any:
    """Take an approved object down: it stops serving until a reviewer lifts the suspension."""
    if not reason.strip():
        raise InvalidState("a suspension needs a reason")
    return _move(session, principal, object_type, object_id, ReviewAction.SUSPEND, reason)


def lift(session: Session, principal: Principal, object_type: str, object_id: int, *, reason: str = "") -> Any:
    return _move(session, principal, object_type, object_id, ReviewAction.LIFT_SUSPENSION, reason)


def is_suspended(obj: Any) -> bool:
    return getattr(obj, "review_status", "") == ReviewStatus.SUSPENDED


# ---------- platform pauses ----------


def active_hold(session: Session, object_type: str, object_id: int) -> PlatformHold | None:
    return session.scalar(select(PlatformHold).where(
        PlatformHold.object_type == object_type, PlatformHold.object_id == object_id,
        PlatformHold.lifted_at.is_(None)).order_by(PlatformHold.id.desc()).limit(1))


def before_status_change(session: Session, principal: Principal, *, object_type: str, object_id: int,
                         account_id: int, pausing: bool) -> None:
    """Called by every pause and resume of a campaign, ad group or creative, before it applies.

    Staff pausing places a hold; staff resuming lifts it. An account's own users cannot resume what staff
    paused (a 409 saying so), though they may pause it further.
    """
    hold = active_hold(session, object_type, object_id)
    if principal.is_platform:
        if pausing and hold is None:
            session.add(PlatformHold(object_type=object_type, object_id=object_id, account_id=account_id,
                                     actor_user_id=principal.user_id))
        elif not pausing and hold is not None:
            hold.lifted_at, hold.lifted_by_user_id = utcnow(), principal.user_id
        return
    if not pausing and hold is not None:
        raise InvalidState(f"{object_type.replace('_', ' ')} {object_id} was paused by the platform; "
                           "only platform staff can resume it", code="paused_by_platform")


# ---------- batch decisions ----------


Decider = Callable[..., Any]


def decide_batch(session: Session, principal: Principal, items: Sequence[BatchItemRef], *, approve: bool,
                 reasons: Iterable[str], deciders: dict[str, Decider]) -> list[BatchItemResult]:
    """Each item is decided alone (a savepoint each): one that cannot be decided does not stop the others."""
    if not principal.can_review:
        raise Forbidden("only reviewers decide")
    reason_list = [r.strip() for r in reasons if r.strip()]
    results = []
    seen: set[tuple[str, int]] = set()
    for item in items:
        if (item.object_type, item.object_id) in seen:
            continue
        seen.add((item.object_type, item.object_id))
        try:
            with session.begin_nested():
                obj = deciders[item.object_type](session, principal, item.object_id, approve=approve,
                                                 reasons=reason_list)
            results.append(BatchItemResult(object_type=item.object_type, object_id=item.object_id, ok=True,
                                           status=ReviewStatus(obj.review_status)))
        except DomainError as exc:
            results.append(BatchItemResult(object_type=item.object_type, object_id=item.object_id, ok=False,
                                           error=exc.as_dict()["error"]))
    return results


def deciders() -> dict[str, Decider]:
    """The service function that decides each kind of object: the same ones the single-item routes call."""
    from adstack.accounts import service as accounts
    from adstack.campaigns import service as campaigns
    from adstack.creatives import service as creatives

    return {"account": accounts.review_account, "ad_group": campaigns.review_ad_group,
            "creative": creatives.review_creative}
