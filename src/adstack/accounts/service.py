"""Accounts: registration, sign-in, tenancy, sub-accounts, documents, settlement rules and account review."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from adstack.accounts.models import (
    AGREEMENT_VERSION,
    CLIENT_TOKEN_KINDS,
    PLATFORM_ROLES,
    QUALIFICATION_KINDS,
    SESSION_KINDS,
    AccessToken,
    Account,
    AccountDocument,
    AccountType,
    AccountUpdate,
    DocumentKind,
    EmailToken,
    EmailTokenPurpose,
    PaymentMode,
    Principal,
    RegistrationIn,
    Role,
    SettlementRule,
    SubAccountIn,
    TokenKind,
    User,
)
from adstack.accounts.passwords import check_new_password
from adstack.core.errors import (
    Conflict,
    FieldError,
    Forbidden,
    InvalidState,
    NotFound,
    PayloadTooLarge,
    Unauthenticated,
    ValidationFailed,
)
from adstack.core.mail import OutgoingMail
from adstack.core.private_files import create_private
from adstack.core.security import hash_password, new_token, token_digest, verify_password
from adstack.core.timeutil import utcnow
from adstack.oplog import service as oplog
from adstack.oplog.models import Operation
from adstack.review import service as review
from adstack.review.models import ReviewAction, ReviewStatus

ACCOUNT = "account"

# Mi Ads' settlement table: (country, entity, currency, contract version); operators may edit the rows afterwards.
# Source: Mi Ads Usage Guide, 1.2.1 Register an Advertiser Account (the settlement table). The guide's "RMB" is
# the ISO 4217 code CNY.
DEFAULT_SETTLEMENT_RULES: tuple[tuple[str, str, str, str], ...] = (
    ("ID", "Xiaomi Singapore", "USD", "Xiaomi Singapore ID version"),
    ("RU", "Hong Kong iValley", "USD", "RU version"),
    ("IN", "Xiaomi India", "INR", "IN universal version"),
    ("CN", "Xiaomi Singapore", "CNY", "Xiaomi Singapore universal version"),
    ("*", "Xiaomi Singapore", "USD", "Xiaomi Singapore universal version"),
    ("*", "Xiaomi Singapore", "CNY", "Xiaomi Singapore universal version"),
    ("*", "Xiaomi India", "USD", "IN universal version"),
    ("*", "Xiaomi India", "INR", "IN universal version"),
)
ANY_OTHER_COUNTRY = "*"
# Source: Mi Ads Usage Guide, 1.2.1 (settlement table): "Other countries/regions (Except Singapore)". The guide
# states no entity for Singapore, so its accounts settle only by the rules operators add for "SG"; until then
# registration from Singapore is refused rather than given another country's entity.
OPERATOR_SET_COUNTRIES = frozenset({"SG"})

# Changing any of these on an approved account sends it back to review.
REVIEWED_ACCOUNT_FIELDS = frozenset(
    {"company_name", "contact_name", "contact_email", "contact_phone", "country", "settlement_entity", "currency"}
)

# Qualification documents: content is sniffed, not trusted from the client's content type.
DOCUMENT_SIGNATURES: dict[str, tuple[bytes, ...]] = {
    "application/pdf": (b"%PDF-",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
}


# ---------- settlement rules ----------


def seed_settlement_rules(session: Session) -> int:
    """Insert the default table once; later edits by operators are left alone, except that a default row without
    a contract version (from before versions were kept) gets the guide's."""
    if session.scalar(select(SettlementRule.id).limit(1)) is not None:
        versions = {(c, e, cur): v for c, e, cur, v in DEFAULT_SETTLEMENT_RULES}
        for rule in session.scalars(select(SettlementRule).where(SettlementRule.contract_version == "")):
            rule.contract_version = versions.get((rule.country, rule.entity, rule.currency), "")
        session.flush()
        return 0
    for country, entity, currency, version in DEFAULT_SETTLEMENT_RULES:
        session.add(SettlementRule(country=country, entity=entity, currency=currency, contract_version=version))
    session.flush()
    return len(DEFAULT_SETTLEMENT_RULES)


