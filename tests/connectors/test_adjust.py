"""Pulling Adjust's Report Service data against a local server as strict as Adjust's documented API."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from adstack.connectors import service
from adstack.connectors.adjust import AdjustReportConnector
from adstack.connectors.base import BindingSettings
from adstack.connectors.models import PartnerConnection, PartnerMetricRow
from adstack.core.security import Encryptor
from adstack.core.settings import Settings
from adstack.events.models import Event, EventType
from adstack.events.service import get_event_store
from adstack.tracking.urls import expand_macros
from tests.campaigns.helpers import ad_group, campaign, creative
from tests.connectors.fake_adjust import FakeAdjust, days_back
from tests.support import Actor, Api, expect

TOKEN = "adj-token-0123456789abcdef"
APP_TOKEN = "abc123xyz"
DOCUMENTED_PARAMS = {
    "app_token__in",
    "partner_name__in",
    "date_period",
    "dimensions",
    "metrics",
    "cohort_maturity",
    "utc_offset",
    "attribution_types",
    "attribution_source",
    "reattributed",
    "currency",
    "ad_revenue_sources",
    "ad_spend_mode",
}


@pytest.fixture
def advertiser(api: Api) -> Actor:
    return api.approved_account()


@pytest.fixture
def campaign_id(api: Api, advertiser: Actor) -> int:
    return int(campaign(api, advertiser, name="Spring push")["id"])


def _rows(campaign_label: str) -> list[dict[str, Any]]:
    # Two countries of one campaign on one day; money in USD, served in the currency the request names.
    return [
        {
            "day": days_back(1),
            "campaign": campaign_label,
            "adgroup": "unknown",
            "creative": "unknown",
            "country_code": "ID",
            "installs": 120,
            "network_cost": "60.50",
            "all_revenue": "90.75",
            "roas": "1.5",
            "retention_rate_d1": "0.40",
            "retention_rate_d7": "0.10",
            "all_revenue_total_d0": "30.25",
            "all_revenue_total_d7": "121.00",
        },
        {
            "day": days_back(1),
            "campaign": campaign_label,
            "adgroup": "unknown",
            "creative": "unknown",
            "country_code": "IN",
            "installs": 80,
            "network_cost": "39.50",
            "all_revenue": "9.25",
            "roas": "0.23",
            "retention_rate_d1": "0.20",
            "retention_rate_d7": "0.05",
            "all_revenue_total_d0": "4.75",
            "all_revenue_total_d7": "29.00",
        },
        {"day": days_back(2), "campaign": "Some other network campaign", "country_code": "BR", "installs": 7},
        # Organic installs and another partner's campaign under our label: in Adjust's report, not adstack's.
        {"day": days_back(1), "partner_name": "Organic", "campaign": "unknown", "country_code": "ID", "installs": 900},
        {"day": days_back(1), "partner_name": "Google Ads", "campaign": campaign_label, "adgroup": "unknown",
         "creative": "unknown", "country_code": "ID", "installs": 500, "network_cost": "700.00"},
    ]


@pytest.fixture
def fake_adjust(campaign_id: int, settings: Settings) -> Iterator[FakeAdjust]:
    settings.outbound_allowed_networks = "127.0.0.1/32"  # the stand-in lives on loopback, refused by default
    server = FakeAdjust.single(
        TOKEN, {APP_TOKEN: _rows(f"Spring push ({campaign_id})")}, empty_apps={"emptyapp1"}
    ).start()
    yield server
    server.stop()


def _connect(
    client: TestClient, actor: Actor, fake: FakeAdjust, *, binding: dict[str, Any] | None = None, **connection: Any
) -> int:
    client.app.state.settings.adjust_api_url = fake.url  # type: ignore[attr-defined]
    body = {"name": "Adjust main", "api_token": TOKEN, **connection}
    created = expect(client.post("/api/v1/connectors", headers=actor.headers, json=body), 201)
    settings = (
        binding
        if binding is not None
        else {
            "app_token": APP_TOKEN,
            "app_name": "Example Game",
            "utc_offset": "+08:00",
            "attribution_types": ["click", "impression"],
            "attribution_source": "first",
        }
    )
    expect(client.post(f"/api/v1/connectors/{created['id']}/apps", headers=actor.headers, json=settings), 201)
    return int(created["id"])


@pytest.fixture
def connected(client: TestClient, advertiser: Actor, fake_adjust: FakeAdjust) -> int:
    return _connect(client, advertiser, fake_adjust)


def _pull(api: Api, actor: Actor, connection_id: int, expected: int = 200, **body: Any) -> Any:
    return expect(
        api.client.post(f"/api/v1/connectors/{connection_id}/pull", headers=actor.headers, json=body), expected
    )


def test_token_is_encrypted_at_rest_and_never_shown_again(api: Api, connected: int, advertiser: Actor) -> None:
    stored = api.session.get(PartnerConnection, connected)
    assert stored is not None
    assert TOKEN not in stored.token_ciphertext
    shown = expect(api.client.get(f"/api/v1/connectors/{connected}", headers=advertiser.headers), 200)
    assert TOKEN not in str(shown) and shown["token_hint"].endswith(TOKEN[-4:])
    assert shown["token_hint"].count("*") == len(TOKEN) - 4


def test_every_parameter_sent_is_one_adjust_documents(
    api: Api, advertiser: Actor, fake_adjust: FakeAdjust, campaign_id: int
) -> None:
    connection = _connect(
        api.client,
        advertiser,
        fake_adjust,
        partner_account_id="1001",
        binding={
            "app_token": APP_TOKEN,
            "utc_offset": "+07:00",
            "attribution_types": ["click", "engaged_ad"],
            "attribution_source": "dynamic",
            "reattributed": "false",
            "ad_revenue_sources": ["applovin_max_sdk"],
            "ad_spend_mode": "network",
            "currency": "EUR",
        },
    )
    run = _pull(api, advertiser, connection)
    assert run["status"] == "succeeded" and run["rows"] == 3
    request = fake_adjust.requests[-1]
    params = request["params"]
    assert set(params) == DOCUMENTED_PARAMS and request["repeated"] == []
    assert (request["authorization"], request["account"]) == (f"Bearer {TOKEN}", "1001")
    assert params["dimensions"] == "day,partner_name,campaign,adgroup,creative,country_code"
    # Source: Adjust's `partner_name` dimension, filtered like `app_token`: only adstack's rows.
    assert params["partner_name__in"] == "adstack"
    assert (params["attribution_types"], params["reattributed"], params["ad_spend_mode"]) == (
        "click,engaged_ad",
        "false",
        "network",
    )
    assert (params["currency"], params["ad_revenue_sources"], params["utc_offset"]) == (
        "EUR",
        "applovin_max_sdk",
        "+07:00",
    )
    assert params["cohort_maturity"] == "immature"
    start, end = (date.fromisoformat(d) for d in params["date_period"].split(":"))
    assert end - start == timedelta(days=8)  # today and the eight days before: D7 needs eight days to mature
    stored = {
        r.country: r
        for r in api.session.scalars(select(PartnerMetricRow).where(PartnerMetricRow.campaign_id == campaign_id))
    }
    # Whole ISO country codes, money in the currency Adjust was asked for (USD 60.50 at 0.92 EUR per USD).
    assert set(stored) == {"ID", "IN"} and stored["ID"].currency == "EUR"
    assert stored["ID"].metrics["network_cost"] == "55.6600"


def test_the_fake_refuses_what_adjust_refuses(fake_adjust: FakeAdjust) -> None:
    base = {"dimensions": "day,campaign", "metrics": "installs", "date_period": f"{days_back(2)}:{days_back(0)}"}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    url = fake_adjust.url + "/reports-service/report"
    assert httpx.get(url, params=base, headers=headers).status_code == 200
    for extra in (
        {"ad_revenue_source__in": "x"},
        {"attribution_status__in": "attributed"},
        {"attribution_types": "click,everything"},
        {"reattributed": "maybe"},
        {"dimensions": "day,country_name"},
        {"currency": "XXX"},
    ):
        response = httpx.get(url, params={**base, **extra}, headers=headers)
        assert response.status_code == 400, extra
    assert (
        "unsupported parameters"
        in httpx.get(url, params={**base, "attribution_status__in": "x"}, headers=headers).json()["error"]
    )


def test_x_account_id_reads_the_right_adjust_account(
    api: Api, advertiser: Actor, settings: Settings, campaign_id: int
) -> None:
    settings.outbound_allowed_networks = "127.0.0.1/32"
    fake = FakeAdjust(
        token=TOKEN, accounts={"1001": {"otherapp1": []}, "2002": {APP_TOKEN: _rows(f"Spring push ({campaign_id})")}}
    ).start()
    try:
        connection = _connect(api.client, advertiser, fake)
        error = _pull(api, advertiser, connection, 400)["error"]
        assert "403" in error["message"] and fake.requests[-1]["account"] is None
        expect(
            api.client.patch(
                f"/api/v1/connectors/{connection}", headers=advertiser.headers, json={"partner_account_id": "2002"}
            ),
            200,
        )
        run = _pull(api, advertiser, connection)
        assert (run["status"], run["rows"], fake.requests[-1]["account"]) == ("succeeded", 3, "2002")
        error = expect(
            api.client.patch(
                f"/api/v1/connectors/{connection}", headers=advertiser.headers, json={"partner_account_id": "acct-2"}
            ),
            422,
        )["error"]
        assert error["fields"][0]["field"] == "partner_account_id"
    finally:
        fake.stop()


def test_report_columns_per_campaign_day_with_roi_ltv_and_maturity(
    api: Api, connected: int, advertiser: Actor, campaign_id: int
) -> None:
    _pull(api, advertiser, connected)
    columns = expect(
        api.client.get(
            "/api/v1/connectors/columns/by-campaign-day",
            headers=advertiser.headers,
            params={"date_from": days_back(8), "date_to": days_back(0)},
        ),
        200,
    )
    assert len(columns) == 1  # the unmatched network campaign is kept but joins no adstack campaign
    row = columns[0]
    assert row["campaign_id"] == campaign_id and row["day"] == days_back(1)
    assert row["adjust_installs"] == "200"
    assert row["adjust_network_cost"] == "100.00"
    assert row["adjust_revenue"] == "100.00"
    assert row["adjust_roi"] == "1"
    assert row["adjust_roas_d7"] == "1.5"
    assert row["adjust_revenue_d0"] == "35.00"
    assert row["adjust_ltv"] == "0.50" and row["adjust_ltv_d7"] == "0.75"  # 100.00 / 200 and 150.00 / 200
    assert row["adjust_retention_d1"] == "0.32"  # weighted by installs: (0.40*120 + 0.20*80) / 200
    assert row["adjust_cohorts_mature"] == "0"  # yesterday's cohorts are still growing


def test_repull_replaces_days_and_never_duplicates(api: Api, connected: int, advertiser: Actor) -> None:
    for _ in range(3):
        _pull(api, advertiser, connected)
    assert api.session.scalar(select(func.count()).select_from(PartnerMetricRow)) == 3


def test_a_cohort_day_is_repulled_until_it_is_mature(
    api: Api, advertiser: Actor, settings: Settings, campaign_id: int
) -> None:
    settings.outbound_allowed_networks = "127.0.0.1/32"
    install_day = date(2025, 3, 1)
    clock = {"today": install_day}

    def revenue_so_far(today: date) -> int:
        return 10 * min((today - install_day).days, 7)  # grows for seven days, then final

    rows = [
        {
            "day": install_day.isoformat(),
            "campaign": f"Spring push ({campaign_id})",
            "country_code": "ID",
            "installs": 10,
            "all_revenue_total_d7": revenue_so_far,
            "retention_rate_d7": "0.1",
        }
    ]
    fake = FakeAdjust.single(TOKEN, {APP_TOKEN: rows}, today=lambda: clock["today"]).start()
    encryptor = Encryptor(api.client.app.state.settings.resolved_secret_key)  # type: ignore[attr-defined]
    factory = service.default_connector_factory(fake.url)
    try:
        _connect(api.client, advertiser, fake)

        def pull_on(day: date) -> PartnerMetricRow | None:
            clock["today"] = day
            service.scheduled_pull(api.session, encryptor=encryptor, connector_factory=factory, today=day)
            api.session.commit()
            api.session.expire_all()
            return api.session.scalars(select(PartnerMetricRow).where(PartnerMetricRow.day == install_day)).first()

        early = pull_on(install_day + timedelta(days=2))
        assert early is not None and (early.metrics["all_revenue_total_d7"], early.mature) == ("20", False)
        late = pull_on(install_day + timedelta(days=7))
        assert late is not None and (late.metrics["all_revenue_total_d7"], late.mature) == ("70", False)
        final = pull_on(install_day + timedelta(days=8))
        assert final is not None and (final.metrics["all_revenue_total_d7"], final.mature) == ("70", True)
        periods = [r["params"]["date_period"] for r in fake.requests]
        after = pull_on(install_day + timedelta(days=9))
        assert after is not None and after.mature  # kept, no longer asked for
        assert fake.requests[-1]["params"]["date_period"].split(":")[0] == (install_day + timedelta(days=1)).isoformat()
        assert all(p.split(":")[0] <= install_day.isoformat() for p in periods)
    finally:
        fake.stop()


def test_money_keeps_its_currency_and_diff_columns_convert_through_fx(
    api: Api, advertiser: Actor, fake_adjust: FakeAdjust, campaign_id: int
) -> None:
    connection = _connect(api.client, advertiser, fake_adjust, binding={"app_token": APP_TOKEN, "currency": "EUR"})
    _pull(api, advertiser, connection)

    def report_cost() -> tuple[Any, Any]:
        body = expect(
            api.client.get(
                "/api/v1/reports",
                headers=advertiser.headers,
                params={
                    "start_date": days_back(5),
                    "end_date": days_back(0),
                    "granularity": "day",
                    "dimensions": "campaign",
                    "metrics": ["installs", "cost_micros"],
                    "time_zone": "UTC",
                    "extra_columns": ["adjust_installs", "adjust_network_cost_micros", "adjust_roi"],
                },
            ),
            200,
        )
        (row,) = [r for r in body["rows"] if r.get("campaign_id") == campaign_id and r.get("adjust_installs")]
        assert body["currency"] == "USD" and row["adjust_installs_diff"] == 200
        return row["adjust_network_cost_micros"], row["adjust_network_cost_micros_diff"]

    # EUR 92.00 pulled (USD 100 at 0.92) and converted back through the FX table for the USD account.
    assert report_cost() == (100_000_000, 100_000_000)
    admin = api.admin()
    expect(api.client.put("/api/v1/fx-rates/EUR", headers=admin.headers, json={"units_per_usd": "0.80"}), 200)
    assert report_cost() == (115_000_000, 115_000_000)  # EUR 92.00 at 0.80 per USD


def test_a_campaign_from_adstacks_own_link_is_matched(api: Api, advertiser: Actor, settings: Settings) -> None:
    settings.outbound_allowed_networks = "127.0.0.1/32"
    app = expect(
        api.client.post(
            "/api/v1/apps",
            headers=advertiser.headers,
            json={
                "package_name": "com.example.runner",
                "name": "Runner",
                "partner": "adjust",
                "partner_link_id": "abc1xyz",
            },
        ),
        201,
    )
    template = expect(api.client.get(f"/api/v1/apps/{app['id']}/integrations/adjust", headers=advertiser.headers), 200)[
        "tracking_link_template"
    ]
    camp = campaign(api, advertiser, name="Runner installs", package_name="com.example.runner")
    group = ad_group(api, advertiser, camp["id"], targeting={"countries": ["ID"]})
    made = creative(api, advertiser, group["id"])
    link = expand_macros(
        template,
        click_id="c1",
        gaid="38400000-8cf0-11bd-b23e-10b96e40000d",
        campaign_id=camp["id"],
        ad_group_id=group["id"],
        creative_id=made["id"],
    )
    labels = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
    # Adjust names the tracker's sub-levels after the link's campaign, adgroup and creative values.
    row = {
        "day": days_back(1),
        "campaign": labels["campaign"],
        "adgroup": labels["adgroup"],
        "creative": labels["creative"],
        "country_code": "ID",
        "installs": 25,
        "network_cost": "5",
    }
    fake = FakeAdjust.single(TOKEN, {APP_TOKEN: [row]}).start()
    try:
        _pull(api, advertiser, _connect(api.client, advertiser, fake))
    finally:
        fake.stop()
    stored = api.session.scalars(select(PartnerMetricRow)).one()
    assert (stored.campaign_id, stored.ad_group_id, stored.creative_id) == (camp["id"], group["id"], made["id"])
    assert stored.country == "ID"


def test_backs_off_on_429_then_succeeds(api: Api, connected: int, advertiser: Actor, fake_adjust: FakeAdjust) -> None:
    fake_adjust.rate_limit_first = True
    run = _pull(api, advertiser, connected)
    assert run["status"] == "succeeded" and run["attempts"] == 2
    assert [r["params"]["app_token__in"] for r in fake_adjust.requests] == [APP_TOKEN, APP_TOKEN]


def test_empty_answer_is_204_and_a_disabled_binding_is_skipped(api: Api, connected: int, advertiser: Actor) -> None:
    apps = expect(api.client.get(f"/api/v1/connectors/{connected}/apps", headers=advertiser.headers), 200)
    assert "time zone" in apps["notice"]
    binding_id = apps["items"][0]["id"]
    edited = expect(
        api.client.patch(
            f"/api/v1/connectors/apps/{binding_id}",
            headers=advertiser.headers,
            json={"enabled": False, "attribution_types": ["engaged_ad"]},
        ),
        200,
    )
    assert (edited["enabled"], edited["attribution_types"]) == (False, ["engaged_ad"])
    expect(
        api.client.post(
            f"/api/v1/connectors/{connected}/apps", headers=advertiser.headers, json={"app_token": "emptyapp1"}
        ),
        201,
    )
    run = _pull(api, advertiser, connected)
    assert run["status"] == "succeeded" and run["rows"] == 0


def test_bad_token_is_a_clear_error_kept_on_the_connection(
    api: Api, advertiser: Actor, fake_adjust: FakeAdjust
) -> None:
    api.client.app.state.settings.adjust_api_url = fake_adjust.url  # type: ignore[attr-defined]
    connection = expect(
        api.client.post(
            "/api/v1/connectors", headers=advertiser.headers, json={"name": "typo", "api_token": "wrong-token-000"}
        ),
        201,
    )
    expect(
        api.client.post(
            f"/api/v1/connectors/{connection['id']}/apps", headers=advertiser.headers, json={"app_token": APP_TOKEN}
        ),
        201,
    )
    error = _pull(api, advertiser, connection["id"], 400)["error"]
    assert "401" in error["message"] and "API token" in error["message"]
    shown = expect(api.client.get(f"/api/v1/connectors/{connection['id']}", headers=advertiser.headers), 200)
    assert shown["status"] == "error" and "401" in shown["last_error"]


def test_foreign_app_token_is_a_clear_403_error(api: Api, connected: int, advertiser: Actor) -> None:
    expect(
        api.client.post(
            f"/api/v1/connectors/{connected}/apps", headers=advertiser.headers, json={"app_token": "notmine99"}
        ),
        201,
    )
    run = _pull(api, advertiser, connected)
    # The owned app still pulled; the foreign one reports why it did not.
    assert run["rows"] == 3 and "403" in run["error"] and "notmine99" in run["error"]
    apps = expect(api.client.get(f"/api/v1/connectors/{connected}/apps", headers=advertiser.headers), 200)
    assert any("403" in b["last_error"] for b in apps["items"])


def test_binding_settings_outside_adjusts_lists_are_refused_by_name(
    api: Api, connected: int, advertiser: Actor
) -> None:
    url = f"/api/v1/connectors/{connected}/apps"
    for body, field in (
        ({"app_token": "app2x", "attribution_types": ["all"]}, "attribution_types.0"),
        ({"app_token": "app2x", "reattributed": "yes"}, "reattributed"),
        ({"app_token": "app2x", "ad_spend_mode": "cost"}, "ad_spend_mode"),
        ({"app_token": "app2x", "currency": "usd"}, "currency"),
        ({"app_token": APP_TOKEN}, "app_token"),
    ):
        error = expect(api.client.post(url, headers=advertiser.headers, json=body), 422)["error"]
        assert error["fields"][0]["field"] == field, body


def test_other_tenants_cannot_see_or_pull(api: Api, connected: int) -> None:
    stranger = api.approved_account()
    assert api.client.get(f"/api/v1/connectors/{connected}", headers=stranger.headers).status_code == 404
    assert api.client.post(f"/api/v1/connectors/{connected}/pull", headers=stranger.headers, json={}).status_code == 404
    assert api.client.get(f"/api/v1/connectors/{connected}/last-pull", headers=stranger.headers).status_code == 404
    assert expect(api.client.get("/api/v1/connectors", headers=stranger.headers), 200) == []


def test_the_last_pull_shows_its_numbers_beside_adstacks(
    api: Api, connected: int, advertiser: Actor, campaign_id: int
) -> None:
    assert (
        expect(api.client.get(f"/api/v1/connectors/{connected}/last-pull", headers=advertiser.headers), 200)["run"]
        is None
    )
    _pull(api, advertiser, connected)
    summary = expect(api.client.get(f"/api/v1/connectors/{connected}/last-pull", headers=advertiser.headers), 200)
    assert len(summary["rows"]) == 3 and {r["country"] for r in summary["rows"]} == {"ID", "IN", "BR"}
    (row,) = summary["comparison"]["rows"]
    assert (row["campaign_id"], row["installs"], row["adjust_installs"], row["adjust_installs_diff"]) == (
        campaign_id,
        0,
        200,
        200,
    )


def test_an_injected_transport_stands_in_for_the_network() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json={
                "rows": [{"day": "2024-05-01", "campaign": "Spring push (7)", "country_code": "id", "installs": "12"}]
            },
        )

    connector = AdjustReportConnector(transport=httpx.MockTransport(answer), sleep=lambda _: None)
    rows = connector.fetch(
        token=TOKEN, binding=BindingSettings(app_token=APP_TOKEN), date_from=date(2024, 5, 1), date_to=date(2024, 5, 1)
    )
    assert [(r.campaign_label, r.country, r.metrics["installs"]) for r in rows] == [("Spring push (7)", "ID", "12")]
    assert seen[0].url.host == "automate.adjust.com" and seen[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert "X-Account-ID" not in seen[0].headers


def test_rows_of_other_partners_are_dropped_even_when_adjust_sends_them() -> None:
    """The filter asks for adstack's rows only; a row naming organic installs or another partner is not ours."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        base = {"day": "2024-05-01", "campaign": "Spring push (7)", "country_code": "ID"}
        return httpx.Response(200, json={"rows": [
            {**base, "partner_name": "adstack", "installs": "12"},
            {**base, "partner_name": "Google Ads", "installs": "500"},
            {**base, "partner_name": "Organic", "installs": "900"},
            {**base, "installs": "7"},  # no partner named: not known to be ours
        ]})

    connector = AdjustReportConnector(transport=httpx.MockTransport(answer), sleep=lambda _: None)
    rows = connector.fetch(token=TOKEN, binding=BindingSettings(app_token=APP_TOKEN, media_source="AdStack"),
                           date_from=date(2024, 5, 1), date_to=date(2024, 5, 1))
    assert [r.metrics["installs"] for r in rows] == ["12"]
    assert parse_qs(urlsplit(str(seen[0].url)).query)["partner_name__in"] == ["AdStack"]


