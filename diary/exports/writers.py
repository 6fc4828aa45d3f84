"""Writers: one table to one file, CSV (default), Parquet or XLSX, consuming rows as a stream.

Conventions for analysts: UTF-8, a header row of snake_case names, ISO 8601 UTC times ending
in Z, booleans as TRUE/FALSE, and missing values as empty cells (never 0 or "NA"). TRUE/FALSE
is what both R's read.csv and pandas read as logical; R reads "true" as text.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

from ..vocabulary import ExportFormat
from .schema import BOOLEAN, DATETIME, INTEGER, NUMBER, Column

FORMATS = tuple(ExportFormat)
BATCH = 10_000


def iso_utc(moment: datetime) -> str:
    """2026-01-05T14:00:00Z, cut to the second. Formatted from the fields: 0.76 µs a time against
    1.1 µs for an aware time's ``isoformat`` and 1.8 µs for ``strftime`` (an export writes
    hundreds of thousands)."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return _ISO_UTC % (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)


_ISO_UTC = "%04d-%02d-%02dT%02d:%02d:%02dZ"


def cell_text(value) -> str:
    """A value as the CSV writer writes it (verify-archive compares recomputed values this way)."""
    if value is None:
        return ""
    if value is True:
        return "TRUE"
    if value is False:
        return "FALSE"
    if isinstance(value, datetime):
        return iso_utc(value)
    return str(value)


def write_csv(path: Path, columns: list[Column], rows, progress=None) -> int:
    """The csv module already writes None as an empty cell and numbers as text; only times and
    booleans need converting, so only those columns are touched."""
    count = 0
    convert = [i for i, c in enumerate(columns) if c.type in (DATETIME, BOOLEAN)]
    # Each column's last time and its text: a period's infusion start repeats on each of its
    # rows, a submission's times on each of its answers.
    last = {i: (None, "") for i in convert}
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow([c.name for c in columns])
        while True:
            batch = list(islice(rows, BATCH))
            if not batch:
                break
            if convert:
                converted = []
                for row in batch:
                    row = list(row)
                    for i in convert:
                        value = row[i]
                        if isinstance(value, datetime):
                            moment, text = last[i]
                            if value != moment:
                                text = iso_utc(value)
                                last[i] = value, text
                            row[i] = text
                        elif value is not None:
                            row[i] = cell_text(value)
                    converted.append(row)
                batch = converted
            writer.writerows(batch)
            count += len(batch)
            if progress:
                progress(len(batch))
    return count


def _arrow_type(column: Column):
    import pyarrow as pa

    return {INTEGER: pa.int64(), NUMBER: pa.float64(), BOOLEAN: pa.bool_(), DATETIME: pa.timestamp("s", tz="UTC")}.get(
        column.type, pa.string()
    )


def write_parquet(path: Path, columns: list[Column], rows, progress=None) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(c.name, _arrow_type(c)) for c in columns])
    count = 0
    with pq.ParquetWriter(path, schema) as writer:
        while True:
            batch = list(islice(rows, BATCH))
            if not batch and count:
                break
            arrays = [pa.array([row[i] for row in batch], type=schema.field(i).type) for i in range(len(columns))]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
            count += len(batch)
            if progress and batch:
                progress(len(batch))
            if not batch:
                break
    return count


def write_xlsx(path: Path, columns: list[Column], rows, progress=None, stats: dict | None = None) -> int:
    """One sheet per file, every cell typed: numbers as numbers, booleans as booleans, times as
    Excel date-times in UTC (the header says _utc; shown as yyyy-mm-dd hh:mm:ss), text as text.

    Text is always written as text, never as a formula: a participant's free text starting with
    "=", "+", "-" or "@" stays what they typed. Characters XML cannot hold (a vertical tab, NUL)
    are replaced by U+FFFD and counted in ``stats["xlsx_characters_replaced"]``, so one odd
    character never makes the whole export fail.
    """
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(path.stem[:31])
    sheet.append([c.name for c in columns])
    count = replaced = 0

    def cell(value):
        nonlocal replaced
        if isinstance(value, datetime):
            moment = WriteOnlyCell(sheet, value=value.astimezone(UTC).replace(tzinfo=None))
            moment.number_format = "yyyy-mm-dd hh:mm:ss"
            return moment
        if not isinstance(value, str):
            return value  # None, bool, int and float keep their types
        value, found = ILLEGAL_CHARACTERS_RE.subn("\ufffd", value)
        replaced += found
        text = WriteOnlyCell(sheet, value=value)
        text.data_type = "s"  # a string, whatever it starts with: never a formula
        return text

    while True:
        batch = list(islice(rows, BATCH))
        if not batch:
            break
        for row in batch:
            sheet.append([cell(v) for v in row])
        count += len(batch)
        if progress:
            progress(len(batch))
    workbook.save(path)
    _add_dimension(path, len(columns), count + 1)
    if stats is not None:
        stats["xlsx_characters_replaced"] = stats.get("xlsx_characters_replaced", 0) + replaced
    return count


def _add_dimension(path: Path, width: int, height: int) -> None:
    """Write the sheet's <dimension> (openpyxl's write-only mode leaves it out, so readers that
    trust it, and openpyxl's own read-only mode, see an empty or unsized sheet)."""
    import shutil
    import zipfile

    from openpyxl.utils import get_column_letter

    sheet_name = "xl/worksheets/sheet1.xml"
    dimension = f'<dimension ref="A1:{get_column_letter(max(width, 1))}{max(height, 1)}"/>'
    rewritten = path.with_suffix(".tmp")
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(rewritten, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == sheet_name and b"<dimension" not in data:
                data = data.replace(b"<sheetViews>", dimension.encode() + b"<sheetViews>", 1)
            target.writestr(item, data)
    shutil.move(rewritten, path)


WRITERS = {ExportFormat.CSV: write_csv, ExportFormat.PARQUET: write_parquet, ExportFormat.XLSX: write_xlsx}
