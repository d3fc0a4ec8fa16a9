"""The OpenAPI document declares, for every operation, the error statuses it can answer, each with the one error
body the handlers give (core/errors.py)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.support import Api, expect

ERROR_SCHEMA = {"$ref": "#/components/schemas/ErrorBody"}


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, ops in schema["paths"].items() for method, op in ops.items()]


def test_every_error_response_has_the_error_body(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    body = schema["components"]["schemas"]["ErrorBody"]
    assert body["required"] == ["error"]
    detail = schema["components"]["schemas"]["ErrorDetail"]
    assert set(detail["properties"]) == {"code", "message", "fields"}
    assert {"field", "rule", "limit"} <= set(schema["components"]["schemas"]["FieldErrorBody"]["properties"])
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    seen: set[str] = set()
    for path, method, op in _operations(schema):
        for status, response in op["responses"].items():
            if int(status) >= 400:
                seen.add(status)
                assert response["content"]["application/json"]["schema"] == ERROR_SCHEMA, (method, path, status)
    assert seen == {"400", "401", "403", "404", "409", "413", "415", "422", "429", "503"}


def test_statuses_follow_what_a_route_takes(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for path, method, op in _operations(schema):
        statuses = set(op["responses"])
        if op.get("security"):
            assert {"401", "403"} <= statuses, (method, path)
        if "{" in path:
            assert "404" in statuses, (method, path)
        if not path.startswith("/api/v1/"):
            continue  # the SDK, tracking and exchange routes read their own bodies and declare their answers
        if op.get("requestBody"):
            assert {"400", "413", "422"} <= statuses, (method, path)
        if method in ("post", "put", "patch", "delete"):
            assert "409" in statuses, (method, path)
    login = schema["paths"]["/api/v1/auth/login"]["post"]["responses"]
    assert {"401", "429"} <= set(login)
    assert set(schema["paths"]["/healthz"]["get"]["responses"]) == {"200"}


def test_a_real_error_matches_the_documented_body(client: TestClient, api: Api) -> None:
    adv = api.approved_account()
    missing = expect(client.get("/api/v1/campaigns/999999", headers=adv.headers), 404)
    assert set(missing) == {"error"} and {"code", "message"} <= set(missing["error"])
    invalid = expect(client.get("/api/v1/campaigns", headers=adv.headers, params={"limit": 501}), 422)
    assert invalid["error"]["fields"][0] == {
        "field": "limit",
        "rule": "less_than_equal",
        "limit": 500,
        "message": invalid["error"]["fields"][0]["message"],
    }