def settlement_options(session: Session, country: str) -> list[SettlementRule]:
    """The rules for the country, else the rules for any other country (never for Singapore)."""
    rules = list(session.scalars(select(SettlementRule).where(SettlementRule.country == country)
                                 .order_by(SettlementRule.id)))
    if not rules and country not in OPERATOR_SET_COUNTRIES:
        rules = list(session.scalars(select(SettlementRule).where(SettlementRule.country == ANY_OTHER_COUNTRY)
                                     .order_by(SettlementRule.id)))
    return rules


def check_settlement(session: Session, *, country: str, entity: str, currency: str) -> SettlementRule:
    """The settlement rule the choice matches; refused naming what the country allows."""
    options = settlement_options(session, country)
    for rule in options:
        if rule.entity == entity and rule.currency == currency:
            return rule
    if not options:
        raise ValidationFailed.single(
            "settlement_entity", "settlement_rule_set",
            f"no settlement entity is set up for {country} yet; an account manager adds its rule (contact your "
            "sales team)", limit=[], actual=entity)
    allowed = sorted(f"{r.entity}/{r.currency}" for r in options)
    entities = {r.entity for r in options}
    if entity not in entities:
        raise ValidationFailed.single(
            "settlement_entity", "allowed_for_country",
            f"settlement entity {entity!r} is not available for {country}", limit=sorted(entities), actual=entity,
        )
    raise ValidationFailed.single(
        "currency", "allowed_for_settlement_entity",
        f"{entity} settles {country} accounts in {', '.join(allowed)}", limit=allowed, actual=currency,
    )


# ---------- users, tokens, principals ----------


def create_user(session: Session, *, email: str, password: str, role: Role, account_id: int | None,
                name: str = "") -> User:
    email = email.strip().lower()
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict("a user with this email already exists",
                       fields=[FieldError(field="email", rule="unique", actual=email)], code="email_taken")
    user = User(email=email, password_hash=hash_password(password), role=role.value, account_id=account_id, name=name)
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


def principal_for(user: User, client: str = "api") -> Principal:
    return Principal(user_id=user.id, email=user.email, role=user.role, account_id=user.account_id, client=client)


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
    return principal_for(user, client)


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


def _verification_mail(session: Session, user: User, *, base_url: str, ttl: timedelta) -> OutgoingMail:
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
    return _verification_mail(session, user, base_url=base_url, ttl=ttl)


# ---------- user management ----------


def _managed_user(session: Session, principal: Principal, user_id: int) -> User:
    """A user the principal may manage: any for account managers and admins, the users of an agency's
    sub-accounts for that agency. Everyone else's answer 404, like missing ones."""
    user = session.get(User, user_id)
    if user is None or user.id == principal.user_id:
        raise NotFound(f"user {user_id} not found")
    if principal.can_manage_accounts:
        if user.role == Role.ADMIN and principal.role != Role.ADMIN:
            raise Forbidden("only an admin manages another admin")
        return user
    if principal.role == Role.AGENCY and user.account_id is not None:
        account = session.get(Account, user.account_id)
        if account is not None and account.parent_agency_id == principal.account_id:
            return user
    raise NotFound(f"user {user_id} not found")


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
    if not (principal.can_manage_accounts or principal.role == Role.AGENCY):
        raise Forbidden("only account managers and agencies manage users")
    user = _managed_user(session, principal, user_id)
    before = user.is_active
    user.is_active = active
    if not active:
        revoke_sessions(session, user.id, include_api_keys=True)
    oplog.record(session, actor=principal, operation=Operation.ENABLE if active else Operation.PAUSE,
                 object_type="user", object_id=user.id, object_name=user.email, account_id=user.account_id,
                 before={"is_active": before}, after={"is_active": active})
    return user


