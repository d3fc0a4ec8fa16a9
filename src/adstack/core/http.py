"""One JSON error shape for every 4xx, and the handlers that make sure no request ends in a bare 500."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import anyio
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from adstack.core.errors import DomainError, FieldError, ValidationFailed

log = logging.getLogger("adstack")

# pydantic's context keys that carry the limit a value broke.
_LIMIT_KEYS = ("max_length", "min_length", "le", "lt", "ge", "gt", "pattern", "expected", "multiple_of", "limit")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    503: "unavailable",
}


def error_body(code: str, message: str, fields: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    return {"error": body}


def json_response(body: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer encoded by orjson (the hot endpoints' encoder)."""
    return Response(content=orjson.dumps(body), status_code=status_code, headers=headers,
                    media_type="application/json")


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie", "form"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def validation_fields(errors: list[Any]) -> list[dict[str, Any]]:
    fields = []
    for err in errors:
        ctx = err.get("ctx") or {}
        item: dict[str, Any] = {
            "field": _field_name(tuple(err.get("loc", ()))),
            "rule": err.get("type", "invalid"),
            "message": str(err.get("msg", "")),
        }
        for key in _LIMIT_KEYS:
            if key in ctx:
                value = ctx[key]
                item["limit"] = value if isinstance(value, int | float | str | bool | list) else str(value)
                break
        fields.append(item)
    return fields


class ErrorResponse(JSONResponse):
    """An error answer. Text it echoes back (a field name, a message quoting the input) may hold a lone surrogate
    a JSON body can carry (`"\\ud800"`), which UTF-8 cannot encode: written as the same JSON escape instead."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None,
                          separators=(",", ":")).encode("utf-8", "backslashreplace")


def database_busy() -> JSONResponse:
    return ErrorResponse(error_body("unavailable", "the database is busy; retry"), status_code=503,
                        headers={"Retry-After": "1"})


# A query naming a column or table the database lacks: its schema is older than the code (not migrated).
_UNDEFINED_SQLSTATES = frozenset({"42703", "42P01"})  # PostgreSQL undefined_column, undefined_table
_SQLITE_UNDEFINED = ("no such column", "no such table", "has no column named")


def schema_out_of_date(exc: DBAPIError) -> bool:
    if getattr(exc.orig, "sqlstate", None) in _UNDEFINED_SQLSTATES:
        return True
    return isinstance(exc, OperationalError) and any(text in str(exc.orig) for text in _SQLITE_UNDEFINED)


def database_out_of_date(exc: DBAPIError) -> JSONResponse:
    """Not busy: retrying cannot help until someone migrates. Logged as the operator's error to fix."""
    log.error("the database schema does not match this version of adstack; run `adstack migrate`: %s",
              str(exc.orig).split("\n")[0])
    return ErrorResponse(error_body("schema_out_of_date", "the database schema is out of date; an operator has "
                                    "to run `adstack migrate`"), status_code=503)


_FRAMEWORK_BODY_ERROR = "There was an error parsing the body"


