"""Replaying the log: the ledger is the truth for money, and a replay brings the event store back to it."""

from __future__ import annotations

import shutil

from adstack.core.settings import Settings
from adstack.events.service import close_event_store, get_event_store
from adstack.pipeline.service import log_directory
from tests.attribution.helpers import new_gaid, scenario
from tests.support import Api, expect

CPM_MICROS = 4_000_000  # 4,000 micros an impression


def _store_charges(settings: Settings, account_id: int) -> tuple[int, int]:
    row = (
        get_event_store(settings)
        .query(
            "SELECT count(), sum(cost_micros) FROM events WHERE event_type = 'charge' AND account_id = {a:UInt64}",
            {"a": account_id},
        )
        .rows[0]
    )
    return int(row[0]), int(row[1] or 0)


def test_a_rebuilt_event_store_gets_every_charge_back_from_a_replay_and_nothing_is_charged_twice(
    api: Api, settings: Settings
) -> None:
    s = scenario(api, settings, bid_type="cpc")
    opening = s.balance_micros()
    for _ in range(7):
        expect(api.client.get(s.serve(new_gaid(), bid_type="cpm", price_micros=CPM_MICROS).impression_url), 204)
    api.settle()
    charged = opening - s.balance_micros()
    assert charged == 7 * CPM_MICROS // 1000
    assert _store_charges(settings, s.account_id) == (7, charged)

    # The event store is lost and rebuilt empty; the log still holds every event, so every consumer replays it.
    close_event_store(settings)
    shutil.rmtree(settings.data_dir / "events" / "journal")
    shutil.rmtree(settings.data_dir / "events" / "chdb")
    for checkpoint in log_directory(settings).glob("consumer-*.json"):
        checkpoint.unlink()
    api.settle()

    assert s.balance_micros() == opening - charged  # the ledger already held these charges: none again
    assert _store_charges(settings, s.account_id) == (7, charged)
