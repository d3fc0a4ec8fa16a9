"""Notification events: written with the change that causes them, fanned out to the console list, the
e-mail queue and each subscribed webhook endpoint. Delivery happens later, in `worker.py`."""

from __future__ import annotations

import secrets
import threading
import weakref
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import event, select, update
from sqlalchemy.orm import Session

from adstack.accounts.models import Account, Principal, User
from adstack.console import notification_texts as texts
from adstack.core.errors import Forbidden, NotFound, ValidationFailed
from adstack.core.outbound import OutboundPolicy, literal_refusal
from adstack.core.security import Encryptor
from adstack.core.timeutil import utcnow
from adstack.notifications.models import (
    EventType,
    Notification,
    NotificationEvent,
    QueuedMail,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEndpointIn,
)
from adstack.notifications.signing import event_body
from adstack.oplog import service as oplog
from adstack.oplog.models import Operation

# Workers of this process, woken when a transaction that wrote events commits.
_listeners: weakref.WeakSet[Any] = weakref.WeakSet()
_listeners_lock = threading.Lock()


def on_commit_wake(worker: Any) -> None:
    """Register a worker (anything with `notify()`) to be woken after events are committed."""
    with _listeners_lock:
        _listeners.add(worker)


def _wake_workers(_session: Session) -> None:
    with _listeners_lock:
        workers = list(_listeners)
    for worker in workers:
        worker.notify()


def _wake_after_commit(session: Session) -> None:
    if not event.contains(session, "after_commit", _wake_workers):
        event.listen(session, "after_commit", _wake_workers, once=True)


# ---------- emitting ----------


def _recipients(session: Session, account: Account) -> list[User]:
    """The account's own users, and its agency's: an agency manages its sub-accounts."""
    owners = [account.id] + ([account.parent_agency_id] if account.parent_agency_id else [])
    return list(session.scalars(select(User).where(User.account_id.in_(owners), User.is_active.is_(True))
                                .order_by(User.id)))


def emit(session: Session, *, account_id: int, event_type: EventType, key: str, data: dict[str, Any],
         now: datetime | None = None) -> NotificationEvent | None:
    """Record one event (once per key) in the caller's transaction, with everything that delivers it."""
    if session.scalar(select(NotificationEvent.id).where(NotificationEvent.key == key)) is not None:
        return None
    account = session.get(Account, account_id)
    if account is None:
        return None
    moment = now or utcnow()
    record = NotificationEvent(key=key, public_id=f"evt_{secrets.token_hex(12)}", account_id=account_id,
                               event_type=event_type.value, data=data, created_at=moment)
    session.add(record)
    session.flush()
    for user in _recipients(session, account):
        session.add(Notification(user_id=user.id, account_id=account_id, event_id=record.id,
                                 event_type=record.event_type, data=data, created_at=moment))
    # Source: Mi Ads usage guide, 1.3 "Account Review": the result "will also be sent to the contact person's
    # email address". Every other event goes to the same address.
    if account.contact_email:
        subject, body = texts.mail(event_type, data)
        session.add(QueuedMail(event_id=record.id, recipient=account.contact_email, subject=subject, body=body,
                               next_attempt_at=moment, created_at=moment))
    body_text = event_body(record)
    for endpoint in _subscribed_endpoints(session, account_id, event_type):
        session.add(WebhookDelivery(endpoint_id=endpoint.id, account_id=account_id, event_id=record.id,
                                    event_type=record.event_type, body=body_text, next_attempt_at=moment,
                                    created_at=moment))
    _wake_after_commit(session)
    return record


def _subscribed_endpoints(session: Session, account_id: int, event_type: EventType) -> list[WebhookEndpoint]:
    endpoints = session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.account_id == account_id,
                                                              WebhookEndpoint.deleted_at.is_(None)))
    return [e for e in endpoints if not e.event_types or event_type.value in e.event_types]


REVIEW_EVENTS = {"approve": EventType.REVIEW_APPROVED, "reject": EventType.REVIEW_REJECTED,
                 "suspend": EventType.REVIEW_SUSPENDED, "lift_suspension": EventType.REVIEW_SUSPENSION_LIFTED}


def emit_review_result(session: Session, *, action: str, object_type: str, object_id: int, object_name: str,
                       account_id: int | None, reasons: Iterable[str], record_id: int) -> None:
    """A reviewer's decision on an account, ad group or creative."""
    event_type = REVIEW_EVENTS.get(action)
    if event_type is None or account_id is None:
        return
    emit(session, account_id=account_id, event_type=event_type, key=f"review:{record_id}",
         data={"object_type": object_type, "object_id": object_id, "object_name": object_name,
               "reasons": list(reasons)})


# ---------- the console list ----------


def list_for_user(session: Session, principal: Principal, *, unread_only: bool = False, limit: int = 50,
                  offset: int = 0) -> list[Notification]:
    stmt = select(Notification).where(Notification.user_id == principal.user_id)
    if unread_only:
        stmt = stmt.where(Notification.read_at.is_(None))
    return list(session.scalars(stmt.order_by(Notification.created_at.desc(), Notification.id.desc())
                                .limit(limit).offset(offset)))


