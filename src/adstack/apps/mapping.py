"""Event-name mapping with conditional rules: pure functions.

An app's rules are tried in order; the first whose source name matches and whose conditions all hold wins.
When the app has rules for a name but none holds (LEVEL_ACHIEVED only when level is 10, and this was level 5),
the event does not count: the partners' standard names are used only for names the app has no rule for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from adstack.apps.models import ConditionOperator
from adstack.apps.partners import standard_event
from adstack.core.vocabulary import ConversionEvent


@dataclass(frozen=True)
class MappingRule:
    source_name: str
    event: ConversionEvent
    conditions: Sequence[Mapping[str, Any]] = field(default_factory=tuple)


def _number(value: str) -> Decimal | None:
    try:
        number = Decimal(value.strip())
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _compare(actual: str, op: ConditionOperator, expected: str) -> bool:
    """Equality compares numbers as numbers (10 == 10.0) and text case-insensitively; ordering needs numbers."""
    left, right = _number(actual), _number(expected)
    if op in (ConditionOperator.EQ, ConditionOperator.NE):
        same = left == right if left is not None and right is not None \
            else actual.strip().lower() == expected.strip().lower()
        return same if op is ConditionOperator.EQ else not same
    if left is None or right is None:
        return False
    if op is ConditionOperator.GT:
        return left > right
    if op is ConditionOperator.GTE:
        return left >= right
    if op is ConditionOperator.LT:
        return left < right
    if op is ConditionOperator.LTE:
        return left <= right
    return False


def condition_holds(condition: Mapping[str, Any], params: Mapping[str, str]) -> bool:
    op = ConditionOperator(condition.get("op", ConditionOperator.EQ))
    actual = params.get(str(condition["param"]))
    if op is ConditionOperator.EXISTS:
        return actual is not None and actual != ""
    if actual is None:
        return False
    expected = condition.get("value", "")
    if op is ConditionOperator.IN:
        options = expected if isinstance(expected, list) else [expected]
        return any(_compare(actual, ConditionOperator.EQ, str(option)) for option in options)
    return _compare(actual, op, str(expected[0] if isinstance(expected, list) and expected else expected))


def resolve_event(name: str, params: Mapping[str, str], rules: Iterable[MappingRule]) -> ConversionEvent | None:
    """The event a partner event name counts as, or None when it does not count."""
    key = name.strip().lower()
    named = [rule for rule in rules if rule.source_name.strip().lower() == key]
    for rule in named:
        if all(condition_holds(c, params) for c in rule.conditions):
            return rule.event
    if named:
        return None
    return standard_event(key)
