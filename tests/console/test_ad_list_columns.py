"""The ad list's custom columns: video plays, quartiles and each of the 22 in-app events, from the same event data
the reports read. The expected figures are recomputed here from the raw events the test writes."""

from __future__ import annotations

import random
import re
import uuid
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from adstack.core.settings import Settings
from adstack.core.timeutil import utcnow
from adstack.core.vocabulary import IN_APP_EVENTS
from adstack.events.models import Event, EventType
from adstack.events.service import get_event_store
from tests.campaigns.helpers import ad_space, approved_ad_group, campaign, creative, publisher
from tests.console.support import sign_in
from tests.support import Api

VIDEO_COLUMNS = {
    "video_starts": EventType.VIDEO_START,
    "video_first_quartiles": EventType.VIDEO_FIRST_QUARTILE,
    "video_midpoints": EventType.VIDEO_MIDPOINT,
    "video_third_quartiles": EventType.VIDEO_THIRD_QUARTILE,
    "video_completes": EventType.VIDEO_COMPLETE,
}


def _cell(html: str, level: str, row_id: int, column: str) -> str:
    row = html.split(f'id="row-{level}-{row_id}"', 1)[1].split("</tr>", 1)[0]
    match = re.search(rf'data-column="{column}">([^<]*)</td>', row)
    assert match, f"no {column} cell in row {row_id}"
    return match.group(1).strip()


def test_custom_columns_match_the_raw_events(client: TestClient, api: Api, settings: Settings) -> None:
    admin = api.admin()
    adv = api.approved_account(admin, email="columns@example.com")
    camp = campaign(api, adv)
    group = approved_ad_group(api, adv, admin, camp["id"])
    shown, other = creative(api, adv, group["id"], name="Shown"), creative(api, adv, group["id"], name="Other")
    rng = random.Random(16)
    when = utcnow() - timedelta(hours=1)
    events: list[Event] = []

    def add(event_type: EventType, creative_id: int, **extra: object) -> None:
        events.append(
            Event(
                event_id=uuid.uuid4().hex,
                event_type=event_type,
                occurred_at=when,
                account_id=adv.account_id or 0,
                campaign_id=camp["id"],
                ad_group_id=group["id"],
                creative_id=creative_id,
                placement_type="banner",
                country="ID",
                **extra,
            )
        )  # type: ignore

    for creative_id in (shown["id"], other["id"]):
        for event_type in VIDEO_COLUMNS.values():
            for _ in range(rng.randrange(1, 9)):
                add(event_type, creative_id)
        for event in IN_APP_EVENTS:
            for _ in range(rng.randrange(0, 5)):
                add(
                    EventType.IN_APP_EVENT,
                    creative_id,
                    conversion_event=event.value,
                    attribution_type=rng.choice(("click", "view", "organic")),
                    partner="appsflyer",
                )
    store = get_event_store(settings)
    store.append(events)
    store.flush()

    def expected(column: str) -> int:
        mine = [e for e in events if e.creative_id == shown["id"]]
        if column in VIDEO_COLUMNS:
            return sum(e.event_type == VIDEO_COLUMNS[column] for e in mine)
        name = column.removeprefix("event_").upper()
        # Only conversions adstack's ads brought count as the ad's; organic ones are reported apart.
        return sum(
            e.event_type == EventType.IN_APP_EVENT
            and e.conversion_event == name
            and e.attribution_type in ("click", "view")
            for e in mine
        )

    columns = [*VIDEO_COLUMNS, *(f"event_{e.value.lower()}" for e in IN_APP_EVENTS)]
    assert len(columns) == 5 + 22
    sign_in(client, "columns@example.com", "correct horse battery")
    page = client.get("/console/ads/creatives", params=[("cols", c) for c in columns])
    assert page.status_code == 200, page.text[-1000:]
    for column in columns:
        want = expected(column)
        assert _cell(page.text, "creatives", shown["id"], column) == str(want), column
    assert 'value="event_loan_approval"' in page.text and "Loan approval" in page.text
    # The completion rate is completes over starts, as the reports give it.
    rate = _cell(
        client.get("/console/ads/creatives", params={"cols": "video_completion_rate"}).text,
        "creatives",
        shown["id"],
        "video_completion_rate",
    )
    assert float(rate.rstrip("%")) == pytest.approx(
        expected("video_completes") / expected("video_starts") * 100, abs=0.01
    )


