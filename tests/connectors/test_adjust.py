"""Pulling Adjust's Report Service data against a local server that speaks its documented format."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from adstack.connectors import service
from adstack.connectors.adjust import AdjustReportConnector, BindingSettings
from adstack.connectors.models import PartnerConnection, PartnerMetricRow
from adstack.core.settings import Settings
from tests.connectors.fake_adjust import FakeAdjust, days_back
from tests.support import Actor, Api, expect

TOKEN = "adj-token-0123456789abcdef"
APP_TOKEN = "abc123xyz"


@pytest.fixture
def campaign_id(api: Api, advertiser: Actor) -> int:
    body = {"objective": "performance", "name": "Spring push", "promotion_type": "app_download",
            "package_name": "com.example.game"}
    return int(expect(api.client.post("/api/v1/campaigns", headers=advertiser.headers, json=body), 201)["id"])


@pytest.fixture
def advertiser(api: Api) -> Actor:
    return api.approved_account()


@pytest.fixture
def fake_adjust(campaign_id: int, settings: Settings) -> Iterator[FakeAdjust]:
    settings.outbound_allowed_networks = "127.0.0.1/32"  # the stand-in lives on loopback, refused by default
    rows = [
        # Two countries of one campaign on one day; metric values become strings on the wire.
        {"day": days_back(1), "campaign": f"Spring push ({campaign_id})", "country": "id", "installs": 120,
         "network_cost": "60.50", "all_revenue": "90.75", "roas": "1.5", "retention_rate_d1": "0.40",
         "retention_rate_d7": "0.10", "all_revenue_total_d0": "30.25", "all_revenue_total_d7": "121.00"},
        {"day": days_back(1), "campaign": f"Spring push ({campaign_id})", "country": "in", "installs": 80,
         "network_cost": "39.50", "all_revenue": "9.25", "roas": "0.23", "retention_rate_d1": "0.20",
         "retention_rate_d7": "0.05", "all_revenue_total_d0": "4.75", "all_revenue_total_d7": "29.00"},
        {"day": days_back(2), "campaign": "Some other network campaign", "country": "br", "installs": 7},
    ]
    server = FakeAdjust(token=TOKEN, apps={APP_TOKEN: rows}, empty_apps={"emptyapp1"}).start()
    yield server
    server.stop()


@pytest.fixture
def connected(client: TestClient, advertiser: Actor, fake_adjust: FakeAdjust) -> int:
    client.app.state.settings.adjust_api_url = fake_adjust.url  # type: ignore[attr-defined]
    body = {"name": "Adjust main", "api_token": TOKEN}
    connection = expect(client.post("/api/v1/connectors", headers=advertiser.headers, json=body), 201)
    binding = {"app_token": APP_TOKEN, "app_name": "Example Game", "utc_offset": "+08:00",
               "attribution_type": "all", "attribution_source": "first"}
    expect(client.post(f"/api/v1/connectors/{connection['id']}/apps", headers=advertiser.headers, json=binding), 201)
    return int(connection["id"])


def test_token_is_encrypted_at_rest_and_never_shown_again(api: Api, connected: int, advertiser: Actor) -> None:
    stored = api.session.get(PartnerConnection, connected)
    assert stored is not None
    assert TOKEN not in stored.token_ciphertext
    shown = expect(api.client.get(f"/api/v1/connectors/{connected}", headers=advertiser.headers), 200)
    assert TOKEN not in str(shown) and shown["token_hint"].endswith(TOKEN[-4:])
    assert shown["token_hint"].count("*") == len(TOKEN) - 4


def test_pull_sends_documented_request_and_stores_string_metrics(api: Api, connected: int, advertiser: Actor,
                                                                 fake_adjust: FakeAdjust, campaign_id: int) -> None:
    run = expect(api.client.post(f"/api/v1/connectors/{connected}/pull", headers=advertiser.headers, json={}), 200)
    assert run["status"] == "succeeded" and run["rows"] == 3
    request = fake_adjust.requests[-1]
    assert request["authorization"] == f"Bearer {TOKEN}"
    params = request["params"]
    assert params["app_token__in"] == APP_TOKEN
    assert params["dimensions"] == "day,campaign,country"
    assert params["utc_offset"] == "+08:00"
    assert params["attribution_type"] == "all" and params["attribution_source"] == "first"
    start, end = params["date_period"].split(":")
    assert date.fromisoformat(end) - date.fromisoformat(start) == timedelta(days=2)
    assert {"installs", "network_cost", "all_revenue", "retention_rate_d7", "all_revenue_total_d7"} <= set(
        params["metrics"].split(","))

    columns = expect(api.client.get("/api/v1/connectors/columns/by-campaign-day", headers=advertiser.headers,
                                    params={"date_from": days_back(5), "date_to": days_back(0)}), 200)
    assert len(columns) == 1  # the unmatched network campaign is kept but joins no adstack campaign
    row = columns[0]
    assert row["campaign_id"] == campaign_id and row["day"] == days_back(1)
    assert row["adjust_installs"] == "200"
    assert row["adjust_network_cost"] == "100.00"
    assert row["adjust_revenue"] == "100.00"
    assert row["adjust_roas"] == "1"
    assert row["adjust_roas_d7"] == "1.5"
    assert row["adjust_revenue_d0"] == "35.00"
    # Retention is weighted by installs across countries: (0.40*120 + 0.20*80) / 200.
    assert row["adjust_retention_d1"] == "0.32"


def test_repull_replaces_days_and_never_duplicates(api: Api, connected: int, advertiser: Actor) -> None:
    url = f"/api/v1/connectors/{connected}/pull"
    for _ in range(3):
        expect(api.client.post(url, headers=advertiser.headers, json={}), 200)
    total = api.session.scalar(select(func.count()).select_from(PartnerMetricRow))
    assert total == 3


def test_backs_off_on_429_then_succeeds(api: Api, connected: int, advertiser: Actor,
                                        fake_adjust: FakeAdjust) -> None:
    fake_adjust.rate_limit_first = True
    run = expect(api.client.post(f"/api/v1/connectors/{connected}/pull", headers=advertiser.headers, json={}), 200)
    assert run["status"] == "succeeded" and run["attempts"] == 2
    assert [r["params"]["app_token__in"] for r in fake_adjust.requests] == [APP_TOKEN, APP_TOKEN]


def test_empty_answer_is_204_and_stores_nothing(api: Api, connected: int, advertiser: Actor) -> None:
    expect(api.client.patch(f"/api/v1/connectors/{connected}", headers=advertiser.headers, json={"name": "x"}), 200)
    apps = expect(api.client.get(f"/api/v1/connectors/{connected}/apps", headers=advertiser.headers), 200)
    assert "time zone" in apps["notice"]
    binding_id = apps["items"][0]["id"]
    expect(api.client.patch(f"/api/v1/connectors/apps/{binding_id}", headers=advertiser.headers,
                            json={"enabled": False}), 200)
    expect(api.client.post(f"/api/v1/connectors/{connected}/apps", headers=advertiser.headers,
                           json={"app_token": "emptyapp1"}), 201)
    run = expect(api.client.post(f"/api/v1/connectors/{connected}/pull", headers=advertiser.headers, json={}), 200)
    assert run["status"] == "succeeded" and run["rows"] == 0


def test_bad_token_is_a_clear_error_kept_on_the_connection(api: Api, advertiser: Actor,
                                                           fake_adjust: FakeAdjust) -> None:
    api.client.app.state.settings.adjust_api_url = fake_adjust.url  # type: ignore[attr-defined]
    connection = expect(api.client.post("/api/v1/connectors", headers=advertiser.headers,
                                        json={"name": "typo", "api_token": "wrong-token-000"}), 201)
    expect(api.client.post(f"/api/v1/connectors/{connection['id']}/apps", headers=advertiser.headers,
                           json={"app_token": APP_TOKEN}), 201)
    error = expect(api.client.post(f"/api/v1/connectors/{connection['id']}/pull", headers=advertiser.headers,
                                   json={}), 400)["error"]
    assert "401" in error["message"] and "API token" in error["message"]
    shown = expect(api.client.get(f"/api/v1/connectors/{connection['id']}", headers=advertiser.headers), 200)
    assert shown["status"] == "error" and "401" in shown["last_error"]


def test_foreign_app_token_is_a_clear_403_error(api: Api, connected: int, advertiser: Actor) -> None:
    expect(api.client.post(f"/api/v1/connectors/{connected}/apps", headers=advertiser.headers,
                           json={"app_token": "notmine99"}), 201)
    run = expect(api.client.post(f"/api/v1/connectors/{connected}/pull", headers=advertiser.headers, json={}), 200)
    # The owned app still pulled; the foreign one reports why it did not.
    assert run["rows"] == 3 and "403" in run["error"] and "notmine99" in run["error"]
    apps = expect(api.client.get(f"/api/v1/connectors/{connected}/apps", headers=advertiser.headers), 200)
    assert any("403" in b["last_error"] for b in apps["items"])


def test_other_tenants_cannot_see_or_pull(api: Api, connected: int) -> None:
    stranger = api.approved_account()
    assert api.client.get(f"/api/v1/connectors/{connected}", headers=stranger.headers).status_code == 404
    assert api.client.post(f"/api/v1/connectors/{connected}/pull", headers=stranger.headers,
                           json={}).status_code == 404
    assert expect(api.client.get("/api/v1/connectors", headers=stranger.headers), 200) == []


def test_scheduled_pull_reads_the_settling_days(api: Api, connected: int, fake_adjust: FakeAdjust) -> None:
    from adstack.core.security import Encryptor

    settings = api.client.app.state.settings  # type: ignore[attr-defined]
    runs = service.scheduled_pull(api.session, encryptor=Encryptor(settings.resolved_secret_key),
                                  connector_factory=service.default_connector_factory(fake_adjust.url))
    api.session.commit()
    assert [r.status for r in runs] == ["succeeded"] and runs[0].rows == 3


def test_adjust_numbers_join_reports_with_the_difference_shown(api: Api, connected: int, advertiser: Actor,
                                                               campaign_id: int) -> None:
    expect(api.client.post(f"/api/v1/connectors/{connected}/pull", headers=advertiser.headers, json={}), 200)
    body = expect(api.client.get("/api/v1/reports", headers=advertiser.headers, params={
        "start_date": days_back(5), "end_date": days_back(0), "granularity": "day", "dimensions": "campaign",
        "metrics": ["installs", "cost_micros"], "time_zone": "UTC",
        "extra_columns": ["adjust_installs", "adjust_network_cost_micros", "adjust_roas_d7"]}), 200)
    rows = [r for r in body["rows"] if r.get("campaign_id") == campaign_id and r.get("adjust_installs")]
    assert len(rows) == 1
    row = rows[0]
    # adstack saw no traffic for this campaign, so the whole partner figure is the difference.
    assert row["adjust_installs"] == 200 and row["installs"] == 0 and row["adjust_installs_diff"] == 200
    assert row["adjust_network_cost_micros"] == 100_000_000
    assert row["adjust_network_cost_micros_diff"] == 100_000_000
    assert str(row["adjust_roas_d7"]) == "1.5"
    labels = {c["key"]: c["label"] for c in body["columns"]}
    assert labels["adjust_installs"] == "Adjust installs"


def test_a_loopback_partner_url_is_refused_unless_allowed(api: Api, connected: int, advertiser: Actor,
                                                          fake_adjust: FakeAdjust, settings: Settings) -> None:
    settings.outbound_allowed_networks = ""
    error = expect(api.client.post(f"/api/v1/connectors/{connected}/pull", headers=advertiser.headers,
                                   json={}), 400)["error"]
    assert error["message"] == "Adjust could not be reached"  # no address, port or reason
    assert fake_adjust.requests == []


def test_an_injected_transport_stands_in_for_the_network() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"rows": [{"day": "2024-05-01", "campaign": "Spring push (7)",
                                                   "country": "id", "installs": "12"}]})

    connector = AdjustReportConnector(transport=httpx.MockTransport(answer), sleep=lambda _: None)
    rows = connector.fetch(token=TOKEN, binding=BindingSettings(app_token=APP_TOKEN), date_from=date(2024, 5, 1),
                           date_to=date(2024, 5, 1))
    assert [(r.campaign_label, r.metrics["installs"]) for r in rows] == [("Spring push (7)", "12")]
    assert seen[0].url.host == "automate.adjust.com" and seen[0].headers["Authorization"] == f"Bearer {TOKEN}"
