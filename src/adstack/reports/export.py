"""Report downloads: CSV and XLSX, written row by row, with spreadsheet formula injection neutralised.

CSV files start with a UTF-8 byte-order mark: without it Excel reads the file in the system's code page and
garbles Chinese names."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Protocol

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from adstack.core.csv_export import neutralise, to_csv

CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
BOM = "\ufeff"


class TableWriter(Protocol):
    def write_rows(self, rows: Iterable[Sequence[Any]]) -> None: ...

    def close(self) -> None: ...


class CsvWriter:
    def __init__(self, handle: IO[str], header: Sequence[str]):
        self._handle = handle
        handle.write(BOM)
        self._writer = csv.writer(handle)
        self._writer.writerow([neutralise(h) for h in header])

    def write_rows(self, rows: Iterable[Sequence[Any]]) -> None:
        self._writer.writerows([neutralise("" if v is None else v) for v in row] for row in rows)

    def close(self) -> None:
        self._handle.flush()


def _xlsx_value(value: Any) -> Any:
    """Numbers stay numbers; any text is stored as text, never as a formula."""
    if value is None or isinstance(value, bool | int | Decimal):
        return value
    return neutralise(str(value))


class XlsxWriter:
    def __init__(self, path: Path | IO[bytes], header: Sequence[str], *, title: str = "Report"):
        self._target = path
        self._book = Workbook(write_only=True)
        self._sheet: WriteOnlyWorksheet = self._book.create_sheet(title=title)
        self._append([str(h) for h in header])

    def _append(self, values: Sequence[Any]) -> None:
        cells = []
        for raw in values:
            value = _xlsx_value(raw)
            cell = WriteOnlyCell(self._sheet, value=value)
            if isinstance(value, str):
                cell.data_type = "s"  # openpyxl would read a leading '=' as a formula
            cells.append(cell)
        self._sheet.append(cells)

    def write_rows(self, rows: Iterable[Sequence[Any]]) -> None:
        for row in rows:
            self._append(list(row))

    def close(self) -> None:
        self._book.save(self._target)


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    return (BOM + to_csv(header, rows)).encode("utf-8")


def xlsx_bytes(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    buffer = io.BytesIO()
    writer = XlsxWriter(buffer, header)
    writer.write_rows(rows)
    writer.close()
    return buffer.getvalue()
