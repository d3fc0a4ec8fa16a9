"""Apps & tracking: the advertised apps, their attribution settings and event mappings, and for each of the
nine measurement partners the tracking link, the postback template and the set-up steps."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import ValidationError

from adstack.apps import service as apps
from adstack.apps.models import AppCreate, AppStore, AppUpdate, EventMappingIn, IntegrationRead
from adstack.console import forms
from adstack.console.forms import FormErrors
from adstack.console.i18n import N_
from adstack.console.pages import choices
from adstack.console.web import PREFIX, ConsoleRoute, FormDep, UserDep, Visitor, redirect, render, with_notice
from adstack.core.deps import IdPath
from adstack.core.errors import DomainError, FieldError, ValidationFailed
from adstack.core.vocabulary import ConversionEvent, Partner

router = APIRouter(route_class=ConsoleRoute)

SETTING_FIELDS = ("name", "store", "partner", "partner_link_id", "click_lookback_days", "view_through_hours",
                  "reattribution_window_days", "event_window_days")


# What each partner's tracker id is (apps.partners' link_id_label), marked here for the console's catalogs.
LINK_ID_LABELS: dict[Partner, str] = {
    Partner.ADJUST: N_("Adjust link (tracker) token"),
    Partner.APPMETRICA: N_("AppMetrica tracker id"),
    Partner.BRANCH: N_("Branch ad link (domain/path)"),
    Partner.SINGULAR: N_("Singular tracking link (host/path)"),
    Partner.KOCHAVA: N_("Kochava campaign (tracker) id"),
    Partner.TENJIN: N_("Tenjin campaign tracking key"),
    Partner.MYTRACKER: N_("MyTracker link id (the part after /c/)"),
    Partner.AIRBRIDGE: N_("Airbridge app name"),
}
# The settings the integration's `missing` names, by their label on the settings form.
SETTING_LABELS: dict[str, str] = {"partner_link_id": N_("Partner app or link id")}


def missing_settings(visitor: Visitor, integration: IntegrationRead) -> list[tuple[str, str]]:
    """(setting, what to enter) for each setting the integration still needs, in the visitor's language."""
    out = []
    for item in integration.missing:
        name, _, what = item.partition(": ")
        what = what.removeprefix("the ")
        label = SETTING_LABELS.get(name)
        if name == "partner_link_id" and integration.partner in LINK_ID_LABELS:
            what = visitor.gettext(LINK_ID_LABELS[integration.partner])
        out.append((visitor.gettext(label) if label else name, what))
    return out


def _settings_payload(form: Any) -> dict[str, Any]:
    data: dict[str, Any] = {name: forms.text(form, name) for name in SETTING_FIELDS}
    data["partner"] = data["partner"] or None
    data["event_window_days"] = data["event_window_days"] or None
    data["view_through_enabled"] = forms.checkbox(form, "view_through_enabled")
    for name in ("click_lookback_days", "view_through_hours", "reattribution_window_days"):
        if not data[name]:
            data.pop(name)
    return data


def _apps_page(visitor: Visitor, *, errors: FormErrors | None = None, values: dict[str, Any] | None = None,
               status: int = 200) -> Response:
    principal = visitor.me
    return render(visitor, "apps/apps.html", {
        "apps": apps.list_apps(visitor.session, principal, limit=200), "partners": list(Partner),
        "stores": [s.value for s in AppStore], "errors": errors or FormErrors(),
        "values": values or {"view_through_enabled": True, "store": "google_play"},
        "account_choices": choices.account_choices(visitor),
    }, status=status)


@router.get("/apps")
def apps_page(visitor: UserDep) -> Response:
    return _apps_page(visitor)


@router.post("/apps")
def create_app(visitor: UserDep, form: FormDep) -> Response:
    payload = {**_settings_payload(form), "package_name": forms.text(form, "package_name")}
    account = forms.text(form, "account_id")
    if account.isdecimal() and len(account) < 19:
        payload["account_id"] = int(account)
    try:
        app = apps.create_app(visitor.session, visitor.me, AppCreate.model_validate(payload))
        visitor.session.commit()
    except (ValidationError, DomainError) as exc:
        visitor.session.rollback()
        errors = FormErrors.from_validation(exc) if isinstance(exc, ValidationError) else FormErrors.from_domain(exc)
        return _apps_page(visitor, errors=errors, values=payload, status=422)
    return redirect(with_notice(f"{PREFIX}/apps/{app.id}", "created"))


