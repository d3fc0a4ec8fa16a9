"""Account information and review status, documents, edits and resubmission, sub-accounts, API keys, and the
security page: password change and signed-in sessions."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import FileResponse
from pydantic import ValidationError

from adstack.accounts import auth, tenancy
from adstack.accounts import keys as account_keys
from adstack.accounts import service as accounts
from adstack.accounts.limits import limiter_of
from adstack.accounts.models import (
    API_KEY_DEFAULT_DAYS,
    API_KEY_MAX_DAYS,
    AccountType,
    AccountUpdate,
    DocumentKind,
    KeyScope,
    Role,
    SubAccountIn,
)
from adstack.accounts.passwords import MIN_PASSWORD_LENGTH
from adstack.console import forms
from adstack.console.forms import FormErrors
from adstack.console.pages import choices
from adstack.console.web import PREFIX, ConsoleRoute, FormDep, UserDep, Visitor, redirect, render, with_notice
from adstack.core.deps import IdPath, client_ip
from adstack.core.errors import DomainError, NotFound, ValidationFailed
from adstack.core.mail import send_mail
from adstack.review import service as review

router = APIRouter(route_class=ConsoleRoute)

EDITABLE_FIELDS = ("company_name", "contact_name", "contact_email", "contact_phone", "country", "time_zone")


@router.get("/account")
def my_account(visitor: UserDep) -> Response:
    if visitor.me.account_id is not None:
        return redirect(f"{PREFIX}/accounts/{visitor.me.account_id}"
                        + (f"?{visitor.request.url.query}" if visitor.request.url.query else ""))
    return _account_page(visitor, None)


def _account_page(visitor: Visitor, account_id: int | None, *, errors: FormErrors | None = None,
                  new_key: str | None = None, values: dict[str, Any] | None = None, status: int = 200,
                  refused_form: str = "edit") -> Response:
    """The account's page; `errors` and `values` belong to `refused_form` (the sub-account form shares the edit
    form's field names)."""
    session, principal = visitor.session, visitor.me
    context: dict[str, Any] = {
        "account": None,
        "errors": errors or FormErrors(),
        "refused_form": refused_form,
        "new_key": new_key,
        "api_keys": account_keys.list_api_keys(session, principal),
        "is_own": account_id is not None and account_id == principal.account_id,
        "values": values or {},
    }
    if account_id is not None:
        account = tenancy.get_account(session, principal, account_id)
        context.update({
            "account": account,
            "documents": accounts.list_documents(session, principal, account_id),
            "history": review.history(session, accounts.ACCOUNT, account_id),
            "expected_review_at": accounts.expected_review(session, account),
            "settlements": accounts.settlement_options(session, account.country),
            "countries": choices.countries(visitor.language),
            "time_zones": choices.time_zones(visitor.language),
            "document_kinds": list(DocumentKind),
            "sub_accounts": (accounts.list_accounts(session, principal, parent_agency_id=account.id, limit=200)
                             if account.type == AccountType.AGENCY else []),
            "parent": (tenancy.get_account(session, principal, account.parent_agency_id)
                       if account.parent_agency_id and tenancy.can_see_account(
                           session, principal, account.parent_agency_id) else None),
        })
    return render(visitor, "account/account.html", context, status=status)


@router.get("/accounts/{account_id}")
def account_page(account_id: IdPath, visitor: UserDep) -> Response:
    return _account_page(visitor, account_id)


@router.post("/accounts/{account_id}/edit")
def edit_account(account_id: IdPath, visitor: UserDep, form: FormDep) -> Response:
    values = {name: forms.text(form, name) for name in EDITABLE_FIELDS}
    entity, _, currency = forms.text(form, "settlement").partition("|")
    changes: dict[str, Any] = {k: v for k, v in values.items() if v}
    if entity and currency:
        changes.update(settlement_entity=entity, currency=currency)
    session = visitor.session
    # A badly typed threshold is told together with the other inputs' refusals, not instead of them.
    with forms.collecting() as typed:
        if forms.text(form, "low_balance_threshold"):
            changes["low_balance_threshold_micros"] = forms.money(form, "low_balance_threshold")
    if typed:
        changes.pop("low_balance_threshold_micros", None)
    try:
        account = tenancy.get_account(session, visitor.me, account_id)
        current = accounts.snapshot(account)
        data = forms.parse(AccountUpdate, {k: v for k, v in changes.items() if current.get(k) != v})
        if typed:
            raise ValidationFailed("the account has invalid fields")
        _, notice = accounts.update_account(session, visitor.me, account_id, data)
        session.commit()
    except ValidationError as exc:
        session.rollback()
        return _account_page(visitor, account_id, errors=forms.merge(typed, FormErrors.from_validation(exc)),
                             values=values, status=422)
    except DomainError as exc:
        session.rollback()
        if exc.status == 404:
            raise
        if typed and not exc.fields:  # only the typed threshold stopped it
            return _account_page(visitor, account_id, errors=typed, values=values, status=422)
        return _account_page(visitor, account_id, errors=forms.merge(typed, FormErrors.from_domain(exc)),
                             values=values, status=exc.status)
    return redirect(with_notice(f"{PREFIX}/accounts/{account_id}", "back_to_review" if notice else "saved"))


