"""Sign-in, registration, accounts, sub-accounts, qualification documents, API keys and settlement rules."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

from fastapi import (
    APIRouter,
    BackgroundTasks,
    Depends,
    FastAPI,
    File,
    Form,
    HTTPException,
    Query,
    Request,
    UploadFile,
    status,
)
from fastapi.responses import FileResponse
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy import select

from adstack.accounts import auth, keys, members_api, service, tenancy, users
from adstack.accounts.limits import AuthLimiter, Refused, account_key, limiter_of
from adstack.accounts.models import (
    AccountRead,
    AccountType,
    AccountUpdate,
    ApiKeyCreated,
    ApiKeyIn,
    ApiKeyRead,
    DocumentKind,
    DocumentRead,
    EmailTokenIn,
    LoginIn,
    ManagedUserRead,
    PasswordChangeIn,
    PasswordResetIn,
    PasswordResetRequestIn,
    RegistrationAccepted,
    RegistrationIn,
    Role,
    SessionRead,
    SettlementRule,
    SettlementRuleIn,
    SettlementRuleRead,
    SubAccountIn,
    TokenOut,
    UserRead,
)
from adstack.core.deps import (
    AccountManagerPrincipal,
    BearerCredentials,
    ClientIp,
    CurrentPrincipal,
    IdPath,
    Limit,
    Offset,
    OptionalId,
    SessionDep,
    SettingsDep,
    UserAgent,
    bearer_scheme,
)
from adstack.core.errors import NotFound, Unauthenticated, ValidationFailed
from adstack.core.mail import OutgoingMail, send_mail
from adstack.core.settings import Settings
from adstack.review.models import ReviewDecisionIn, ReviewStatus

router = APIRouter(prefix="/api/v1")
# Users, invitations and grants (members_api.py), registered beside this router by the app.
more_routers = (members_api.router,)
CountryQuery = Annotated[str, Query(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2 code.")]


def _read(session: SessionDep, account: service.Account, notice: str | None = None) -> AccountRead:
    out = AccountRead.model_validate(account)
    out.expected_review_at = service.expected_review(session, account)
    out.notice = notice
    return out


# ---------- auth ----------

REGISTRATION_MESSAGE = ("Check your mailbox: we sent the next step to the address you gave. If the address "
                        "already has a user, its owner was told instead.")
RESET_MESSAGE = "If the address belongs to an active user, a link to choose a new password is on its way."


def install(app: FastAPI) -> None:
    app.state.auth_limiter = AuthLimiter(app.state.settings)


def _limiter(request: Request) -> AuthLimiter:
    return limiter_of(request.app.state)


def _too_many(refused: Refused) -> HTTPException:
    return HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, f"too many attempts; retry in {refused.retry_after} s "
                         f"(limit {refused.limit})", headers={"Retry-After": str(refused.retry_after)})


def _send_later(tasks: BackgroundTasks, settings: Settings, mail: OutgoingMail | None) -> None:
    # After the answer, so how long the SMTP server takes tells nothing about the address.
    if mail is not None:
        tasks.add_task(send_mail, settings, mail)


def _token_ttl(settings: Settings) -> timedelta:
    return timedelta(hours=settings.email_token_ttl_hours)


@router.post("/auth/login", response_model=TokenOut, tags=["auth"],
             summary="Sign in with email and password (failed attempts are rate limited per IP and per e-mail)",
             responses={401: {"description": "The e-mail or password is wrong, or the user is deactivated."},
                        429: {"description": "Too many failed attempts; see Retry-After."}})
def login(body: LoginIn, request: Request, session: SessionDep, settings: SettingsDep, ip: ClientIp,
          agent: UserAgent) -> TokenOut:
    limiter = _limiter(request)
    limited = (("login_ip", ip), ("login_account", account_key(body.email)))
    refused = limiter.check(*limited)
    if refused is not None:
        raise _too_many(refused)
    try:
        token, row, user = auth.login(session, email=str(body.email), password=body.password,
                                      ttl=timedelta(hours=settings.token_ttl_hours), client_ip=ip, user_agent=agent)
    except Unauthenticated:
        limiter.hit(*limited)
        raise
    session.commit()
    return TokenOut(access_token=token, expires_at=row.expires_at, user_id=user.id, role=Role(user.role),
                    account_id=user.account_id)


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT, tags=["auth"], summary="Revoke this token")
def logout(principal: CurrentPrincipal, session: SessionDep,
           credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]) -> None:
    if credentials is not None:
        auth.revoke_token(session, credentials.credentials)
        session.commit()


@router.post("/auth/register", response_model=RegistrationAccepted, status_code=status.HTTP_202_ACCEPTED,
             tags=["auth"], summary="Register an advertiser or agency account",
             description="Answers alike whether or not the e-mail is registered: a new address gets a verification "
                         "link, a registered one a note to its owner. Sign in afterwards with the password.",
             responses={429: {"description": "Too many registrations from this IP or for this e-mail."}})
def register(body: RegistrationIn, request: Request, session: SessionDep, settings: SettingsDep, ip: ClientIp,
             tasks: BackgroundTasks) -> RegistrationAccepted:
    refused = _limiter(request).hit(("register_ip", ip), ("register_account", account_key(str(body.email))))
    if refused is not None:
        raise _too_many(refused)
    outcome = service.register_self_serve(session, body, base_url=settings.public_base_url,
                                          token_ttl=_token_ttl(settings))
    session.commit()
    _send_later(tasks, settings, outcome.mail)
    return RegistrationAccepted(message=REGISTRATION_MESSAGE)


@router.post("/auth/verify-email", response_model=UserRead, tags=["auth"],
             summary="Verify the e-mail address with the token from the verification mail")
def verify_email(body: EmailTokenIn, session: SessionDep) -> UserRead:
    user = auth.verify_email(session, token=body.token)
    session.commit()
    return UserRead.model_validate(user)


@router.post("/auth/verify-email/resend", response_model=RegistrationAccepted,
             status_code=status.HTTP_202_ACCEPTED, tags=["auth"], summary="Send the verification link again",
             responses={429: {"description": "Too many links sent from this IP or for this e-mail."}})
def resend_verification(principal: CurrentPrincipal, request: Request, session: SessionDep, settings: SettingsDep,
                        ip: ClientIp, tasks: BackgroundTasks) -> RegistrationAccepted:
    refused = _limiter(request).hit(("register_ip", ip), ("register_account", principal.email))
    if refused is not None:
        raise _too_many(refused)
    mail = auth.resend_verification(session, principal, base_url=settings.public_base_url,
                                       ttl=_token_ttl(settings))
    session.commit()
    _send_later(tasks, settings, mail)
    return RegistrationAccepted(message="If the address is not verified yet, a new link is on its way.")


@router.post("/auth/password", tags=["auth"], summary="Change your password (signs out your other sessions)",
             responses={429: {"description": "Too many wrong current passwords."}})
def change_password(body: PasswordChangeIn, principal: CurrentPrincipal, request: Request, session: SessionDep,
                    credentials: BearerCredentials, ip: ClientIp) -> dict[str, int]:
    limiter = _limiter(request)
    keys = (("login_ip", ip), ("login_account", principal.email))
    refused = limiter.check(*keys)
    if refused is not None:
        raise _too_many(refused)
    current = auth.token_row(session, credentials.credentials) if credentials else None
    try:
        signed_out = auth.change_password(session, principal, current_password=body.current_password,
                                             new_password=body.new_password,
                                             keep_token_id=current.id if current else None)
    except ValidationFailed as exc:
        if exc.fields and exc.fields[0].field == "current_password":
            limiter.hit(*keys)
        raise
    session.commit()
    return {"signed_out_sessions": signed_out}


@router.post("/auth/password-reset", response_model=RegistrationAccepted, status_code=status.HTTP_202_ACCEPTED,
             tags=["auth"], summary="E-mail a single-use link to choose a new password",
             responses={429: {"description": "Too many resets from this IP or for this e-mail."}})
def request_password_reset(body: PasswordResetRequestIn, request: Request, session: SessionDep,
                           settings: SettingsDep, ip: ClientIp, tasks: BackgroundTasks) -> RegistrationAccepted:
    refused = _limiter(request).hit(("reset_ip", ip), ("reset_account", account_key(str(body.email))))
    if refused is not None:
        raise _too_many(refused)
    mail = auth.request_password_reset(session, email=str(body.email), base_url=settings.public_base_url,
                                          ttl=_token_ttl(settings))
    session.commit()
    _send_later(tasks, settings, mail)
    return RegistrationAccepted(message=RESET_MESSAGE)


@router.post("/auth/password-reset/confirm", status_code=status.HTTP_204_NO_CONTENT, tags=["auth"],
             summary="Set a new password with the token from the reset mail (signs out every session)",
             responses={429: {"description": "Too many attempts from this IP."}})
def confirm_password_reset(body: PasswordResetIn, request: Request, session: SessionDep, ip: ClientIp) -> None:
    refused = _limiter(request).hit(("reset_ip", ip))
    if refused is not None:
        raise _too_many(refused)
    auth.reset_password(session, token=body.token, new_password=body.new_password)
    session.commit()


@router.get("/auth/sessions", response_model=list[SessionRead], tags=["auth"],
            summary="Your signed-in sessions, API and console")
def list_sessions(principal: CurrentPrincipal, session: SessionDep,
                  credentials: BearerCredentials) -> list[SessionRead]:
    current = auth.token_row(session, credentials.credentials) if credentials else None
    out = []
    for row in auth.list_sessions(session, principal):
        item = SessionRead.model_validate(row)
        item.current = current is not None and row.id == current.id
        out.append(item)
    return out


@router.delete("/auth/sessions/{session_id}", response_model=SessionRead, tags=["auth"],
               summary="Sign a session out")
def revoke_session(session_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> SessionRead:
    row = auth.revoke_session(session, principal, session_id)
    session.commit()
    return SessionRead.model_validate(row)


@router.get("/auth/me", response_model=UserRead, tags=["auth"], summary="The signed-in user")
def me(principal: CurrentPrincipal, session: SessionDep) -> UserRead:
    user = session.get(service.User, principal.user_id)
    if user is None:
        raise NotFound("user not found")
    return UserRead.model_validate(user)


@router.get("/auth/api-keys", response_model=list[ApiKeyRead], tags=["auth"], summary="List your API keys")
def list_api_keys(principal: CurrentPrincipal, session: SessionDep) -> list[ApiKeyRead]:
    return [ApiKeyRead.model_validate(k) for k in keys.list_api_keys(session, principal)]


@router.post("/auth/api-keys", response_model=ApiKeyCreated, status_code=status.HTTP_201_CREATED, tags=["auth"],
             summary="Create an API key (shown once) with scopes and an expiry; only from a signed-in session, "
                     "never with another key")
def create_api_key(body: ApiKeyIn, principal: CurrentPrincipal, session: SessionDep) -> ApiKeyCreated:
    key, row = keys.create_api_key(session, principal, name=body.name, scopes=body.scopes,
                                      expires_in_days=body.expires_in_days)
    session.commit()
    return ApiKeyCreated(key=key, **ApiKeyRead.model_validate(row).model_dump())


@router.delete("/auth/api-keys/{key_id}", response_model=ApiKeyRead, tags=["auth"], summary="Revoke an API key")
def revoke_api_key(key_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> ApiKeyRead:
    row = keys.revoke_api_key(session, principal, key_id)
    session.commit()
    return ApiKeyRead.model_validate(row)


# ---------- users ----------


@router.get("/users", response_model=list[ManagedUserRead], tags=["users"],
            summary="Users of the accounts you can see")
def list_users(principal: CurrentPrincipal, session: SessionDep, limit: Limit = 50, offset: Offset = 0,
               account_id: OptionalId = None,
               email: Annotated[str | None, Query(max_length=320)] = None) -> list[ManagedUserRead]:
    rows = users.list_users(session, principal, account_id=account_id, email=email, limit=limit, offset=offset)
    return [ManagedUserRead.model_validate(u) for u in rows]


@router.post("/users/{user_id}/deactivate", response_model=ManagedUserRead, tags=["users"],
             summary="Deactivate a user: every token and API key stops working (account managers; an agency for "
                     "its sub-accounts' users)")
def deactivate_user(user_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> ManagedUserRead:
    user = users.set_user_active(session, principal, user_id, active=False)
    session.commit()
    return ManagedUserRead.model_validate(user)


@router.post("/users/{user_id}/activate", response_model=ManagedUserRead, tags=["users"],
             summary="Reactivate a user (they sign in again; API keys stay revoked)")
def activate_user(user_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> ManagedUserRead:
    user = users.set_user_active(session, principal, user_id, active=True)
    session.commit()
    return ManagedUserRead.model_validate(user)


@router.post("/users/{user_id}/verify-email", response_model=ManagedUserRead, tags=["users"],
             summary="Mark a user's e-mail verified, after checking it out of band (account managers)")
def verify_user_email(user_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> ManagedUserRead:
    user = users.mark_email_verified(session, principal, user_id)
    session.commit()
    return ManagedUserRead.model_validate(user)


# ---------- accounts ----------


@router.get("/accounts", response_model=list[AccountRead], tags=["accounts"],
            summary="Accounts you can see: your own, your sub-accounts, or all for platform staff")
def list_accounts(
    principal: CurrentPrincipal,
    session: SessionDep,
    limit: Limit = 50,
    offset: Offset = 0,
    q: Annotated[str | None, Query(max_length=200, description="Company name or id.")] = None,
    review_status: ReviewStatus | None = None,
    type: AccountType | None = None,
    parent_agency_id: OptionalId = None,
) -> list[AccountRead]:
    rows = service.list_accounts(session, principal, query=q, review_status=review_status,
                                 account_type=type, parent_agency_id=parent_agency_id, limit=limit, offset=offset)
    return [_read(session, a) for a in rows]


@router.post("/accounts", response_model=AccountRead, status_code=status.HTTP_201_CREATED, tags=["accounts"],
             summary="Create a sub-account (agency) or any account (account manager)")
def create_account(body: SubAccountIn, principal: CurrentPrincipal, session: SessionDep) -> AccountRead:
    account = service.create_sub_account(session, principal, body)
    session.commit()
    return _read(session, account)


@router.get("/accounts/{account_id}", response_model=AccountRead, tags=["accounts"], summary="Get an account")
def get_account(account_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> AccountRead:
    return _read(session, tenancy.get_account(session, principal, account_id))


@router.patch("/accounts/{account_id}", response_model=AccountRead, tags=["accounts"],
              summary="Edit an account; changing reviewed fields of an approved account sends it back to review")
def update_account(account_id: IdPath, body: AccountUpdate, principal: CurrentPrincipal,
                   session: SessionDep) -> AccountRead:
    account, notice = service.update_account(session, principal, account_id, body)
    session.commit()
    return _read(session, account, notice)


@router.post("/accounts/{account_id}/submit", response_model=AccountRead, tags=["accounts", "review"],
             summary="Submit the account for review")
def submit_account(account_id: IdPath, principal: CurrentPrincipal, session: SessionDep,
                   settings: SettingsDep) -> AccountRead:
    account = service.submit_account(session, principal, account_id,
                                     require_verified_email=settings.email_verification_required)
    session.commit()
    return _read(session, account)


@router.post("/accounts/{account_id}/review", response_model=AccountRead, tags=["accounts", "review"],
             summary="Approve, or reject with reasons (reviewers)")
def review_account(account_id: IdPath, body: ReviewDecisionIn, principal: CurrentPrincipal,
                   session: SessionDep) -> AccountRead:
    account = service.review_account(session, principal, account_id, approve=body.decision == "approve",
                                     reasons=body.reasons)
    session.commit()
    return _read(session, account)


@router.post("/accounts/{account_id}/documents", response_model=DocumentRead, status_code=status.HTTP_201_CREATED,
             tags=["accounts"], summary="Upload a qualification document (PDF, PNG or JPEG, size capped)")
def upload_document(
    account_id: IdPath,
    principal: CurrentPrincipal,
    session: SessionDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="PDF, PNG or JPEG.")],
    kind: Annotated[DocumentKind, Form()] = DocumentKind.BUSINESS_LICENSE,
) -> DocumentRead:
    document, notice = service.add_document(session, principal, account_id, kind=kind,
                                            filename=file.filename or "document", stream=file.file,
                                            storage_dir=settings.data_dir, max_bytes=settings.max_document_bytes)
    session.commit()
    return _document_read(document, notice)


@router.get("/accounts/{account_id}/documents", response_model=list[DocumentRead], tags=["accounts"],
            summary="List qualification documents")
def list_documents(account_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> list[DocumentRead]:
    return [DocumentRead.model_validate(d) for d in service.list_documents(session, principal, account_id)]


@router.get("/accounts/{account_id}/documents/{document_id}", tags=["accounts"],
            summary="Download a qualification document (as an attachment, in the type its content was sniffed as)",
            response_class=FileResponse,
            responses={200: {"content": {t: {} for t in service.DOCUMENT_SIGNATURES},
                             "description": "The document's bytes."},
                       404: {"description": "No such document on an account you can see."}})
def download_document(account_id: IdPath, document_id: IdPath, principal: CurrentPrincipal,
                      session: SessionDep) -> FileResponse:
    document = service.get_document(session, principal, account_id, document_id)
    path = Path(document.storage_path)
    if not path.is_file():
        raise NotFound("the document's file is missing from storage", code="document_file_missing")
    # Only the type sniffed at upload, always as an attachment, never sniffed again by the browser.
    return FileResponse(path, media_type=document.content_type, filename=document.filename,
                        content_disposition_type="attachment",
                        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"})


@router.put("/accounts/{account_id}/documents/{document_id}", response_model=DocumentRead, tags=["accounts"],
            summary="Replace a qualification document's file (and optionally its kind)")
def replace_document(
    account_id: IdPath,
    document_id: IdPath,
    principal: CurrentPrincipal,
    session: SessionDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="PDF, PNG or JPEG.")],
    kind: Annotated[DocumentKind | None, Form()] = None,
) -> DocumentRead:
    document, notice = service.replace_document(session, principal, account_id, document_id,
                                                filename=file.filename or "document", stream=file.file,
                                                storage_dir=settings.data_dir, max_bytes=settings.max_document_bytes,
                                                kind=kind)
    session.commit()
    return _document_read(document, notice)


def _document_read(document: service.AccountDocument, notice: str | None) -> DocumentRead:
    out = DocumentRead.model_validate(document)
    out.notice = notice
    return out


# ---------- settlement rules ----------


@router.get("/settlement-rules", response_model=list[SettlementRuleRead], tags=["accounts"],
            summary="Settlement entities, currencies and contract versions by country (public, for the registration "
                    "form); Singapore has only the rules operators set")
def list_settlement_rules(session: SessionDep, country: CountryQuery | None = None) -> list[SettlementRuleRead]:
    rows = (service.settlement_options(session, country) if country
            else session.scalars(select(SettlementRule).order_by(SettlementRule.id)))
    return [SettlementRuleRead.model_validate(r) for r in rows]


@router.post("/settlement-rules", response_model=SettlementRuleRead, status_code=status.HTTP_201_CREATED,
             tags=["accounts"], summary="Add a settlement rule (account managers)")
def add_settlement_rule(body: SettlementRuleIn, principal: AccountManagerPrincipal,
                        session: SessionDep) -> SettlementRuleRead:
    rule = service.add_settlement_rule(session, principal, body)
    session.commit()
    return SettlementRuleRead.model_validate(rule)


@router.delete("/settlement-rules/{rule_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["accounts"],
               summary="Remove a settlement rule (account managers)")
def delete_settlement_rule(rule_id: IdPath, principal: AccountManagerPrincipal, session: SessionDep) -> None:
    service.delete_settlement_rule(session, principal, rule_id)
    session.commit()
