"""Sorting the ad list by a metric ranks every matching row, however many there are: the rows with the highest
figures can be the newest of thousands."""

from __future__ import annotations

import html as htmllib
import re
import time
import uuid
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from adstack.campaigns.models import Campaign
from adstack.console.pages.ads import PAGE_SIZES
from adstack.core.settings import Settings
from adstack.core.timeutil import utcnow
from adstack.events.models import Event, EventType
from adstack.events.service import get_event_store
from tests.campaigns.helpers import campaign
from tests.console.support import sign_in
from tests.support import Api

# More campaigns than the list ever loaded at once before it ranked every row.
ROWS = 2_600


def _names(page: str) -> list[str]:
    return re.findall(r'id="row-campaigns-\d+"[\s\S]*?data-name>([^<]*)</a>', page)


def test_metric_sort_ranks_every_row_of_a_long_list(
    client: TestClient, api: Api, session: Session, settings: Settings
) -> None:
    adv = api.approved_account(email="metric-scale@example.com")
    account_id = adv.account_id or 0
    first = campaign(api, adv, name="Bulk 0")
    session.execute(
        insert(Campaign),
        [
            {
                "account_id": account_id,
                "objective": "performance",
                "name": f"Bulk {n}",
                "promotion_type": "app_download",
                "package_name": "com.example.game",
                "iab_categories": [],
                "status": "enabled",
            }
            for n in range(1, ROWS)
        ],
    )
    session.commit()
    ids = sorted(session.scalars(select(Campaign.id).where(Campaign.account_id == account_id)))
    assert len(ids) == ROWS and ids[0] == first["id"]
    # Clicks on a few campaigns spread over the list; the most clicked ones are the newest.
    clicks = {ids[-1]: 7, ids[-5]: 5, ids[len(ids) // 2]: 4, ids[3]: 2, ids[0]: 1}
    now = utcnow()
    store = get_event_store(settings)
    store.append(
        [
            Event(
                event_id=uuid.uuid4().hex,
                event_type=EventType.CLICK,
                occurred_at=now - timedelta(minutes=5),
                account_id=account_id,
                campaign_id=campaign_id,
                ad_group_id=1,
                creative_id=1,
                placement_type="banner",
                country="ID",
            )
            for campaign_id, count in clicks.items()
            for _ in range(count)
        ]
    )
    store.flush()
    name_of = {campaign_id: f"Bulk {ids.index(campaign_id)}" for campaign_id in clicks}
    ranked = [name_of[c] for c in sorted(clicks, key=lambda c: clicks[c], reverse=True)]

    sign_in(client, "metric-scale@example.com", "correct horse battery")
    started = time.monotonic()
    page = client.get(
        "/console/ads/campaigns",
        params=[("cols", "clicks"), ("range", "7d"), ("sort", "clicks"), ("dir", "desc"), ("size", "20")],
    )
    elapsed = time.monotonic() - started
    assert page.status_code == 200
    assert _names(page.text)[: len(ranked)] == ranked
    assert f"{ROWS} items" in htmllib.unescape(page.text)  # the total still counts every row
    assert elapsed < 20, elapsed

    # Ascending: the rows without clicks first (by id), the most clicked one on the very last page.
    size = max(PAGE_SIZES)
    last_page = -(-ROWS // size)
    tail = client.get(
        "/console/ads/campaigns",
        params=[("cols", "clicks"), ("sort", "clicks"), ("dir", "asc"), ("size", str(size)), ("page", str(last_page))],
    )
    assert _names(tail.text)[-len(ranked) :] == list(reversed(ranked))
    head = client.get(
        "/console/ads/campaigns", params=[("cols", "clicks"), ("sort", "clicks"), ("dir", "asc"), ("size", str(size))]
    )
    without_clicks = [f"Bulk {n}" for n in range(ROWS) if ids[n] not in clicks]
    assert _names(head.text) == without_clicks[:size]
