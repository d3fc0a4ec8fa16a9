"""What receiving a postback means, without the web framework: its fields read from the query and the body, the
partner named and its adapter's checks passed, and the app proven by the signed `app` + `sig` of its postback URL.
The documented route (`api.py`) and the raw ASGI fast path (`fastpath.py`) both call these."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

import orjson

from adstack.apps.service import verify_postback_signature
from adstack.attribution.adapters import parse_postback, stored_parse
from adstack.attribution.models import UNSIGNED_KEY_PREFIX
from adstack.attribution.postback_fields import (
    MAX_FIELDS,
    MAX_VALUE_LENGTH,
    ParsedPostback,
    PostbackError,
    flatten,
    present,
)
from adstack.core.http import error_body
from adstack.core.ids import MAX_ID
from adstack.core.vocabulary import Partner
from adstack.pipeline import records
from adstack.pipeline.log import LogUnavailable
from adstack.pipeline.service import Pipeline

ACCEPTED = {"status": "ok"}
UNAVAILABLE = error_body("unavailable", "the postback could not be stored; retry")
RETRY_AFTER_SECONDS = "5"


class Refused(Exception):
    """A postback refused with an HTTP status, an error code and the field and rule it broke."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None, rule: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.field, self.rule = status, code, message, field, rule

    def fields(self) -> list[dict[str, str]] | None:
        return [{"field": self.field, "rule": self.rule or self.code, "message": self.message}] \
            if self.field else None


def parse_query(text: str) -> list[tuple[str, str]]:
    """`parse_qsl(text, keep_blank_values=True)`, without unquoting the pieces that hold nothing to unquote (most
    of a postback's ids, names and numbers)."""
    pairs: list[tuple[str, str]] = []
    for piece in text.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        if "%" in piece or "+" in piece:
            name, value = unquote(name.replace("+", " ")), unquote(value.replace("+", " "))
        pairs.append((name, value))
    return pairs


def merge_fields(query: list[tuple[str, str]], body: bytes, content_type: str) -> dict[str, str]:
    """Query, form and JSON fields as one flat map; the first value of a repeated field wins."""
    fields: dict[str, str] = {}

    def put(key: str, value: Any) -> None:
        if key not in fields:
            if len(fields) >= MAX_FIELDS:
                raise Refused(400, "too_many_fields", f"a postback may have at most {MAX_FIELDS} fields")
            text = value if isinstance(value, str) else orjson.dumps(value).decode()
            # NUL is never data in a postback, and PostgreSQL text cannot hold it.
            fields[key[:100].replace("\x00", "")] = text.replace("\x00", "")[:MAX_VALUE_LENGTH]

    for key, value in query:
        put(key, value)
    text = body.strip()
    if not text:
        return fields
    if "json" in content_type or text.startswith(b"{"):
        try:
            document = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise Refused(400, "malformed_json", "the postback body is not valid JSON") from None
        if not isinstance(document, dict):
            raise Refused(400, "malformed_json", "the postback body must be a JSON object")
        for key, value in document.items():
            if isinstance(value, dict | list):
                put(str(key), value)  # kept whole for the adapters that read nested JSON
                for inner_key, inner in flatten(value, str(key)).items():
                    put(inner_key, inner)
            elif value is not None:
                put(str(key), value if isinstance(value, str) else str(value).lower()
                    if isinstance(value, bool) else str(value))
        return fields
    if "form" in content_type or b"=" in text:
        try:
            pairs = parse_qsl(text.decode("utf-8"), keep_blank_values=True, strict_parsing=True,
                              max_num_fields=MAX_FIELDS)
        except (ValueError, UnicodeDecodeError):
            raise Refused(400, "malformed_form", "the postback body is not a URL-encoded form") from None
        for key, value in pairs:
            put(key, value)
        return fields
    raise Refused(415, "unsupported_body", "send the postback as a query, a URL-encoded form or a JSON object")


def check(fields: dict[str, str], secret: bytes) -> tuple[Partner, ParsedPostback, int | None]:
    """The partner, the parsed postback and the app its signed URL names (None when the URL names none: the app
    is then looked up from the click or the device). Raises Refused."""
    partner_text = present(fields.get("partner")) or ""
    if not partner_text:
        raise Refused(400, "missing_partner", "name the measurement partner in `partner`", "partner", "required")
    try:
        partner = Partner(partner_text.lower())
    except ValueError:
        raise Refused(400, "unknown_partner", f"unknown measurement partner {partner_text[:40]!r}; "
                      f"expected one of {', '.join(p.value for p in Partner)}", "partner", "enum") from None
    try:
        parsed = parse_postback(partner, fields)
    except PostbackError as exc:
        raise Refused(422, "invalid_postback", exc.message, exc.field, exc.rule) from None
    app_text = fields.get("app", "")
    if not app_text:
        if partner is not Partner.APPMETRICA:
            # Only the guide's own AppMetrica URL goes without `app` and `sig` (docs/partners.md).
            raise Refused(400, "missing_app", "add `app` and `sig` from the app's integration page: only the "
                          "guide's AppMetrica URL may leave them out", "app", "required")
        return partner, parsed, None
    # The id as the integration page writes it, so the signature check and the stored postback agree on it.
    if not (app_text.isascii() and app_text.isdigit() and len(app_text) <= 19) or app_text[0] == "0" \
            or not 1 <= int(app_text) <= MAX_ID:
        raise Refused(400, "missing_app", "`app` must be the app id from the app's integration page", "app",
                      "required")
    app_id = int(app_text)
    if not verify_postback_signature(secret, app_id, fields.get("sig", "")):
        raise Refused(403, "bad_signature", "`sig` does not match the app: copy the postback URL from the app's "
                      "integration page", "sig", "signature")
    return partner, parsed, app_id


def stored_dedupe_key(parsed: ParsedPostback, *, signed: bool) -> str:
    """The key a postback is stored once under, per app: an unsigned one apart from the signed copies."""
    return parsed.dedupe_key if signed else (UNSIGNED_KEY_PREFIX + parsed.dedupe_key)[:128]


async def acknowledge(pipeline: Pipeline, *, app_id: int, partner: Partner, parsed: ParsedPostback, method: str,
                      fields: dict[str, str], received_at: datetime, signed: bool = True) -> bool:
    """Append the postback to the event log; False when the log cannot store it (nothing may be acknowledged:
    the partner retries anything but a 200). Duplicates are removed where the postbacks consumer stores them.
    `signed`: it came to the app's signed URL (`check` named the app)."""
    record = records.postback(app_id=app_id, partner=partner.value,
                              dedupe_key=stored_dedupe_key(parsed, signed=signed), method=method,
                              fields=fields, received_at=received_at, parsed=stored_parse(parsed))
    try:
        await pipeline.append(record)
    except LogUnavailable:
        return False
    return True
