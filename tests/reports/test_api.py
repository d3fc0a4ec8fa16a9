"""The reports API: filters, sort, paging, totals, names, downloads, jobs, tenancy, overview, media center."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy.orm import Session

from adstack.accounts import auth
from adstack.campaigns.models import Campaign
from adstack.core.timeutil import utcnow
from adstack.events.models import Event, EventType
from adstack.events.service import EventStore
from adstack.finance import service as finance
from adstack.finance import topups
from adstack.finance.models import TopUpIn
from adstack.inventory.models import AdSpace, Publisher
from adstack.reports import connector_columns
from adstack.reports.connector_columns import ExtraColumn
from adstack.reports.models import Metric
from tests.support import Actor, Api, expect

DAY = date(2025, 5, 20)
AT = datetime(2025, 5, 20, 6, tzinfo=UTC)  # 14:00 in Singapore, the test accounts' zone


def campaign(session: Session, account_id: int, name: str, *, deleted: bool = False) -> int:
    row = Campaign(
        account_id=account_id,
        objective="performance",
        name=name,
        promotion_type="app_download",
        status="deleted" if deleted else "enabled",
        deleted_at=utcnow() if deleted else None,
    )
    session.add(row)
    session.commit()
    return row.id


def traffic(
    account_id: int,
    campaign_id: int,
    *,
    impressions: int,
    clicks: int,
    installs: int,
    cost: int,
    country: str = "SG",
    at: datetime = AT,
    objective: str = "performance",
    ad_space_id: int = 0,
    publisher_id: int = 0,
    package: str = "",
    tag: str = "",
) -> list[Event]:
    """Delivery, conversions and the charges billing would write, as the writers produce them."""
    common: dict[str, Any] = {
        "occurred_at": at,
        "account_id": account_id,
        "campaign_id": campaign_id,
        "country": country,
        "objective": objective,
        "ad_space_id": ad_space_id,
        "publisher_id": publisher_id,
    }
    key = f"{account_id}-{campaign_id}-{country}-{at.isoformat()}-{tag}"
    events = [
        Event(event_id=f"imp-{key}-{i}", event_type=EventType.IMPRESSION, app_package=package, **common)
        for i in range(impressions)
    ]
    events += [Event(event_id=f"clk-{key}-{i}", event_type=EventType.CLICK, **common) for i in range(clicks)]
    events += [
        Event(event_id=f"ins-{key}-{i}", event_type=EventType.INSTALL, conversion_event="INSTALL", **common)
        for i in range(installs)
    ]
    events.append(Event(event_id=f"chg-{key}", event_type=EventType.CHARGE, cost_micros=cost, **common))
    return events


def report(api: Api, actor: Actor, **params: Any) -> Any:
    params.setdefault("start_date", DAY.isoformat())
    params.setdefault("end_date", DAY.isoformat())
    return expect(api.client.get("/api/v1/reports", params=params, headers=actor.headers), 200)


@pytest.fixture
def advertiser(api: Api) -> Actor:
    return api.approved_account()


@pytest.fixture
def three_campaigns(api: Api, session: Session, store: EventStore, advertiser: Actor) -> Iterator[list[int]]:
    account = advertiser.account_id or 0
    ids = [
        campaign(session, account, "Spring sale"),
        campaign(session, account, '=HYPERLINK("http://x")'),
        campaign(session, account, "Old launch", deleted=True),
    ]
    store.append(traffic(account, ids[0], impressions=100, clicks=10, installs=2, cost=3_000_000, country="SG"))
    store.append(traffic(account, ids[0], impressions=50, clicks=0, installs=0, cost=500_000, country="ID"))
    store.append(
        traffic(
            account,
            ids[1],
            impressions=40,
            clicks=4,
            installs=1,
            cost=1_000_000,
            country="SG",
            objective="=cmd|' /C calc'!A0",
        )
    )
    store.append(traffic(account, ids[2], impressions=10, clicks=3, installs=0, cost=2_000_000, country="IN"))
    yield ids


def test_metrics_are_integer_micros_and_decimal_ratios_with_a_totals_row(
    api: Api, advertiser: Actor, three_campaigns: list[int]
) -> None:
    body = report(api, advertiser, dimensions="campaign", sort="campaign")
    rows = {r["campaign_id"]: r for r in body["rows"]}
    first = rows[three_campaigns[0]]
    assert first["impressions"] == 150 and first["clicks"] == 10 and first["cost_micros"] == 3_500_000
    assert first["ctr"] == str((Decimal(10) / 150).quantize(Decimal("0.000001")))
    assert first["ecpm_micros"] == 3_500_000 * 1000 // 150 + (1 if (3_500_000 * 1000) % 150 * 2 > 150 else 0)
    assert first["cpc_micros"] == 350_000 and first["cpa_micros"] == 1_750_000 and first["cvr"] == "0.200000"
    assert rows[three_campaigns[2]]["cpa_micros"] is None  # no installs: no CPA, not zero
    assert body["totals"]["cost_micros"] == sum(r["cost_micros"] for r in body["rows"]) == 6_500_000
    assert body["totals"]["impressions"] == 200 and body["total_rows"] == 3
    assert body["currency"] == "USD" and body["time_zone"] == "Asia/Singapore"


def test_names_come_from_the_control_plane_and_deleted_campaigns_keep_theirs(
    api: Api, advertiser: Actor, three_campaigns: list[int]
) -> None:
    rows = {r["campaign_id"]: r for r in report(api, advertiser, dimensions="campaign")["rows"]}
    assert rows[three_campaigns[0]]["campaign_name"] == "Spring sale"
    assert rows[three_campaigns[0]]["campaign_deleted"] is False
    assert rows[three_campaigns[2]]["campaign_name"] == "Old launch"
    assert rows[three_campaigns[2]]["campaign_deleted"] is True
    assert rows[three_campaigns[2]]["cost_micros"] == 2_000_000


def test_filters_sort_and_pages_keep_totals_over_every_row(
    api: Api, advertiser: Actor, three_campaigns: list[int]
) -> None:
    by_country = report(api, advertiser, dimensions="country", sort="-impressions")
    assert [r["country"] for r in by_country["rows"]] == ["SG", "ID", "IN"]
    ascending = report(api, advertiser, dimensions="country", sort="cost_micros")
    assert [r["country"] for r in ascending["rows"]] == ["ID", "IN", "SG"]
    page = report(api, advertiser, dimensions="country", sort="-impressions", limit=1, offset=1)
    assert [r["country"] for r in page["rows"]] == ["ID"]
    assert page["total_rows"] == 3 and page["totals"] == by_country["totals"]
    filtered = report(
        api,
        advertiser,
        dimensions=["campaign", "country"],
        countries=["SG", "IN"],
        campaign_ids=[three_campaigns[0], three_campaigns[2]],
    )
    assert {(r["campaign_id"], r["country"]) for r in filtered["rows"]} == {
        (three_campaigns[0], "SG"),
        (three_campaigns[2], "IN"),
    }
    assert filtered["totals"]["cost_micros"] == 5_000_000
    installs = report(api, advertiser, dimensions="event", events="INSTALL", metrics=["installs"])
    assert installs["rows"] == [{"event": "INSTALL", "source": "ads", "installs": 3}]
    by_ctr = report(api, advertiser, dimensions="campaign", sort="-ctr", metrics=["ctr"])
    assert [r["campaign_id"] for r in by_ctr["rows"]] == [three_campaigns[2], three_campaigns[1], three_campaigns[0]]


def test_bad_report_parameters_answer_4xx_naming_the_field(api: Api, advertiser: Actor) -> None:
    client = api.client
    cases: list[tuple[Mapping[str, Any], str]] = [
        ({"end_date": "2025-05-01"}, "end_date"),
        ({"sort": "-nonsense"}, "sort"),
        ({"dimensions": "planet"}, "dimensions.0"),
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        ({"campaign_ids": str(2**63)}, "campaign_ids.0"),
        ({"start_date": "2020-01-01", "end_date": "2025-01-01"}, "end_date"),
        ({"extra_columns": "nobody_installs"}, "extra_columns"),
    ]
    for params, field in cases:
        query = {"start_date": "2025-05-02", "end_date": "2025-05-03", **params}
        response = client.get("/api/v1/reports", params=query, headers=advertiser.headers)
        assert response.status_code == 422, (params, response.text)
        assert field in [f["field"] for f in response.json()["error"]["fields"]], response.text


def test_a_filter_id_that_is_no_number_is_refused_naming_the_field_and_the_rule(api: Api, advertiser: Actor) -> None:
    for name in ("campaign_ids", "ad_group_ids", "creative_ids", "ad_space_ids", "publisher_ids"):
        for route in ("/api/v1/reports", "/api/v1/reports/download"):
            response = api.client.get(
                route,
                headers=advertiser.headers,
                params={"start_date": "2025-05-02", "end_date": "2025-05-03", name: ["7", "seven"]},
            )
            assert response.status_code == 422, (route, name, response.text)
            fields = response.json()["error"]["fields"]
            assert [(f["field"], f["rule"]) for f in fields] == [(f"{name}.1", "int_parsing")], fields


def test_filter_choices_list_what_the_caller_may_see(api: Api, advertiser: Actor, session: Session) -> None:
    mine = campaign(session, advertiser.account_id or 0, "Mine")
    gone = campaign(session, advertiser.account_id or 0, "Gone", deleted=True)
    stranger = api.approved_account()
    theirs = campaign(session, stranger.account_id or 0, "Theirs")
    publisher = Publisher(name="News app", app_package="com.example.news", country="SG")
    session.add(publisher)
    session.commit()
    body = expect(api.client.get("/api/v1/reports/filters", headers=advertiser.headers), 200)
    assert {(c["id"], c["deleted"]) for c in body["campaigns"]} == {(mine, False), (gone, True)}
    assert theirs not in {c["id"] for c in body["campaigns"]}
    assert publisher.id in {p["id"] for p in body["publishers"]}  # the catalogue is everyone's
    assert set(body["objectives"]) == {"performance", "brand"}
    other = expect(api.client.get("/api/v1/reports/filters", headers=stranger.headers), 200)
    assert [c["id"] for c in other["campaigns"]] == [theirs]


def test_csv_and_xlsx_downloads_hold_every_row_and_totals_with_formulas_neutralised(
    api: Api, advertiser: Actor, three_campaigns: list[int]
) -> None:
    params = {
        "start_date": DAY.isoformat(),
        "end_date": DAY.isoformat(),
        "dimensions": ["campaign", "objective"],
        "limit": 1,
    }
    as_json = report(api, advertiser, dimensions=["campaign", "objective"])
    cost_heading = f"Cost ({as_json['currency']})"
    # Files show currency units exact to the micro, never micros.
    cost = (Decimal(as_json["totals"]["cost_micros"]) / 1_000_000).quantize(Decimal("0.000001"))
    response = api.client.get("/api/v1/reports/download", params=params | {"format": "csv"}, headers=advertiser.headers)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert response.content.startswith(b"\xef\xbb\xbf")  # the BOM Excel needs to read UTF-8
    lines = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    header, body, total = lines[0], lines[1:-1], lines[-1]
    assert len(body) == 3 and total[0] == "Total"  # every row, not the one-row page
    names = [row[header.index("Campaign name")] for row in body]
    assert '\'=HYPERLINK("http://x")' in names
    # The objective is the campaign's, from the control plane, whatever an event carried.
    assert {row[header.index("Objective")] for row in body} == {"performance"}
    assert Decimal(total[header.index(cost_heading)]) == cost and not [h for h in header if "micros" in h]

    response = api.client.get(
        "/api/v1/reports/download", params=params | {"format": "xlsx"}, headers=advertiser.headers
    )
    assert response.status_code == 200
    sheet = load_workbook(io.BytesIO(response.content)).active
    assert sheet is not None
    cells = [cell for row in sheet.iter_rows() for cell in row]
    assert not [c for c in cells if c.data_type == "f"]
    texts = [c.value for c in cells if isinstance(c.value, str)]
    assert '\'=HYPERLINK("http://x")' in texts and "'=cmd|' /C calc'!A0" not in texts
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[-1][0] == "Total" and Decimal(str(rows[-1][rows[0].index(cost_heading)])) == cost


def test_a_report_job_runs_in_the_background_with_progress_and_a_download(
    api: Api, advertiser: Actor, store: EventStore, session: Session
) -> None:
    account = advertiser.account_id or 0
    first = campaign(session, account, "Evergreen")
    start = date(2025, 1, 1)
    for offset in range(0, 120, 7):  # a charge every week over four months
        store.append(
            traffic(
                account,
                first,
                impressions=1,
                clicks=0,
                installs=0,
                cost=1_000,
                at=datetime.combine(start + timedelta(days=offset), datetime.min.time(), UTC) + timedelta(hours=6),
            )
        )
    body = {
        "start_date": "2025-01-01",
        "end_date": "2025-04-30",
        "granularity": "day",
        "format": "csv",
        "metrics": ["cost_micros", "impressions"],
    }
    too_long = api.client.get(
        "/api/v1/reports", params={k: v for k, v in body.items() if k != "format"}, headers=advertiser.headers
    )
    assert too_long.status_code == 422 and "reports/jobs" in too_long.text
    job = expect(api.client.post("/api/v1/reports/jobs", json=body, headers=advertiser.headers), 202)
    status = expect(api.client.get(f"/api/v1/reports/jobs/{job['id']}", headers=advertiser.headers), 200)
    assert status["status"] == "done" and status["percent_done"] == 100
    assert status["row_count"] == len(range(0, 120, 7))
    download = api.client.get(status["download_url"], headers=advertiser.headers)
    assert download.status_code == 200
    assert download.content.startswith(b"\xef\xbb\xbf")
    lines = list(csv.reader(io.StringIO(download.content.decode("utf-8-sig"))))
    assert [row[0] for row in lines[1:-1]] == [(start + timedelta(days=d)).isoformat() for d in range(0, 120, 7)]
    assert lines[0][1].startswith("Cost (") and "micros" not in lines[0][1]
    spent = (Decimal(1_000 * len(range(0, 120, 7))) / 1_000_000).quantize(Decimal("0.000001"))
    assert lines[-1][0] == "Total" and lines[-1][1] == str(spent)
    # Exact to the micro, the rows add up to the total (each 0.001 would have shown as 0.00 to the cent).
    assert sum(Decimal(row[1]) for row in lines[1:-1]) == spent
    listed = expect(api.client.get("/api/v1/reports/jobs", headers=advertiser.headers), 200)
    assert [j["id"] for j in listed] == [job["id"]]

    stranger = api.approved_account()
    assert api.client.get(f"/api/v1/reports/jobs/{job['id']}", headers=stranger.headers).status_code == 404
    assert api.client.get(status["download_url"], headers=stranger.headers).status_code == 404


def _job_file(api: Api, actor: Actor, body: Mapping[str, Any]) -> list[list[str]]:
    job = expect(api.client.post("/api/v1/reports/jobs", json=body | {"format": "csv"}, headers=actor.headers), 202)
    status = expect(api.client.get(f"/api/v1/reports/jobs/{job['id']}", headers=actor.headers), 200)
    assert status["status"] == "done", status
    download = api.client.get(status["download_url"], headers=actor.headers)
    return list(csv.reader(io.StringIO(download.content.decode("utf-8-sig"))))


def test_a_sorted_report_job_is_sorted_across_its_date_chunks_and_capped_after_sorting(
    api: Api, advertiser: Actor, store: EventStore, session: Session
) -> None:
    account = advertiser.account_id or 0
    first, second = campaign(session, account, "Shuffled"), campaign(session, account, "Steady")
    start = date(2025, 1, 1)
    for d in range(30):  # a job runs these 30 days in 15 chunks of two
        at = datetime.combine(start + timedelta(days=d), datetime.min.time(), UTC) + timedelta(hours=6)
        # The costliest days are spread over the month (7 * d mod 30 takes every value once).
        store.append(traffic(account, first, impressions=10, clicks=d % 7, installs=0, cost=1_000 * ((7 * d) % 30 + 1),
                             at=at))
        store.append(traffic(account, second, impressions=5 + d, clicks=1, installs=0, cost=100, at=at))
        if d % 10 == 0:
            store.append([_organic_install(account, at)])
    by_day = {"start_date": "2025-01-01", "end_date": "2025-01-30", "granularity": "day", "metrics": ["cost_micros"],
              "sort": "-cost_micros"}
    top = report(api, advertiser, **by_day, limit=3)["rows"]
    capped = _job_file(api, advertiser, by_day | {"limit": 3})
    assert [row[0] for row in capped[1:-1]] == [r["date"] for r in top] == ["2025-01-18", "2025-01-05", "2025-01-22"]
    assert capped[-1][0] == "Total" and len(capped) == 5

    # Sorted by a ratio (ties broken by day and campaign, organic rows last) or not sorted at all, the job's file
    # is the download's, row for row; capped, it is the download's first rows.
    for sort in ("-ctr", "ctr", "campaign", None):
        body: dict[str, Any] = by_day | {"dimensions": ["campaign"], "metrics": ["cost_micros", "clicks", "ctr"],
                                         "sort": sort}
        params = {k: v for k, v in body.items() if v is not None} | {"format": "csv"}
        download = api.client.get("/api/v1/reports/download", params=params, headers=advertiser.headers)
        expected = list(csv.reader(io.StringIO(download.content.decode("utf-8-sig"))))
        assert len(expected) == 2 + 2 * 30 + 3 and expected[-2][expected[0].index("Source")] == "organic"
        assert _job_file(api, advertiser, body) == expected, sort
        assert _job_file(api, advertiser, body | {"limit": 7}) == [*expected[:8], expected[-1]], sort


def test_an_advertiser_sees_only_its_own_and_an_agency_its_sub_accounts_one_by_one_or_summed(
    api: Api, store: EventStore
) -> None:
    admin = api.admin()
    agency = api.approved_account(admin, type="agency")
    first = api.sub_account(agency, admin)
    second = api.sub_account(agency, admin)
    stranger = api.approved_account(admin)
    for account_id, cost in ((first, 1_000_000), (second, 2_000_000), (stranger.account_id or 0, 4_000_000)):
        store.append(traffic(account_id, 1, impressions=1, clicks=0, installs=0, cost=cost))

    assert report(api, stranger)["totals"]["cost_micros"] == 4_000_000
    assert (
        api.client.get(
            "/api/v1/reports",
            headers=stranger.headers,
            params={"start_date": DAY.isoformat(), "end_date": DAY.isoformat(), "account_ids": first},
        ).status_code
        == 404
    )
    summed = report(api, agency)
    assert summed["totals"]["cost_micros"] == 3_000_000
    one_by_one = report(api, agency, dimensions="account")
    assert {r["account_id"]: r["cost_micros"] for r in one_by_one["rows"]} == {first: 1_000_000, second: 2_000_000}
    assert report(api, agency, account_ids=second)["totals"]["cost_micros"] == 2_000_000
    everyone = report(api, admin, dimensions="account")
    assert {first, second, stranger.account_id} <= {r["account_id"] for r in everyone["rows"]}


def test_media_cost_sits_beside_spend_for_platform_staff_only(api: Api, session: Session, store: EventStore) -> None:
    admin = api.admin()
    agency = api.approved_account(admin, type="agency")
    sub = api.sub_account(agency, admin)
    advertiser = api.approved_account(admin)
    account = advertiser.account_id or 0
    spring, autumn = campaign(session, account, "Spring sale"), campaign(session, account, "Autumn sale")
    store.append(traffic(account, spring, impressions=3, clicks=0, installs=0, cost=9_000))
    store.append(
        [
            Event(
                event_id=f"exchange-{i}",
                event_type=EventType.IMPRESSION,
                occurred_at=AT,
                account_id=account,
                campaign_id=campaign_id,
                country="SG",
                objective="performance",
                media_cost_micros=cost,
            )
            for i, (campaign_id, cost) in enumerate([(spring, 2_000), (spring, 2_500), (autumn, None)])
        ]
    )
    store.append(traffic(account, autumn, impressions=0, clicks=0, installs=0, cost=1_000))

    metrics = ["impressions", "cost_micros", "media_cost_micros", "media_cost_impressions"]
    body = report(api, admin, account_ids=account, dimensions="campaign", metrics=metrics, sort="-media_cost_micros")
    assert [
        (r["campaign_id"], r["impressions"], r["cost_micros"], r["media_cost_micros"], r["media_cost_impressions"])
        for r in body["rows"]
    ] == [(spring, 5, 9_000, 4_500, 2), (autumn, 1, 1_000, 0, 0)]
    assert body["totals"] == {
        "impressions": 6,
        "cost_micros": 10_000,
        "media_cost_micros": 4_500,
        "media_cost_impressions": 2,
    }
    assert {c["key"]: (c["label"], c["kind"]) for c in body["columns"]}["media_cost_micros"] == (
        "Media cost (micros)",
        "micros",
    )

    for actor in (advertiser, agency):
        for metric in ("media_cost_micros", "media_cost_impressions"):
            response = api.client.get(
                "/api/v1/reports",
                headers=actor.headers,
                params={"start_date": DAY.isoformat(), "end_date": DAY.isoformat(), "metrics": ["impressions", metric]},
            )
            assert response.status_code == 403
            assert response.json()["error"]["fields"][0]["field"] == "metrics"
            assert response.json()["error"]["fields"][0]["rule"] == "platform_only"
    assert (
        api.client.get(
            "/api/v1/reports/download",
            headers=advertiser.headers,
            params={"start_date": DAY.isoformat(), "end_date": DAY.isoformat(), "metrics": "media_cost_micros"},
        ).status_code
        == 403
    )
    assert (
        api.client.post(
            "/api/v1/reports/jobs",
            headers=agency.headers,
            json={
                "start_date": DAY.isoformat(),
                "end_date": DAY.isoformat(),
                "account_ids": [sub],
                "metrics": ["media_cost_micros"],
            },
        ).status_code
        == 403
    )
    assert "media_cost_micros" not in report(api, advertiser)["totals"]


def test_summing_accounts_of_different_currencies_is_refused(api: Api, store: EventStore) -> None:
    admin = api.admin()
    usd = api.approved_account(admin)
    inr = api.approved_account(
        admin, country="IN", settlement_entity="Xiaomi India", currency="INR", time_zone="Asia/Kolkata"
    )
    response = api.client.get(
        "/api/v1/reports",
        headers=admin.headers,
        params={
            "start_date": DAY.isoformat(),
            "end_date": DAY.isoformat(),
            "account_ids": [usd.account_id, inr.account_id],
        },
    )
    assert response.status_code == 422 and response.json()["error"]["fields"][0]["rule"] == "same_currency"
    # One row per account is allowed; money then has no total across the currencies, counts still do.
    store.append(traffic(usd.account_id or 0, 1, impressions=10, clicks=1, installs=0, cost=1_000_000, tag="u"))
    store.append(traffic(inr.account_id or 0, 2, impressions=5, clicks=1, installs=0, cost=7_000_000, tag="i"))
    params = {"start_date": DAY.isoformat(), "end_date": DAY.isoformat(), "dimensions": "account",
              "metrics": ["impressions", "cost_micros", "ctr", "cpc_micros"],
              "account_ids": [usd.account_id, inr.account_id]}
    body = expect(api.client.get("/api/v1/reports", headers=admin.headers, params=params), 200)
    assert body["currency"] is None and sorted(r["cost_micros"] for r in body["rows"]) == [1_000_000, 7_000_000]
    assert body["totals"]["impressions"] == 15 and body["totals"]["ctr"] == "0.133333"
    assert body["totals"]["cost_micros"] is None and body["totals"]["cpc_micros"] is None
    download = api.client.get("/api/v1/reports/download", headers=admin.headers, params={**params, "format": "csv"})
    total_row = next(r for r in csv.reader(io.StringIO(download.text)) if r and r[0] == "Total")
    assert not any(cell.startswith("8") for cell in total_row)


def test_overview_has_balance_real_time_spend_shares_and_review_state(
    api: Api, session: Session, store: EventStore, advertiser: Actor
) -> None:
    account = advertiser.account_id or 0
    admin = auth.authenticate(session, api.admin().token)
    topups.top_up(session, admin, TopUpIn(account_id=account, amount_micros=50_000_000))
    session.commit()
    now = utcnow()
    store.append(traffic(account, 1, impressions=30, clicks=3, installs=1, cost=700_000, country="SG", at=now, tag="a"))
    store.append(traffic(account, 1, impressions=10, clicks=1, installs=0, cost=300_000, country="TH", at=now, tag="b"))
    body = expect(api.client.get("/api/v1/overview", headers=advertiser.headers), 200)
    assert body["balance_micros"] == finance.balance_micros(session, account) == 50_000_000
    assert body["today_spend_micros"] == 1_000_000 and body["today_impressions"] == 40
    assert body["trend"][-1]["date"] == body["today"] and len(body["trend"]) == 7
    assert {s["key"]: s["cost_share"] for s in body["by_country"]} == {"SG": "0.700000", "TH": "0.300000"}
    assert {"object_type": "account", "status": "approved", "count": 1} in body["review_status_counts"]


def test_media_center_groups_by_app_and_ad_space_and_searches(
    api: Api, session: Session, store: EventStore, advertiser: Actor
) -> None:
    news = Publisher(name="Mi Browser", app_package="com.mi.browser", platform="android", country="SG", status="active")
    game = Publisher(
        name="Puzzle Land", app_package="com.puzzle.land", platform="android", country="ID", status="active"
    )
    session.add_all([news, game])
    session.flush()
    feed = AdSpace(publisher_id=news.id, name="Feed", placement_type="newsfeed", accepted_formats=[], sizes=[])
    splash = AdSpace(publisher_id=news.id, name="Splash", placement_type="interstitial", accepted_formats=[], sizes=[])
    reward = AdSpace(
        publisher_id=game.id, name="Reward", placement_type="rewarded_video", accepted_formats=[], sizes=[]
    )
    session.add_all([feed, splash, reward])
    session.commit()
    account = advertiser.account_id or 0
    store.append(
        traffic(
            account,
            1,
            impressions=20,
            clicks=2,
            installs=1,
            cost=400_000,
            ad_space_id=feed.id,
            publisher_id=news.id,
            package="com.mi.browser",
            tag="f",
        )
    )
    store.append(
        traffic(
            account,
            1,
            impressions=5,
            clicks=0,
            installs=0,
            cost=100_000,
            ad_space_id=splash.id,
            publisher_id=news.id,
            package="com.mi.browser",
            tag="s",
            country="ID",
        )
    )
    store.append(
        traffic(
            account,
            1,
            impressions=8,
            clicks=4,
            installs=2,
            cost=800_000,
            ad_space_id=reward.id,
            publisher_id=game.id,
            package="com.puzzle.land",
            tag="r",
        )
    )
    params = {"start_date": DAY.isoformat(), "end_date": DAY.isoformat()}

    spaces = expect(api.client.get("/api/v1/media-center", params=params, headers=advertiser.headers), 200)
    assert [(r["ad_space_name"], r["cost_micros"]) for r in spaces["rows"]] == [
        ("Reward", 800_000),
        ("Feed", 400_000),
        ("Splash", 100_000),
    ]
    reward_row = spaces["rows"][0]
    assert reward_row["app_package"] == "com.puzzle.land" and reward_row["conversions"] == 2
    assert reward_row["ctr"] == "0.500000" and reward_row["cvr"] == "0.500000"
    assert reward_row["ecpm_micros"] == 100_000_000
    assert spaces["totals"]["cost_micros"] == 1_300_000

    apps = expect(
        api.client.get("/api/v1/media-center", params=params | {"group_by": "publisher"}, headers=advertiser.headers),
        200,
    )
    assert {r["app_package"]: r["impressions"] for r in apps["rows"]} == {"com.mi.browser": 25, "com.puzzle.land": 8}

    def search(**extra: Any) -> list[str | None]:
        body = expect(api.client.get("/api/v1/media-center", params=params | extra, headers=advertiser.headers), 200)
        return sorted(r["ad_space_name"] for r in body["rows"])

    assert search(package="browser") == ["Feed", "Splash"]
    assert search(source="puzzle") == ["Reward"]
    assert search(ad_space_id=splash.id) == ["Splash"]
    assert search(media_id=game.id) == ["Reward"]
    assert search(media_id=news.id) == ["Feed", "Splash"]
    assert search(country="ID") == ["Splash"]
    assert search(package="nothing.like.this") == []
    assert search(start_date="2025-05-21", end_date="2025-05-21") == []

    by_conversions = expect(api.client.get("/api/v1/media-center", params=params | {"sort": "-conversions"},
                                           headers=advertiser.headers), 200)
    assert by_conversions["rows"][0]["ad_space_name"] == "Reward"
    # Refusals name the media center's own columns and dates, each with its limit.
    refused = api.client.get("/api/v1/media-center", params=params | {"sort": "installs"}, headers=advertiser.headers)
    [field] = expect(refused, 422)["error"]["fields"]
    assert (field["field"], field["rule"]) == ("sort", "allowed_values") and "conversions" in field["limit"]
    assert "installs" not in field["limit"]
    backwards = api.client.get("/api/v1/media-center", headers=advertiser.headers,
                               params={"start_date": "2025-05-21", "end_date": "2025-05-20"})
    [field] = expect(backwards, 422)["error"]["fields"]
    assert (field["field"], field["rule"], field["limit"]) == ("end_date", "not_before_start_date", "2025-05-21")


class FakePartner:
    """A connector's columns as a partner would report them, per campaign and day."""

    name = "testpartner"

    def __init__(self, data: Mapping[tuple[int, date], Mapping[str, int | Decimal | None]]):
        self.data = data

    def columns(self) -> list[ExtraColumn]:
        return [
            ExtraColumn("testpartner_installs", "Partner installs", "count", compare_to=Metric.INSTALLS),
            ExtraColumn("testpartner_roas_d7", "Partner ROAS D7", "ratio", additive=False),
        ]

    def fetch(
        self,
        session: Session,
        *,
        account_ids: list[int] | None,
        campaign_ids: list[int],
        start_date: date,
        end_date: date,
        by: frozenset[str] = frozenset(),
    ) -> Mapping[tuple[int, date], Mapping[str, int | Decimal | None]]:
        return self.data


