"""Accounts: registration, sub-accounts, documents, settlement rules and account review.

Sign-in is in auth.py, users in users.py and invitations.py, API keys in keys.py, tenancy in tenancy.py."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from adstack.accounts import auth, tenancy, users
from adstack.accounts.models import (
    AGREEMENT_VERSION,
    QUALIFICATION_KINDS,
    Account,
    AccountDocument,
    AccountType,
    AccountUpdate,
    DocumentKind,
    PaymentMode,
    Principal,
    RegistrationIn,
    Role,
    SettlementRule,
    SettlementRuleIn,
    SubAccountIn,
    User,
)
from adstack.core.errors import (
    Conflict,
    FieldError,
    Forbidden,
    InvalidState,
    NotFound,
    PayloadTooLarge,
    ValidationFailed,
)
from adstack.core.mail import OutgoingMail
from adstack.core.private_files import create_private
from adstack.core.security import hash_password
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


SETTLEMENT_RULE = "settlement_rule"


def _rule_snapshot(rule: SettlementRule) -> dict[str, Any]:
    return {"country": rule.country, "entity": rule.entity, "currency": rule.currency,
            "contract_version": rule.contract_version, "agreement_url": rule.agreement_url}


def _rule_name(rule: SettlementRule) -> str:
    return f"{rule.country} {rule.entity} {rule.currency}"


def add_settlement_rule(session: Session, principal: Principal, data: SettlementRuleIn) -> SettlementRule:
    """An account manager adds a (country, entity, currency) row, e.g. Singapore's, which the guide leaves open."""
    taken = session.scalar(select(SettlementRule.id).where(
        SettlementRule.country == data.country, SettlementRule.entity == data.entity,
        SettlementRule.currency == data.currency.value))
    if taken is not None:
        raise Conflict("this country already has a rule for this entity and currency", code="settlement_rule_exists",
                       fields=[FieldError(field="entity", rule="unique_per_country_and_currency", actual=data.entity)])
    rule = SettlementRule(country=data.country, entity=data.entity, currency=data.currency.value,
                          contract_version=data.contract_version, agreement_url=data.agreement_url)
    session.add(rule)
    session.flush()
    oplog.record(session, actor=principal, operation=Operation.CREATE, object_type=SETTLEMENT_RULE,
                 object_id=rule.id, object_name=_rule_name(rule), after=_rule_snapshot(rule))
    return rule


def delete_settlement_rule(session: Session, principal: Principal, rule_id: int) -> None:
    rule = session.get(SettlementRule, rule_id)
    if rule is None:
        raise NotFound("settlement rule not found")
    oplog.record(session, actor=principal, operation=Operation.DELETE, object_type=SETTLEMENT_RULE,
                 object_id=rule.id, object_name=_rule_name(rule), before=_rule_snapshot(rule))
    session.delete(rule)


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


