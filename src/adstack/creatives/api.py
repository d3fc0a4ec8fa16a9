"""Creative formats, creatives (CRUD, review, status), previews and dynamic-creative combinations."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Path, Query, status
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy.orm import Session

from adstack.campaigns.enums import MarketingObjective, ServingStatus, UserStatus
from adstack.core.deps import (
    AccountManagerPrincipal,
    CurrentPrincipal,
    IdPath,
    Limit,
    Offset,
    OptionalId,
    SessionDep,
)
from adstack.core.errors import NotFound
from adstack.core.ids import MAX_ID
from adstack.core.vocabulary import PlacementType
from adstack.creatives import catalog, service
from adstack.creatives.formats import FormatSpec
from adstack.creatives.models import (
    Creative,
    CreativeCreate,
    CreativeFormat,
    CreativePage,
    CreativeRead,
    CreativeSort,
    CreativeStatusIn,
    CreativeUpdate,
    FormatEditIn,
    PreviewIn,
    RejectionRead,
)
from adstack.review import service as review
from adstack.review.models import ReviewDecisionIn, ReviewStatus

router = APIRouter(prefix="/api/v1")

# Previews hold advertiser text: no script may run, media only from this origin.
PREVIEW_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self' data:; media-src 'self'; "
                               "style-src 'unsafe-inline'; frame-ancestors 'self'",
    "X-Content-Type-Options": "nosniff",
}


class CombinationRead(BaseModel):
    key: str
    title: str | None
    description: str | None
    image_id: int | None
    video_id: int | None
    button_text: str | None
    icon_id: int | None
    business_name: str | None


def _read(session: Session, creative: Creative, notice: str | None = None, *,
          serving: tuple[ServingStatus, str] | None = None, campaign_id: int | None = None) -> CreativeRead:
    out = CreativeRead.model_validate(creative)
    out.serving_status, out.serving_reason = serving or service.creative_serving_status(session, creative)
    out.campaign_id = campaign_id if campaign_id is not None else service.campaign_ids_of(
        session, [creative]).get(creative.ad_group_id)
    if creative.review_status == ReviewStatus.UNDER_REVIEW:
        out.expected_review_at = review.expected_review_time_of(session, service.CREATIVE, creative.id)
    out.notice = notice
    return out


# ---------- formats ----------


@router.get("/creative-formats", response_model=list[FormatSpec], tags=["creatives"],
            summary="Every creative format with its rules in force (sizes, file types, caps, text lengths, counts)")
def list_formats(principal: CurrentPrincipal, session: SessionDep, placement_type: Annotated[
        str | None, Query(max_length=32, description="Only formats that serve this placement type.")] = None,
                 ) -> list[FormatSpec]:
    if placement_type:
        return catalog.specs_for_placement(session, placement_type)
    return list(catalog.all_specs(session))


@router.get("/creative-formats/{code}", response_model=FormatSpec, tags=["creatives"],
            summary="One creative format and its rules in force")
def get_format(code: Annotated[str, Path(max_length=64)], principal: CurrentPrincipal,
               session: SessionDep) -> FormatSpec:
    spec = catalog.get_spec(session, code)
    if spec is None:
        raise NotFound(f"creative format {code!r} not found")
    return spec


@router.put("/creative-formats/{code}/edits", response_model=FormatSpec, tags=["creatives"],
            summary="Change a format's rules (platform admins); kept over the shipped rules on every migrate",
            responses={403: {"description": "Not a platform admin"}, 404: {"description": "No such format"}})
def edit_format(code: Annotated[str, Path(max_length=64)], body: FormatEditIn,
                principal: AccountManagerPrincipal, session: SessionDep) -> FormatSpec:
    spec = catalog.edit_format(session, principal, code, body.edits)
    session.commit()
    return spec


# ---------- creatives ----------


@router.get("/creatives", response_model=CreativePage, tags=["creatives"],
            summary="Search, filter, sort and page through creatives")
def list_creatives(
    principal: CurrentPrincipal,
    session: SessionDep,
    q: Annotated[str | None, Query(max_length=200, description="Name or id.")] = None,
    account_id: OptionalId = None,
    ad_group_id: OptionalId = None,
    campaign_id: OptionalId = None,
    status: UserStatus | None = None,
    review_status: ReviewStatus | None = None,
    serving_status: ServingStatus | None = None,
    format: CreativeFormat | None = None,
    placement_type: PlacementType | None = None,
    publisher_id: Annotated[int | None, Query(ge=1, le=MAX_ID, description=(
        "Creatives of ad groups that can run on this publisher: naming it or one of its ad spaces, or on all "
        "publishers of a placement type it offers."))] = None,
    objective: MarketingObjective | None = None,
    include_deleted: bool = False,
    sort: CreativeSort = CreativeSort.ID,
    order: Annotated[str, Query(pattern="^(asc|desc)$")] = "desc",
    limit: Limit = 50,
    offset: Offset = 0,
) -> CreativePage:
    rows, total, serving = service.list_creatives(
        session, principal, query=q, account_id=account_id, ad_group_id=ad_group_id, campaign_id=campaign_id,
        status=status, review_status=review_status, serving_status=serving_status,
        format_code=format.value if format else None, placement_type=placement_type, publisher_id=publisher_id,
        objective=objective, include_deleted=include_deleted, sort=sort,
        descending=order == "desc", limit=limit, offset=offset,
    )
    campaigns = service.campaign_ids_of(session, rows)
    return CreativePage(total=total, items=[
        _read(session, c, serving=serving[c.id], campaign_id=campaigns.get(c.ad_group_id)) for c in rows])


@router.post("/creatives", response_model=CreativeRead, status_code=status.HTTP_201_CREATED, tags=["creatives"],
             summary="Create a creative; its materials are checked against the format's rules")
def create_creative(body: CreativeCreate, principal: CurrentPrincipal, session: SessionDep) -> CreativeRead:
    creative = service.create_creative(session, principal, body)
    session.commit()
    return _read(session, creative)


class CreativeCopyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ad_group_id: Annotated[int | None, Field(ge=1, le=MAX_ID, description=(
        "A live ad group of the same account to copy into; the original's by default."))] = None
    name: Annotated[str | None, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), Field(
        description="Defaults to the original's name + ' - copy'.")] = None
    submit: bool = Field(default=False, description="Submit the copy for review at once; a draft otherwise.")


@router.post("/creatives/{creative_id}/copy", response_model=CreativeRead, status_code=status.HTTP_201_CREATED,
             tags=["creatives"], summary="Copy a creative, into its ad group or another of the account; the copy "
             "is reviewed like a new creative")
def copy_creative(creative_id: IdPath, body: CreativeCopyIn, principal: CurrentPrincipal, session: SessionDep
                  ) -> CreativeRead:
    creative = service.copy_creative(session, principal, creative_id, ad_group_id=body.ad_group_id,
                                     name=body.name, submit=body.submit)
    session.commit()
    return _read(session, creative)


@router.post("/creatives/preview", response_class=HTMLResponse, tags=["creatives"],
             summary="Render unsaved materials as the format shows them, listing the rules they break",
             responses={200: {"content": {"text/html": {}}}})
def preview_unsaved(body: PreviewIn, principal: CurrentPrincipal, session: SessionDep) -> HTMLResponse:
    return HTMLResponse(service.preview_materials(session, principal, body), headers=PREVIEW_HEADERS)


@router.get("/creatives/{creative_id}", response_model=CreativeRead, tags=["creatives"], summary="Get a creative")
def get_creative(creative_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> CreativeRead:
    return _read(session, service.get_creative(session, principal, creative_id))


@router.patch("/creatives/{creative_id}", response_model=CreativeRead, tags=["creatives"],
              summary="Edit a creative; changing anything but the name sends an approved creative back to review")
def update_creative(creative_id: IdPath, body: CreativeUpdate, principal: CurrentPrincipal,
                    session: SessionDep) -> CreativeRead:
    creative, notice = service.update_creative(session, principal, creative_id, body)
    session.commit()
    return _read(session, creative, notice)


@router.delete("/creatives/{creative_id}", response_model=CreativeRead, tags=["creatives"],
               summary="Delete a creative (soft: its costs stay in reports)")
def delete_creative(creative_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> CreativeRead:
    creative = service.set_creative_status(session, principal, creative_id, UserStatus.DELETED.value)
    session.commit()
    return _read(session, creative)


@router.post("/creatives/{creative_id}/status", response_model=CreativeRead, tags=["creatives"],
             summary="Enable, pause or delete a creative")
def set_status(creative_id: IdPath, body: CreativeStatusIn, principal: CurrentPrincipal,
               session: SessionDep) -> CreativeRead:
    creative = service.set_creative_status(session, principal, creative_id, body.status)
    session.commit()
    return _read(session, creative)


@router.post("/creatives/{creative_id}/submit", response_model=CreativeRead, tags=["creatives", "review"],
             summary="Submit the creative for review")
def submit_creative(creative_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> CreativeRead:
    creative = service.submit_creative(session, principal, creative_id)
    session.commit()
    return _read(session, creative)


@router.post("/creatives/{creative_id}/review", response_model=CreativeRead, tags=["creatives", "review"],
             summary="Approve, or reject with reasons (reviewers)")
def review_creative(creative_id: IdPath, body: ReviewDecisionIn, principal: CurrentPrincipal,
                    session: SessionDep) -> CreativeRead:
    creative = service.review_creative(session, principal, creative_id, approve=body.decision == "approve",
                                       reasons=body.reasons)
    session.commit()
    return _read(session, creative)


@router.get("/creatives/{creative_id}/rejections", response_model=list[RejectionRead], tags=["creatives", "review"],
            summary="Every rejection of the creative, with its reasons")
def rejections(creative_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> list[RejectionRead]:
    return [RejectionRead.model_validate(r, from_attributes=True)
            for r in service.rejection_history(session, principal, creative_id)]


@router.get("/creatives/{creative_id}/preview", response_class=HTMLResponse, tags=["creatives"],
            summary="The creative rendered as HTML for its format", responses={200: {"content": {"text/html": {}}}})
def preview(creative_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> HTMLResponse:
    return HTMLResponse(service.preview_creative(session, principal, creative_id), headers=PREVIEW_HEADERS)


@router.get("/creatives/{creative_id}/combinations", response_model=list[CombinationRead], tags=["creatives"],
            summary="The title x description x image/video x button combinations serving assembles")
def combinations(creative_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> list[CombinationRead]:
    creative = service.get_creative(session, principal, creative_id)
    return [CombinationRead(**asdict(c)) for c in service.asset_combinations(creative)]


