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
from adstack.core.errors import DomainError, ValidationFailed
from adstack.core.vocabulary import PlacementType
from adstack.creatives import formats
from adstack.inventory import service as inventory
from adstack.inventory.models import AdSpaceCreate, PublisherCreate

router = APIRouter(route_class=ConsoleRoute)

PAGE_SIZE = 50


def _page(visitor: Visitor, *, errors: FormErrors | None = None, values: dict[str, Any] | None = None,
          status: int = 200, refused_form: str = "") -> Response:
    """The catalogue with its two forms; `errors` show beside the inputs of `refused_form` (publisher, ad_space)."""
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
        "refused_form": refused_form,
        "q": params.get("q", ""),
    }, status=status)


@router.get("/admin/inventory")
def inventory_page(visitor: PlatformDep) -> Response:
    return _page(visitor)


def _refused(visitor: Visitor, exc: ValidationError | DomainError, values: dict[str, Any], refused_form: str, *,
             typed: FormErrors | None = None) -> Response:
    visitor.session.rollback()
    if isinstance(exc, ValidationError):
        errors, status = FormErrors.from_validation(exc), 422
    elif typed and not exc.fields:  # only the typed values stopped it
        errors, status = FormErrors(), 422
    else:
        errors, status = FormErrors.from_domain(exc), exc.status
    errors = forms.merge(typed or FormErrors(), errors)
    return _page(visitor, errors=errors, values=values, status=422 if typed else status, refused_form=refused_form)


@router.post("/admin/inventory/publishers")
def create_publisher(visitor: PlatformDep, form: FormDep) -> Response:
    values = {k: forms.text(form, k) for k in ("name", "app_package", "country")}
    values["country"] = values["country"].upper()
    try:
        inventory.create_publisher(visitor.session, visitor.me, PublisherCreate.model_validate(values))
        visitor.session.commit()
    except (ValidationError, DomainError) as exc:
        return _refused(visitor, exc, values, "publisher")
    return redirect(with_notice(f"{PREFIX}/admin/inventory", "created"))


@router.post("/admin/inventory/ad-spaces")
def create_ad_space(visitor: PlatformDep, form: FormDep) -> Response:
    with forms.collecting() as typed:
        values: dict[str, Any] = {
            "publisher_id": forms.integer(form, "publisher_id", minimum=1), "name": forms.text(form, "space_name"),
            "placement_type": forms.text(form, "placement_type"),
            "accepted_formats": forms.texts(form, "accepted_formats"),
            "reserve_price_micros": forms.money(form, "reserve_price") or 0,
        }
    shown = {**values, "space_name": values["name"], "reserve_price": forms.text(form, "reserve_price")}
    try:
        data = AdSpaceCreate.model_validate(values)
        if typed:
            raise ValidationFailed("the ad space has invalid fields")
        inventory.create_ad_space(visitor.session, visitor.me, data)
        visitor.session.commit()
    except (ValidationError, DomainError) as exc:
        return _refused(visitor, exc, shown, "ad_space", typed=typed)
    return redirect(with_notice(f"{PREFIX}/admin/inventory", "created"))


@router.post("/admin/inventory/ad-spaces/{ad_space_id}/delete")
def delete_ad_space(ad_space_id: IdPath, visitor: PlatformDep) -> Response:
    inventory.delete_ad_space(visitor.session, visitor.me, ad_space_id)
    visitor.session.commit()
    return redirect(with_notice(f"{PREFIX}/admin/inventory", "deleted"))