def _retry_after(exc: DomainError) -> dict[str, str] | None:
    return {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        return ErrorResponse(exc.as_dict(), status_code=exc.status, headers=_retry_after(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return ErrorResponse(error_body("malformed_json", "the request body is not valid JSON",
                                           validation_fields(errors)), status_code=400)
        return ErrorResponse(error_body("validation_error", "the request has invalid fields",
                                       validation_fields(errors)), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == _FRAMEWORK_BODY_ERROR:
            # The framework's own words for a body its JSON reader gave up on: name the body and why.
            cause = exc.__cause__
            reason = ("nested deeper than the JSON reader allows" if isinstance(cause, RecursionError)
                      else "not UTF-8 text" if isinstance(cause, UnicodeDecodeError) else "unreadable")
            return ErrorResponse(error_body("malformed_json", f"the request body is not valid JSON: {reason}",
                                           [{"field": "body", "rule": "json", "message": reason}]), status_code=400)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return ErrorResponse(error_body(code, str(exc.detail)), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(DataError)
    async def _data(_: Request, exc: DataError) -> JSONResponse:
        # e.g. a NUL byte or an out-of-range number the database refuses.
        return ErrorResponse(error_body("invalid_value", "a value cannot be stored: " + str(exc.orig).split("\n")[0]),
                            status_code=422)

    @app.exception_handler(IntegrityError)
    async def _integrity(_: Request, exc: IntegrityError) -> JSONResponse:
        return ErrorResponse(error_body("conflict", "the change conflicts with existing data"), status_code=409)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return ErrorResponse(error_body("internal_error", "an unexpected error occurred; it has been logged"),
                            status_code=500)

    @app.exception_handler(OperationalError)
    async def _operational(_: Request, exc: OperationalError) -> JSONResponse:
        if schema_out_of_date(exc):
            return database_out_of_date(exc)
        log.exception("database unavailable", exc_info=exc)
        return database_busy()

    @app.exception_handler(ProgrammingError)
    async def _programming(request: Request, exc: ProgrammingError) -> JSONResponse:
        if schema_out_of_date(exc):
            return database_out_of_date(exc)
        return await _unexpected(request, exc)

    @app.exception_handler(PoolTimeout)
    async def _pool_timeout(_: Request, exc: PoolTimeout) -> JSONResponse:
        # Every connection in use: the server is loaded, not broken; a log line per refusal would add to it.
        log.debug("database pool exhausted: %s", exc)
        return database_busy()

    from adstack.events.remote import StoreUnavailable

    @app.exception_handler(StoreUnavailable)
    async def _store_unavailable(_: Request, exc: StoreUnavailable) -> JSONResponse:
        log.warning("event store unavailable: %s", exc)
        return ErrorResponse(error_body("unavailable", "reports are briefly unavailable; retry"), status_code=503,
                            headers={"Retry-After": "2"})


class StrictTransportSecurity:
    """Adds `Strict-Transport-Security` to answers given over https (RFC 6797 forbids it over plain http): a
    request is https when the server terminated TLS itself, when a trusted proxy says so in
    `X-Forwarded-Proto`, or always with the `hsts` setting. Whoever else sends that header is not believed."""

    def __init__(self, app: Any, *, always: bool, max_age: int, trusted_proxies: str):
        from adstack.pipeline.ivt import parse_networks

        self.app = app
        self.always = always
        self.value = f"max-age={max_age}; includeSubDomains".encode()
        self.proxies = parse_networks(trusted_proxies)

    def _https(self, scope: Any) -> bool:
        if self.always or scope.get("scheme") == "https":
            return True
        client = scope.get("client")
        if not client or client[0] not in self.proxies:
            return False
        for name, value in scope.get("headers", ()):
            if name == b"x-forwarded-proto":
                return value.split(b",")[0].strip().lower() == b"https"
        return False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self._https(scope):
            await self.app(scope, receive, send)
            return

        async def with_header(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()),
                                                  (b"strict-transport-security", self.value)]}
            await send(message)

        await self.app(scope, receive, with_header)


# ---------- request bodies ----------

_FORM_TYPES = (b"multipart/form-data", b"application/x-www-form-urlencoded")


class BodyLimits:
    """Caps form and multipart bodies before anything reads them, and gives every request body a deadline.

    Routes in `any_body_caps` (path pattern -> bytes) have their body capped whatever its content type: JSON
    routes whose framework reads the whole body before the route can look at it.

    A form body's cap is the first matching route's in `caps` (path pattern -> bytes, or None for a route that
    streams and caps its body itself), else `default_cap`; a request with neither credentials nor a session
    cookie gets at most `anonymous_cap` (under Starlette's 1 MiB spooling threshold, so an anonymous form never
    reaches the disk), except on `anonymous_routes` (sign-up with its document). A declared Content-Length over
    the cap is answered 413 without reading a byte; a chunked body is cut off at the cap with 413. A body not
    received in full `deadline_s` after the request began is cut off with 408, so slow clients cannot hold
    connections and memory indefinitely."""

    def __init__(self, app: Any, *, caps: Sequence[tuple[str, int | None]], default_cap: int, anonymous_cap: int,
                 anonymous_routes: Sequence[str] = (), deadline_s: float,
                 clock: Callable[[], float] = time.monotonic, any_body_caps: Sequence[tuple[str, int]] = ()):
        self.app = app
        self.caps = [(re.compile(pattern), cap) for pattern, cap in caps]
        self.any_body_caps = [(re.compile(pattern), cap) for pattern, cap in any_body_caps]
        self.default_cap = default_cap
        self.anonymous_cap = anonymous_cap
        self.anonymous_routes = [re.compile(pattern) for pattern in anonymous_routes]
        self.deadline_s = deadline_s
        self.clock = clock

    def cap_for(self, scope: Any) -> int | None:
        """The byte cap of this request's body, or None when it is not a form (JSON and raw uploads are read
        by their routes under their own limits)."""
        path = scope["path"]
        for pattern, any_body_cap in self.any_body_caps:
            if pattern.fullmatch(path):
                return any_body_cap
        headers = dict(scope.get("headers", ()))
        content_type = headers.get(b"content-type", b"").lower()
        if not content_type.startswith(_FORM_TYPES):
            return None
        cap = next((cap for pattern, cap in self.caps if pattern.fullmatch(path)), self.default_cap)
        anonymous = b"authorization" not in headers and b"adstack_session=" not in headers.get(b"cookie", b"")
        if cap is None:  # the route streams and caps the body itself
            return self.anonymous_cap if anonymous else None
        if anonymous and not any(pattern.fullmatch(path) for pattern in self.anonymous_routes):
            cap = min(cap, self.anonymous_cap)
        return cap

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        cap = self.cap_for(scope)
        declared = _content_length(scope)
        if cap is not None and declared is not None and declared > cap:
            await _refuse(send, 413, f"the request body exceeds the limit of {cap} bytes")
            return
        deadline = self.clock() + self.deadline_s
        received = 0
        done = False

        async def limited_receive() -> Any:
            nonlocal received, done
            if done:
                return await receive()  # the body is in: only a disconnect is left to wait for, untimed
            remaining = deadline - self.clock()
            message = None
            if remaining > 0:
                with anyio.move_on_after(remaining):
                    message = await receive()
            if message is None:
                raise StarletteHTTPException(408, "the request body was not received in time",
                                             headers={"Connection": "close"})
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if cap is not None and received > cap:
                    raise StarletteHTTPException(413, f"the request body exceeds the limit of {cap} bytes",
                                                 headers={"Connection": "close"})
                done = not message.get("more_body", False)
            return message

        await self.app(scope, limited_receive, send)


def _content_length(scope: Any) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(send: Any, status: int, message: str) -> None:
    body = orjson.dumps(error_body(_HTTP_CODES.get(status, "http_error"), message))
    # Connection: close, so the server stops reading the body instead of draining it.
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


# ---------- text a request carries ----------

# A JSON body holds NUL or a surrogate only as an escape (a raw control character does not parse): bodies without
# one are not walked.
_SUSPECT_JSON = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
_Endpoint = TypeVar("_Endpoint", bound=Callable[..., Any])
_NO_INPUT: frozenset[str] = frozenset()


def unstorable_rule(text: str) -> str | None:
    """The rule a string breaks that no database can store it under, or None: a NUL character (PostgreSQL's text
    cannot hold one; SQLite can, so the two would answer differently), or a lone surrogate, which is not Unicode
    text (UTF-8 cannot encode it; pydantic calls that `string_unicode`)."""
    if "\x00" in text:
        return "no_nul_character"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "string_unicode"
    return None


_RULE_MESSAGES = {"no_nul_character": "must not contain the NUL character (U+0000)",
                  "string_unicode": "must be Unicode text: a lone surrogate (\\ud800-\\udfff) is not"}


def _refuse_text(field: str, rule: str) -> ValidationFailed:
    name = field.encode("utf-8", "backslashreplace").decode("utf-8")
    message = f"{name} {_RULE_MESSAGES[rule]}"
    return ValidationFailed(message, fields=[FieldError(field=name, rule=rule, message=message)])


def _first_unstorable(body: Any) -> tuple[str, str] | None:
    """(dotted field, rule) of the first string or key in a parsed JSON body that breaks `unstorable_rule`."""
    stack: list[tuple[str, Any]] = [("", body)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            rule = unstorable_rule(value)
            if rule:
                return path or "body", rule
        elif isinstance(value, dict):
            items = list(value.items())
            for key, item in reversed(items):
                where = f"{path}.{key}" if path else str(key)
                rule = unstorable_rule(str(key))
                if rule:
                    return where, rule
                stack.append((where, item))
        elif isinstance(value, list):
            stack.extend((f"{path}.{i}" if path else str(i), item) for i, item in reversed(list(enumerate(value))))
    return None


def answers_any_text(endpoint: _Endpoint) -> _Endpoint:
    """Mark a route whose query text is its own to judge: an exchange's notice or a tracking pixel answers as its
    caller expects (204, or a malformed token kept as invalid traffic), never the request-text refusal."""
    endpoint._adstack_answers_any_text = True  # type: ignore[attr-defined]
    return endpoint


def _query_names(route: Any) -> frozenset[str]:
    """The query parameters a route declares (its own and its dependencies'), worked out once per route."""
    names: frozenset[str] | None = getattr(route, "_adstack_query_names", None)
    if names is None:
        names = _NO_INPUT
        if isinstance(route, APIRoute) and not getattr(route.endpoint, "_adstack_answers_any_text", False):
            found: set[str] = set()
            pending = [route.dependant]
            while pending:
                dependant = pending.pop()
                found.update(p.alias for p in dependant.query_params)
                pending.extend(dependant.dependencies)
            names = frozenset(found)
        route._adstack_query_names = names
    return names


async def refuse_unstorable_text(request: Request) -> None:
    """Every route's first dependency: a string in the path, a declared query parameter, a form field or file name,
    or the JSON body that holds NUL or a lone surrogate is refused here, 422 naming the field, before the route's
    validation (whose messages quote the input) and before the database (which would refuse it as a storage
    failure on PostgreSQL and keep it on SQLite)."""
    for name, value in request.path_params.items():
        if isinstance(value, str) and (rule := unstorable_rule(value)):
            raise _refuse_text(name, rule)
    if request.url.query:
        declared = _query_names(request.scope.get("route"))
        for name, value in request.query_params.multi_items():
            if name in declared and (rule := unstorable_rule(value)):
                raise _refuse_text(name, rule)
    form = getattr(request, "_form", None)  # parsed already when the route takes a form; never read here
    if form is not None:
        for name, value in form.multi_items():
            text = (value.filename or "") if isinstance(value, UploadFile) else value
            if isinstance(text, str) and (rule := unstorable_rule(text)):
                raise _refuse_text(name, rule)
    raw = getattr(request, "_body", None)
    if raw and hasattr(request, "_json") and _SUSPECT_JSON.search(raw):
        found = _first_unstorable(request._json)
        if found is not None:
            raise _refuse_text(*found)
