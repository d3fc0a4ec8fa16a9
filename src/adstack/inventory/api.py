"""Publishers, ad spaces and the device-population table. Everyone signed in reads; platform admins edit."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status
from pydantic import BaseModel, Field

from adstack.core.deps import AccountManagerPrincipal, CurrentPrincipal, IdPath, Limit, Offset, OptionalId, SessionDep
from adstack.core.vocabulary import PlacementType
from adstack.inventory import service
from adstack.inventory.models import (
    AdSpaceCreate,
    AdSpaceRead,
    AdSpaceUpdate,
    CatalogueStatus,
    DevicePopulationIn,
    DevicePopulationRead,
    Platform,
    PublisherCreate,
    PublisherRead,
    PublisherUpdate,
)

router = APIRouter(prefix="/api/v1")

Search = Annotated[str | None, Query(max_length=200, description="Name or id.")]
Country = Annotated[str, Path(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2 code.")]


# ---------- publishers ----------



class PublisherPage(BaseModel):
    total: int = Field(description="Publishers matching the filters, over all pages.")
    items: list[PublisherRead]


class AdSpacePage(BaseModel):
    total: int = Field(description="Ad spaces matching the filters, over all pages.")
    items: list[AdSpaceRead]


@router.get("/publishers", response_model=PublisherPage, tags=["inventory"], summary="List publishers")
def list_publishers(principal: CurrentPrincipal, session: SessionDep, q: Search = None,
                    status: CatalogueStatus | None = None,
                    country: Annotated[str | None, Query(pattern=r"^[A-Z]{2}$")] = None,
                    platform: Platform | None = None, limit: Limit = 50, offset: Offset = 0) -> PublisherPage:
    rows, total = service.list_publishers(session, query=q, status=status, country=country, platform=platform,
                                          limit=limit, offset=offset)
    return PublisherPage(total=total, items=[PublisherRead.model_validate(r) for r in rows])


@router.post("/publishers", response_model=PublisherRead, status_code=status.HTTP_201_CREATED, tags=["inventory"],
             summary="Add a publisher (platform admins)")
def create_publisher(body: PublisherCreate, principal: AccountManagerPrincipal, session: SessionDep) -> PublisherRead:
    publisher = service.create_publisher(session, principal, body)
    session.commit()
    return PublisherRead.model_validate(publisher)


@router.get("/publishers/{publisher_id}", response_model=PublisherRead, tags=["inventory"], summary="Get a publisher")
def get_publisher(publisher_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> PublisherRead:
    return PublisherRead.model_validate(service.get_publisher(session, publisher_id))


@router.patch("/publishers/{publisher_id}", response_model=PublisherRead, tags=["inventory"],
              summary="Edit a publisher (platform admins)")
def update_publisher(publisher_id: IdPath, body: PublisherUpdate, principal: AccountManagerPrincipal,
                     session: SessionDep) -> PublisherRead:
    publisher = service.update_publisher(session, principal, publisher_id, body)
    session.commit()
    return PublisherRead.model_validate(publisher)


@router.delete("/publishers/{publisher_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["inventory"],
               summary="Delete a publisher without ad spaces (platform admins)")
def delete_publisher(publisher_id: IdPath, principal: AccountManagerPrincipal, session: SessionDep) -> None:
    service.delete_publisher(session, principal, publisher_id)
    session.commit()


# ---------- ad spaces ----------


@router.get("/ad-spaces", response_model=AdSpacePage, tags=["inventory"], summary="List ad spaces")
def list_ad_spaces(principal: CurrentPrincipal, session: SessionDep, q: Search = None,
                   publisher_id: OptionalId = None, placement_type: PlacementType | None = None,
                   status: CatalogueStatus | None = None, limit: Limit = 50, offset: Offset = 0) -> AdSpacePage:
    rows, total = service.list_ad_spaces(session, query=q, publisher_id=publisher_id, placement_type=placement_type,
                                         status=status, limit=limit, offset=offset)
    return AdSpacePage(total=total, items=[AdSpaceRead.model_validate(r) for r in rows])


@router.post("/ad-spaces", response_model=AdSpaceRead, status_code=status.HTTP_201_CREATED, tags=["inventory"],
             summary="Add an ad space to a publisher (platform admins)")
def create_ad_space(body: AdSpaceCreate, principal: AccountManagerPrincipal, session: SessionDep) -> AdSpaceRead:
    space = service.create_ad_space(session, principal, body)
    session.commit()
    return AdSpaceRead.model_validate(space)


@router.get("/ad-spaces/{ad_space_id}", response_model=AdSpaceRead, tags=["inventory"], summary="Get an ad space")
def get_ad_space(ad_space_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> AdSpaceRead:
    return AdSpaceRead.model_validate(service.get_ad_space(session, ad_space_id))


@router.patch("/ad-spaces/{ad_space_id}", response_model=AdSpaceRead, tags=["inventory"],
              summary="Edit an ad space (platform admins)")
def update_ad_space(ad_space_id: IdPath, body: AdSpaceUpdate, principal: AccountManagerPrincipal,
                    session: SessionDep) -> AdSpaceRead:
    space = service.update_ad_space(session, principal, ad_space_id, body)
    session.commit()
    return AdSpaceRead.model_validate(space)


@router.delete("/ad-spaces/{ad_space_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["inventory"],
               summary="Delete an ad space (platform admins)")
def delete_ad_space(ad_space_id: IdPath, principal: AccountManagerPrincipal, session: SessionDep) -> None:
    service.delete_ad_space(session, principal, ad_space_id)
    session.commit()


# ---------- device population ----------


@router.get("/device-populations", response_model=list[DevicePopulationRead], tags=["inventory"],
            summary="The device-population table behind audience-size estimates")
def list_populations(principal: CurrentPrincipal, session: SessionDep) -> list[DevicePopulationRead]:
    return [DevicePopulationRead.model_validate(r) for r in service.list_populations(session)]


@router.get("/device-populations/{country}", response_model=DevicePopulationRead, tags=["inventory"],
            summary="One country's device population")
def get_population(country: Country, principal: CurrentPrincipal, session: SessionDep) -> DevicePopulationRead:
    return DevicePopulationRead.model_validate(service.get_population(session, country))


@router.put("/device-populations/{country}", response_model=DevicePopulationRead, tags=["inventory"],
            summary="Create or replace one country's device population (platform admins)")
def put_population(country: Country, body: DevicePopulationIn, principal: AccountManagerPrincipal,
                   session: SessionDep) -> DevicePopulationRead:
    row = service.put_population(session, principal, country, body)
    session.commit()
    return DevicePopulationRead.model_validate(row)


@router.delete("/device-populations/{country}", status_code=status.HTTP_204_NO_CONTENT, tags=["inventory"],
               summary="Remove one country's device population (platform admins)")
def delete_population(country: Country, principal: AccountManagerPrincipal, session: SessionDep) -> None:
    service.delete_population(session, principal, country)
    session.commit()
