"""The values every partner's adapter reads through: a missing value, a null word or an unreplaced macro is no
value at all, and JSON is not mistaken for a macro."""

from __future__ import annotations

import pytest

from adstack.attribution.postback_fields import present
from tests.attribution.helpers import UNREPLACED_CLICK_ID_MACROS


@pytest.mark.parametrize(
    "value",
    [
        "{gps_adid}",
        "(clickid)",
        "${(id)!}",
        "{{advertising_id}}",
        "{cl?adstack}",
        "{@postback.clickID}",
        "",
        "  ",
        "null",
        "undefined",
        "[CLICK_ID]",
    ],
)
def test_unreplaced_macros_and_empty_values_are_missing(value: str) -> None:
    assert present(value) is None


def test_json_values_are_not_mistaken_for_macros() -> None:
    assert present('{"level": "10"}') == '{"level": "10"}'


def test_every_macro_syntax_is_an_unreplaced_macro() -> None:
    for macro in UNREPLACED_CLICK_ID_MACROS:
        assert present(macro) is None, macro
    assert present("(none of these)") == "(none of these)"
