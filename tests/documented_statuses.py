"""Every answer a test receives from a documented route has a status its OpenAPI operation declares.

The `client` fixture wraps its app with `StatusRecorder`; at teardown the statuses seen are held against the
document. A status the document leaves out is one an API client generated from it cannot expect: the long
OpenAPI fuzz fails on it, and so does every test that happens to receive one.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute


class StatusRecorder:
    """Pure ASGI: the matched route (the router writes it into the shared scope) and the status it answered."""

    def __init__(self, app: Any, seen: set[tuple[str, str, int]]) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status: list[int] = []

        async def recording_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        await self.app(scope, receive, recording_send)
        route = scope.get("route")
        if status and isinstance(route, APIRoute) and route.include_in_schema:
            self.seen.add((scope["method"].lower(), route.path_format, status[0]))


_documented: dict[tuple[str, str], frozenset[str]] = {}


def undocumented(app: FastAPI, seen: set[tuple[str, str, int]]) -> list[str]:
    """What was seen and is not documented. The document is built once per test process: every test's app
    documents the same routes, and building it takes a good part of a second."""
    if not seen:
        return []
    if not _documented:
        _documented.update({(method, path): frozenset(operation["responses"])
                            for path, operations in app.openapi()["paths"].items()
                            for method, operation in operations.items()})
    found = []
    for method, path, status in sorted(seen):
        statuses = _documented.get((method, path))
        if statuses is not None and str(status) not in statuses:
            found.append(f"{method.upper()} {path} answered {status}; documented: {sorted(statuses)}")
    return found