def test_connector_columns_join_on_campaign_and_day_and_show_the_difference(
    api: Api, advertiser: Actor, three_campaigns: list[int]
) -> None:
    first, second, _ = three_campaigns
    connector_columns.register_column_source(
        FakePartner(
            {
                (first, DAY): {"testpartner_installs": 3, "testpartner_roas_d7": Decimal("1.25")},
                (second, DAY): {"testpartner_installs": 1, "testpartner_roas_d7": Decimal("0.5")},
                (first, DAY + timedelta(days=1)): {"testpartner_installs": 9},
            }
        )
    )
    try:
        body = report(
            api,
            advertiser,
            granularity="day",
            dimensions="campaign",
            metrics="installs",
            extra_columns=["testpartner_installs", "testpartner_roas_d7"],
        )
        rows = {r["campaign_id"]: r for r in body["rows"]}
        assert rows[first]["testpartner_installs"] == 3 and rows[first]["installs"] == 2
        assert rows[first]["testpartner_installs_diff"] == 1
        assert rows[first]["testpartner_roas_d7"] == "1.25"
        assert rows[second]["testpartner_installs_diff"] == 0
        assert body["totals"]["testpartner_installs"] == 4 and body["totals"]["testpartner_roas_d7"] is None
        refused = api.client.get(
            "/api/v1/reports",
            headers=advertiser.headers,
            params={
                "start_date": DAY.isoformat(),
                "end_date": DAY.isoformat(),
                "dimensions": "placement_type",
                "extra_columns": "testpartner_installs",
            },
        )
        assert refused.status_code == 422 and "joinable_dimensions" in refused.text
    finally:
        connector_columns.unregister_column_source("testpartner")


