"""The msgspec mirror of the SDK ad request takes only what the route's pydantic model takes, with the same values:
the fast path serves what it decodes, and hands everything else to the route."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from adstack.serving.models import AdRequestIn, AdRequestWire, decode_ad_request

WHITESPACE = st.sampled_from(["", " ", "\t", "\n", "\u00a0", "\u3000"])
TEXT = st.one_of(
    st.text(max_size=8),
    st.builds(lambda pad, core, end: pad + core + end, WHITESPACE, st.text(max_size=300), WHITESPACE),
    st.sampled_from(["", "ID", "id", "ID\n", "É", "12", "wifi", "4g", "male", "\ud800"]),
    # each length limit of the model, and one past it
    st.sampled_from([32, 33, 35, 36, 45, 46, 64, 65, 100, 101, 255, 256]).map(lambda n: "é" * n),
)
SCALAR = st.one_of(
    st.none(), st.booleans(), TEXT,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, 10, 11, 120, 121, 86_400, 86_401, 2**63 - 1, 2**63]),
    st.floats(allow_nan=False, allow_infinity=False), st.just(5.0),
)


def maybe(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with any subset of `fields`, plus a stray key now and then."""
    return st.fixed_dictionaries({}, optional={**fields, "extra": SCALAR})


def clean_text(limit: int) -> st.SearchStrategy[str]:
    return st.text(st.characters(blacklist_categories=("Cs", "Zs", "Cc")), max_size=limit)


def near_limit(limit: int) -> st.SearchStrategy[str]:
    """The limit exactly, one past it, and whitespace at either end of a value within it."""
    return st.one_of(st.just("é" * limit), st.just("é" * (limit + 1)), st.just(" " + "é" * limit),
                     st.builds(lambda pad, core: pad + core, WHITESPACE, clean_text(limit)),
                     st.builds(lambda core, pad: core + pad, clean_text(limit), WHITESPACE))


PACKAGE = clean_text(255).filter(bool)
LIMITS = {"gaid": 64, "os_version": 32, "model": 100, "language": 35, "ip": 45, "carrier": 100}
# A request the model takes...
VALID = st.fixed_dictionaries({"ad_space_id": st.integers(1, 2**63 - 1)}, optional={
    "count": st.integers(1, 10),
    "device": st.fixed_dictionaries({}, optional={
        **{name: clean_text(limit) for name, limit in LIMITS.items()},
        "country": st.sampled_from(["ID", "id", "Br"]), "network": st.sampled_from(["wifi", "4g"])}),
    "user": st.fixed_dictionaries({}, optional={"age": st.integers(0, 120),
                                                "gender": st.sampled_from(["male", "female"])}),
    "app": st.fixed_dictionaries({}, optional={
        "package": PACKAGE, "installed_packages": st.lists(PACKAGE, max_size=3),
        "usage_seconds": st.dictionaries(PACKAGE, st.integers(0, 86_400), max_size=3)}),
})
# ... and one field of it at, past or around one of the model's limits.
EDGES: dict[tuple[str, ...], st.SearchStrategy[Any]] = {
    ("ad_space_id",): st.sampled_from([0, -1, 2**63 - 1, 2**63, 5.0, "5", True, None]),
    ("count",): st.sampled_from([0, 1, 10, 11, 2.0, None]),
    **{("device", name): st.one_of(near_limit(limit), SCALAR) for name, limit in LIMITS.items()},
    ("device", "country"): st.sampled_from(["IDN", "I", "ID\n", " ID", "É1", "", 12]),
    ("device", "network"): st.sampled_from(["lte", "WIFI", "", None, 4]),
    ("user", "age"): st.sampled_from([-1, 0, 120, 121, 30.0, "30", None]),
    ("user", "gender"): st.sampled_from(["MALE", "other", "", None]),
    ("app", "package"): st.one_of(near_limit(255), st.just("")),
    ("app", "installed_packages"): st.one_of(st.lists(st.one_of(near_limit(255), st.just("")), min_size=1,
                                                      max_size=3),
                                             st.sampled_from([["com.a"] * 1000, ["com.a"] * 1001])),
    ("app", "usage_seconds"): st.one_of(
        st.dictionaries(st.one_of(near_limit(255), st.just("")), st.just(1), min_size=1, max_size=2),
        st.dictionaries(PACKAGE, st.sampled_from([-1, 0, 86_400, 86_401]), min_size=1, max_size=2),
        st.just({f"com.a{n}": 1 for n in range(1001)})),
    ("device",): SCALAR, ("user",): SCALAR, ("app",): SCALAR,
}


@st.composite
def edged(draw: st.DrawFn) -> dict[str, Any]:
    request = draw(VALID)
    path = draw(st.sampled_from(sorted(EDGES)))
    target = request
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = draw(EDGES[path])
    return request


WILD = maybe({"ad_space_id": SCALAR, "count": SCALAR, "device": st.one_of(maybe({
    name: SCALAR for name in (*LIMITS, "country", "network")}), SCALAR), "user": SCALAR, "app": SCALAR})
REQUEST = st.one_of(VALID, edged(), WILD)


