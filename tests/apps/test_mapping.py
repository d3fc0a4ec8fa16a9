"""Event-name mapping rules as pure functions."""

from __future__ import annotations

from adstack.apps.mapping import MappingRule, resolve_event
from adstack.core.vocabulary import ConversionEvent

LEVEL_10 = MappingRule(
    "af_level_achieved", ConversionEvent.LEVEL_ACHIEVED, ({"param": "level", "op": "eq", "value": "10"},)
)


def test_conditions_decide_and_do_not_fall_back_to_standard_names() -> None:
    assert resolve_event("af_level_achieved", {"level": "10"}, [LEVEL_10]) is ConversionEvent.LEVEL_ACHIEVED
    assert resolve_event("af_level_achieved", {"level": "10.0"}, [LEVEL_10]) is ConversionEvent.LEVEL_ACHIEVED
    assert resolve_event("af_level_achieved", {"level": "5"}, [LEVEL_10]) is None
    assert resolve_event("af_level_achieved", {}, [LEVEL_10]) is None
    assert resolve_event("af_level_achieved", {"level": "5"}, []) is ConversionEvent.LEVEL_ACHIEVED


def test_operators_and_first_match_wins() -> None:
    rules = [
        MappingRule("deposit", ConversionEvent.FIRST_DEPOSIT, ({"param": "n", "op": "eq", "value": "1"},)),
        MappingRule("deposit", ConversionEvent.CUSTOMIZE1, ({"param": "amount", "op": "gte", "value": "100"},)),
        MappingRule("deposit", ConversionEvent.CUSTOMIZE2, ({"param": "tier", "op": "in", "value": ["gold", "vip"]},)),
        MappingRule("deposit", ConversionEvent.CUSTOMIZE3, ({"param": "promo", "op": "exists"},)),
    ]
    assert resolve_event("Deposit", {"n": "1", "amount": "500"}, rules) is ConversionEvent.FIRST_DEPOSIT
    assert resolve_event("deposit", {"n": "2", "amount": "100"}, rules) is ConversionEvent.CUSTOMIZE1
    assert resolve_event("deposit", {"amount": "99.5", "tier": "VIP"}, rules) is ConversionEvent.CUSTOMIZE2
    assert resolve_event("deposit", {"promo": "x"}, rules) is ConversionEvent.CUSTOMIZE3
    assert resolve_event("deposit", {"amount": "abc"}, rules) is None


def test_standard_names_of_the_partners() -> None:
    for name, event in (
        ("af_purchase", "PURCHASE"),
        ("complete_registration", "REGISTRATION"),
        ("achieve_level", "LEVEL_ACHIEVED"),
        ("AD_REVENUE", "AD_REVENUE"),
        ("_install", "INSTALL"),
        ("__iap__", "PURCHASE"),
        ("subscribe", "SUBSCRIBE"),
        ("first_deposit", "FIRST_DEPOSIT"),
    ):
        assert resolve_event(name, {}, []) == ConversionEvent(event)
    assert resolve_event("some_custom_thing", {}, []) is None
