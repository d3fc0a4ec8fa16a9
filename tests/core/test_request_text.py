"""Text no database stores is refused before any route's validation, naming the field, alike on SQLite and
PostgreSQL: a NUL character, and a lone surrogate (which a JSON body can carry as `\\ud800`). Error answers that
echo such text escape it rather than failing to encode it."""

from __future__ import annotations

import io
import json

from starlette.requests import Request

from adstack.core.errors import ValidationFailed
from adstack.core.http import ErrorResponse, refuse_unstorable_text
from tests.support import Api, expect, run_async

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
FINANCE = "/api/v1/finance"


def _field(response: object) -> tuple[str, str]:
    [field] = expect(response, 422)["error"]["fields"]  # type: ignore[arg-type]
    return field["field"], field["rule"]


def _json(api: Api, method: str, url: str, raw: str, headers: dict[str, str] | None = None) -> object:
    return api.client.request(method, url, content=raw.encode(),
                              headers={**(headers or {}), "content-type": "application/json"})


def test_a_lone_surrogate_is_refused_naming_its_field(api: Api) -> None:
    """Its time zone's message quoted the input, which could not be rendered: a 500, on a public route too."""
    advertiser = api.approved_account()
    account = f"/api/v1/accounts/{advertiser.account_id}"
    for name in ("time_zone", "company_name", "contact_phone"):
        refused = _json(api, "PATCH", account, f'{{"{name}": "\\ud800"}}', advertiser.headers)
        assert _field(refused) == (name, "string_unicode")
    registration = api.registration()
    for name in ("time_zone", "company_name", "country"):
        raw = json.dumps({k: v for k, v in registration.items() if k != name})[:-1] + f', "{name}": "x\\udfff"}}'
        assert _field(_json(api, "POST", "/api/v1/auth/register", raw)) == (name, "string_unicode")
    # Nested, in a list, and as a key: the field is still named, and a surrogate key is written as its escape.
    raw = '{"name": "c", "targeting": {"countries": ["ID", "\\udc00"]}}'
    assert _field(_json(api, "POST", "/api/v1/campaigns", raw, advertiser.headers)) == (
        "targeting.countries.1", "string_unicode")
    refused = _json(api, "PATCH", account, '{"\\ud800": 1}', advertiser.headers)
    assert _field(refused) == ("\\ud800", "string_unicode")
    # A pair of surrogates is one character, and welcome.
    renamed = expect(_json(api, "PATCH", account, '{"contact_name": "Li \\ud83d\\ude00"}', advertiser.headers), 200)
    assert renamed["contact_name"] == "Li \U0001f600"


def test_a_nul_character_is_refused_naming_its_field(api: Api) -> None:
    """PostgreSQL cannot store it (a 422 naming no field, worded as a storage failure) and SQLite kept it."""
    admin = api.admin()
    advertiser = api.approved_account(admin)
    account = f"/api/v1/accounts/{advertiser.account_id}"
    assert _field(_json(api, "PATCH", account, '{"contact_name": "a\\u0000b"}', advertiser.headers)) == (
        "contact_name", "no_nul_character")
    top_up = {"account_id": advertiser.account_id, "amount_micros": 1_000_000, "remarks": "wire\u0000"}
    assert _field(api.client.post(f"{FINANCE}/top-ups", headers=admin.headers, json=top_up)) == (
        "remarks", "no_nul_character")
    searched = api.client.get("/api/v1/accounts", headers=admin.headers, params={"q": "a\x00"})
    assert _field(searched) == ("q", "no_nul_character")
    rated = api.client.put("/api/v1/fx-rates/U%00D", headers=admin.headers, json={"units_per_usd": "1.5"})
    assert _field(rated) == ("currency", "no_nul_character")
    form = {"account_id": str(advertiser.account_id), "amount_micros": "1000000"}
    filed = api.client.post(f"{FINANCE}/top-up-requests", headers=advertiser.headers,
                            data={**form, "remarks": "\x00"}, files={"file": ("r.png", io.BytesIO(PNG), "image/png")})
    assert _field(filed) == ("remarks", "no_nul_character")
    boundary = "b0undary"
    raw = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in form.items()
    ) + (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="r\x00.png"\r\n'
         f"Content-Type: image/png\r\n\r\n").encode() + PNG + f"\r\n--{boundary}--\r\n".encode()
    filed = api.client.post(f"{FINANCE}/top-up-requests", content=raw, headers={
        **advertiser.headers, "content-type": f"multipart/form-data; boundary={boundary}"})
    assert _field(filed) == ("file", "no_nul_character")
    # Nothing was written; an escaped backslash before "u0000" is plain text.
    expect(_json(api, "PATCH", account, '{"contact_name": "a\\\\u0000b"}', advertiser.headers), 200)
    listed = expect(api.client.get(f"{FINANCE}/top-up-requests", headers=advertiser.headers), 200)
    assert listed == []


def test_an_undeclared_query_parameter_is_not_looked_at(api: Api) -> None:
    advertiser = api.approved_account()
    expect(api.client.get("/api/v1/auth/me", headers=advertiser.headers, params={"x": "\x00"}), 200)


def test_error_answers_escape_what_utf8_cannot_encode() -> None:
    refusal = ValidationFailed.single("time_zone", "known_time_zone", "unknown IANA time zone: \ud800",
                                      actual="\ud800")
    body = ErrorResponse(refusal.as_dict(), status_code=422).body
    decoded = json.loads(body)
    assert decoded["error"]["fields"][0]["actual"] == "\ud800"
    assert "时区" in json.loads(ErrorResponse({"message": "时区"}).body)["message"]  # other text stays as it is


def test_nothing_is_read_that_the_route_did_not_read() -> None:
    """A route without a body has not read it: the check does not either (it would consume the stream)."""

    async def receive() -> dict[str, object]:
        raise AssertionError("the body was read")

    request = Request({"type": "http", "method": "POST", "path": "/x", "query_string": b"", "headers": [],
                       "path_params": {}}, receive)
    run_async(lambda: refuse_unstorable_text(request))


def test_exchange_notices_and_tracking_pixels_answer_as_before_whatever_their_text(api: Api) -> None:
    """An exchange expects 204 from its notices; a pixel's unreadable token is answered as malformed."""
    for url in ("/openrtb2/win?i=abc&p=%00", "/openrtb2/loss?i=abc&r=102&p=%00", "/openrtb2/loss?i=abc%00&s=x"):
        assert api.client.get(url).status_code == 204, url
    for url in ("/t/imp?t=bogus&ap=%00&ap=1", "/t/click?t=%00bogus&t=x"):
        answer = api.client.get(url, follow_redirects=False)
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "malformed_token", url
