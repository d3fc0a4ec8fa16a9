"""Invitations: an account's owner (or an account manager) invites a colleague by e-mail with a role.

The mailed token is single-use and expires. Accepting creates the user, or links an existing user that
belongs to no account (e.g. one removed from a former employer's account); a user of another account is
refused, since a user acts for one account. An agency's owners may invite users into its sub-accounts.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from adstack.accounts.auth import principal_for
from adstack.accounts.models import (
    PLATFORM_ROLES,
    Account,
    AccountRole,
    AccountType,
    Invitation,
    InvitationStatus,
    Principal,
    Role,
    User,
)
from adstack.accounts.passwords import check_new_password
from adstack.accounts.tenancy import get_account, visible_account_ids
from adstack.accounts.users import create_user, manages_users
from adstack.core.errors import Conflict, FieldError, Forbidden, NotFound, ValidationFailed
from adstack.core.mail import OutgoingMail
from adstack.core.security import new_token, token_digest
from adstack.core.timeutil import utcnow
from adstack.oplog import service as oplog
from adstack.oplog.models import Operation

INVITATION = "invitation"
INVITATION_TTL = timedelta(days=7)


def _require_manager(principal: Principal) -> None:
    if not manages_users(principal):
        raise Forbidden("inviting users needs an account owner or a platform account manager",
                        fields=[FieldError(field="account_role", rule="owner", limit=AccountRole.OWNER.value,
                                           actual=principal.role if principal.is_platform
                                           else principal.account_role)])


def invite(session: Session, principal: Principal, *, email: str, account_role: AccountRole,
           account_id: int | None, base_url: str, ttl: timedelta = INVITATION_TTL
           ) -> tuple[Invitation, OutgoingMail]:
    """A new invitation; an earlier pending one for the same address and account stops working."""
    _require_manager(principal)
    target_id = account_id if account_id is not None else principal.account_id
    if target_id is None:
        raise ValidationFailed.single("account_id", "required", "platform staff must name the account")
    account = get_account(session, principal, target_id)
    email = email.strip().lower()
    member = session.scalar(select(User).where(User.email == email))
    if member is not None and member.account_id == account.id:
        raise Conflict(f"{email} is already a user of this account", code="already_member",
                       fields=[FieldError(field="email", rule="not_a_member", actual=email)])
    now = utcnow()
    for old in session.scalars(select(Invitation).where(
            Invitation.account_id == account.id, Invitation.email == email, Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None))):
        old.revoked_at = now
    token = new_token("ain")
    invitation = Invitation(account_id=account.id, email=email, account_role=account_role.value,
                            digest=token_digest(token), invited_by_user_id=principal.user_id, created_at=now,
                            expires_at=now + ttl)
    session.add(invitation)
    session.flush()
    oplog.record(session, actor=principal, operation=Operation.CREATE, object_type=INVITATION,
                 object_id=invitation.id, object_name=email, account_id=account.id,
                 after={"email": email, "account_role": invitation.account_role,
                        "expires_at": invitation.expires_at})
    days = int(ttl.total_seconds() // 86400)
    mail = OutgoingMail(to=email, subject=f"You are invited to {account.company_name} on adstack", body=(
        f"{principal.email} invites you to the adstack account of {account.company_name} as {account_role.value}.\n\n"
        f"To accept, open this link within {days} days:\n"
        f"{base_url}/console/invitations/accept?token={token}\n\n"
        f"Or send the token to POST /api/v1/invitations/accept: {token}\n\n"
        "If you did not expect this, ignore the message; nothing happens unless you accept.\n"))
    return invitation, mail


def list_invitations(session: Session, principal: Principal, *, account_id: int | None = None,
                     status: InvitationStatus | None = None, limit: int = 50, offset: int = 0
                     ) -> list[Invitation]:
    _require_manager(principal)
    stmt = select(Invitation)
    visible = visible_account_ids(session, principal)
    if visible is not None:
        stmt = stmt.where(Invitation.account_id.in_(visible))
    if account_id is not None:
        stmt = stmt.where(Invitation.account_id == account_id)
    now = utcnow()
    if status == InvitationStatus.PENDING:
        stmt = stmt.where(Invitation.accepted_at.is_(None), Invitation.revoked_at.is_(None),
                          Invitation.expires_at > now)
    rows = list(session.scalars(stmt.order_by(Invitation.id).limit(limit).offset(offset)))
    if status is not None and status != InvitationStatus.PENDING:
        rows = [r for r in rows if r.status_at(now) == status]
    return rows


def revoke_invitation(session: Session, principal: Principal, invitation_id: int) -> Invitation:
    _require_manager(principal)
    invitation = session.get(Invitation, invitation_id)
    visible = visible_account_ids(session, principal)
    if invitation is None or (visible is not None and invitation.account_id not in visible):
        raise NotFound(f"invitation {invitation_id} not found")
    status = invitation.status_at(utcnow())
    if status == InvitationStatus.ACCEPTED:
        raise Conflict("an accepted invitation cannot be revoked; deactivate the user instead",
                       code="invitation_accepted",
                       fields=[FieldError(field="invitation_id", rule="pending", actual=status.value)])
    if invitation.revoked_at is None:
        invitation.revoked_at = utcnow()
        oplog.record(session, actor=principal, operation=Operation.DELETE, object_type=INVITATION,
                     object_id=invitation.id, object_name=invitation.email, account_id=invitation.account_id,
                     before={"status": status.value}, after={"status": InvitationStatus.REVOKED.value})
    return invitation


def _refused() -> ValidationFailed:
    return ValidationFailed.single("token", "valid_invitation", "the invitation is invalid, used, revoked or expired")


def accept(session: Session, *, token: str, password: str | None, name: str = "") -> User:
    """Single use. The link proves the mailbox, so the new user's address counts as verified."""
    invitation = session.scalar(select(Invitation).where(Invitation.digest == token_digest(token)))
    now = utcnow()
    if invitation is None or invitation.status_at(now) != InvitationStatus.PENDING:
        raise _refused()
    account = session.get(Account, invitation.account_id)
    if account is None:
        raise _refused()
    role = Role.AGENCY if account.type == AccountType.AGENCY else Role.ADVERTISER
    account_role = AccountRole(invitation.account_role)
    user = session.scalar(select(User).where(User.email == invitation.email))
    if user is None:
        if password is None:
            raise ValidationFailed.single("password", "required", "choose a password: the address has no user yet")
        check_new_password(password)
        user = create_user(session, email=invitation.email, password=password, role=role, account_id=account.id,
                           name=name or invitation.email.split("@")[0][:100], account_role=account_role)
    elif user.role in PLATFORM_ROLES or user.account_id is not None or not user.is_active:
        raise Conflict("this address already has a user of another account or of the platform; a user acts for "
                       "one account", code="user_of_another_account",
                       fields=[FieldError(field="email", rule="one_account_per_user", actual=invitation.email)])
    else:
        user.account_id, user.role, user.account_role = account.id, role.value, account_role.value
    user.email_verified_at = user.email_verified_at or now
    invitation.accepted_at, invitation.accepted_user_id = now, user.id
    oplog.record(session, actor=principal_for(user), operation=Operation.UPDATE, object_type=INVITATION,
                 object_id=invitation.id, object_name=invitation.email, account_id=account.id,
                 before={"status": InvitationStatus.PENDING.value},
                 after={"status": InvitationStatus.ACCEPTED.value, "user_id": user.id})
    return user
