"""Report downloads: every row of a report and its totals as CSV or XLSX, money in currency units."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from adstack.accounts.models import Principal
from adstack.core.errors import ValidationFailed
from adstack.core.money import MICROS_PER_UNIT
from adstack.events.service import EventStore
from adstack.reports.export import csv_bytes, xlsx_bytes
from adstack.reports.models import ColumnRead, ExportFormat, ReportQuery, ReportResult
from adstack.reports.service import run_report

EXPORT_MAX_ROWS = 100_000


# ---------- downloads ----------


def money_units(micros: int) -> Decimal:
    """An amount in the currency's units (never micros), exact to the micro: a file is for reconciling, and rows
    rounded to the cent stop adding up to the total (hours of 0.0022 each shown as 0.00)."""
    return (Decimal(int(micros)) / MICROS_PER_UNIT).quantize(Decimal("0.000001"))


def file_label(column: ColumnRead, currency: str | None) -> str:
    """A column's heading in a downloaded file: money is in currency units, so it names the currency (none when
    the rows mix currencies), never micros."""
    label = column.label.replace(" (micros)", "")
    return f"{label} ({currency})" if column.kind == "micros" and currency else label


def _table(result: ReportResult) -> tuple[list[str], list[list[Any]]]:
    header = [file_label(c, result.currency) for c in result.columns]
    kinds = {c.key: c.kind for c in result.columns}

    def cell(key: str, value: Any) -> Any:
        if value is None:
            return None
        if kinds[key] == "micros":
            return money_units(value)
        return Decimal(value) if kinds[key] == "ratio" else value

    body = [[cell(c.key, row.get(c.key)) for c in result.columns] for row in result.rows]
    total_row: list[Any] = ["Total" if i == 0 else None for i in range(len(result.columns))]
    for i, column in enumerate(result.columns):
        if column.key in result.totals:
            total_row[i] = cell(column.key, result.totals[column.key])
    return header, [*body, total_row]


def export_report(session: Session, principal: Principal, query: ReportQuery, export_format: ExportFormat, *,
                  store: EventStore | None = None) -> bytes:
    """Every row of the report (not one page) and the totals row, as CSV or XLSX, money in currency units."""
    full = query.model_copy(update={"limit": EXPORT_MAX_ROWS, "offset": 0})
    result = run_report(session, principal, full, store=store)
    if result.total_rows > EXPORT_MAX_ROWS:
        raise ValidationFailed.single("end_date", "max_export_rows",
                                      "too many rows to download at once; run a report job", limit=EXPORT_MAX_ROWS,
                                      actual=result.total_rows)
    header, rows = _table(result)
    return csv_bytes(header, rows) if export_format == ExportFormat.CSV else xlsx_bytes(header, rows)
