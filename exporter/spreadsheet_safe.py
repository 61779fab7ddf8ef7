"""Cells of the CSV files people open in a spreadsheet (rejects, preview), made inert.

Emails, file names, column names and reasons in those files come from the segment, and a
spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage
return before one) as a formula. OWASP's rule for CSV injection: prefix such a cell with
``'``, which spreadsheets show as text and hide. The file is still plain CSV; only these
human-facing files are touched, never what goes to Klaviyo.
"""

from __future__ import annotations

from typing import Iterable

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> object:
    if isinstance(value, str) and value.startswith(TRIGGERS):
        return "'" + value
    return value


def safe_row(row: Iterable[object]) -> list[object]:
    return [safe_cell(value) for value in row]
