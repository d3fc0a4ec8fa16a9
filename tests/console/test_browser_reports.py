"""In the browser: the default day view of data analysis draws its chart, with the table's figures."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session

from adstack.accounts import service as accounts
from adstack.accounts.models import RegistrationIn
from adstack.core.settings import Settings
from adstack.core.timeutil import utcnow
from adstack.events.models import Event, EventType
from adstack.events.service import get_event_store

pytestmark = pytest.mark.browser


def test_the_day_view_draws_its_chart(playwright_browser: Any, live_server: str, session: Session, settings: Settings):
    email = "charts@example.com"
    _user, account, _token = accounts.register(
        session,
        RegistrationIn.model_validate(
            {
                "email": email,
                "password": "charts password",
                "company_name": "Charts Ltd",
                "contact_name": "Ops",
                "contact_email": email,
                "country": "ID",
                "settlement_entity": "Xiaomi Singapore",
                "currency": "USD",
                "accept_agreement": True,
            }
        ),
        ttl=timedelta(hours=1),
    )
    session.commit()
    at = utcnow() - timedelta(minutes=5)
    impressions = 17
    store = get_event_store(settings)
    store.append(
        [
            Event(
                event_id=uuid.uuid4().hex,
                event_type=EventType.IMPRESSION,
                occurred_at=at,
                account_id=account.id,
                campaign_id=1,
                country="SG",
            )
            for _ in range(impressions)
        ]
    )
    store.flush()

    context = playwright_browser.new_context(base_url=live_server, locale="en-US")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto("/console/sign-in")
    page.fill("#email", email)
    page.fill("#password", "charts password")
    page.click("button[type=submit]")
    page.wait_for_url("**/console/")
    page.goto("/console/reports")
    page.wait_for_function("() => document.getElementById('report-chart')?._chart !== undefined")
    drawn = page.evaluate("""() => {
      const canvas = document.getElementById('report-chart');
      const chart = canvas._chart;
      return {width: canvas.width, type: chart.config.type, points: chart.data.labels.length,
              plotted: chart.data.datasets[0].data.reduce((a, b) => a + (b || 0), 0)};
    }""")
    total = page.locator("#report-totals td[data-column='impressions']").inner_text()
    context.close()
    assert drawn["width"] > 0 and drawn["type"] == "line" and drawn["points"] == 7
    assert drawn["plotted"] == int(total.replace(",", "")) == impressions
    assert not errors, errors
