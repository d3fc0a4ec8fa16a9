"""Device identifiers: Google advertising ids (GAID) in the forms measurement partners send them.

A GAID may arrive as a UUID in any case, without hyphens, or hashed (MD5 or SHA1 of the canonical lowercase
UUID). Touchpoints store all three forms of a raw GAID, so a postback carrying any of them matches.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import StrEnum

# A raw GAID keeps its hyphens; 32 bare hex digits are read as an MD5 digest, the form partners send.
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_MD5 = re.compile(r"^[0-9a-f]{32}$")
_SHA1 = re.compile(r"^[0-9a-f]{40}$")
# Limit-ad-tracking devices report an all-zero id: it identifies nobody.
_ZERO_GAID = "00000000-0000-0000-0000-000000000000"


class GaidForm(StrEnum):
    RAW = "raw"
    MD5 = "md5"
    SHA1 = "sha1"


@dataclass(frozen=True, slots=True)
class Gaid:
    """A normalised GAID: the canonical lowercase hyphenated UUID, or a lowercase hex digest of it."""

    form: GaidForm
    value: str

    @property
    def md5(self) -> str | None:
        return hashlib.md5(self.value.encode(), usedforsecurity=False).hexdigest() if self.form is GaidForm.RAW \
            else (self.value if self.form is GaidForm.MD5 else None)

    @property
    def sha1(self) -> str | None:
        return hashlib.sha1(self.value.encode(), usedforsecurity=False).hexdigest() if self.form is GaidForm.RAW \
            else (self.value if self.form is GaidForm.SHA1 else None)

    @property
    def raw(self) -> str | None:
        return self.value if self.form is GaidForm.RAW else None

    @property
    def device_hash(self) -> int:
        """A positive 63-bit number for the event store, taken from the MD5 form so a raw GAID and its MD5
        digest give the same number."""
        return device_hash_of_md5(self.md5 or self.value)


def device_hash_of_md5(md5_hex: str) -> int:
    return int.from_bytes(hashlib.sha256(md5_hex.encode()).digest()[:8], "big") >> 1


def normalise_gaid(value: str | None) -> Gaid | None:
    """Read a GAID in any accepted form; None when absent, all zeros or not an id at all."""
    if not value:
        return None
    text = value.strip().lower()
    if text.startswith("{") or text.startswith("(") or text.startswith("$"):
        return None
    if _UUID.match(text):
        if text == _ZERO_GAID:
            return None
        return Gaid(GaidForm.RAW, text)
    if _SHA1.match(text):
        return Gaid(GaidForm.SHA1, text)
    if _MD5.match(text):
        return Gaid(GaidForm.MD5, text)
    return None
