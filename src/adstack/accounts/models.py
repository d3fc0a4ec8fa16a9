"""Users, advertiser and agency accounts, settlement rules, documents and access tokens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    field_validator,
)
from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from adstack.accounts.passwords import MIN_PASSWORD_LENGTH, refuse_common_password
from adstack.accounts.roles import PLATFORM_ROLES, Role
from adstack.core.countries import check_country_code
from adstack.core.db import Base, TimestampMixin
from adstack.core.ids import EntityId
from adstack.core.money import Currency, Micros
from adstack.core.timeutil import utcnow, validate_time_zone
from adstack.review.models import ReviewStatus

AGREEMENT_VERSION = "2025-01"


class AccountRole(StrEnum):
    """What a user may do in its account (and, for an agency's users, in the agency's sub-accounts)."""

    OWNER = "owner"  # everything, including users, money and the account's details
    OPERATOR = "operator"  # edits campaigns, ad groups, creatives, apps, audiences
    VIEWER = "viewer"  # reads


class KeyScope(StrEnum):
    """What an API key may do, within what its user may do."""

    READ = "read"
    WRITE = "write"
    FINANCE = "finance"


# The scopes each account role may give its keys: a key never does more than its user.
ROLE_KEY_SCOPES: dict[str, frozenset[KeyScope]] = {
    AccountRole.OWNER: frozenset(KeyScope),
    AccountRole.OPERATOR: frozenset({KeyScope.READ, KeyScope.WRITE}),
    AccountRole.VIEWER: frozenset({KeyScope.READ}),
}


class AccountType(StrEnum):
    ADVERTISER = "advertiser"
    AGENCY = "agency"


class PaymentMode(StrEnum):
    PREPAY = "prepay"
    POSTPAY = "postpay"


class DocumentKind(StrEnum):
    BUSINESS_LICENSE = "business_license"
    INDUSTRY_QUALIFICATION = "industry_qualification"
    AUTHORIZATION_LETTER = "authorization_letter"
    # Source: Mi Ads Usage Guide, 1.2.2 Register a Core Agency Account: "the core agency needs to upload a
    # screenshot of the shop details page" (its GetApps shop).
    GETAPPS_SHOP_SCREENSHOT = "getapps_shop_screenshot"
    OTHER = "other"


# What qualifies an account for review: any document but the agency's shop screenshot, which comes on top.
QUALIFICATION_KINDS = frozenset(kind for kind in DocumentKind if kind is not DocumentKind.GETAPPS_SHOP_SCREENSHOT)


@dataclass(frozen=True)
class Principal:
    """Who is acting, and through which client. Services take this, never a request."""

    user_id: int
    email: str
    role: str
    account_id: int | None
    client: str = "api"
    account_role: str = AccountRole.OWNER  # tenants only; platform staff act by `role`
    scopes: frozenset[str] | None = None  # an API key's scopes; None for a signed-in session
    may_operate_on_behalf: bool = False  # platform staff granted "operate on behalf" (admins always may)
    on_behalf: bool = False  # this request edits a tenant's data by that grant: the operation log says so

    @property
    def is_platform(self) -> bool:
        return self.role in PLATFORM_ROLES

    @property
    def is_api_key(self) -> bool:
        return self.scopes is not None

    @property
    def can_operate_on_behalf(self) -> bool:
        return self.role == Role.ADMIN or (self.is_platform and self.may_operate_on_behalf)

    @property
    def can_review(self) -> bool:
        return self.role in (Role.ADMIN, Role.REVIEWER)

    @property
    def can_manage_accounts(self) -> bool:
        return self.role in (Role.ADMIN, Role.ACCOUNT_MANAGER)


class User(Base, TimestampMixin):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(100), default="")
    role: Mapped[str] = mapped_column(String(32))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    # Empty until the person chooses: the console then follows the browser (Accept-Language).
    locale: Mapped[str] = mapped_column(String(8), default="")
    is_active: Mapped[bool] = mapped_column(default=True)
    email_verified_at: Mapped[datetime | None]
    account_role: Mapped[str] = mapped_column(String(16), default=AccountRole.OWNER)
    # Platform staff only: may edit advertisers' campaigns, every such write logged as on behalf.
    operates_on_behalf: Mapped[bool] = mapped_column(default=False)

    @property
    def email_verified(self) -> bool:
        return self.email_verified_at is not None


class Account(Base, TimestampMixin):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    type: Mapped[str] = mapped_column(String(16))
    parent_agency_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    company_name: Mapped[str] = mapped_column(String(200))
    contact_name: Mapped[str] = mapped_column(String(100))
    contact_email: Mapped[str] = mapped_column(String(320))
    contact_phone: Mapped[str] = mapped_column(String(40), default="")
    country: Mapped[str] = mapped_column(String(2))
    settlement_entity: Mapped[str] = mapped_column(String(100))
    currency: Mapped[str] = mapped_column(String(3))
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC")
    payment_mode: Mapped[str] = mapped_column(String(16), default=PaymentMode.PREPAY)
    low_balance_threshold_micros: Mapped[int] = mapped_column(default=0)
    agreement_version: Mapped[str] = mapped_column(String(20))
    # The contract version of the account's settlement rule (country, entity, currency), set by the server.
    contract_version: Mapped[str] = mapped_column(String(100), default="")
    agreement_accepted_at: Mapped[datetime]
    review_status: Mapped[str] = mapped_column(String(20), default=ReviewStatus.TO_BE_SUBMITTED)
    rejection_reasons: Mapped[str] = mapped_column(String(2000), default="")
    has_been_approved: Mapped[bool] = mapped_column(default=False)


class AccountDocument(Base):
    __tablename__ = "account_documents"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size_bytes: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64))
    storage_path: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SettlementRule(Base):
    """Which settlement entity and currency an account in a country may choose, and the contract version that
    choice signs. country '*' = any other country, except those that only have operator-set rules (Singapore)."""

    __tablename__ = "settlement_rules"
    __table_args__ = (UniqueConstraint("country", "entity", "currency"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    country: Mapped[str] = mapped_column(String(2))
    entity: Mapped[str] = mapped_column(String(100))
    currency: Mapped[str] = mapped_column(String(3))
    contract_version: Mapped[str] = mapped_column(String(100), default="")
    # Where the agreement of this contract version can be read; set by operators (the guide names no address).
    agreement_url: Mapped[str] = mapped_column(String(500), default="")


class TokenKind(StrEnum):
    SESSION = "session"  # an API sign-in: a bearer token
    CONSOLE = "console"  # a console sign-in: only ever a cookie
    API_KEY = "api_key"


# Which token kinds each client accepts: a console cookie is no bearer token, and a bearer token no cookie.
CLIENT_TOKEN_KINDS: dict[str, frozenset[str]] = {
    "api": frozenset({TokenKind.SESSION, TokenKind.API_KEY}),
    "console": frozenset({TokenKind.CONSOLE}),
}
SESSION_KINDS = frozenset({TokenKind.SESSION, TokenKind.CONSOLE})


class AccessToken(Base):
    """Session tokens and API keys, stored as SHA-256 digests."""

    __tablename__ = "access_tokens"
    __table_args__ = (Index("ix_access_tokens_user", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(16))  # TokenKind
    name: Mapped[str] = mapped_column(String(100), default="")
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    # Shown in the session list so a user can tell their sign-ins apart.
    client_ip: Mapped[str] = mapped_column(String(45), default="")
    user_agent: Mapped[str] = mapped_column(String(200), default="")
    # An API key's scopes, comma-separated (KeyScope); empty for sessions.
    scopes: Mapped[str] = mapped_column(String(64), default="")

    @property
    def scope_list(self) -> list[str]:
        return [s for s in self.scopes.split(",") if s]


class InvitationStatus(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REVOKED = "revoked"
    EXPIRED = "expired"


class Invitation(Base):
    """An e-mailed invitation to join an account with a role; the token is stored as a SHA-256 digest."""

    __tablename__ = "invitations"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    account_role: Mapped[str] = mapped_column(String(16))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    invited_by_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    accepted_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    revoked_at: Mapped[datetime | None]

    def status_at(self, now: datetime) -> InvitationStatus:
        if self.accepted_at is not None:
            return InvitationStatus.ACCEPTED
        if self.revoked_at is not None:
            return InvitationStatus.REVOKED
        if self.expires_at <= now:
            return InvitationStatus.EXPIRED
        return InvitationStatus.PENDING


class EmailTokenPurpose(StrEnum):
    VERIFY_EMAIL = "verify_email"
    RESET_PASSWORD = "reset_password"


class EmailToken(Base):
    """Single-use, expiring tokens sent by e-mail (verification, password reset), stored as SHA-256 digests."""

    __tablename__ = "email_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(32))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


# ---------- API schemas ----------

CompanyName = Annotated[str, StringConstraints(min_length=1, max_length=200)]
CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$"), AfterValidator(check_country_code)]
# A new password: at least 10 characters and not one of the most common (see accounts/passwords.py).
Password = Annotated[str, StringConstraints(min_length=MIN_PASSWORD_LENGTH, max_length=128),
                     AfterValidator(refuse_common_password)]


class AccountFields(BaseModel):
    company_name: CompanyName = Field(description="Kept exactly as entered, parentheses and case included.")
    contact_name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    contact_email: EmailStr
    contact_phone: Annotated[str, StringConstraints(max_length=40)] = ""
    country: CountryCode = Field(description="ISO 3166-1 alpha-2 country or region code.")
    settlement_entity: Annotated[str, StringConstraints(min_length=1, max_length=100)] = Field(
        description="Required, never defaulted: one of the entities GET /settlement-rules?country= lists.")
    currency: Currency = Field(description="Required, never defaulted: a currency the chosen entity settles in.")
    time_zone: str = "UTC"

    @field_validator("time_zone")
    @classmethod
    def _known_time_zone(cls, value: str) -> str:
        return validate_time_zone(value, guide_range=False)


class RegistrationIn(AccountFields):
    email: EmailStr
    password: Password
    type: AccountType = AccountType.ADVERTISER
    accept_agreement: bool = Field(description="Must be true: the agreement of the chosen settlement rule's "
                                               "contract version (see GET /settlement-rules).")

    @field_validator("accept_agreement")
    @classmethod
    def _must_accept(cls, value: bool) -> bool:
        if not value:
            raise ValueError("the agreement must be accepted")
        return value


class SubAccountIn(AccountFields):
    """An agency creates sub-accounts for the companies it manages; an admin may create any account."""

    type: AccountType = AccountType.ADVERTISER
    parent_agency_id: EntityId | None = None
    accept_agreement: bool = True


class AccountUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    company_name: CompanyName | None = None
    contact_name: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    contact_email: EmailStr | None = None
    contact_phone: Annotated[str, StringConstraints(max_length=40)] | None = None
    country: CountryCode | None = None
    settlement_entity: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    currency: Currency | None = None
    time_zone: str | None = None
    low_balance_threshold_micros: Micros | None = None

    @field_validator("time_zone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        return None if value is None else validate_time_zone(value, guide_range=False)


class AccountRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    type: AccountType
    parent_agency_id: int | None
    company_name: str
    contact_name: str
    contact_email: str
    contact_phone: str
    country: str
    settlement_entity: str
    currency: Currency
    time_zone: str
    payment_mode: PaymentMode
    low_balance_threshold_micros: int
    agreement_version: str
    contract_version: str = Field(description="From the settlement rule of the account's country, entity and "
                                              "currency.")
    agreement_accepted_at: datetime
    review_status: ReviewStatus
    rejection_reasons: str
    created_at: datetime
    expected_review_at: datetime | None = None
    notice: str | None = Field(default=None, description="Side effects the caller should know about.")


class DocumentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    account_id: int
    kind: DocumentKind
    filename: str
    content_type: str
    size_bytes: int
    sha256: str
    created_at: datetime
    notice: str | None = Field(default=None, description="Side effects the caller should know about (a new "
                               "document sends an approved account back to review).")


def _rule_country(value: str) -> str:
    return value if value == "*" else check_country_code(value)


class SettlementRuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    country: Annotated[str, StringConstraints(pattern=r"^([A-Z]{2}|\*)$"), AfterValidator(_rule_country)] = Field(
        description="ISO 3166-1 alpha-2, or '*' for every country without rules of its own except Singapore, "
                    "which has only the rules operators set.")
    entity: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    currency: Currency
    contract_version: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    agreement_url: Annotated[str, StringConstraints(max_length=500, pattern=r"^(https://\S+)?$")] = Field(
        default="", description="An https address where the agreement of this contract version can be read.")


class SettlementRuleRead(SettlementRuleIn):
    model_config = ConfigDict(from_attributes=True)
    id: int


class LoginIn(BaseModel):
    email: Annotated[str, StringConstraints(min_length=3, max_length=320)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=128)]


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_at: datetime | None
    user_id: int
    role: Role
    account_id: int | None


API_KEY_DEFAULT_DAYS = 90
API_KEY_MAX_DAYS = 365


class ApiKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    scopes: list[KeyScope] = Field(default=[KeyScope.READ], min_length=1, max_length=3,
                                   description="read: GET routes; write: edits; finance: money movements. A key "
                                               "never gets a scope its user's role lacks.")
    expires_in_days: int = Field(default=API_KEY_DEFAULT_DAYS, ge=1, le=API_KEY_MAX_DAYS,
                                 description="The key stops working this many days from now.")


class ApiKeyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    prefix: str
    scopes: list[KeyScope] = Field(validation_alias=AliasChoices("scope_list", "scopes"))
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="Shown once; store it now.")


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    name: str
    role: Role
    account_id: int | None
    account_role: AccountRole
    locale: str


class RegistrationAccepted(BaseModel):
    """The same answer whether or not the e-mail is already registered."""

    message: str = Field(description="What happens next; the rest arrives by e-mail.")


class EmailTokenIn(BaseModel):
    token: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class PasswordChangeIn(BaseModel):
    current_password: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    new_password: Password


class PasswordResetRequestIn(BaseModel):
    email: EmailStr


class PasswordResetIn(BaseModel):
    token: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    new_password: Password


class SessionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: TokenKind
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    client_ip: str
    user_agent: str
    current: bool = Field(default=False, description="The session this request was made with.")


class ManagedUserRead(UserRead):
    is_active: bool
    email_verified: bool
    operates_on_behalf: bool


class InvitationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: EmailStr
    account_role: AccountRole = AccountRole.VIEWER
    account_id: int | None = Field(default=None, ge=1, le=2**63 - 1,
                                   description="The account to join: your own unless an agency names a "
                                               "sub-account, or an account manager names any.")


class InvitationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    account_id: int
    email: str
    account_role: AccountRole
    created_at: datetime
    expires_at: datetime
    accepted_at: datetime | None
    revoked_at: datetime | None
    status: InvitationStatus


class InvitationAcceptIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    password: Password | None = Field(default=None, description="Required when the address has no user yet.")
    name: Annotated[str, StringConstraints(max_length=100)] = ""


class AccountRoleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_role: AccountRole


class OnBehalfGrantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    granted: bool = Field(description="Whether this platform user may edit advertisers' campaigns; each such "
                                      "write is logged as on behalf of the account.")


class RegistrationOut(BaseModel):
    user: UserRead
    account: AccountRead
    access_token: str
