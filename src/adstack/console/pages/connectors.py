"""Partner data: measurement-partner accounts (every connector in the registry: Adjust, AppsFlyer), the apps bound
to them with the settings that must match the partner's dashboard (editable, and each binding can be switched
off), pulls on demand, the partner's reason whenever a pull fails, and the last pull's numbers beside adstack's
own counts."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import ValidationError

from adstack.accounts import service as accounts
from adstack.connectors import registry
from adstack.connectors import service as connectors
from adstack.connectors.models import (
    SETTINGS_MATCH_NOTICE,
    AdSpendMode,
    AttributionSource,
    AttributionType,
    BindingCreate,
    BindingUpdate,
    ConnectionCreate,
    Reattributed,
)
from adstack.console import forms
from adstack.console.forms import FormErrors
from adstack.console.i18n import N_
from adstack.console.web import PREFIX, ConsoleRoute, FormDep, UserDep, Visitor, redirect, render, with_notice
from adstack.core.deps import IdPath
from adstack.core.errors import DomainError, NotFound
from adstack.core.security import Encryptor

router = APIRouter(route_class=ConsoleRoute)

# The console's translatable copy of connectors.models.SETTINGS_MATCH_NOTICE (a test keeps the two equal).
SETTINGS_NOTICE = N_(
    "Use the same time zone, attribution type, attribution source, attribution status and ad revenue sources "
    "as in your Adjust dashboard; otherwise the numbers pulled here will differ from the ones Adjust shows."
)

MAX_LIST_ITEMS = 30  # the schema refuses longer lists; cutting the raw text keeps a pasted blob bounded

# What the binding forms may send; a field left out of an edit post keeps its value (the enable/disable button
# sends only `enabled`). Attribution types are checkboxes, so the edit form marks that it sent them.
BINDING_TEXT_FIELDS = ("app_name", "package_name", "utc_offset", "time_zone", "attribution_source", "reattributed",
                       "ad_spend_mode", "currency", "enabled")
BINDING_LIST_FIELDS = ("ad_revenue_sources",)


def _encryptor(visitor: Visitor) -> Encryptor:
    return Encryptor(visitor.settings.resolved_secret_key)


def _connector_factory(visitor: Visitor) -> connectors.ConnectorFactory:
    """The same factory the API uses: one set on app.state (tests, operators) or the configured Adjust URL."""
    app_state = visitor.request.app.state
    factory: connectors.ConnectorFactory | None = getattr(app_state, "connector_factory", None)
    return factory or connectors.default_connector_factory(app_state.settings)


def _comma_list(raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",")[:MAX_LIST_ITEMS + 1] if item.strip()]


def _form_errors(exc: ValidationError | DomainError) -> FormErrors:
    return FormErrors.from_validation(exc) if isinstance(exc, ValidationError) else FormErrors.from_domain(exc)


# ---------- the list of connections ----------


def _connections_page(visitor: Visitor, *, errors: FormErrors | None = None, values: dict[str, Any] | None = None,
                      status: int = 200) -> Response:
    principal = visitor.me
    return render(visitor, "connectors/connections.html", {
        "connections": connectors.list_connections(visitor.session, principal),
        "partners": [(spec.partner, spec.display_name) for spec in registry.CONNECTORS.values()],
        "errors": errors or FormErrors(), "values": values or {},
        "account_choices": [] if principal.role == "advertiser" else accounts.list_accounts(
            visitor.session, principal, limit=200),
    }, status=status)


@router.get("/connectors")
def connections_page(visitor: UserDep) -> Response:
    return _connections_page(visitor)


@router.post("/connectors")
def create_connection(visitor: UserDep, form: FormDep) -> Response:
    payload: dict[str, Any] = {"name": forms.text(form, "name"), "api_token": forms.text(form, "api_token"),
                               "partner": forms.text(form, "partner") or "adjust",
                               "partner_account_id": forms.text(form, "partner_account_id")}
    account = forms.text(form, "account_id")
    if account.isdecimal() and len(account) < 19:
        payload["account_id"] = int(account)
    try:
        connection = connectors.create_connection(visitor.session, visitor.me, ConnectionCreate.model_validate(payload),
                                                  encryptor=_encryptor(visitor))
        visitor.session.commit()
    except (ValidationError, DomainError) as exc:
        visitor.session.rollback()
        # The token is never echoed back into the page, not even after a refusal.
        shown = {k: v for k, v in payload.items() if k != "api_token"}
        return _connections_page(visitor, errors=_form_errors(exc), values=shown, status=422)
    return redirect(with_notice(f"{PREFIX}/connectors/{connection.id}", "created"))


# ---------- one connection: bound apps, pulls ----------


def _connection_page(visitor: Visitor, connection_id: int, *, errors: FormErrors | None = None,
                     values: dict[str, Any] | None = None, edited_binding_id: int | None = None,
                     status: int = 200) -> Response:
    """`errors` and `values` belong to the bind form, or to the edit form of `edited_binding_id` when given."""
    session, principal = visitor.session, visitor.me
    connection = connectors.get_connection(session, principal, connection_id)
    bindings = connectors.list_bindings(session, principal, connection.id)
    runs = connectors.list_runs(session, principal, connection.id)
    last_run = runs[0] if runs else None
    spec = registry.spec_of(connection.partner)
    return render(visitor, "connectors/connection.html", {
        "connection": connection, "bindings": bindings, "runs": runs,
        "partner_name": spec.display_name if spec else connection.partner,
        "binding_fields": spec.binding_fields if spec else (),
        "last_pull": connectors.last_pull_summary(session, principal, connection.id),
        "failed_run": last_run if last_run is not None and last_run.error else None,
        "failed_bindings": [b for b in bindings if b.last_error],
        "settings_notice": visitor.gettext(SETTINGS_MATCH_NOTICE),
        "attribution_types": [t.value for t in AttributionType],
        "attribution_sources": [s.value for s in AttributionSource],
        "reattributed_choices": [r.value for r in Reattributed],
        "ad_spend_modes": ["", *(m.value for m in AdSpendMode)],
        "errors": (errors if edited_binding_id is None else None) or FormErrors(),
        "values": (values if edited_binding_id is None else None) or {
            "utc_offset": "+00:00", "attribution_types": [AttributionType.CLICK.value],
            "attribution_source": AttributionSource.DYNAMIC.value, "reattributed": Reattributed.ALL.value,
            "currency": "USD"},
        "edited_binding_id": edited_binding_id,
        "edit_errors": (errors if edited_binding_id is not None else None) or FormErrors(),
        "edit_values": (values if edited_binding_id is not None else None) or {},
    }, status=status)


@router.get("/connectors/{connection_id}")
def connection_page(connection_id: IdPath, visitor: UserDep) -> Response:
    return _connection_page(visitor, connection_id)


@router.post("/connectors/{connection_id}/apps")
def bind_app(connection_id: IdPath, visitor: UserDep, form: FormDep) -> Response:
    values: dict[str, Any] = {name: forms.text(form, name) for name in (
        "app_token", "app_name", "package_name", "utc_offset", "time_zone", "attribution_source", "reattributed",
        "ad_revenue_sources", "ad_spend_mode", "currency")}
    values["attribution_types"] = forms.texts(form, "attribution_types")[:MAX_LIST_ITEMS]
    payload = {k: v for k, v in values.items() if v != "" or k in ("app_token",)}
    payload["ad_revenue_sources"] = _comma_list(values["ad_revenue_sources"])
    if not values["attribution_types"]:
        payload.pop("attribution_types")
    try:
        connectors.bind_app(visitor.session, visitor.me, connection_id, BindingCreate.model_validate(payload))
        visitor.session.commit()
    except (ValidationError, DomainError) as exc:
        visitor.session.rollback()
        if isinstance(exc, DomainError) and exc.status == 404:
            raise
        return _connection_page(visitor, connection_id, errors=_form_errors(exc), values=values, status=422)
    return redirect(with_notice(f"{PREFIX}/connectors/{connection_id}", "saved"))


@router.post("/connectors/{connection_id}/apps/{binding_id}")
def edit_binding(connection_id: IdPath, binding_id: IdPath, visitor: UserDep, form: FormDep) -> Response:
    """Changes a bound app's settings, or switches its pulls off and on; only the fields sent change."""
    session, principal = visitor.session, visitor.me
    if all(b.id != binding_id for b in connectors.list_bindings(session, principal, connection_id)):
        raise NotFound(f"binding {binding_id} not found")
    sent = [name for name in (*BINDING_TEXT_FIELDS, *BINDING_LIST_FIELDS) if name in form]
    values: dict[str, Any] = {name: forms.text(form, name) for name in sent}
    payload = {name: _comma_list(value) if name in BINDING_LIST_FIELDS else value for name, value in values.items()}
    if "attribution_types_sent" in form:
        values["attribution_types"] = payload["attribution_types"] = \
            forms.texts(form, "attribution_types")[:MAX_LIST_ITEMS]
    try:
        connectors.update_binding(session, principal, binding_id, BindingUpdate.model_validate(payload))
        session.commit()
    except (ValidationError, DomainError) as exc:
        session.rollback()
        if isinstance(exc, DomainError) and exc.status == 404:
            raise
        return _connection_page(visitor, connection_id, errors=_form_errors(exc), values=values,
                                edited_binding_id=binding_id, status=422)
    return redirect(with_notice(f"{PREFIX}/connectors/{connection_id}", "saved") + f"#binding-{binding_id}")


@router.post("/connectors/{connection_id}/pull")
def pull_now(connection_id: IdPath, visitor: UserDep) -> Response:
    """Pulls the days whose cohorts are not yet mature now. A failed pull is saved with the partner's reason,
    which the page shows."""
    connectors.pull_for(visitor.session, visitor.me, connection_id, encryptor=_encryptor(visitor),
                        connector_factory=_connector_factory(visitor))
    visitor.session.commit()
    return redirect(f"{PREFIX}/connectors/{connection_id}#runs")
