"""The IAB display ad sizes exchanges ask for, as banner and interstitial variants.

The shipped list below is the IAB New Ad Portfolio's fixed-size mobile and display units that OpenRTB exchanges
send most (the sizes issue #17 names at least). It is operator-editable: `ADSTACK_IAB_SIZES` (environment, or the
settings file) replaces it, as `WxH` pairs separated by commas, each with `:banner` or `:interstitial`.

Source: IAB Tech Lab, "IAB New Standard Ad Unit Portfolio" (2017), fixed-size ad specifications: 300x250,
320x50, 320x100, 300x600, 728x90 (banner units), 320x480, 480x320, 1024x768 and 768x1024 (full-screen
interstitial units for phones and tablets, portrait and landscape).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum


class Variant(StrEnum):
    BANNER = "banner"
    INTERSTITIAL = "interstitial"


@dataclass(frozen=True, slots=True)
class IabSize:
    width: int
    height: int
    variant: Variant

    @property
    def format_code(self) -> str:
        """The creative format code of an image in this size, e.g. iab_banner_300x250."""
        return f"iab_{self.variant.value}_{self.width}x{self.height}"


SHIPPED = (
    IabSize(300, 250, Variant.BANNER), IabSize(320, 50, Variant.BANNER), IabSize(320, 100, Variant.BANNER),
    IabSize(300, 600, Variant.BANNER), IabSize(728, 90, Variant.BANNER),
    IabSize(320, 480, Variant.INTERSTITIAL), IabSize(480, 320, Variant.INTERSTITIAL),
    IabSize(1024, 768, Variant.INTERSTITIAL), IabSize(768, 1024, Variant.INTERSTITIAL),
)
MAX_SIDE = 4096


def parse_sizes(text: str) -> tuple[IabSize, ...]:
    """`300x250:banner, 320x480:interstitial`; raises ValueError naming the entry at fault."""
    out: list[IabSize] = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        size, _, variant = entry.partition(":")
        width, _, height = size.lower().partition("x")
        if not (width.isdigit() and height.isdigit()) or variant not in Variant.__members__.values():
            raise ValueError(f"{entry!r}: expected WxH:banner or WxH:interstitial")
        w, h = int(width), int(height)
        if not (1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE):
            raise ValueError(f"{entry!r}: each side is 1 to {MAX_SIDE} pixels")
        out.append(IabSize(w, h, Variant(variant)))
    return tuple(dict.fromkeys(out))


def iab_sizes() -> tuple[IabSize, ...]:
    """The sizes in force: the operator's list when set, else the shipped one."""
    configured = os.environ.get("ADSTACK_IAB_SIZES", "").strip()
    return parse_sizes(configured) if configured else SHIPPED


def sizes_of(variant: Variant) -> frozenset[tuple[int, int]]:
    return frozenset((s.width, s.height) for s in iab_sizes() if s.variant is variant)


def is_iab_size(width: int, height: int) -> bool:
    return any((s.width, s.height) == (width, height) for s in iab_sizes())
