"""Campaigns, ad groups, their review, status, copy, the ad list, batch mutate and the audience estimate."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, Field

from adstack.campaigns import audience_size, batch, lists, service
from adstack.campaigns.enums import MarketingObjective, ServingStatus, UserStatus
from adstack.campaigns.models import (
    AdGroupCopyIn,
    AdGroupCreate,
    AdGroupRead,
    AdGroupSort,
    AdGroupUpdate,
    CampaignCreate,
    CampaignRead,
    CampaignSort,
    CampaignUpdate,
    CopyIn,
    EstimateIn,
    EstimateOut,
    MutateIn,
    MutateOut,
    StatusBatchIn,
    StatusBatchOut,
)
from adstack.core.deps import CurrentPrincipal, IdPath, Limit, Offset, OptionalId, SessionDep
from adstack.core.vocabulary import PlacementType
from adstack.review import service as review
from adstack.review.models import ReviewDecisionIn, ReviewStatus

router = APIRouter(prefix="/api/v1")

class CampaignPage(BaseModel):
    total: int = Field(description="Campaigns matching the filters, over all pages.")
    items: list[CampaignRead]


class AdGroupPage(BaseModel):
    total: int = Field(description="Ad groups matching the filters, over all pages.")
    items: list[AdGroupRead]


Search = Annotated[str | None, Query(max_length=200, description="Name or id.")]
Order = Annotated[Literal["asc", "desc"], Query(description="Sort direction.")]


def campaign_read(session: SessionDep, view: lists.CampaignView, notice: str | None = None) -> CampaignRead:
    out = CampaignRead.model_validate(view.campaign)
    out.serving_status = view.serving_status
    out.serving_reason = view.serving_reason
    out.spend_micros = view.spend_micros
    out.ad_group_count = view.ad_group_count
    out.notice = notice
    return out


def ad_group_read(session: SessionDep, view: lists.AdGroupView, notice: str | None = None) -> AdGroupRead:
    out = AdGroupRead.model_validate(view.ad_group)
    out.serving_status = view.serving_status
    out.serving_reason = view.serving_reason
    out.spend_micros = view.spend_micros
    out.expected_review_at = review.expected_review_time_of(session, service.AD_GROUP, view.ad_group.id)
    out.notice = notice
    return out


def _campaign(session: SessionDep, campaign: service.Campaign, notice: str | None = None) -> CampaignRead:
    return campaign_read(session, lists.campaign_view(session, campaign), notice)


def _ad_group(session: SessionDep, ad_group: service.AdGroup, notice: str | None = None) -> AdGroupRead:
    return ad_group_read(session, lists.ad_group_views(session, [ad_group])[0], notice)


# ---------- campaigns ----------


@router.get("/campaigns", response_model=CampaignPage, tags=["campaigns"],
            summary="The campaign list: search, filter, sort and page; {total, items}")
def list_campaigns(
    principal: CurrentPrincipal,
    session: SessionDep,
    q: Search = None,
    account_id: OptionalId = None,
    objective: MarketingObjective | None = None,
    status: UserStatus | None = Query(default=None, description="Deleted ones show only when asked for."),
    serving_status: ServingStatus | None = None,
    placement_type: PlacementType | None = None,
    publisher_id: OptionalId = None,
    sort: CampaignSort = CampaignSort.ID,
    order: Order = "desc",
    limit: Limit = 50,
    offset: Offset = 0,
) -> CampaignPage:
    views, total = lists.list_campaigns(
        session, principal, query=q, account_id=account_id, objective=objective, status=status,
        serving_status=serving_status, placement_type=placement_type, publisher_id=publisher_id, sort=sort.value,
        descending=order == "desc", limit=limit, offset=offset)
    return CampaignPage(total=total, items=[campaign_read(session, v) for v in views])


@router.post("/campaigns", response_model=CampaignRead, status_code=status.HTTP_201_CREATED, tags=["campaigns"],
             summary="Create a campaign")
def create_campaign(body: CampaignCreate, principal: CurrentPrincipal, session: SessionDep) -> CampaignRead:
    campaign = service.create_campaign(session, principal, body)
    session.commit()
    return _campaign(session, campaign)


@router.post("/campaigns/batch-status", response_model=StatusBatchOut, tags=["campaigns"],
             summary="Enable, pause or delete many campaigns; each succeeds or fails alone")
def batch_campaign_status(body: StatusBatchIn, principal: CurrentPrincipal, session: SessionDep) -> StatusBatchOut:
    results = service.batch_set_status(session, principal, service.CAMPAIGN, body.ids, body.action)
    session.commit()
    return StatusBatchOut(results=results)


@router.get("/campaigns/{campaign_id}", response_model=CampaignRead, tags=["campaigns"], summary="Get a campaign")
def get_campaign(campaign_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> CampaignRead:
    return _campaign(session, service.get_campaign(session, principal, campaign_id))


@router.patch("/campaigns/{campaign_id}", response_model=CampaignRead, tags=["campaigns"],
              summary="Edit a campaign; changing the promoted app or page sends its ad groups back to review")
def update_campaign(campaign_id: IdPath, body: CampaignUpdate, principal: CurrentPrincipal,
                    session: SessionDep) -> CampaignRead:
    campaign, notice = service.update_campaign(session, principal, campaign_id, body)
    session.commit()
    return _campaign(session, campaign, notice)


@router.delete("/campaigns/{campaign_id}", response_model=CampaignRead, tags=["campaigns"],
               summary="Delete a campaign with its ad groups and creatives (soft; spend stays reported)")
def delete_campaign(campaign_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> CampaignRead:
    campaign = service.set_campaign_status(session, principal, campaign_id, "delete")
    session.commit()
    return _campaign(session, campaign)


@router.post("/campaigns/{campaign_id}/copy", response_model=CampaignRead, status_code=status.HTTP_201_CREATED,
             tags=["campaigns"], summary="Copy a campaign; deep also copies its ad groups and creatives as drafts")
def copy_campaign(campaign_id: IdPath, body: CopyIn, principal: CurrentPrincipal, session: SessionDep
                  ) -> CampaignRead:
    campaign = service.copy_campaign(session, principal, campaign_id, name=body.name, deep=body.deep)
    session.commit()
    return _campaign(session, campaign)


# ---------- ad groups ----------


@router.get("/ad-groups", response_model=AdGroupPage, tags=["ad groups"],
            summary="The ad group list: search, filter, sort and page; {total, items}")
def list_ad_groups(
    principal: CurrentPrincipal,
    session: SessionDep,
    q: Search = None,
    account_id: OptionalId = None,
    campaign_id: OptionalId = None,
    objective: MarketingObjective | None = None,
    status: UserStatus | None = Query(default=None, description="Deleted ones show only when asked for."),
    serving_status: ServingStatus | None = None,
    review_status: ReviewStatus | None = None,
    placement_type: PlacementType | None = None,
    publisher_id: OptionalId = None,
    sort: AdGroupSort = AdGroupSort.ID,
    order: Order = "desc",
    limit: Limit = 50,
    offset: Offset = 0,
) -> AdGroupPage:
    views, total = lists.list_ad_groups(
        session, principal, query=q, account_id=account_id, campaign_id=campaign_id, objective=objective,
        status=status, serving_status=serving_status, review_status=review_status, placement_type=placement_type,
        publisher_id=publisher_id, sort=sort.value, descending=order == "desc", limit=limit, offset=offset)
    return AdGroupPage(total=total, items=[ad_group_read(session, v) for v in views])


@router.post("/ad-groups", response_model=AdGroupRead, status_code=status.HTTP_201_CREATED, tags=["ad groups"],
             summary="Create an ad group (to be submitted)")
def create_ad_group(body: AdGroupCreate, principal: CurrentPrincipal, session: SessionDep) -> AdGroupRead:
    ad_group = service.create_ad_group(session, principal, body)
    session.commit()
    return _ad_group(session, ad_group)


@router.post("/ad-groups/estimate", response_model=EstimateOut, tags=["ad groups"],
             summary="Audience-size estimate for a targeting, placement and publishers")
def estimate(body: EstimateIn, principal: CurrentPrincipal, session: SessionDep) -> EstimateOut:
    result, source = audience_size.estimate(session, principal, body)
    return EstimateOut(users=result.users, estimated_max_daily_impressions=result.estimated_max_daily_impressions,
                       estimated_max_users=result.estimated_max_users, countries=result.countries,
                       unestimated=result.unestimated, source=source)


@router.post("/ad-groups/batch-status", response_model=StatusBatchOut, tags=["ad groups"],
             summary="Enable, pause or delete many ad groups; each succeeds or fails alone")
def batch_ad_group_status(body: StatusBatchIn, principal: CurrentPrincipal, session: SessionDep) -> StatusBatchOut:
    results = service.batch_set_status(session, principal, service.AD_GROUP, body.ids, body.action)
    session.commit()
    return StatusBatchOut(results=results)


@router.get("/ad-groups/{ad_group_id}", response_model=AdGroupRead, tags=["ad groups"], summary="Get an ad group")
def get_ad_group(ad_group_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> AdGroupRead:
    return _ad_group(session, service.get_ad_group(session, principal, ad_group_id))


@router.patch("/ad-groups/{ad_group_id}", response_model=AdGroupRead, tags=["ad groups"],
              summary="Edit an ad group; changing a reviewed field of an approved one sends it back to review")
def update_ad_group(ad_group_id: IdPath, body: AdGroupUpdate, principal: CurrentPrincipal,
                    session: SessionDep) -> AdGroupRead:
    ad_group, notice = service.update_ad_group(session, principal, ad_group_id, body)
    session.commit()
    return _ad_group(session, ad_group, notice)


@router.delete("/ad-groups/{ad_group_id}", response_model=AdGroupRead, tags=["ad groups"],
               summary="Delete an ad group with its creatives (soft; spend stays reported)")
def delete_ad_group(ad_group_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> AdGroupRead:
    ad_group = service.set_ad_group_status(session, principal, ad_group_id, "delete")
    session.commit()
    return _ad_group(session, ad_group)


@router.post("/ad-groups/{ad_group_id}/submit", response_model=AdGroupRead, tags=["ad groups", "review"],
             summary="Submit the ad group for review")
def submit_ad_group(ad_group_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> AdGroupRead:
    ad_group = service.submit_ad_group(session, principal, ad_group_id)
    session.commit()
    return _ad_group(session, ad_group)


@router.post("/ad-groups/{ad_group_id}/review", response_model=AdGroupRead, tags=["ad groups", "review"],
             summary="Approve, or reject with reasons (reviewers)")
def review_ad_group(ad_group_id: IdPath, body: ReviewDecisionIn, principal: CurrentPrincipal,
                    session: SessionDep) -> AdGroupRead:
    ad_group = service.review_ad_group(session, principal, ad_group_id, approve=body.decision == "approve",
                                       reasons=body.reasons)
    session.commit()
    return _ad_group(session, ad_group)


@router.post("/ad-groups/{ad_group_id}/copy", response_model=AdGroupRead, status_code=status.HTTP_201_CREATED,
             tags=["ad groups"], summary="Copy an ad group as a draft; deep also copies its creatives")
def copy_ad_group(ad_group_id: IdPath, body: AdGroupCopyIn, principal: CurrentPrincipal, session: SessionDep
                  ) -> AdGroupRead:
    ad_group = service.copy_ad_group(session, principal, ad_group_id, campaign_id=body.campaign_id, name=body.name,
                                     deep=body.deep)
    session.commit()
    return _ad_group(session, ad_group)


# ---------- batch mutate ----------


@router.post("/batch", response_model=MutateOut, tags=["batch"],
             summary="Create, update, enable, pause or delete campaigns, ad groups and creatives in one request")
def mutate(body: MutateIn, principal: CurrentPrincipal, session: SessionDep) -> MutateOut:
    results = batch.mutate(session, principal, body)
    if not body.validate_only:
        session.commit()
    return MutateOut(results=results, validate_only=body.validate_only,
                     applied=0 if body.validate_only else sum(r.ok for r in results))
