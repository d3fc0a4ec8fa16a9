"""The HMAC helper every signed token and URL goes through matches the standard construction."""

from __future__ import annotations

import hmac
from concurrent.futures import ThreadPoolExecutor

from hypothesis import given
from hypothesis import strategies as st

from adstack.core.security import hmac_sha256, hmac_sign, hmac_verify


@given(key=st.binary(min_size=0, max_size=200), message=st.binary(max_size=3000))
def test_hmac_matches_the_standard_library_for_any_key_and_message(key: bytes, message: bytes) -> None:
    assert hmac_sha256(key, message) == hmac.digest(key, message, "sha256")


def test_signatures_from_many_threads_at_once_stay_correct() -> None:
    key = b"k" * 32
    messages = [f"app:{n}".encode() for n in range(2_000)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        signed = list(pool.map(lambda m: hmac_sign(key, m, 12), messages))
    assert all(hmac_verify(key, m, s, 12) for m, s in zip(messages, signed, strict=True))
    assert signed == [hmac_sign(key, m, 12) for m in messages]
    assert not hmac_verify(key, b"app:1", signed[2], 12)


def test_pooled_random_ids_are_distinct_and_never_shared_with_a_forked_child() -> None:
    import os

    from adstack.core.security import random_hex, random_token

    drawn = {random_token(12) for _ in range(5_000)}  # more than one 4 KB pool
    assert len(drawn) == 5_000 and all(len(t) == 16 for t in drawn)
    random_token(12)  # the parent's pool now holds unused bytes a child must not reuse
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.write(writer, random_hex(32).encode())
        os._exit(0)
    os.close(writer)
    _, status = os.waitpid(child, 0)
    from_child = os.read(reader, 128).decode()
    os.close(reader)
    assert status == 0 and len(from_child) == 64
    assert from_child != random_hex(32)
