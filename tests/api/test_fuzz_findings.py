"""What the OpenAPI fuzz found, kept as plain regression tests so each stays fixed even when a fuzz run does not
happen to draw the same input again."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from adstack.core.ids import MAX_ID
from tests.campaigns.helpers import ad_space, publisher
from tests.support import Api


def test_a_tracking_token_with_a_non_ascii_signature_is_refused_not_unavailable(client: TestClient) -> None:
    # The MAC comparison raised TypeError on non-ASCII text, which the tracking path answered 503.
    for path in ("/t/click", "/t/imp"):
        response = client.get(path, params={"t": "AAAA.é"}, follow_redirects=False)
        assert response.status_code < 500, (path, response.status_code, response.text)
        documented = client.get("/openapi.json").json()["paths"][path]["get"]["responses"]
        assert str(response.status_code) in documented, (path, response.status_code, sorted(documented))


UNICODE_DIGITS = ("²", "①", "٣", "１２")  # str.isdigit() holds for each; int() reads only the last two


def test_searches_for_unicode_digits_answer_rather_than_fail(api: Api) -> None:
    """The long fuzz searched the media library for '²': `query.isdigit()` let it through to `int()`, a 500."""
    admin = api.admin()
    adv = api.approved_account(admin)
    searches = ["/api/v1/media", "/api/v1/creatives", "/api/v1/campaigns", "/api/v1/ad-groups", "/api/v1/accounts",
                "/api/v1/publishers", "/api/v1/ad-spaces", "/api/v1/operation-logs",
                "/api/v1/audiences"]
    for path in searches:
        for text in UNICODE_DIGITS:
            for actor in (admin, adv):
                response = api.client.get(path, params={"q": text}, headers=actor.headers)
                assert response.status_code in (200, 403), (path, text, response.status_code, response.text)


def test_unicode_digits_in_ad_requests_and_bids_are_not_errors(api: Api) -> None:
    admin = api.admin()
    pub = publisher(api, admin)
    space = ad_space(api, admin, pub["id"])
    api.client.app.state.serving.refresh(force=True)  # type: ignore[attr-defined]
    for text in UNICODE_DIGITS:
        ad = api.client.post("/v1/ads", json={"ad_space_id": space["id"], "device": {"os_version": f"{text}.0"}})
        assert ad.status_code == 200, (text, ad.status_code, ad.text)
        bid = api.client.post("/openrtb2/bid", json={
            "id": "r1", "imp": [{"id": "1", "tagid": text, "banner": {"w": 320, "h": 50}}],
            "app": {"id": "a", "bundle": "com.example"}, "device": {"ua": "x", "ip": "203.0.113.9"}})
        assert bid.status_code in (200, 204), (text, bid.status_code, bid.text)


def test_an_id_past_the_databases_integer_is_refused_by_name(api: Api) -> None:
    """The long fuzz created a sub-account under parent agency 2**63: the driver could not bind it, a 500."""
    admin = api.admin()
    body = {"company_name": "Too Far Ltd", "contact_email": "far@example.com", "contact_name": "Far", "country": "ID",
            "currency": "USD", "settlement_entity": "*", "type": "advertiser", "parent_agency_id": MAX_ID + 1}
    response = api.client.post("/api/v1/accounts", json=body, headers=admin.headers)
    assert response.status_code == 422, response.text
    fields = response.json()["error"]["fields"]
    assert [(f["field"], f["rule"], f["limit"]) for f in fields if f["field"] == "parent_agency_id"] == [
        ("parent_agency_id", "less_than_equal", MAX_ID)]


def _integers_without_a_maximum(spec: dict[str, Any]) -> list[str]:
    components = spec["components"]["schemas"]
    found: list[str] = []

    def walk(schema: dict[str, Any], where: str, seen: set[str]) -> None:
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            if name not in seen:
                walk(components[name], name, seen | {name})
            return
        for key in ("anyOf", "oneOf", "allOf"):
            for option in schema.get(key, []):
                walk(option, where, seen)
        if schema.get("type") == "integer" and "maximum" not in schema:
            found.append(where)
        for name, prop in schema.get("properties", {}).items():
            walk(prop, f"{where}.{name}", seen)
        if isinstance(schema.get("items"), dict):
            walk(schema["items"], f"{where}[]", seen)
        if isinstance(schema.get("additionalProperties"), dict):
            walk(schema["additionalProperties"], f"{where}{{}}", seen)

    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                walk(parameter.get("schema", {}), f"{method} {path} {parameter['name']}", set())
            for content in operation.get("requestBody", {}).get("content", {}).values():
                walk(content.get("schema", {}), f"{method} {path} body", set())
    return sorted(set(found))


def test_every_integer_a_request_takes_has_a_maximum(client: TestClient) -> None:
    """An unbounded integer reaches the driver, which cannot bind one past 64 bits: each one the API takes, in a
    path, a query or a body, declares the largest it accepts."""
    assert _integers_without_a_maximum(client.get("/openapi.json").json()) == []


DEEP = b'{"ad_space_id": 1, "device": {"gaid": "x"}, "extra": ' + b"[" * 5000 + b"]" * 5000 + b"}"


def test_json_nested_past_the_decoders_depth_is_a_400_everywhere(client: TestClient) -> None:
    """msgspec raises RecursionError, not a DecodeError, past its depth: the ad and bid fast paths answered 500."""
    headers = {"content-type": "application/json"}
    for path in ("/v1/ads", "/openrtb2/bid", "/track/m3rd/v1.0", "/api/v1/auth/login"):
        response = client.post(path, content=DEEP, headers=headers)
        assert response.status_code == 400, (path, response.status_code, response.text)
        assert response.json()["error"]["message"], path
    for path in ("/v1/ads", "/api/v1/auth/login"):  # the framework's "error parsing the body", made specific
        for body in (DEEP, b'{"ad_space_id": 1, "x": "\xff\xfe"}'):
            error = client.post(path, content=body, headers=headers).json()["error"]
            assert error["code"] == "malformed_json" and error["fields"][0]["field"] == "body", (path, error)


def test_an_ad_request_past_its_size_limit_is_a_413_however_it_is_sent(api: Api) -> None:
    """Past 64 KB the ad fast path hands the body to the route, which read all of it (5 MB answered 200); and a
    valid request padded past the cap, arriving whole, was served by the fast path itself."""
    from tests.serving.test_api import setup_serving_ad

    space = setup_serving_ad(api)["space"]["id"]
    client = api.client
    client.app.state.serving.refresh(force=True)  # type: ignore[attr-defined]
    assert client.post("/v1/ads", json={"ad_space_id": space}).status_code == 200
    padded = b'{"ad_space_id": ' + str(space).encode() + b" " * 200_000 + b"}"
    big = b'{"ad_space_id": 1, "pad": "' + b"x" * 5_000_000 + b'"}'
    for body in (padded, big):
        for content_type in ("application/json", "text/plain"):
            response = client.post("/v1/ads", content=body, headers={"content-type": content_type})
            assert response.status_code == 413, (content_type, response.status_code)
            assert "65536 bytes" in response.json()["error"]["message"]
        for split in (1_000, 40_000):
            chunked = client.post("/v1/ads", content=iter([body[:split], body[split:]]),
                                  headers={"content-type": "application/json"})
            assert chunked.status_code == 413, split
    documented = client.get("/openapi.json").json()["paths"]["/v1/ads"]["post"]["responses"]
    assert "413" in documented
