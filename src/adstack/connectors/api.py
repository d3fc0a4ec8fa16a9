"""Partner data connectors (Adjust, AppsFlyer, ... see registry.py): accounts, app bindings, pulls and the
partner's numbers beside ours."""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request, status
from pydantic import BaseModel, Field

from adstack.accounts import tenancy
from adstack.connectors import columns as partner_columns_
from adstack.connectors import registry, service
from adstack.connectors.models import (
    SETTINGS_MATCH_NOTICE,
    BindingCreate,
    BindingRead,
    BindingUpdate,
    ConnectionCreate,
    ConnectionRead,
    ConnectionUpdate,
    PullRequest,
    PullRunRead,
)
from adstack.core.background import Periodic
from adstack.core.db import session_scope
from adstack.core.deps import CurrentPrincipal, IdPath, SessionDep, SettingsDep
from adstack.core.errors import DomainError, ValidationFailed
from adstack.core.security import Encryptor
from adstack.core.settings import Settings
from adstack.reports.connector_columns import register_column_source

router = APIRouter(prefix="/api/v1/connectors", tags=["connectors"])
log = logging.getLogger("adstack.connectors")


def _encryptor(settings: Settings) -> Encryptor:
    return Encryptor(settings.resolved_secret_key)


def connector_factory_of(request: Request) -> service.ConnectorFactory:
    """Tests and operators may replace the factory on app.state (e.g. to point at another endpoint)."""
    factory: service.ConnectorFactory | None = getattr(request.app.state, "connector_factory", None)
    return factory or service.default_connector_factory(request.app.state.settings)


@router.get("", response_model=list[ConnectionRead], summary="Partner connections you can see")
def list_connections(principal: CurrentPrincipal, session: SessionDep) -> list[ConnectionRead]:
    return [ConnectionRead.model_validate(c) for c in service.list_connections(session, principal)]


class PartnerRead(BaseModel):
    partner: str
    display_name: str
    settings: list[str] = Field(description="The settings a binding of this partner takes.")
    documentation: list[str] = Field(description="The partner's pages the connector follows.")


class BindingPage(BaseModel):
    notice: str
    items: list[BindingRead]


@router.get("/partners", response_model=list[PartnerRead], summary="The partners a connection can pull from")
def list_partners(principal: CurrentPrincipal) -> list[PartnerRead]:
    return [PartnerRead(partner=spec.partner, display_name=spec.display_name, settings=list(spec.binding_fields),
                        documentation=list(spec.documentation)) for spec in registry.CONNECTORS.values()]


@router.post("", response_model=ConnectionRead, status_code=status.HTTP_201_CREATED,
             summary="Add a partner account (Adjust, AppsFlyer); the API token is stored encrypted and never "
                     "shown again in full")
def create_connection(body: ConnectionCreate, principal: CurrentPrincipal, session: SessionDep,
                      settings: SettingsDep) -> ConnectionRead:
    connection = service.create_connection(session, principal, body, encryptor=_encryptor(settings))
    session.commit()
    return ConnectionRead.model_validate(connection)


