"""Data analysis, media center and overview pages over HTTP, fed by events written to the event store."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, timedelta
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from adstack.accounts import auth, users
from adstack.accounts import service as accounts
from adstack.accounts.models import Account
from adstack.core.settings import Settings
from adstack.core.timeutil import utcnow
from adstack.events.models import Event, EventType
from adstack.events.service import get_event_store
from tests.console.support import csrf_from, register, sign_in


def _advertiser_with_events(client: TestClient, session: Session, settings: Settings) -> int:
    register(client, 31)
    account_id = session.scalar(select(Account.id))
    assert account_id is not None
    admin = auth.principal_for(users.create_admin(session, email="r31@example.org", password="admin-password"))
    accounts.review_account(session, admin, account_id, approve=True)
    session.commit()
    # Five minutes ago, but today in the account's time zone: just after its midnight, "spend today" starts afresh.
    zone = ZoneInfo(session.get_one(Account, account_id).time_zone)
    local_midnight = utcnow().astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    now = max(utcnow() - timedelta(minutes=5), local_midnight.astimezone(UTC))
    events = []
    for i in range(40):
        events.append(
            Event(
                event_id=uuid.uuid4().hex,
                event_type=EventType.IMPRESSION,
                occurred_at=now,
                account_id=account_id,
                campaign_id=7,
                ad_group_id=70,
                creative_id=700,
                ad_space_id=5,
                publisher_id=3,
                placement_type="interstitial",
                country="SG" if i % 4 else "ID",
            )
        )
    for _ in range(8):
        events.append(
            Event(
                event_id=uuid.uuid4().hex,
                event_type=EventType.CLICK,
                occurred_at=now,
                account_id=account_id,
                campaign_id=7,
                ad_group_id=70,
                creative_id=700,
                ad_space_id=5,
                publisher_id=3,
                placement_type="interstitial",
                country="SG",
            )
        )
        events.append(
            Event(
                event_id=uuid.uuid4().hex,
                event_type=EventType.CHARGE,
                occurred_at=now,
                account_id=account_id,
                campaign_id=7,
                ad_group_id=70,
                creative_id=700,
                ad_space_id=5,
                publisher_id=3,
                placement_type="interstitial",
                country="SG",
                cost_micros=300_000,
            )
        )
    store = get_event_store(settings)
    store.append(events)
    store.flush()
    return account_id


def test_report_builder_table_chart_and_downloads(client: TestClient, session: Session, settings: Settings):
    _advertiser_with_events(client, session, settings)
    page = client.get(
        "/console/reports?granularity=total&dimensions=country&metrics=impressions&metrics=clicks"
        "&metrics=cost_micros&sort=-impressions"
    )
    assert page.status_code == 200, page.text[-2000:]
    assert 'id="report-table"' in page.text and 'data-chart="' in page.text
    totals = page.text.split('id="report-totals"')[1].split("</tr>")[0]
    assert "40" in totals and "8" in totals and "2.40" in totals
    download = client.get(
        "/console/reports/download?format=csv&granularity=total&dimensions=country&metrics=impressions&metrics=clicks"
    )
    assert download.status_code == 200 and download.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(download.text)))
    header = rows[0]
    impressions = next(i for i, name in enumerate(header) if "mpression" in name)
    by_country = {r[0]: r for r in rows[1:]}
    assert by_country["SG"][impressions] == "30" and by_country["ID"][impressions] == "10"
    by_campaign = client.get("/console/reports?granularity=day&dimensions=campaign&dimensions=ad_group")
    assert by_campaign.status_code == 200 and 'id="report-totals"' in by_campaign.text
    xlsx = client.get("/console/reports/download?format=xlsx&granularity=day")
    assert xlsx.status_code == 200 and xlsx.content[:2] == b"PK"


def test_overview_and_media_center_show_the_same_traffic(client: TestClient, session: Session, settings: Settings):
    _advertiser_with_events(client, session, settings)
    overview = client.get("/console/")
    assert 'id="tile-spend"' in overview.text and "$2.40" in overview.text
    assert overview.text.count("data-chart=") == 4
    media = client.get("/console/media-center?group_by=publisher")
    assert media.status_code == 200 and 'id="media-center"' in media.text
    listing = client.get("/console/ads/campaigns?cols=impressions&cols=clicks")
    assert listing.status_code == 200


def test_long_ranges_run_as_report_jobs(client: TestClient, session: Session, settings: Settings):
    _advertiser_with_events(client, session, settings)
    page = client.get("/console/reports?start_date=2025-01-01&granularity=day&dimensions=country")
    # The range is refused for running at once (422, with its message), and offered as a background job.
    assert page.status_code == 422 and "Run as a background job" in page.text
    assert "92" in page.text.split('id="report-errors"')[1].split("</div>")[0]
    started = client.post(
        "/console/reports/jobs",
        data={
            "csrf_token": csrf_from(page.text),
            "start_date": "2025-01-01",
            "end_date": (utcnow() + timedelta(days=1)).date().isoformat(),
            "granularity": "total",
            "dimensions": "country",
            "metrics": "impressions",
            "format": "csv",
        },
        follow_redirects=False,
    )
    assert started.status_code == 303  # (ending tomorrow in UTC: today in the account's zone, whatever the hour)
    jobs = client.get("/console/reports/jobs")
    job_id = jobs.text.split('data-job="')[1].split('"')[0]
    assert 'data-job-status="done"' in jobs.text, jobs.text[-1500:]
    download = client.get(f"/console/reports/jobs/{job_id}/download")
    assert download.status_code == 200 and "40" in download.text


def test_media_cost_is_offered_to_platform_staff_and_not_to_advertisers(
    client: TestClient, session: Session, settings: Settings
):
    account_id = _advertiser_with_events(client, session, settings)
    store = get_event_store(settings)
    store.append(
        [
            Event(
                event_id=uuid.uuid4().hex,
                event_type=EventType.IMPRESSION,
                occurred_at=utcnow() - timedelta(minutes=5),
                account_id=account_id,
                campaign_id=7,
                country="SG",
                media_cost_micros=120_000,
            )
            for _ in range(10)
        ]
    )
    store.flush()
    wanted = "/console/reports?granularity=total&metrics=cost_micros&metrics=media_cost_micros"
    mine = client.get("/console/reports")
    assert mine.status_code == 200 and 'value="cost_micros"' in mine.text
    assert 'value="media_cost_micros"' not in mine.text and 'value="media_cost_impressions"' not in mine.text
    asked = client.get(wanted)
    assert asked.status_code == 403 and 'data-column="media_cost_micros"' not in asked.text
    assert 'id="report-errors"' in asked.text

    assert sign_in(client, "r31@example.org", "admin-password").status_code == 303
    staff = client.get(wanted)
    assert staff.status_code == 200, staff.text[-2000:]
    assert 'value="media_cost_micros"' in staff.text and 'data-column="media_cost_micros"' in staff.text
    totals = staff.text.split('id="report-totals"')[1].split("</tr>")[0]
    assert "2.40" in totals and "1.20" in totals  # spend, and what the exchanges charged