# ---------- accounts ----------


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
    visible = tenancy.visible_account_ids(session, principal)
    if visible is not None:
        stmt = stmt.where(Account.id.in_(visible))
    if query:
        conditions: list[ColumnElement[bool]] = [Account.company_name.icontains(query, autoescape=True)]
        if query.isdecimal():
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
    user = users.create_user(session, email=str(data.email), password=data.password, role=role, account_id=account.id,
                       name=data.contact_name)
    token, _ = auth.issue_session_token(session, user, ttl=ttl)
    actor = auth.principal_for(user, client)
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
                auth.revoke_sessions(session, user.id)  # sign-in comes later, with the password
            mail = auth.verification_mail(session, user, base_url=base_url, ttl=token_ttl)
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
    account = tenancy.get_account(session, principal, account_id)
    changes = data.model_dump(exclude_unset=True)
    if not changes:
        return account, None
    if {"currency", "time_zone"} & changes.keys():
        _lock_money(session, account)
    before = snapshot(account)
    country = changes.get("country", account.country)
    entity = changes.get("settlement_entity", account.settlement_entity)
    currency = changes.get("currency", account.currency)
    if {"country", "settlement_entity", "currency"} & changes.keys():
        changes["contract_version"] = check_settlement(session, country=country, entity=entity,
                                                       currency=str(currency)).contract_version
    time_zone = changes.get("time_zone", account.time_zone)
    currency_changes = "currency" in changes and str(currency) != account.currency
    zone_changes = "time_zone" in changes and time_zone != account.time_zone
    if currency_changes or zone_changes:
        _check_money_fields(session, account, currency=str(currency) if currency_changes else None,
                            time_zone=time_zone if zone_changes else None)
    for field, value in changes.items():
        setattr(account, field, value.value if hasattr(value, "value") else value)
    if currency_changes:
        _keep_wallet_currency(session, account)
    after = snapshot(account)
    reviewed_changed = {f for f in REVIEWED_ACCOUNT_FIELDS if before[f] != after[f]}
    notice = None
    if reviewed_changed and account.review_status == ReviewStatus.APPROVED:
        account.review_status = _back_to_review(session, principal, account)
        after["review_status"] = account.review_status
        notice = (f"Changing {', '.join(sorted(reviewed_changed))} sent the account back to review; "
                  "its ads stop serving until it is approved again.")
    oplog.record(session, actor=principal, operation=Operation.UPDATE, object_type=ACCOUNT, object_id=account.id,
                 object_name=account.company_name, account_id=account.id, before=before, after=after)
    return account, notice


def _lock_money(session: Session, account: Account) -> None:
    """Take the account's wallet lock, which every movement of its money takes, and re-read the account under it:
    a transfer or top-up racing a currency change then either lands first (and the change is refused) or sees
    the new currency (and is refused itself)."""
    from adstack.finance.service import _lock_wallet  # finance builds on accounts

    _lock_wallet(session, account)
    session.refresh(account)


def _check_money_fields(session: Session, account: Account, *, currency: str | None, time_zone: str | None
                        ) -> None:
    """Refuse a new currency or time zone once money is tied to the old one (checked under `_lock_money`)."""
    from adstack.finance.models import CreditLine, LedgerEntry, TopUpRequest, TopUpStatus  # finance builds on accounts

    funded = session.scalar(select(LedgerEntry.id).where(LedgerEntry.account_id == account.id).limit(1))
    line = session.scalar(select(CreditLine.id).where(CreditLine.account_id == account.id).limit(1))
    if currency is not None:
        if funded is not None:
            raise ValidationFailed.single("currency", "fixed_once_funded",
                                          "the currency cannot change once the account has ledger entries",
                                          limit=account.currency, actual=currency)
        pending = session.scalar(select(TopUpRequest.id).where(
            TopUpRequest.account_id == account.id, TopUpRequest.status == TopUpStatus.PENDING.value).limit(1))
        if pending is not None:
            raise ValidationFailed.single(
                "currency", "fixed_while_top_up_pending",
                f"the currency cannot change while top-up request {pending} in {account.currency} is pending; "
                "it is confirmed or rejected first", limit=account.currency, actual=currency)
        if line is not None:
            raise ValidationFailed.single(
                "currency", "fixed_once_credit_line",
                f"the currency cannot change once the account has a credit line (credit line {line} is granted "
                f"in {account.currency})", limit=account.currency, actual=currency)
    if time_zone is not None:
        # Daily financial records, reports and credit-line periods are cut at the account's local midnight: a
        # new zone would move money already counted into another day.
        if funded is not None:
            raise ValidationFailed.single("time_zone", "fixed_once_funded",
                                          "the time zone cannot change once the account has ledger entries: its "
                                          "daily records are cut at its local midnight",
                                          limit=account.time_zone, actual=time_zone)
        if line is not None:
            raise ValidationFailed.single(
                "time_zone", "fixed_once_credit_line",
                f"the time zone cannot change once the account has a credit line: credit line {line}'s period "
                f"is cut at midnight in {account.time_zone}", limit=account.time_zone, actual=time_zone)


