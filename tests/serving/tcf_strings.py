"""A minimal writer of TCF v2 core strings, to make the edge cases the fixed strings of the tests cannot show.

Field layout: IAB Europe, TCF v2 "Consent string and vendor list formats", core segment (version, created, last
updated, CMP, consent screen and language, vendor list and policy versions, purposes, vendor consents as a
bitfield, legitimate-interest vendors, publisher restrictions).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable


def _bits(value: int, width: int) -> str:
    return format(value, f"0{width}b")


def _encode(bits: str) -> str:
    bits += "0" * (-len(bits) % 8)
    return base64.urlsafe_b64encode(int(bits, 2).to_bytes(len(bits) // 8, "big")).decode().rstrip("=")


def tc_string(vendor: int, *, purposes: Iterable[int] = (1, 2, 3, 4), consented: bool = True, version: int = 2,
              restrictions: Iterable[tuple[int, int]] = (), cut_after_vendor_bits: int | None = None) -> str:
    """A core string giving `vendor` consent (or not) for `purposes`; `restrictions` are (purpose, type) publisher
    restrictions on `vendor`; `cut_after_vendor_bits` ends the string inside the vendor bitfield."""
    wanted = set(purposes)
    bits = _bits(version, 6) + _bits(16_000_000_000, 36) * 2  # created, last updated (deciseconds)
    bits += _bits(10, 12) + _bits(1, 12) + _bits(1, 6) + _bits(4, 6) + _bits(13, 6)  # CMP, screen, "EN"
    bits += _bits(100, 12) + _bits(4, 6) + "0" + "0" + "0" * 12  # vendor list, policy, flags, special features
    bits += "".join("1" if p in wanted else "0" for p in range(1, 25)) + "0" * 24  # consents, interests
    bits += "0" + _bits(3, 6) + _bits(4, 6)  # purpose one treatment, publisher country "DE"
    field = "".join("1" if v == vendor and consented else "0" for v in range(1, vendor + 1))
    if cut_after_vendor_bits is not None:
        return _encode(bits + _bits(vendor, 16) + "0" + field[:cut_after_vendor_bits])
    bits += _bits(vendor, 16) + "0" + field + _bits(0, 16) + "0"
    rules = list(restrictions)
    bits += _bits(len(rules), 12)
    for purpose, kind in rules:
        bits += _bits(purpose, 6) + _bits(kind, 2) + _bits(1, 12) + "0" + _bits(vendor, 16)
    return _encode(bits)
