"""Bulk INSERTs (and one-column UPDATEs) at the driver's speed, for the rows attribution writes by the thousand.

SQLAlchemy's executemany builds and converts every row's parameters one column at a time, which costs more
than SQLite's own work for a wide row such as a conversion. Here the INSERT is compiled by SQLAlchemy once per
table, columns and dialect; each value still goes through its column type's own bind processor (the
conversion SQLAlchemy applies: a UTC time to SQLite's text, a flag list to JSON), but a value repeated across
the rows (the batch's receipt and creation times, an empty flag list) is converted once; then one
executemany at the driver.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Table, bindparam, insert, update

Processor = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class _Statement:
    sql: str
    names: tuple[str, ...]  # in the order the driver takes them
    processors: tuple[Processor | None, ...]
    positional: bool


_statements: dict[tuple[str, int, tuple[str, ...]], _Statement] = {}
_lock = threading.Lock()


def _statement(connection: Connection, table: Table, names: tuple[str, ...]) -> _Statement:
    dialect = connection.dialect
    key = (dialect.name, id(table), names)
    found = _statements.get(key)
    if found is None:
        # inline: no RETURNING of the new key, which an executemany cannot take
        compiled = insert(table).inline().compile(dialect=dialect, column_keys=list(names))
        order = tuple(compiled.positiontup or ()) if compiled.positional else tuple(compiled.binds)
        if set(order) != set(names):  # a column with a default we do not send: SQLAlchemy would compute it
            missing = sorted(set(order) - set(names))
            raise ValueError(f"bulk rows of {table.name} lack the columns {missing}")
        processors = tuple(table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in order)
        found = _Statement(str(compiled), order, processors, compiled.positional)
        with _lock:
            _statements[key] = found
    return found


def _converted(processor: Processor, values: Sequence[Any]) -> list[Any]:
    """Each value through the processor, once per distinct value (and type: 1 and True are equal keys)."""
    memo: dict[Any, Any] = {}
    out = []
    for value in values:
        try:
            key = (type(value), tuple(value) if type(value) is list else value)
            done = memo.get(key, memo)
        except TypeError:  # unhashable: converted on its own
            out.append(processor(value))
            continue
        if done is memo:
            done = memo[key] = processor(value)
        out.append(done)
    return out


def insert_rows(connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]],
                constants: Mapping[str, Any] | None = None) -> None:
    """INSERT every row (all with the same keys) plus the `constants` columns, in one executemany."""
    if not rows:
        return
    constants = constants or {}
    names = tuple(rows[0]) + tuple(name for name in constants if name not in rows[0])
    statement = _statement(connection, table, names)
    sent = [name for name in statement.names if name not in constants]
    # The rows turned into columns by itemgetter and zip, both in C: a comprehension per column costs more.
    by_name: dict[str, Sequence[Any]] = {}
    if sent:
        picked = map(itemgetter(*sent), rows) if len(sent) > 1 else ((row[sent[0]],) for row in rows)
        by_name = dict(zip(sent, zip(*picked, strict=True), strict=True))
    columns: list[Sequence[Any]] = []
    for name, processor in zip(statement.names, statement.processors, strict=True):
        if name in constants:
            value = constants[name]
            columns.append([processor(value) if processor is not None else value] * len(rows))
            continue
        values = by_name[name]
        columns.append(_converted(processor, values) if processor is not None else values)
    parameters: list[Any] = list(zip(*columns, strict=True))
    if not statement.positional:
        parameters = [dict(zip(statement.names, values, strict=True)) for values in parameters]
    connection.exec_driver_sql(statement.sql, parameters)


_updates: dict[tuple[str, int, str], tuple[str, tuple[str, ...], bool]] = {}


def update_column(connection: Connection, table: Table, column: str, values: Sequence[tuple[Any, Any]]) -> None:
    """Set `column` of each row named by its id, from (id, value) pairs, in one executemany at the driver; for
    values the driver takes as they are (integers, text): none goes through a bind processor."""
    if not values:
        return
    dialect = connection.dialect
    key = (dialect.name, id(table), column)
    found = _updates.get(key)
    if found is None:
        compiled = update(table).where(table.c.id == bindparam("b_id")) \
            .values({column: bindparam("b_value")}).compile(dialect=dialect)
        order = tuple(compiled.positiontup or ()) if compiled.positional else tuple(compiled.binds)
        found = (str(compiled), order, compiled.positional)
        with _lock:
            _updates[key] = found
    sql, order, positional = found
    named = [{"b_id": row_id, "b_value": value} for row_id, value in values]
    parameters: list[Any] = [tuple(p[name] for name in order) for p in named] if positional else named
    connection.exec_driver_sql(sql, parameters)