def test_the_objective_filter_sees_delivery_and_cost_not_only_requests(
    api: Api, session: Session, store: EventStore, advertiser: Actor
) -> None:
    account = advertiser.account_id or 0
    brand = Campaign(
        account_id=account, objective="brand", name="Launch film", promotion_type="app_download", status="enabled"
    )
    session.add(brand)
    session.commit()
    performance = campaign(session, account, "Installs")
    # Tracking writes impressions, clicks and charges without the objective; only request events carry it.
    store.append(traffic(account, brand.id, impressions=400, clicks=6, installs=0, cost=880_000, objective=""))
    store.append(
        [
            Event(
                event_id=f"req-{n}",
                event_type=EventType.REQUEST,
                occurred_at=AT,
                account_id=account,
                campaign_id=brand.id,
                country="SG",
                objective="brand",
            )
            for n in range(3)
        ]
    )
    store.append(traffic(account, performance, impressions=100, clicks=10, installs=2, cost=3_000_000, objective=""))
    metrics = ["requests", "impressions", "clicks", "cost_micros"]
    body = report(api, advertiser, objectives=["brand"], metrics=metrics)
    assert body["totals"] == {"requests": 3, "impressions": 400, "clicks": 6, "cost_micros": 880_000}
    by_objective = {r["objective"]: r for r in report(api, advertiser, dimensions="objective", metrics=metrics)["rows"]}
    assert (by_objective["brand"]["impressions"], by_objective["brand"]["cost_micros"]) == (400, 880_000)
    assert (by_objective["performance"]["impressions"], by_objective["performance"]["cost_micros"]) == (100, 3_000_000)
    # Recomputed from the raw events: the brand campaign's impressions and charges.
    raw = store.query(
        "SELECT countIf(event_type = 'impression') AS imps, sumIf(cost_micros, event_type = 'charge') "
        "AS cost FROM events WHERE campaign_id = {c:UInt64}",
        {"c": brand.id},
    ).dicts()[0]
    assert (int(raw["imps"]), int(raw["cost"])) == (400, 880_000)


