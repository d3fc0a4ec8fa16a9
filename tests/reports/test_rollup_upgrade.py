"""A store whose rollups predate the attribution type is upgraded on open, and its old conversions still read
as ours (they named a campaign) or organic (they did not)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from adstack.events import schema
from adstack.events.models import Event, EventType
from adstack.events.service import EventStore
from adstack.reports.query import BASE_SQL

AT = datetime(2025, 7, 3, 8, tzinfo=UTC)


def _install(event_id: str, campaign_id: int, attribution_type: str) -> Event:
    return Event(
        event_id=event_id,
        event_type=EventType.INSTALL,
        occurred_at=AT,
        account_id=1,
        campaign_id=campaign_id,
        conversion_event="INSTALL",
        attribution_type=attribution_type,
    )


def _figures(store: EventStore, table: str) -> tuple[int, int, int]:
    metrics = ", ".join(BASE_SQL[m] for m in ("installs", "organic_installs", "other_installs"))
    row = store.query(f"SELECT {metrics} FROM {table} WHERE account_id = 1").rows[0]
    return int(row[0]), int(row[1]), int(row[2])


def test_rollups_made_before_the_attribution_type_are_upgraded_and_keep_their_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for table, (dimensions, quarters) in list(schema.ROLLUPS.items()):
        monkeypatch.setitem(schema.ROLLUPS, table, (tuple(d for d in dimensions if d != "attribution_type"), quarters))
    old = EventStore(journal_dir=tmp_path / "journal", chdb_path=tmp_path / "chdb")
    old.append([_install("ours", 5, "click"), _install("organic", 0, "organic")])
    old.flush()
    old.close()
    monkeypatch.undo()

    upgraded = EventStore(journal_dir=tmp_path / "journal", chdb_path=tmp_path / "chdb")
    try:
        upgraded.append([_install("other", 0, "other"), _install("view", 5, "view")])
        upgraded.flush()
        for table in schema.ROLLUPS:
            assert _figures(upgraded, table) == (2, 1, 1)
            keys = upgraded.query("SELECT sorting_key FROM system.tables WHERE name = {t:String}", {"t": table}).rows[
                0
            ][0]
            assert keys.endswith("conversion_event, attribution_type")
    finally:
        upgraded.close()
    again = EventStore(journal_dir=tmp_path / "journal", chdb_path=tmp_path / "chdb")  # nothing left to do
    try:
        assert _figures(again, schema.ROLLUP_TABLE) == (2, 1, 1)
    finally:
        again.close()


def test_a_store_sliced_in_quarter_hours_is_upgraded_to_half_hours_and_keeps_its_slices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def charge(event_id: str, minute: int) -> Event:
        return Event(
            event_id=event_id,
            event_type=EventType.CHARGE,
            occurred_at=AT.replace(minute=minute),
            account_id=1,
            campaign_id=5,
            cost_micros=1_000,
        )

    def slices(store: EventStore) -> list[list[int]]:
        return store.query(
            f"SELECT quarter, sum(cost_micros) FROM {schema.ROLLUP_TABLE} WHERE account_id = 1 "
            "GROUP BY quarter ORDER BY quarter"
        ).rows

    monkeypatch.setattr(schema, "SLICE_MINUTES", 15)
    old = EventStore(journal_dir=tmp_path / "journal", chdb_path=tmp_path / "chdb")
    old.append([charge("before", 20)])
    old.flush()
    assert slices(old) == [[1, 1_000]]  # 08:15-08:30
    old.close()
    monkeypatch.undo()

    upgraded = EventStore(journal_dir=tmp_path / "journal", chdb_path=tmp_path / "chdb")
    try:
        upgraded.append([charge("after-early", 20), charge("after-late", 50)])
        upgraded.flush()
        # Stored rows keep their quarter hour; new ones fall in half hours (quarter 0 or 2), both read as the
        # start of their slice.
        assert slices(upgraded) == [[0, 1_000], [1, 1_000], [2, 1_000]]
    finally:
        upgraded.close()
