"""An account's users: invitations, account roles, and platform staff's "operate on behalf" grant."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, status

from adstack.accounts import invitations, users
from adstack.accounts.models import (
    AccountRoleIn,
    InvitationAcceptIn,
    InvitationIn,
    InvitationRead,
    InvitationStatus,
    ManagedUserRead,
    OnBehalfGrantIn,
    UserRead,
)
from adstack.core.deps import CurrentPrincipal, IdPath, Limit, Offset, OptionalId, SessionDep, SettingsDep
from adstack.core.mail import send_mail
from adstack.core.timeutil import utcnow

router = APIRouter(prefix="/api/v1")


def _read(invitation: invitations.Invitation) -> InvitationRead:
    return InvitationRead.model_validate({
        **{c: getattr(invitation, c) for c in ("id", "account_id", "email", "account_role", "created_at",
                                               "expires_at", "accepted_at", "revoked_at")},
        "status": invitation.status_at(utcnow()),
    })


@router.post("/invitations", response_model=InvitationRead, status_code=status.HTTP_201_CREATED,
             tags=["users"], summary="Invite a colleague by e-mail as owner, operator or viewer (account owners; an "
                                     "agency's owners also into its sub-accounts; account managers anywhere)")
def invite(body: InvitationIn, principal: CurrentPrincipal, session: SessionDep, settings: SettingsDep,
           tasks: BackgroundTasks) -> InvitationRead:
    invitation, mail = invitations.invite(
        session, principal, email=str(body.email), account_role=body.account_role, account_id=body.account_id,
        base_url=settings.public_base_url)
    session.commit()
    tasks.add_task(send_mail, settings, mail)  # after the answer: the SMTP server's pace is not the client's
    return _read(invitation)


@router.get("/invitations", response_model=list[InvitationRead], tags=["users"],
            summary="Invitations of the accounts whose users you manage")
def list_invitations(principal: CurrentPrincipal, session: SessionDep, account_id: OptionalId = None,
                     status: InvitationStatus | None = None, limit: Limit = 50,
                     offset: Offset = 0) -> list[InvitationRead]:
    rows = invitations.list_invitations(session, principal, account_id=account_id, status=status, limit=limit,
                                        offset=offset)
    return [_read(r) for r in rows]


@router.delete("/invitations/{invitation_id}", response_model=InvitationRead, tags=["users"],
               summary="Revoke a pending invitation: its link stops working")
def revoke_invitation(invitation_id: IdPath, principal: CurrentPrincipal, session: SessionDep) -> InvitationRead:
    invitation = invitations.revoke_invitation(session, principal, invitation_id)
    session.commit()
    return _read(invitation)


@router.post("/invitations/accept", response_model=UserRead, tags=["users"],
             summary="Accept an invitation with the mailed token: creates the user (send a password), or links a "
                     "user of no account; then sign in")
def accept_invitation(body: InvitationAcceptIn, session: SessionDep) -> UserRead:
    user = invitations.accept(session, token=body.token, password=body.password, name=body.name)
    session.commit()
    return UserRead.model_validate(user)


@router.put("/users/{user_id}/account-role", response_model=ManagedUserRead, tags=["users"],
            summary="Make a user owner, operator or viewer of its account (owners and account managers)")
def set_account_role(user_id: IdPath, body: AccountRoleIn, principal: CurrentPrincipal,
                     session: SessionDep) -> ManagedUserRead:
    user = users.set_account_role(session, principal, user_id, body.account_role)
    session.commit()
    return ManagedUserRead.model_validate(user)


@router.put("/users/{user_id}/on-behalf", response_model=ManagedUserRead, tags=["users"],
            summary="Let a reviewer or account manager edit advertisers' campaigns, each write logged as on "
                    "behalf of the account (admins)")
def grant_on_behalf(user_id: IdPath, body: OnBehalfGrantIn, principal: CurrentPrincipal,
                    session: SessionDep) -> ManagedUserRead:
    user = users.grant_on_behalf(session, principal, user_id, granted=body.granted)
    session.commit()
    return ManagedUserRead.model_validate(user)
