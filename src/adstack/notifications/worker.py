"""The notification worker: a background thread that sends queued e-mail and webhook deliveries, and now and
then looks for conditions that become events (low balance, a spent budget, a credited top-up).

Each item is claimed with a conditional UPDATE (its attempt count must not have moved), committed, and only
then sent: no database transaction is held across a network call, and two processes never send the same try.
A claim is a lease (`next_attempt_at`) long enough for the whole batch; before each send the worker renews the
item's lease, again only while the attempt count is the one it claimed, and its outcome is written under the same
condition: an item whose lease ran out and that another worker claimed is left to that worker.
Failures are retried with exponential backoff (`webhook_retry_base_s`, doubling, capped at
`webhook_retry_max_s`) until `webhook_max_attempts`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from adstack.core import mail
from adstack.core.background import Periodic
from adstack.core.outbound import FetchFailed, OutboundClient, OutboundPolicy
from adstack.core.security import Encryptor
from adstack.core.settings import Settings
from adstack.core.timeutil import as_utc, utcnow
from adstack.notifications import conditions
from adstack.notifications.gate import WriteGate
from adstack.notifications.models import (
    DeliveryStatus,
    QueuedMail,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from adstack.notifications.service import on_commit_wake
from adstack.notifications.signing import SIGNATURE_HEADER, signature_header

log = logging.getLogger("adstack.notifications")

BATCH = 50
LEASE_SLACK_S = 5.0  # time around a send: reading the row, committing, the write gate
GATE_MAX_WAIT_S = 2.0  # under a steady stream of requests the worker writes anyway after this long
RESPONSE_MAX_BYTES = 64 * 1024  # a receiver's answer is read and dropped; bounded all the same
FORBIDDEN_DESTINATION = ("the platform does not send to this address (a private, loopback or other reserved "
                         "network); not retried")


def backoff_seconds(settings: Settings, attempts: int) -> float:
    """Delay before the next try after `attempts` failed ones: base, 2x base, 4x base, ... capped."""
    return float(min(settings.webhook_retry_max_s, settings.webhook_retry_base_s * 2 ** max(0, attempts - 1)))


class NotificationWorker:
    def __init__(self, session_factory: sessionmaker[Session], settings: Settings, *,
                 client_factory: Callable[[], OutboundClient] | None = None, gate: WriteGate | None = None):
        self.session_factory = session_factory
        self.settings = settings
        self.gate = gate
        self.encryptor = Encryptor(settings.resolved_secret_key)
        self.client_factory = client_factory or self._guarded_client
        self._last_scan = 0.0
        # Everything is in the tables: a failed pass is tried again on the next.
        self._periodic = Periodic("adstack-notifications", self._pass, interval=self._next_wait, first=0.0, log=log,
                                  failure="delivering notifications failed; will retry")

    def _guarded_client(self) -> OutboundClient:
        # No redirects: a receiver answers where it was registered, or the try fails.
        timeout = self.settings.webhook_timeout_s
        policy = OutboundPolicy.from_settings(self.settings, purpose="webhooks", connect_timeout_s=timeout,
                                              read_timeout_s=timeout, total_timeout_s=timeout, max_redirects=0)
        return OutboundClient(policy, field="url")

    def notify(self) -> None:
        self._periodic.wake()

    @contextmanager
    def _writing(self) -> Iterator[None]:
        if self.gate is None:
            yield
        else:
            with self.gate.writing(GATE_MAX_WAIT_S):
                yield

    # ---------- one pass ----------

    def drain(self, *, scan: bool = True) -> int:
        """Everything due now, in this thread: returns how many sends were tried."""
        if scan:
            self.scan()
        tried = 0
        while True:
            sent = self.send_due_mail() + self.send_due_webhooks()
            tried += sent
            if sent < BATCH:
                return tried

    def scan(self, now: datetime | None = None) -> int:
        self._last_scan = time.monotonic()
        with self._writing(), self.session_factory() as session:
            found = conditions.detect(session, now=now or utcnow())
            session.commit()
        return found

    def _send_seconds(self, model: type[QueuedMail] | type[WebhookDelivery]) -> float:
        """The longest one send takes: a webhook's exchange is bounded whole by webhook_timeout_s; SMTP's timeout
        bounds each step of a conversation of a few (connect, EHLO, STARTTLS, login, MAIL, RCPT, DATA, QUIT)."""
        if model is WebhookDelivery:
            return self.settings.webhook_timeout_s + LEASE_SLACK_S
        return self.settings.smtp_timeout_s * 8 + LEASE_SLACK_S

    def _claim(self, session: Session, model: type[QueuedMail] | type[WebhookDelivery], now: datetime
               ) -> list[tuple[int, int]]:
        with self._writing():
            return self._claim_due(session, model, now)

    def _claim_due(self, session: Session, model: type[QueuedMail] | type[WebhookDelivery], now: datetime
                   ) -> list[tuple[int, int]]:
        """The items claimed, each with the attempt count that is its claim."""
        due = list(session.execute(select(model.id, model.attempts).where(
            model.status == DeliveryStatus.PENDING, model.next_attempt_at <= now)
            .order_by(model.next_attempt_at, model.id).limit(BATCH)))
        # The batch is sent one item after another: the lease covers them all.
        lease = now + timedelta(seconds=self._send_seconds(model) * max(1, len(due)))
        claimed = []
        for row_id, attempts in due:
            result = session.execute(update(model).where(model.id == row_id, model.attempts == attempts,
                                                         model.status == DeliveryStatus.PENDING)
                                     .values(attempts=attempts + 1, next_attempt_at=lease))
            if result.rowcount:  # type: ignore[attr-defined]
                claimed.append((row_id, attempts + 1))
        session.commit()
        return claimed

    def _held(self, model: type[QueuedMail] | type[WebhookDelivery], row_id: int, attempts: int) -> Any:
        return (model.id == row_id) & (model.attempts == attempts) & (model.status == DeliveryStatus.PENDING)

    def _renew(self, session: Session, model: type[QueuedMail] | type[WebhookDelivery], row_id: int,
               attempts: int) -> bool:
        """Extend the item's lease for one send; False when the claim is no longer this worker's."""
        lease = utcnow() + timedelta(seconds=self._send_seconds(model))
        with self._writing():
            result = session.execute(update(model).where(self._held(model, row_id, attempts))
                                     .values(next_attempt_at=lease))
            session.commit()
        if not result.rowcount:  # type: ignore[attr-defined]
            log.info("%s %s: claim %s taken over by another worker; not sent", model.__tablename__, row_id, attempts)
            return False
        return True

    def _finish(self, session: Session, model: type[QueuedMail] | type[WebhookDelivery], row_id: int,
                attempts: int, **values: Any) -> None:
        """Write a send's outcome, only while the claim is still this worker's (with what else is pending)."""
        with self._writing():
            result = session.execute(update(model).where(self._held(model, row_id, attempts)).values(**values))
            session.commit()
        if not result.rowcount:  # type: ignore[attr-defined]
            log.warning("%s %s: claim %s lost during the send; its outcome is not written", model.__tablename__,
                        row_id, attempts)

    def _after_failure(self, attempts: int, now: datetime) -> tuple[str, datetime]:
        if attempts >= self.settings.webhook_max_attempts:
            return DeliveryStatus.FAILED, now
        return DeliveryStatus.PENDING, now + timedelta(seconds=backoff_seconds(self.settings, attempts))

    def send_due_mail(self) -> int:
        with self.session_factory() as session:
            claimed = self._claim(session, QueuedMail, utcnow())
            for mail_id, attempts in claimed:
                if not self._renew(session, QueuedMail, mail_id, attempts):
                    continue
                item = session.get(QueuedMail, mail_id)
                assert item is not None
                recipient, subject, body = item.recipient, item.subject, item.body
                session.commit()  # nothing held open while the SMTP server answers
                try:
                    mail.deliver(self.settings, to=recipient, subject=subject, body=body)
                except mail.MailNotSent as exc:
                    status, next_attempt_at = self._after_failure(attempts, utcnow())
                    log.warning("mail %s not sent (try %s): %s", mail_id, attempts, exc)
                    self._finish(session, QueuedMail, mail_id, attempts, status=status,
                                 next_attempt_at=next_attempt_at, last_error=str(exc)[:500])
                else:
                    self._finish(session, QueuedMail, mail_id, attempts, status=DeliveryStatus.DELIVERED,
                                 sent_at=utcnow(), last_error="")
        return len(claimed)

    def send_due_webhooks(self) -> int:
        with self.session_factory() as session:
            claimed = self._claim(session, WebhookDelivery, utcnow())
            if not claimed:
                return 0
            with self.client_factory() as client:
                for delivery_id, attempts in claimed:
                    if self._renew(session, WebhookDelivery, delivery_id, attempts):
                        self._send_one(session, client, delivery_id, attempts)
        return len(claimed)

    def _send_one(self, session: Session, client: OutboundClient, delivery_id: int, attempts: int) -> None:
        delivery = session.get(WebhookDelivery, delivery_id)
        assert delivery is not None
        endpoint = session.get(WebhookEndpoint, delivery.endpoint_id)
        if endpoint is None or endpoint.deleted_at is not None:
            self._finish(session, WebhookDelivery, delivery_id, attempts, status=DeliveryStatus.FAILED)
            return
        try:
            secret = self.encryptor.decrypt(endpoint.secret_ciphertext)
        except ValueError:  # the server's secret key changed since the endpoint was made: it cannot sign
            session.add(WebhookAttempt(delivery_id=delivery_id, attempted_at=utcnow(),
                                       error="the endpoint's secret cannot be read; delete it and add it again"))
            self._finish(session, WebhookDelivery, delivery_id, attempts, status=DeliveryStatus.FAILED)
            return
        url, body, event_type = endpoint.url, delivery.body.encode(), delivery.event_type
        session.commit()
        started = time.perf_counter()
        status_code: int | None = None
        error = ""
        forbidden = False
        try:
            answer = client.post(url, content=body, max_bytes=RESPONSE_MAX_BYTES, headers={
                "Content-Type": "application/json", SIGNATURE_HEADER: signature_header(secret, body),
                "Adstack-Event-Type": event_type, "Adstack-Delivery": str(delivery_id)})
            status_code = answer.status_code
            if not 200 <= status_code < 300:
                error = f"the receiver answered {status_code}"
        except FetchFailed as exc:
            error = exc.message[:300]
            if exc.forbidden:
                # The platform's outbound policy refuses the destination itself: every retry would be refused too.
                forbidden = True
                error = FORBIDDEN_DESTINATION
        now = utcnow()
        session.add(WebhookAttempt(delivery_id=delivery_id, attempted_at=now, status_code=status_code, error=error,
                                   duration_ms=int((time.perf_counter() - started) * 1000)))
        if forbidden:
            self._finish(session, WebhookDelivery, delivery_id, attempts, status=DeliveryStatus.FAILED)
        elif error:
            status, next_attempt_at = self._after_failure(attempts, now)
            self._finish(session, WebhookDelivery, delivery_id, attempts, status=status,
                         next_attempt_at=next_attempt_at)
        else:
            self._finish(session, WebhookDelivery, delivery_id, attempts, status=DeliveryStatus.DELIVERED,
                         delivered_at=now)

    # ---------- the thread ----------

    def _pass(self) -> None:
        if time.monotonic() - self._last_scan >= self.settings.notification_scan_interval_s:
            self.scan()
        self.drain(scan=False)

    def _next_wait(self) -> float:
        """Sleep until the next retry falls due, but never longer than the polling interval."""
        wait = self.settings.notification_interval_s
        try:
            with self.session_factory() as session:
                soonest = [session.scalar(select(model.next_attempt_at).where(model.status == DeliveryStatus.PENDING)
                                          .order_by(model.next_attempt_at).limit(1))
                           for model in (QueuedMail, WebhookDelivery)]
        except Exception:
            return wait
        for moment in soonest:
            if moment is not None:
                wait = min(wait, max(0.01, (as_utc(moment) - utcnow()).total_seconds()))
        return wait

    def start(self) -> None:
        if self._periodic.is_alive():
            return
        on_commit_wake(self)
        self._periodic.start()

    def stop(self) -> None:
        self._periodic.stop()
