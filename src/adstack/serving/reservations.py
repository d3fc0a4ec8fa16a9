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
from typing import TYPE_CHECKING

from adstack.serving.counters import Counters, GiveBack

if TYPE_CHECKING:
    from adstack.finance.charges import Refunded

log = logging.getLogger("adstack.serving")

_counters: Counters | None = None


def register(counters: Counters | None) -> None:
    global _counters
    _counters = counters


def day_key(ad_group_id: int, day: date) -> str:
    return f"d:{ad_group_id}:{day.isoformat()}"


def total_key(ad_group_id: int) -> str:
    return f"t:{ad_group_id}"


def account_key(account_id: int) -> str:
    return f"a:{account_id}"


def given_back(refund: Refunded) -> GiveBack:
    """What a refund frees on the counters its charge's reservation claimed: its ad group's day (the local day the
    charge counted on) and total, and its account's funds."""
    amounts = [(account_key(refund.account_id), refund.amount_micros)]
    if refund.ad_group_id:
        amounts += [(day_key(refund.ad_group_id, date.fromisoformat(refund.day)), refund.amount_micros),
                    (total_key(refund.ad_group_id), refund.amount_micros)]
    return GiveBack(refund.entry_id, tuple(amounts))


def held_in_total(spend_total: Mapping[int, int]) -> dict[int, int]:
    """Per ad group, the money reservations hold on its total budget beyond the ledger's spend in total."""
    groups = list(spend_total)
    return _held(groups, [total_key(g) for g in groups], [spend_total[g] for g in groups])


def held_today(spend_today: Mapping[tuple[int, date], int]) -> dict[int, int]:
    """Per ad group, the money reservations hold beyond the ledger's spend on that local day."""
    keys = list(spend_today)
    return _held([group_id for group_id, _ in keys], [day_key(group_id, day) for group_id, day in keys],
                 [spend_today[key] for key in keys])


def _held(groups: list[int], counter_keys: list[str], spent: list[int]) -> dict[int, int]:
    """Per ad group, what its budget counter holds beyond the ledger's spend: outstanding reservations."""
    counters = _counters
    if counters is None or not groups:
        return {}
    try:
        values = counters.get_many(counter_keys)
    except Exception:  # the shared counters are unreachable: the status falls back to the ledger alone
        log.warning("could not read budget counters", exc_info=True)
        return {}
    return {group_id: value - ledger for group_id, value, ledger in zip(groups, values, spent, strict=True)
            if value > ledger}
