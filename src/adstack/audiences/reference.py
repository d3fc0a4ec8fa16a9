"""Audience reference data: the regions audiences are built for and the app categories label rules read, as
operators edit them (service.py seeds the defaults)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from adstack.accounts.models import Principal
from adstack.audiences.models import Audience, AudienceRegion, PackageCategory, PackageCategoryIn, RegionIn
from adstack.core.errors import Conflict, FieldError, Forbidden, InvalidState, NotFound, ValidationFailed
from adstack.oplog import service as oplog
from adstack.oplog.models import Operation

# ---------- reference data: regions and app categories ----------


def _require_operator(principal: Principal) -> None:
    if not principal.can_manage_accounts:
        raise Forbidden("only platform admins and account managers edit this list")


def list_regions(session: Session) -> list[AudienceRegion]:
    return list(session.scalars(select(AudienceRegion).order_by(AudienceRegion.code)))


def add_region(session: Session, principal: Principal, data: RegionIn) -> AudienceRegion:
    _require_operator(principal)
    if session.scalar(select(AudienceRegion.id).where(AudienceRegion.code == data.code)) is not None:
        raise Conflict(f"region {data.code} exists", fields=[FieldError("code", "unique", actual=data.code)])
    region = AudienceRegion(code=data.code, name=data.name, countries=sorted(set(data.countries)))
    session.add(region)
    session.flush()
    oplog.record(session, actor=principal, operation=Operation.CREATE, object_type="audience_region",
                 object_id=region.id, object_name=region.name,
                 after={"code": region.code, "name": region.name, "countries": region.country_codes})
    return region


def delete_region(session: Session, principal: Principal, region_id: int) -> None:
    _require_operator(principal)
    region = session.get(AudienceRegion, region_id)
    if region is None:
        raise NotFound("region not found")
    used = session.scalar(select(func.count()).where(Audience.region_code == region.code)) or 0
    if used:
        message = f"{used} audiences are built for region {region.code}; move them first"
        raise InvalidState(message, fields=[FieldError("region_id", "in_use", message=message, limit=0, actual=used)])
    oplog.record(session, actor=principal, operation=Operation.DELETE, object_type="audience_region",
                 object_id=region.id, object_name=region.name, before={"code": region.code, "name": region.name})
    session.delete(region)


def _check_region(session: Session, code: str) -> None:
    if session.scalar(select(AudienceRegion.id).where(AudienceRegion.code == code)) is None:
        known = list(session.scalars(select(AudienceRegion.code).order_by(AudienceRegion.code)))
        raise ValidationFailed.single("region_code", "known_region", f"unknown region {code}", limit=known,
                                      actual=code)


def list_package_categories(session: Session, *, query: str | None = None, category: str | None = None,
                            limit: int = 100, offset: int = 0) -> list[PackageCategory]:
    stmt = select(PackageCategory)
    if query:
        stmt = stmt.where(PackageCategory.package.icontains(query, autoescape=True))  # _ is a literal underscore
    if category:
        stmt = stmt.where(PackageCategory.category == category)
    return list(session.scalars(stmt.order_by(PackageCategory.package).limit(limit).offset(offset)))


def set_package_category(session: Session, principal: Principal, data: PackageCategoryIn) -> PackageCategory:
    """Create or change the category of a package."""
    _require_operator(principal)
    row = session.scalar(select(PackageCategory).where(PackageCategory.package == data.package))
    before = None if row is None else {"category": row.category}
    if row is None:
        row = PackageCategory(package=data.package, category=data.category)
        session.add(row)
    else:
        row.category = data.category
    session.flush()
    oplog.record(session, actor=principal, operation=Operation.CREATE if before is None else Operation.UPDATE,
                 object_type="package_category", object_id=row.id, object_name=row.package, before=before,
                 after={"category": row.category})
    return row


def delete_package_category(session: Session, principal: Principal, row_id: int) -> None:
    _require_operator(principal)
    row = session.get(PackageCategory, row_id)
    if row is None:
        raise NotFound("package category not found")
    oplog.record(session, actor=principal, operation=Operation.DELETE, object_type="package_category",
                 object_id=row.id, object_name=row.package, before={"category": row.category})
    session.delete(row)
