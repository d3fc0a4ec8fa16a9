"""Partner connections, app bindings and pulls. Pulls replace whole days, so a re-pull never duplicates one."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from adstack.accounts import service as accounts
from adstack.accounts.models import Principal
from adstack.campaigns.models import Campaign
from adstack.connectors.adjust import (
    AdjustReportConnector,
    BindingSettings,
    PartnerError,
    PulledRow,
    ReportConnector,
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
from adstack.core.money import to_micros
from adstack.core.security import Encryptor, mask_secret
from adstack.core.timeutil import utcnow
from adstack.oplog import service as oplog
from adstack.oplog.models import Operation
from adstack.reports.models import Metric
from adstack.reports.service import ExtraColumn

CONNECTION = "partner_connection"
BINDING = "partner_app_binding"
SETTLING_DAYS = 3  # cohort metrics settle after 2-3 days, so scheduled pulls re-read the last three

ConnectorFactory = Callable[[str], ReportConnector]


def default_connector_factory(adjust_api_url: str) -> ConnectorFactory:
    def make(partner: str) -> ReportConnector:
        if partner == "adjust":
            return AdjustReportConnector(base_url=adjust_api_url)
        raise NotFound(f"no connector for partner {partner}")

    return make


def _snapshot(connection: PartnerConnection) -> dict[str, Any]:
    return {"name": connection.name, "partner": connection.partner, "token": connection.token_hint,
            "status": connection.status}


def _binding_snapshot(binding: AppBinding) -> dict[str, Any]:
    return {k: getattr(binding, k) for k in ("app_token", "app_name", "package_name", "utc_offset", "attribution_type",
                                             "attribution_source", "attribution_status", "ad_revenue_sources",
                                             "enabled")}


# ---------- connections ----------


def create_connection(session: Session, principal: Principal, data: ConnectionCreate, *, encryptor: Encryptor
                      ) -> PartnerConnection:
    account_id = accounts.resolve_account_id(session, principal, data.account_id)
    connection = PartnerConnection(account_id=account_id, partner=data.partner.value, name=data.name,
                                   token_ciphertext=encryptor.encrypt(data.api_token),
                                   token_hint=mask_secret(data.api_token), status=ConnectionStatus.ACTIVE.value)
    session.add(connection)
    session.flush()
    oplog.record(session, actor=principal, operation=Operation.CREATE, object_type=CONNECTION,
                 object_id=connection.id, object_name=connection.name, account_id=account_id,
                 after=_snapshot(connection))
    return connection


def get_connection(session: Session, principal: Principal, connection_id: int) -> PartnerConnection:
    connection = session.get(PartnerConnection, connection_id)
    if connection is None or not accounts.can_see_account(session, principal, connection.account_id):
        raise NotFound(f"connection {connection_id} not found")
    return connection


def list_connections(session: Session, principal: Principal) -> list[PartnerConnection]:
    stmt = select(PartnerConnection).order_by(PartnerConnection.id)
    visible = accounts.visible_account_ids(session, principal)
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
    binding = AppBinding(connection_id=connection.id, account_id=connection.account_id, app_token=data.app_token,
                         app_name=data.app_name, package_name=data.package_name, utc_offset=data.utc_offset,
                         attribution_type=data.attribution_type.value,
                         attribution_source=data.attribution_source.value,
                         attribution_status=list(data.attribution_status),
                         ad_revenue_sources=list(data.ad_revenue_sources))
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
    if binding is None or not accounts.can_see_account(session, principal, binding.account_id):
        raise NotFound(f"binding {binding_id} not found")
    before = _binding_snapshot(binding)
    for field, value in data.model_dump(exclude_unset=True).items():
        setattr(binding, field, value.value if hasattr(value, "value") else value)
    oplog.record(session, actor=principal, operation=Operation.UPDATE, object_type=BINDING, object_id=binding.id,
                 object_name=binding.app_name or binding.app_token, account_id=binding.account_id,
                 before=before, after=_binding_snapshot(binding))
    return binding


# ---------- pulls ----------


def _campaign_matcher(session: Session, account_id: int) -> Callable[[str], int | None]:
    """Match a partner campaign label to an adstack campaign: by a trailing "(id)" (how adstack's tracking
    links name campaigns), else by exact name within the account."""
    rows = session.execute(select(Campaign.id, Campaign.name).where(Campaign.account_id == account_id)).all()
    by_id = {row.id for row in rows}
    by_name = {row.name: row.id for row in rows}
    pattern = re.compile(r"\((\d{1,18})\)\s*$")

    def match(label: str) -> int | None:
        found = pattern.search(label)
        if found and int(found.group(1)) in by_id:
            return int(found.group(1))
        return by_name.get(label.strip())

    return match


def _binding_settings(binding: AppBinding) -> BindingSettings:
    return BindingSettings(app_token=binding.app_token, utc_offset=binding.utc_offset,
                           attribution_type=binding.attribution_type, attribution_source=binding.attribution_source,
                           attribution_status=tuple(binding.attribution_status or ()),
                           ad_revenue_sources=tuple(binding.ad_revenue_sources or ()))


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
) -> PullRun:
    """Pull every enabled binding of a connection for [date_from, date_to] and replace those days' rows.

    The partner may take minutes (timeouts, retries, backoff), so no transaction is open meanwhile: what the
    calls need is read first and that transaction ends (committed, so nothing of the caller's is lost); the
    answers are then written in one short transaction, which the caller commits.
    """
    started_at = utcnow()
    connector = connector_factory(connection.partner)
    token = encryptor.decrypt(connection.token_ciphertext)
    targets = [(binding.id, _binding_settings(binding)) for binding in session.scalars(
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
                        date_from=date_from, date_to=date_to)


def _record_pull(session: Session, *, connection: PartnerConnection, fetched: list[_Fetched],
                 started_at: datetime, date_from: date, date_to: date) -> PullRun:
    run = PullRun(connection_id=connection.id, started_at=started_at, date_from=date_from, date_to=date_to,
                  status="running")
    session.add(run)
    match = _campaign_matcher(session, connection.account_id)
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
        merged: dict[tuple[date, str, str], dict[str, str]] = {}
        for row in result.rows or ():
            key = (row.day, row.campaign_label, row.country)
            merged.setdefault(key, {}).update(row.metrics)
        for (day, label, country), metrics in merged.items():
            session.add(PartnerMetricRow(binding_id=binding.id, account_id=binding.account_id,
                                         partner=connection.partner, day=day, campaign_label=label,
                                         campaign_id=match(label), country=country, metrics=metrics))
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
    start = date_from or end - timedelta(days=SETTLING_DAYS - 1)
    if start > end:
        raise ValidationFailed.single("date_from", "not_after_date_to", "date_from must not be after date_to",
                                      limit=end.isoformat(), actual=start.isoformat())
    if (end - start).days > 92:
        raise ValidationFailed.single("date_to", "max_range_days", "pull at most 93 days at once", limit=93,
                                      actual=(end - start).days + 1)
    return pull(session, connection=connection, encryptor=encryptor, connector_factory=connector_factory,
                date_from=start, date_to=end)


def scheduled_pull(session: Session, *, encryptor: Encryptor, connector_factory: ConnectorFactory) -> list[PullRun]:
    """The hourly job: the last SETTLING_DAYS days of every active connection."""
    today = utcnow().date()
    runs = []
    # Listed whole first: each pull ends the transaction a streaming result would still read from.
    for connection in session.scalars(select(PartnerConnection).where(
            PartnerConnection.status != ConnectionStatus.DISABLED.value)).all():
        runs.append(pull(session, connection=connection, encryptor=encryptor, connector_factory=connector_factory,
                         date_from=today - timedelta(days=SETTLING_DAYS - 1), date_to=today))
    return runs


def list_runs(session: Session, principal: Principal, connection_id: int, limit: int = 20) -> list[PullRun]:
    connection = get_connection(session, principal, connection_id)
    stmt = select(PullRun).where(PullRun.connection_id == connection.id).order_by(PullRun.id.desc()).limit(limit)
    return list(session.scalars(stmt))


# ---------- partner columns for reports ----------

# Column name -> how it is built from the partner's metrics of one (campaign, day).
PARTNER_COLUMNS: tuple[str, ...] = (
    "installs", "network_cost", "revenue", "roas",
    *(f"retention_d{n}" for n in (1, 3, 7)),
    *(f"revenue_d{n}" for n in (0, 1, 3, 7)),
    "roas_d7",
)


def _sum(rows: Sequence[PartnerMetricRow], metric: str) -> Decimal | None:
    values = [Decimal(r.metrics[metric]) for r in rows if metric in r.metrics]
    return sum(values, Decimal(0)) if values else None


def _weighted_rate(rows: Sequence[PartnerMetricRow], metric: str) -> Decimal | None:
    """Retention rates are per-country ratios: weight them by installs when summing countries."""
    pairs = [(Decimal(r.metrics[metric]), Decimal(r.metrics.get("installs", "0"))) for r in rows if metric in r.metrics]
    weight = sum((w for _, w in pairs), Decimal(0))
    if not pairs:
        return None
    if weight == 0:
        return sum((v for v, _ in pairs), Decimal(0)) / len(pairs)
    return sum((v * w for v, w in pairs), Decimal(0)) / weight


def partner_columns(
    session: Session, *, account_ids: set[int] | None, date_from: date, date_to: date, partner: str = "adjust"
) -> dict[tuple[int, date], dict[str, Decimal | None]]:
    """Partner metrics per (adstack campaign id, day), ready to join onto adstack's own report rows.

    Money columns are in the partner's reporting currency as decimals; rates are fractions.
    """
    stmt = select(PartnerMetricRow).where(PartnerMetricRow.partner == partner, PartnerMetricRow.day >= date_from,
                                          PartnerMetricRow.day <= date_to, PartnerMetricRow.campaign_id.is_not(None))
    if account_ids is not None:
        stmt = stmt.where(PartnerMetricRow.account_id.in_(account_ids))
    groups: dict[tuple[int, date], list[PartnerMetricRow]] = defaultdict(list)
    for row in session.scalars(stmt):
        assert row.campaign_id is not None
        groups[(row.campaign_id, row.day)].append(row)
    result: dict[tuple[int, date], dict[str, Decimal | None]] = {}
    for key, rows in groups.items():
        cost = _sum(rows, "network_cost")
        revenue = _sum(rows, "all_revenue")
        revenue_d7 = _sum(rows, "all_revenue_total_d7")
        columns: dict[str, Decimal | None] = {
            "installs": _sum(rows, "installs"),
            "network_cost": cost,
            "revenue": revenue,
            "roas": (revenue / cost) if revenue is not None and cost else _sum(rows, "roas"),
            "roas_d7": (revenue_d7 / cost) if revenue_d7 is not None and cost else None,
        }
        for n in (1, 3, 7):
            columns[f"retention_d{n}"] = _weighted_rate(rows, f"retention_rate_d{n}")
        for n in (0, 1, 3, 7):
            columns[f"revenue_d{n}"] = _sum(rows, f"all_revenue_total_d{n}")
        result[key] = columns
    return result


def pulled_rows(session: Session, principal: Principal, *, date_from: date, date_to: date,
                limit: int = 500) -> list[PartnerMetricRow]:
    stmt = select(PartnerMetricRow).where(PartnerMetricRow.day >= date_from, PartnerMetricRow.day <= date_to)
    visible = accounts.visible_account_ids(session, principal)
    if visible is not None:
        stmt = stmt.where(PartnerMetricRow.account_id.in_(visible))
    return list(session.scalars(stmt.order_by(PartnerMetricRow.day, PartnerMetricRow.id).limit(limit)))



class AdjustColumnSource:
    """Adjust's numbers as report columns, joined on campaign and day; where adstack measures the same thing
    (installs, cost, revenue) the report also shows the difference."""

    name = "adjust"

    def columns(self) -> list[ExtraColumn]:
        return [
            ExtraColumn("adjust_installs", "Adjust installs", "count", compare_to=Metric.INSTALLS),
            ExtraColumn("adjust_network_cost_micros", "Adjust network cost", "micros", compare_to=Metric.COST_MICROS),
            ExtraColumn("adjust_revenue_micros", "Adjust revenue", "micros", compare_to=Metric.REVENUE_MICROS),
            ExtraColumn("adjust_roas", "Adjust ROAS", "ratio", additive=False),
            ExtraColumn("adjust_roas_d7", "Adjust ROAS D7", "ratio", additive=False),
            *(ExtraColumn(f"adjust_retention_d{n}", f"Adjust retention D{n}", "ratio", additive=False)
              for n in (1, 3, 7)),
            *(ExtraColumn(f"adjust_revenue_d{n}_micros", f"Adjust cohort revenue D{n}", "micros")
              for n in (0, 1, 3, 7)),
        ]

    def fetch(self, session: Session, *, account_ids: list[int] | None, campaign_ids: list[int],
              start_date: date, end_date: date) -> dict[tuple[int, date], dict[str, int | Decimal | None]]:
        wanted = set(campaign_ids)
        columns = partner_columns(session, account_ids=None if account_ids is None else set(account_ids),
                                  date_from=start_date, date_to=end_date)
        result: dict[tuple[int, date], dict[str, int | Decimal | None]] = {}
        for (campaign_id, day), values in columns.items():
            if wanted and campaign_id not in wanted:
                continue
            installs = values["installs"]
            row: dict[str, int | Decimal | None] = {
                "adjust_installs": None if installs is None else int(installs),
                "adjust_network_cost_micros": _micros(values["network_cost"]),
                "adjust_revenue_micros": _micros(values["revenue"]),
                "adjust_roas": values["roas"],
                "adjust_roas_d7": values["roas_d7"],
            }
            for n in (1, 3, 7):
                row[f"adjust_retention_d{n}"] = values[f"retention_d{n}"]
            for n in (0, 1, 3, 7):
                row[f"adjust_revenue_d{n}_micros"] = _micros(values[f"revenue_d{n}"])
            result[(campaign_id, day)] = row
        return result


def _micros(value: Decimal | None) -> int | None:
    return None if value is None else to_micros(value)
