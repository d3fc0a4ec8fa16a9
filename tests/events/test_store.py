"""The event store: durable appends, each id counted once, late events in their own hour."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adstack.core.settings import Settings
from adstack.events.journal import Journal
from adstack.events.models import Event, EventType
from adstack.events.service import EventStore, event_record, get_event_store

_accounts = itertools.count(1)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EventStore]:
    root = tmp_path_factory.mktemp("events")
    event_store = EventStore(journal_dir=root / "journal", chdb_path=root / "chdb")
    yield event_store
    event_store.close()


def new_account() -> int:
    return next(_accounts)


def impression(event_id: str, account_id: int, at: datetime, **fields: object) -> Event:
    return Event(event_id=event_id, event_type=EventType.IMPRESSION, occurred_at=at, account_id=account_id, **fields)  # type: ignore[arg-type]


def rollup(store: EventStore, account_id: int) -> dict[str, int]:
    result = store.query(
        "SELECT sum(impressions), sum(clicks), sum(cost_micros), sum(installs), sum(conversions) "
        "FROM event_rollup_hourly WHERE account_id = {a:UInt64}",
        {"a": account_id},
    )
    impressions, clicks, cost, installs, conversions = result.rows[0]
    return {
        "impressions": impressions,
        "clicks": clicks,
        "cost_micros": cost,
        "installs": installs,
        "conversions": conversions,
    }


def raw_ids(store: EventStore, account_id: int) -> Counter[str]:
    result = store.query("SELECT event_id FROM events WHERE account_id = {a:UInt64}", {"a": account_id})
    return Counter(row[0] for row in result.rows)


def test_duplicate_ids_count_once_within_a_batch_across_batches_and_after_loading(store: EventStore) -> None:
    account = new_account()
    at = datetime(2025, 5, 1, 10, 0, tzinfo=UTC)
    first = [impression(f"imp-{account}-{i}", account, at) for i in range(5)]
    store.append(first + first[:2])  # duplicates inside one append
    store.append(first[2:4])  # and in a later append, before loading
    store.flush()
    store.append(first)  # and after the first copies were loaded
    store.append(
        [
            Event(
                event_id=f"chg-{account}",
                event_type=EventType.CHARGE,
                occurred_at=at,
                account_id=account,
                cost_micros=2_500,
            )
        ]
        * 3
    )
    store.flush()

    assert rollup(store, account)["impressions"] == 5
    assert rollup(store, account)["cost_micros"] == 2_500
    assert set(raw_ids(store, account).values()) == {1}


def test_a_late_event_lands_in_its_own_hour(store: EventStore) -> None:
    account = new_account()
    now = datetime(2025, 6, 3, 12, 30, tzinfo=UTC)
    store.append([impression(f"now-{account}", account, now)])
    store.flush()
    late = now - timedelta(days=2, hours=5, minutes=10)
    store.append([impression(f"late-{account}", account, late)])
    store.flush()

    result = store.query(
        "SELECT toString(hour), sum(impressions) FROM event_rollup_hourly "
        "WHERE account_id = {a:UInt64} GROUP BY hour ORDER BY hour",
        {"a": account},
    )
    assert result.rows == [[late.strftime("%Y-%m-%d %H:00:00"), 1], [now.strftime("%Y-%m-%d %H:00:00"), 1]]


def test_conversions_money_and_video_events_are_rolled_up_by_type(store: EventStore) -> None:
    account = new_account()
    at = datetime(2025, 7, 1, 8, tzinfo=UTC)
    store.append(
        [
            Event(
                event_id=f"i-{account}",
                event_type=EventType.INSTALL,
                occurred_at=at,
                account_id=account,
                conversion_event="INSTALL",
                revenue_micros=0,
            ),
            Event(
                event_id=f"p-{account}",
                event_type=EventType.IN_APP_EVENT,
                occurred_at=at,
                account_id=account,
                conversion_event="PURCHASE",
                revenue_micros=4_990_000,
            ),
            Event(
                event_id=f"c-{account}", event_type=EventType.CLICK, occurred_at=at, account_id=account, cost_micros=999
            ),  # cost only counts from charge events
            Event(event_id=f"v-{account}", event_type=EventType.VIDEO_COMPLETE, occurred_at=at, account_id=account),
            Event(event_id=f"x-{account}", event_type=EventType.INVALID, occurred_at=at, account_id=account),
        ]
    )
    store.flush()
    sums = rollup(store, account)
    assert sums == {"impressions": 0, "clicks": 1, "cost_micros": 0, "installs": 1, "conversions": 1}
    by_event = store.query(
        "SELECT conversion_event, sum(revenue_micros), sum(video_completes), sum(invalid) "
        "FROM event_rollup_hourly WHERE account_id = {a:UInt64} GROUP BY conversion_event "
        "ORDER BY conversion_event",
        {"a": account},
    ).rows
    assert by_event == [["", 0, 1, 1], ["INSTALL", 0, 0, 0], ["PURCHASE", 4_990_000, 0, 0]]


def media_cost(store: EventStore, account_id: int, table: str = "event_rollup_hourly") -> tuple[int, int]:
    result = store.query(
        f"SELECT sum(media_cost_micros), sum(media_cost_impressions) FROM {table} WHERE account_id = {{a:UInt64}}",
        {"a": account_id},
    )
    total, priced = result.rows[0]
    return total, priced


def test_media_cost_is_summed_from_impressions_and_an_unknown_price_stays_unknown(store: EventStore) -> None:
    account = new_account()
    at = datetime(2025, 7, 2, 8, tzinfo=UTC)
    store.append(
        [
            impression(f"m1-{account}", account, at, media_cost_micros=1_200),
            impression(f"m2-{account}", account, at, media_cost_micros=0),  # a known price of nothing
            impression(f"m3-{account}", account, at),  # unknown
            impression(f"m1-{account}", account, at, media_cost_micros=9_999),  # a retry: the first copy counts
            Event(
                event_id=f"c-{account}",
                event_type=EventType.CHARGE,
                occurred_at=at,
                account_id=account,
                cost_micros=3_000,
                media_cost_micros=777,
            ),  # media cost only counts from impressions
        ]
    )
    store.flush()
    assert media_cost(store, account) == (1_200, 2)
    assert media_cost(store, account, "event_rollup_campaign_hourly") == (1_200, 2)
    assert rollup(store, account)["impressions"] == 3 and rollup(store, account)["cost_micros"] == 3_000
    raw = store.query(
        "SELECT event_id, media_cost_micros FROM events WHERE account_id = {a:UInt64} "
        "AND event_type = 'impression' ORDER BY event_id",
        {"a": account},
    ).rows
    assert raw == [[f"m1-{account}", 1_200], [f"m2-{account}", 0], [f"m3-{account}", None]]
    with pytest.raises(ValueError, match="media_cost_micros"):
        store.append([impression(f"m4-{account}", account, at, media_cost_micros=-1)])


def test_a_store_made_before_media_cost_is_upgraded_on_open_and_keeps_its_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from adstack.events import schema

    at = datetime(2025, 7, 3, 8, tzinfo=UTC)
    # The schema as it was before media cost: no raw column, no rollup columns, views that do not select them.
    monkeypatch.delitem(schema.EVENT_TABLE_COLUMNS, "media_cost_micros")
    monkeypatch.delitem(schema.ROLLUP_METRICS, "media_cost_impressions")
    monkeypatch.delitem(schema.MONEY_METRICS, "media_cost_micros")
    old = EventStore(journal_dir=tmp_path / "journal", chdb_path=tmp_path / "chdb")
    old.append([impression("before-1", 1, at), impression("before-2", 1, at, media_cost_micros=500)])
    old.append(
        [Event(event_id="before-charge", event_type=EventType.CHARGE, occurred_at=at, account_id=1, cost_micros=4_000)]
    )
    old.flush()
    assert "media_cost_micros" not in {
        r[0]
        for r in old.query(
            "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = 'events'"
        ).rows
    }
    old.close()
    monkeypatch.undo()
    # A line the earlier version journaled and did not load before it stopped.
    legacy = event_record(impression("pending", 1, at))
    del legacy["media_cost_micros"]
    journal = Journal(tmp_path / "journal")
    journal.append(orjson.dumps(legacy) + b"\n")
    journal.close()

    upgraded = EventStore(journal_dir=tmp_path / "journal", chdb_path=tmp_path / "chdb")
    try:
        upgraded.append(
            [
                impression("after-1", 1, at, media_cost_micros=1_500),
                impression("before-1", 1, at, media_cost_micros=9_000),
            ]
        )  # a late retry of an old one
        upgraded.flush()
        assert rollup(upgraded, 1)["impressions"] == 4 and rollup(upgraded, 1)["cost_micros"] == 4_000
        assert media_cost(upgraded, 1) == (1_500, 1)
        assert media_cost(upgraded, 1, "event_rollup_campaign_hourly") == (1_500, 1)
        raw = dict(upgraded.query("SELECT event_id, media_cost_micros FROM events").rows)
        assert raw == {"before-1": None, "before-2": None, "before-charge": None, "pending": None, "after-1": 1_500}
    finally:
        upgraded.close()
    again = EventStore(journal_dir=tmp_path / "journal", chdb_path=tmp_path / "chdb")  # nothing left to do
    try:
        assert media_cost(again, 1) == (1_500, 1)
    finally:
        again.close()


def test_bad_records_are_refused_before_they_reach_the_journal(store: EventStore) -> None:
    at = datetime(2025, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="event_id"):
        store.append([impression("", 1, at)])
    with pytest.raises(ValueError, match="account_id"):
        store.append([impression("ok", 0, at)])


event_ids = st.sampled_from([f"e{i}" for i in range(12)])
kinds = st.sampled_from([EventType.IMPRESSION, EventType.CLICK, EventType.CHARGE])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batches=st.lists(
        st.lists(st.tuples(event_ids, kinds, st.integers(0, 10_000), st.integers(0, 72)), max_size=8),
        min_size=1,
        max_size=4,
    ),
    flush_between=st.booleans(),
)
def test_rollups_equal_the_first_copy_of_each_id(
    store: EventStore, batches: list[list[tuple[str, EventType, int, int]]], flush_between: bool
) -> None:
    account = new_account()
    start = datetime(2025, 8, 1, tzinfo=UTC)
    first_copy: dict[str, tuple[EventType, int]] = {}
    for batch in batches:
        events = []
        for suffix, kind, cost, hours in batch:
            event_id = f"{account}-{suffix}"
            first_copy.setdefault(event_id, (kind, cost))
            kind, cost = first_copy[event_id]  # a retry repeats the same event
            events.append(
                Event(
                    event_id=event_id,
                    event_type=kind,
                    occurred_at=start + timedelta(hours=hours),
                    account_id=account,
                    cost_micros=cost,
                )
            )
        store.append(events)
        if flush_between:
            store.flush()
    store.flush()
    sums = rollup(store, account)
    assert sums["impressions"] == sum(1 for k, _ in first_copy.values() if k == EventType.IMPRESSION)
    assert sums["clicks"] == sum(1 for k, _ in first_copy.values() if k == EventType.CLICK)
    assert sums["cost_micros"] == sum(c for k, c in first_copy.values() if k == EventType.CHARGE)


def test_the_process_store_follows_the_settings_and_reopens_after_another_data_dir(tmp_path: Path) -> None:
    first = Settings(data_dir=tmp_path / "one", secret_key="k")
    second = Settings(data_dir=tmp_path / "two", secret_key="k")
    at = datetime(2025, 2, 1, tzinfo=UTC)
    get_event_store(first).append([impression("a", 1, at)])
    get_event_store(second).append([impression("b", 1, at), impression("c", 1, at)])
    assert get_event_store(first) is get_event_store(first)
    get_event_store(first).flush()
    get_event_store(second).flush()  # takes the embedded engine from the first store
    assert rollup(get_event_store(first), 1)["impressions"] == 1  # and it comes back
    assert rollup(get_event_store(second), 1)["impressions"] == 2


WRITER = textwrap.dedent("""
    import sys
    from datetime import UTC, datetime, timedelta
    from pathlib import Path
    from adstack.events.models import Event, EventType
    from adstack.events.service import EventStore

    root = Path(sys.argv[1])
    store = EventStore(journal_dir=root / "journal", chdb_path=root / "chdb", batch_events=300)
    start = datetime(2025, 9, 1, tzinfo=UTC)
    batch = 0
    while True:
        events = [Event(event_id=f"b{batch}-{i}", event_type=EventType.IMPRESSION,
                        occurred_at=start + timedelta(minutes=batch), account_id=7) for i in range(100)]
        # every batch is sent twice, as a retrying writer would
        store.append(events)
        store.append(events[:50])
        print(batch, flush=True)  # acknowledged
        batch += 1
        if batch % 3 == 0:
            store.flush()