def unread_count(session: Session, principal: Principal) -> int:
    from sqlalchemy import func

    return int(session.scalar(select(func.count()).select_from(Notification).where(
        Notification.user_id == principal.user_id, Notification.read_at.is_(None))) or 0)


def mark_read(session: Session, principal: Principal, notification_id: int | None = None) -> int:
    """Mark one (or, without an id, every) notification of the caller read; others' answer 404."""
    stmt = update(Notification).where(Notification.user_id == principal.user_id, Notification.read_at.is_(None))
    if notification_id is not None:
        owned = session.get(Notification, notification_id)
        if owned is None or owned.user_id != principal.user_id:
            raise NotFound(f"notification {notification_id} not found")
        stmt = stmt.where(Notification.id == notification_id)
    return int(session.execute(stmt.values(read_at=utcnow())).rowcount or 0)  # type: ignore[attr-defined]


# ---------- webhook endpoints ----------


def _require_account_writer(principal: Principal) -> None:
    if principal.is_platform:
        raise Forbidden("webhook endpoints belong to an account; its own users manage them")
    if getattr(principal, "account_role", "owner") == "viewer":
        raise Forbidden("viewers cannot manage webhook endpoints")
    scopes = getattr(principal, "scopes", None)
    if scopes is not None and "write" not in scopes:
        raise Forbidden("this API key lacks the write scope")


def create_endpoint(session: Session, principal: Principal, data: WebhookEndpointIn,
                    resolve_account: Callable[[Session, Principal, int | None], int], encryptor: Encryptor,
                    policy: OutboundPolicy | None = None) -> tuple[WebhookEndpoint, str]:
    """The new endpoint and its signing secret: the only time the secret leaves the database. An address
    deliveries would never reach (a private, loopback or metadata address, in any notation) is refused now
    rather than left to fail at every delivery."""
    _require_account_writer(principal)
    refused = literal_refusal(str(data.url), policy or OutboundPolicy.from_settings(purpose="webhooks"))
    if refused is not None:
        raise ValidationFailed.single("url", "public_address", f"webhooks are sent only to public addresses: "
                                      f"{refused}", actual=str(data.url))
    account_id = resolve_account(session, principal, data.account_id)
    secret = f"whsec_{secrets.token_hex(24)}"
    endpoint = WebhookEndpoint(account_id=account_id, url=str(data.url), secret_ciphertext=encryptor.encrypt(secret),
                               event_types=[t.value for t in data.event_types], description=data.description,
                               created_by_user_id=principal.user_id)
    session.add(endpoint)
    session.flush()
    oplog.record(session, actor=principal, operation=Operation.CREATE, object_type=WEBHOOK, object_id=endpoint.id,
                 object_name=endpoint.url, account_id=endpoint.account_id, after=_endpoint_snapshot(endpoint))
    return endpoint, secret


WEBHOOK = "webhook_endpoint"


def _endpoint_snapshot(endpoint: WebhookEndpoint) -> dict[str, Any]:
    """What the log keeps of an endpoint: never its secret."""
    return {"url": endpoint.url, "event_types": endpoint.event_types, "description": endpoint.description}


def list_endpoints(session: Session, account_ids: set[int] | None) -> list[WebhookEndpoint]:
    stmt = select(WebhookEndpoint).where(WebhookEndpoint.deleted_at.is_(None))
    if account_ids is not None:
        stmt = stmt.where(WebhookEndpoint.account_id.in_(account_ids))
    return list(session.scalars(stmt.order_by(WebhookEndpoint.id)))


def get_endpoint(session: Session, account_ids: set[int] | None, endpoint_id: int) -> WebhookEndpoint:
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or endpoint.deleted_at is not None or (
            account_ids is not None and endpoint.account_id not in account_ids):
        raise NotFound(f"webhook endpoint {endpoint_id} not found")
    return endpoint


def delete_endpoint(session: Session, principal: Principal, account_ids: set[int] | None, endpoint_id: int) -> None:
    _require_account_writer(principal)
    endpoint = get_endpoint(session, account_ids, endpoint_id)
    endpoint.deleted_at = utcnow()
    oplog.record(session, actor=principal, operation=Operation.DELETE, object_type=WEBHOOK, object_id=endpoint.id,
                 object_name=endpoint.url, account_id=endpoint.account_id, before=_endpoint_snapshot(endpoint))
    # Nothing more goes to a deleted endpoint.
    session.execute(update(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id,
                                                  WebhookDelivery.status == "pending").values(status="failed"))


def deliveries(session: Session, endpoint: WebhookEndpoint, *, limit: int = 50
               ) -> list[tuple[WebhookDelivery, list[WebhookAttempt]]]:
    rows = list(session.scalars(select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id)
                                .order_by(WebhookDelivery.id.desc()).limit(limit)))
    attempts: dict[int, list[WebhookAttempt]] = {r.id: [] for r in rows}
    if rows:
        for attempt in session.scalars(select(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(attempts))
                                       .order_by(WebhookAttempt.id)):
            attempts[attempt.delivery_id].append(attempt)
    return [(r, attempts[r.id]) for r in rows]
