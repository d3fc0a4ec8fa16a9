"""The client layer of the event store: embedded chDB or a ClickHouse server, behind one small interface.

Everything above this module speaks ClickHouse SQL with `{name:Type}` parameters and reads results as
JSONCompact, so the two engines run exactly the same statements; only connecting, binding and moving
bytes differ here.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import orjson
from clickhouse_connect.driver.binding import format_bind_value

DATABASE = "adstack"

# 64-bit integers as JSON numbers (not strings), so sums of micros come back as Python ints.
QUERY_SETTINGS: dict[str, Any] = {"output_format_json_quote_64bit_integers": 0}
INSERT_SETTINGS: dict[str, Any] = {
    "deduplicate_blocks_in_dependent_materialized_views": 1,
    "input_format_skip_unknown_fields": 1,
    # The views already aggregate each block; summing again while inserting costs more than it saves.
    "optimize_on_insert": 0,
}


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[list[Any]]

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


class Engine(Protocol):
    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None: ...

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> QueryResult: ...

    def insert_json_rows(self, table: str, payload: bytes, *, token: str) -> None:
        """Insert newline-separated JSON objects; a retry with the same token is a no-op."""
        ...

    def close(self) -> None: ...


def _decode(raw: bytes | str) -> QueryResult:
    if not raw:
        return QueryResult([], [])
    body = orjson.loads(raw)
    return QueryResult([m["name"] for m in body["meta"]], body["data"])


def _bind(params: Mapping[str, Any] | None) -> dict[str, str]:
    return {name: format_bind_value(value) for name, value in (params or {}).items()}


def _settings_clause(settings: Mapping[str, Any]) -> str:
    def literal(value: Any) -> str:
        if isinstance(value, str):
            return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
        return str(int(value))

    return ", ".join(f"{k} = {literal(v)}" for k, v in settings.items())


# chDB runs one embedded server per process, bound to one data path at a time; all calls go through
# this lock so a switch of path never closes a session under a running query.
EMBEDDED_LOCK = threading.RLock()


class ChdbEngine:
    """ClickHouse in process (chDB), with its data under a directory."""

    def __init__(self, path: Path):
        from chdb import session as chdb_session

        path.mkdir(parents=True, exist_ok=True)
        with EMBEDDED_LOCK:
            self._session: Any = chdb_session.Session(str(path))
            self._session.query(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
            self._session.query(f"USE {DATABASE}")
            for name, value in QUERY_SETTINGS.items():
                self._session.query(f"SET {name} = {value}")
        self.path = path

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        with EMBEDDED_LOCK:
            self._session.query(sql, "TabSeparated", params=_bind(params))

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> QueryResult:
        with EMBEDDED_LOCK:
            raw = self._session.query(sql, "JSONCompact", params=_bind(params))
        return _decode(raw.bytes() if hasattr(raw, "bytes") else raw)

    def query_bound(self, sql: str, bound: Mapping[str, str]) -> QueryResult:
        """A read whose parameters another process already bound (see `events.remote`)."""
        with EMBEDDED_LOCK:
            raw = self._session.query(sql, "JSONCompact", params=dict(bound))
        return _decode(raw.bytes() if hasattr(raw, "bytes") else raw)

    def insert_json_rows(self, table: str, payload: bytes, *, token: str) -> None:
        settings = _settings_clause({**INSERT_SETTINGS, "insert_deduplication_token": token})
        statement = f"INSERT INTO {table} SETTINGS {settings} FORMAT JSONEachRow\n"
        with EMBEDDED_LOCK:
            self._session.query(statement + payload.decode())

    def close(self) -> None:
        with EMBEDDED_LOCK:
            if self._session is not None:
                self._session.close()
                self._session = None


class ClickHouseServerEngine:
    """A ClickHouse server over HTTP, e.g. http://user:password@host:8123/adstack."""

    def __init__(self, url: str):
        import clickhouse_connect

        parts = urlsplit(url)
        database = parts.path.strip("/") or DATABASE
        common: dict[str, Any] = {
            "host": parts.hostname or "127.0.0.1",
            "port": parts.port or (8443 if parts.scheme == "https" else 8123),
            "username": unquote(parts.username or "default"),
            "password": unquote(parts.password or ""),
            "secure": parts.scheme == "https",
            "autogenerate_session_id": False,
        }
        bootstrap = clickhouse_connect.get_client(**common)
        bootstrap.command(f"CREATE DATABASE IF NOT EXISTS {database}")
        bootstrap.close()
        self._client: Any = clickhouse_connect.get_client(database=database, **common)

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self._client.command(sql, parameters=dict(params or {}))

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> QueryResult:
        raw = self._client.raw_query(sql, parameters=dict(params or {}), settings=QUERY_SETTINGS, fmt="JSONCompact")
        return _decode(raw)

    def insert_json_rows(self, table: str, payload: bytes, *, token: str) -> None:
        self._client.raw_insert(table, insert_block=payload, fmt="JSONEachRow",
                                settings={**INSERT_SETTINGS, "insert_deduplication_token": token})

    def close(self) -> None:
        self._client.close()
