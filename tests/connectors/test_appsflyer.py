"""AppsFlyer's Pull API (aggregate partners report) through the same connector seam as Adjust, against a local
server as strict as AppsFlyer's documented API."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select

from adstack.connectors.models import PartnerMetricRow
from adstack.core.settings import Settings
from tests.campaigns.helpers import campaign
from tests.connectors.fake_appsflyer import FakeAppsFlyer
from tests.support import Actor, Api, expect

TOKEN = "af-v2-token-0123456789abcdef"
APP_ID = "com.example.runner"


def _day(n: int) -> str:
    return (date.today() - timedelta(days=n)).isoformat()


@pytest.fixture
def advertiser(api: Api) -> Actor:
    return api.approved_account()


@pytest.fixture
def campaign_id(api: Api, advertiser: Actor) -> int:
    return int(campaign(api, advertiser, name="Runner installs", package_name=APP_ID)["id"])


@pytest.fixture
def fake(api: Api, settings: Settings, campaign_id: int) -> Iterator[FakeAppsFlyer]:
    settings.outbound_allowed_networks = "127.0.0.1/32"
    rows = [
        # adstack's AppsFlyer link puts the bare campaign id in c (Campaign (c)).
        {
            "day": _day(1),
            "media_source": "adstack_int",
            "campaign": str(campaign_id),
            "Installs": 30,
            "Clicks": 300,
            "Impressions": 9000,
            "Total Cost": "15.00",
            "Total Revenue": "45.00",
        },
        {
            "day": _day(1),
            "media_source": "adstack_int",
            "campaign": str(campaign_id),
            "Installs": 10,
            "Total Cost": "5.00",
            "Total Revenue": "5.00",
        },
        {
            "day": _day(2),
            "media_source": "adstack_int",
            "campaign": str(campaign_id),
            "Installs": 4,
            "Total Cost": "2.00",
        },
        {"day": _day(1), "media_source": "googleadwords_int", "campaign": "Brand search", "Installs": 99},
        # Another network's campaign under the same label as ours: its numbers are not adstack's.
        {"day": _day(1), "media_source": "googleadwords_int", "campaign": str(campaign_id), "Installs": 500,
         "Total Cost": "900.00"},
    ]
    server = FakeAppsFlyer(token=TOKEN, apps={APP_ID: rows}).start()
    api.client.app.state.settings.appsflyer_api_url = server.url  # type: ignore[attr-defined]
    yield server
    server.stop()


def _connect(api: Api, actor: Actor, **binding: object) -> int:
    connection = expect(
        api.client.post(
            "/api/v1/connectors",
            headers=actor.headers,
            json={"name": "AppsFlyer", "partner": "appsflyer", "api_token": TOKEN},
        ),
        201,
    )
    expect(
        api.client.post(
            f"/api/v1/connectors/{connection['id']}/apps",
            headers=actor.headers,
            json={"app_token": APP_ID, "currency": "USD", **binding},
        ),
        201,
    )
    return int(connection["id"])


def test_appsflyer_pulls_the_partners_by_date_report_in_one_call(
    api: Api, advertiser: Actor, fake: FakeAppsFlyer, campaign_id: int
) -> None:
    partners = expect(api.client.get("/api/v1/connectors/partners", headers=advertiser.headers), 200)
    assert {p["partner"] for p in partners} == {"adjust", "appsflyer"}
    connection = _connect(api, advertiser, time_zone="Asia/Jakarta")
    run = expect(
        api.client.post(
            f"/api/v1/connectors/{connection}/pull",
            headers=advertiser.headers,
            json={"date_from": _day(2), "date_to": _day(1)},
        ),
        200,
    )
    assert run["status"] == "succeeded" and run["rows"] == 2  # only adstack's media source
    paths = {r["path"] for r in fake.requests}
    assert paths == {f"/api/agg-data/export/app/{APP_ID}/partners_by_date_report/v5"}
    # One call for the range: day-by-day calls would break the "1 call per minute per app per report" quota.
    assert [(r["params"]["from"], r["params"]["to"]) for r in fake.requests] == [(_day(2), _day(1))]
    assert all(
        r["params"].get("timezone") == "Asia/Jakarta" and r["authorization"] == f"Bearer {TOKEN}" for r in fake.requests
    )
    # Source: AppsFlyer, Pull API aggregate data: `media_source` limits the report to one media source; the
    # developer hub's "Aggregate user acquisition and retargeting" sets `category` with it (standard for ours).
    assert {(r["params"].get("media_source"), r["params"].get("category")) for r in fake.requests} == {
        ("adstack_int", "standard")
    }
    stored = {(r.day.isoformat(), r.campaign_label): r for r in api.session.scalars(select(PartnerMetricRow))}
    row = stored[(_day(1), str(campaign_id))]
    assert row.campaign_id == campaign_id and row.partner == "appsflyer" and row.currency == "USD"
    assert (row.metrics["installs"], row.metrics["network_cost"], row.metrics["all_revenue"]) == (
        "40",
        "20.00",
        "50.00",
    )
    assert (_day(1), "Brand search") not in stored

    # The same report columns seam: Columns > AppsFlyer, with the difference from adstack's own counts.
    body = expect(
        api.client.get(
            "/api/v1/reports",
            headers=advertiser.headers,
            params={
                "start_date": _day(3),
                "end_date": _day(0),
                "granularity": "day",
                "dimensions": "campaign",
                "metrics": ["installs"],
                "time_zone": "UTC",
                "extra_columns": ["appsflyer_installs", "appsflyer_roi", "appsflyer_network_cost_micros"],
            },
        ),
        200,
    )
    (day1,) = [r for r in body["rows"] if r.get("campaign_id") == campaign_id and r["date"] == _day(1)]
    assert (day1["appsflyer_installs"], day1["appsflyer_installs_diff"]) == (40, 40)
    assert day1["appsflyer_network_cost_micros"] == 20_000_000 and str(day1["appsflyer_roi"]) == "2.5"
    labels = {c["key"]: c["label"] for c in body["columns"]}
    assert labels["appsflyer_installs"] == "AppsFlyer installs"


def test_appsflyer_refusals_and_the_fakes_strictness(api: Api, advertiser: Actor, fake: FakeAppsFlyer) -> None:
    url = fake.url + f"/api/agg-data/export/app/{APP_ID}/partners_report/v5"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(url, params={"from": _day(1), "to": _day(1)}, headers=headers).status_code == 200
    for source, category in (("adstack_int", "standard"), ("facebook", "facebook"), ("twitter", "twitter")):
        # Three days: the short-range quota allows one call a minute.
        params = {"from": _day(3), "to": _day(1), "media_source": source, "category": category}
        assert httpx.get(url, params=params, headers=headers).status_code == 200, params
    for params in (
        {"from": _day(1)},
        {"from": _day(1), "to": _day(1), "app_token__in": "x"},
        {"from": _day(1), "to": _day(1), "timezone": "+08:00"},
        # media_source and category go together, category naming facebook, twitter or standard for the rest.
        {"from": _day(1), "to": _day(1), "media_source": "adstack_int"},
        {"from": _day(1), "to": _day(1), "category": "standard"},
        {"from": _day(1), "to": _day(1), "media_source": "adstack_int", "category": "adstack_int"},
        {"from": _day(1), "to": _day(1), "media_source": "facebook", "category": "standard"},
    ):
        assert httpx.get(url, params=params, headers=headers).status_code == 400, params
    bad_token = expect(
        api.client.post(
            "/api/v1/connectors",
            headers=advertiser.headers,
            json={"name": "typo", "partner": "appsflyer", "api_token": "wrong-token-000"},
        ),
        201,
    )
    expect(
        api.client.post(
            f"/api/v1/connectors/{bad_token['id']}/apps", headers=advertiser.headers, json={"app_token": APP_ID}
        ),
        201,
    )
    error = expect(
        api.client.post(
            f"/api/v1/connectors/{bad_token['id']}/pull",
            headers=advertiser.headers,
            json={"date_from": _day(1), "date_to": _day(1)},
        ),
        400,
    )["error"]
    assert "AppsFlyer" in error["message"] and "401" in error["message"]
    refused = expect(
        api.client.post(
            "/api/v1/connectors",
            headers=advertiser.headers,
            json={"name": "x", "partner": "branchy", "api_token": TOKEN},
        ),
        422,
    )["error"]
    assert refused["fields"][0]["field"] == "partner"


def test_the_fake_keeps_appsflyers_quotas(fake: FakeAppsFlyer) -> None:
    """Source: AppsFlyer, "Report generation quotas": up to 2 days, 1 call per minute per app per report; 3+
    days, 24 calls per day per app."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    by_date = fake.url + f"/api/agg-data/export/app/{APP_ID}/partners_by_date_report/v5"
    short = {"from": _day(1), "to": _day(1)}
    assert httpx.get(by_date, params=short, headers=headers).status_code == 200
    assert httpx.get(by_date, params=short, headers=headers).status_code == 429
    other_report = by_date.replace("partners_by_date_report", "partners_report")
    assert httpx.get(other_report, params=short, headers=headers).status_code == 200  # each report its own quota
    long = {"from": _day(8), "to": _day(0)}
    answers = [httpx.get(by_date, params=long, headers=headers).status_code for _ in range(25)]
    assert answers == [200] * 24 + [429]