@router.post("/accounts/{account_id}/submit")
def submit_account(account_id: IdPath, visitor: UserDep) -> Response:
    accounts.submit_account(visitor.session, visitor.me, account_id,
                            require_verified_email=visitor.settings.email_verification_required)
    visitor.session.commit()
    return redirect(with_notice(f"{PREFIX}/accounts/{account_id}", "submitted"))


@router.post("/accounts/{account_id}/documents")
def upload_document(account_id: IdPath, visitor: UserDep, form: FormDep) -> Response:
    document = forms.upload(form, "document")
    if document is None:
        errors = FormErrors()
        errors.add("document", "required", "choose a file")
        return _account_page(visitor, account_id, errors=errors, status=422)
    kind = choices.enum_or_default(DocumentKind, forms.text(form, "document_kind"), DocumentKind.OTHER)
    session = visitor.session
    try:
        _, notice = accounts.add_document(session, visitor.me, account_id, kind=kind,
                                          filename=document.filename or "document", stream=document.file,
                                          storage_dir=visitor.settings.data_dir,
                                          max_bytes=visitor.settings.max_document_bytes)
        session.commit()
    except DomainError as exc:
        session.rollback()
        if exc.status == 404:
            raise
        return _account_page(visitor, account_id, errors=FormErrors.from_domain(exc, default_field="document"),
                             status=exc.status)
    return redirect(with_notice(f"{PREFIX}/accounts/{account_id}", "back_to_review" if notice else "uploaded"))


@router.get("/accounts/{account_id}/documents/{document_id}")
def download_document(account_id: IdPath, document_id: IdPath, visitor: UserDep) -> Response:
    for document in accounts.list_documents(visitor.session, visitor.me, account_id):
        if document.id == document_id:
            return FileResponse(Path(document.storage_path), media_type=document.content_type,
                                filename=document.filename, content_disposition_type="attachment")
    raise NotFound("document not found")


@router.post("/accounts/{account_id}/sub-accounts")
def create_sub_account(account_id: IdPath, visitor: UserDep, form: FormDep) -> Response:
    values = {name: forms.text(form, name) for name in EDITABLE_FIELDS}
    entity, _, currency = forms.text(form, "settlement").partition("|")
    session = visitor.session
    tenancy.get_account(session, visitor.me, account_id)
    try:
        data = forms.parse(SubAccountIn, {
            **values, "settlement_entity": entity, "currency": currency, "type": AccountType.ADVERTISER.value,
            "parent_agency_id": account_id if visitor.me.role != Role.AGENCY else None,
        })
        sub = accounts.create_sub_account(session, visitor.me, data)
        document = forms.upload(form, "document")
        if document is not None:
            accounts.add_document(session, visitor.me, sub.id, kind=DocumentKind.BUSINESS_LICENSE,
                                  filename=document.filename or "document", stream=document.file,
                                  storage_dir=visitor.settings.data_dir,
                                  max_bytes=visitor.settings.max_document_bytes)
            # Without a document the sub-account waits "to be submitted" until one is uploaded on its page.
            accounts.submit_account(session, visitor.me, sub.id,
                                    require_verified_email=visitor.settings.email_verification_required)
        session.commit()
    except ValidationError as exc:
        session.rollback()
        return _account_page(visitor, account_id, errors=FormErrors.from_validation(exc), values=values, status=422,
                             refused_form="sub_account")
    except DomainError as exc:
        session.rollback()
        return _account_page(visitor, account_id, errors=FormErrors.from_domain(exc), values=values,
                             status=exc.status, refused_form="sub_account")
    return redirect(with_notice(f"{PREFIX}/accounts/{sub.id}", "submitted" if document is not None else "saved"))


# ---------- API keys ----------


