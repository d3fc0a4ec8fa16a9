"""The publisher and ad-space catalogue, and the operator-editable device-population table."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from adstack.accounts.models import Principal
from adstack.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from adstack.inventory.models import (
    AdSpace,
    AdSpaceCreate,
    AdSpaceUpdate,
    DevicePopulation,
    DevicePopulationIn,
    Publisher,
    PublisherCreate,
    PublisherUpdate,
)
from adstack.inventory.population import CountryPopulation, default_populations
from adstack.oplog import service as oplog
from adstack.oplog.models import Operation

PUBLISHER = "publisher"
AD_SPACE = "ad_space"
DEVICE_POPULATION = "device_population"


def _require_operator(principal: Principal) -> None:
    if not principal.can_manage_accounts:
        raise Forbidden("only platform admins edit the inventory catalogue")


def _plain(value: Any) -> Any:
    return value.value if hasattr(value, "value") else value


def _search(stmt: Any, name_column: Any, id_column: Any, query: str | None) -> Any:
    if not query:
        return stmt
    conditions: list[ColumnElement[bool]] = [name_column.icontains(query, autoescape=True)]
    if query.isdecimal() and len(query) < 19:
        conditions.append(id_column == int(query))
    return stmt.where(or_(*conditions))


def _page(session: Session, stmt: Any, order: Any, limit: int, offset: int) -> tuple[list[Any], int]:
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    return list(session.scalars(stmt.order_by(order).limit(limit).offset(offset))), total


# ---------- publishers ----------


def publisher_snapshot(publisher: Publisher) -> dict[str, Any]:
    return {"name": publisher.name, "app_package": publisher.app_package, "platform": publisher.platform,
            "country": publisher.country, "status": publisher.status}


def list_publishers(session: Session, *, query: str | None = None, status: str | None = None,
                    country: str | None = None, platform: str | None = None, limit: int = 50, offset: int = 0
                    ) -> tuple[list[Publisher], int]:
    stmt = _search(select(Publisher), Publisher.name, Publisher.id, query)
    if status:
        stmt = stmt.where(Publisher.status == status)
    if country:
        stmt = stmt.where(Publisher.country == country)
    if platform:
        stmt = stmt.where(Publisher.platform == platform)
    return _page(session, stmt, Publisher.id, limit, offset)


def get_publisher(session: Session, publisher_id: int) -> Publisher:
    publisher = session.get(Publisher, publisher_id)
    if publisher is None:
        raise NotFound(f"publisher {publisher_id} not found")
    return publisher


def publishers_by_id(session: Session, ids: Iterable[int]) -> dict[int, Publisher]:
    wanted = set(ids)
    if not wanted:
        return {}
    return {p.id: p for p in session.scalars(select(Publisher).where(Publisher.id.in_(wanted)))}


def create_publisher(session: Session, principal: Principal, data: PublisherCreate) -> Publisher:
    _require_operator(principal)
    publisher = Publisher(**{k: _plain(v) for k, v in data.model_dump().items()})
    session.add(publisher)
    session.flush()
    oplog.record(session, actor=principal, operation=Operation.CREATE, object_type=PUBLISHER, object_id=publisher.id,
                 object_name=publisher.name, after=publisher_snapshot(publisher))
    return publisher


def update_publisher(session: Session, principal: Principal, publisher_id: int, data: PublisherUpdate) -> Publisher:
    _require_operator(principal)
    publisher = get_publisher(session, publisher_id)
    before = publisher_snapshot(publisher)
    for name, value in data.model_dump(exclude_unset=True).items():
        if value is None:
            raise ValidationFailed.single(name, "not_null", f"{name} cannot be null")
        setattr(publisher, name, _plain(value))
    oplog.record(session, actor=principal, operation=Operation.UPDATE, object_type=PUBLISHER, object_id=publisher.id,
                 object_name=publisher.name, before=before, after=publisher_snapshot(publisher))
    return publisher


def delete_publisher(session: Session, principal: Principal, publisher_id: int) -> None:
    """Only a publisher without ad spaces can go; otherwise deactivate it (status inactive)."""
    _require_operator(principal)
    publisher = get_publisher(session, publisher_id)
    if session.scalar(select(func.count()).where(AdSpace.publisher_id == publisher.id)):
        raise Conflict("the publisher still has ad spaces; delete them or set the publisher inactive")
    oplog.record(session, actor=principal, operation=Operation.DELETE, object_type=PUBLISHER, object_id=publisher.id,
                 object_name=publisher.name, before=publisher_snapshot(publisher))
    session.delete(publisher)
    session.flush()


# ---------- ad spaces ----------


def ad_space_snapshot(space: AdSpace) -> dict[str, Any]:
    return {"publisher_id": space.publisher_id, "name": space.name, "placement_type": space.placement_type,
            "accepted_formats": list(space.accepted_formats), "sizes": list(space.sizes),
            "reserve_price_micros": space.reserve_price_micros, "reserve_currency": space.reserve_currency,
            "status": space.status}


def list_ad_spaces(session: Session, *, query: str | None = None, publisher_id: int | None = None,
                   placement_type: str | None = None, status: str | None = None, limit: int = 50, offset: int = 0
                   ) -> tuple[list[AdSpace], int]:
    stmt = _search(select(AdSpace), AdSpace.name, AdSpace.id, query)
    if publisher_id is not None:
        stmt = stmt.where(AdSpace.publisher_id == publisher_id)
    if placement_type:
        stmt = stmt.where(AdSpace.placement_type == placement_type)
    if status:
        stmt = stmt.where(AdSpace.status == status)
    return _page(session, stmt, AdSpace.id, limit, offset)


def get_ad_space(session: Session, ad_space_id: int) -> AdSpace:
    space = session.get(AdSpace, ad_space_id)
    if space is None:
        raise NotFound(f"ad space {ad_space_id} not found")
    return space


def ad_spaces_by_id(session: Session, ids: Iterable[int]) -> dict[int, AdSpace]:
    wanted = set(ids)
    if not wanted:
        return {}
    return {s.id: s for s in session.scalars(select(AdSpace).where(AdSpace.id.in_(wanted)))}


def ad_spaces_of_publishers(session: Session, publisher_ids: Iterable[int]) -> list[AdSpace]:
    wanted = set(publisher_ids)
    if not wanted:
        return []
    return list(session.scalars(select(AdSpace).where(AdSpace.publisher_id.in_(wanted)).order_by(AdSpace.id)))


def create_ad_space(session: Session, principal: Principal, data: AdSpaceCreate) -> AdSpace:
    _require_operator(principal)
    if session.get(Publisher, data.publisher_id) is None:
        raise ValidationFailed.single("publisher_id", "exists", f"publisher {data.publisher_id} does not exist",
                                      actual=data.publisher_id)
    values = {k: _plain(v) for k, v in data.model_dump().items()}
    values["accepted_formats"] = list(dict.fromkeys(values["accepted_formats"]))
    values["sizes"] = list(dict.fromkeys(values["sizes"]))
    space = AdSpace(**values)
    session.add(space)
    session.flush()
    oplog.record(session, actor=principal, operation=Operation.CREATE, object_type=AD_SPACE, object_id=space.id,
                 object_name=space.name, after=ad_space_snapshot(space))
    return space


def update_ad_space(session: Session, principal: Principal, ad_space_id: int, data: AdSpaceUpdate) -> AdSpace:
    _require_operator(principal)
    space = get_ad_space(session, ad_space_id)
    before = ad_space_snapshot(space)
    for name, value in data.model_dump(exclude_unset=True).items():
        if value is None:
            raise ValidationFailed.single(name, "not_null", f"{name} cannot be null")
        if name in ("accepted_formats", "sizes"):
            value = list(dict.fromkeys(value))
        setattr(space, name, _plain(value))
    oplog.record(session, actor=principal, operation=Operation.UPDATE, object_type=AD_SPACE, object_id=space.id,
                 object_name=space.name, before=before, after=ad_space_snapshot(space))
    return space


def delete_ad_space(session: Session, principal: Principal, ad_space_id: int) -> None:
    """Ad groups that named the ad space simply stop reaching it; serving skips unknown ids."""
    _require_operator(principal)
    space = get_ad_space(session, ad_space_id)
    oplog.record(session, actor=principal, operation=Operation.DELETE, object_type=AD_SPACE, object_id=space.id,
                 object_name=space.name, before=ad_space_snapshot(space))
    session.delete(space)
    session.flush()


# ---------- device population ----------


def population_snapshot(row: DevicePopulation) -> dict[str, Any]:
    return {"daily_active_devices": row.daily_active_devices, "shares": row.shares,
            "impressions_per_device": row.impressions_per_device}


def list_populations(session: Session) -> list[DevicePopulation]:
    return list(session.scalars(select(DevicePopulation).order_by(DevicePopulation.country)))


def get_population(session: Session, country: str) -> DevicePopulation:
    row = session.scalar(select(DevicePopulation).where(DevicePopulation.country == country))
    if row is None:
        raise NotFound(f"no device population for {country}")
    return row


def put_population(session: Session, principal: Principal, country: str, data: DevicePopulationIn) -> DevicePopulation:
    """Create or replace one country's figures."""
    _require_operator(principal)
    row = session.scalar(select(DevicePopulation).where(DevicePopulation.country == country))
    before = population_snapshot(row) if row is not None else None
    if row is None:
        row = DevicePopulation(country=country, **data.as_columns())
        session.add(row)
    else:
        for name, value in data.as_columns().items():
            setattr(row, name, value)
    session.flush()
    oplog.record(session, actor=principal, operation=Operation.CREATE if before is None else Operation.UPDATE,
                 object_type=DEVICE_POPULATION, object_id=row.id, object_name=country, before=before,
                 after=population_snapshot(row))
    return row


