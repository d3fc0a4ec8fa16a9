"""The notification worker against slow receivers: one try is bounded by webhook_timeout_s, and a slow batch
never lets another worker send the same try again."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy.orm import sessionmaker

from adstack.core.outbound import FetchFailed
from adstack.core.settings import Settings
from adstack.notifications.worker import NotificationWorker
from tests.core.loopback_http import TrickleServer


def test_one_webhook_post_is_bounded_by_the_webhook_timeout(settings: Settings) -> None:
    live = settings.model_copy(update={"webhook_timeout_s": 1.0, "outbound_allowed_networks": "127.0.0.0/8"})
    worker = NotificationWorker(sessionmaker(), live)
    with TrickleServer(gap=0.2) as slow, worker.client_factory() as client:
        threading.Timer(6, slow.close).start()  # a receiver that gives up by itself, later
        started = time.monotonic()
        with pytest.raises(FetchFailed):
            client.post(slow.url("/hook"), content=b"{}", max_bytes=65536)
        assert time.monotonic() - started < 2.5
