"""The admin review queue and review history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from adstack.accounts import tenancy
from adstack.core.deps import CurrentPrincipal, IdPath, Limit, Offset, ReviewerPrincipal, SessionDep
from adstack.core.errors import NotFound
from adstack.review import enforcement, service
from adstack.review.models import (
    BatchDecisionIn,
    BatchItemResult,
    ReviewItemRead,
    ReviewRecordRead,
    ReviewStateRead,
    SuspensionIn,
)

router = APIRouter(prefix="/api/v1/review", tags=["review"])

ObjectType = Annotated[str | None, Query(pattern=r"^(account|ad_group|creative)$")]
ObjectTypePath = Annotated[str, Path(pattern=r"^(account|ad_group|creative)$")]


@router.get("/queue", response_model=list[ReviewItemRead], summary="Work waiting for review, oldest first")
def review_queue(principal: ReviewerPrincipal, session: SessionDep, object_type: ObjectType = None,
                 limit: Limit = 100, offset: Offset = 0) -> list[ReviewItemRead]:
    rows = service.queue(session, object_type=object_type, limit=limit, offset=offset)
    return [ReviewItemRead.model_validate(r, from_attributes=True) for r in rows]


@router.get("/history/{object_type}/{object_id}", response_model=list[ReviewRecordRead],
            summary="Submissions and decisions for one object, with rejection reasons")
def review_history(object_type: Annotated[str, Path(pattern=r"^(account|ad_group|creative)$")],
                   object_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> list[ReviewRecordRead]:
    records = service.history(session, object_type, object_id)
    # Missing and foreign objects answer alike, so ids of other tenants cannot be probed.
    account_id = records[0].account_id if records else None
    visible = principal.is_platform if account_id is None else tenancy.can_see_account(session, principal, account_id)
    if not records or not visible:
        raise NotFound("no review history for this object")
    return [ReviewRecordRead.model_validate(r, from_attributes=True) for r in records]


@router.get("/rejections", response_model=list[ReviewRecordRead], summary="Recent rejections you can see")
def rejections(principal: CurrentPrincipal, session: SessionDep, limit: Limit = 50) -> list[ReviewRecordRead]:
    rows = service.rejections(session, account_ids=tenancy.visible_account_ids(session, principal), limit=limit)
    return [ReviewRecordRead.model_validate(r, from_attributes=True) for r in rows]


@router.post("/batch", response_model=list[BatchItemResult],
             summary="Approve or reject several queued objects; each succeeds or fails alone")
def batch_decision(data: BatchDecisionIn, principal: ReviewerPrincipal, session: SessionDep) -> list[BatchItemResult]:
    results = enforcement.decide_batch(session, principal, data.items, approve=data.decision == "approve",
                                       reasons=data.reasons, deciders=enforcement.deciders())
    session.commit()
    return results


@router.post("/{object_type}/{object_id}/suspend", response_model=ReviewStateRead,
             summary="Suspend an approved account, ad group or creative: it stops serving until a reviewer lifts it")
def suspend(object_type: ObjectTypePath, object_id: IdPath, data: SuspensionIn, principal: ReviewerPrincipal,
            session: SessionDep) -> ReviewStateRead:
    obj = enforcement.suspend(session, principal, object_type, object_id, reason=data.reason)
    session.commit()
    return ReviewStateRead(object_type=object_type, object_id=object_id, review_status=obj.review_status)


@router.post("/{object_type}/{object_id}/lift-suspension", response_model=ReviewStateRead,
             summary="Lift a suspension: the object is approved again and serves")
def lift_suspension(object_type: ObjectTypePath, object_id: IdPath, principal: ReviewerPrincipal,
                    session: SessionDep) -> ReviewStateRead:
    obj = enforcement.lift(session, principal, object_type, object_id)
    session.commit()
    return ReviewStateRead(object_type=object_type, object_id=object_id, review_status=obj.review_status)
