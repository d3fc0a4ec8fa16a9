"""The attribution rules as pure functions: windows, precedence, re-attribution, event windows, fraud flags."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from adstack.attribution.rules import (
    AttributionType,
    FraudFlag,
    MatchType,
    PriorInstall,
    Touch,
    TouchKind,
    Windows,
    attribute_event,
    attribute_install,
    bounded_time,
)

T0 = datetime(2025, 3, 1, 12, tzinfo=UTC)
WINDOWS = Windows()


def click(at: datetime, touch_id: str = "c1", ad_group_id: int = 10) -> Touch:
    return Touch(TouchKind.CLICK, touch_id, at, ad_group_id=ad_group_id)


def impression(at: datetime, touch_id: str = "i1", ad_group_id: int = 20) -> Touch:
    return Touch(TouchKind.IMPRESSION, touch_id, at, ad_group_id=ad_group_id)


def test_click_beats_a_later_impression() -> None:
    decision = attribute_install(
        installed_at=T0,
        windows=WINDOWS,
        device_clicks=[click(T0 - timedelta(hours=5))],
        device_impressions=[impression(T0 - timedelta(minutes=5))],
    )
    assert (decision.attribution_type, decision.match_type) == (AttributionType.CLICK, MatchType.GAID)
    assert decision.touch is not None and decision.touch.ad_group_id == 10


def test_impression_within_view_through_window_when_no_click() -> None:
    decision = attribute_install(
        installed_at=T0, windows=WINDOWS, device_impressions=[impression(T0 - timedelta(hours=23))]
    )
    assert decision.attribution_type is AttributionType.VIEW
    late = attribute_install(
        installed_at=T0, windows=WINDOWS, device_impressions=[impression(T0 - timedelta(hours=25))]
    )
    assert late.attribution_type is AttributionType.ORGANIC
    off = attribute_install(
        installed_at=T0, windows=Windows(view_through=None), device_impressions=[impression(T0 - timedelta(hours=1))]
    )
    assert off.attribution_type is AttributionType.ORGANIC


def test_lookback_edges() -> None:
    inside = attribute_install(
        installed_at=T0, windows=WINDOWS, touch_by_click_id=click(T0 - timedelta(days=6, hours=23))
    )
    assert (inside.attribution_type, inside.match_type) == (AttributionType.CLICK, MatchType.CLICK_ID)
    assert inside.click_to_install == timedelta(days=6, hours=23)
    outside = attribute_install(
        installed_at=T0, windows=WINDOWS, touch_by_click_id=click(T0 - timedelta(days=7, hours=1))
    )
    assert outside.attribution_type is AttributionType.ORGANIC
    per_app = attribute_install(
        installed_at=T0,
        windows=Windows(click_lookback=timedelta(days=1)),
        device_clicks=[click(T0 - timedelta(days=2))],
    )
    assert per_app.attribution_type is AttributionType.ORGANIC


def test_click_id_match_beats_a_later_device_click() -> None:
    decision = attribute_install(
        installed_at=T0,
        windows=WINDOWS,
        touch_by_click_id=click(T0 - timedelta(days=2), "by-id", ad_group_id=1),
        device_clicks=[click(T0 - timedelta(hours=1), "by-device", ad_group_id=2)],
    )
    assert decision.match_type is MatchType.CLICK_ID and decision.touch is not None
    assert decision.touch.touch_id == "by-id"


def test_last_click_wins_among_device_clicks() -> None:
    decision = attribute_install(
        installed_at=T0,
        windows=WINDOWS,
        device_clicks=[
            click(T0 - timedelta(days=3), "old"),
            click(T0 - timedelta(hours=2), "new"),
            click(T0 + timedelta(minutes=1), "after-install"),
        ],
    )
    assert decision.touch is not None and decision.touch.touch_id == "new"


def test_reinstall_within_and_past_the_reattribution_window() -> None:
    prior = PriorInstall(
        installed_at=T0 - timedelta(days=89),
        attribution_type=AttributionType.CLICK,
        match_type=MatchType.GAID,
        touch=click(T0 - timedelta(days=90), "first"),
    )
    within = attribute_install(
        installed_at=T0, windows=WINDOWS, prior_install=prior, device_clicks=[click(T0 - timedelta(hours=1), "second")]
    )
    assert within.reinstall and within.touch is not None and within.touch.touch_id == "first"
    past = attribute_install(
        installed_at=T0 + timedelta(days=2),
        windows=WINDOWS,
        prior_install=prior,
        device_clicks=[click(T0 + timedelta(days=2) - timedelta(hours=1), "second")],
    )
    assert not past.reinstall and past.touch is not None and past.touch.touch_id == "second"


def test_events_follow_their_install_within_the_event_window() -> None:
    install = PriorInstall(
        installed_at=T0,
        attribution_type=AttributionType.VIEW,
        match_type=MatchType.GAID,
        touch=impression(T0 - timedelta(hours=1)),
    )
    lifetime = attribute_event(occurred_at=T0 + timedelta(days=400), windows=WINDOWS, install=install)
    assert lifetime.attribution_type is AttributionType.VIEW
    windowed = Windows(event_window=timedelta(days=30))
    assert (
        attribute_event(occurred_at=T0 + timedelta(days=29), windows=windowed, install=install).attribution_type
        is AttributionType.VIEW
    )
    assert (
        attribute_event(occurred_at=T0 + timedelta(days=31), windows=windowed, install=install).attribution_type
        is AttributionType.ORGANIC
    )
    organic = PriorInstall(
        installed_at=T0, attribution_type=AttributionType.ORGANIC, match_type=MatchType.NONE, touch=None
    )
    assert (
        attribute_event(
            occurred_at=T0 + timedelta(hours=1), windows=WINDOWS, install=organic, touch_by_click_id=click(T0)
        ).attribution_type
        is AttributionType.ORGANIC
    )


def test_the_events_of_an_install_another_network_won_are_other() -> None:
    """Not organic: they were reported among organic events when the partner sent no verdict."""
    other = PriorInstall(installed_at=T0, attribution_type=AttributionType.OTHER, match_type=MatchType.NONE,
                         touch=None)
    for windows in (WINDOWS, Windows(event_window=timedelta(days=30))):
        for later in (timedelta(hours=1), timedelta(days=31)):
            decision = attribute_event(occurred_at=T0 + later, windows=windows, install=other,
                                       touch_by_click_id=click(T0))
            assert (decision.attribution_type, decision.touch) == (AttributionType.OTHER, None)


def test_fraud_flags() -> None:
    injected = attribute_install(installed_at=T0, windows=WINDOWS, touch_by_click_id=click(T0 - timedelta(seconds=4)))
    assert injected.fraud_flags == (FraudFlag.CLICK_INJECTION,)
    honest = attribute_install(installed_at=T0, windows=WINDOWS, touch_by_click_id=click(T0 - timedelta(seconds=40)))
    assert honest.fraud_flags == ()
    spam = attribute_install(
        installed_at=T0,
        windows=WINDOWS,
        device_clicks=[click(T0 - timedelta(minutes=m), f"c{m}") for m in range(1, 40)],
    )
    assert FraudFlag.CLICK_SPAMMING in spam.fraud_flags


@given(
    st.lists(
        st.tuples(
            st.sampled_from([TouchKind.CLICK, TouchKind.IMPRESSION]), st.integers(min_value=-3600, max_value=10 * 86400)
        ),
        max_size=12,
    )
)
def test_attribution_never_uses_a_touch_after_the_install_or_outside_its_window(
    touches: list[tuple[TouchKind, int]],
) -> None:
    clicks = [click(T0 - timedelta(seconds=s), f"c{i}") for i, (k, s) in enumerate(touches) if k is TouchKind.CLICK]
    views = [
        impression(T0 - timedelta(seconds=s), f"i{i}") for i, (k, s) in enumerate(touches) if k is TouchKind.IMPRESSION
    ]
    decision = attribute_install(installed_at=T0, windows=WINDOWS, device_clicks=clicks, device_impressions=views)
    eligible_clicks = [c for c in clicks if timedelta(0) <= T0 - c.occurred_at <= WINDOWS.click_lookback]
    if eligible_clicks:
        assert decision.attribution_type is AttributionType.CLICK
        assert decision.touch is not None
        assert decision.touch.occurred_at == max(c.occurred_at for c in eligible_clicks)
    elif decision.touch is not None:
        assert decision.attribution_type is AttributionType.VIEW
        assert timedelta(0) <= T0 - decision.touch.occurred_at <= timedelta(hours=24)
    else:
        assert decision.attribution_type is AttributionType.ORGANIC


def test_a_clamped_install_is_judged_by_its_receipt_an_upper_bound() -> None:
    """A partner time far ahead is replaced by the receipt. No install follows its own postback, so
    receipt - click bounds the real click-to-install time from above: under 10 s it is click injection
    whatever the partner claimed; longer proves nothing and flags nothing."""
    received = T0
    installed, clamped = bounded_time(T0 + timedelta(days=2), received)
    assert clamped and installed == received
    for click_before, flagged in ((timedelta(seconds=3), True), (timedelta(minutes=1), False)):
        click = Touch(TouchKind.CLICK, "c", received - click_before)
        decision = attribute_install(installed_at=installed, windows=WINDOWS, touch_by_click_id=click)
        assert decision.attribution_type is AttributionType.CLICK
        assert (FraudFlag.CLICK_INJECTION in decision.fraud_flags) is flagged
        assert decision.click_to_install == click_before
