"""Retention: what each growing table keeps, pruned in chunks, and what it never removes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from adstack.apps.models import AppCreate
from adstack.attribution.models import Postback, PostbackStatus, RejectedPostback, Touchpoint
from adstack.core.settings import Settings
from adstack.core.timeutil import utcnow
from adstack.retention import service as retention
from adstack.tracking.models import InvalidTraffic, InvalidTrafficOverflow

NOW = utcnow().replace(microsecond=0)


def _touch(n: int, at: datetime, kind: str = "click") -> Touchpoint:
    return Touchpoint(kind=kind, touch_id=f"t{n}", impression_id=f"i{n}", account_id=1, campaign_id=1,
                      ad_group_id=1, creative_id=1, ad_space_id=1, publisher_id=1, bid_type="cpc", price_micros=1,
                      occurred_at=at)


def _postback(n: int, at: datetime, status: PostbackStatus) -> Postback:
    return Postback(app_id=1, partner="adjust", dedupe_key=f"k{n}", method="GET", fields={"n": str(n)},
                    status=status.value, received_at=at)


def _days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def test_each_table_keeps_what_is_within_its_retention(session: Session, settings: Settings) -> None:
    session.add_all([_touch(1, _days_ago(100)), _touch(2, _days_ago(91)), _touch(3, _days_ago(89)),
                     _touch(4, _days_ago(1))])
    session.add_all([_postback(1, _days_ago(200), PostbackStatus.ATTRIBUTED),
                     _postback(2, _days_ago(190), PostbackStatus.DUPLICATE),
                     _postback(3, _days_ago(170), PostbackStatus.ATTRIBUTED)])
    session.add_all([RejectedPostback(reason="bad", message="m", method="GET", received_at=_days_ago(days))
                     for days in (20, 15, 13)])
    session.add_all([InvalidTraffic(event_id=f"e{days}", kind="imp", reason="bot", message="m",
                                    occurred_at=_days_ago(days)) for days in (100, 91, 89)])
    session.add_all([InvalidTrafficOverflow(minute=_days_ago(days), kind="imp", reason="bot", count=5)
                     for days in (95, 10)])
    session.commit()

    pruned = retention.prune(session, settings, now=NOW)

    assert pruned == retention.Pruned(impression_touchpoints=0, touchpoints=2, postbacks=2, rejected_postbacks=2,
                                      invalid_traffic=2, webhook_deliveries=0, mail=0)
    assert session.scalars(select(Touchpoint.touch_id).order_by(Touchpoint.id)).all() == ["t3", "t4"]
    assert session.scalars(select(Postback.dedupe_key)).all() == ["k3"]
    assert len(session.scalars(select(RejectedPostback.id)).all()) == 1
    assert session.scalars(select(InvalidTraffic.event_id)).all() == ["e89"]
    assert len(session.scalars(select(InvalidTrafficOverflow.minute)).all()) == 1
    # Nothing more to remove: a second pass changes nothing.
    assert retention.prune(session, settings, now=NOW) == retention.Pruned(0, 0, 0, 0, 0, 0, 0)


def test_settled_deliveries_and_mail_go_with_their_attempts_and_pending_ones_stay(session: Session,
                                                                                  settings: Settings) -> None:
    from adstack.notifications.models import (
        DeliveryStatus,
        NotificationEvent,
        QueuedMail,
        WebhookAttempt,
        WebhookDelivery,
        WebhookEndpoint,
    )

    assert settings.delivery_retention_days == 90
    endpoint = WebhookEndpoint(account_id=1, url="https://hooks.example.com/adstack", secret_ciphertext="x")
    event = NotificationEvent(key="review:1", public_id="evt_1", account_id=1, event_type="review.approved",
                              created_at=_days_ago(200))
    session.add_all([endpoint, event])
    session.flush()
    plan = [("d1", DeliveryStatus.DELIVERED, 120), ("d2", DeliveryStatus.FAILED, 100),
            ("d3", DeliveryStatus.PENDING, 95), ("d4", DeliveryStatus.DELIVERED, 92),
            ("d5", DeliveryStatus.DELIVERED, 10)]
    for body, status, days in plan:
        delivery = WebhookDelivery(endpoint_id=endpoint.id, account_id=1, event_id=event.id, event_type="x",
                                   body=body, status=status.value, created_at=_days_ago(days))
        session.add(delivery)
        session.flush()
        session.add(WebhookAttempt(delivery_id=delivery.id, attempted_at=_days_ago(days), status_code=200))
    session.add_all([QueuedMail(recipient="ops@example.com", subject=f"m{days}", body="Dear Li Wei", status=status,
                                created_at=_days_ago(days))
                     for status, days in (("sent", 100), ("failed", 95), ("pending", 93), ("sent", 2))])
    session.commit()

    pruned = retention.prune(session, settings, now=NOW)

    # Oldest first, stopping at the first to keep: the pending delivery holds back the settled one after it.
    assert (pruned.webhook_deliveries, pruned.mail) == (2, 2)
    assert session.scalars(select(WebhookDelivery.body).order_by(WebhookDelivery.id)).all() == ["d3", "d4", "d5"]
    assert len(session.scalars(select(WebhookAttempt.id)).all()) == 3  # the removed deliveries' attempts went too
    assert session.scalars(select(QueuedMail.subject).order_by(QueuedMail.id)).all() == ["m93", "m2"]
    # The event stays: the same condition detected again is still recognised as notified.
    assert session.scalars(select(NotificationEvent.key)).all() == ["review:1"]


def test_a_pending_postback_is_never_removed(session: Session, settings: Settings) -> None:
    session.add_all([_postback(1, _days_ago(400), PostbackStatus.PENDING),
                     _postback(2, _days_ago(1), PostbackStatus.PENDING)])
    session.commit()
    assert retention.prune(session, settings, now=NOW).postbacks == 0
    assert session.scalars(select(Postback.dedupe_key).order_by(Postback.id)).all() == ["k1", "k2"]


def test_pruning_goes_in_chunks_until_done(session: Session, settings: Settings,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retention, "CHUNK_ROWS", 3)
    session.add_all([_touch(n, _days_ago(110 - n)) for n in range(10)])  # 110 to 101 days old
    session.add_all([_touch(100, _days_ago(2))])
    session.add_all([InvalidTraffic(event_id=f"e{n}", kind="imp", reason="bot", message="m",
                                    occurred_at=_days_ago(200)) for n in range(8)])
    session.commit()
    pruned = retention.prune(session, settings, now=NOW)
    assert (pruned.touchpoints, pruned.invalid_traffic) == (10, 7)  # the newest row of a table stays
    assert session.scalars(select(Touchpoint.touch_id)).all() == ["t100"]
    assert session.scalars(select(InvalidTraffic.event_id)).all() == ["e7"]


def test_the_oldest_rows_go_first_and_pruning_stops_at_the_first_to_keep(session: Session,
                                                                          settings: Settings) -> None:
    # Touchpoints are pruned from the oldest id on, through the primary key: a row appended late with an old
    # time waits for the rows before it, it is never removed before its time.
    session.add_all([_touch(1, _days_ago(100)), _touch(2, _days_ago(3)), _touch(3, _days_ago(100)),
                     _touch(4, _days_ago(1))])
    session.commit()
    assert retention.prune(session, settings, now=NOW).touchpoints == 1
    assert session.scalars(select(Touchpoint.touch_id).order_by(Touchpoint.id)).all() == ["t2", "t3", "t4"]
    assert retention.prune(session, settings, now=NOW + timedelta(days=100)).touchpoints == 2


def test_an_emptied_table_never_hands_out_its_ids_again(session: Session, settings: Settings) -> None:
    # SQLite numbers a new row after the highest id left: had every old postback gone, the next one would take
    # an id a conversion (and its event and charge ids) still holds.
    session.add_all([_postback(n, _days_ago(300 - n), PostbackStatus.ATTRIBUTED) for n in range(5)])
    session.commit()
    highest = max(session.scalars(select(Postback.id)))
    assert retention.prune(session, settings, now=NOW).postbacks == 4
    session.add(_postback(99, NOW, PostbackStatus.PENDING))
    session.commit()
    assert session.scalar(select(Postback.id).where(Postback.dedupe_key == "k99")) > highest


def test_a_stopping_worker_stops_between_chunks(session: Session, settings: Settings,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retention, "CHUNK_ROWS", 2)
    session.add_all([_impression(n, _days_ago(120)) for n in range(7)] + [_touch(100, NOW)])
    session.commit()
    chunks: list[int] = []

    def halt_after_two() -> bool:
        chunks.append(1)
        return len(chunks) > 2

    pruned = retention.prune(session, settings, now=NOW, halt=halt_after_two)
    assert (pruned.impression_touchpoints, pruned.touchpoints) == (4, 0)


def test_the_worker_prunes_with_its_own_sessions(session: Session, settings: Settings) -> None:
    from adstack.core.db import make_session_factory

    session.add_all([_touch(1, _days_ago(100)), _touch(2, NOW)])
    session.commit()
    worker = retention.RetentionWorker(make_session_factory(session.get_bind()), settings)  # type: ignore[arg-type]
    assert worker.run_once().touchpoints == 1
    assert worker.last is not None and worker.last.touchpoints == 1
    session.expire_all()
    assert session.scalars(select(Touchpoint.touch_id)).all() == ["t2"]


def _impression(n: int, at: datetime) -> Touchpoint:
    return _touch(n, at, kind="impression")


def test_impressions_go_before_the_clicks_of_their_age(session: Session, settings: Settings) -> None:
    assert (settings.impression_touchpoint_retention_days, settings.touchpoint_retention_days) == (30, 90)
    session.add_all([_impression(1, _days_ago(60)), _touch(2, _days_ago(60)), _impression(3, _days_ago(35)),
                     _touch(4, _days_ago(35)), _impression(5, _days_ago(10)), _touch(6, _days_ago(1))])
    session.commit()

    pruned = retention.prune(session, settings, now=NOW)

    assert (pruned.impression_touchpoints, pruned.touchpoints) == (2, 0)
    assert session.scalars(select(Touchpoint.touch_id).order_by(Touchpoint.id)).all() == ["t2", "t4", "t5", "t6"]
    assert retention.prune(session, settings, now=NOW) == retention.Pruned(0, 0, 0, 0, 0, 0, 0)
    # The walk goes on from where it stopped, past the clicks it left.
    assert retention.prune(session, settings, now=NOW + timedelta(days=25)).impression_touchpoints == 1
    later = retention.prune(session, settings, now=NOW + timedelta(days=31))
    assert (later.impression_touchpoints, later.touchpoints) == (0, 1)
    assert session.scalars(select(Touchpoint.touch_id).order_by(Touchpoint.id)).all() == ["t4", "t6"]


def test_the_impressions_walk_resumes_after_the_last_row_it_passed(session: Session, settings: Settings,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retention, "CHUNK_ROWS", 2)
    session.add_all([_touch(n, _days_ago(50)) for n in range(4)] + [_impression(n, _days_ago(40))
                                                                     for n in range(10, 14)] + [_touch(99, NOW)])
    session.commit()
    calls: list[int] = []
    # Stopped after its first chunk of two clicks, the next run starts after them.
    assert retention.prune(session, settings, now=NOW,
                           halt=lambda: calls.append(1) is None and len(calls) > 1).impression_touchpoints == 0
    assert retention.prune(session, settings, now=NOW).impression_touchpoints == 4
    # An old impression that appears below the place reached (an id handed out earlier, committed late) is left to
    # the clicks' retention: the walk does not go back.
    first = min(session.scalars(select(Touchpoint.id)))
    session.add(Touchpoint(id=first - 1, **_fields(_impression(50, _days_ago(40)))))
    session.commit()
    assert retention.prune(session, settings, now=NOW).impression_touchpoints == 0
    assert retention.prune(session, settings, now=NOW + timedelta(days=51)).touchpoints == 5


def test_a_table_restored_from_before_the_cursor_is_walked_again(session: Session, settings: Settings) -> None:
    session.add_all([_impression(n, _days_ago(40)) for n in range(5)] + [_touch(9, NOW)])
    session.commit()
    assert retention.prune(session, settings, now=NOW).impression_touchpoints == 5
    # A restore of an older backup: its highest id is below the place the walk had reached.
    session.query(Touchpoint).delete()
    session.add_all([Touchpoint(id=n + 1, **_fields(_impression(n, _days_ago(40)))) for n in range(2)]
                    + [Touchpoint(id=3, **_fields(_touch(9, NOW)))])
    session.commit()
    assert retention.prune(session, settings, now=NOW).impression_touchpoints == 2


def test_impressions_outlive_the_longest_view_through_window(settings: Settings) -> None:
    window = AppCreate.model_fields["view_through_hours"].metadata
    window_cap_hours = next(m.le for m in window if getattr(m, "le", None) is not None)
    minimum = next(m.ge for m in Settings.model_fields["impression_touchpoint_retention_days"].metadata
                   if getattr(m, "ge", None) is not None)
    assert minimum * 24 > window_cap_hours
    with pytest.raises(ValidationError, match="impression_touchpoint_retention_days"):
        Settings(**{**settings.model_dump(), "impression_touchpoint_retention_days": window_cap_hours // 24})
    with pytest.raises(ValidationError, match=r"impression_touchpoint_retention_days \(91\) must be at most"):
        Settings(**{**settings.model_dump(), "impression_touchpoint_retention_days": 91})


def test_touchpoints_outlive_the_longest_click_lookback(settings: Settings) -> None:
    longest = AppCreate.model_fields["click_lookback_days"].metadata
    lookback_cap = next(m.le for m in longest if getattr(m, "le", None) is not None)
    minimum = next(m.ge for m in Settings.model_fields["touchpoint_retention_days"].metadata
                   if getattr(m, "ge", None) is not None)
    assert minimum > lookback_cap
    with pytest.raises(ValidationError, match="touchpoint_retention_days"):
        Settings(**{**settings.model_dump(), "touchpoint_retention_days": lookback_cap})


def test_adstack_prune_removes_once_from_the_command_line(tmp_path: Path) -> None:
    from adstack.core.bootstrap import migrate
    from adstack.core.db import make_engine, make_session_factory

    data_settings = Settings(data_dir=tmp_path, secret_key="prune-test-secret")
    migrate(data_settings)
    engine = make_engine(data_settings.resolved_database_url)
    with make_session_factory(engine)() as session:
        session.add_all([_touch(1, _days_ago(100)), _touch(2, _days_ago(2))])
        session.commit()
    done = subprocess.run([sys.executable, "-m", "adstack.cli", "prune", "--data-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "ADSTACK_SECRET_KEY": "prune-test-secret", "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    assert "touchpoints: 1 removed" in done.stdout
    with make_session_factory(engine)() as session:
        assert session.scalars(select(Touchpoint.touch_id)).all() == ["t2"]
    engine.dispose()


def test_a_row_committed_late_below_the_ids_read_is_not_removed_unread(session: Session,
                                                                       settings: Settings) -> None:
    # A PostgreSQL sequence hands out ids in one order and transactions commit in another: a young row may appear
    # with an id below the old ones the pruning read. It lands here between the read and the delete.
    from contextlib import contextmanager

    from adstack.core.db import make_session_factory

    late = make_session_factory(session.get_bind())  # type: ignore[arg-type]
    session.add_all([Touchpoint(id=10, **_fields(_touch(1, _days_ago(120)))),
                     Touchpoint(id=20, **_fields(_touch(2, _days_ago(120)))),
                     Touchpoint(id=30, **_fields(_touch(3, NOW)))])
    session.commit()
    turns: list[bool] = []

    @contextmanager
    def young_row_lands() -> Iterator[None]:
        turns.append(True)
        if len(turns) == 2:  # the impressions' walk takes the first turn (it passes these clicks), then this walk
            with late() as other:
                other.add(Touchpoint(id=15, **_fields(_touch(4, NOW))))
                other.commit()
        yield

    assert retention.prune(session, settings, now=NOW, turn=young_row_lands).touchpoints == 2
    assert session.scalars(select(Touchpoint.id).order_by(Touchpoint.id)).all() == [15, 30]


def _fields(touch: Touchpoint) -> dict[str, object]:
    return {c.key: getattr(touch, c.key) for c in Touchpoint.__table__.columns if c.key != "id"}
