"""Stored partitions: any set of 64-bit keys comes back as it went in, at 8 bytes a key, and partitions stored
before as roaring bitmaps still read."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from pyroaring import BitMap64

from adstack.audiences import bitmaps

KEYS = st.sets(st.integers(min_value=0, max_value=2**64 - 1), max_size=300)


@given(KEYS)
def test_keys_come_back_as_stored_at_eight_bytes_a_key(keys: set[int]) -> None:
    blob = bitmaps.serialize(bitmaps.build(keys))
    assert len(blob) == len(bitmaps.KEYS_PREFIX) + 8 * len(keys)
    assert set(bitmaps.deserialize(blob)) == keys


@given(KEYS)
def test_partitions_stored_as_roaring_bitmaps_still_read(keys: set[int]) -> None:
    assert set(bitmaps.deserialize(bytes(BitMap64(keys).serialize()))) == keys


def test_keys_are_stored_little_endian_in_order() -> None:
    blob = bitmaps.serialize(bitmaps.build([2**63 + 5, 1]))
    assert blob == bitmaps.KEYS_PREFIX + (1).to_bytes(8, "little") + (2**63 + 5).to_bytes(8, "little")


def test_an_exclusion_a_device_cannot_be_checked_against_fails_closed() -> None:
    """A device known only by its MD5 has no SHA-256 key: a SHA-256 exclusion list cannot clear it, so it is
    not served; an MD5-space exclusion it is not in does not stop it."""
    from adstack.audiences.bitmaps import AudienceIndex, IndexedAudience
    from adstack.audiences.ids import KeySpace, device_key, sha256_device_key

    member, other = "38400000-8cf0-11bd-b23e-10b96e40000d", "38400000-8cf0-11bd-b23e-10b96e40000e"
    index = AudienceIndex([
        IndexedAudience(audience_id=1, version=1, key_space=KeySpace.SHA256,
                        members=frozenset({sha256_device_key(member)})),
        IndexedAudience(audience_id=2, version=1, key_space=KeySpace.MD5, members=frozenset({device_key(member)})),
    ])
    assert index.matches([], [1], device_key(other), gaid=other)  # raw GAID: checked, not a member
    assert not index.matches([], [1], device_key(member), gaid=member)
    assert not index.matches([], [1], device_key(other), gaid=None)  # MD5 only: cannot be checked
    assert index.matches([], [2], device_key(other), gaid=None)
    assert not index.matches([1], [], device_key(member), gaid=None)


def test_a_device_without_an_id_is_held_back_by_any_exclusion() -> None:
    """No key at all (no GAID, a zeroed one, a form no audience is keyed by): no exclusion list can clear it."""
    from adstack.audiences.bitmaps import AudienceIndex, IndexedAudience
    from adstack.audiences.ids import KeySpace, device_key, sha256_device_key

    member = "38400000-8cf0-11bd-b23e-10b96e40000d"
    index = AudienceIndex([
        IndexedAudience(audience_id=1, version=1, key_space=KeySpace.SHA256,
                        members=frozenset({sha256_device_key(member)})),
        IndexedAudience(audience_id=2, version=1, key_space=KeySpace.MD5, members=frozenset({device_key(member)})),
    ])
    assert not index.matches([], [2], None, gaid=None)
    assert not index.matches([], [1], None, gaid=None)
    assert not index.matches([2], [], None, gaid=None)
    assert index.matches([], [], None, gaid=None)
    assert index.matches([], [3], None, gaid=None)  # an audience the index does not hold (building) has nobody
