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
# Above this many values a dimension does not precompute `postings | wildcard` per value (memory).
PRECOMPUTE_LIMIT = 1024


class Dimension:
    """One attribute: postings per value, the wildcard list, and per value the set a request keeps (postings
    OR wildcard), precomputed so a request pays one intersection per dimension."""

    __slots__ = ("keep", "name", "postings", "restricted", "wildcard")

    def __init__(self, name: str, postings: dict[Hashable, FrozenBitMap], wildcard: FrozenBitMap, size: int):
        self.name = name
        self.postings = postings
        self.wildcard = wildcard
        self.restricted = len(wildcard) < size  # False: nobody restricts it, so it never filters
        self.keep: dict[Hashable, FrozenBitMap] = {}
        if self.restricted and len(postings) <= PRECOMPUTE_LIMIT:
            self.keep = {value: FrozenBitMap(posting | wildcard) for value, posting in postings.items()}

    def restrict(self, candidates: FrozenBitMap, values: Sequence[Hashable], *, allow_wildcard: bool = True,
                 ) -> FrozenBitMap:
        """The candidates that name one of `values` here, or (allow_wildcard) do not restrict this dimension.
        Frozen in and out: intersecting frozen bitmaps makes no copy of either."""
        if allow_wildcard and len(values) == 1:
            keep = self.keep.get(values[0])
            if keep is not None:
                return candidates & keep
        hits = [self.postings[v] for v in values if v in self.postings]
        if not hits:
            return candidates & self.wildcard if allow_wildcard else FrozenBitMap()
        named = hits[0] if len(hits) == 1 else FrozenBitMap.union(*hits)
        if allow_wildcard:
            return candidates & (named | self.wildcard) if len(named) < len(candidates) \
                else (candidates & named) | (candidates & self.wildcard)
        return candidates & named


class TargetingIndex:
    # Most selective dimensions first, so the candidate set shrinks early.
    ORDER = ("placement", "inventory", "deal", "country", "os_major", "language", "device_model", "carrier",
             "network", "age", "gender")

    def __init__(self, groups: Sequence[AdGroupSnap]):
        self.size = len(groups)
        self.dimensions: dict[str, Dimension] = {}
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
                                              FrozenBitMap(wildcard), self.size)
        self._active = [d for d in (self.dimensions[n] for n in self.ORDER) if d.restricted or d.name == "deal"]
        fits: defaultdict[FitKey, set[int]] = defaultdict(set)
        for ordinal, group in enumerate(groups):
            for creative in group.creatives:
                for key in creative_fit_keys(creative):
                    fits[key].add(ordinal)
        self.fits: dict[FitKey, FrozenBitMap] = {k: FrozenBitMap(v) for k, v in fits.items()}
        self._fitting: dict[tuple[FitKey, ...], FrozenBitMap] = {}
        self._fitting_by_slot: dict[Slot, FrozenBitMap] = {}
        self._unnamed: dict[tuple[str, ...], FrozenBitMap] = {}

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

    def unnamed(self, names: tuple[str, ...]) -> FrozenBitMap:
        """The ad groups that restrict none of the named dimensions: what is left of a request that presents no
        value anyone targets in each of them (cached per combination: at most one per subset of dimensions)."""
        found = self._unnamed.get(names)
        if found is None:
            wildcards = [self.dimensions[n].wildcard for n in names]
            found = wildcards[0].intersection(*wildcards[1:])
            self._unnamed[names] = found
        return found

    def candidates(self, request: AdRequest) -> FrozenBitMap:
        """Ordinals of the ad groups whose indexed targeting the request satisfies and that fit its slot."""
        candidates = self.fitting(request.slot)
        if not candidates:
            return candidates
        values = request_values(request)
        unnamed: list[str] = []
        named: list[Dimension] = []
        for dimension in self._active:
            name = dimension.name
            if name == "deal":
                if request.private_auction:
                    # A private auction admits only deal buyers; an open one admits deal-less ad groups as well.
                    candidates = dimension.restrict(candidates, values[name], allow_wildcard=False)
                    if not candidates:
                        return candidates
                    continue
                if not dimension.restricted:
                    continue
            if any(v in dimension.postings for v in values[name]):
                named.append(dimension)
            else:
                unnamed.append(name)
        # Dimensions where the request names nothing anyone targets keep only their wildcards: one intersection.
        if unnamed:
            candidates = candidates & self.unnamed(tuple(unnamed))
        for dimension in named:
            if not candidates:
                return candidates
            candidates = dimension.restrict(candidates, values[dimension.name])
        return candidates
