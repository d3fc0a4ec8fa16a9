"""What served ads hold on each ad group's daily and total budgets right now, for the control plane's serving status.

The serving runtime registers its counters here when it starts; the campaigns service asks without knowing about
serving processes. A budget counter holds the billed spend serving has seen plus every outstanding reservation,
so what is held is the counter less the ledger's spend today. With no runtime in this process (a CLI, a
consumer-only process) nothing is known and nothing is reported held.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import date

from adstack.serving.counters import Counters

log = logging.getLogger("adstack.serving")

_counters: Counters | None = None


def register(counters: Counters | None) -> None:
    global _counters
    _counters = counters


def day_key(ad_group_id: int, day: date) -> str:
    return f"d:{ad_group_id}:{day.isoformat()}"


def total_key(ad_group_id: int) -> str:
    return f"t:{ad_group_id}"


def held_in_total(spend_total: Mapping[int, int]) -> dict[int, int]:
    """Per ad group, the money reservations hold on its total budget beyond the ledger's spend in total."""
    counters = _counters
    if counters is None or not spend_total:
        return {}
    keys = list(spend_total)
    try:
        values = counters.get_many([total_key(group_id) for group_id in keys])
    except Exception:  # as in held_today
        log.warning("could not read budget counters", exc_info=True)
        return {}
    return {group_id: value - spend_total[group_id] for group_id, value in zip(keys, values, strict=True)
            if value > spend_total[group_id]}


def held_today(spend_today: Mapping[tuple[int, date], int]) -> dict[int, int]:
    """Per ad group, the money reservations hold beyond the ledger's spend on that local day."""
    counters = _counters
    if counters is None or not spend_today:
        return {}
    keys = list(spend_today)
    try:
        values = counters.get_many([day_key(group_id, day) for group_id, day in keys])
    except Exception:  # the shared counters are unreachable: the status falls back to the ledger alone
        log.warning("could not read budget counters", exc_info=True)
        return {}
    return {group_id: max(0, value - spend_today[(group_id, day)])
            for (group_id, day), value in zip(keys, values, strict=True) if value > spend_today[(group_id, day)]}
