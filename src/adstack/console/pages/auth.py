"""Sign-in, registration with qualification documents, e-mail verification, password reset, sign-out and the
language switch."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Response
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from adstack.accounts import auth as account_auth
from adstack.accounts import service as accounts
from adstack.accounts.limits import Refused, account_key, limiter_of
from adstack.accounts.models import AccountType, DocumentKind, RegistrationIn, SettlementRule, TokenKind, User
from adstack.accounts.passwords import MIN_PASSWORD_LENGTH
from adstack.console import forms, held_uploads, i18n
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
from adstack.core.deps import client_ip, user_agent
from adstack.core.errors import DomainError, Unauthenticated
from adstack.core.mail import OutgoingMail, send_mail
from adstack.core.settings import Settings
from adstack.oplog import service as oplog
from adstack.oplog.models import Operation

router = APIRouter(route_class=ConsoleRoute)

REGISTRATION_FIELDS = ("email", "type", "company_name", "contact_name", "contact_email", "contact_phone", "country",
                       "settlement", "time_zone")


def _start_session(visitor: Visitor, token: str) -> None:
    ttl = session_ttl(visitor.settings)
    visitor.set_cookie(SESSION_COOKIE, token, **cookie_options(visitor.request, max_age=int(ttl.total_seconds())))


def _refused_page(visitor: Visitor, template: str, refused: Refused, context: dict[str, Any]) -> Response:
    return render(visitor, template, {**context, "error": "too_many_attempts", "retry_after": refused.retry_after},
                  status=429, headers={"Retry-After": str(refused.retry_after)})


def _send(visitor: Visitor, mail: OutgoingMail | None) -> None:
    if mail is not None:
        send_mail(visitor.settings, mail)


def _email_ttl(visitor: Visitor) -> timedelta:
    return timedelta(hours=visitor.settings.email_token_ttl_hours)


@router.get("/sign-in")
def sign_in_page(visitor: VisitorDep, next: str | None = None, notice: str | None = None) -> Response:
    if visitor.principal is not None:
        return redirect(safe_next(next))
    return render(visitor, "auth/sign_in.html", {"next": safe_next(next), "email": "", "error": None,
                                                 "notice": notice or ""})


@router.post("/sign-in")
def sign_in(visitor: VisitorDep, form: FormDep) -> Response:
    email, password = forms.text(form, "email")[:320], str(form.get("password") or "")[:128]
    target = safe_next(forms.text(form, "next"))
    session = visitor.session
    request = visitor.request
    limiter = limiter_of(request.app.state)
    keys = (("login_ip", client_ip(request)), ("login_account", account_key(email)))
    context = {"next": target, "email": email, "notice": ""}
    refused = limiter.check(*keys)
    if refused is not None:
        return _refused_page(visitor, "auth/sign_in.html", refused, context)
    try:
        # A console session: only ever a cookie, refused as a bearer token.
        token, _row, user = account_auth.login(session, email=email, password=password,
                                               ttl=session_ttl(visitor.settings), kind=TokenKind.CONSOLE,
                                               client_ip=client_ip(request), user_agent=user_agent(request))
    except Unauthenticated:
        session.rollback()
        limiter.hit(*keys)
        return render(visitor, "auth/sign_in.html", {**context, "error": "invalid_credentials"}, status=401)
    actor = account_auth.principal_for(user, client="console")
    oplog.record(session, actor=actor, operation=Operation.LOGIN, object_type="user", object_id=user.id,
                 object_name=user.email, account_id=user.account_id)
    session.commit()
    _start_session(visitor, token)
    return redirect(target)


@router.post("/sign-out")
def sign_out(visitor: VisitorDep) -> Response:
    if visitor.session_token:
        account_auth.revoke_token(visitor.session, visitor.session_token)
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


def _country_code(value: str | None) -> str:
    return value.upper()[:2] if value and value.isalpha() else ""


def _chosen_rule(visitor: Visitor, country: str, settlement: str) -> SettlementRule | None:
    """The settlement rule the form's country and "entity|currency" choice name, if any."""
    entity, _, currency = settlement.partition("|")
    code = _country_code(country)
    if not code or not entity:
        return None
    rules: list[SettlementRule] = accounts.settlement_options(visitor.session, code)
    return next((r for r in rules if r.entity == entity and r.currency == currency), None)


def _registration_page(visitor: Visitor, values: dict[str, Any], errors: FormErrors, status: int = 200) -> Response:
    # Nothing is preselected: the visitor chooses the country, then one of its entities and currencies.
    country = _country_code(values.get("country"))
    return render(visitor, "auth/register.html", {
        "values": values,
        "errors": errors,
        "countries": choices.countries(visitor.language),
        "settlements": accounts.settlement_options(visitor.session, country) if country else [],
        "country_chosen": bool(country),
        "agreement": _chosen_rule(visitor, country, values.get("settlement") or ""),
        "time_zones": choices.time_zones(visitor.language),
        "document_kinds": list(DocumentKind),
    }, status=status)