""")


def test_a_killed_writer_loses_nothing_it_acknowledged_and_nothing_counts_twice(tmp_path: Path) -> None:
    root = tmp_path / "crash"
    env = os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)}
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(root)], stdout=subprocess.PIPE, text=True, env=env)
    assert writer.stdout is not None
    acknowledged: list[int] = []
    deadline = time.monotonic() + 120
    while len(acknowledged) < 24 and time.monotonic() < deadline:
        line = writer.stdout.readline()
        if not line:
            break
        acknowledged.append(int(line))
    writer.send_signal(signal.SIGKILL)  # mid-write or mid-load, wherever it is
    writer.wait()
    assert len(acknowledged) >= 6, "the writer did not get going"

    reopened = EventStore(journal_dir=root / "journal", chdb_path=root / "chdb")
    try:
        reopened.flush()
        ids = raw_ids(reopened, 7)
        expected = {f"b{b}-{i}" for b in acknowledged for i in range(100)}
        assert expected <= set(ids)
        assert set(ids.values()) == {1}
        assert rollup(reopened, 7)["impressions"] == len(ids)
    finally:
        reopened.close()


def test_a_process_that_may_not_own_the_store_reads_through_the_owner_and_never_opens_it(tmp_path: Path) -> None:
    from adstack.events.remote import StoreUnavailable

    serving = EventStore(journal_dir=tmp_path / "journal", chdb_path=tmp_path / "chdb", may_own=False)
    at = datetime(2025, 3, 1, tzinfo=UTC)
    serving.append([impression("s1", 41, at), impression("s2", 41, at)])
    assert not serving.owns()
    with pytest.raises(StoreUnavailable):
        serving.query("SELECT 1")  # nobody owns it yet, and this process will not
    pipeline = EventStore(journal_dir=tmp_path / "journal", chdb_path=tmp_path / "chdb")
    try:
        pipeline.append([impression("p1", 41, at)])
        pipeline.start_loader(interval_seconds=0.05)  # as `adstack pipeline` does: it takes the store and opens it
        deadline = time.monotonic() + 10
        while not (tmp_path / "store.sock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pipeline.owns()
        assert rollup(serving, 41)["impressions"] == 3  # answered by the owner, which loaded both processes' lines
        assert not serving.owns()
    finally:
        pipeline.close()
        serving.close()
