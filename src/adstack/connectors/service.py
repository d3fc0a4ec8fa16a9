"""Partner connections, app bindings and pulls. Pulls replace whole days, so a re-pull never duplicates one; a
day is re-pulled until its cohort metrics are mature. Connectors come from the registry (registry.py)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from adstack.accounts import tenancy
from adstack.accounts.models import Principal
from adstack.campaigns.models import AdGroup, Campaign
from adstack.connectors import registry
from adstack.connectors.base import (
    COHORT_MATURITY_DAYS,
    BindingSettings,
    PartnerError,
    PulledRow,
    ReportConnector,
    added_metrics,
)
from adstack.connectors.models import (
    AppBinding,
    BindingCreate,
    BindingUpdate,
    ConnectionCreate,
    ConnectionStatus,
    ConnectionUpdate,
    PartnerConnection,
    PartnerMetricRow,
    PullRun,
)
from adstack.core.errors import NotFound, ValidationFailed
from adstack.core.security import Encryptor, mask_secret
from adstack.core.timeutil import as_utc, utcnow
from adstack.creatives.models import Creative
from adstack.oplog import service as oplog
from adstack.oplog.models import Operation

CONNECTION = "partner_connection"
BINDING = "partner_app_binding"
# Scheduled pulls re-read every day whose cohorts are not yet mature: today and the COHORT_MATURITY_DAYS before.
PULL_WINDOW_DAYS = COHORT_MATURITY_DAYS + 1

ConnectorFactory = Callable[[str], ReportConnector]


def default_connector_factory(settings: Any) -> ConnectorFactory:
    """Connectors from the registry, at the base URLs `settings` names (a Settings object; a bare string is
    read as Adjust's URL)."""
    if isinstance(settings, str):
        settings = SimpleNamespace(adjust_api_url=settings)

    def make(partner: str) -> ReportConnector:
        if registry.spec_of(partner) is None:
            raise NotFound(f"no connector for partner {partner}")
        return registry.build(partner, settings)

    return make


def _snapshot(connection: PartnerConnection) -> dict[str, Any]:
    return {"name": connection.name, "partner": connection.partner, "token": connection.token_hint,
            "status": connection.status, "partner_account_id": connection.partner_account_id}


def _binding_snapshot(binding: AppBinding) -> dict[str, Any]:
    return {k: getattr(binding, k) for k in ("app_token", "app_name", "package_name", "utc_offset", "time_zone",
                                             "attribution_types", "attribution_source", "reattributed",
                                             "ad_revenue_sources", "ad_spend_mode", "currency", "enabled")}


# ---------- connections ----------


def create_connection(session: Session, principal: Principal, data: ConnectionCreate, *, encryptor: Encryptor
                      ) -> PartnerConnection:
    account_id = tenancy.resolve_account_id(session, principal, data.account_id)
    connection = PartnerConnection(account_id=account_id, partner=data.partner, name=data.name,
                                   token_ciphertext=encryptor.encrypt(data.api_token),
                                   token_hint=mask_secret(data.api_token), status=ConnectionStatus.ACTIVE.value,
                                   partner_account_id=data.partner_account_id)
    session.add(connection)
    session.flush()
    oplog.record(session, actor=principal, operation=Operation.CREATE, object_type=CONNECTION,
                 object_id=connection.id, object_name=connection.name, account_id=account_id,
                 after=_snapshot(connection))
    return connection


def get_connection(session: Session, principal: Principal, connection_id: int) -> PartnerConnection:
    connection = session.get(PartnerConnection, connection_id)
    if connection is None or not tenancy.can_see_account(session, principal, connection.account_id):
        raise NotFound(f"connection {connection_id} not found")
    return connection


def list_connections(session: Session, principal: Principal) -> list[PartnerConnection]:
    stmt = select(PartnerConnection).order_by(PartnerConnection.id)
    visible = tenancy.visible_account_ids(session, principal)
    if visible is not None:
        stmt = stmt.where(PartnerConnection.account_id.in_(visible))
    return list(session.scalars(stmt))


def update_connection(session: Session, principal: Principal, connection_id: int, data: ConnectionUpdate, *,
                      encryptor: Encryptor) -> PartnerConnection:
    connection = get_connection(session, principal, connection_id)
    before = _snapshot(connection)
    changes = data.model_dump(exclude_unset=True)
    if "name" in changes:
        connection.name = changes["name"]
    if "status" in changes:
        connection.status = changes["status"].value
    if "partner_account_id" in changes:
        connection.partner_account_id = changes["partner_account_id"]
    if changes.get("api_token"):
        connection.token_ciphertext = encryptor.encrypt(changes["api_token"])
        connection.token_hint = mask_secret(changes["api_token"])
        connection.status = ConnectionStatus.ACTIVE.value
        connection.last_error = ""
    oplog.record(session, actor=principal, operation=Operation.UPDATE, object_type=CONNECTION,
                 object_id=connection.id, object_name=connection.name, account_id=connection.account_id,
                 before=before, after=_snapshot(connection))
    return connection


# ---------- bindings ----------


def bind_app(session: Session, principal: Principal, connection_id: int, data: BindingCreate) -> AppBinding:
    connection = get_connection(session, principal, connection_id)
    if session.scalar(select(AppBinding.id).where(AppBinding.connection_id == connection.id,
                                                  AppBinding.app_token == data.app_token)) is not None:
        raise ValidationFailed.single("app_token", "unique", "this app is already bound to the connection",
                                      actual=data.app_token)
    binding = AppBinding(connection_id=connection.id, account_id=connection.account_id, app_token=data.app_token,
                         app_name=data.app_name, package_name=data.package_name, utc_offset=data.utc_offset,
                         time_zone=data.time_zone, attribution_types=[t.value for t in data.attribution_types],
                         attribution_source=data.attribution_source.value, reattributed=data.reattributed.value,
                         ad_revenue_sources=list(data.ad_revenue_sources),
                         ad_spend_mode=data.ad_spend_mode.value if data.ad_spend_mode else "",
                         currency=data.currency)
    session.add(binding)
    session.flush()
    oplog.record(session, actor=principal, operation=Operation.CREATE, object_type=BINDING, object_id=binding.id,
                 object_name=binding.app_name or binding.app_token, account_id=binding.account_id,
                 after=_binding_snapshot(binding))
    return binding


def list_bindings(session: Session, principal: Principal, connection_id: int) -> list[AppBinding]:
    connection = get_connection(session, principal, connection_id)
    stmt = select(AppBinding).where(AppBinding.connection_id == connection.id).order_by(AppBinding.id)
    return list(session.scalars(stmt))


def update_binding(session: Session, principal: Principal, binding_id: int, data: BindingUpdate) -> AppBinding:
    binding = session.get(AppBinding, binding_id)
    if binding is None or not tenancy.can_see_account(session, principal, binding.account_id):
        raise NotFound(f"binding {binding_id} not found")
    before = _binding_snapshot(binding)
    for field, value in data.model_dump(exclude_unset=True, mode="json").items():
        setattr(binding, field, value if value is not None else "")
    oplog.record(session, actor=principal, operation=Operation.UPDATE, object_type=BINDING, object_id=binding.id,
                 object_name=binding.app_name or binding.app_token, account_id=binding.account_id,
                 before=before, after=_binding_snapshot(binding))
    return binding


# ---------- pulls ----------


_TRAILING_ID = re.compile(r"\((\d{1,18})\)\s*$")
_BARE_ID = re.compile(r"^\s*(\d{1,18})\s*$")


def _label_id(label: str) -> int | None:
    """The adstack id a partner label carries: "Name (123)" as adstack's own links name campaigns, or a bare
    "123" as they name ad groups and creatives."""
    found = _TRAILING_ID.search(label) or _BARE_ID.match(label)
    return int(found.group(1)) if found else None


@dataclass
class _Matcher:
    """Matches partner labels to the account's campaigns, ad groups and creatives."""

    campaigns: dict[int, str]  # id -> name
    ad_groups: dict[int, int]  # id -> campaign id
    creatives: dict[int, int]  # id -> ad group id

    @classmethod
    def load(cls, session: Session, account_id: int) -> _Matcher:
        return cls(
            campaigns={row.id: row.name for row in session.execute(select(Campaign.id, Campaign.name).where(
                Campaign.account_id == account_id))},
            ad_groups={row.id: row.campaign_id for row in session.execute(select(AdGroup.id, AdGroup.campaign_id)
                                                                          .where(AdGroup.account_id == account_id))},
            creatives={row.id: row.ad_group_id for row in session.execute(
                select(Creative.id, Creative.ad_group_id).where(Creative.account_id == account_id))})

    def campaign(self, label: str) -> int | None:
        """By the id adstack's own links put in the label ("Name (123)" for Adjust, a bare "123" for AppsFlyer's
        c), else by exact name within the account."""
        found = _label_id(label)
        if found is not None and found in self.campaigns:
            return found
        by_name = [cid for cid, name in self.campaigns.items() if name == label.strip()]
        return by_name[0] if len(by_name) == 1 else None

    def ad_group(self, label: str, campaign_id: int | None) -> int | None:
        found = _label_id(label)
        if found is None or campaign_id is None or self.ad_groups.get(found) != campaign_id:
            return None
        return found

    def creative(self, label: str, ad_group_id: int | None) -> int | None:
        found = _label_id(label)
        if found is None or ad_group_id is None or self.creatives.get(found) != ad_group_id:
            return None
        return found


def _media_source(session: Session, binding: AppBinding, partner: str) -> str:
    """Our network's name in the partner's reports for the bound app: the app's own setting where adstack
    knows the app, else the partner's default name for adstack."""
    from adstack.apps import service as apps
    from adstack.apps.partners import SPECS
    from adstack.core.vocabulary import Partner

    if partner not in {p.value for p in Partner}:
        return ""
    spec = SPECS[Partner(partner)]
    app = apps.app_for_package(session, binding.account_id, binding.package_name) if binding.package_name else None
    return spec.network(apps.context(app)) if app is not None else spec.default_network_name


def _binding_settings(session: Session, binding: AppBinding, connection: PartnerConnection) -> BindingSettings:
    return BindingSettings(app_token=binding.app_token, utc_offset=binding.utc_offset, time_zone=binding.time_zone,
                           attribution_types=tuple(binding.attribution_types or ("click",)),
                           attribution_source=binding.attribution_source, reattributed=binding.reattributed,
                           ad_revenue_sources=tuple(binding.ad_revenue_sources or ()),
                           ad_spend_mode=binding.ad_spend_mode, currency=binding.currency,
                           account_id=connection.partner_account_id,
                           media_source=_media_source(session, binding, connection.partner))


@dataclass(frozen=True)
class _Fetched:
    binding_id: int
    rows: list[PulledRow] | None
    error: PartnerError | None
    attempts: int


def pull(
    session: Session,
    *,
    connection: PartnerConnection,
    encryptor: Encryptor,
    connector_factory: ConnectorFactory,
    date_from: date,
    date_to: date,
    today: date | None = None,
) -> PullRun:
    """Pull every enabled binding of a connection for [date_from, date_to] and replace those days' rows.

    The partner may take minutes (timeouts, retries, backoff), so no transaction is open meanwhile: what the
    calls need is read first and that transaction ends (committed, so nothing of the caller's is lost); the
    answers are then written in one short transaction, which the caller commits.
    """
    started_at = utcnow()
    connector = connector_factory(connection.partner)
    token = encryptor.decrypt(connection.token_ciphertext)
    targets = [(binding.id, _binding_settings(session, binding, connection)) for binding in session.scalars(
        select(AppBinding).where(AppBinding.connection_id == connection.id, AppBinding.enabled.is_(True)))]
    session.commit()
    fetched = []
    for binding_id, settings in targets:
        rows: list[PulledRow] | None = None
        error: PartnerError | None = None
        try:
            rows = connector.fetch(token=token, binding=settings, date_from=date_from, date_to=date_to)
        except PartnerError as exc:
            error = exc
        fetched.append(_Fetched(binding_id, rows, error, getattr(connector, "attempts_made", 1)))
    return _record_pull(session, connection=connection, fetched=fetched, started_at=started_at,
                        date_from=date_from, date_to=date_to, today=today or started_at.date())


def _record_pull(session: Session, *, connection: PartnerConnection, fetched: list[_Fetched],
                 started_at: datetime, date_from: date, date_to: date, today: date) -> PullRun:
    run = PullRun(connection_id=connection.id, started_at=started_at, date_from=date_from, date_to=date_to,
                  status="running")
    session.add(run)
    matcher = _Matcher.load(session, connection.account_id)
    # Re-read: a binding deleted or changed while the partner answered is not written over.
    bindings = {b.id: b for b in session.scalars(
        select(AppBinding).where(AppBinding.id.in_([f.binding_id for f in fetched]))
        .execution_options(populate_existing=True))}
    errors: list[str] = []
    for result in fetched:
        run.attempts += result.attempts
        binding = bindings.get(result.binding_id)
        if binding is None:
            continue
        if result.error is not None:
            binding.last_error = result.error.message[:500]
            errors.append(result.error.message)
            if result.error.code == "partner_unauthorized":
                connection.status = ConnectionStatus.ERROR.value
            continue
        binding.last_error = ""
        # Replace the pulled days as a whole: a re-pull of a settled day overwrites, never adds.
        session.execute(delete(PartnerMetricRow).where(PartnerMetricRow.binding_id == binding.id,
                                                       PartnerMetricRow.day >= date_from,
                                                       PartnerMetricRow.day <= date_to))
        merged: dict[tuple[date, str, str, str, str], PulledRow] = {}
        for row in result.rows or ():
            key = (row.day, row.campaign_label, row.adgroup_label, row.creative_label, row.country)
            known = merged.get(key)
            merged[key] = row if known is None else PulledRow(
                day=row.day, campaign_label=row.campaign_label, adgroup_label=row.adgroup_label,
                creative_label=row.creative_label, country=row.country, currency=row.currency,
                metrics=added_metrics(known.metrics, row.metrics))
        for row in merged.values():
            campaign_id = matcher.campaign(row.campaign_label)
            ad_group_id = matcher.ad_group(row.adgroup_label, campaign_id)
            session.add(PartnerMetricRow(
                binding_id=binding.id, account_id=binding.account_id, partner=connection.partner, day=row.day,
                campaign_label=row.campaign_label, campaign_id=campaign_id, adgroup_label=row.adgroup_label,
                ad_group_id=ad_group_id, creative_label=row.creative_label,
                creative_id=matcher.creative(row.creative_label, ad_group_id), country=row.country,
                currency=row.currency or binding.currency, metrics=row.metrics,
                mature=(today - row.day).days >= COHORT_MATURITY_DAYS))
        run.rows += len(merged)
    run.finished_at = utcnow()
    run.status = "failed" if errors and len(errors) == len(fetched) else "succeeded"
    run.error = "; ".join(errors)[:500]
    connection.last_error = run.error
    if not errors:
        connection.status = ConnectionStatus.ACTIVE.value
        connection.last_pulled_at = run.finished_at
    session.flush()
    return run


def pull_for(session: Session, principal: Principal, connection_id: int, *, encryptor: Encryptor,
             connector_factory: ConnectorFactory, date_from: date | None = None, date_to: date | None = None
             ) -> PullRun:
    connection = get_connection(session, principal, connection_id)
    today = utcnow().date()
    end = date_to or today
    start = date_from or end - timedelta(days=PULL_WINDOW_DAYS - 1)
    if start > end:
        raise ValidationFailed.single("date_from", "not_after_date_to", "date_from must not be after date_to",
                                      limit=end.isoformat(), actual=start.isoformat())
    if (end - start).days > 92:
        raise ValidationFailed.single("date_to", "max_range_days", "pull at most 93 days at once", limit=93,
                                      actual=(end - start).days + 1)
    return pull(session, connection=connection, encryptor=encryptor, connector_factory=connector_factory,
                date_from=start, date_to=end)


def scheduled_pull(session: Session, *, encryptor: Encryptor, connector_factory: ConnectorFactory,
                   today: date | None = None, now: datetime | None = None) -> list[PullRun]:
    """The hourly job: every day of every active connection whose cohorts are not yet mature. A day is pulled
    while it is younger than COHORT_MATURITY_DAYS and once more when it matures (D7 needs 8 days), so Day N
    metrics stop changing only when the partner's do. A connection whose partner's quota asks for a longer gap
    (`ConnectorSpec.min_scheduled_interval_s`) waits for it since its last successful pull."""
    now = now or utcnow()
    today = today or now.date()
    runs = []
    # Listed whole first: each pull ends the transaction a streaming result would still read from.
    for connection in session.scalars(select(PartnerConnection).where(
            PartnerConnection.status != ConnectionStatus.DISABLED.value)).all():
        if not _scheduled_pull_due(connection, now):
            continue
        runs.append(pull(session, connection=connection, encryptor=encryptor, connector_factory=connector_factory,
                         date_from=today - timedelta(days=PULL_WINDOW_DAYS - 1), date_to=today, today=today))
    return runs


def _scheduled_pull_due(connection: PartnerConnection, now: datetime) -> bool:
    spec = registry.spec_of(connection.partner)
    gap = spec.min_scheduled_interval_s if spec is not None else 0
    last = connection.last_pulled_at
    return not gap or last is None or (now - as_utc(last)).total_seconds() >= gap


def list_runs(session: Session, principal: Principal, connection_id: int, limit: int = 20) -> list[PullRun]:
    connection = get_connection(session, principal, connection_id)
    stmt = select(PullRun).where(PullRun.connection_id == connection.id).order_by(PullRun.id.desc()).limit(limit)
    return list(session.scalars(stmt))


# ---------- the last pull beside adstack's own counts ----------


def last_pull_summary(session: Session, principal: Principal, connection_id: int, *, store: Any = None
                      ) -> dict[str, Any]:
    """The last successful pull's rows (partner labels and what they matched), and per campaign and day the
    partner's installs, cost and revenue beside adstack's own, with the differences, from the report engine."""
    from adstack.reports.models import Dimension, Granularity, Metric, ReportQuery
    from adstack.reports.service import run_report

    connection = get_connection(session, principal, connection_id)
    run = session.scalar(select(PullRun).where(PullRun.connection_id == connection.id,
                                               PullRun.status == "succeeded").order_by(PullRun.id.desc()).limit(1))
    if run is None:
        return {"run": None, "rows": [], "comparison": None}
    binding_ids = list(session.scalars(select(AppBinding.id).where(AppBinding.connection_id == connection.id)))
    rows = list(session.scalars(select(PartnerMetricRow).where(
        PartnerMetricRow.binding_id.in_(binding_ids), PartnerMetricRow.day >= run.date_from,
        PartnerMetricRow.day <= run.date_to).order_by(PartnerMetricRow.day, PartnerMetricRow.campaign_label,
                                                      PartnerMetricRow.id).limit(500)))
    prefix = connection.partner
    query = ReportQuery(
        start_date=run.date_from, end_date=run.date_to, granularity=Granularity.DAY, dimensions=[Dimension.CAMPAIGN],
        metrics=[Metric.INSTALLS, Metric.COST_MICROS, Metric.REVENUE_MICROS], account_ids=[connection.account_id],
        extra_columns=[f"{prefix}_installs", f"{prefix}_network_cost_micros", f"{prefix}_revenue_micros"],
        limit=500)
    report = run_report(session, principal, query, store=store)
    return {
        "run": {"id": run.id, "date_from": run.date_from.isoformat(), "date_to": run.date_to.isoformat(),
                "finished_at": run.finished_at.isoformat() if run.finished_at else None, "rows": run.rows},
        "rows": [{"day": r.day.isoformat(), "campaign_label": r.campaign_label, "campaign_id": r.campaign_id,
                  "adgroup_label": r.adgroup_label, "ad_group_id": r.ad_group_id,
                  "creative_label": r.creative_label, "creative_id": r.creative_id, "country": r.country,
                  "currency": r.currency, "mature": r.mature, "metrics": dict(r.metrics)} for r in rows],
        "comparison": {"currency": report.currency, "rows": [dict(r) for r in report.rows if r.get("campaign_id")],
                       "totals": dict(report.totals)},
    }
