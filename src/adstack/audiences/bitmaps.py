"""Stored membership, worked on as bitmaps (`pyroaring.BitMap64`), and the in-memory index serving reads.

An audience is stored as up to PARTITIONS partitions, one per value of the key's top bits, each its sorted keys
(see KEYS_PREFIX). Building, appending and reducing work one partition at a time, as a bitmap, so an import of a
64 MB file never holds more than one partition's bitmap beside the compact key arrays.

The serving index holds each audience as a frozen hash set of its keys instead. Device keys are uniform
64-bit hashes, so a roaring bitmap gives every key its own container: in memory that costs more than a hash
set (about 117 against 77 bytes per key at 1.8 M keys), and a probe walks several nodes where a set does one
hash and one compare, at less than half the cost per look-up. Set algebra over whole audiences (reach,
batch intersection) is C-level either way.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import chain

from pyroaring import BitMap64

from adstack.audiences.ids import KeySpace, sha256_device_key


def build(keys: array[int] | Iterable[int]) -> BitMap64:
    bitmap = BitMap64(keys)
    bitmap.run_optimize()
    bitmap.shrink_to_fit()
    return bitmap


# Stored partitions are the sorted keys as little-endian uint64 after this prefix: uniform 64-bit keys give a
# roaring bitmap one container per key, and its serialized form took 21 bytes a key (38 MB for a 64 MB GAID file)
# where the keys take 8. A blob without the prefix is a roaring bitmap written before; read as one, its first
# four bytes would claim some 876 million containers, which no partition has.
KEYS_PREFIX = b"AK64"


def serialize(bitmap: BitMap64) -> bytes:
    keys = bitmap.to_array()
    if sys.byteorder != "little":
        keys.byteswap()
    return KEYS_PREFIX + keys.tobytes()


def deserialize(blob: bytes) -> BitMap64:
    if not blob.startswith(KEYS_PREFIX):
        return BitMap64.deserialize(blob)
    keys = array("Q")
    keys.frombytes(memoryview(blob)[len(KEYS_PREFIX) :])
    if sys.byteorder != "little":
        keys.byteswap()
    return BitMap64(keys)


def join(parts: Iterable[BitMap64]) -> BitMap64:
    joined = BitMap64()
    for part in parts:
        joined |= part
    return joined


def probe_set(parts: Iterable[BitMap64]) -> frozenset[int]:
    """The serving form of an audience's partitions; consumes one partition at a time, so loading never
    holds the whole bitmap beside the set."""
    return frozenset(chain.from_iterable(parts))


@dataclass(frozen=True)
class IndexedAudience:
    audience_id: int
    version: int
    key_space: KeySpace
    members: frozenset[int]
    generation: str = ""  # the membership write these members are from (Audience.generation)


class AudienceIndex:
    """Audience membership for serving: O(1) per audience per request, no database.

    Keys are unsigned 64-bit ints: `ids.device_key(gaid)` for MD5-space audiences (raw GAID and GAID-MD5
    uploads, label and portrait audiences) and `ids.sha256_device_key(gaid)` for SHA-256 uploads. A request
    carries one canonical key (the MD5-space one); `matches` probes the SHA-256 space too when given the raw
    GAID, hashing it only when a SHA-256 audience is actually probed. An audience the index does not know
    (deleted, failed, still building) contains nobody.
    """

    def __init__(self, audiences: Iterable[IndexedAudience] = ()):
        self._audiences: dict[int, IndexedAudience] = {a.audience_id: a for a in audiences}
        self._md5: dict[int, frozenset[int]] = {}
        self._sha256: dict[int, frozenset[int]] = {}
        for audience in self._audiences.values():
            target = self._md5 if audience.key_space is KeySpace.MD5 else self._sha256
            target[audience.audience_id] = audience.members

    def __len__(self) -> int:
        return len(self._audiences)

    def __contains__(self, audience_id: object) -> bool:
        return audience_id in self._audiences

    def get(self, audience_id: int) -> IndexedAudience | None:
        return self._audiences.get(audience_id)

    @property
    def versions(self) -> Mapping[int, int]:
        return {a.audience_id: a.version for a in self._audiences.values()}

    def size(self, audience_id: int) -> int:
        audience = self._audiences.get(audience_id)
        return 0 if audience is None else len(audience.members)

    def contains(self, audience_id: int, device_key: int | None, sha256_key: int | None = None) -> bool:
        members = self._md5.get(audience_id)
        if members is not None:
            return device_key is not None and device_key in members
        if sha256_key is not None:
            members = self._sha256.get(audience_id)
            return members is not None and sha256_key in members
        return False

    def matches(
        self,
        include_ids: Iterable[int],
        exclude_ids: Iterable[int],
        device_key: int | None,
        sha256_key: int | None = None,
        *,
        gaid: str | None = None,
    ) -> bool:
        """Ad group audience targeting: in any included audience (or none named) and in no excluded one.
        Exclusion beats inclusion, so it is checked first. With `gaid`, SHA-256 audiences are probed with
        its SHA-256 key, computed at most once and only when one is targeted. A device known only by its MD5
        (no raw GAID, so no SHA-256 key) cannot be looked up in a SHA-256 list: an exclusion by one fails
        closed (an exclusion list is typically paying or existing users), an inclusion does not match. A
        device with no key at all (no GAID, a zeroed one, a SHA-1 digest) likewise fails every exclusion."""
        sha256 = self._sha256
        if (
            sha256_key is None
            and gaid is not None
            and sha256
            and any(a in sha256 for a in chain(include_ids, exclude_ids))
        ):
            sha256_key = sha256_device_key(gaid)
        if device_key is None and sha256_key is None:
            # Nothing to look the device up by: it is in no included audience, and no exclusion list holding
            # anyone can clear it, so it fails closed as below.
            return not any(True for _ in include_ids) and not any(a in self._audiences for a in exclude_ids)
        contains = self.contains
        for audience_id in exclude_ids:
            if contains(audience_id, device_key, sha256_key) or (sha256_key is None and audience_id in sha256):
                return False
        included = False
        for audience_id in include_ids:
            included = True
            if contains(audience_id, device_key, sha256_key):
                return True
        return not included

    def contains_many(self, audience_id: int, keys: Iterable[int]) -> frozenset[int]:
        """The given keys that are members: one C-level intersection for a batch of requests (e.g. an
        OpenRTB bid request burst)."""
        audience = self._audiences.get(audience_id)
        if audience is None:
            return frozenset()
        return audience.members.intersection(keys)

    def reach(self, include_ids: Iterable[int], exclude_ids: Iterable[int] = ()) -> int:
        """Distinct devices in any included MD5-space audience and in no excluded one."""
        included: set[int] = set().union(*(self._md5[a] for a in include_ids if a in self._md5))
        included.difference_update(*(self._md5[a] for a in exclude_ids if a in self._md5))
        return len(included)
