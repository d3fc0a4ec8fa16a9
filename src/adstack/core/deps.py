"""FastAPI dependencies shared by every router: settings, the database session, the acting principal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio
from fastapi import Depends, Path, Query, Request
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from adstack.accounts import auth as account_auth
from adstack.accounts import permissions
from adstack.accounts.models import Principal
from adstack.core.db import DatabaseBusy
from adstack.core.errors import Forbidden, Unauthenticated
from adstack.core.ids import MAX_ID
from adstack.core.settings import Settings


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _release(session: Session) -> None:
    try:
        session.rollback()
    finally:
        session.close()


class _GateSlot:
    """Whether the request holds its place at the database gate (see `without_session`)."""

    __slots__ = ("held",)

    def __init__(self, held: bool):
        self.held = held


async def _admit(state: Any) -> None:
    """Admission: at most as many requests hold a session as there are request threads and connections for them.
    Without it a burst deadlocks: the handlers' threads wait for connections that finished requests still hold
    while they wait for a thread to serialise their answer."""
    gate: anyio.Semaphore | None = getattr(state, "db_gate", None)
    if gate is None:
        return
    admitted = False
    with anyio.move_on_after(state.settings.db_pool_timeout_s):
        await gate.acquire()
        admitted = True
    if not admitted:
        raise DatabaseBusy("every database connection is in use")


async def _release_in_thread(state: Any, session: Session) -> None:
    limiter: anyio.CapacityLimiter | None = getattr(state, "release_limiter", None)
    with anyio.CancelScope(shield=True):  # a client gone away must not leave the connection checked out
        await anyio.to_thread.run_sync(_release, session, limiter=limiter)


async def get_session(request: Request) -> AsyncIterator[Session]:
    """A session per request. Handlers commit explicitly; anything uncommitted is rolled back.

    The session connects only when first used, in the handler's thread. It is released on a thread limiter of
    its own: released on the request threads' limiter, a busy server would hold every connection while the
    releases wait for a thread, and every thread waits for a connection."""
    state = request.app.state
    gate: anyio.Semaphore | None = getattr(state, "db_gate", None)
    await _admit(state)
    slot = request.state.db_gate_slot = _GateSlot(held=gate is not None)
    session: Session = state.session_factory()
    try:
        yield session
    finally:
        try:
            await _release_in_thread(state, session)
        finally:
            if gate is not None and slot.held:
                gate.release()


@asynccontextmanager
async def without_session(request: Request, session: Session) -> AsyncIterator[None]:
    """Give the request's session and its place at the database gate back while the request waits on something
    slow that needs neither (a body arriving, a remote file downloading), and take them again afterwards (503
    when none frees in time). Without it a few slow clients hold every place and lock every tenant out. Objects
    loaded before are detached: read them again after."""
    state = request.app.state
    gate: anyio.Semaphore | None = getattr(state, "db_gate", None)
    slot: _GateSlot | None = getattr(request.state, "db_gate_slot", None)
    await _release_in_thread(state, session)
    if gate is not None and slot is not None and slot.held:
        slot.held = False
        gate.release()
    yield
    if gate is not None and slot is not None:
        await _admit(state)
        slot.held = True


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[Session, Depends(get_session)]

bearer_scheme = HTTPBearer(auto_error=False, description="A session token from /api/v1/auth/login or an API key.")


def get_principal(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    """The signed-in principal, authorised for the matched route's permission (accounts/permissions.py) before
    any handler runs: every route that names a principal is checked, however its handler is written."""
    if credentials is None or not credentials.credentials:
        raise Unauthenticated("send Authorization: Bearer <token>", code="missing_token")
    principal = account_auth.authenticate(session, credentials.credentials, client="api")
    session.commit()  # persists the coarse last-used stamp
    route = request.scope.get("route")
    if isinstance(route, APIRoute):
        principal = permissions.authorize(principal, permissions.permission_of(route, request.method))
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
