"""Advertised apps, their event mappings and the partner integration guides."""

from __future__ import annotations

from fastapi import APIRouter, status

from adstack.apps import service
from adstack.apps.models import (
    AppCreate,
    AppRead,
    AppUpdate,
    EventMappingRead,
    EventMappingsIn,
    IntegrationRead,
)
from adstack.core.deps import CurrentPrincipal, IdPath, Limit, Offset, OptionalId, SessionDep, SettingsDep
from adstack.core.vocabulary import Partner

router = APIRouter(prefix="/api/v1/apps", tags=["apps"])


@router.get("", response_model=list[AppRead], summary="Apps you can see")
def list_apps(principal: CurrentPrincipal, session: SessionDep, account_id: OptionalId = None,
              limit: Limit = 50, offset: Offset = 0) -> list[AppRead]:
    rows = service.list_apps(session, principal, account_id=account_id, limit=limit, offset=offset)
    return [AppRead.model_validate(a) for a in rows]


@router.post("", response_model=AppRead, status_code=status.HTTP_201_CREATED, summary="Add an advertised app")
def create_app(body: AppCreate, principal: CurrentPrincipal, session: SessionDep) -> AppRead:
    app = service.create_app(session, principal, body)
    session.commit()
    return AppRead.model_validate(app)


@router.get("/{app_id}", response_model=AppRead, summary="Get an app")
def get_app(app_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> AppRead:
    return AppRead.model_validate(service.get_app(session, principal, app_id))


@router.patch("/{app_id}", response_model=AppRead, summary="Edit an app's partner and attribution settings")
def update_app(app_id: IdPath, body: AppUpdate, principal: CurrentPrincipal, session: SessionDep) -> AppRead:
    app = service.update_app(session, principal, app_id, body)
    session.commit()
    return AppRead.model_validate(app)


@router.delete("/{app_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete an app")
def delete_app(app_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> None:
    service.delete_app(session, principal, app_id)
    session.commit()


@router.get("/{app_id}/event-mappings", response_model=list[EventMappingRead],
            summary="The app's event-name mapping rules, in the order they are tried")
def list_mappings(app_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> list[EventMappingRead]:
    app = service.get_app(session, principal, app_id)
    return [EventMappingRead.model_validate(m) for m in service.list_mappings(session, app.id)]


@router.put("/{app_id}/event-mappings", response_model=list[EventMappingRead],
            summary="Replace the app's event-name mapping rules")
def replace_mappings(app_id: IdPath, body: EventMappingsIn, principal: CurrentPrincipal,
                     session: SessionDep) -> list[EventMappingRead]:
    rows = service.replace_mappings(session, principal, app_id, body.mappings)
    session.commit()
    return [EventMappingRead.model_validate(m) for m in rows]


@router.get("/{app_id}/integrations", response_model=list[IntegrationRead],
            summary="Tracking link, postback URL and set-up steps for each of the nine partners")
def list_integrations(app_id: IdPath, principal: CurrentPrincipal, session: SessionDep,
                      settings: SettingsDep) -> list[IntegrationRead]:
    app = service.get_app(session, principal, app_id)
    return service.integrations(session, app, base_url=settings.public_base_url,
                                secret=settings.resolved_secret_key)


@router.get("/{app_id}/integrations/{partner}", response_model=IntegrationRead,
            summary="Tracking link, postback URL and set-up steps for one partner")
def get_integration(app_id: IdPath, partner: Partner, principal: CurrentPrincipal, session: SessionDep,
                    settings: SettingsDep) -> IntegrationRead:
    app = service.get_app(session, principal, app_id)
    return service.integration(session, app, partner, base_url=settings.public_base_url,
                               secret=settings.resolved_secret_key)
