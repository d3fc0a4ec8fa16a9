"""Audiences: uploaded GAID files and label audiences; search, upload with its validation report, append or
reduce by a later file, label rules built from the device profiles, and batch delete that refuses audiences
live ad groups (enabled or paused) still use."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Response
from pydantic import TypeAdapter, ValidationError
from starlette.datastructures import FormData, UploadFile

from adstack.apps import service as apps
from adstack.audiences import label_audiences, reference, uploads
from adstack.audiences import service as audiences
from adstack.audiences.ids import IdType
from adstack.audiences.models import (
    AudienceKind,
    AudienceName,
    AudienceStatus,
    AudienceUpdate,
    LabelAudienceCreate,
    UploadMode,
)
from adstack.console import audienceforms, forms
from adstack.console.forms import FormErrors
from adstack.console.pages import choices
from adstack.console.web import PREFIX, ConsoleRoute, FormDep, UserDep, Visitor, redirect, render, with_notice
from adstack.core.deps import IdPath
from adstack.core.errors import DomainError, ValidationFailed
from adstack.core.vocabulary import ConversionEvent

router = APIRouter(route_class=ConsoleRoute)

PAGE_SIZE = 50
CHUNK_BYTES = 1 << 16
_AUDIENCE_NAME: TypeAdapter[str] = TypeAdapter(AudienceName)  # the API's rule for an audience's name


def _chunks(upload: UploadFile) -> Iterator[bytes]:
    while chunk := upload.file.read(CHUNK_BYTES):
        yield chunk


def _page(visitor: Visitor, *, errors: FormErrors | None = None, report: Any = None, values: dict[str, Any] | None
          = None, status: int = 200, refused_form: str = "upload") -> Response:
    """The audience list with its upload and change forms; `errors` show beside the inputs of `refused_form`."""
    params = visitor.request.query_params
    page = choices.page_number(params.get("page"))
    rows, total = audiences.list_audiences(
        visitor.session, visitor.me, query=(params.get("q") or "")[:100] or None,
        region_code=(params.get("region") or None), kind=choices.enum_or_none(AudienceKind, params.get("kind")),
        status=choices.enum_or_none(AudienceStatus, params.get("status")), limit=PAGE_SIZE,
        offset=(page - 1) * PAGE_SIZE)
    return render(visitor, "audiences/audiences.html", {
        "rows": rows, "total": total, "page": page, "pages": max(1, -(-total // PAGE_SIZE)),
        "regions": reference.list_regions(visitor.session), "id_types": [t.value for t in IdType],
        "account_choices": choices.account_choices(visitor),
        "filters": {k: params.get(k, "") for k in ("q", "region", "kind", "status")},
        "errors": errors or FormErrors(), "refused_form": refused_form, "report": report, "values": values or {},
        "failed": (params.get("failed") or "")[:500],
    }, status=status)


@router.get("/audiences")
def audiences_page(visitor: UserDep) -> Response:
    return _page(visitor)


@router.post("/audiences")
def upload_audience(visitor: UserDep, form: FormDep) -> Response:
    """A TXT file of ids, read in chunks; fewer than 1,000 distinct valid ids or a wrong file leaves nothing behind."""
    values = {k: forms.text(form, k) for k in ("name", "region_code", "id_type", "account_id")}
    upload = forms.upload(form, "file")
    session = visitor.session
    # What can be told without reading the file is told at once, every input together.
    errors = FormErrors()
    try:
        _AUDIENCE_NAME.validate_python(values["name"])
    except ValidationError as exc:
        for item in exc.errors():
            errors.add("name", item["type"], limit=(item.get("ctx") or {}).get(
                "min_length" if item["type"] == "string_too_short" else "max_length"))
    id_type = choices.enum_or_none(IdType, values["id_type"])
    if id_type is None:
        errors.add("id_type", "enum", limit=[t.value for t in IdType])
    if upload is None:
        errors.add("file", "required")
    elif upload.filename and not upload.filename.lower().endswith(".txt"):
        errors.add("file", "file_extension", limit=".txt")
    if errors or upload is None or id_type is None:
        return _page(visitor, errors=errors, values=values, status=422)
    try:
        _audience, report = uploads.create_uploaded_audience(
            session, visitor.me, name=values["name"], region_code=values["region_code"][:8], id_type=id_type,
            chunks=_chunks(upload), max_bytes=visitor.settings.max_upload_bytes, source_name=upload.filename or "",
            account_id=forms.integer(form, "account_id", minimum=1))
        session.commit()
    except DomainError as exc:
        session.rollback()
        return _page(visitor, errors=FormErrors.from_domain(exc, default_field="file"), values=values,
                     status=exc.status)
    return _page(visitor, report=report)


@router.post("/audiences/change")
def change_audience(visitor: UserDep, form: FormDep) -> Response:
    """Append a later file's devices to an uploaded audience, or remove them."""
    audience_id = forms.integer(form, "audience_id", minimum=1)
    if audience_id is None:
        raise ValidationFailed.single("audience_id", "required", "choose an audience")
    upload = forms.upload(form, "file")
    mode = choices.enum_or_default(UploadMode, forms.text(form, "mode"), UploadMode.APPEND)
    session = visitor.session
    try:
        if upload is None:
            raise ValidationFailed.single("file", "required", "choose a TXT file of ids")
        uploads.check_file_name(upload.filename, field="file")
        _audience, report = uploads.change_uploaded_audience(
            session, visitor.me, audience_id, mode=mode, chunks=_chunks(upload),
            max_bytes=visitor.settings.max_upload_bytes, source_name=upload.filename or "")
        session.commit()
    except DomainError as exc:
        session.rollback()
        if exc.status == 404:
            raise
        return _page(visitor, errors=FormErrors.from_domain(exc, default_field="file"), status=exc.status,
                     refused_form="change")
    return _page(visitor, report=report)


