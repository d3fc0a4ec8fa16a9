"""API keys: scoped (read, write, finance), expiring, and made only from a signed-in session."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from adstack.accounts.models import ROLE_KEY_SCOPES, AccessToken, KeyScope, Principal, TokenKind
from adstack.core.errors import FieldError, Forbidden, NotFound, ValidationFailed
from adstack.core.security import new_token, token_digest
from adstack.core.timeutil import utcnow
from adstack.oplog import service as oplog
from adstack.oplog.models import Operation

API_KEY = "api_key"


def _refuse_keys(principal: Principal) -> None:
    """A leaked key must not be able to make itself a successor: keys are managed from a signed-in session."""
    if principal.is_api_key:
        raise Forbidden("API keys cannot create, list or revoke API keys; sign in with a password",
                        code="session_required",
                        fields=[FieldError(field="authorization", rule="signed_in_session", limit="session",
                                           actual="api_key")])


def allowed_scopes(principal: Principal) -> frozenset[KeyScope]:
    """Platform staff's keys are bounded by their platform role at each request; a tenant's also by its role."""
    if principal.is_platform:
        return frozenset(KeyScope)
    return ROLE_KEY_SCOPES.get(principal.account_role, frozenset({KeyScope.READ}))


def create_api_key(session: Session, principal: Principal, *, name: str,
                   scopes: list[KeyScope] | None = None, expires_in_days: int = 90) -> tuple[str, AccessToken]:
    _refuse_keys(principal)
    wanted = sorted(set(scopes or [KeyScope.READ]))
    allowed = allowed_scopes(principal)
    beyond = [s.value for s in wanted if s not in allowed]
    if beyond:
        raise ValidationFailed.single("scopes", "within_account_role",
                                      f"a {principal.account_role} cannot give a key {', '.join(beyond)}",
                                      limit=sorted(s.value for s in allowed), actual=beyond)
    key = new_token("ask")
    row = AccessToken(user_id=principal.user_id, kind=TokenKind.API_KEY.value, name=name, digest=token_digest(key),
                      prefix=key[:8], scopes=",".join(s.value for s in wanted),
                      expires_at=utcnow() + timedelta(days=expires_in_days))
    session.add(row)
    session.flush()
    oplog.record(session, actor=principal, operation=Operation.CREATE, object_type=API_KEY, object_id=row.id,
                 object_name=name, account_id=principal.account_id,
                 after={"scopes": row.scope_list, "expires_at": row.expires_at})
    return key, row


def list_api_keys(session: Session, principal: Principal) -> list[AccessToken]:
    _refuse_keys(principal)
    stmt = select(AccessToken).where(AccessToken.user_id == principal.user_id, AccessToken.kind == TokenKind.API_KEY)
    return list(session.scalars(stmt.order_by(AccessToken.id)))


def revoke_api_key(session: Session, principal: Principal, key_id: int) -> AccessToken:
    _refuse_keys(principal)
    row = session.get(AccessToken, key_id)
    if row is None or row.user_id != principal.user_id or row.kind != TokenKind.API_KEY:
        raise NotFound("api key not found")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        oplog.record(session, actor=principal, operation=Operation.DELETE, object_type=API_KEY, object_id=row.id,
                     object_name=row.name, account_id=principal.account_id, before={"revoked": False},
                     after={"revoked": True})
    return row