def _keep_wallet_currency(session: Session, account: Account) -> None:
    from adstack.finance.models import AccountWallet

    session.execute(update(AccountWallet).where(AccountWallet.account_id == account.id)
                    .values(currency=account.currency))


def submit_account(session: Session, principal: Principal, account_id: int, *,
                   require_verified_email: bool = False) -> Account:
    account = tenancy.get_account(session, principal, account_id)
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
    account = tenancy.get_account(session, principal, account_id)
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


def document_content_type(head: bytes) -> str | None:
    """PDF, PNG or JPEG by the file's first bytes; None for anything else."""
    return next((ctype for ctype, sigs in DOCUMENT_SIGNATURES.items() if any(head.startswith(s) for s in sigs)),
                None)


def _store_document_file(account_id: int, *, filename: str, stream: BinaryIO, storage_dir: Path,
                         max_bytes: int) -> StoredFile:
    """Type is sniffed from content; size is capped while streaming; stored under its digest."""
    head = stream.read(16)
    content_type = document_content_type(head)
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
) -> tuple[AccountDocument, str | None]:
    """Store a qualification document (PDF, PNG or JPEG by content, size capped). Returns it and a notice when it
    sent the account back to review."""
    account = tenancy.get_account(session, principal, account_id)
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
    return document, _documents_changed(session, principal, account)


def list_documents(session: Session, principal: Principal, account_id: int) -> list[AccountDocument]:
    tenancy.get_account(session, principal, account_id)
    stmt = select(AccountDocument).where(AccountDocument.account_id == account_id).order_by(AccountDocument.id)
    return list(session.scalars(stmt))


def get_document(session: Session, principal: Principal, account_id: int, document_id: int) -> AccountDocument:
    """A document of an account the caller may see; any other id is simply not found."""
    tenancy.get_account(session, principal, account_id)
    document = session.get(AccountDocument, document_id)
    if document is None or document.account_id != account_id:
        raise NotFound("document not found")
    return document


def replace_document(session: Session, principal: Principal, account_id: int, document_id: int, *,
                     filename: str, stream: BinaryIO, storage_dir: Path, max_bytes: int,
                     kind: DocumentKind | None = None) -> tuple[AccountDocument, str | None]:
    """New content (and optionally kind) for a document. The old file stays on disk: the review history and the
    operation log refer to it by digest. Returns it and a notice when it sent the account back to review."""
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
    account = session.get(Account, account_id)
    assert account is not None
    return document, _documents_changed(session, principal, account)


def _documents_changed(session: Session, principal: Principal, account: Account) -> str | None:
    """The documents are what the account's review approved: new ones send an approved account back to review,
    as editing a reviewed field does."""
    # Source: Mi Ads usage guide, 1.4 Edit Account Information: "After you edit again, the account will re-enter
    # the review stage."
    if account.review_status != ReviewStatus.APPROVED:
        return None
    before = snapshot(account)
    account.review_status = _back_to_review(session, principal, account)
    oplog.record(session, actor=principal, operation=Operation.UPDATE, object_type=ACCOUNT, object_id=account.id,
                 object_name=account.company_name, account_id=account.id, before=before, after=snapshot(account))
    return ("Changing the qualification documents sent the account back to review; its ads stop serving until it "
            "is approved again.")


def _back_to_review(session: Session, principal: Principal, account: Account) -> str:
    return review.apply(session, object_type=ACCOUNT, object_id=account.id, account_id=account.id,
                        object_name=account.company_name, current=account.review_status,
                        action=ReviewAction.EDIT_REVIEWED_FIELD, actor_user_id=principal.user_id).value


def expected_review(session: Session, account: Account) -> datetime | None:
    return review.expected_review_time_of(session, ACCOUNT, account.id)


def seed(session: Session) -> None:
    seed_settlement_rules(session)