def mark_email_verified(session: Session, principal: Principal, user_id: int) -> User:
    """An account manager confirms an address out of band (e.g. a customer whose mail filter ate the link)."""
    if not principal.can_manage_accounts:
        raise Forbidden("only account managers verify addresses")
    user = _managed_user(session, principal, user_id)
    user.email_verified_at = user.email_verified_at or utcnow()
    return user


def create_api_key(session: Session, principal: Principal, *, name: str) -> tuple[str, AccessToken]:
    key = new_token("ask")
    row = AccessToken(user_id=principal.user_id, kind="api_key", name=name, digest=token_digest(key), prefix=key[:8])
    session.add(row)
    session.flush()
    return key, row


def list_api_keys(session: Session, principal: Principal) -> list[AccessToken]:
    stmt = select(AccessToken).where(AccessToken.user_id == principal.user_id, AccessToken.kind == "api_key")
    return list(session.scalars(stmt.order_by(AccessToken.id)))


def revoke_api_key(session: Session, principal: Principal, key_id: int) -> AccessToken:
    row = session.get(AccessToken, key_id)
    if row is None or row.user_id != principal.user_id or row.kind != "api_key":
        raise NotFound("api key not found")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


# ---------- tenancy ----------


def visible_account_ids(session: Session, principal: Principal) -> set[int] | None:
    """Accounts a principal may see: None for platform staff (all), own + sub-accounts for an agency."""
    if principal.is_platform:
        return None
    if principal.account_id is None:
        return set()
    ids = {principal.account_id}
    if principal.role == Role.AGENCY:
        ids.update(session.scalars(select(Account.id).where(Account.parent_agency_id == principal.account_id)))
    return ids


def can_see_account(session: Session, principal: Principal, account_id: int) -> bool:
    visible = visible_account_ids(session, principal)
    return visible is None or account_id in visible


def ensure_account_visible(session: Session, principal: Principal, account_id: int) -> None:
    """Unknown and foreign accounts answer the same 404, so ids of other tenants cannot be probed."""
    if not can_see_account(session, principal, account_id):
        raise NotFound(f"account {account_id} not found")


def resolve_account_id(session: Session, principal: Principal, account_id: int | None, *, field: str = "account_id"
                       ) -> int:
    """The account an object is created in: the caller's own unless an agency or admin names another."""
    if account_id is None:
        if principal.account_id is None:
            raise ValidationFailed.single(field, "required", "platform staff must name the account")
        return principal.account_id
    ensure_account_visible(session, principal, account_id)
    if session.get(Account, account_id) is None:
        raise NotFound(f"account {account_id} not found")
    return account_id


def get_account(session: Session, principal: Principal, account_id: int) -> Account:
    ensure_account_visible(session, principal, account_id)
    account = session.get(Account, account_id)
    if account is None:
        raise NotFound(f"account {account_id} not found")
    return account