@router.get("/{connection_id}", response_model=ConnectionRead, summary="One connection")
def get_connection(connection_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> ConnectionRead:
    return ConnectionRead.model_validate(service.get_connection(session, principal, connection_id))


@router.patch("/{connection_id}", response_model=ConnectionRead, summary="Rename, replace the token, or disable")
def update_connection(connection_id: IdPath, body: ConnectionUpdate, principal: CurrentPrincipal,
                      session: SessionDep, settings: SettingsDep) -> ConnectionRead:
    connection = service.update_connection(session, principal, connection_id, body, encryptor=_encryptor(settings))
    session.commit()
    return ConnectionRead.model_validate(connection)


@router.get("/{connection_id}/apps", response_model=BindingPage, summary="Bound apps, with the settings notice")
def list_bindings(connection_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> BindingPage:
    rows = service.list_bindings(session, principal, connection_id)
    return BindingPage(notice=SETTINGS_MATCH_NOTICE, items=[BindingRead.model_validate(b) for b in rows])


@router.post("/{connection_id}/apps", response_model=BindingRead, status_code=status.HTTP_201_CREATED,
             summary="Bind a partner app token with its time zone and attribution settings")
def bind_app(connection_id: IdPath, body: BindingCreate, principal: CurrentPrincipal,
             session: SessionDep) -> BindingRead:
    binding = service.bind_app(session, principal, connection_id, body)
    session.commit()
    return BindingRead.model_validate(binding)


@router.patch("/apps/{binding_id}", response_model=BindingRead, summary="Change a binding's settings")
def update_binding(binding_id: IdPath, body: BindingUpdate, principal: CurrentPrincipal,
                   session: SessionDep) -> BindingRead:
    binding = service.update_binding(session, principal, binding_id, body)
    session.commit()
    return BindingRead.model_validate(binding)


@router.post("/{connection_id}/pull", response_model=PullRunRead,
             summary="Pull now (default: the days whose cohorts are not yet mature); a re-pull replaces days, "
                     "never duplicates them")
def pull_now(connection_id: IdPath, body: PullRequest, request: Request, principal: CurrentPrincipal,
             session: SessionDep, settings: SettingsDep) -> PullRunRead:
    run = service.pull_for(session, principal, connection_id, encryptor=_encryptor(settings),
                           connector_factory=connector_factory_of(request), date_from=body.date_from,
                           date_to=body.date_to)
    session.commit()
    if run.status == "failed":
        # The run and the connection's error are saved above; the caller gets the partner's reason.
        raise DomainError(run.error or "the pull failed", code="partner_pull_failed")
    return PullRunRead.model_validate(run)


@router.get("/{connection_id}/runs", response_model=list[PullRunRead], summary="Recent pulls")
def list_runs(connection_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> list[PullRunRead]:
    return [PullRunRead.model_validate(r) for r in service.list_runs(session, principal, connection_id)]


@router.get("/columns/by-campaign-day", response_model=list[dict],
            summary="A partner's metrics per campaign and day, as extra report columns (money in the account's "
                    "currency)")
def partner_columns(
    principal: CurrentPrincipal,
    session: SessionDep,
    date_from: Annotated[date, Query()],
    date_to: Annotated[date, Query()],
    partner: Annotated[str, Query(max_length=32)] = "adjust",
) -> list[dict[str, Any]]:
    if date_from > date_to or (date_to - date_from) > timedelta(days=366):
        raise ValidationFailed.single("date_to", "range", "date_to must be within 366 days after date_from",
                                      limit=366, actual=str(date_to))
    if registry.spec_of(partner) is None:
        raise ValidationFailed.single("partner", "known_partner", "no such partner", limit=registry.partners(),
                                      actual=partner)
    columns = partner_columns_.partner_columns(session, account_ids=tenancy.visible_account_ids(session, principal),
                                               date_from=date_from, date_to=date_to, partner=partner)
    return [{"campaign_id": cell.campaign_id, "day": cell.day.isoformat(),
             **{f"{partner}_{name}": (None if value is None else str(value)) for name, value in values.items()}}
            for cell, values in sorted(columns.items())]


@router.get("/{connection_id}/last-pull", response_model=dict,
            summary="The last pull's numbers per campaign, ad group, creative, country and day, beside adstack's")
def last_pull(connection_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> dict[str, Any]:
    return service.last_pull_summary(session, principal, connection_id)


def install(app: FastAPI) -> None:
    """Every registered partner's columns in reports, and hourly scheduled pulls of the days whose cohorts are
    not yet mature in a daemon thread (off when the interval is 0)."""
    for source in partner_columns_.column_sources():
        register_column_source(source)
    def pull() -> None:
        settings: Settings = app.state.settings
        with session_scope(app.state.session_factory) as session:
            service.scheduled_pull(session, encryptor=_encryptor(settings),
                                   connector_factory=getattr(app.state, "connector_factory", None)
                                   or service.default_connector_factory(settings))

    # A failing partner must never stop the schedule: the next pull tries again.
    # Shutdown does not wait long for a pull in progress: it is repeated on the next schedule.
    pulls = Periodic("partner-pulls", pull, interval=lambda: app.state.settings.connector_pull_interval_s, log=log,
                     failure="scheduled partner pull failed", join_seconds=2.0)

    def start(app: FastAPI) -> None:
        settings: Settings = app.state.settings
        if settings.connector_pull_interval_s > 0 and settings.environment != "test":
            pulls.start()

    app.state.on_startup.append(start)
    app.state.on_shutdown.append(lambda _app: pulls.stop())