def as_plain(data: AdRequestIn | AdRequestWire) -> dict[str, Any]:
    def section(obj: Any, names: tuple[str, ...]) -> dict[str, Any]:
        return {name: getattr(obj, name) for name in names}

    return {"ad_space_id": data.ad_space_id, "count": data.count,
            "device": section(data.device, ("gaid", "os_version", "model", "language", "country", "ip", "network",
                                            "carrier")),
            "user": section(data.user, ("age", "gender")),
            "app": section(data.app, ("package", "installed_packages", "usage_seconds"))}


def agrees(body: bytes) -> None:
    fast = decode_ad_request(body)
    try:
        slow = AdRequestIn.model_validate_json(body)
    except ValidationError:
        assert fast is None, f"the fast path took what the route refuses: {body[:200]!r}"
        return
    if fast is not None:
        assert as_plain(fast) == as_plain(slow)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(REQUEST)
def test_the_fast_decoder_never_takes_more_than_the_route(request: dict[str, Any]) -> None:
    agrees(orjson.dumps(request, option=orjson.OPT_NON_STR_KEYS) if _encodable(request) else b"{")


def _encodable(value: Any) -> bool:
    try:
        orjson.dumps(value)
    except TypeError:  # a lone surrogate: sent as an escape below
        return False
    return True


def with_field(path: tuple[str, ...], value: Any) -> bytes:
    request: dict[str, Any] = {"ad_space_id": 1}
    target = request
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value
    return orjson.dumps(request)


BOUNDARIES = [
    *[(("device", name), value) for name, limit in LIMITS.items()
      for value in ("é" * limit, "é" * (limit + 1), " " + "é" * (limit - 1), "é" * (limit - 1) + "\n")],
    *[(("app", "package"), value) for value in ("é" * 255, "é" * 256, " a", "a ", "", " ")],
    *[(("app", "installed_packages"), value) for value in (["é" * 255], ["é" * 256], [" a"], [""], ["a"] * 1000,
                                                            ["a"] * 1001)],
    *[(("app", "usage_seconds"), value) for value in ({"a": 0}, {"a": -1}, {"a": 86_400}, {"a": 86_401},
                                                      {"é" * 256: 1}, {" a": 1}, {"": 1},
                                                      {f"a{n}": 1 for n in range(1000)},
                                                      {f"a{n}": 1 for n in range(1001)})],
    *[(("user", "age"), value) for value in (-1, 0, 120, 121)],
    *[(("count",), value) for value in (0, 1, 10, 11)],
    *[(("ad_space_id",), value) for value in (0, 1, 2**63 - 1, 2**63)],
]


@pytest.mark.parametrize(("path", "value"), BOUNDARIES,
                         ids=[f"{'.'.join(p)}={str(v)[:12]!r}{len(v) if isinstance(v, list | dict | str) else ''}"
                              for p, v in BOUNDARIES])
def test_each_limit_agrees(path: tuple[str, ...], value: Any) -> None:
    agrees(with_field(path, value))


@pytest.mark.parametrize("body", [
    b'{"ad_space_id": 5, "device": {"country": "ID\\n"}}',
    b'{"ad_space_id": 5, "device": {"gaid": "\\ud800"}}',
    b'{"ad_space_id": 5, "device": {"gaid": " 38400000-8cf0-11bd-b23e-10b96e40000d "}}',
    b'{"ad_space_id": 5, "app": {"installed_packages": ["com.a", " "]}}',
    b'{"ad_space_id": 5, "app": {"usage_seconds": {" com.a": 5}}}',
    b'{"ad_space_id": 5, "ad_space_id": 6}',
    b'{"ad_space_id": 5.0}',
    b'{"ad_space_id": true}',
    b'{"ad_space_id": "5"}',
    b'{"ad_space_id": 5, "device": null}',
    b'{"ad_space_id": 5, "user": {"gender": "MALE"}}',
    b'\xef\xbb\xbf{"ad_space_id": 5}',
    b'{"ad_space_id": 5} ',
    b'[{"ad_space_id": 5}]',
])
def test_edge_cases_agree(body: bytes) -> None:
    agrees(body)


def test_an_ordinary_request_takes_the_fast_path_with_the_routes_values() -> None:
    body = orjson.dumps({"ad_space_id": 7, "count": 2, "device": {"gaid": "38400000-8cf0-11bd-b23e-10b96e40000d",
                                                                  "country": "id", "network": "4g"},
                         "user": {"age": 30, "gender": "female"},
                         "app": {"package": "com.a", "installed_packages": ["com.b"], "usage_seconds": {"com.b": 60}}})
    fast = decode_ad_request(body)
    assert fast is not None
    assert as_plain(fast) == as_plain(AdRequestIn.model_validate_json(body))


@pytest.mark.parametrize(("path", "value"), [
    (("ad_space_id",), "5"), (("count",), "5"), (("count",), 5.0), (("count",), True),
    (("user", "age"), "30"), (("user", "age"), 30.0), (("app", "usage_seconds"), {"com.a": "60"}),
])
def test_a_number_must_be_a_json_number(path: tuple[str, ...], value: Any) -> None:
    with pytest.raises(ValidationError) as refused:
        AdRequestIn.model_validate_json(with_field(path, value))
    assert refused.value.errors()[0]["loc"][:len(path)] == path


def test_network_and_gender_are_read_in_any_case() -> None:
    body = orjson.dumps({"ad_space_id": 1, "device": {"network": "4G"}, "user": {"gender": "Female"}})
    data = AdRequestIn.model_validate_json(body)
    assert data.device.network == "4g" and data.user.gender == "female"