def _organic_install(account_id: int, at: datetime) -> Event:
    return Event(event_id=f"organic-{account_id}-{at.isoformat()}", event_type=EventType.INSTALL, occurred_at=at,
                 account_id=account_id, conversion_event="INSTALL", attribution_type="organic", partner="appsflyer")


def test_home_pages_of_agencies_and_staff_answer_when_today_has_organic_installs(
    api: Api, store: EventStore
) -> None:
    """An account report's organic row carries the label "Organic" where an account id would be: the agency's
    overview and the staff's home page read only the rows of our ads."""
    from tests.console.support import sign_in

    admin = api.admin()
    agency = api.approved_account(admin, type="agency")
    sub = api.sub_account(agency, admin)
    now = utcnow()
    store.append(traffic(sub, 1, impressions=4, clicks=1, installs=0, cost=900_000, at=now, tag="home"))
    store.append([_organic_install(sub, now)])
    rows = report(api, agency, dimensions="account", start_date=now.date().isoformat(),
                  end_date=now.date().isoformat(), time_zone="UTC")["rows"]
    assert {r.get("source") for r in rows} == {"ads", "organic"}  # the case at hand

    body = expect(api.client.get("/api/v1/overview", headers=agency.headers), 200)
    assert [(s["account_id"], s["today_spend_micros"]) for s in body["sub_accounts"]] == [(sub, 900_000)]
    staff = TestClient(api.client.app)
    assert sign_in(staff, admin.email, "admin-password").status_code == 303
    home = staff.get("/console/")
    assert home.status_code == 200, home.text[:300]


