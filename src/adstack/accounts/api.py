"""Sign-in, registration, accounts, sub-accounts, qualification documents, API keys and settlement rules."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile, status
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy import select

from adstack.accounts import service
from adstack.accounts.models import (
    AccountRead,
    AccountType,
    AccountUpdate,
    ApiKeyCreated,
    ApiKeyIn,
    ApiKeyRead,
    DocumentKind,
    DocumentRead,
    LoginIn,
    RegistrationIn,
    RegistrationOut,
    Role,
    SettlementRule,
    SettlementRuleIn,
    SettlementRuleRead,
    SubAccountIn,
    TokenOut,
    UserRead,
)
from adstack.core.deps import (
    AccountManagerPrincipal,
    CurrentPrincipal,
    IdPath,
    Limit,
    Offset,
    OptionalId,
    SessionDep,
    SettingsDep,
    bearer_scheme,
)
from adstack.core.errors import NotFound
from adstack.review.models import ReviewDecisionIn, ReviewStatus

router = APIRouter(prefix="/api/v1")
CountryQuery = Annotated[str, Query(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2 code.")]


def _read(session: SessionDep, account: service.Account, notice: str | None = None) -> AccountRead:
    out = AccountRead.model_validate(account)
    out.expected_review_at = service.expected_review(session, account)
    out.notice = notice
    return out


# ---------- auth ----------


@router.post("/auth/login", response_model=TokenOut, tags=["auth"], summary="Sign in with email and password")
def login(body: LoginIn, session: SessionDep, settings: SettingsDep) -> TokenOut:
    token, row, user = service.login(session, email=str(body.email), password=body.password,
                                     ttl=timedelta(hours=settings.token_ttl_hours))
    session.commit()
    return TokenOut(access_token=token, expires_at=row.expires_at, user_id=user.id, role=Role(user.role),
                    account_id=user.account_id)


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT, tags=["auth"], summary="Revoke this token")
def logout(principal: CurrentPrincipal, session: SessionDep,
           credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]) -> None:
    if credentials is not None:
        service.revoke_token(session, credentials.credentials)
        session.commit()


@router.post("/auth/register", response_model=RegistrationOut, status_code=status.HTTP_201_CREATED, tags=["auth"],
             summary="Register an advertiser or agency account")
def register(body: RegistrationIn, session: SessionDep, settings: SettingsDep) -> RegistrationOut:
    user, account, token = service.register(session, body, ttl=timedelta(hours=settings.token_ttl_hours))
    session.commit()
    return RegistrationOut(user=UserRead.model_validate(user), account=_read(session, account), access_token=token)


@router.get("/auth/me", response_model=UserRead, tags=["auth"], summary="The signed-in user")
def me(principal: CurrentPrincipal, session: SessionDep) -> UserRead:
    user = session.get(service.User, principal.user_id)
    if user is None:
        raise NotFound("user not found")
    return UserRead.model_validate(user)


@router.get("/auth/api-keys", response_model=list[ApiKeyRead], tags=["auth"], summary="List your API keys")
def list_api_keys(principal: CurrentPrincipal, session: SessionDep) -> list[ApiKeyRead]:
    return [ApiKeyRead.model_validate(k) for k in service.list_api_keys(session, principal)]


@router.post("/auth/api-keys", response_model=ApiKeyCreated, status_code=status.HTTP_201_CREATED, tags=["auth"],
             summary="Create an API key (shown once)")
def create_api_key(body: ApiKeyIn, principal: CurrentPrincipal, session: SessionDep) -> ApiKeyCreated:
    key, row = service.create_api_key(session, principal, name=body.name)
    session.commit()
    return ApiKeyCreated(key=key, **ApiKeyRead.model_validate(row).model_dump())


@router.delete("/auth/api-keys/{key_id}", response_model=ApiKeyRead, tags=["auth"], summary="Revoke an API key")
def revoke_api_key(key_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> ApiKeyRead:
    row = service.revoke_api_key(session, principal, key_id)
    session.commit()
    return ApiKeyRead.model_validate(row)


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
    return _read(session, service.get_account(session, principal, account_id))


@router.patch("/accounts/{account_id}", response_model=AccountRead, tags=["accounts"],
              summary="Edit an account; changing reviewed fields of an approved account sends it back to review")
def update_account(account_id: IdPath, body: AccountUpdate, principal: CurrentPrincipal,
                   session: SessionDep) -> AccountRead:
    account, notice = service.update_account(session, principal, account_id, body)
    session.commit()
    return _read(session, account, notice)


@router.post("/accounts/{account_id}/submit", response_model=AccountRead, tags=["accounts", "review"],
             summary="Submit the account for review")
def submit_account(account_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> AccountRead:
    account = service.submit_account(session, principal, account_id)
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
    document = service.add_document(session, principal, account_id, kind=kind, filename=file.filename or "document",
                                    stream=file.file, storage_dir=settings.data_dir,
                                    max_bytes=settings.max_document_bytes)
    session.commit()
    return DocumentRead.model_validate(document)


@router.get("/accounts/{account_id}/documents", response_model=list[DocumentRead], tags=["accounts"],
            summary="List qualification documents")
def list_documents(account_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> list[DocumentRead]:
    return [DocumentRead.model_validate(d) for d in service.list_documents(session, principal, account_id)]


# ---------- settlement rules ----------


@router.get("/settlement-rules", response_model=list[SettlementRuleRead], tags=["accounts"],
            summary="Settlement entities and currencies by country (public, for the registration form)")
def list_settlement_rules(session: SessionDep, country: CountryQuery | None = None) -> list[SettlementRuleRead]:
    rows = (service.settlement_options(session, country) if country
            else session.scalars(select(SettlementRule).order_by(SettlementRule.id)))
    return [SettlementRuleRead.model_validate(r) for r in rows]


@router.post("/settlement-rules", response_model=SettlementRuleRead, status_code=status.HTTP_201_CREATED,
             tags=["accounts"], summary="Add a settlement rule (account managers)")
def add_settlement_rule(body: SettlementRuleIn, principal: AccountManagerPrincipal,
                        session: SessionDep) -> SettlementRuleRead:
    rule = SettlementRule(country=body.country, entity=body.entity, currency=body.currency.value)
    session.add(rule)
    session.commit()
    return SettlementRuleRead.model_validate(rule)


@router.delete("/settlement-rules/{rule_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["accounts"],
               summary="Remove a settlement rule (account managers)")
def delete_settlement_rule(rule_id: IdPath, principal: AccountManagerPrincipal, session: SessionDep) -> None:
    rule = session.get(SettlementRule, rule_id)
    if rule is None:
        raise NotFound("settlement rule not found")
    session.delete(rule)
    session.commit()