def delete_population(session: Session, principal: Principal, country: str) -> None:
    _require_operator(principal)
    row = get_population(session, country)
    oplog.record(session, actor=principal, operation=Operation.DELETE, object_type=DEVICE_POPULATION,
                 object_id=row.id, object_name=country, before=population_snapshot(row))
    session.delete(row)
    session.flush()


def _as_population(row: DevicePopulation) -> CountryPopulation:
    return CountryPopulation(country=row.country, daily_active_devices=row.daily_active_devices,
                             shares={d: dict(v) for d, v in (row.shares or {}).items()},
                             impressions_per_device=dict(row.impressions_per_device or {}))


class TablePopulationSource:
    """The operator-edited table as a PopulationSource, read once per estimate."""

    def __init__(self, session: Session):
        self._rows = {row.country: _as_population(row) for row in list_populations(session)}

    def countries(self) -> list[str]:
        return sorted(self._rows)

    def population(self, country: str) -> CountryPopulation | None:
        return self._rows.get(country)


def seed(session: Session) -> None:
    """Fill an empty population table with the defaults; an edited table is left alone."""
    if session.scalar(select(func.count()).select_from(DevicePopulation)):
        return
    for population in default_populations():
        session.add(DevicePopulation(country=population.country,
                                     daily_active_devices=population.daily_active_devices,
                                     shares=population.shares,
                                     impressions_per_device=population.impressions_per_device))
    session.flush()