def test_a_refund_comes_off_the_reported_cost_where_the_charge_was_counted(
    api: Api, session: Session, store: EventStore, advertiser: Actor
) -> None:
    """Reported cost is the ledger's net charges: a refund is a negative charge event in the refunded charge's
    country and ad group, dated when the ledger dates it."""
    from sqlalchemy import func, select

    from adstack.finance.charges import apply_charge
    from adstack.finance.models import LedgerEntry
    from tests.campaigns.helpers import ad_group, campaign

    account = advertiser.account_id or 0
    admin = api.admin()
    topups.top_up(session, auth.authenticate(session, admin.token), TopUpIn(account_id=account, amount_micros=10**8))
    session.commit()
    now = utcnow()
    group = ad_group(api, advertiser, campaign(api, advertiser)["id"])
    events = []
    for n, country in enumerate(("SG", "TH")):
        result = apply_charge(session, charge_id=f"click:{n}", account_id=account, campaign_id=group["campaign_id"],
                              ad_group_id=group["id"], creative_id=0, amount_micros=300_000, kind="cpc",
                              occurred_at=now)
        events.append(Event(event_id=f"charge:click:{n}", event_type=EventType.CHARGE, occurred_at=now,
                            account_id=account, campaign_id=group["campaign_id"], ad_group_id=group["id"],
                            country=country, cost_micros=result.charged_micros))
    session.commit()
    store.append(events)
    expect(api.client.post("/api/v1/finance/refunds", headers=admin.headers,
                           json={"charge_id": "click:1", "remarks": "invalid traffic"}), 201)
    day = now.date().isoformat()
    by_country = report(api, advertiser, dimensions="country", start_date=day, end_date=day, time_zone="UTC")
    assert {r["country"]: r["cost_micros"] for r in by_country["rows"]} == {"SG": 300_000, "TH": 0}
    net = -int(session.scalar(select(func.sum(LedgerEntry.amount_micros)).where(
        LedgerEntry.account_id == account, LedgerEntry.entry_type.in_(("charge", "refund")))) or 0)
    assert by_country["totals"]["cost_micros"] == net == 300_000


