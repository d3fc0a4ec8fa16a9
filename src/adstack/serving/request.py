"""One ad opportunity, normalised: the SDK endpoint and the OpenRTB bidder both reduce their requests to this."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

# Age ranges as targeting names them; a request's age falls in at most one.
_AGE_RANGES = ((18, 24, "18-24"), (25, 34, "25-34"), (35, 44, "35-44"), (45, 54, "45-54"), (55, 200, "55+"))


def age_range(age: int | None) -> str | None:
    if age is None:
        return None
    for low, high, name in _AGE_RANGES:
        if low <= age <= high:
            return name
    return None


def parse_os_version(text: str | None) -> tuple[int, ...] | None:
    """'13', '12.1.0', 'Android 11' -> numeric parts; None when no number leads the text."""
    if not text:
        return None
    parts: list[int] = []
    for piece in text.strip().split(" ")[-1].split("."):
        digits = ""
        for ch in piece:
            if not ch.isdecimal():
                break
            digits += ch
        if not digits:
            break
        parts.append(int(digits[:4]))
        if len(parts) == 3:
            break
    return tuple(parts) or None


ANY_MEDIA = frozenset({"image", "video", "native"})


@dataclass(frozen=True, slots=True)
class Slot:
    """What the place on screen takes: media kinds, sizes and formats."""

    media: frozenset[str] = ANY_MEDIA  # image, video, native
    sizes: frozenset[tuple[int, int]] = frozenset()  # empty = any size
    formats: frozenset[str] = frozenset()  # creative format codes; empty = any
    min_duration_ms: int = 0
    max_duration_ms: int = 0  # 0 = no limit
    # The file types an image ad may have (an exchange's banner `mimes`, lower case); empty = any.
    image_mimes: frozenset[str] = frozenset()
    # The languages an ad's text may be in (an exchange's `wlang`, ISO 639-1); empty = any, and a creative that
    # names no language fits only there.
    languages: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class AdRequest:
    now: datetime  # UTC
    placement_type: str | None
    slot: Slot = field(default_factory=Slot)
    count: int = 1
    ad_space_id: int | None = None
    publisher_id: int | None = None
    app_package: str = ""
    country: str | None = None  # upper-case ISO alpha-2
    language: str | None = None  # lower-case
    gender: str | None = None
    age: int | None = None
    network: str | None = None
    carrier: str | None = None  # lower-case
    device_model: str | None = None  # lower-case
    os_version: tuple[int, ...] | None = None
    gaid: str | None = None  # normalised lower-case
    device_key: int | None = None  # 64-bit hash of the normalised id, as audiences store it
    device_hash: int = 0  # the event store's hash of the device (`Gaid.device_hash`); 0 for none or withheld
    installed_packages: frozenset[str] | None = None  # None = not reported
    # The device's install history of tracked packages: package -> (first, last seen installed), epoch seconds.
    install_history: Mapping[str, tuple[float, float]] = field(default_factory=lambda: MappingProxyType({}))
    usage_minutes: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    deal_ids: frozenset[str] = frozenset()
    private_auction: bool = False  # only deal buyers may bid
    use_audiences: bool = True  # False under COPPA: no audience targeting at all
    floor_micros: int = 0  # eCPM floor in platform currency micros per 1,000 impressions
    blocked_domains: frozenset[str] = frozenset()
    blocked_categories: frozenset[str] = frozenset()  # IAB content categories (OpenRTB bcat)
    # The tier-1 codes of blocked subcategories (bcat IAB9-30: IAB9): a campaign filed under the tier alone may be
    # in the blocked subcategory.
    blocked_category_tiers: frozenset[str] = frozenset()
    allowed_categories: frozenset[str] | None = None  # OpenRTB acat: only these, None for any
    blocked_apps: frozenset[str] = frozenset()  # promoted app packages (OpenRTB bapp)
    # How long a served ad's budget reservation waits for its impression before it is given back unshown:
    # an SDK may show a prefetched ad much later; an exchange tells us within its notice window. None: the
    # engine's default for SDK requests.
    hold_seconds: float | None = None

    @property
    def age_range(self) -> str | None:
        return age_range(self.age)
