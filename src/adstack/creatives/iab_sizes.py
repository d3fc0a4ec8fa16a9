"""The IAB display ad sizes exchanges ask for, as banner and interstitial variants.

Each size is a creative format (`iab_banner_300x250`, `iab_interstitial_320x480`, ...): one image of exactly that
size, with a title for its alternative text, validated like every other material. The formats join the shipped
format list (creatives/formats.py), so the operator edits them in the same catalogue as the guide's formats.
The list itself can be replaced with `ADSTACK_IAB_SIZES`: `WxH` pairs separated by commas, each with `:banner`
or `:interstitial`.

Source: IAB Tech Lab, "IAB New Standard Ad Unit Portfolio" (2017), fixed-size ad specifications: 300x250,
320x50, 320x100, 300x600, 728x90 (banner units), 320x480, 480x320, 1024x768 and 768x1024 (full-screen
interstitial units for phones and tablets, portrait and landscape).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from adstack.creatives.formats import FormatSpec


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
        if not (width.isdecimal() and height.isdecimal()) or variant not in Variant.__members__.values():
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


# Display images are small: the same 500 KB the guide's image formats allow by default.
MAX_IMAGE_KB = 500


def format_specs() -> tuple[FormatSpec, ...]:
    """One creative format per IAB size in force (imported by formats.py, so imported lazily here)."""
    from adstack.core.vocabulary import PlacementType
    from adstack.creatives.formats import FormatSpec, ImageRule, Size, TextRule

    placements = {Variant.BANNER: (PlacementType.BANNER,), Variant.INTERSTITIAL: (PlacementType.INTERSTITIAL,)}
    return tuple(FormatSpec(
        code=size.format_code, name=f"IAB {size.variant.value} {size.width}x{size.height}",
        source=SOURCE, placement_types=placements[size.variant],
        description=f"A {size.width}x{size.height} image for exchanges' {size.variant.value} placements.",
        images=ImageRule(sizes=(Size(width=size.width, height=size.height),), max_kb=MAX_IMAGE_KB),
        titles=TextRule(max_chars=30)) for size in iab_sizes())


SOURCE = 'IAB Tech Lab, "IAB New Standard Ad Unit Portfolio" (2017), fixed-size ad specifications'
