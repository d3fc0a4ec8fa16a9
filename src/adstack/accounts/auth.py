"""Sign-in: principals, session tokens, API-key authentication, passwords and e-mailed single-use links."""

from __future__ import annotations

import functools
from datetime import timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from adstack.accounts.models import (
    CLIENT_TOKEN_KINDS,
    SESSION_KINDS,
    AccessToken,
    EmailToken,
    EmailTokenPurpose,
    Principal,
    TokenKind,
    User,
)
from adstack.accounts.passwords import check_new_password
from adstack.core.errors import NotFound, Unauthenticated, ValidationFailed
from adstack.core.mail import OutgoingMail
from adstack.core.security import hash_password, new_token, token_digest, verify_password
from adstack.core.timeutil import utcnow
from adstack.oplog import service as oplog
from adstack.oplog.models import Operation


def principal_for(user: User, client: str = "api", *, scopes: frozenset[str] | None = None) -> Principal:
    return Principal(user_id=user.id, email=user.email, role=user.role, account_id=user.account_id, client=client,
                     account_role=user.account_role, scopes=scopes, may_operate_on_behalf=user.operates_on_behalf)


def issue_session_token(session: Session, user: User, *, ttl: timedelta, kind: TokenKind = TokenKind.SESSION,
                        client_ip: str = "", user_agent: str = "") -> tuple[str, AccessToken]:
    token = new_token("asc" if kind == TokenKind.CONSOLE else "ast")
    row = AccessToken(user_id=user.id, kind=kind.value, digest=token_digest(token), prefix=token[:8],
                      expires_at=utcnow() + ttl, client_ip=client_ip[:45], user_agent=user_agent[:200])
    session.add(row)
    session.flush()
    return token, row


def login(session: Session, *, email: str, password: str, ttl: timedelta, kind: TokenKind = TokenKind.SESSION,
          client_ip: str = "", user_agent: str = "") -> tuple[str, AccessToken, User]:
    user = session.scalar(select(User).where(User.email == email.strip().lower()))
    # Verify against a dummy hash when the user is unknown, so timing does not reveal which emails exist.
    if user is None:
        verify_password(_dummy_hash(), password)
        raise Unauthenticated("email or password is wrong", code="invalid_credentials")
    if not verify_password(user.password_hash, password) or not user.is_active:
        raise Unauthenticated("email or password is wrong", code="invalid_credentials")
    token, row = issue_session_token(session, user, ttl=ttl, kind=kind, client_ip=client_ip, user_agent=user_agent)
    return token, row, user


@functools.cache
def _dummy_hash() -> str:
    return hash_password("not-a-real-password")


def authenticate(session: Session, token: str, *, client: str = "api") -> Principal:
    row = session.scalar(select(AccessToken).where(AccessToken.digest == token_digest(token)))
    now = utcnow()
    if row is None or row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        raise Unauthenticated("the access token is missing, expired or revoked", code="invalid_token")
    # A console cookie is not a bearer token and a bearer token is not a console cookie: each answers alike.
    if row.kind not in CLIENT_TOKEN_KINDS.get(client, frozenset()):
        raise Unauthenticated("the access token is missing, expired or revoked", code="invalid_token")
    user = session.get(User, row.user_id)
    if user is None or not user.is_active:
        raise Unauthenticated("the user is disabled", code="invalid_token")
    if row.last_used_at is None or now - row.last_used_at > timedelta(minutes=5):
        row.last_used_at = now  # coarse, so every request does not write
    scopes = frozenset(row.scope_list) if row.kind == TokenKind.API_KEY else None
    return principal_for(user, client, scopes=scopes)


def revoke_token(session: Session, token: str) -> None:
    row = session.scalar(select(AccessToken).where(AccessToken.digest == token_digest(token)))
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()


def token_row(session: Session, token: str) -> AccessToken | None:
    return session.scalar(select(AccessToken).where(AccessToken.digest == token_digest(token)))


def _active_sessions(session: Session, user_id: int) -> list[AccessToken]:
    stmt = select(AccessToken).where(
        AccessToken.user_id == user_id, AccessToken.kind.in_([k.value for k in SESSION_KINDS]),
        AccessToken.revoked_at.is_(None), or_(AccessToken.expires_at.is_(None), AccessToken.expires_at > utcnow()))
    return list(session.scalars(stmt.order_by(AccessToken.id)))


def list_sessions(session: Session, principal: Principal) -> list[AccessToken]:
    """The caller's signed-in sessions (API and console), newest last; API keys are listed apart."""
    return _active_sessions(session, principal.user_id)


def revoke_session(session: Session, principal: Principal, session_id: int) -> AccessToken:
    row = session.get(AccessToken, session_id)
    if row is None or row.user_id != principal.user_id or row.kind not in SESSION_KINDS:
        raise NotFound("session not found")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