def _app_page(visitor: Visitor, app_id: int, *, errors: FormErrors | None = None, values: dict[str, Any] | None = None,
              status: int = 200) -> Response:
    """The app's page; after a refused edit, the settings form shows `values` as they were typed."""
    session = visitor.session
    app = apps.get_app(session, visitor.me, app_id)
    integrations = apps.integrations(session, app, base_url=visitor.settings.public_base_url,
                                     secret=visitor.settings.resolved_secret_key)
    chosen = visitor.request.query_params.get("partner") or (app.partner or Partner.APPSFLYER.value)
    current = next((i for i in integrations if i.partner.value == chosen), integrations[0])
    return render(visitor, "apps/app.html", {
        "app": app, "integrations": integrations, "current": current,
        "missing": missing_settings(visitor, current),
        "mappings": apps.list_mappings(session, app.id), "partners": list(Partner),
        "stores": [s.value for s in AppStore], "events": [e.value for e in ConversionEvent],
        "errors": errors or FormErrors(), "values": values or {},
    }, status=status)


@router.get("/apps/{app_id}")
def app_page(app_id: IdPath, visitor: UserDep) -> Response:
    return _app_page(visitor, app_id)


@router.post("/apps/{app_id}/edit")
def edit_app(app_id: IdPath, visitor: UserDep, form: FormDep) -> Response:
    try:
        apps.update_app(visitor.session, visitor.me, app_id, AppUpdate.model_validate(_settings_payload(form)))
        visitor.session.commit()
    except (ValidationError, DomainError) as exc:
        visitor.session.rollback()
        if isinstance(exc, DomainError) and exc.status == 404:
            raise
        errors = FormErrors.from_validation(exc) if isinstance(exc, ValidationError) else FormErrors.from_domain(exc)
        typed: dict[str, Any] = {name: forms.text(form, name) for name in SETTING_FIELDS}
        typed["view_through_enabled"] = forms.checkbox(form, "view_through_enabled")
        return _app_page(visitor, app_id, errors=errors, values=typed, status=422)
    return redirect(with_notice(f"{PREFIX}/apps/{app_id}", "saved"))


def parse_mappings(raw: str) -> list[EventMappingIn]:
    """One mapping per line, `partner event name = EVENT`, e.g. `af_purchase = PURCHASE`."""
    mappings = []
    for number, line in enumerate(raw.splitlines()[:200], start=1):
        if not line.strip() or line.strip().startswith("#"):
            continue
        source, sep, event = line.rpartition("=")
        if not sep or not source.strip():
            raise ValidationFailed("a mapping line needs `name = EVENT`", fields=[
                FieldError(field="mappings", rule="format", message=f"line {number}: name = EVENT",
                           actual=line[:100])])
        try:
            mappings.append(EventMappingIn(source_name=source.strip(), event=ConversionEvent(event.strip().upper())))
        except ValueError:
            raise ValidationFailed("unknown event", fields=[FieldError(
                field="mappings", rule="enum", message=f"line {number}: unknown event",
                limit=[e.value for e in ConversionEvent], actual=event.strip()[:50])]) from None
    return mappings


@router.post("/apps/{app_id}/mappings")
def save_mappings(app_id: IdPath, visitor: UserDep, form: FormDep) -> Response:
    try:
        apps.replace_mappings(visitor.session, visitor.me, app_id, parse_mappings(forms.text(form, "mappings")))
        visitor.session.commit()
    except DomainError as exc:
        visitor.session.rollback()
        if exc.status == 404:
            raise
        return _app_page(visitor, app_id, errors=FormErrors.from_domain(exc), status=exc.status)
    return redirect(with_notice(f"{PREFIX}/apps/{app_id}", "saved"))


@router.post("/apps/{app_id}/delete")
def delete_app(app_id: IdPath, visitor: UserDep) -> Response:
    apps.delete_app(visitor.session, visitor.me, app_id)
    visitor.session.commit()
    return redirect(with_notice(f"{PREFIX}/apps", "deleted"))
