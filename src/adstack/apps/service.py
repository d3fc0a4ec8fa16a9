"""Advertised apps: CRUD, event mappings, partner integrations and the postback signature."""

from __future__ import annotations

import functools
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from adstack.accounts import tenancy
from adstack.accounts.models import Principal
from adstack.apps.mapping import MappingRule
from adstack.apps.models import (
    App,
    AppCreate,
    AppUpdate,
    EventMapping,
    EventMappingIn,
    IntegrationRead,
)
from adstack.apps.partners import (
    SPECS,
    STANDARD_EVENT_NAMES,
    AppContext,
    missing_settings,
    postback_url,
    registration_note,
    tracking_link,
    unverified_note,
    view_through_link,
)
from adstack.core.errors import Conflict, FieldError, NotFound
from adstack.core.security import derive_key, hmac_sign, signature_matches
from adstack.core.timeutil import utcnow
from adstack.core.vocabulary import ConversionEvent, Partner
from adstack.oplog import service as oplog
from adstack.oplog.models import Operation

APP = "app"
_SNAPSHOT_FIELDS = ("package_name", "name", "platform", "store", "partner", "partner_link_id",
                    "click_lookback_days", "view_through_enabled", "view_through_hours",
                    "reattribution_window_days", "event_window_days", "attribution_authority",
                    "partner_network_name")


def snapshot(app: App) -> dict[str, Any]:
    return {name: getattr(app, name) for name in _SNAPSHOT_FIELDS}


# ---------- postback signature ----------


@functools.lru_cache(maxsize=4096)
def postback_signature(secret: bytes, app_id: int) -> str:
    """Binds a postback URL to one app, so a postback cannot be credited to another app by editing `app=`.
    Kept per app: every postback of an app carries the same one."""
    return hmac_sign(derive_key(secret, "postback-url"), f"app:{app_id}".encode(), 12)


def verify_postback_signature(secret: bytes, app_id: int, signature: str) -> bool:
    return signature_matches(postback_signature(secret, app_id), signature)


# ---------- CRUD ----------


def _live_app_with_package(session: Session, account_id: int, package_name: str) -> App | None:
    return session.scalar(select(App).where(App.account_id == account_id, App.package_name == package_name,
                                            App.deleted_at.is_(None)))


def create_app(session: Session, principal: Principal, body: AppCreate) -> App:
    account_id = tenancy.resolve_account_id(session, principal, body.account_id)
    if _live_app_with_package(session, account_id, body.package_name) is not None:
        raise Conflict("this account already has an app with this package name",
                       fields=[FieldError(field="package_name", rule="unique", actual=body.package_name)])
    values = body.model_dump(exclude={"account_id"})
    values["partner"] = body.partner.value if body.partner else None
    values["attribution_authority"] = body.attribution_authority.value
    app = App(account_id=account_id, **values)
    session.add(app)
    session.flush()
    oplog.record(session, actor=principal, operation=Operation.CREATE, object_type=APP, object_id=app.id,
                 object_name=app.name, account_id=account_id, after=snapshot(app))
    return app


def get_app(session: Session, principal: Principal, app_id: int) -> App:
    app = session.get(App, app_id)
    if app is None or app.deleted_at is not None or not tenancy.can_see_account(session, principal,
                                                                                  app.account_id):
        raise NotFound(f"app {app_id} not found")
    return app


def list_apps(session: Session, principal: Principal, *, account_id: int | None = None, limit: int = 50,
              offset: int = 0) -> list[App]:
    stmt = select(App).where(App.deleted_at.is_(None))
    if account_id is not None:
        tenancy.ensure_account_visible(session, principal, account_id)
        stmt = stmt.where(App.account_id == account_id)
    else:
        visible = tenancy.visible_account_ids(session, principal)
        if visible is not None:
            stmt = stmt.where(App.account_id.in_(visible))
    return list(session.scalars(stmt.order_by(App.id).limit(limit).offset(offset)))


def update_app(session: Session, principal: Principal, app_id: int, body: AppUpdate) -> App:
    app = get_app(session, principal, app_id)
    before = snapshot(app)
    for name, value in body.model_dump(exclude_unset=True).items():
        if value is None and name not in ("partner", "event_window_days"):
            continue  # a null for a required setting means "leave as is"
        setattr(app, name, value.value if isinstance(value, StrEnum) else value)
    session.flush()
    oplog.record(session, actor=principal, operation=Operation.UPDATE, object_type=APP, object_id=app.id,
                 object_name=app.name, account_id=app.account_id, before=before, after=snapshot(app))
    return app


def delete_app(session: Session, principal: Principal, app_id: int) -> App:
    """Soft delete: conversions already recorded keep pointing at the app."""
    app = get_app(session, principal, app_id)
    before = snapshot(app)
    app.deleted_at = utcnow()
    oplog.record(session, actor=principal, operation=Operation.DELETE, object_type=APP, object_id=app.id,
                 object_name=app.name, account_id=app.account_id, before=before, after=None)
    return app


# ---------- event mappings ----------