@router.post("/api-keys")
def create_api_key(visitor: UserDep, form: FormDep) -> Response:
    name = forms.text(form, "name")[:100]
    if not name:
        errors = FormErrors()
        errors.add("api_key_name", "required", "name the key")
        return _account_page(visitor, visitor.me.account_id, errors=errors, status=422)
    scopes = [scope for scope in KeyScope if forms.checkbox(form, f"scope_{scope.value}")] or [KeyScope.READ]
    days_text = forms.text(form, "expires_in_days")
    if days_text and not (days_text.isdecimal() and 1 <= int(days_text) <= API_KEY_MAX_DAYS):
        errors = FormErrors()
        errors.add("api_key_expiry", "range", "1 to 365 days", limit=[1, API_KEY_MAX_DAYS], actual=days_text)
        return _account_page(visitor, visitor.me.account_id, errors=errors, status=422)
    try:
        key, _ = account_keys.create_api_key(visitor.session, visitor.me, name=name, scopes=scopes,
                                         expires_in_days=int(days_text) if days_text else API_KEY_DEFAULT_DAYS)
    except DomainError as exc:
        visitor.session.rollback()
        return _account_page(visitor, visitor.me.account_id, errors=FormErrors.from_domain(
            exc, default_field="api_key_scopes"), status=exc.status)
    visitor.session.commit()
    # Shown once, on this response only; it is never stored in clear.
    return _account_page(visitor, visitor.me.account_id, new_key=key)


@router.post("/api-keys/{key_id}/revoke")
def revoke_api_key(key_id: IdPath, visitor: UserDep) -> Response:
    account_keys.revoke_api_key(visitor.session, visitor.me, key_id)
    visitor.session.commit()
    return redirect(with_notice(f"{PREFIX}/account", "revoked"))


# ---------- security: password and sessions ----------


def _security_page(visitor: Visitor, *, errors: FormErrors | None = None, status: int = 200,
                   headers: dict[str, str] | None = None) -> Response:
    session, principal = visitor.session, visitor.me
    current = auth.token_row(session, visitor.session_token) if visitor.session_token else None
    return render(visitor, "account/security.html", {
        "errors": errors or FormErrors(),
        "sessions": auth.list_sessions(session, principal),
        "current_id": current.id if current else None,
        "email_verified": visitor.user is not None and visitor.user.email_verified,
        "min_length": MIN_PASSWORD_LENGTH,
    }, status=status, headers=headers)


@router.get("/security")
def security_page(visitor: UserDep) -> Response:
    return _security_page(visitor)


@router.post("/security/password")
def change_password(visitor: UserDep, form: FormDep) -> Response:
    session, request = visitor.session, visitor.request
    limiter = limiter_of(request.app.state)
    keys = (("login_ip", client_ip(request)), ("login_account", visitor.me.email))
    refused = limiter.check(*keys)
    if refused is not None:
        errors = FormErrors()
        errors.add("current_password", "too_many_attempts", f"retry in {refused.retry_after} s", limit=refused.limit)
        return _security_page(visitor, errors=errors, status=429, headers={"Retry-After": str(refused.retry_after)})
    current = auth.token_row(session, visitor.session_token) if visitor.session_token else None
    try:
        auth.change_password(session, visitor.me, current_password=str(form.get("current_password") or "")[:128],
                                 new_password=str(form.get("new_password") or "")[:200],
                                 keep_token_id=current.id if current else None)
        session.commit()
    except DomainError as exc:
        session.rollback()
        if any(f.field == "current_password" for f in exc.fields):
            limiter.hit(*keys)
        return _security_page(visitor, errors=FormErrors.from_domain(exc, default_field="new_password"),
                              status=exc.status)
    return redirect(with_notice(f"{PREFIX}/security", "password_changed"))


@router.post("/security/sessions/{session_id}/revoke")
def revoke_session(session_id: IdPath, visitor: UserDep) -> Response:
    auth.revoke_session(visitor.session, visitor.me, session_id)
    visitor.session.commit()
    return redirect(with_notice(f"{PREFIX}/security", "session_revoked"))


@router.post("/security/verify-email")
def resend_verification(visitor: UserDep) -> Response:
    request = visitor.request
    refused = limiter_of(request.app.state).hit(("register_ip", client_ip(request)),
                                                ("register_account", visitor.me.email))
    if refused is None:
        mail = auth.resend_verification(visitor.session, visitor.me,
                                            base_url=visitor.settings.public_base_url,
                                            ttl=timedelta(hours=visitor.settings.email_token_ttl_hours))
        visitor.session.commit()
        if mail is not None:
            send_mail(visitor.settings, mail)
    return redirect(with_notice(f"{PREFIX}/security", "verification_sent"))
