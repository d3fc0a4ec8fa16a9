"""An ad request's GAID gives the same audience key and event-store device hash as the audience and tracking
code compute on their own, in raw and MD5 form."""

from __future__ import annotations

import hashlib
import uuid

from hypothesis import given
from hypothesis import strategies as st

from adstack.audiences.ids import device_key
from adstack.serving.service import device_identity
from adstack.tracking.devices import normalise_gaid


@given(st.uuids(version=4), st.booleans())
def test_a_raw_gaid_gives_the_audience_key_and_device_hash(gaid: uuid.UUID, upper: bool) -> None:
    text = str(gaid).upper() if upper else str(gaid)
    parsed = normalise_gaid(text)
    assert parsed is not None
    assert device_identity(text) == (str(gaid), device_key(str(gaid)), parsed.device_hash)


@given(st.uuids(version=4))
def test_the_md5_form_gives_the_same_key_and_hash_as_the_raw_gaid(gaid: uuid.UUID) -> None:
    raw = device_identity(str(gaid))
    digest = hashlib.md5(str(gaid).encode(), usedforsecurity=False).hexdigest()
    assert device_identity(digest) == (None, raw[1], raw[2])


def test_absent_and_zeroed_gaids_have_no_identity() -> None:
    assert device_identity(None) == (None, None, 0)
    assert device_identity("00000000-0000-0000-0000-000000000000") == (None, None, 0)
