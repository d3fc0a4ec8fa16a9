"""Onboarding as the Mi Ads guide describes it (1.2 Register a Mi Ads Account): the settlement table with its
contract versions and the Singapore exception, qualification documents before review, and documents kept,
downloaded and replaced through the API."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

from adstack.accounts.models import Role
from tests.console.support import csrf_from, png_bytes, registration_form
from tests.support import MINIMAL_PDF, Api, expect

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def _documents(api: Api, actor: Any, account_id: int) -> list[dict[str, Any]]:
    body: list[dict[str, Any]] = expect(
        api.client.get(f"/api/v1/accounts/{account_id}/documents", headers=actor.headers), 200
    )
    return body


# ---------- qualification documents ----------


def test_an_account_is_submitted_only_with_a_qualification_document(api: Api) -> None:
    advertiser = api.register()
    assert advertiser.account_id is not None
    url = f"/api/v1/accounts/{advertiser.account_id}/submit"
    refused = expect(api.client.post(url, headers=advertiser.headers), 409)
    assert refused["error"]["code"] == "qualification_document_required"
    field = refused["error"]["fields"][0]
    assert field["field"] == "documents" and field["rule"] == "qualification_document_required"
    assert "business_license" in field["limit"] and field["actual"] == []
    account = expect(api.client.get(f"/api/v1/accounts/{advertiser.account_id}", headers=advertiser.headers), 200)
    assert account["review_status"] == "to_be_submitted"

    # The agency's shop screenshot alone does not qualify an advertiser.
    api.upload_document(advertiser, advertiser.account_id, "getapps_shop_screenshot")
    expect(api.client.post(url, headers=advertiser.headers), 409)
    api.upload_document(advertiser, advertiser.account_id, "industry_qualification")
    assert expect(api.client.post(url, headers=advertiser.headers), 200)["review_status"] == "under_review"


def test_a_core_agency_also_uploads_its_getapps_shop_screenshot_unless_its_account_manager_submits(api: Api) -> None:
    agency = api.register(type="agency")
    assert agency.account_id is not None
    url = f"/api/v1/accounts/{agency.account_id}/submit"
    api.upload_document(agency, agency.account_id)
    refused = expect(api.client.post(url, headers=agency.headers), 409)
    assert refused["error"]["code"] == "getapps_shop_screenshot_required"
    assert refused["error"]["fields"][0]["limit"] == ["getapps_shop_screenshot"]

    # "you can contact the relevant sales team and AM": the account manager submits without the screenshot.
    manager = api.admin(role=Role.ACCOUNT_MANAGER)
    assert expect(api.client.post(url, headers=manager.headers), 200)["review_status"] == "under_review"

    other = api.register(type="agency")
    assert other.account_id is not None
    api.upload_document(other, other.account_id)
    screenshot = api.upload_document(other, other.account_id, "getapps_shop_screenshot")
    assert screenshot["kind"] == "getapps_shop_screenshot"
    expect(api.client.post(f"/api/v1/accounts/{other.account_id}/submit", headers=other.headers), 200)


def test_documents_download_as_attachments_of_their_sniffed_type(api: Api) -> None:
    advertiser = api.register()
    uploaded = expect(
        api.client.post(
            f"/api/v1/accounts/{advertiser.account_id}/documents",
            headers=advertiser.headers,
            data={"kind": "business_license"},
            # A PDF that claims to be HTML: what it is decides how it is served.
            files={"file": ("licence.html", MINIMAL_PDF, "text/html")},
        ),
        201,
    )
    assert uploaded["content_type"] == "application/pdf"
    answer = api.client.get(
        f"/api/v1/accounts/{advertiser.account_id}/documents/{uploaded['id']}", headers=advertiser.headers
    )
    assert answer.status_code == 200
    assert answer.content == MINIMAL_PDF
    assert answer.headers["content-type"] == "application/pdf"
    assert answer.headers["content-disposition"].startswith("attachment")
    assert answer.headers["x-content-type-options"] == "nosniff"

    # Platform staff read it too.
    reviewer = api.admin(role=Role.REVIEWER)
    staff = api.client.get(
        f"/api/v1/accounts/{advertiser.account_id}/documents/{uploaded['id']}", headers=reviewer.headers
    )
    assert staff.status_code == 200 and staff.content == MINIMAL_PDF


def test_a_document_is_replaced_in_place_and_refused_content_changes_nothing(api: Api) -> None:
    advertiser = api.register()
    assert advertiser.account_id is not None
    first = api.upload_document(advertiser, advertiser.account_id, "other")
    url = f"/api/v1/accounts/{advertiser.account_id}/documents/{first['id']}"
    replaced = expect(
        api.client.put(
            url,
            headers=advertiser.headers,
            data={"kind": "business_license"},
            files={"file": ("licence.png", PNG, "image/png")},
        ),
        200,
    )
    assert replaced["id"] == first["id"]
    assert (replaced["kind"], replaced["filename"], replaced["content_type"]) == (
        "business_license",
        "licence.png",
        "image/png",
    )
    assert replaced["sha256"] != first["sha256"]
    assert api.client.get(url, headers=advertiser.headers).content == PNG
    assert [d["id"] for d in _documents(api, advertiser, advertiser.account_id)] == [first["id"]]

    # Not a PDF, PNG or JPEG: refused, naming the field and the types allowed; the document stays as it was.
    refused = expect(
        api.client.put(
            url,
            headers=advertiser.headers,
            files={"file": ("page.html", b"<html><script>1</script></html>", "image/png")},
        ),
        422,
    )
    assert refused["error"]["fields"][0]["field"] == "file"
    assert refused["error"]["fields"][0]["limit"] == ["application/pdf", "image/jpeg", "image/png"]
    assert api.client.get(url, headers=advertiser.headers).content == PNG


def test_another_tenants_documents_are_not_found(api: Api) -> None:
    owner = api.register()
    stranger = api.register()
    assert owner.account_id is not None and stranger.account_id is not None
    document = api.upload_document(owner, owner.account_id)
    theirs = f"/api/v1/accounts/{owner.account_id}/documents/{document['id']}"
    assert api.client.get(theirs, headers=stranger.headers).status_code == 404
    put = api.client.put(theirs, headers=stranger.headers, files={"file": ("x.png", PNG, "image/png")})
    assert put.status_code == 404
    # Their document id under the stranger's own account is not found either.
    mine = f"/api/v1/accounts/{stranger.account_id}/documents/{document['id']}"
    assert api.client.get(mine, headers=stranger.headers).status_code == 404
    assert (
        api.client.put(mine, headers=stranger.headers, files={"file": ("x.png", PNG, "image/png")}).status_code == 404
    )
    assert api.client.get(theirs, headers=owner.headers).content == MINIMAL_PDF
    assert api.client.get(theirs).status_code == 401


# ---------- settlement entities, currencies and contract versions ----------


def test_the_contract_version_comes_from_the_settlement_rule_not_the_client(api: Api) -> None:
    indonesia = api.register(
        country="ID", settlement_entity="Xiaomi Singapore", currency="USD", agreement_version="anything I like"
    )
    account = expect(api.client.get(f"/api/v1/accounts/{indonesia.account_id}", headers=indonesia.headers), 200)
    assert account["contract_version"] == "Xiaomi Singapore ID version"
    assert account["agreement_version"] != "anything I like"

    india = api.register(country="IN", settlement_entity="Xiaomi India", currency="INR")
    body = expect(api.client.get(f"/api/v1/accounts/{india.account_id}", headers=india.headers), 200)
    assert body["contract_version"] == "IN universal version"

    # Another country, with Xiaomi India in USD: the India contract; the entity change re-derives it.
    thai = api.register(country="TH", settlement_entity="Xiaomi India", currency="USD")
    url = f"/api/v1/accounts/{thai.account_id}"
    assert expect(api.client.get(url, headers=thai.headers), 200)["contract_version"] == "IN universal version"
    changed = expect(
        api.client.patch(url, headers=thai.headers, json={"settlement_entity": "Xiaomi Singapore", "currency": "CNY"}),
        200,
    )
    assert changed["contract_version"] == "Xiaomi Singapore universal version"

    rules = expect(api.client.get("/api/v1/settlement-rules", params={"country": "RU"}), 200)
    assert [(r["entity"], r["currency"], r["contract_version"]) for r in rules] == [
        ("Hong Kong iValley", "USD", "RU version")
    ]


def test_singapore_has_no_default_entity_until_an_operator_sets_its_rule(api: Api) -> None:
    assert expect(api.client.get("/api/v1/settlement-rules", params={"country": "SG"}), 200) == []
    body = api.registration(country="SG", settlement_entity="Xiaomi Singapore", currency="USD")
    refused = expect(api.client.post("/api/v1/auth/register", json=body), 422)
    field = refused["error"]["fields"][0]
    assert (field["field"], field["rule"], field["limit"]) == ("settlement_entity", "settlement_rule_set", [])
    india = api.registration(country="SG", settlement_entity="Xiaomi India", currency="INR")
    expect(api.client.post("/api/v1/auth/register", json=india), 422)

    manager = api.admin(role=Role.ACCOUNT_MANAGER)
    rule = {
        "country": "SG",
        "entity": "Xiaomi Singapore",
        "currency": "USD",
        "contract_version": "Xiaomi Singapore SG version",
        "agreement_url": "https://example.org/sg-agreement",
    }
    expect(api.client.post("/api/v1/settlement-rules", headers=manager.headers, json=rule), 201)
    duplicate = expect(api.client.post("/api/v1/settlement-rules", headers=manager.headers, json=rule), 409)
    assert duplicate["error"]["fields"][0]["field"] == "entity"
    # Only the operator's rule: the other countries' Xiaomi India options do not apply to Singapore.
    options = expect(api.client.get("/api/v1/settlement-rules", params={"country": "SG"}), 200)
    assert [(r["entity"], r["currency"], r["agreement_url"]) for r in options] == [
        ("Xiaomi Singapore", "USD", "https://example.org/sg-agreement")
    ]
    expect(api.client.post("/api/v1/auth/register", json=india), 422)
    singapore = api.register(country="SG", settlement_entity="Xiaomi Singapore", currency="USD")
    account = expect(api.client.get(f"/api/v1/accounts/{singapore.account_id}", headers=singapore.headers), 200)
    assert account["contract_version"] == "Xiaomi Singapore SG version"


def test_registration_asks_for_entity_and_currency_and_never_guesses(api: Api) -> None:
    for missing in ("settlement_entity", "currency"):
        body = api.registration()
        body.pop(missing)
        refused = expect(api.client.post("/api/v1/auth/register", json=body), 422)
        assert [f["field"] for f in refused["error"]["fields"]] == [missing]
    wrong_currency = expect(
        api.client.post(
            "/api/v1/auth/register",
            json=api.registration(country="IN", settlement_entity="Xiaomi India", currency="USD"),
        ),
        422,
    )
    assert wrong_currency["error"]["fields"][0]["field"] == "currency"
    assert wrong_currency["error"]["fields"][0]["limit"] == ["Xiaomi India/INR"]


def test_countries_are_iso_3166_codes(api: Api) -> None:
    refused = expect(api.client.post("/api/v1/auth/register", json=api.registration(country="XX")), 422)
    assert refused["error"]["fields"][0]["field"] == "country"
    manager = api.admin(role=Role.ACCOUNT_MANAGER)
    bad_rule = api.client.post(
        "/api/v1/settlement-rules",
        headers=manager.headers,
        json={"country": "XX", "entity": "Xiaomi Singapore", "currency": "USD", "contract_version": "v"},
    )
    assert bad_rule.status_code == 422


# ---------- the console's registration form ----------


def test_the_registration_form_preselects_no_country_entity_or_currency(client: TestClient) -> None:
    page = client.get("/console/register").text
    assert re.search(r'<option value="" selected>\s*Choose the country or region', page)
    assert re.search(r'<select id="settlement"[^>]*>\s*<option value="">Choose the country or region first', page)
    assert "selected" not in page.split('id="settlement"', 1)[1].split("</select>", 1)[0]

    singapore = client.get("/console/register/settlement", params={"country": "SG"}).text
    assert "No settlement entity is set up for this country or region yet" in singapore
    assert "Xiaomi" not in singapore
    thailand = client.get("/console/register/settlement", params={"country": "TH"}).text
    assert re.search(r'<option value="" selected>Choose the settlement entity and currency', thailand)
    assert 'value="Xiaomi India|INR"' in thailand and 'value="Xiaomi India|INR" selected' not in thailand

    # Posting without a choice is refused, naming the fields; nothing is registered.
    form = {**registration_form(901, settlement=""), "csrf_token": csrf_from(page)}
    refused = client.post(
        "/console/register",
        data=form,
        follow_redirects=False,
        files={"document": ("licence.png", png_bytes(40, 40), "image/png")},
    )
    assert refused.status_code == 422
    assert 'data-error-for="settlement_entity"' in refused.text


def test_the_agreement_beside_the_checkbox_is_the_chosen_entitys(api: Api, client: TestClient) -> None:
    india = client.get("/console/register/agreement", params={"country": "TH", "settlement": "Xiaomi India|USD"})
    assert 'data-contract-version="IN universal version"' in india.text
    assert "data-agreement-link" not in india.text  # no address published for it yet
    nothing = client.get("/console/register/agreement", params={"country": "SG", "settlement": "Xiaomi India|USD"})
    assert "data-contract-version" not in nothing.text

    manager = api.admin(role=Role.ACCOUNT_MANAGER)
    expect(
        api.client.post(
            "/api/v1/settlement-rules",
            headers=manager.headers,
            json={
                "country": "SG",
                "entity": "Xiaomi Singapore",
                "currency": "USD",
                "contract_version": "SG version",
                "agreement_url": "https://example.org/agreements/sg",
            },
        ),
        201,
    )
    singapore = client.get(
        "/console/register/agreement", params={"country": "SG", "settlement": "Xiaomi Singapore|USD"}
    ).text
    assert 'href="https://example.org/agreements/sg"' in singapore and 'data-contract-version="SG version"' in singapore
