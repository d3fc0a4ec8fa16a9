"""Data analysis: a chart for the day and hour views that agrees with the table, the guide's filters as pickers of
what the visitor may see, and refusals of filter ids that are no number."""

from __future__ import annotations

import html
import json
import re
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from adstack.accounts import auth
from adstack.accounts.models import Principal, User
from adstack.core.settings import Settings
from adstack.core.timeutil import utcnow
from adstack.events.models import Event, EventType
from adstack.events.service import get_event_store
from adstack.reports import service as reports
from adstack.reports.models import Granularity, Metric, ReportQuery
from tests.campaigns.helpers import ad_group, campaign, png
from tests.console.support import csrf_from, sign_in
from tests.support import Actor, Api, expect

PASSWORD = "correct horse battery"  # tests.support registers every account with it


def _traffic(
    settings: Settings, account_id: int, campaign_id: int, *, impressions: int, clicks: int, cost: int, at: datetime
) -> None:
    common: dict[str, Any] = {
        "occurred_at": at,
        "account_id": account_id,
        "campaign_id": campaign_id,
        "country": "SG",
        "placement_type": "banner",
    }
    events = [Event(event_id=uuid.uuid4().hex, event_type=EventType.IMPRESSION, **common) for _ in range(impressions)]
    events += [Event(event_id=uuid.uuid4().hex, event_type=EventType.CLICK, **common) for _ in range(clicks)]
    events.append(Event(event_id=uuid.uuid4().hex, event_type=EventType.CHARGE, cost_micros=cost, **common))
    store = get_event_store(settings)
    store.append(events)
    store.flush()


def _creative(api: Api, actor: Actor, ad_group_id: int, account_id: int, name: str) -> int:
    media = expect(
        api.client.post(
            "/api/v1/media",
            headers=actor.headers,
            data={"account_id": str(account_id)},
            files={"file": ("banner.png", png(640, 100))},
        ),
        201,
    )
    return int(
        expect(
            api.client.post(
                "/api/v1/creatives",
                headers=actor.headers,
                json={
                    "ad_group_id": ad_group_id,
                    "name": name,
                    "format": "image_640x100",
                    "materials": {"images": [media["id"]]},
                    "click_url": "https://example.com/app",
                },
            ),
            201,
        )["id"]
    )


def _principal(session: Session, actor: Actor) -> Principal:
    user = session.scalars(select(User).where(User.email == actor.email)).one()
    return auth.principal_for(user)


def _chart(page: str) -> dict[str, Any]:
    found = re.search(r'<canvas id="report-chart"[^>]*data-chart="([^"]*)"', page)
    assert found, "the page has no report chart"
    return json.loads(html.unescape(found.group(1)))


def _table(page: str) -> list[dict[str, str]]:
    """The report table's body rows as {column key: shown text}."""
    table = page.split('id="report-table"')[1].split("</table>")[0]
    keys = re.findall(r'<th[^>]*data-column="([^"]+)"', table.split("</thead>")[0])
    body = table.split("<tbody>")[1].split("</tbody>")[0]
    rows = []
    for row in re.findall(r"<tr>(.*?)</tr>", body, re.S):
        cells = [
            html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        ]
        if len(cells) == len(keys):
            rows.append(dict(zip(keys, cells, strict=True)))
    return rows


def _series(chart: dict[str, Any], index: int) -> dict[str, float | None]:
    return dict(zip(chart["data"]["labels"], chart["data"]["datasets"][index]["data"], strict=True))


def _options(page: str, field: str) -> set[int]:
    select_html = page.split(f'<select id="{field}"')[1].split("</select>")[0]
    return {int(v) for v in re.findall(r'<option value="(\d+)"', select_html)}


def _hour(value: Any) -> str:
    return datetime.fromisoformat(str(value)).strftime("%Y-%m-%d %H:%M")