def test_report_refusals_name_the_field_the_rule_and_the_limit(api: Api, advertiser: Actor) -> None:
    def refused(**params: Any) -> list[tuple[str, str, Any]]:
        response = api.client.get("/api/v1/reports", headers=advertiser.headers,
                                  params={"start_date": "2025-05-20", "end_date": "2025-05-20", **params})
        return [(f["field"], f["rule"], f.get("limit")) for f in expect(response, 422)["error"]["fields"]]

    assert refused(end_date="2025-05-19") == [("end_date", "not_before_start_date", "2025-05-20")]
    assert refused(time_zone="Mars/Olympus") == [
        ("time_zone", "known_time_zone", "an IANA zone name, e.g. Asia/Singapore")]
    assert refused(time_zone="localtime")[0][:2] == ("time_zone", "known_time_zone")


def test_an_account_a_report_cannot_see_is_named_by_its_field(api: Api, advertiser: Actor) -> None:
    stranger = api.approved_account()
    response = api.client.get("/api/v1/reports", headers=advertiser.headers, params={
        "start_date": "2025-05-20", "end_date": "2025-05-20", "account_ids": [advertiser.account_id, 999_999_999]})
    error = expect(response, 404)["error"]
    assert [(f["field"], f["rule"], f["actual"]) for f in error["fields"]] == [("account_ids.1", "exists", 999_999_999)]
    # Another tenant's account reads exactly as an unknown one: nothing to probe.
    foreign = api.client.get("/api/v1/reports", headers=advertiser.headers, params={
        "start_date": "2025-05-20", "end_date": "2025-05-20", "account_ids": [stranger.account_id]})
    assert expect(foreign, 404)["error"]["fields"][0]["rule"] == "exists"
