"""Notifications (the caller's list) and webhook endpoints (per account; the secret is shown once)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, FastAPI, Query, Response

from adstack.accounts import tenancy
from adstack.core.deps import CurrentPrincipal, IdPath, Limit, Offset, SessionDep, SettingsDep
from adstack.core.outbound import OutboundPolicy
from adstack.core.security import Encryptor
from adstack.notifications import service
from adstack.notifications.gate import RequestGate, WriteGate
from adstack.notifications.models import (
    NotificationRead,
    WebhookAttemptRead,
    WebhookDeliveryRead,
    WebhookEndpoint,
    WebhookEndpointCreated,
    WebhookEndpointIn,
    WebhookEndpointRead,
)
from adstack.notifications.worker import NotificationWorker

router = APIRouter(prefix="/api/v1", tags=["notifications"])


def _read(endpoint: WebhookEndpoint) -> WebhookEndpointRead:
    return WebhookEndpointRead(id=endpoint.id, account_id=endpoint.account_id, url=endpoint.url,
                               event_types=endpoint.event_types, description=endpoint.description,
                               created_at=endpoint.created_at)


@router.get("/notifications", response_model=list[NotificationRead], summary="Your notifications, newest first")
def list_notifications(principal: CurrentPrincipal, session: SessionDep,
                       unread: Annotated[bool, Query(description="Only unread ones.")] = False,
                       limit: Limit = 50, offset: Offset = 0) -> list[NotificationRead]:
    rows = service.list_for_user(session, principal, unread_only=unread, limit=limit, offset=offset)
    return [NotificationRead.model_validate(r, from_attributes=True) for r in rows]


@router.post("/notifications/{notification_id}/read", status_code=204, summary="Mark one notification read")
def read_notification(notification_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> Response:
    service.mark_read(session, principal, notification_id)
    session.commit()
    return Response(status_code=204)


@router.post("/notifications/read-all", status_code=204, summary="Mark all your notifications read")
def read_all(principal: CurrentPrincipal, session: SessionDep) -> Response:
    service.mark_read(session, principal)
    session.commit()
    return Response(status_code=204)


@router.post("/webhooks", status_code=201, response_model=WebhookEndpointCreated,
             summary="Add a webhook endpoint; the answer carries its signing secret, shown only this once")
def create_webhook(data: WebhookEndpointIn, principal: CurrentPrincipal, session: SessionDep,
                   settings: SettingsDep) -> WebhookEndpointCreated:
    endpoint, secret = service.create_endpoint(session, principal, data,
                                               lambda s, p, a: tenancy.resolve_account_id(s, p, a),
                                               Encryptor(settings.resolved_secret_key),
                                               OutboundPolicy.from_settings(settings, purpose="webhooks"))
    session.commit()
    return WebhookEndpointCreated(**_read(endpoint).model_dump(), secret=secret)


@router.get("/webhooks", response_model=list[WebhookEndpointRead], summary="Webhook endpoints you can see")
def list_webhooks(principal: CurrentPrincipal, session: SessionDep) -> list[WebhookEndpointRead]:
    return [_read(e) for e in service.list_endpoints(session, tenancy.visible_account_ids(session, principal))]


@router.delete("/webhooks/{endpoint_id}", status_code=204, summary="Delete a webhook endpoint")
def delete_webhook(endpoint_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> Response:
    service.delete_endpoint(session, principal, tenancy.visible_account_ids(session, principal), endpoint_id)
    session.commit()
    return Response(status_code=204)


@router.get("/webhooks/{endpoint_id}/deliveries", response_model=list[WebhookDeliveryRead],
            summary="Recent deliveries to an endpoint, with every attempt")
def webhook_deliveries(endpoint_id: IdPath, principal: CurrentPrincipal, session: SessionDep, limit: Limit = 50
                       ) -> list[WebhookDeliveryRead]:
    endpoint = service.get_endpoint(session, tenancy.visible_account_ids(session, principal), endpoint_id)
    return [WebhookDeliveryRead(
        id=d.id, endpoint_id=d.endpoint_id, event_type=d.event_type, status=d.status, attempts=d.attempts,
        next_attempt_at=d.next_attempt_at if d.status == "pending" else None, delivered_at=d.delivered_at,
        created_at=d.created_at,
        attempt_log=[WebhookAttemptRead.model_validate(a, from_attributes=True) for a in attempts])
        for d, attempts in service.deliveries(session, endpoint, limit=limit)]


def install(app: FastAPI) -> None:
    """The background worker that sends e-mail and webhooks, outside any request."""
    gate = None
    if app.state.engine.dialect.name == "sqlite":
        gate = WriteGate()
        app.add_middleware(RequestGate, gate=gate)
    worker = NotificationWorker(app.state.session_factory, app.state.settings, gate=gate)
    app.state.notifications = worker
    app.state.on_startup.append(lambda _app: worker.start())
    app.state.on_shutdown.append(lambda _app: worker.stop())