def list_mappings(session: Session, app_id: int) -> list[EventMapping]:
    return list(session.scalars(select(EventMapping).where(EventMapping.app_id == app_id)
                                .order_by(EventMapping.position, EventMapping.id)))


def mapping_rules(session: Session, app_id: int) -> list[MappingRule]:
    return [MappingRule(m.source_name, ConversionEvent(m.event), tuple(m.conditions or ()))
            for m in list_mappings(session, app_id)]


def _mapping_snapshot(rows: list[EventMapping]) -> list[dict[str, Any]]:
    return [{"source_name": m.source_name, "event": m.event, "conditions": m.conditions} for m in rows]


def replace_mappings(session: Session, principal: Principal, app_id: int,
                     mappings: list[EventMappingIn]) -> list[EventMapping]:
    app = get_app(session, principal, app_id)
    before = _mapping_snapshot(list_mappings(session, app.id))
    session.execute(delete(EventMapping).where(EventMapping.app_id == app.id))
    rows = [EventMapping(app_id=app.id, position=i, source_name=m.source_name.strip(), event=m.event.value,
                         conditions=[c.model_dump(mode="json") for c in m.conditions])
            for i, m in enumerate(mappings)]
    session.add_all(rows)
    session.flush()
    oplog.record(session, actor=principal, operation=Operation.UPDATE, object_type="app_event_mapping",
                 object_id=app.id, object_name=app.name, account_id=app.account_id,
                 before={"mappings": before}, after={"mappings": _mapping_snapshot(rows)})
    return rows


# ---------- integrations ----------


def context(app: App) -> AppContext:
    return AppContext(app_id=app.id, package_name=app.package_name, name=app.name,
                      partner_link_id=app.partner_link_id, click_lookback_days=app.click_lookback_days,
                      view_through_enabled=app.view_through_enabled, view_through_hours=app.view_through_hours,
                      reattribution_window_days=app.reattribution_window_days,
                      network_name=app.partner_network_name or "")


def network_names(app: App) -> frozenset[str]:
    """The names the app's partner may use for adstack in a postback, lower case."""
    if not app.partner:
        return frozenset()
    spec = SPECS[Partner(app.partner)]
    return frozenset(n.lower() for n in {spec.network(context(app)), spec.default_network_name,
                                         spec.display_name, "adstack"} if n)


def integration(session: Session, app: App, partner: Partner, *, base_url: str, secret: bytes) -> IntegrationRead:
    spec = SPECS[partner]
    ctx = context(app)
    network = spec.network(ctx)
    link = tracking_link(spec, ctx)
    view_link = view_through_link(spec, ctx)
    missing = missing_settings(spec, ctx)
    postback = postback_url(spec, base_url=base_url, app_id=app.id, signature=postback_signature(secret, app.id),
                            network=network)
    effective: dict[str, ConversionEvent] = {}
    for rule in mapping_rules(session, app.id):
        effective.setdefault(rule.source_name, rule.event)
    for name, event in STANDARD_EVENT_NAMES.items():
        effective.setdefault(name, event)
    shown_link = link or f"(fill in {', '.join(missing)} to get the tracking link)"
    steps = spec.steps(ctx, shown_link, postback)
    if view_link:
        steps.insert(2, f"Fire the view-through link on each impression:\n{view_link}")
    note = unverified_note(spec)
    if note:  # right after the step that hands over the postback URL
        steps.insert(next(i for i, step in enumerate(steps) if postback in step) + 1, note)
    if spec.requires_registration:
        steps.insert(0, registration_note(spec, network))
    return IntegrationRead(partner=partner, partner_name=spec.display_name, tracking_link_template=link,
                           view_through_link_template=view_link, postback_url_template=postback, missing=missing,
                           requires_network_registration=spec.requires_registration, network_name=network,
                           documentation=list(spec.documentation), unverified_macros=list(spec.unverified_macros),
                           click_id_parameter=spec.click_id_parameter,
                           gaid_parameter=spec.gaid_parameter, macro_syntax=spec.macro_syntax, steps=steps,
                           event_mapping=effective)


def integrations(session: Session, app: App, *, base_url: str, secret: bytes) -> list[IntegrationRead]:
    """All nine partners, the app's chosen partner first."""
    order = sorted(Partner, key=lambda p: (p.value != app.partner, list(Partner).index(p)))
    return [integration(session, app, p, base_url=base_url, secret=secret) for p in order]


# ---------- for tracking and attribution ----------


def app_for_package(session: Session, account_id: int, package_name: str) -> App | None:
    return _live_app_with_package(session, account_id, package_name)


def click_tracking_link(app: App) -> str | None:
    """The chosen partner's tracking-link template for a click, or None when the app has no partner or its
    tracker id is not filled in (then the click goes on to the creative's own destination)."""
    if not app.partner:
        return None
    return tracking_link(SPECS[Partner(app.partner)], context(app))


def impression_tracking_link(app: App) -> str | None:
    """The chosen partner's view-through link for an impression, or None (no partner, tracker id missing, or
    view-through off)."""
    if not app.partner:
        return None
    return view_through_link(SPECS[Partner(app.partner)], context(app))
