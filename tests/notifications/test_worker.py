"""The notification worker against slow receivers: one try is bounded by webhook_timeout_s, and a slow batch
never lets another worker send the same try again."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from adstack.core.db import make_session_factory
from adstack.core.outbound import FetchFailed
from adstack.core.security import Encryptor
from adstack.core.settings import Settings
from adstack.core.timeutil import utcnow
from adstack.notifications.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from adstack.notifications.worker import NotificationWorker
from tests.core.loopback_http import TrickleServer
from tests.notifications.test_delivery import Receiver


def test_one_webhook_post_is_bounded_by_the_webhook_timeout(settings: Settings) -> None:
    live = settings.model_copy(update={"webhook_timeout_s": 1.0, "webhook_allowed_networks": "127.0.0.0/8"})
    worker = NotificationWorker(sessionmaker(), live)
    with TrickleServer(gap=0.2) as slow, worker.client_factory() as client:
        threading.Timer(6, slow.close).start()  # a receiver that gives up by itself, later
        started = time.monotonic()
        with pytest.raises(FetchFailed):
            client.post(slow.url("/hook"), content=b"{}", max_bytes=65536)
        assert time.monotonic() - started < 2.5


def _deliveries(session: Session, settings: Settings, url: str, count: int, first_event: int) -> list[int]:
    endpoint = WebhookEndpoint(account_id=1, url=url, secret_ciphertext=Encryptor(settings.resolved_secret_key)
                               .encrypt("whsec_test"), event_types=[])
    session.add(endpoint)
    session.flush()
    due = utcnow() - timedelta(seconds=1)
    rows = [WebhookDelivery(endpoint_id=endpoint.id, account_id=1, event_id=first_event + n, event_type="test",
                            body=json.dumps({"event": first_event + n}), next_attempt_at=due) for n in range(count)]
    session.add_all(rows)
    session.commit()
    return [row.id for row in rows]


def test_a_slow_batch_is_not_sent_twice_by_another_worker(settings: Settings, session: Session, db: Engine) -> None:
    """Worker A's batch starts with slow receivers; worker B, in another process, drains while A is still on
    them. Each delivery is sent once."""
    live = settings.model_copy(update={"webhook_timeout_s": 0.5, "smtp_timeout_s": 0.2,
                                       "webhook_allowed_networks": "127.0.0.0/8"})
    good = Receiver(failures=0)
    good.secret = "whsec_test"
    try:
        with TrickleServer(gap=0.1) as slow:
            _deliveries(session, live, slow.url("/hook"), 6, 1)
            _deliveries(session, live, good.url, 3, 100)
            factory = make_session_factory(db)
            a, b = NotificationWorker(factory, live), NotificationWorker(factory, live)
            first = threading.Thread(target=a.drain, kwargs={"scan": False})
            first.start()
            time.sleep(2.5)  # A has spent 2.5 s on the slow receiver, and has 0.5 s more to go
            b.drain(scan=False)
            first.join(30)
        bodies = [body for _, _, body, _ in good.received]
        assert sorted(bodies) == sorted({body for body in bodies}) and len(bodies) == 3
        statuses = session.scalars(select(WebhookDelivery.status).order_by(WebhookDelivery.id)).all()
        assert statuses[-3:] == [DeliveryStatus.DELIVERED] * 3
    finally:
        good.server.shutdown()
        good.server.server_close()
