"""The targeting index returns exactly the ad groups a brute-force check of every dimension would."""

from __future__ import annotations

import dataclasses
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st
from pyroaring import FrozenBitMap

from adstack.serving import index as index_module
from adstack.serving.eligibility import creative_fits
from adstack.serving.index import TargetingIndex
from adstack.serving.request import AdRequest, Slot
from adstack.serving.snapshot import AdGroupSnap, CreativeSnap
from tests.serving.support import NOW, creative, group

COUNTRIES = ["in", "id", "ru"]
LANGUAGES = ["en", "en-us", "hi"]
PLACEMENTS = ["banner", "interstitial"]


def small_set(values: list[str]) -> st.SearchStrategy[frozenset[str]]:
    return st.frozensets(st.sampled_from(values), max_size=2)


targetings = st.fixed_dictionaries(
    {
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
    }
)

requests = st.builds(
    AdRequest,
    now=st.just(NOW),
    placement_type=st.sampled_from(PLACEMENTS),
    ad_space_id=st.sampled_from([10, 11, None]),
    publisher_id=st.sampled_from([1, 2, None]),
    country=st.sampled_from([c.upper() for c in COUNTRIES] + [None]),
    language=st.sampled_from([*LANGUAGES, None]),
    gender=st.sampled_from(["male", "female", None]),
    age=st.sampled_from([20, 30, 50, None]),
    network=st.sampled_from(["wifi", "4g", None]),
    carrier=st.sampled_from(["jio", "airtel", None]),
    device_model=st.sampled_from(["m1", "m2", None]),
    os_version=st.sampled_from([(9,), (11, 2), None]),
    deal_ids=st.frozensets(st.sampled_from(["d1", "D1", "d2"]), max_size=2),
    private_auction=st.booleans(),
)


def matches(g: AdGroupSnap, r: AdRequest) -> bool:
    t = g.targeting

    def one(allowed: frozenset, value: object) -> bool:
        return not allowed or value in allowed

    inventory = (
        not (t.ad_space_ids or t.publisher_ids) or r.ad_space_id in t.ad_space_ids or r.publisher_id in t.publisher_ids
    )
    languages = {r.language, r.language.split("-")[0]} if r.language else set()
    deals = bool(t.deal_ids & r.deal_ids) if (t.deal_ids or r.private_auction) else True
    os_ok = t.os_min is None or (r.os_version is not None and r.os_version[0] >= t.os_min[0])
    return (
        one(t.placement_types, r.placement_type)
        and inventory
        and deals
        and os_ok
        and one(t.countries, (r.country or "").lower())
        and (not t.languages or bool(t.languages & languages))
        and one(t.genders, r.gender)
        and one(t.age_ranges, r.age_range)
        and one(t.networks, r.network)
        and one(t.carriers, r.carrier)
        and one(t.device_models, r.device_model)
    )


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(PLACEMENTS), targetings), min_size=1, max_size=25),
    st.lists(requests, min_size=1, max_size=10),
)
def test_candidates_equal_brute_force(specs, sampled_requests) -> None:
    groups = [group(n + 1, placement=placement, targeting=spec) for n, (placement, spec) in enumerate(specs)]
    index = TargetingIndex(groups)
    for r in sampled_requests:
        found = {groups[o].id for o in index.candidates(r)}
        assert found == {g.id for g in groups if matches(g, r)}


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(PLACEMENTS), targetings), min_size=1, max_size=40),
    st.lists(requests, min_size=1, max_size=10),
    st.frozensets(st.integers(0, 39)),
)
def test_a_plan_block_by_block_finds_the_same_candidates(specs, sampled_requests, subset) -> None:
    """What the engine reads: the plan's operations a block at a time, plus its per-ordinal filters, in ordinal
    order, and within any other set of ordinals (the reserved tiers)."""
    groups = [group(n + 1, placement=placement, targeting=spec) for n, (placement, spec) in enumerate(specs)]
    with mock.patch.object(index_module, "FIRST_BLOCK", 3), mock.patch.object(index_module, "LAZY_SHARE", 0.5):
        index = TargetingIndex(groups)
    assert len(index.blocks) > 1 or len(groups) < 6  # the last block takes a remainder shorter than itself
    within = FrozenBitMap(subset)
    for r in sampled_requests:
        plan = index.plan(r)
        visited = [o for _, block in index.blocks for o in plan.candidates(within=block) if plan.admits(o)]
        assert visited == sorted(visited)
        assert {groups[o].id for o in visited} == {g.id for g in groups if matches(g, r)}
        assert {o for o in plan.candidates(within=within) if plan.admits(o)} == \
            {o for o, g in enumerate(groups) if matches(g, r) and o in subset}


