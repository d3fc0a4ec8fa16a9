"""The targeting index returns exactly the ad groups a brute-force check of every dimension would."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from adstack.serving.index import TargetingIndex
from adstack.serving.request import AdRequest
from adstack.serving.snapshot import AdGroupSnap
from tests.serving.support import NOW, group

COUNTRIES = ["in", "id", "ru"]
LANGUAGES = ["en", "en-us", "hi"]
PLACEMENTS = ["banner", "interstitial"]


def small_set(values: list[str]) -> st.SearchStrategy[frozenset[str]]:
    return st.frozensets(st.sampled_from(values), max_size=2)


targetings = st.fixed_dictionaries({
    "countries": small_set(COUNTRIES),
    "languages": small_set(LANGUAGES),
    "genders": small_set(["male", "female"]),
    "age_ranges": small_set(["18-24", "25-34"]),
    "networks": small_set(["wifi", "4g"]),
    "carriers": small_set(["jio", "airtel"]),
    "device_models": small_set(["m1", "m2"]),
    "ad_space_ids": st.frozensets(st.sampled_from([10, 11]), max_size=1),
    "publisher_ids": st.frozensets(st.sampled_from([1, 2]), max_size=1),
    "deal_ids": st.frozensets(st.sampled_from(["d1", "D1", "d2"]), max_size=1),
    "os_min": st.none() | st.tuples(st.integers(8, 12)),
})

requests = st.builds(
    AdRequest, now=st.just(NOW), placement_type=st.sampled_from(PLACEMENTS),
    ad_space_id=st.sampled_from([10, 11, None]), publisher_id=st.sampled_from([1, 2, None]),
    country=st.sampled_from([c.upper() for c in COUNTRIES] + [None]), language=st.sampled_from([*LANGUAGES, None]),
    gender=st.sampled_from(["male", "female", None]), age=st.sampled_from([20, 30, 50, None]),
    network=st.sampled_from(["wifi", "4g", None]), carrier=st.sampled_from(["jio", "airtel", None]),
    device_model=st.sampled_from(["m1", "m2", None]), os_version=st.sampled_from([(9,), (11, 2), None]),
    deal_ids=st.frozensets(st.sampled_from(["d1", "D1", "d2"]), max_size=2), private_auction=st.booleans(),
)


def matches(g: AdGroupSnap, r: AdRequest) -> bool:
    t = g.targeting

    def one(allowed: frozenset, value: object) -> bool:
        return not allowed or value in allowed

    inventory = not (t.ad_space_ids or t.publisher_ids) or r.ad_space_id in t.ad_space_ids \
        or r.publisher_id in t.publisher_ids
    languages = {r.language, r.language.split("-")[0]} if r.language else set()
    deals = bool(t.deal_ids & r.deal_ids) if (t.deal_ids or r.private_auction) else True
    os_ok = t.os_min is None or (r.os_version is not None and r.os_version[0] >= t.os_min[0])
    return (one(t.placement_types, r.placement_type) and inventory and deals and os_ok
            and one(t.countries, (r.country or "").lower()) and (not t.languages or bool(t.languages & languages))
            and one(t.genders, r.gender) and one(t.age_ranges, r.age_range) and one(t.networks, r.network)
            and one(t.carriers, r.carrier) and one(t.device_models, r.device_model))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(PLACEMENTS), targetings), min_size=1, max_size=25),
       st.lists(requests, min_size=1, max_size=10))
def test_candidates_equal_brute_force(specs, sampled_requests) -> None:
    groups = [group(n + 1, placement=placement, targeting=spec) for n, (placement, spec) in enumerate(specs)]
    index = TargetingIndex(groups)
    for r in sampled_requests:
        found = {groups[o].id for o in index.candidates(r)}
        assert found == {g.id for g in groups if matches(g, r)}


def test_empty_index_and_unrestricted_groups() -> None:
    assert len(TargetingIndex([]).candidates(AdRequest(now=NOW, placement_type="banner"))) == 0
    anything = group(1, targeting={"placement_types": frozenset()})
    assert list(TargetingIndex([anything]).candidates(AdRequest(now=NOW, placement_type=None))) == [0]
