"""IAB Content Taxonomy 1.0 categories of a campaign: what its ads are about, in the codes OpenRTB exchanges use
in `bcat` (blocked) and bids use in `cat` (`cattax` 1).

Source: IAB Tech Lab, OpenRTB API Specification 2.5, section 5.1 "Content Categories" (IAB1 Arts & Entertainment
with IAB1-1 to IAB1-7, ... IAB26 Illegal Content with IAB26-1 to IAB26-4); OpenRTB 2.6 and AdCOM 1.0 keep it as
Category Taxonomy 1 ("IAB Tech Lab Content Category Taxonomy 1.0").
"""

from __future__ import annotations

import re

# Tier-1 category number -> how many tier-2 subcategories it has (IABn-1 ... IABn-k).
SUBCATEGORIES = {1: 7, 2: 23, 3: 12, 4: 11, 5: 15, 6: 9, 7: 45, 8: 18, 9: 31, 10: 9, 11: 5, 12: 3, 13: 12, 14: 8,
                 15: 10, 16: 7, 17: 44, 18: 6, 19: 36, 20: 27, 21: 3, 22: 4, 23: 10, 24: 0, 25: 7, 26: 4}
MAX_CATEGORIES = 10
_CODE = re.compile(r"^IAB(\d{1,2})(?:-(\d{1,2}))?$")


def is_category(code: str) -> bool:
    match = _CODE.match(code)
    if match is None:
        return False
    tier1 = int(match.group(1))
    if tier1 not in SUBCATEGORIES:
        return False
    return match.group(2) is None or 1 <= int(match.group(2)) <= SUBCATEGORIES[tier1]


def check_categories(codes: list[str]) -> list[str]:
    """The codes, de-duplicated in order; ValueError names the first that is not in the taxonomy."""
    out = list(dict.fromkeys(c.strip().upper() for c in codes))
    for code in out:
        if not is_category(code):
            raise ValueError(f"{code!r} is not an IAB Content Taxonomy 1.0 category (IAB1 to IAB26, e.g. IAB9-30)")
    if len(out) > MAX_CATEGORIES:
        raise ValueError(f"at most {MAX_CATEGORIES} categories")
    return out