@router.post("/audiences/{audience_id}/refresh")
def refresh(audience_id: IdPath, visitor: UserDep) -> Response:
    label_audiences.rebuild_label_audience(visitor.session, visitor.me, audience_id)
    return redirect(with_notice(f"{PREFIX}/audiences", "saved"))


@router.post("/audiences/delete")
def delete_audiences(visitor: UserDep, form: FormDep) -> Response:
    ids = [int(v) for v in form.getlist("ids") if isinstance(v, str) and v.isdecimal() and len(v) < 19][:500]
    result = audiences.delete_audiences(visitor.session, visitor.me, ids, partial_failure=True)
    visitor.session.commit()
    url = with_notice(f"{PREFIX}/audiences", "batch_done")
    if result.failures:
        url += "&failed=" + ",".join(f"{f.id}:{f.code}" for f in result.failures[:50])
    return redirect(url)


# ---------- label audiences ----------


def _label_form(visitor: Visitor, values: dict[str, Any], *, audience: Any = None, errors: FormErrors | None = None,
                status: int = 200) -> Response:
    return render(visitor, "audiences/label_form.html", {
        "values": values, "audience": audience, "errors": errors or FormErrors(),
        "regions": reference.list_regions(visitor.session),
        "categories": label_audiences.list_categories(visitor.session),
        "account_choices": [] if audience is not None else choices.account_choices(visitor),
        # Apps and events for the condition on partners' postbacks (the service refuses another account's apps).
        "apps": apps.list_apps(visitor.session, visitor.me,
                               account_id=audience.account_id if audience is not None else None, limit=200),
        "conversion_events": [event.value for event in ConversionEvent],
    }, status=status)


def _refused(visitor: Visitor, form: FormData, exc: ValidationError | DomainError, conditions: list[dict[str, Any]],
             *, audience: Any = None) -> Response:
    visitor.session.rollback()
    if isinstance(exc, ValidationError):
        errors, status = FormErrors.from_validation(exc), 422
    else:
        errors, status = FormErrors.from_domain(exc), exc.status
    return _label_form(visitor, audienceforms.form_values(form), audience=audience,
                       errors=audienceforms.form_errors(errors, conditions), status=status)


@router.get("/audiences/labels/new")
def new_label_audience(visitor: UserDep) -> Response:
    return _label_form(visitor, audienceforms.rule_values(None))


@router.post("/audiences/labels/new")
def create_label_audience(visitor: UserDep, form: FormDep) -> Response:
    """Create the audience from the sections filled in, then build it from the device profiles at once."""
    session = visitor.session
    conditions: list[dict[str, Any]] = []
    try:
        rule = audienceforms.rule_payload(form)
        conditions = rule["conditions"]
        data = LabelAudienceCreate.model_validate({
            "name": forms.text(form, "name"), "region_code": forms.text(form, "region_code"), "rule": rule,
            "account_id": forms.integer(form, "account_id", minimum=1)})
        audience = label_audiences.create_label_audience(session, visitor.me, data)
        session.commit()
    except (ValidationError, DomainError) as exc:
        return _refused(visitor, form, exc, conditions)
    label_audiences.rebuild_label_audience(session, visitor.me, audience.id)
    return redirect(with_notice(f"{PREFIX}/audiences?q={audience.id}", "saved"))


@router.get("/audiences/{audience_id}/edit")
def edit_audience(audience_id: IdPath, visitor: UserDep) -> Response:
    audience = audiences.get_audience(visitor.session, visitor.me, audience_id)
    values = {"name": audience.name, "region_code": audience.region_code, **audienceforms.rule_values(audience.rule)}
    return _label_form(visitor, values, audience=audience)


@router.post("/audiences/{audience_id}/edit")
def update_audience(audience_id: IdPath, visitor: UserDep, form: FormDep) -> Response:
    """Rename or move any audience; a label audience's changed rule is rebuilt at once."""
    session = visitor.session
    audience = audiences.get_audience(session, visitor.me, audience_id)
    conditions: list[dict[str, Any]] = []
    try:
        payload: dict[str, Any] = {"name": forms.text(form, "name"), "region_code": forms.text(form, "region_code")}
        if audience.kind == AudienceKind.LABEL:
            payload["rule"] = audienceforms.rule_payload(form)
            conditions = payload["rule"]["conditions"]
        audience, rule_changed = label_audiences.update_audience(session, visitor.me, audience_id,
                                                                 AudienceUpdate.model_validate(payload))
        session.commit()
    except (ValidationError, DomainError) as exc:
        return _refused(visitor, form, exc, conditions, audience=audience)
    if rule_changed:
        label_audiences.rebuild_label_audience(session, visitor.me, audience_id)
    return redirect(with_notice(f"{PREFIX}/audiences?q={audience_id}", "saved"))
