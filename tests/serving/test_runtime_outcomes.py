"""What the serving runtime learns from tracking: each impression and click counts once in the predictions and in
the creative combinations' statistics, however often the client retried it."""

from __future__ import annotations

import pytest

from adstack.core.settings import Settings
from tests.attribution.helpers import new_gaid, scenario
from tests.support import Api, expect


def test_a_retried_pixel_and_a_double_tap_count_once_in_the_predictions(api: Api, settings: Settings) -> None:
    s = scenario(api, settings, bid_type="cpc", bid_micros=300_000)
    runtime = api.client.app.state.serving  # type: ignore[attr-defined]
    urls = s.serve(new_gaid(), bid_type="cpc", price_micros=300_000)
    for _ in range(3):  # retried within one batch of the log
        expect(api.client.get(urls.impression_url), 204)
    api.settle()
    for _ in range(3):  # and again later, each in a batch of its own, then three taps
        expect(api.client.get(urls.impression_url), 204)
        api.settle()
    for _ in range(3):
        assert api.client.get(urls.click_url, follow_redirects=False).status_code == 302
        api.settle()
    counts = [(o.impressions, o.clicks) for leaf, o in runtime.engine.outcomes.leaves().items()
              if leaf[2] == s.ad_group["id"]]
    assert counts == [(1, 1)]
    combinations = [row for (creative_id, _), row in runtime.engine.outcomes._combinations.items()]
    assert all(row == [1, 1] for row in combinations)


def test_the_remembered_ids_are_bounded(api: Api, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import UTC, datetime

    from adstack.events.models import Event, EventType
    from adstack.serving import runtime as serving_runtime

    # A generation of a thousand ids instead of the product's 200,000: the same bound, in 3,000 events, not 600,000.
    generation = 1_000
    monkeypatch.setattr(serving_runtime, "OBSERVED_IDS_PER_GENERATION", generation)
    runtime = api.client.app.state.serving  # type: ignore[attr-defined]

    def impression(n: int) -> Event:
        return Event(event_id=f"impression:{n}", event_type=EventType.IMPRESSION, occurred_at=datetime.now(UTC),
                     account_id=1, campaign_id=1, ad_group_id=1, creative_id=1, placement_type="banner", country="ID")

    total = 3 * generation
    runtime.observe(impression(n) for n in range(total))
    runtime.observe([impression(total - 1)])  # recent: still a repeat
    assert runtime.engine.outcomes.leaves()[("banner", 1, 1, 1)].impressions == total
    assert len(runtime._observed) + len(runtime._observed_before) <= 2 * generation
