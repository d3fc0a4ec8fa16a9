"""Users: creating them, and managing an account's users (roles, activation) and platform staff's grants.

Who manages whom: account managers and admins any user; an account's owners the users of their account, and an
agency's owners also those of its sub-accounts. Other users answer 404, like missing ones.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from adstack.accounts.auth import revoke_sessions
from adstack.accounts.models import PLATFORM_ROLES, AccountRole, Principal, Role, User
from adstack.accounts.passwords import check_new_password
from adstack.accounts.tenancy import visible_account_ids
from adstack.core.errors import Conflict, FieldError, Forbidden, NotFound, ValidationFailed
from adstack.core.security import hash_password
from adstack.core.timeutil import utcnow
from adstack.oplog import service as oplog
from adstack.oplog.models import Operation

USER = "user"


def create_user(session: Session, *, email: str, password: str, role: Role, account_id: int | None,
                name: str = "", account_role: AccountRole = AccountRole.OWNER) -> User:
    email = email.strip().lower()
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict("a user with this email already exists",
                       fields=[FieldError(field="email", rule="unique", actual=email)], code="email_taken")
    user = User(email=email, password_hash=hash_password(password), role=role.value, account_id=account_id, name=name,
                account_role=account_role.value)
    session.add(user)
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent registration with the same email
        raise Conflict("a user with this email already exists", code="email_taken") from exc
    return user


def create_admin(session: Session, *, email: str, password: str, role: Role = Role.ADMIN) -> User:
    if role not in PLATFORM_ROLES:
        raise ValidationFailed.single("role", "platform_role", "admins must have a platform role",
                                      limit=sorted(PLATFORM_ROLES), actual=role)
    check_new_password(password)
    user = create_user(session, email=email, password=password, role=role, account_id=None)
    user.email_verified_at = utcnow()  # an operator made this user
    return user


def manages_users(principal: Principal) -> bool:
    return principal.can_manage_accounts or (not principal.is_platform and principal.account_role == AccountRole.OWNER)


def _managed_user(session: Session, principal: Principal, user_id: int) -> User:
    """A user the principal may manage (see the module's docstring); never the principal itself."""
    user = session.get(User, user_id)
    if user is None or user.id == principal.user_id:
        raise NotFound(f"user {user_id} not found")
    if principal.can_manage_accounts:
        if user.role == Role.ADMIN and principal.role != Role.ADMIN:
            raise Forbidden("only an admin manages another admin")
        return user
    if manages_users(principal) and user.account_id is not None:
        visible = visible_account_ids(session, principal)
        if visible is not None and user.account_id in visible:
            return user
    raise NotFound(f"user {user_id} not found")


def _require_manager(principal: Principal) -> None:
    if not manages_users(principal):
        raise Forbidden("managing users needs an account owner or a platform account manager",
                        fields=[FieldError(field="account_role", rule="owner", limit=AccountRole.OWNER.value,
                                           actual=principal.account_role if not principal.is_platform
                                           else principal.role)])


def list_users(session: Session, principal: Principal, *, account_id: int | None = None,
               email: str | None = None, limit: int = 50, offset: int = 0) -> list[User]:
    stmt = select(User)
    visible = visible_account_ids(session, principal)
    if visible is not None:
        stmt = stmt.where(User.account_id.in_(visible))
    if account_id is not None:
        stmt = stmt.where(User.account_id == account_id)
    if email:
        stmt = stmt.where(User.email == email.strip().lower())
    return list(session.scalars(stmt.order_by(User.id).limit(limit).offset(offset)))


def set_user_active(session: Session, principal: Principal, user_id: int, *, active: bool) -> User:
    """Deactivating signs the user out everywhere and stops their API keys (authenticate refuses them too)."""
    _require_manager(principal)
    user = _managed_user(session, principal, user_id)
    before = user.is_active
    user.is_active = active
    if not active:
        revoke_sessions(session, user.id, include_api_keys=True)
    oplog.record(session, actor=principal, operation=Operation.ENABLE if active else Operation.PAUSE,
                 object_type=USER, object_id=user.id, object_name=user.email, account_id=user.account_id,
                 before={"is_active": before}, after={"is_active": active})
    return user


def set_account_role(session: Session, principal: Principal, user_id: int, role: AccountRole) -> User:
    """Change what a user may do in its account. An owner cannot change its own role (nobody manages
    themselves), so an account managed by its owners always keeps one. The user's API keys keep their scopes
    but never do more than the new role allows: the gate checks both."""
    _require_manager(principal)
    user = _managed_user(session, principal, user_id)
    if user.account_id is None:
        raise ValidationFailed.single("user_id", "account_user", "platform staff have no account role",
                                      actual=user_id)
    if user.account_role == role:
        return user
    before = user.account_role
    user.account_role = role.value
    oplog.record(session, actor=principal, operation=Operation.UPDATE, object_type=USER, object_id=user.id,
                 object_name=user.email, account_id=user.account_id,
                 before={"account_role": before}, after={"account_role": user.account_role})
    return user


def grant_on_behalf(session: Session, principal: Principal, user_id: int, *, granted: bool) -> User:
    """An admin lets a reviewer or account manager edit advertisers' campaigns; every such write is logged as
    on behalf of the account (see accounts/permissions.py)."""
    if principal.role != Role.ADMIN:
        raise Forbidden("only an admin grants operating on behalf of advertisers",
                        fields=[FieldError(field="role", rule="platform_role", limit=Role.ADMIN.value,
                                           actual=principal.role)])
    user = _managed_user(session, principal, user_id)
    if user.role not in (Role.REVIEWER, Role.ACCOUNT_MANAGER):
        raise ValidationFailed.single("user_id", "platform_staff", "only reviewers and account managers take this "
                                      "grant (admins always may)", limit=[Role.REVIEWER, Role.ACCOUNT_MANAGER],
                                      actual=user.role)
    before = user.operates_on_behalf
    user.operates_on_behalf = granted
    oplog.record(session, actor=principal, operation=Operation.UPDATE, object_type=USER, object_id=user.id,
                 object_name=user.email, before={"operates_on_behalf": before}, after={"operates_on_behalf": granted})
    return user


def mark_email_verified(session: Session, principal: Principal, user_id: int) -> User:
    """An account manager confirms an address out of band (e.g. a customer whose mail filter ate the link)."""
    if not principal.can_manage_accounts:
        raise Forbidden("only account managers verify addresses")
    user = _managed_user(session, principal, user_id)
    if user.email_verified_at is None:
        user.email_verified_at = utcnow()
        oplog.record(session, actor=principal, operation=Operation.UPDATE, object_type=USER, object_id=user.id,
                     object_name=user.email, account_id=user.account_id, before={"email_verified": False},
                     after={"email_verified": True})
    return user