def test_blocks_cover_every_ordinal_once_in_order() -> None:
    for size in (1, 3, 4, 5, 11, 12, 13, 40, 200):
        with mock.patch.object(index_module, "FIRST_BLOCK", 3):
            index = TargetingIndex([group(n + 1) for n in range(size)])
        plan = index.plan(AdRequest(now=NOW, placement_type="interstitial"))
        assert [o for _, block in index.blocks for o in plan.candidates(within=block)] == list(range(size))
        assert [start for start, block in index.blocks] == [min(block) if block else 0 for _, block in index.blocks]


def countries_index(*named: str, free: int) -> TargetingIndex:
    groups = [group(n + 1, targeting={"countries": frozenset({c})}) for n, c in enumerate(named)]
    return TargetingIndex(groups + [group(n + 100) for n in range(free)])


def test_a_filter_that_drops_few_ad_groups_is_tested_per_ordinal() -> None:
    index = countries_index("in", "in", "id", free=7)
    plan = index.plan(AdRequest(now=NOW, placement_type="interstitial", country="ID"))
    assert [set(d) for d in plan.lazy] == [{0, 1}]  # two of ten name another country
    assert set(plan.candidates()) == set(range(10))
    assert {o for o in plan.candidates() if plan.admits(o)} == set(range(2, 10)) == set(index.candidates(
        AdRequest(now=NOW, placement_type="interstitial", country="ID")))


def test_a_filter_that_drops_most_ad_groups_is_applied_to_the_set() -> None:
    index = countries_index("in", "in", "in", "in", "in", "in", "id", free=3)
    plan = index.plan(AdRequest(now=NOW, placement_type="interstitial", country="ID"))
    assert plan.lazy == ()
    assert set(plan.candidates()) == {6, 7, 8, 9}


def test_empty_index_and_unrestricted_groups() -> None:
    assert len(TargetingIndex([]).candidates(AdRequest(now=NOW, placement_type="banner"))) == 0
    anything = group(1, targeting={"placement_types": frozenset()})
    assert list(TargetingIndex([anything]).candidates(AdRequest(now=NOW, placement_type=None))) == [0]


SIZES = [(300, 250), (320, 50), (1200, 628)]
creative_specs = st.fixed_dictionaries(
    {
        "video": st.booleans(),
        "size": st.sampled_from([*SIZES, (0, 0)]),
        "titled": st.booleans(),
    }
)
slots = st.builds(
    Slot,
    media=st.frozensets(st.sampled_from(["image", "video", "native", "audio"])),
    sizes=st.frozensets(st.sampled_from([*SIZES, (728, 90)]), max_size=3),
)


def _creative(group_id: int, spec: dict) -> CreativeSnap:
    width, height = spec["size"]
    made = creative(group_id, video=spec["video"], width=width, height=height)
    if not spec["titled"]:  # no title: not native-capable
        made = dataclasses.replace(
            made, combinations=tuple(dataclasses.replace(c, title="") for c in made.combinations)
        )
    return made


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.lists(creative_specs, min_size=1, max_size=3), min_size=1, max_size=12),
    st.lists(slots, min_size=1, max_size=8),
)
def test_only_ad_groups_with_a_fitting_creative_are_candidates(specs, sampled_slots) -> None:
    groups = [group(n + 1, creatives=tuple(_creative(n + 1, c) for c in cs)) for n, cs in enumerate(specs)]
    index = TargetingIndex(groups)
    for slot in sampled_slots:
        request = AdRequest(now=NOW, placement_type="interstitial", slot=slot)
        expected = {g.id for g in groups if any(creative_fits(c, slot) for c in g.creatives)}
        assert {groups[o].id for o in index.candidates(request)} == expected
        assert index.fits_any(slot) == bool(expected)


def test_a_size_nobody_has_is_refused_before_targeting() -> None:
    banner = group(1, placement="banner", creatives=(creative(1, width=320, height=50),))
    index = TargetingIndex([banner])
    assert not index.fits_any(Slot(media=frozenset({"image"}), sizes=frozenset({(300, 250)})))
    assert index.fits_any(Slot(media=frozenset({"image"}), sizes=frozenset({(300, 250), (320, 50)})))
    # A slot naming no size takes any size; a slot naming no media takes nothing.
    assert index.fits_any(Slot(media=frozenset({"image"})))
    assert not index.fits_any(Slot(media=frozenset(), sizes=frozenset({(320, 50)})))