def test_day_and_hour_views_chart_the_numbers_of_the_table(
    api: Api, client: TestClient, session: Session, settings: Settings
):
    advertiser = api.approved_account()
    account = advertiser.account_id or 0
    spring = campaign(api, advertiser, name="Spring")["id"]
    now = utcnow() - timedelta(minutes=5)
    _traffic(settings, account, spring, impressions=12, clicks=3, cost=900_000, at=now)
    _traffic(settings, account, spring, impressions=7, clicks=1, cost=400_000, at=now - timedelta(hours=3))
    _traffic(settings, account, spring, impressions=5, clicks=2, cost=250_000, at=now - timedelta(days=2))
    assert sign_in(client, advertiser.email, PASSWORD).status_code == 303
    principal = _principal(session, advertiser)

    day_page = client.get("/console/reports")  # the default: by day, the last 7 days
    assert day_page.status_code == 200, day_page.text[-1500:]
    chart, rows = _chart(day_page.text), _table(day_page.text)
    assert chart["type"] == "line" and len(chart["data"]["labels"]) == 7
    dates = chart["data"]["labels"]
    expected = reports.run_report(
        session,
        principal,
        ReportQuery(
            start_date=dates[0],
            end_date=dates[-1],
            granularity=Granularity.DAY,
            metrics=[Metric.IMPRESSIONS, Metric.CLICKS, Metric.COST_MICROS],
        ),
        store=get_event_store(settings),
    )
    by_day = {str(r["date"]): r for r in expected.rows}
    impressions, clicks = _series(chart, 0), _series(chart, 1)
    assert {d: impressions[d] for d in dates} == {
        d: float(by_day[d]["impressions"]) if d in by_day else 0.0 for d in dates
    }
    assert sum(impressions.values()) == expected.totals["impressions"] > 0
    assert [r["date"] for r in rows] == sorted(by_day)  # the table's rows: the days with traffic
    for row in rows:  # each table row shows what the chart plots for its day
        assert int(row["impressions"].replace(",", "")) == impressions[row["date"]]
        assert int(row["clicks"].replace(",", "")) == clicks[row["date"]]

    first_day = min(by_day)
    hour_page = client.get(f"/console/reports?granularity=hour&start_date={first_day}&end_date={dates[-1]}")
    assert hour_page.status_code == 200, hour_page.text[-1500:]
    chart, rows = _chart(hour_page.text), _table(hour_page.text)
    assert chart["type"] == "line"
    expected = reports.run_report(
        session,
        principal,
        ReportQuery(
            start_date=first_day,
            end_date=dates[-1],
            granularity=Granularity.HOUR,
            metrics=[Metric.IMPRESSIONS, Metric.CLICKS],
        ),
        store=get_event_store(settings),
    )
    by_hour = {_hour(r["hour"]): r for r in expected.rows}
    impressions, clicks = _series(chart, 0), _series(chart, 1)
    assert {h: v for h, v in impressions.items() if v} == {h: float(r["impressions"]) for h, r in by_hour.items()}
    assert len(impressions) > 24  # every hour of the range up to now, quiet ones at zero
    assert [r["hour"] for r in rows] == sorted(by_hour)
    for row in rows:
        assert int(row["impressions"].replace(",", "")) == impressions[row["hour"]]
        assert int(row["clicks"].replace(",", "")) == clicks[row["hour"]]

    total_page = client.get("/console/reports?granularity=total")  # the total, charted by day
    assert total_page.status_code == 200
    assert sum(v or 0 for v in _series(_chart(total_page.text), 0).values()) == int(
        _table(total_page.text)[0]["impressions"].replace(",", "")
    )
    for grouped in ("granularity=day&dimensions=campaign", "granularity=day&dimensions=hour&sort=-impressions"):
        page = client.get(f"/console/reports?{grouped}")  # by day and campaign; hours sorted by a metric
        assert page.status_code == 200, grouped
        totals = page.text.split('id="report-totals"')[1].split("</tr>")[0]
        shown = re.search(r'data-column="impressions"[^>]*>([^<]+)<', totals)
        assert shown and sum(v or 0 for v in _series(_chart(page.text), 0).values()) == int(
            shown.group(1).replace(",", "")
        ), grouped


def test_pickers_list_only_what_the_visitor_may_see(api: Api, client: TestClient):
    admin = api.admin()
    advertiser, stranger = api.approved_account(admin), api.approved_account(admin)
    agency = api.approved_account(admin, type="agency")
    sub = api.sub_account(agency, admin, company_name="Sub One Pte. Ltd.")
    owned: dict[str, dict[str, set[int]]] = {}
    for name, actor, account_id in (
        ("advertiser", advertiser, advertiser.account_id),
        ("stranger", stranger, stranger.account_id),
        ("agency", agency, sub),
    ):
        made = campaign(api, actor, name=f"{name} campaign", account_id=account_id)
        group = ad_group(api, actor, made["id"], name=f"{name} group")
        banner = _creative(api, actor, group["id"], account_id or 0, f"{name} banner")
        owned[name] = {"campaign_ids": {made["id"]}, "ad_group_ids": {group["id"]}, "creative_ids": {banner}}

    def offered(actor: Actor, password: str = PASSWORD) -> dict[str, set[int]]:
        client.cookies.clear()
        assert sign_in(client, actor.email, password).status_code == 303
        page = client.get("/console/reports")
        assert page.status_code == 200, page.text[-1500:]
        assert "performance" in page.text.split('<select id="objectives"')[1].split("</select>")[0]
        return {field: _options(page.text, field) for field in ("campaign_ids", "ad_group_ids", "creative_ids")}

    assert offered(advertiser) == owned["advertiser"]
    assert offered(stranger) == owned["stranger"]
    assert offered(agency) == owned["agency"]  # its sub-account's objects
    staff = offered(admin, "admin-password")
    for field in ("campaign_ids", "ad_group_ids", "creative_ids"):
        assert set().union(*(o[field] for o in owned.values())) <= staff[field]


