"""Pulls call the partner with no database transaction open, then write in one short transaction."""

from __future__ import annotations

from datetime import date
from typing import Any, ClassVar

import pytest
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import Session

from adstack.connectors import service
from adstack.connectors.base import PulledRow
from adstack.connectors.models import AppBinding, PartnerConnection, PartnerMetricRow
from adstack.core.db import make_session_factory
from adstack.core.security import Encryptor
from adstack.core.settings import Settings
from tests.support import Actor, Api, expect

DAY = date(2024, 5, 1)


def _connection_with_apps(api: Api, *app_tokens: str, owner: Actor | None = None) -> int:
    owner = owner or api.approved_account()
    connection = expect(
        api.client.post(
            "/api/v1/connectors",
            headers=owner.headers,
            json={"name": "Adjust main", "api_token": "adj-token-0123456789"},
        ),
        201,
    )
    for app_token in app_tokens:
        expect(
            api.client.post(
                f"/api/v1/connectors/{connection['id']}/apps", headers=owner.headers, json={"app_token": app_token}
            ),
            201,
        )
    return int(connection["id"])


class RecordingConnector:
    partner: ClassVar[str] = "adjust"
    attempts_made = 1

    def __init__(self, session: Session, during_fetch: Any = None):
        self.session = session
        self.during_fetch = during_fetch
        self.transaction_open: list[bool] = []

    def fetch(self, *, token: str, binding: Any, date_from: date, date_to: date) -> list[PulledRow]:
        self.transaction_open.append(self.session.in_transaction())
        if self.during_fetch is not None:
            self.during_fetch(binding.app_token)
        return [PulledRow(day=DAY, campaign_label="Spring push", country="ID", metrics={"installs": "12"})]


def _pull(session: Session, settings: Settings, connection_id: int, connector: RecordingConnector) -> Any:
    connection = session.get(PartnerConnection, connection_id)
    assert connection is not None
    run = service.pull(
        session,
        connection=connection,
        encryptor=Encryptor(settings.resolved_secret_key),
        connector_factory=lambda partner: connector,
        date_from=DAY,
        date_to=DAY,
    )
    session.commit()
    return run


def test_the_partner_is_called_with_no_transaction_open(api: Api, session: Session, settings: Settings) -> None:
    connection_id = _connection_with_apps(api, "app1", "app2")
    connector = RecordingConnector(session)
    run = _pull(session, settings, connection_id, connector)
    assert connector.transaction_open == [False, False]
    assert (run.status, run.rows, run.attempts) == ("succeeded", 2, 2)
    assert session.scalar(select(func.count()).select_from(PartnerMetricRow)) == 2


def test_a_binding_deleted_while_the_partner_answers_is_not_written(
    api: Api, session: Session, settings: Settings, db: Engine
) -> None:
    connection_id = _connection_with_apps(api, "app1", "gone1")

    def delete_gone(app_token: str) -> None:
        if app_token == "gone1":
            with make_session_factory(db)() as other:
                other.execute(delete(AppBinding).where(AppBinding.app_token == "gone1"))
                other.commit()

    run = _pull(session, settings, connection_id, RecordingConnector(session, delete_gone))
    assert (run.status, run.rows) == ("succeeded", 1)
    stored = session.scalars(select(PartnerMetricRow)).all()
    assert len(stored) == 1 and stored[0].metrics == {"installs": "12"}


@pytest.mark.parametrize(
    ("target", "field"),
    [
        ("binding", "ad_revenue_sources"),
        ("binding", "reattributed"),
        ("binding", "utc_offset"),
        ("binding", "enabled"),
        ("connection", "name"),
        ("connection", "status"),
        ("connection", "api_token"),
    ],
)
def test_null_for_a_field_that_cannot_be_null_is_refused_by_name(
    api: Api, session: Session, target: str, field: str
) -> None:
    owner = api.approved_account()
    connection_id = _connection_with_apps(api, "app1", owner=owner)
    binding = session.scalars(select(AppBinding)).one()
    url = f"/api/v1/connectors/apps/{binding.id}" if target == "binding" else f"/api/v1/connectors/{connection_id}"
    error = expect(api.client.patch(url, headers=owner.headers, json={field: None}), 422)["error"]
    assert [f["field"] for f in error["fields"]] == [field]
    session.expire_all()
    stored = binding if target == "binding" else session.get(PartnerConnection, connection_id)
    assert getattr(session.get(type(stored), stored.id), field if field != "api_token" else "token_hint") is not None


def test_two_partner_rows_of_one_key_add_up_and_their_ratios_are_dropped() -> None:
    from adstack.connectors.base import added_metrics

    merged = added_metrics({"installs": "30", "network_cost": "15.00", "roi": "2.5"},
                           {"installs": "10", "network_cost": "5.50", "roi": "0.1", "clicks": "7"})
    assert merged == {"installs": "40", "network_cost": "20.50", "clicks": "7"}
