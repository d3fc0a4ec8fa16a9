"""Users of an account: the list with roles, invitations by e-mail, and accepting an invitation."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from adstack.accounts import invitations, users
from adstack.accounts import service as accounts
from adstack.accounts.models import AccountRole, InvitationStatus
from adstack.accounts.passwords import MIN_PASSWORD_LENGTH
from adstack.console import forms
from adstack.console.forms import FormErrors
from adstack.console.web import PREFIX, ConsoleRoute, FormDep, UserDep, Visitor, VisitorDep, redirect, render
from adstack.core.deps import IdPath
from adstack.core.errors import DomainError
from adstack.core.mail import send_mail
from adstack.core.timeutil import utcnow

router = APIRouter(route_class=ConsoleRoute)
ROLES = [role.value for role in AccountRole]


def _team_page(visitor: Visitor, *, errors: FormErrors | None = None, status: int = 200,
               notice: str | None = None, values: dict[str, str] | None = None) -> Response:
    session, me = visitor.session, visitor.me
    manages = users.manages_users(me)
    pending = invitations.list_invitations(session, me, status=InvitationStatus.PENDING, limit=200) if manages else []
    visible = accounts.list_accounts(session, me, limit=200)
    return render(visitor, "team/team.html", {
        "users": users.list_users(session, me, limit=200),
        "invitations": pending,
        "manages": manages,
        "roles": ROLES,
        "accounts": {a.id: a.company_name for a in visible},
        "account_choices": visible if len(visible) > 1 else [],
        "errors": errors or FormErrors(),
        "sent_notice": notice,
        "values": values or {},
        "now": utcnow(),
    }, status=status)


@router.get("/users")
def team_page(visitor: UserDep) -> Response:
    return _team_page(visitor)


@router.post("/users/invite")
def invite(visitor: UserDep, form: FormDep) -> Response:
    values = {"email": forms.text(form, "email")[:320], "account_role": forms.text(form, "account_role"),
              "account_id": forms.text(form, "account_id")}
    errors = FormErrors()
    if values["account_role"] not in ROLES:
        errors.add("account_role", "one_of", "choose a role", limit=ROLES)
    account_id = int(values["account_id"]) if values["account_id"].isdecimal() else None
    if "@" not in values["email"]:
        errors.add("email", "email", "enter an e-mail address")
    if errors:
        return _team_page(visitor, errors=errors, status=422, values=values)
    try:
        _, mail = invitations.invite(visitor.session, visitor.me, email=values["email"],
                                     account_role=AccountRole(values["account_role"]), account_id=account_id,
                                     base_url=visitor.settings.public_base_url)
        visitor.session.commit()
    except DomainError as exc:
        visitor.session.rollback()
        return _team_page(visitor, errors=FormErrors.from_domain(exc, default_field="email"), status=exc.status,
                          values=values)
    send_mail(visitor.settings, mail)
    return redirect(f"{PREFIX}/users?notice=invited")


@router.post("/users/{user_id}/role")
def change_role(user_id: IdPath, visitor: UserDep, form: FormDep) -> Response:
    role = forms.text(form, "account_role")
    if role not in ROLES:
        errors = FormErrors()
        errors.add("account_role", "one_of", "choose a role", limit=ROLES)
        return _team_page(visitor, errors=errors, status=422)
    users.set_account_role(visitor.session, visitor.me, user_id, AccountRole(role))
    visitor.session.commit()
    return redirect(f"{PREFIX}/users?notice=saved")


@router.post("/users/{user_id}/deactivate")
def deactivate(user_id: IdPath, visitor: UserDep) -> Response:
    users.set_user_active(visitor.session, visitor.me, user_id, active=False)
    visitor.session.commit()
    return redirect(f"{PREFIX}/users?notice=saved")


@router.post("/users/{user_id}/activate")
def activate(user_id: IdPath, visitor: UserDep) -> Response:
    users.set_user_active(visitor.session, visitor.me, user_id, active=True)
    visitor.session.commit()
    return redirect(f"{PREFIX}/users?notice=saved")


@router.post("/invitations/{invitation_id}/revoke")
def revoke_invitation(invitation_id: IdPath, visitor: UserDep) -> Response:
    invitations.revoke_invitation(visitor.session, visitor.me, invitation_id)
    visitor.session.commit()
    return redirect(f"{PREFIX}/users?notice=revoked")


# ---------- accepting, signed out ----------


def _accept_page(visitor: Visitor, token: str, *, errors: FormErrors | None = None, status: int = 200
                 ) -> Response:
    context: dict[str, Any] = {"token": token, "errors": errors or FormErrors(), "min_length": MIN_PASSWORD_LENGTH,
                               "accepted": False}
    return render(visitor, "team/accept.html", context, status=status)


@router.get("/invitations/accept")
def accept_page(visitor: VisitorDep, token: str = "") -> Response:
    return _accept_page(visitor, token[:200])


@router.post("/invitations/accept")
def accept(visitor: VisitorDep, form: FormDep) -> Response:
    token = forms.text(form, "token")[:200]
    password = str(form.get("password") or "")[:200] or None
    try:
        invitations.accept(visitor.session, token=token, password=password, name=forms.text(form, "name")[:100])
        visitor.session.commit()
    except DomainError as exc:
        visitor.session.rollback()
        return _accept_page(visitor, token, errors=FormErrors.from_domain(exc, default_field="password"),
                            status=exc.status)
    return render(visitor, "team/accept.html", {"accepted": True, "token": "", "errors": FormErrors(),
                                                "min_length": MIN_PASSWORD_LENGTH})