def revoke_sessions(session: Session, user_id: int, *, keep_id: int | None = None,
                    include_api_keys: bool = False) -> int:
    kinds = [k.value for k in SESSION_KINDS] + ([TokenKind.API_KEY.value] if include_api_keys else [])
    rows = session.scalars(select(AccessToken).where(
        AccessToken.user_id == user_id, AccessToken.kind.in_(kinds), AccessToken.revoked_at.is_(None)))
    now, count = utcnow(), 0
    for row in rows:
        if row.id != keep_id:
            row.revoked_at = now
            count += 1
    return count


# ---------- passwords and e-mail tokens ----------


def _issue_email_token(session: Session, user: User, purpose: EmailTokenPurpose, ttl: timedelta) -> str:
    # Only the newest link of a purpose works: an older one still in a mailbox is spent.
    for old in session.scalars(select(EmailToken).where(EmailToken.user_id == user.id, EmailToken.purpose == purpose,
                                                        EmailToken.used_at.is_(None))):
        old.used_at = utcnow()
    token = new_token("aet")
    session.add(EmailToken(user_id=user.id, purpose=purpose.value, digest=token_digest(token),
                           expires_at=utcnow() + ttl))
    session.flush()
    return token


def _use_email_token(session: Session, token: str, purpose: EmailTokenPurpose) -> User:
    row = session.scalar(select(EmailToken).where(EmailToken.digest == token_digest(token)))
    if (row is None or row.purpose != purpose or row.used_at is not None or row.expires_at <= utcnow()):
        raise ValidationFailed.single("token", "valid_link", "the link is invalid, used or expired")
    user = session.get(User, row.user_id)
    if user is None or not user.is_active:
        raise ValidationFailed.single("token", "valid_link", "the link is invalid, used or expired")
    row.used_at = utcnow()
    return user


def change_password(session: Session, principal: Principal, *, current_password: str, new_password: str,
                    keep_token_id: int | None) -> int:
    """Needs the current password; signs out every other session. Returns how many were signed out."""
    user = session.get(User, principal.user_id)
    if user is None or not verify_password(user.password_hash, current_password):
        raise ValidationFailed.single("current_password", "matches_current", "the current password is wrong")
    check_new_password(new_password, field="new_password")
    if verify_password(user.password_hash, new_password):
        raise ValidationFailed.single("new_password", "differs_from_current",
                                      "the new password must differ from the current one")
    user.password_hash = hash_password(new_password)
    oplog.record(session, actor=principal, operation=Operation.UPDATE, object_type="user", object_id=user.id,
                 object_name=user.email, account_id=user.account_id, after={"password": "changed"})
    return revoke_sessions(session, user.id, keep_id=keep_token_id)


def request_password_reset(session: Session, *, email: str, base_url: str, ttl: timedelta) -> OutgoingMail | None:
    """A reset link for an active user; nothing for an unknown address (the caller answers the same)."""
    user = session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None or not user.is_active:
        return None
    token = _issue_email_token(session, user, EmailTokenPurpose.RESET_PASSWORD, ttl)
    hours = int(ttl.total_seconds() // 3600)
    return OutgoingMail(to=user.email, subject="Reset your adstack password", body=(
        f"Someone asked to reset the password of your adstack user {user.email}.\n\n"
        f"To choose a new password, open this link within {hours} hours:\n"
        f"{base_url}/console/reset-password?token={token}\n\n"
        f"Or send the token to POST /api/v1/auth/password-reset/confirm: {token}\n\n"
        "If it was not you, ignore this message; your password stays as it is.\n"))


def reset_password(session: Session, *, token: str, new_password: str) -> User:
    """Single use: the token is spent, the password set, and every session signed out."""
    check_new_password(new_password, field="new_password")
    user = _use_email_token(session, token, EmailTokenPurpose.RESET_PASSWORD)
    user.password_hash = hash_password(new_password)
    # Following a link from the mailbox proves the address too.
    user.email_verified_at = user.email_verified_at or utcnow()
    revoke_sessions(session, user.id)
    oplog.record(session, actor=principal_for(user), operation=Operation.UPDATE, object_type="user",
                 object_id=user.id, object_name=user.email, account_id=user.account_id,
                 after={"password": "reset"})
    return user


def verify_email(session: Session, *, token: str) -> User:
    user = _use_email_token(session, token, EmailTokenPurpose.VERIFY_EMAIL)
    user.email_verified_at = user.email_verified_at or utcnow()
    return user


def verification_mail(session: Session, user: User, *, base_url: str, ttl: timedelta) -> OutgoingMail:
    token = _issue_email_token(session, user, EmailTokenPurpose.VERIFY_EMAIL, ttl)
    return OutgoingMail(to=user.email, subject="Verify your adstack e-mail address", body=(
        f"Welcome to adstack. Please confirm that {user.email} is your address by opening this link:\n"
        f"{base_url}/console/verify-email?token={token}\n\n"
        f"Or send the token to POST /api/v1/auth/verify-email: {token}\n\n"
        "Your account can be submitted for review once the address is verified.\n"))


def resend_verification(session: Session, principal: Principal, *, base_url: str, ttl: timedelta
                        ) -> OutgoingMail | None:
    user = session.get(User, principal.user_id)
    if user is None or user.email_verified_at is not None:
        return None
    return verification_mail(session, user, base_url=base_url, ttl=ttl)
