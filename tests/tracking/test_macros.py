"""Macro expansion in third-party URLs, checked against the rule it implements: every known macro, in either
spelling, becomes its URL-encoded value (empty when unknown to the request); everything else stays as written."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st

from adstack.tracking.urls import MACRO_ALIASES, expand_macros

ALIASES = [alias for aliases in MACRO_ALIASES.values() for alias in aliases]
NAME_OF = {alias: name for name, aliases in MACRO_ALIASES.items() for alias in aliases}
VALUES = {
    "click_id": "c/1 x",
    "gaid": "",
    "timestamp": "1764633600",
    "timestamp_ms": "1764633600000",
    "campaign_id": "12",
    "ad_group_id": "",
    "creative_id": "7",
    "ad_space_id": "3",
    "publisher_id": "",
}
ARGS = {
    "click_id": "c/1 x",
    "gaid": None,
    "timestamp": datetime(2025, 12, 2, tzinfo=UTC),
    "campaign_id": 12,
    "ad_group_id": None,
    "creative_id": 7,
    "ad_space_id": 3,
    "publisher_id": None,
}

pieces = st.one_of(
    st.sampled_from(ALIASES).map(lambda a: "{" + a + "}"),
    st.sampled_from(ALIASES).map(lambda a: f"__{a}__"),
    st.sampled_from(["{unknown}", "__OTHER__", "{", "}", "__", "_", "?a=", "&b=", "https://t.example/x"]),
    st.text(alphabet="abcXYZ_{}-=&?/%", max_size=6),
)


def reference(template: str) -> str:
    def replace(match: re.Match[str]) -> str:
        name = NAME_OF.get(match.group(1) or match.group(2))
        return match.group(0) if name is None else quote(VALUES[name], safe="")

    return re.sub(r"\{([A-Za-z_]+)\}|__([A-Z_]+)__", replace, template)


@given(st.lists(pieces, max_size=8).map("".join))
def test_expansion_follows_the_macro_rule(template: str) -> None:
    assert expand_macros(template, **ARGS) == reference(template)


def test_known_macros_in_both_spellings() -> None:
    url = "https://m.example/i?c={click_id}&g=__GAID__&t={ts}&x={unknown}&cr=__CREATIVE_ID__"
    assert expand_macros(url, **ARGS) == "https://m.example/i?c=c%2F1%20x&g=&t=1764633600&x={unknown}&cr=7"
