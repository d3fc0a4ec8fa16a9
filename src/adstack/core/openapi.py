"""The error statuses each documented route can answer, with the error body of `core/errors.py`.

Derived from what the route takes rather than written route by route, so a new route is documented as soon as
it is registered: who answers what is decided in one place (`core/http.py`'s handlers and the dependencies):

- 400: a JSON body that does not parse (the validation handler), or a `DomainError` left at its default status;
- 401 and 403: routes that read a bearer token (`get_principal` and the role checks built on it);
- 404: routes that name an object by id, in the path or in the query (`ensure_account_visible`, `get_*`);
- 409: writes (a state that forbids the operation, an integrity conflict);
- 413: routes that take a body (form bodies are capped before they are read, uploads by their routes);
- 422: routes that take any input (pydantic's refusals, `ValidationFailed`, a value the database refuses);
- 503: routes that use the database (an exhausted pool or a busy SQLite, see `database_busy`; a schema older
  than the code, see `database_out_of_date`).

429 stays declared by the rate-limited routes themselves (`accounts/api.py`).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from adstack.core.deps import bearer_scheme, get_principal, get_session
from adstack.core.errors import ERROR_DESCRIPTIONS, ErrorBody

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _dependants(dependant: Dependant) -> list[Dependant]:
    out = [dependant]
    for sub in dependant.dependencies:
        out += _dependants(sub)
    return out


def error_statuses(route: APIRoute) -> set[int]:
    """The error statuses this route can answer, from what it takes and what it depends on."""
    tree = _dependants(route.dependant)
    calls = {d.call for d in tree}
    path_params = [p for d in tree for p in d.path_params]
    query_params = [p for d in tree for p in d.query_params]
    header_params = [p for d in tree for p in d.header_params]
    # A route that streams its body itself (uploads) declares it in `openapi_extra`; the SDK, tracking and exchange
    # routes outside /api/ read their own bodies and declare their own answers.
    streamed = "requestBody" in (route.openapi_extra or {}) and route.path.startswith("/api/")
    has_body = streamed or any(d.body_params for d in tree)
    statuses: set[int] = set()
    if get_principal in calls or bearer_scheme in calls:
        statuses |= {401, 403, 404}
    if path_params or any(p.name.endswith("_id") for p in query_params):
        statuses.add(404)
    if (route.methods or set()) & WRITE_METHODS:
        statuses.add(409)
    if has_body:
        statuses |= {400, 413}
    if path_params or query_params or header_params or has_body:
        statuses |= {400, 422}
    if get_session in calls:
        statuses.add(503)
    return statuses


ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}


def _error_schemas() -> dict[str, Any]:
    schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    nested = schema.pop("$defs", {})
    return {**nested, "ErrorBody": schema}


def _add_errors(document: dict[str, Any], routes: list[tuple[str, set[str], set[int]]]) -> dict[str, Any]:
    document.setdefault("components", {}).setdefault("schemas", {}).update(_error_schemas())
    for path, methods, statuses in routes:
        for method in methods:
            operation = document.get("paths", {}).get(path, {}).get(method.lower())
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            declared = {int(k) for k in responses if k.isdecimal() and int(k) >= 400}
            for status in sorted(statuses | declared):
                entry = responses.setdefault(str(status), {})
                # FastAPI's own 422 describes its default body, which the validation handler replaces.
                if status == 422 or "content" not in entry:
                    entry["description"] = entry.get("description") if status != 422 else ERROR_DESCRIPTIONS[422]
                    entry["content"] = {"application/json": {"schema": ERROR_REF}}
                entry.setdefault("description", ERROR_DESCRIPTIONS.get(status, "Error"))
            operation["responses"] = dict(sorted(responses.items()))
    schemas = document["components"]["schemas"]
    for unused in ("HTTPValidationError", "ValidationError"):
        if unused in schemas and unused not in str(document.get("paths")):
            del schemas[unused]
    return document


def document_errors(app: FastAPI) -> None:
    """Make `app.openapi()` add each route's error statuses to its responses, with the error body's schema;
    statuses a route declares itself (e.g. 429) keep their description and get the schema too."""
    plain_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            routes = [(str(context.path_format), set(context.methods or ()), error_statuses(context.original_route))
                      for context in iter_route_contexts(app.routes)
                      if isinstance(context.original_route, APIRoute) and context.include_in_schema]
            app.openapi_schema = _add_errors(plain_openapi(), routes)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