def list_accounts(
    session: Session,
    principal: Principal,
    *,
    query: str | None = None,
    review_status: str | None = None,
    account_type: str | None = None,
    parent_agency_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[Account]:
    stmt = select(Account)
    visible = visible_account_ids(session, principal)
    if visible is not None:
        stmt = stmt.where(Account.id.in_(visible))
    if query:
        conditions: list[ColumnElement[bool]] = [Account.company_name.ilike(f"%{query}%")]
        if query.isdigit():
            conditions.append(Account.id == int(query))
        stmt = stmt.where(or_(*conditions))
    if review_status:
        stmt = stmt.where(Account.review_status == review_status)
    if account_type:
        stmt = stmt.where(Account.type == account_type)
    if parent_agency_id is not None:
        stmt = stmt.where(Account.parent_agency_id == parent_agency_id)
    return list(session.scalars(stmt.order_by(Account.id).limit(limit).offset(offset)))


def snapshot(account: Account) -> dict[str, Any]:
    return {
        "company_name": account.company_name,
        "contact_name": account.contact_name,
        "contact_email": account.contact_email,
        "contact_phone": account.contact_phone,
        "country": account.country,
        "settlement_entity": account.settlement_entity,
        "currency": account.currency,
        "contract_version": account.contract_version,
        "time_zone": account.time_zone,
        "low_balance_threshold_micros": account.low_balance_threshold_micros,
        "review_status": account.review_status,
        "type": account.type,
        "parent_agency_id": account.parent_agency_id,
    }


# ---------- registration and sub-accounts ----------


def _new_account(session: Session, data: RegistrationIn | SubAccountIn, *, parent_agency_id: int | None) -> Account:
    rule = check_settlement(session, country=data.country, entity=data.settlement_entity, currency=data.currency.value)
    account = Account(
        type=data.type.value,
        parent_agency_id=parent_agency_id,
        company_name=data.company_name,
        contact_name=data.contact_name,
        contact_email=str(data.contact_email),
        contact_phone=data.contact_phone,
        country=data.country,
        settlement_entity=data.settlement_entity,
        currency=data.currency.value,
        time_zone=data.time_zone,
        payment_mode=PaymentMode.PREPAY.value,
        agreement_version=AGREEMENT_VERSION,
        contract_version=rule.contract_version,
        agreement_accepted_at=utcnow(),
        review_status=ReviewStatus.TO_BE_SUBMITTED.value,
    )
    session.add(account)
    session.flush()
    review.track(session, object_type=ACCOUNT, object_id=account.id, account_id=account.id,
                 object_name=account.company_name, status=ReviewStatus.TO_BE_SUBMITTED)
    return account


def register(session: Session, data: RegistrationIn, *, ttl: timedelta, client: str = "api"
             ) -> tuple[User, Account, str]:
    """Self-serve sign-up: an advertiser or agency account and its first user, ready to submit for review."""
    account = _new_account(session, data, parent_agency_id=None)
    role = Role.AGENCY if data.type == AccountType.AGENCY else Role.ADVERTISER
    user = create_user(session, email=str(data.email), password=data.password, role=role, account_id=account.id,
                       name=data.contact_name)
    token, _ = issue_session_token(session, user, ttl=ttl)
    actor = principal_for(user, client)
    oplog.record(session, actor=actor, operation=Operation.CREATE, object_type=ACCOUNT, object_id=account.id,
                 object_name=account.company_name, account_id=account.id, after=snapshot(account))
    return user, account, token


@dataclass(frozen=True)
class SelfServeRegistration:
    """What a sign-up did. Only the mail may leave the server; the rest is for the console's document upload."""

    mail: OutgoingMail
    user: User | None = None
    account: Account | None = None


def register_self_serve(session: Session, data: RegistrationIn, *, base_url: str, token_ttl: timedelta,
                        client: str = "api") -> SelfServeRegistration:
    """Sign-up that answers alike for free and taken addresses: a new account gets a verification link, the
    owner of a taken address a note that someone tried. The caller sends the mail and says only "check your
    mail"."""
    check_settlement(session, country=data.country, entity=data.settlement_entity, currency=data.currency.value)
    email = str(data.email).strip().lower()
    existing = session.scalar(select(User).where(User.email == email))
    if existing is None:
        try:
            with session.begin_nested():
                user, account, _token = register(session, data, ttl=token_ttl, client=client)
                revoke_sessions(session, user.id)  # sign-in comes later, with the password
            mail = _verification_mail(session, user, base_url=base_url, ttl=token_ttl)
            return SelfServeRegistration(mail, user, account)
        except Conflict:
            pass  # registered a moment ago by a concurrent request: answer as for a taken address
    else:
        hash_password(data.password)  # the same work as a new user's hash, so timing tells nothing
    return SelfServeRegistration(OutgoingMail(
        to=email, subject="Someone tried to register with your e-mail address", body=(
            f"Someone tried to open a new adstack account with {email}, which already has one.\n\n"
            f"If it was you, sign in at {base_url}/console/sign-in, or choose a new password at "
            f"{base_url}/console/forgot-password.\n\nIf it was not you, nothing has changed; you can ignore this.\n")))


def create_sub_account(session: Session, principal: Principal, data: SubAccountIn) -> Account:
    if principal.role == Role.AGENCY:
        if data.type != AccountType.ADVERTISER:
            raise ValidationFailed.single("type", "agency_sub_account", "an agency's sub-accounts are advertisers",
                                          limit=["advertiser"], actual=data.type.value)
        parent = principal.account_id
    elif principal.can_manage_accounts:
        parent = data.parent_agency_id
        if parent is not None:
            agency = session.get(Account, parent)
            if agency is None or agency.type != AccountType.AGENCY:
                raise ValidationFailed.single("parent_agency_id", "agency_account", "parent must be an agency account",
                                              actual=parent)
    else:
        raise Forbidden("only agencies and account managers create accounts")
    account = _new_account(session, data, parent_agency_id=parent)
    oplog.record(session, actor=principal, operation=Operation.CREATE, object_type=ACCOUNT, object_id=account.id,
                 object_name=account.company_name, account_id=account.id, after=snapshot(account))
    return account


def update_account(session: Session, principal: Principal, account_id: int, data: AccountUpdate
                   ) -> tuple[Account, str | None]:
    """Apply only the fields sent. Returns the account and a notice when the edit sent it back to review."""
    account = get_account(session, principal, account_id)
    changes = data.model_dump(exclude_unset=True)
    if not changes:
        return account, None
    before = snapshot(account)
    country = changes.get("country", account.country)
    entity = changes.get("settlement_entity", account.settlement_entity)
    currency = changes.get("currency", account.currency)
    if {"country", "settlement_entity", "currency"} & changes.keys():
        changes["contract_version"] = check_settlement(session, country=country, entity=entity,
                                                       currency=str(currency)).contract_version
    if "currency" in changes and str(currency) != account.currency and _holds_money(session, account.id):
        raise ValidationFailed.single("currency", "fixed_once_funded",
                                      "the currency cannot change once the account has ledger entries",
                                      limit=account.currency, actual=str(currency))
    for field, value in changes.items():
        setattr(account, field, value.value if hasattr(value, "value") else value)
    after = snapshot(account)
    reviewed_changed = {f for f in REVIEWED_ACCOUNT_FIELDS if before[f] != after[f]}
    notice = None
    if reviewed_changed and account.review_status == ReviewStatus.APPROVED:
        account.review_status = review.apply(
            session, object_type=ACCOUNT, object_id=account.id, account_id=account.id,
            object_name=account.company_name, current=account.review_status,
            action=ReviewAction.EDIT_REVIEWED_FIELD, actor_user_id=principal.user_id,
        ).value
        after["review_status"] = account.review_status
        notice = (f"Changing {', '.join(sorted(reviewed_changed))} sent the account back to review; "
                  "its ads stop serving until it is approved again.")
    oplog.record(session, actor=principal, operation=Operation.UPDATE, object_type=ACCOUNT, object_id=account.id,
                 object_name=account.company_name, account_id=account.id, before=before, after=after)
    return account, notice


def _holds_money(session: Session, account_id: int) -> bool:
    from adstack.finance.models import LedgerEntry  # finance builds on accounts

    return session.scalar(select(LedgerEntry.id).where(LedgerEntry.account_id == account_id).limit(1)) is not None


def submit_account(session: Session, principal: Principal, account_id: int, *,
                   require_verified_email: bool = False) -> Account:
    account = get_account(session, principal, account_id)
    if require_verified_email and not principal.is_platform:
        user = session.get(User, principal.user_id)
        if user is None or user.email_verified_at is None:
            raise InvalidState("verify your e-mail address before submitting the account for review",
                               code="email_not_verified",
                               fields=[FieldError(field="email", rule="verified", actual=principal.email)])
    check_documents_for_review(session, principal, account)
    before = snapshot(account)
    account.review_status = review.apply(
        session, object_type=ACCOUNT, object_id=account.id, account_id=account.id, object_name=account.company_name,
        current=account.review_status, action=ReviewAction.SUBMIT, actor_user_id=principal.user_id,
    ).value
    oplog.record(session, actor=principal, operation=Operation.SUBMIT, object_type=ACCOUNT, object_id=account.id,
                 object_name=account.company_name, account_id=account.id, before=before, after=snapshot(account))
    return account


def review_account(session: Session, principal: Principal, account_id: int, *, approve: bool,
                   reasons: Iterable[str] = ()) -> Account:
    if not principal.can_review:
        raise Forbidden("only reviewers decide on accounts")
    account = get_account(session, principal, account_id)
    before = snapshot(account)
    reason_list = [r for r in reasons if r.strip()]
    account.review_status = review.apply(
        session, object_type=ACCOUNT, object_id=account.id, account_id=account.id, object_name=account.company_name,
        current=account.review_status, action=ReviewAction.APPROVE if approve else ReviewAction.REJECT,
        actor_user_id=principal.user_id, reasons=reason_list,
    ).value
    account.rejection_reasons = "" if approve else "; ".join(reason_list)[:2000]
    if approve:
        account.has_been_approved = True
    oplog.record(session, actor=principal, operation=Operation.APPROVE if approve else Operation.REJECT,
                 object_type=ACCOUNT, object_id=account.id, object_name=account.company_name,
                 account_id=account.id, before=before, after=snapshot(account))
    return account


def is_account_serving(account: Account) -> bool:
    return account.review_status == ReviewStatus.APPROVED


# ---------- qualification documents ----------


def check_documents_for_review(session: Session, principal: Principal, account: Account) -> None:
    """Source: Mi Ads Usage Guide, 1.2.1: "Upload enterprise qualifications and submit for review"; 1.2.2: a core
    agency also uploads its GetApps shop details screenshot, and one that cannot "can contact the relevant sales
    team and AM", so an account manager submitting for the agency may go without it."""
    kinds = set(session.scalars(select(AccountDocument.kind).where(AccountDocument.account_id == account.id)))
    if not kinds & {k.value for k in QUALIFICATION_KINDS}:
        raise InvalidState(
            "upload a qualification document (business licence, industry qualification, authorisation letter or "
            "other) before submitting the account for review", code="qualification_document_required",
            fields=[FieldError(field="documents", rule="qualification_document_required",
                               limit=sorted(k.value for k in QUALIFICATION_KINDS), actual=sorted(kinds))])
    if (account.type == AccountType.AGENCY and DocumentKind.GETAPPS_SHOP_SCREENSHOT.value not in kinds
            and not principal.can_manage_accounts):
        raise InvalidState(
            "a core agency uploads a screenshot of its GetApps shop details page before submitting; if it cannot, "
            "its account manager submits for it", code="getapps_shop_screenshot_required",
            fields=[FieldError(field="documents", rule="getapps_shop_screenshot_required",
                               limit=[DocumentKind.GETAPPS_SHOP_SCREENSHOT.value], actual=sorted(kinds))])


@dataclass(frozen=True)
class StoredFile:
    path: Path
    content_type: str
    size_bytes: int
    sha256: str


def _store_document_file(account_id: int, *, filename: str, stream: BinaryIO, storage_dir: Path,
                         max_bytes: int) -> StoredFile:
    """Type is sniffed from content; size is capped while streaming; stored under its digest."""
    head = stream.read(16)
    content_type = next(
        (ctype for ctype, sigs in DOCUMENT_SIGNATURES.items() if any(head.startswith(s) for s in sigs)), None
    )
    if content_type is None:
        raise ValidationFailed.single("file", "file_type", "qualification documents must be PDF, PNG or JPEG",
                                      limit=sorted(DOCUMENT_SIGNATURES), actual=filename)
    digest = hashlib.sha256()
    target_dir = storage_dir / "documents" / str(account_id)
    target_dir.mkdir(parents=True, exist_ok=True)
    temp_path = target_dir / f".upload-{utcnow().timestamp()}"
    size = 0
    try:
        with create_private(temp_path) as out:
            chunk = head
            while chunk:
                size += len(chunk)
                if size > max_bytes:
                    raise PayloadTooLarge(
                        f"document exceeds {max_bytes} bytes",
                        fields=[FieldError(field="file", rule="max_size_bytes", limit=max_bytes, actual=size)],
                    )
                digest.update(chunk)
                out.write(chunk)
                chunk = stream.read(1 << 16)
        final_path = target_dir / digest.hexdigest()
        temp_path.replace(final_path)
    finally:
        temp_path.unlink(missing_ok=True)
    return StoredFile(final_path, content_type, size, digest.hexdigest())


def add_document(
    session: Session,
    principal: Principal,
    account_id: int,
    *,
    kind: DocumentKind,
    filename: str,
    stream: BinaryIO,
    storage_dir: Path,
    max_bytes: int,
) -> AccountDocument:
    """Store a qualification document (PDF, PNG or JPEG by content, size capped)."""
    account = get_account(session, principal, account_id)
    stored = _store_document_file(account.id, filename=filename, stream=stream, storage_dir=storage_dir,
                                  max_bytes=max_bytes)
    size = stored.size_bytes
    document = AccountDocument(account_id=account.id, kind=kind.value, filename=Path(filename).name[:255],
                               content_type=stored.content_type, size_bytes=size, sha256=stored.sha256,
                               storage_path=str(stored.path))
    session.add(document)
    session.flush()
    oplog.record(session, actor=principal, operation=Operation.CREATE, object_type="account_document",
                 object_id=document.id, object_name=document.filename, account_id=account.id,
                 after={"kind": document.kind, "filename": document.filename, "size_bytes": size})
    return document


def list_documents(session: Session, principal: Principal, account_id: int) -> list[AccountDocument]:
    get_account(session, principal, account_id)
    stmt = select(AccountDocument).where(AccountDocument.account_id == account_id).order_by(AccountDocument.id)
    return list(session.scalars(stmt))


def get_document(session: Session, principal: Principal, account_id: int, document_id: int) -> AccountDocument:
    """A document of an account the caller may see; any other id is simply not found."""
    get_account(session, principal, account_id)
    document = session.get(AccountDocument, document_id)
    if document is None or document.account_id != account_id:
        raise NotFound("document not found")
    return document


def replace_document(session: Session, principal: Principal, account_id: int, document_id: int, *,
                     filename: str, stream: BinaryIO, storage_dir: Path, max_bytes: int,
                     kind: DocumentKind | None = None) -> AccountDocument:
    """New content (and optionally kind) for a document. The old file stays on disk: the review history and the
    operation log refer to it by digest."""
    document = get_document(session, principal, account_id, document_id)
    stored = _store_document_file(account_id, filename=filename, stream=stream, storage_dir=storage_dir,
                                  max_bytes=max_bytes)
    before = {"kind": document.kind, "filename": document.filename, "sha256": document.sha256}
    document.filename = Path(filename).name[:255]
    document.content_type = stored.content_type
    document.size_bytes = stored.size_bytes
    document.sha256 = stored.sha256
    document.storage_path = str(stored.path)
    if kind is not None:
        document.kind = kind.value
    document.created_at = utcnow()
    session.flush()
    oplog.record(session, actor=principal, operation=Operation.UPDATE, object_type="account_document",
                 object_id=document.id, object_name=document.filename, account_id=account_id, before=before,
                 after={"kind": document.kind, "filename": document.filename, "sha256": document.sha256})
    return document


def expected_review(session: Session, account: Account) -> datetime | None:
    return review.expected_review_time_of(session, ACCOUNT, account.id)


def seed(session: Session) -> None:
    seed_settlement_rules(session)
