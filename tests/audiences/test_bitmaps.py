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
