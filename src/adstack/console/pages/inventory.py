"""Publishers & ad spaces: the catalogue platform staff keep, which ad groups target and serving fills."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import ValidationError

from adstack.console import forms
from adstack.console.forms import FormErrors
from adstack.console.pages import choices
from adstack.console.web import PREFIX, ConsoleRoute, FormDep, PlatformDep, Visitor, redirect, render, with_notice
from adstack.core.deps import IdPath
from adstack.core.errors import DomainError
from adstack.core.vocabulary import PlacementType
from adstack.creatives import formats
from adstack.inventory import service as inventory
from adstack.inventory.models import AdSpaceCreate, PublisherCreate

router = APIRouter(route_class=ConsoleRoute)

PAGE_SIZE = 50


def _page(visitor: Visitor, *, errors: FormErrors | None = None, values: dict[str, Any] | None = None,
          status: int = 200) -> Response:
    params = visitor.request.query_params
    page = choices.page_number(params.get("page"))
    publishers, total = inventory.list_publishers(visitor.session, query=(params.get("q") or "")[:100] or None,
                                                  limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    spaces = inventory.ad_spaces_of_publishers(visitor.session, [p.id for p in publishers])
    by_publisher: dict[int, list[Any]] = {}
    for space in spaces:
        by_publisher.setdefault(space.publisher_id, []).append(space)
    return render(visitor, "inventory/inventory.html", {
        "publishers": publishers, "spaces": by_publisher, "total": total, "page": page,
        "pages": max(1, -(-total // PAGE_SIZE)), "placements": [p.value for p in PlacementType],
        "formats": formats.FORMAT_SPECS, "errors": errors or FormErrors(), "values": values or {},
        "q": params.get("q", ""),
    }, status=status)


@router.get("/admin/inventory")
def inventory_page(visitor: PlatformDep) -> Response:
    return _page(visitor)


def _refused(visitor: Visitor, exc: ValidationError | DomainError, values: dict[str, Any]) -> Response:
    visitor.session.rollback()
    if isinstance(exc, ValidationError):
        return _page(visitor, errors=FormErrors.from_validation(exc), values=values, status=422)
    return _page(visitor, errors=FormErrors.from_domain(exc), values=values, status=exc.status)


@router.post("/admin/inventory/publishers")
def create_publisher(visitor: PlatformDep, form: FormDep) -> Response:
    values = {k: forms.text(form, k) for k in ("name", "app_package", "country")}
    values["country"] = values["country"].upper()
    try:
        inventory.create_publisher(visitor.session, visitor.me, PublisherCreate.model_validate(values))
        visitor.session.commit()
    except (ValidationError, DomainError) as exc:
        return _refused(visitor, exc, values)
    return redirect(with_notice(f"{PREFIX}/admin/inventory", "created"))


@router.post("/admin/inventory/ad-spaces")
def create_ad_space(visitor: PlatformDep, form: FormDep) -> Response:
    values: dict[str, Any] = {
        "publisher_id": forms.integer(form, "publisher_id", minimum=1), "name": forms.text(form, "space_name"),
        "placement_type": forms.text(form, "placement_type"), "accepted_formats": forms.texts(form, "accepted_formats"),
        "reserve_price_micros": forms.money(form, "reserve_price") or 0,
    }
    try:
        inventory.create_ad_space(visitor.session, visitor.me, AdSpaceCreate.model_validate(values))
        visitor.session.commit()
    except (ValidationError, DomainError) as exc:
        return _refused(visitor, exc, {**values, "space_name": values["name"]})
    return redirect(with_notice(f"{PREFIX}/admin/inventory", "created"))


@router.post("/admin/inventory/ad-spaces/{ad_space_id}/delete")
def delete_ad_space(ad_space_id: IdPath, visitor: PlatformDep) -> Response:
    inventory.delete_ad_space(visitor.session, visitor.me, ad_space_id)
    visitor.session.commit()
    return redirect(with_notice(f"{PREFIX}/admin/inventory", "deleted"))
