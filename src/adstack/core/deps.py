"""FastAPI dependencies shared by every router: settings, the database session, the acting principal."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from adstack.accounts import service as accounts
from adstack.accounts.models import Principal
from adstack.core.errors import Forbidden, Unauthenticated
from adstack.core.settings import Settings

MAX_ID = 2**63 - 1


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    """A session per request. Handlers commit explicitly; anything uncommitted is rolled back."""
    session: Session = request.app.state.session_factory()
    try:
        yield session
    finally:
        session.rollback()
        session.close()


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[Session, Depends(get_session)]

bearer_scheme = HTTPBearer(auto_error=False, description="A session token from /api/v1/auth/login or an API key.")


def get_principal(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    if credentials is None or not credentials.credentials:
        raise Unauthenticated("send Authorization: Bearer <token>", code="missing_token")
    principal = accounts.authenticate(session, credentials.credentials, client="api")
    session.commit()  # persists the coarse last-used stamp
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


def client_ip(request: Request) -> str:
    """The peer address. Forwarded headers are not trusted: anyone could set them to dodge a rate limit."""
    return request.client.host if request.client else ""


def user_agent(request: Request) -> str:
    return request.headers.get("user-agent", "")[:200]


ClientIp = Annotated[str, Depends(client_ip)]
UserAgent = Annotated[str, Depends(user_agent)]


def require_reviewer(principal: CurrentPrincipal) -> Principal:
    if not principal.can_review:
        raise Forbidden("this action needs a platform reviewer")
    return principal


def require_account_manager(principal: CurrentPrincipal) -> Principal:
    if not principal.can_manage_accounts:
        raise Forbidden("this action needs a platform account manager")
    return principal


ReviewerPrincipal = Annotated[Principal, Depends(require_reviewer)]
AccountManagerPrincipal = Annotated[Principal, Depends(require_account_manager)]

# Ids and paging are bounded so no client value can overflow a 64-bit column.
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
Limit = Annotated[int, Query(ge=1, le=500, description="Page size.")]
Offset = Annotated[int, Query(ge=0, le=10**9, description="Rows to skip.")]
OptionalId = Annotated[int | None, Query(ge=1, le=MAX_ID)]
