"""Audience-size estimate of a targeting, for the API and the console: checks the inventory and audiences chosen
and reads the device-population table; the arithmetic is in estimate.py."""

from __future__ import annotations

from sqlalchemy.orm import Session

from adstack.accounts import tenancy
from adstack.accounts.models import Principal
from adstack.campaigns.ad_group_values import _inventory_errors
from adstack.campaigns.estimate import AudienceEstimate, estimate_audience
from adstack.campaigns.models import EstimateIn
from adstack.core.errors import FieldError, ValidationFailed
from adstack.inventory import service as inventory
from adstack.inventory.service import TablePopulationSource

# ---------- audience-size estimate ----------


def estimate(session: Session, principal: Principal, data: EstimateIn) -> tuple[AudienceEstimate, str]:
    """Size a targeting from the device-population table. Returns the estimate and the name of its source."""
    errors = _inventory_errors(session, data.placement_type.value, list(data.publisher_ids),
                               list(data.ad_space_ids))
    if errors:
        raise ValidationFailed("the estimate has invalid fields", fields=errors)
    publisher_ids = set(data.publisher_ids)
    publisher_ids |= {s.publisher_id for s in inventory.ad_spaces_by_id(session, data.ad_space_ids).values()}
    publisher_countries = (
        {p.country for p in inventory.publishers_by_id(session, publisher_ids).values()} if publisher_ids else None
    )
    audience_cap = None
    if data.targeting.include_audience_ids:
        from adstack.audiences import service as audiences

        account_id = tenancy.resolve_account_id(session, principal, data.account_id)
        usable = audiences.usable_audience_ids(session, account_id, data.targeting.include_audience_ids)
        unknown = [FieldError(f"targeting.include_audience_ids.{i}", "exists", "no such audience in this account",
                              actual=a) for i, a in enumerate(data.targeting.include_audience_ids) if a not in usable]
        if unknown:
            raise ValidationFailed("the estimate has invalid fields", fields=unknown)
        # Distinct devices, as GET /audiences/reach counts them: one device in several audiences is one.
        audience_cap = audiences.estimate_reach(session, principal, sorted(usable)).size
    source = TablePopulationSource(session)
    result = estimate_audience(source, data.targeting, data.placement_type.value,
                               publisher_countries=publisher_countries,
                               frequency_cap_per_day=data.frequency_cap_per_day, audience_devices=audience_cap)
    return result, "device_population_table" if audience_cap is None else "device_population_table+audiences"
