"""A local stand-in for Adjust's Report Service, speaking its documented request and response format.

Rows carry every metric as a string, totals as numbers; 204 when there is nothing; 401 for a bad token;
403 for an app token the user does not own; and, when asked, one 429 before the first success.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

REQUIRED_PARAMS = ("app_token__in", "date_period", "dimensions", "metrics", "utc_offset", "attribution_type",
                   "attribution_source")


@dataclass
class FakeAdjust:
    token: str
    apps: dict[str, list[dict[str, Any]]]  # app token -> rows (metrics as numbers; served as strings)
    empty_apps: set[str] = field(default_factory=set)
    rate_limit_first: bool = False
    requests: list[dict[str, Any]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeAdjust:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake.handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _send(self, handler: BaseHTTPRequestHandler, status: int, body: Any = None,
              headers: dict[str, str] | None = None) -> None:
        payload = b"" if body is None else json.dumps(body).encode()
        handler.send_response(status)
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        if payload:
            handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlparse(handler.path)
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.requests.append({"path": url.path, "params": params,
                              "authorization": handler.headers.get("Authorization")})
        if url.path != "/reports-service/report":
            return self._send(handler, 404, {"error": "not found"})
        if handler.headers.get("Authorization") != f"Bearer {self.token}":
            return self._send(handler, 401, {"error": "Unauthorized"})
        missing = [p for p in REQUIRED_PARAMS if not params.get(p)]
        if missing:
            return self._send(handler, 400, {"error": f"missing parameters: {missing}"})
        if self.rate_limit_first:
            self.rate_limit_first = False
            return self._send(handler, 429, {"error": "Too Many Requests"}, {"Retry-After": "0"})
        app_token = params["app_token__in"]
        if app_token in self.empty_apps:
            return self._send(handler, 204)
        if app_token not in self.apps:
            return self._send(handler, 403, {"error": "Forbidden"})
        start_text, end_text = params["date_period"].split(":")
        start, end = date.fromisoformat(start_text), date.fromisoformat(end_text)
        metrics = params["metrics"].split(",")
        rows, totals = [], dict.fromkeys(metrics, 0.0)
        for row in self.apps[app_token]:
            day = date.fromisoformat(row["day"])
            if not start <= day <= end:
                continue
            rows.append({**{k: row[k] for k in ("day", "campaign", "country")},
                         **{m: str(row[m]) for m in metrics if m in row}})
            for m in metrics:
                totals[m] += float(row.get(m, 0))
        return self._send(handler, 200, {"rows": rows, "totals": totals, "warnings": []})


def days_back(n: int) -> str:
    return (date.today() - timedelta(days=n)).isoformat()
