"""The targeting index: posting lists of ad groups per attribute value, intersected per request.

This is the conjunction index of "Indexing Boolean Expressions" (Whang et al., VLDB 2009) specialised to the
targeting adstack offers: every ad group's targeting is one conjunction of `attribute IN (values)` predicates, one
per dimension, and a dimension left empty places no restriction. For each dimension the index keeps

- a posting list per value: the ad groups that name that value, and
- a wildcard list (the paper's Z list): the ad groups that do not restrict the dimension.

A request matches the ad groups that, in every dimension, either name the request's value or do not restrict it:
the candidates are the intersection over dimensions of (postings[value] OR wildcard). The lists are compressed
bitmaps (`pyroaring`), so each step is a handful of C-level container operations on the surviving candidates
rather than a walk over ad groups; dimensions that nobody restricts are skipped entirely, and a request stops
intersecting as soon as nothing is left. Ad groups are numbered by ordinal (their position in the snapshot).

What fits the slot is indexed too, and applied first: each ad group is posted under the (media, size) pairs its
creatives offer (an image, video or native creative of w x h, and the same media at "any size"), and a request
keeps the union of its slot's pairs. An imp whose sizes no creative has (an open-exchange banner in a size nobody
bought) has no candidates at once, rather than failing the size check last on every candidate; `fits_any`
answers that before any other work. The exact fit (formats, durations) is still checked per candidate.

Predicates that are not simple set membership (minor OS versions, installed apps, audiences, schedule hours,
budgets, frequency) are checked per candidate afterwards, on the few ad groups the index lets through.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from functools import partial
from typing import TYPE_CHECKING

from pyroaring import FrozenBitMap

if TYPE_CHECKING:
    from adstack.serving.request import AdRequest, Slot
    from adstack.serving.snapshot import AdGroupSnap, CreativeSnap

# OS major versions are indexed up to this; an open range covers every major from its start to here.
OS_MAJOR_CEILING = 64


def _os_majors(group: AdGroupSnap) -> Iterable[int]:
    targeting = group.targeting
    if targeting.os_min is None and targeting.os_max is None:
        return ()
    low = min(targeting.os_min[0], OS_MAJOR_CEILING) if targeting.os_min else 0
    high = min(targeting.os_max[0], OS_MAJOR_CEILING) if targeting.os_max else OS_MAJOR_CEILING
    return range(low, high + 1)


def _inventory(group: AdGroupSnap) -> Iterable[str]:
    targeting = group.targeting
    return [f"s{i}" for i in targeting.ad_space_ids] + [f"p{i}" for i in targeting.publisher_ids]


# A (media, width, height) fit key; ANY_SIZE in place of the size means a slot that names no size.
FitKey = tuple[str, int, int]
ANY_SIZE = (-1, -1)
# Distinct slot shapes whose fitting set is kept (bounded: sizes come from exchanges' requests).
FIT_CACHE_LIMIT = 4096
# Ordinals are intersected a block at a time, best first: the auction stops after a few candidates (see
# `AuctionOrder`), nearly always within the first block, so a request pays for the ad groups it could reach rather
# than for every one that matches. Blocks grow fourfold, so a request that reads them all pays a few more steps.
FIRST_BLOCK = 4096
BLOCK_GROWTH = 4


def ordinal_blocks(size: int) -> list[tuple[int, FrozenBitMap | None]]:
    """(first ordinal, the block's ordinals) in order; None for one block holding every ordinal."""
    if size <= FIRST_BLOCK:
        return [(0, None)]
    blocks: list[tuple[int, FrozenBitMap | None]] = []
    start, length = 0, FIRST_BLOCK
    while start < size:
        stop = size if size - (start + length) < length else start + length
        blocks.append((start, FrozenBitMap(range(start, stop))))
        start, length = stop, length * BLOCK_GROWTH
    return blocks


def creative_fit_keys(creative: CreativeSnap) -> list[FitKey]:
    """The slots a creative can fill, as `eligibility.creative_fits` decides media and size."""
    media = []
    if creative.has_image and not creative.has_video:
        media.append("image")
    if creative.has_video:
        media.append("video")
    if creative.is_native_capable:
        media.append("native")
    keys: list[FitKey] = [(m, *ANY_SIZE) for m in media]
    if creative.width:
        keys += [(m, creative.width, creative.height) for m in media]
    return keys


def slot_fit_keys(slot: Slot) -> list[FitKey]:
    sizes = slot.sizes or (ANY_SIZE,)
    return [(m, w, h) for m in slot.media for w, h in sizes]


# What each ad group names per dimension; an empty answer means "any".
_GROUP_VALUES: dict[str, Callable[[AdGroupSnap], Iterable[Hashable]]] = {
    "placement": lambda g: g.targeting.placement_types,
    "inventory": _inventory,
    "deal": lambda g: g.targeting.deal_ids,
    "country": lambda g: g.targeting.countries,
    "language": lambda g: g.targeting.languages,
    "gender": lambda g: g.targeting.genders,
    "age": lambda g: g.targeting.age_ranges,
    "network": lambda g: g.targeting.networks,
    "carrier": lambda g: g.targeting.carriers,
    "device_model": lambda g: g.targeting.device_models,
    "os_major": _os_majors,
}


def _language_values(language: str | None) -> tuple[str, ...]:
    # "en-us" matches ad groups naming "en-us" or plain "en".
    if not language:
        return ()
    base = language.split("-", 1)[0]
    return (language, base) if base != language else (language,)


def request_values(request: AdRequest) -> dict[str, tuple[Hashable, ...]]:
    """The values a request presents per dimension; empty = unknown (only unrestricted ad groups match)."""
    inventory: tuple[str, ...] = ()
    if request.ad_space_id is not None:
        inventory += (f"s{request.ad_space_id}",)
    if request.publisher_id is not None:
        inventory += (f"p{request.publisher_id}",)
    os_major = (min(request.os_version[0], OS_MAJOR_CEILING),) if request.os_version else ()
    age = request.age_range
    return {
        "placement": (request.placement_type,) if request.placement_type else (),
        "inventory": inventory,
        "deal": tuple(request.deal_ids),
        "country": (request.country.lower(),) if request.country else (),
        "language": _language_values(request.language),
        "gender": (request.gender,) if request.gender else (),
        "age": (age,) if age else (),
        "network": (request.network,) if request.network else (),
        "carrier": (request.carrier,) if request.carrier else (),
        "device_model": (request.device_model,) if request.device_model else (),
        "os_major": os_major,
    }


# Dimensions whose text values compare without case (deal ids, like other exchange ids, are case-sensitive).
_CASELESS = frozenset({"placement", "country", "language", "gender", "network", "carrier", "device_model"})
# Above this many values a dimension does not precompute a filter per value (memory).
PRECOMPUTE_LIMIT = 1024


# A filter that drops at most this share of the ad groups is tested on the few candidates the auction visits
# instead of being intersected: a set operation costs a microsecond or two whatever it leaves, a membership test
# a tenth of that, and the auction visits a handful of candidates.
LAZY_SHARE = 0.35


class Filter:
    """Keep the candidates in `keep`, written the cheaper way: as `candidates - drop` when the ad groups to drop are
    fewer than those to keep. Most dimensions are restricted by few ad groups, so "any" is most of the index and a
    request's filter is mostly the short list of those naming other values; roaring's cost follows the size of the
    smaller operand, and an intersection with a long run-length list costs several times a short difference."""

    __slots__ = ("bitmap", "drops", "lazy")

    def __init__(self, keep: FrozenBitMap, everyone: FrozenBitMap):
        drop = everyone - keep
        self.drops = len(drop) < len(keep)
        self.bitmap = drop if self.drops else keep
        self.lazy = self.drops and len(drop) <= LAZY_SHARE * len(everyone)

    def apply(self, candidates: FrozenBitMap) -> FrozenBitMap:
        return candidates - self.bitmap if self.drops else candidates & self.bitmap


class Dimension:
    """One attribute: postings per value, the wildcard list, and per value the filter a request applies (keep the
    value's postings OR the wildcard), precomputed so a request pays one operation per dimension."""

    __slots__ = ("filters", "name", "named_any", "postings", "restricted", "wildcard")

    def __init__(self, name: str, postings: dict[Hashable, FrozenBitMap], wildcard: FrozenBitMap,
                 everyone: FrozenBitMap):
        self.name = name
        self.postings = postings
        self.wildcard = wildcard
        self.named_any = everyone - wildcard  # the ad groups that restrict this dimension
        self.restricted = bool(self.named_any)  # False: nobody restricts it, so it never filters
        self.filters: dict[Hashable, Filter] = {}
        if self.restricted and len(postings) <= PRECOMPUTE_LIMIT:
            self.filters = {value: Filter(FrozenBitMap(posting | wildcard), everyone)
                            for value, posting in postings.items()}

    def restrict(self, candidates: FrozenBitMap, values: Sequence[Hashable], *, allow_wildcard: bool = True,
                 ) -> FrozenBitMap:
        """The candidates that name one of `values` here, or (allow_wildcard) do not restrict this dimension:
        for the values without a precomputed filter (several, or past `PRECOMPUTE_LIMIT`), and deals.
        Frozen in and out: intersecting frozen bitmaps makes no copy of either."""
        hits = [self.postings[v] for v in values if v in self.postings]
        if not hits:
            return candidates & self.wildcard if allow_wildcard else FrozenBitMap()
        named = hits[0] if len(hits) == 1 else FrozenBitMap.union(*hits)
        if not allow_wildcard:
            return candidates & named
        if len(self.named_any) < len(self.wildcard):
            # Drop those that restrict the dimension to other values.
            return candidates - (self.named_any - named)
        return (candidates & named) | (candidates & self.wildcard)


class TargetingIndex:
    # Most selective dimensions first, so the candidate set shrinks early.
    ORDER = ("placement", "inventory", "deal", "country", "os_major", "language", "device_model", "carrier",
             "network", "age", "gender")

    def __init__(self, groups: Sequence[AdGroupSnap]):
        self.size = len(groups)
        self.dimensions: dict[str, Dimension] = {}
        everyone = FrozenBitMap(range(self.size))
        for name in self.ORDER:
            extract = _GROUP_VALUES[name]
            postings: defaultdict[Hashable, list[int]] = defaultdict(list)
            wildcard: list[int] = []
            for ordinal, group in enumerate(groups):
                named = False
                for value in extract(group):
                    postings[value.lower() if isinstance(value, str) and name in _CASELESS else value].append(
                        ordinal)
                    named = True
                if not named:
                    wildcard.append(ordinal)
            self.dimensions[name] = Dimension(name, {v: FrozenBitMap(o) for v, o in postings.items()},
                                              FrozenBitMap(wildcard), everyone)
        self._active = [d for d in (self.dimensions[n] for n in self.ORDER) if d.restricted or d.name == "deal"]
        fits: defaultdict[FitKey, set[int]] = defaultdict(set)
        for ordinal, group in enumerate(groups):
            for creative in group.creatives:
                for key in creative_fit_keys(creative):
                    fits[key].add(ordinal)
        self.fits: dict[FitKey, FrozenBitMap] = {k: FrozenBitMap(v) for k, v in fits.items()}
        self._fitting: dict[tuple[FitKey, ...], FrozenBitMap] = {}
        self._fitting_by_slot: dict[Slot, FrozenBitMap] = {}
        self._everyone = everyone
        self.blocks = ordinal_blocks(self.size)
        self._unnamed: dict[tuple[str, ...], Filter] = {}

    def fitting(self, slot: Slot) -> FrozenBitMap:
        """Ordinals of the ad groups with a creative of the slot's media in one of its sizes (any size when the
        slot names none). Cached per slot as well: a slot's hash is cheap (its frozensets keep theirs), the
        fit keys are not."""
        found = self._fitting_by_slot.get(slot)
        if found is not None:
            return found
        keys = tuple(sorted({k for k in slot_fit_keys(slot) if k in self.fits}))
        found = self._fitting.get(keys)
        if found is None:
            found = FrozenBitMap.union(*(self.fits[k] for k in keys)) if keys else FrozenBitMap()
            if len(self._fitting) >= FIT_CACHE_LIMIT:
                self._fitting.clear()
            self._fitting[keys] = found
        if len(self._fitting_by_slot) >= FIT_CACHE_LIMIT:
            self._fitting_by_slot.clear()
        self._fitting_by_slot[slot] = found
        return found

    def fits_any(self, slot: Slot) -> bool:
        """Whether any ad group has a creative for the slot's media and sizes: a cheap refusal before deciding."""
        return any(k in self.fits for k in slot_fit_keys(slot))

    def unnamed(self, names: tuple[str, ...]) -> Filter:
        """Keep the ad groups that restrict none of the named dimensions: what is left of a request that presents
        no value anyone targets in each of them (cached per combination: at most one per subset of dimensions)."""
        found = self._unnamed.get(names)
        if found is None:
            wildcards = [self.dimensions[n].wildcard for n in names]
            found = Filter(wildcards[0].intersection(*wildcards[1:]), self._everyone)
            self._unnamed[names] = found
        return found

    def plan(self, request: AdRequest) -> Plan:
        """How to find the request's candidates: the operations to apply to a set of ordinals, and the filters left
        to test per ordinal (see `LAZY_SHARE`)."""
        values = request_values(request)
        steps: list[Callable[[FrozenBitMap], FrozenBitMap]] = []
        unnamed: list[str] = []
        filters: list[Filter] = []  # single values with a precomputed filter
        named: list[Dimension] = []
        for dimension in self._active:
            name = dimension.name
            present = values[name]
            if name == "deal":
                if request.private_auction:
                    # A private auction admits only deal buyers; an open one admits deal-less ad groups as well.
                    steps.append(partial(dimension.restrict, values=present, allow_wildcard=False))
                    continue
                if not dimension.restricted:
                    continue
            if len(present) == 1:
                found = dimension.filters.get(present[0])
                if found is not None:
                    if found.bitmap or not found.drops:  # else it drops nobody
                        filters.append(found)
                elif present[0] in dimension.postings:
                    named.append(dimension)
                else:
                    unnamed.append(name)
            elif present and any(v in dimension.postings for v in present):
                named.append(dimension)
            else:
                unnamed.append(name)
        # Dimensions where the request names nothing anyone targets keep only their wildcards: one operation.
        if unnamed:
            steps.append(self.unnamed(tuple(unnamed)).apply)
        steps += [f.apply for f in filters if not f.lazy]
        steps += [partial(d.restrict, values=values[d.name]) for d in named]
        return Plan(self.fitting(request.slot), steps, tuple(f.bitmap for f in filters if f.lazy))

    def candidates(self, request: AdRequest) -> FrozenBitMap:
        """Ordinals of the ad groups whose indexed targeting the request satisfies and that fit its slot."""
        plan = self.plan(request)
        candidates = plan.candidates()
        for dropped in plan.lazy:
            candidates = candidates - dropped
        return candidates


class Plan:
    """One request's way through the index. `candidates` gives the ordinals the operations keep, in a block or
    another set when given; an ordinal among them is a candidate when `admits` it too (the lazy filters)."""

    __slots__ = ("fitting", "lazy", "steps")

    def __init__(self, fitting: FrozenBitMap, steps: Sequence[Callable[[FrozenBitMap], FrozenBitMap]],
                 lazy: tuple[FrozenBitMap, ...]):
        self.fitting = fitting
        self.steps = steps
        self.lazy = lazy  # ordinals to drop

    def candidates(self, within: FrozenBitMap | None = None) -> FrozenBitMap:
        candidates = self.fitting
        if within is not None and candidates:
            candidates = candidates & within
        for step in self.steps:
            if not candidates:
                return candidates
            candidates = step(candidates)
        return candidates

    def admits(self, ordinal: int) -> bool:
        for dropped in self.lazy:  # noqa: SIM110 (a loop: no generator per visited candidate)
            if ordinal in dropped:
                return False
        return True