@router.get("/register")
def register_page(visitor: VisitorDep) -> Response:
    if visitor.principal is not None:
        return redirect(f"{PREFIX}/")
    return _registration_page(visitor, {"type": "advertiser", "time_zone": "UTC"}, FormErrors())


@router.get("/register/settlement")
def settlement_choices(visitor: VisitorDep, country: str = "") -> Response:
    """The settlement entity/currency options a country allows (HTMX swaps them into the form); none is
    preselected, and a country without rules (Singapore until an operator sets its rule) says so."""
    code = _country_code(country)
    rows: list[SettlementRule] = accounts.settlement_options(visitor.session, code) if code else []
    return render(visitor, "auth/_settlement_options.html",
                  {"settlements": rows, "selected": "", "country_chosen": bool(code)})


@router.get("/register/agreement")
def agreement_link(visitor: VisitorDep, country: str = "", settlement: str = "") -> Response:
    """The agreement text of the chosen entity's contract version, beside the checkbox (HTMX)."""
    return render(visitor, "auth/_agreement.html",
                  {"agreement": _chosen_rule(visitor, country[:8], settlement[:220])})


def _hold_limits(settings: Settings) -> held_uploads.HoldLimits:
    return held_uploads.HoldLimits(visitor_files=settings.held_upload_files_per_visitor,
                                   visitor_bytes=settings.held_upload_bytes_per_visitor,
                                   total_files=settings.held_upload_files_total,
                                   total_bytes=settings.held_upload_bytes_total)


def _keep_files(visitor: Visitor, values: dict[str, Any], chosen: dict[str, UploadFile | None],
                held: dict[str, held_uploads.HeldFile | None], *, hold_new: bool = True) -> None:
    """A refused registration keeps its documents by reference: newly chosen ones are held (documents only, within
    the caps; not at all when the visitor is over the registration limit), held ones stay."""
    settings = visitor.settings
    for name, upload in chosen.items():
        if upload is None:
            kept = held[name]
        elif hold_new:
            kept = held_uploads.hold(settings.data_dir, upload, settings.max_document_bytes,
                                     visitor=client_ip(visitor.request), limits=_hold_limits(settings))
        else:
            kept = None
        if kept is not None:
            values[f"{name}_ref"], values[f"{name}_name"] = kept.token, kept.filename


def _is_document(upload: UploadFile) -> bool:
    upload.file.seek(0)
    head = upload.file.read(16)
    upload.file.seek(0)
    return accounts.document_content_type(head) is not None


def _too_many(visitor: Visitor, values: dict[str, Any], errors: FormErrors, refused: Refused) -> Response:
    errors.add("form", "too_many_attempts", f"too many registrations; retry in {refused.retry_after} s",
               limit=refused.limit)
    response = _registration_page(visitor, values, errors, status=429)
    response.headers["Retry-After"] = str(refused.retry_after)
    return response


@router.post("/register")
def register(visitor: VisitorDep, form: FormDep) -> Response:
    values: dict[str, Any] = {name: forms.text(form, name) for name in REGISTRATION_FIELDS}
    values["accept_agreement"] = forms.checkbox(form, "accept_agreement")
    values["document_kind"] = forms.text(form, "document_kind")
    entity, _, currency = values["settlement"].partition("|")
    errors = FormErrors()
    document = forms.upload(form, "document")
    shop_screenshot = forms.upload(form, "shop_screenshot")
    chosen = {"document": document, "shop_screenshot": shop_screenshot}
    held = {name: None if upload else held_uploads.take(visitor.settings.data_dir, forms.text(form, f"{name}_ref"))
            for name, upload in chosen.items()}
    request = visitor.request
    limiter = limiter_of(request.app.state)
    # Every attempt counts against the IP's limit before anything of it is stored.
    refused = limiter.hit(("register_ip", client_ip(request)))
    if refused is not None:
        _keep_files(visitor, values, chosen, held, hold_new=False)
        return _too_many(visitor, values, errors, refused)
    if document is None and held["document"] is None:
        errors.add("document", "required", "a qualification document is required")
    for name, upload in chosen.items():
        if upload is not None and not _is_document(upload):
            errors.add(name, "file_type", "qualification documents must be PDF, PNG or JPEG",
                       limit=sorted(accounts.DOCUMENT_SIGNATURES), actual=upload.filename)
    try:
        data = forms.parse(RegistrationIn, {
            **{k: v for k, v in values.items() if k != "settlement"},
            "password": str(form.get("password") or "")[:200],
            "settlement_entity": entity,
            "currency": currency,
        })
    except ValidationError as exc:
        errors.update(FormErrors.from_validation(exc))
        _keep_files(visitor, values, chosen, held)
        return _registration_page(visitor, values, errors, status=422)
    if errors:
        _keep_files(visitor, values, chosen, held)
        return _registration_page(visitor, values, errors, status=422)
    refused = limiter.hit(("register_account", account_key(str(data.email))))
    if refused is not None:
        _keep_files(visitor, values, chosen, held)
        return _too_many(visitor, values, errors, refused)
    session = visitor.session
    kind = choices.enum_or_default(DocumentKind, forms.text(form, "document_kind"), DocumentKind.BUSINESS_LICENSE)
    settings = visitor.settings
    try:
        outcome = accounts.register_self_serve(session, data, base_url=settings.public_base_url,
                                               token_ttl=_email_ttl(visitor), client="console")
        if outcome.user is not None and outcome.account is not None:
            outcome.user.locale = visitor.language  # the language the form was shown in (cookie or browser)
            actor = account_auth.principal_for(outcome.user, client="console")
            for name, document_kind in (("document", kind), ("shop_screenshot", DocumentKind.GETAPPS_SHOP_SCREENSHOT)):
                upload, kept = chosen[name], held[name]
                if upload is not None:
                    filename, stream = upload.filename or name, upload.file
                elif kept is not None:
                    filename, stream = kept.filename, kept.open(settings.data_dir)
                else:
                    continue
                accounts.add_document(session, actor, outcome.account.id, kind=document_kind, filename=filename,
                                      stream=stream, storage_dir=settings.data_dir,
                                      max_bytes=settings.max_document_bytes)
            # An agency without its shop screenshot waits to be submitted: its account manager may submit it.
            ready = data.type != AccountType.AGENCY or (shop_screenshot or held["shop_screenshot"]) is not None
            if ready and not settings.email_verification_required:
                accounts.submit_account(session, actor, outcome.account.id)
        session.commit()
    except DomainError as exc:
        session.rollback()
        _keep_files(visitor, values, chosen, held)
        return _registration_page(visitor, values, FormErrors.from_domain(exc), status=exc.status)
    for kept in held.values():
        if kept is not None:
            held_uploads.release(settings.data_dir, kept)
    _send(visitor, outcome.mail)
    # The same answer for a free and a taken address: no session, a note to read the mail.
    return redirect(f"{PREFIX}/sign-in?notice=registered_check_mail")