def test_the_console_creative_list_filters_by_placement_publisher_and_objective(client: TestClient, api: Api) -> None:
    admin = api.admin()
    adv = api.approved_account(admin, email="filters@example.com")
    group = approved_ad_group(api, adv, admin, campaign(api, adv)["id"])
    made = creative(api, adv, group["id"])
    banners = publisher(api, admin, name="Banner app", app_package="com.mi.banners")
    ad_space(api, admin, banners["id"])
    idle = publisher(api, admin, name="Idle app", app_package="com.mi.idle")
    sign_in(client, "filters@example.com", "correct horse battery")
    row = f'id="row-creatives-{made["id"]}"'
    page = client.get("/console/ads/creatives")
    assert row in page.text
    for control in ('name="placement_type"', 'name="publisher_id"', 'name="objective"'):
        assert control in page.text, control
    for params, shown in (
        ({"placement_type": "banner"}, True),
        ({"placement_type": "interstitial"}, False),
        ({"objective": "performance"}, True),
        ({"objective": "brand"}, False),
        ({"publisher_id": banners["id"]}, True),
        ({"publisher_id": idle["id"]}, False),
    ):
        listing = client.get("/console/ads/creatives", params=params)
        assert listing.status_code == 200 and (row in listing.text) is shown, params


def test_the_date_range_drives_every_metric_column(client: TestClient, api: Api, settings: Settings) -> None:
    admin = api.admin()
    adv = api.approved_account(admin, email="range@example.com")
    camp = campaign(api, adv)
    group = approved_ad_group(api, adv, admin, camp["id"])
    made = creative(api, adv, group["id"])
    now = utcnow()
    # Impressions at three ages: a minute (today), 10 days and 40 days; each age a count of its own.
    ages = {timedelta(minutes=1): 3, timedelta(days=10): 5, timedelta(days=40): 7}
    store = get_event_store(settings)
    store.append(
        [
            Event(
                event_id=uuid.uuid4().hex,
                event_type=EventType.IMPRESSION,
                occurred_at=now - age,
                account_id=adv.account_id or 0,
                campaign_id=camp["id"],
                ad_group_id=group["id"],
                creative_id=made["id"],
                placement_type="banner",
                country="ID",
            )
            for age, count in ages.items()
            for _ in range(count)
        ]
    )
    store.flush()
    sign_in(client, "range@example.com", "correct horse battery")
    local = now.astimezone(ZoneInfo("Asia/Singapore")).date()  # the account's time zone (tests.support)
    old_day = (now - timedelta(days=10)).astimezone(ZoneInfo("Asia/Singapore")).date()

    def shown(**params: str) -> str:
        page = client.get("/console/ads/creatives", params={"cols": "impressions", **params})
        assert page.status_code == 200, page.text[-1000:]
        return _cell(page.text, "creatives", made["id"], "impressions")

    assert shown() == shown(range="7d") == str(ages[timedelta(minutes=1)])
    assert shown(range="today") == str(ages[timedelta(minutes=1)])
    assert shown(range="30d") == str(ages[timedelta(minutes=1)] + ages[timedelta(days=10)])
    assert shown(range="custom", start=old_day.isoformat(), end=old_day.isoformat()) == str(ages[timedelta(days=10)])
    assert shown(range="custom", start=(local - timedelta(days=60)).isoformat(), end=local.isoformat()) == str(
        sum(ages.values())
    )
    # A reversed custom range is no range: the list falls back to the last 7 days and says which days it shows.
    page = client.get(
        "/console/ads/creatives", params={"range": "custom", "start": local.isoformat(), "end": old_day.isoformat()}
    )
    assert f'data-start="{(local - timedelta(days=6)).isoformat()}"' in page.text
    # A row redrawn by htmx (quick edit's cancel) keeps the page's range and columns.
    row = client.get(
        f"/console/ads/creatives/{made['id']}/quick-edit",
        params={"cancel": "1"},
        headers={
            "HX-Request": "true",
            "HX-Current-URL": "http://testserver/console/ads/creatives?range=30d&cols=impressions&cols=clicks",
        },
    )
    assert row.status_code == 200, row.text[-1000:]
    assert _cell(row.text, "creatives", made["id"], "impressions") == str(
        ages[timedelta(minutes=1)] + ages[timedelta(days=10)]
    )
    assert 'data-column="clicks"' in row.text and 'data-column="ctr"' not in row.text


def test_a_custom_range_outside_the_searchable_years_falls_back_to_seven_days(client: TestClient, api: Api) -> None:
    admin = api.admin()
    adv = api.approved_account(admin, email="far-range@example.com")
    approved_ad_group(api, adv, admin, campaign(api, adv)["id"])
    browser = TestClient(client.app, raise_server_exceptions=False)
    assert sign_in(browser, "far-range@example.com", "correct horse battery").status_code == 303
    for start, end in (("0001-01-01", "0001-01-02"), ("1999-12-01", "1999-12-02"), ("9999-12-30", "9999-12-31"),
                       ("2200-12-30", "2200-12-31"), ("2199-12-30", "2199-12-31"), ("2101-01-01", "2101-01-02"),
                       ("2000-01-01", "2000-01-02"),
                       ("2026-02-30", "2026-03-01")):
        page = browser.get("/console/ads/ad-groups", params={"range": "custom", "start": start, "end": end})
        assert page.status_code == 200, (start, end)
