"""Sign-in, registration with qualification documents, sign-out and the language switch."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import ValidationError

from adstack.accounts import service as accounts
from adstack.accounts.models import DocumentKind, RegistrationIn, SettlementRule, User
from adstack.console import forms, i18n
from adstack.console.forms import FormErrors
from adstack.console.pages import choices
from adstack.console.web import (
    LANGUAGE_COOKIE,
    PREFIX,
    SESSION_COOKIE,
    ConsoleRoute,
    FormDep,
    Visitor,
    VisitorDep,
    cookie_options,
    redirect,
    render,
    safe_next,
    session_ttl,
    with_notice,
)
from adstack.core.errors import DomainError, Unauthenticated
from adstack.oplog import service as oplog
from adstack.oplog.models import Operation

router = APIRouter(route_class=ConsoleRoute)

REGISTRATION_FIELDS = ("email", "type", "company_name", "contact_name", "contact_email", "contact_phone", "country",
                       "settlement", "time_zone")


def _start_session(visitor: Visitor, token: str) -> None:
    ttl = session_ttl(visitor.settings)
    visitor.set_cookie(SESSION_COOKIE, token, **cookie_options(visitor.request, max_age=int(ttl.total_seconds())))


@router.get("/sign-in")
def sign_in_page(visitor: VisitorDep, next: str | None = None) -> Response:
    if visitor.principal is not None:
        return redirect(safe_next(next))
    return render(visitor, "auth/sign_in.html", {"next": safe_next(next), "email": "", "error": None})


@router.post("/sign-in")
def sign_in(visitor: VisitorDep, form: FormDep) -> Response:
    email, password = forms.text(form, "email")[:320], str(form.get("password") or "")[:128]
    target = safe_next(forms.text(form, "next"))
    session = visitor.session
    try:
        token, _row, user = accounts.login(session, email=email, password=password, ttl=session_ttl(visitor.settings))
    except Unauthenticated:
        session.rollback()
        return render(visitor, "auth/sign_in.html", {"next": target, "email": email, "error": "invalid_credentials"},
                      status=401)
    actor = accounts.principal_for(user, client="console")
    oplog.record(session, actor=actor, operation=Operation.LOGIN, object_type="user", object_id=user.id,
                 object_name=user.email, account_id=user.account_id)
    session.commit()
    _start_session(visitor, token)
    return redirect(target)


@router.post("/sign-out")
def sign_out(visitor: VisitorDep) -> Response:
    if visitor.session_token:
        accounts.revoke_token(visitor.session, visitor.session_token)
        visitor.session.commit()
    visitor.set_cookie(SESSION_COOKIE, "", **cookie_options(visitor.request))
    return redirect(f"{PREFIX}/sign-in")


@router.post("/language")
def switch_language(visitor: VisitorDep, form: FormDep) -> Response:
    language = i18n.normalise_language(forms.text(form, "language")) or i18n.DEFAULT_LANGUAGE
    visitor.set_cookie(LANGUAGE_COOKIE, language, **{**cookie_options(visitor.request, max_age=365 * 86400),
                                                     "httponly": False})
    if visitor.principal is not None:
        user = visitor.session.get(User, visitor.principal.user_id)
        if user is not None:
            user.locale = language
            visitor.session.commit()
    return redirect(safe_next(forms.text(form, "next")))


# ---------- registration ----------


def _registration_page(visitor: Visitor, values: dict[str, Any], errors: FormErrors, status: int = 200) -> Response:
    country = values.get("country") or "SG"
    return render(visitor, "auth/register.html", {
        "values": values,
        "errors": errors,
        "countries": choices.countries(visitor.language),
        "settlements": accounts.settlement_options(visitor.session, country),
        "time_zones": choices.time_zones(),
        "document_kinds": list(DocumentKind),
    }, status=status)


@router.get("/register")
def register_page(visitor: VisitorDep) -> Response:
    if visitor.principal is not None:
        return redirect(f"{PREFIX}/")
    return _registration_page(visitor, {"type": "advertiser", "country": "SG", "time_zone": "Asia/Singapore"},
                              FormErrors())


@router.get("/register/settlement")
def settlement_choices(visitor: VisitorDep, country: str = "SG") -> Response:
    """The settlement entity/currency options a country allows (HTMX swaps them into the form)."""
    code = country.upper()[:2] if country.isalpha() else "SG"
    rows: list[SettlementRule] = accounts.settlement_options(visitor.session, code)
    return render(visitor, "auth/_settlement_options.html", {"settlements": rows, "selected": ""})


@router.post("/register")
def register(visitor: VisitorDep, form: FormDep) -> Response:
    values: dict[str, Any] = {name: forms.text(form, name) for name in REGISTRATION_FIELDS}
    values["accept_agreement"] = forms.checkbox(form, "accept_agreement")
    entity, _, currency = values["settlement"].partition("|")
    errors = FormErrors()
    document = forms.upload(form, "document")
    if document is None:
        errors.add("document", "required", "a qualification document is required")
    try:
        data = forms.parse(RegistrationIn, {
            **{k: v for k, v in values.items() if k != "settlement"},
            "password": str(form.get("password") or "")[:200],
            "settlement_entity": entity,
            "currency": currency,
        })
    except ValidationError as exc:
        errors.update(FormErrors.from_validation(exc))
        return _registration_page(visitor, values, errors, status=422)
    if errors:
        return _registration_page(visitor, values, errors, status=422)
    assert document is not None
    session = visitor.session
    kind = choices.enum_or_default(DocumentKind, forms.text(form, "document_kind"), DocumentKind.BUSINESS_LICENSE)
    try:
        user, account, token = accounts.register(session, data, ttl=session_ttl(visitor.settings), client="console")
        actor = accounts.principal_for(user, client="console")
        accounts.add_document(session, actor, account.id, kind=kind, filename=document.filename or "document",
                              stream=document.file, storage_dir=visitor.settings.data_dir,
                              max_bytes=visitor.settings.max_document_bytes)
        accounts.submit_account(session, actor, account.id)
        session.commit()
    except DomainError as exc:
        session.rollback()
        return _registration_page(visitor, values, FormErrors.from_domain(exc), status=exc.status)
    _start_session(visitor, token)
    return redirect(with_notice(f"{PREFIX}/account", "registered"))