def test_a_picked_campaign_filters_the_report_and_stays_picked(
    api: Api, client: TestClient, session: Session, settings: Settings
):
    advertiser = api.approved_account()
    account = advertiser.account_id or 0
    first, second = campaign(api, advertiser, name="First")["id"], campaign(api, advertiser, name="Second")["id"]
    now = utcnow() - timedelta(minutes=5)
    _traffic(settings, account, first, impressions=9, clicks=2, cost=500_000, at=now)
    _traffic(settings, account, second, impressions=4, clicks=1, cost=300_000, at=now)
    assert sign_in(client, advertiser.email, PASSWORD).status_code == 303
    principal = _principal(session, advertiser)
    # Yesterday and today in the account's zone: the traffic of five minutes ago is in one of them.
    yesterday, today = _chart(client.get("/console/reports").text)["data"]["labels"][-2:]

    def total(**filters: Any) -> int:
        result = reports.run_report(
            session,
            principal,
            ReportQuery(start_date=yesterday, end_date=today, metrics=[Metric.IMPRESSIONS], **filters),
            store=get_event_store(settings),
        )
        return int(result.totals["impressions"])

    page = client.get(
        f"/console/reports?granularity=total&start_date={yesterday}&end_date={today}"
        f"&metrics=impressions&campaign_ids={first}"
    )
    assert page.status_code == 200
    shown = int(_table(page.text)[0]["impressions"].replace(",", ""))
    assert shown == total(campaign_ids=[first]) != total()
    picker = page.text.split('<select id="campaign_ids"')[1].split("</select>")[0]
    assert re.search(rf'<option value="{first}"[^>]*selected', picker)
    assert not re.search(rf'<option value="{second}"[^>]*selected', picker)
    both = client.get(
        f"/console/reports?granularity=total&start_date={yesterday}&end_date={today}"
        f"&metrics=impressions&campaign_ids={first}&campaign_ids={second}"
    )
    assert int(_table(both.text)[0]["impressions"].replace(",", "")) == total(campaign_ids=[first, second])
    brand = client.get(
        f"/console/reports?granularity=total&start_date={yesterday}&end_date={today}"
        "&metrics=impressions&objectives=brand"
    )
    assert brand.status_code == 200 and 'value="brand" selected' in brand.text
    # Both campaigns are performance campaigns: nothing for brand.
    assert int(_table(brand.text)[0]["impressions"]) == total(objectives=["brand"]) == 0


def test_a_filter_id_that_is_no_number_is_refused_naming_the_field(api: Api, client: TestClient):
    advertiser = api.approved_account()
    assert sign_in(client, advertiser.email, PASSWORD).status_code == 303
    for field in ("campaign_ids", "ad_group_ids", "creative_ids", "ad_space_ids", "publisher_ids"):
        page = client.get(f"/console/reports?{field}=12&{field}=abc")
        assert page.status_code == 422, (field, page.status_code)
        message = re.search(rf'data-error-for="{field}"[^>]*>([^<]+)<', page.text)
        assert message and "whole number" in message.group(1), field
        assert 'id="report-table"' not in page.text  # nothing dropped quietly: no report without the filter
        download = client.get(f"/console/reports/download?format=csv&{field}=abc")
        assert download.status_code == 422 and field.split("_ids")[0].replace("_", " ") in download.text.lower()
    overview = client.get("/console/")
    client.post(
        "/console/language", data={"language": "zh", "next": "/console/", "csrf_token": csrf_from(overview.text)}
    )
    page = client.get("/console/reports?campaign_ids=abc")
    message = re.search(r'data-error-for="campaign_ids"[^>]*>([^<]+)<', page.text)
    assert page.status_code == 422 and message and "广告计划" in message.group(1)


def test_downloads_show_money_in_currency_units_after_a_byte_order_mark(
    api: Api, client: TestClient, session: Session, settings: Settings
):
    advertiser = api.approved_account()
    account = advertiser.account_id or 0
    spring = campaign(api, advertiser, name="春季推广")["id"]
    _traffic(settings, account, spring, impressions=3, clicks=1, cost=1_234_500, at=utcnow() - timedelta(minutes=5))
    assert sign_in(client, advertiser.email, PASSWORD).status_code == 303
    principal = _principal(session, advertiser)
    yesterday, today = _chart(client.get("/console/reports").text)["data"]["labels"][-2:]
    expected = reports.run_report(
        session,
        principal,
        ReportQuery(start_date=yesterday, end_date=today, dimensions=["campaign"]),
        store=get_event_store(settings),
    )
    download = client.get(
        f"/console/reports/download?format=csv&granularity=total&dimensions=campaign"
        f"&start_date={yesterday}&end_date={today}"
    )
    assert download.status_code == 200 and download.content.startswith(b"\xef\xbb\xbf")
    lines = download.content.decode("utf-8-sig").splitlines()
    header, row = lines[0].split(","), lines[1].split(",")
    cost_column = header.index(f"Cost ({expected.currency})")
    assert row[cost_column] == str((Decimal(expected.rows[0]["cost_micros"]) / 1_000_000).quantize(Decimal("0.000001")))
    assert "春季推广" in lines[1] and not [h for h in header if "micros" in h.lower()]