def test_a_loopback_partner_url_is_refused_unless_allowed(
    api: Api, connected: int, advertiser: Actor, fake_adjust: FakeAdjust, settings: Settings
) -> None:
    settings.outbound_allowed_networks = ""
    error = _pull(api, advertiser, connected, 400)["error"]
    assert error["message"] == "Adjust could not be reached"  # no address, port or reason
    assert fake_adjust.requests == []
    # A forbidden destination stays forbidden: one attempt, not five with backoff in between.
    runs = expect(api.client.get(f"/api/v1/connectors/{connected}/runs", headers=advertiser.headers), 200)
    assert [(r["status"], r["attempts"]) for r in runs] == [("failed", 1)]


def test_partner_columns_join_by_ad_group_creative_and_country(api: Api, advertiser: Actor, settings: Settings) -> None:
    settings.outbound_allowed_networks = "127.0.0.1/32"
    app = expect(
        api.client.post(
            "/api/v1/apps",
            headers=advertiser.headers,
            json={
                "package_name": "com.example.runner",
                "name": "Runner",
                "partner": "adjust",
                "partner_link_id": "abc1xyz",
            },
        ),
        201,
    )
    template = expect(api.client.get(f"/api/v1/apps/{app['id']}/integrations/adjust", headers=advertiser.headers), 200)[
        "tracking_link_template"
    ]
    camp = campaign(api, advertiser, name="Runner installs", package_name="com.example.runner")
    groups = [
        ad_group(api, advertiser, camp["id"], name=f"Group {n}", targeting={"countries": ["ID", "IN"]}) for n in (1, 2)
    ]
    made = [creative(api, advertiser, g["id"]) for g in groups]

    def labels(n: int) -> dict[str, str]:
        link = expand_macros(
            template,
            click_id="c1",
            gaid="38400000-8cf0-11bd-b23e-10b96e40000d",
            campaign_id=camp["id"],
            ad_group_id=groups[n]["id"],
            creative_id=made[n]["id"],
        )
        return {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}

    # (ad group index, country) -> (Adjust's installs, cost and revenue in USD, adstack's own installs)
    cells = {(0, "ID"): (30, "3", "6", 28), (0, "IN"): (10, "1", "1", 10), (1, "ID"): (5, "2", "1", 7)}
    rows = [
        {
            "day": days_back(1),
            "campaign": labels(n)["campaign"],
            "adgroup": labels(n)["adgroup"],
            "creative": labels(n)["creative"],
            "country_code": country,
            "installs": installs,
            "network_cost": cost,
            "all_revenue": revenue,
        }
        for (n, country), (installs, cost, revenue, _) in cells.items()
    ]
    at = datetime.combine(date.fromisoformat(days_back(1)), time(12), tzinfo=UTC)
    get_event_store(settings).append(
        [
            Event(
                event_id=f"ins-{n}-{country}-{i}",
                event_type=EventType.INSTALL,
                occurred_at=at,
                account_id=advertiser.account_id or 0,
                campaign_id=camp["id"],
                ad_group_id=groups[n]["id"],
                creative_id=made[n]["id"],
                country=country,
                conversion_event="INSTALL",
                attribution_type="click",
            )
            for (n, country), (*_, ours) in cells.items()
            for i in range(ours)
        ]
    )
    fake = FakeAdjust.single(TOKEN, {APP_TOKEN: rows}).start()
    try:
        _pull(api, advertiser, _connect(api.client, advertiser, fake))
    finally:
        fake.stop()

    def report(**params: Any) -> Any:
        return expect(
            api.client.get(
                "/api/v1/reports",
                headers=advertiser.headers,
                params={
                    "start_date": days_back(1),
                    "end_date": days_back(1),
                    "metrics": "installs",
                    "time_zone": "UTC",
                    "extra_columns": ["adjust_installs", "adjust_roi"],
                    **params,
                },
            ),
            200,
        )

    def cells_of(body: Any, *keys: str) -> dict[tuple[Any, ...], tuple[Any, ...]]:
        return {
            tuple(r[k] for k in keys): (r["installs"], r["adjust_installs"], r["adjust_installs_diff"], r["adjust_roi"])
            for r in body["rows"]
        }

    by_creative_country = report(granularity="day", dimensions=["creative", "country"])
    assert cells_of(by_creative_country, "creative_id", "country") == {
        (made[0]["id"], "ID"): (28, 30, 2, "2"),
        (made[0]["id"], "IN"): (10, 10, 0, "1"),
        (made[1]["id"], "ID"): (7, 5, -2, "0.5"),
    }
    assert by_creative_country["totals"]["adjust_installs"] == 45
    # Summed over days (no date dimension), a ratio is not one partner cell, so it is left empty.
    assert cells_of(report(dimensions="ad_group"), "ad_group_id") == {
        (groups[0]["id"],): (38, 40, 2, None),
        (groups[1]["id"],): (7, 5, -2, None),
    }
    assert cells_of(report(granularity="day", dimensions="country"), "country") == {
        ("ID",): (35, 35, 0, None),
        ("IN",): (10, 10, 0, None),
    }
    # A filter narrows the partner's figures as it narrows ours: one campaign on one day in India is one cell.
    only_india = report(granularity="day", dimensions="campaign", countries="IN")
    assert cells_of(only_india, "campaign_id") == {(camp["id"],): (10, 10, 0, "1")}
    assert only_india["totals"]["adjust_installs"] == 10