# ---------- e-mail verification and password reset ----------


@router.get("/verify-email")
def verify_email_page(visitor: VisitorDep, token: str = "") -> Response:
    # A button, not an automatic verification: mail scanners open links without their owner.
    return render(visitor, "auth/verify_email.html", {"token": token[:200], "error": None})


@router.post("/verify-email")
def verify_email(visitor: VisitorDep, form: FormDep) -> Response:
    token = forms.text(form, "token")[:200]
    try:
        account_auth.verify_email(visitor.session, token=token)
        visitor.session.commit()
    except DomainError:
        visitor.session.rollback()
        return render(visitor, "auth/verify_email.html", {"token": token, "error": "invalid_link"}, status=422)
    target = f"{PREFIX}/account" if visitor.principal is not None else f"{PREFIX}/sign-in"
    return redirect(with_notice(target, "email_verified"))


@router.get("/forgot-password")
def forgot_password_page(visitor: VisitorDep) -> Response:
    return render(visitor, "auth/forgot_password.html", {"email": "", "error": None})


@router.post("/forgot-password")
def forgot_password(visitor: VisitorDep, form: FormDep) -> Response:
    email = forms.text(form, "email")[:320]
    request = visitor.request
    refused = limiter_of(request.app.state).hit(("reset_ip", client_ip(request)),
                                                ("reset_account", account_key(email)))
    if refused is not None:
        return _refused_page(visitor, "auth/forgot_password.html", refused, {"email": email})
    mail = account_auth.request_password_reset(visitor.session, email=email, base_url=visitor.settings.public_base_url,
                                           ttl=_email_ttl(visitor))
    visitor.session.commit()
    _send(visitor, mail)
    return redirect(f"{PREFIX}/sign-in?notice=reset_sent")


@router.get("/reset-password")
def reset_password_page(visitor: VisitorDep, token: str = "") -> Response:
    return render(visitor, "auth/reset_password.html", {"token": token[:200], "errors": FormErrors(),
                                                        "min_length": MIN_PASSWORD_LENGTH})


@router.post("/reset-password")
def reset_password(visitor: VisitorDep, form: FormDep) -> Response:
    token = forms.text(form, "token")[:200]
    password = str(form.get("new_password") or "")[:200]
    request = visitor.request
    context: dict[str, Any] = {"token": token, "min_length": MIN_PASSWORD_LENGTH}
    refused = limiter_of(request.app.state).hit(("reset_ip", client_ip(request)))
    if refused is not None:
        errors = FormErrors()
        errors.add("form", "too_many_attempts", f"retry in {refused.retry_after} s", limit=refused.limit)
        return render(visitor, "auth/reset_password.html", {**context, "errors": errors}, status=429,
                      headers={"Retry-After": str(refused.retry_after)})
    try:
        account_auth.reset_password(visitor.session, token=token, new_password=password)
        visitor.session.commit()
    except DomainError as exc:
        visitor.session.rollback()
        return render(visitor, "auth/reset_password.html",
                      {**context, "errors": FormErrors.from_domain(exc, default_field="new_password")},
                      status=exc.status)
    visitor.set_cookie(SESSION_COOKIE, "", **cookie_options(visitor.request))
    return redirect(f"{PREFIX}/sign-in?notice=password_reset")