def test_the_default_window_is_one_call_with_every_day_dated(
    api: Api, advertiser: Actor, fake: FakeAppsFlyer, campaign_id: int
) -> None:
    connection = _connect(api, advertiser)
    run = expect(api.client.post(f"/api/v1/connectors/{connection}/pull", headers=advertiser.headers, json={}), 200)
    assert run["status"] == "succeeded"
    assert len(fake.requests) == 1
    params = fake.requests[0]["params"]
    assert (date.fromisoformat(params["to"]) - date.fromisoformat(params["from"])).days == 8
    days = {r.day.isoformat(): r.metrics["installs"] for r in api.session.scalars(select(PartnerMetricRow))}
    assert days == {_day(1): "40", _day(2): "4"}


def test_scheduled_pulls_leave_room_in_appsflyers_daily_quota(
    api: Api, advertiser: Actor, fake: FakeAppsFlyer, settings: Settings
) -> None:
    from adstack.connectors import service
    from adstack.core.security import Encryptor
    from adstack.core.timeutil import utcnow

    _connect(api, advertiser)
    encryptor = Encryptor(settings.resolved_secret_key)
    factory = service.default_connector_factory(api.client.app.state.settings)  # type: ignore[attr-defined]
    started = utcnow()

    def scheduled(at: datetime) -> int:
        before = len(fake.requests)
        service.scheduled_pull(api.session, encryptor=encryptor, connector_factory=factory, now=at)
        api.session.commit()
        return len(fake.requests) - before

    assert scheduled(started) == 1
    # The hourly schedule skips AppsFlyer for an hour: 12 of its 24 daily calls, not all of them.
    assert scheduled(started + timedelta(hours=1)) == 0
    assert scheduled(started + timedelta(hours=2, minutes=1)) == 1


def test_the_category_sent_with_a_media_source() -> None:
    """Source: AppsFlyer developer hub, "Aggregate user acquisition and retargeting": facebook and twitter are
    their own category, every other media source is standard."""
    from adstack.connectors.appsflyer import AppsFlyerReportConnector
    from adstack.connectors.base import BindingSettings

    def sent(media_source: str) -> tuple[str | None, str | None]:
        params = AppsFlyerReportConnector.params(BindingSettings(app_token=APP_ID, media_source=media_source),
                                                 date.today(), date.today())
        return params.get("media_source"), params.get("category")

    assert sent("adstack_int") == ("adstack_int", "standard")
    assert sent("facebook") == ("facebook", "facebook")
    assert sent("twitter") == ("twitter", "twitter")
    assert sent("") == (None, None)
