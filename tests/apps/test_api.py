"""Advertised apps over the API: CRUD, tenancy, validation, event mappings and the nine partner integrations."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from adstack.core.vocabulary import Partner
from tests.support import Api, expect

APP = {"package_name": "com.example.runner", "name": "Runner", "partner": "appsflyer"}


def test_create_read_update_delete_with_defaults_and_oplog(api: Api) -> None:
    adv = api.approved_account()
    app = expect(api.client.post("/api/v1/apps", headers=adv.headers, json=APP), 201)
    assert (
        app["click_lookback_days"],
        app["view_through_enabled"],
        app["view_through_hours"],
        app["reattribution_window_days"],
        app["event_window_days"],
    ) == (7, True, 24, 90, None)
    assert app["account_id"] == adv.account_id
    expect(api.client.post("/api/v1/apps", headers=adv.headers, json=APP), 409)
    changed = expect(
        api.client.patch(
            f"/api/v1/apps/{app['id']}", headers=adv.headers, json={"click_lookback_days": 14, "partner": "adjust"}
        ),
        200,
    )
    assert changed["click_lookback_days"] == 14 and changed["partner"] == "adjust"
    assert changed["view_through_hours"] == 24  # fields not sent are kept
    listed = expect(api.client.get("/api/v1/apps", headers=adv.headers), 200)
    assert [a["id"] for a in listed] == [app["id"]]
    expect(api.client.delete(f"/api/v1/apps/{app['id']}", headers=adv.headers), 204)
    expect(api.client.get(f"/api/v1/apps/{app['id']}", headers=adv.headers), 404)
    log = expect(api.client.get("/api/v1/operation-logs", headers=adv.headers, params={"object_type": "app"}), 200)
    operations = sorted(item["operation"] for item in log["items"])
    assert operations == ["create", "delete", "update"]
    update = next(i for i in log["items"] if i["operation"] == "update")
    assert {c["field"] for c in update["changes"]} == {"click_lookback_days", "partner"}


def test_settings_are_bounded_and_named(api: Api) -> None:
    adv = api.approved_account()
    error = expect(
        api.client.post(
            "/api/v1/apps",
            headers=adv.headers,
            json={**APP, "click_lookback_days": 31, "package_name": "not a package", "partner": "nobody"},
        ),
        422,
    )["error"]
    fields = {f["field"]: f for f in error["fields"]}
    assert fields["click_lookback_days"]["limit"] == 30
    assert {"package_name", "partner"} <= set(fields)
    app = expect(api.client.post("/api/v1/apps", headers=adv.headers, json=APP), 201)
    error = expect(
        api.client.put(
            f"/api/v1/apps/{app['id']}/event-mappings",
            headers=adv.headers,
            json={"mappings": [{"source_name": "x", "event": "NOT_AN_EVENT"}]},
        ),
        422,
    )["error"]
    assert error["fields"][0]["field"].startswith("mappings.0.event")


def test_other_tenants_apps_answer_404(api: Api) -> None:
    admin = api.admin()
    owner = api.approved_account(admin)
    other = api.approved_account(admin)
    app = expect(api.client.post("/api/v1/apps", headers=owner.headers, json=APP), 201)
    for method, suffix in (
        ("get", ""),
        ("patch", ""),
        ("delete", ""),
        ("get", "/integrations"),
        ("get", "/integrations/appsflyer"),
        ("get", "/event-mappings"),
        ("get", "/postbacks"),
    ):
        response = api.client.request(
            method.upper(),
            f"/api/v1/apps/{app['id']}{suffix}",
            headers=other.headers,
            json={} if method == "patch" else None,
        )
        assert response.status_code == 404, (method, suffix, response.text)
    assert expect(api.client.get("/api/v1/apps", headers=other.headers), 200) == []
    assert [a["id"] for a in expect(api.client.get("/api/v1/apps", headers=admin.headers), 200)] == [app["id"]]


def test_agency_manages_its_sub_accounts_apps(api: Api) -> None:
    admin = api.admin()
    agency = api.approved_account(admin, type="agency")
    sub_id = api.sub_account(agency, admin)
    app = expect(api.client.post("/api/v1/apps", headers=agency.headers, json={**APP, "account_id": sub_id}), 201)
    assert app["account_id"] == sub_id
    outsider = api.approved_account(admin)
    expect(api.client.post("/api/v1/apps", headers=outsider.headers, json={**APP, "account_id": sub_id}), 404)


EXPECTED_PARAMETERS = {
    Partner.APPSFLYER: ("clickid", "advertising_id"),
    Partner.ADJUST: ("label", "gps_adid"),
    Partner.APPMETRICA: ("click_id", "google_aid"),
    Partner.BRANCH: ("~click_id", "%24aaid"),
    Partner.SINGULAR: ("cl", "aifa"),
    Partner.KOCHAVA: ("click_id", "device_id"),
    Partner.TENJIN: ("click_id", "advertising_id"),
    Partner.MYTRACKER: ("mt_sub1", "mt_gaid"),
    Partner.AIRBRIDGE: ("click_id", "gaid_raw"),
}
POSTBACK_MACROS = {
    Partner.APPSFLYER: "(clickid)",
    Partner.ADJUST: "{gps_adid}",
    Partner.APPMETRICA: "ext={click_id}",
    Partner.BRANCH: "${(id)!}",
    Partner.SINGULAR: "{EVTNAME}",
    Partner.KOCHAVA: "{event_name}",
    Partner.TENJIN: "{{advertising_id}}",
    Partner.MYTRACKER: "{mt_gaid}",
    Partner.AIRBRIDGE: "{@postback.eventName}",
}


def test_integrations_for_all_nine_partners(api: Api) -> None:
    adv = api.approved_account()
    app = expect(
        api.client.post(
            "/api/v1/apps",
            headers=adv.headers,
            json={**APP, "partner": "appmetrica", "partner_link_id": "1019409635088005254", "click_lookback_days": 10},
        ),
        201,
    )
    integrations = expect(api.client.get(f"/api/v1/apps/{app['id']}/integrations", headers=adv.headers), 200)
    assert integrations[0]["partner"] == "appmetrica"  # the chosen partner first
    assert {i["partner"] for i in integrations} == {p.value for p in Partner}
    for item in integrations:
        partner = Partner(item["partner"])
        click_param, gaid_param = EXPECTED_PARAMETERS[partner]
        link = item["tracking_link_template"]
        assert f"{click_param}={{click_id}}" in link and f"{gaid_param}={{gaid}}" in link, link
        postback = item["postback_url_template"]
        query = parse_qs(urlsplit(postback).query)
        assert query["partner"] == [partner.value] and query["app"] == [str(app["id"])] and query["sig"]
        assert POSTBACK_MACROS[partner] in postback
        assert any(postback in step for step in item["steps"]) and any(link in step for step in item["steps"])
        assert any("10 days" in step for step in item["steps"])
        assert item["event_mapping"]["af_purchase"] == "PURCHASE"
    appmetrica = expect(api.client.get(f"/api/v1/apps/{app['id']}/integrations/appmetrica", headers=adv.headers), 200)
    assert appmetrica["tracking_link_template"].startswith(
        "https://redirect.appmetrica.yandex.com/serve/1019409635088005254?click_id={click_id}&google_aid={gaid}"
    )
    assert "/track/m3rd/v1.0?partner=appmetrica&app=" in appmetrica["postback_url_template"]
    assert "&ext={click_id}&gaid={google_aid}" in appmetrica["postback_url_template"]
    expect(api.client.get(f"/api/v1/apps/{app['id']}/integrations/nobody", headers=adv.headers), 422)


def test_event_mappings_replace_and_lead_the_effective_mapping(api: Api) -> None:
    adv = api.approved_account()
    app = expect(api.client.post("/api/v1/apps", headers=adv.headers, json={**APP, "partner": "adjust"}), 201)
    body = {
        "mappings": [
            {"source_name": "abc123", "event": "PURCHASE"},
            {
                "source_name": "lvl",
                "event": "LEVEL_ACHIEVED",
                "conditions": [{"param": "level", "op": "eq", "value": "10"}],
            },
            {"source_name": "af_purchase", "event": "FIRST_PURCHASE"},
        ]
    }
    rows = expect(api.client.put(f"/api/v1/apps/{app['id']}/event-mappings", headers=adv.headers, json=body), 200)
    assert [(r["position"], r["source_name"]) for r in rows] == [(0, "abc123"), (1, "lvl"), (2, "af_purchase")]
    assert rows[1]["conditions"] == [{"param": "level", "op": "eq", "value": "10"}]
    effective = expect(api.client.get(f"/api/v1/apps/{app['id']}/integrations/adjust", headers=adv.headers), 200)[
        "event_mapping"
    ]
    assert effective["abc123"] == "PURCHASE" and effective["af_purchase"] == "FIRST_PURCHASE"
    expect(api.client.put(f"/api/v1/apps/{app['id']}/event-mappings", headers=adv.headers, json={"mappings": []}), 200)
    assert expect(api.client.get(f"/api/v1/apps/{app['id']}/event-mappings", headers=adv.headers), 200) == []


def test_links_need_the_tracker_id_and_registered_partners_say_so(api: Api) -> None:
    adv = api.approved_account()
    app = expect(api.client.post("/api/v1/apps", headers=adv.headers, json={**APP, "partner": "appmetrica"}), 201)
    appmetrica = expect(api.client.get(f"/api/v1/apps/{app['id']}/integrations/appmetrica", headers=adv.headers), 200)
    assert appmetrica["tracking_link_template"] is None and appmetrica["view_through_link_template"] is None
    assert appmetrica["missing"] == ["partner_link_id: the AppMetrica tracker id"]
    assert not any("TRACKING_ID" in step for step in appmetrica["steps"])
    appsflyer = expect(api.client.get(f"/api/v1/apps/{app['id']}/integrations/appsflyer", headers=adv.headers), 200)
    assert appsflyer["requires_network_registration"] and appsflyer["network_name"] == "adstack_int"
    assert appsflyer["view_through_link_template"].startswith("https://impression.appsflyer.com/com.example.runner")
    assert "(is_attributed)" in appsflyer["postback_url_template"]
    changed = expect(
        api.client.patch(
            f"/api/v1/apps/{app['id']}",
            headers=adv.headers,
            json={"partner_link_id": "myapp", "partner_network_name": "xiaomiglobal"},
        ),
        200,
    )
    assert changed["partner_network_name"] == "xiaomiglobal"
    airbridge = expect(api.client.get(f"/api/v1/apps/{app['id']}/integrations/airbridge", headers=adv.headers), 200)
    link = airbridge["tracking_link_template"]
    assert link.startswith("https://abr.ge/@myapp/xiaomiglobal?") and "ad_id={gaid}" in link
    assert "ad_creative_id={creative_id}" in link and link.endswith("ad_type=click")
    assert airbridge["view_through_link_template"].endswith("ad_type=view")
    singular = expect(api.client.get(f"/api/v1/apps/{app['id']}/integrations/singular", headers=adv.headers), 200)
    assert "is_ours={NETWORK=xiaomiglobal}" in singular["postback_url_template"]
