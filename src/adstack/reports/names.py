"""Names from the control plane: the accounts, campaigns, ad groups, creatives, ad spaces and publishers report
rows are for, deleted ones marked."""

from __future__ import annotations

import importlib
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from adstack.reports.models import Dimension

# ---------- names from the control plane ----------


# Dimension -> (module, model, name attribute). Looked up lazily so reports work before every domain exists.
_NAMED: dict[Dimension, tuple[str, str, str]] = {
    Dimension.ACCOUNT: ("adstack.accounts.models", "Account", "company_name"),
    Dimension.CAMPAIGN: ("adstack.campaigns.models", "Campaign", "name"),
    Dimension.AD_GROUP: ("adstack.campaigns.models", "AdGroup", "name"),
    Dimension.CREATIVE: ("adstack.creatives.models", "Creative", "name"),
    Dimension.AD_SPACE: ("adstack.inventory.models", "AdSpace", "name"),
    Dimension.PUBLISHER: ("adstack.inventory.models", "Publisher", "name"),
}


def _model(dimension: Dimension) -> tuple[Any, str] | None:
    module_name, model_name, attribute = _NAMED[dimension]
    try:
        model = getattr(importlib.import_module(module_name), model_name, None)
    except ImportError:
        return None
    return (model, attribute) if model is not None else None


def resolve_names(session: Session, dimension: Dimension, ids: set[int]) -> dict[int, tuple[str | None, bool]]:
    """id -> (name, deleted). Soft-deleted objects keep their name and are marked; vanished ones too."""
    wanted = {i for i in ids if i}
    if not wanted:
        return {}
    found = _model(dimension)
    if found is None:
        return {}
    model, attribute = found
    names: dict[int, tuple[str | None, bool]] = {i: (None, True) for i in wanted}
    for start in range(0, len(wanted), 1000):
        chunk = sorted(wanted)[start:start + 1000]
        for obj in session.scalars(select(model).where(model.id.in_(chunk))):
            deleted = getattr(obj, "deleted_at", None) is not None or getattr(obj, "status", "") == "deleted"
            names[obj.id] = (getattr(obj, attribute), deleted)
    return names
