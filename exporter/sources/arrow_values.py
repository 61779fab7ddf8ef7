"""Arrow record batches as the Python values the row path maps: strings, numbers, booleans,
dates and times as they are (decimals as floats), anything else as its text.

Apart from the Parquet source, so a row block can turn its batch into rows without the
row types and the Parquet reader importing each other.
"""

from __future__ import annotations

from typing import Any, Sequence

from exporter.errors import SourceError


def python_rows(batch: Any) -> list[Sequence[object]]:
    """A record batch's rows as tuples of Python values (what the row path maps)."""
    import pyarrow as pa

    columns = [_as_python(column, pa).to_pylist() for column in batch.columns]
    return list(zip(*columns, strict=True)) if columns else [() for _ in range(batch.num_rows)]


def _as_python(column: Any, pa: Any) -> Any:
    """Strings, numbers, booleans, dates, times and nulls as their Python values (decimals as
    floats: Klaviyo's numbers are JSON numbers); anything else as its text."""
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_boolean(kind) \
            or pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind) \
            or (pa.types.is_timestamp(kind) and kind.unit != "ns") or pa.types.is_date(kind):
        return column
    if pa.types.is_decimal(kind):
        return column.cast(pa.float64())
    if pa.types.is_timestamp(kind):  # nanoseconds: Python's datetime holds microseconds
        return column.cast(pa.timestamp("us", kind.tz), safe=False)
    try:
        return column.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise SourceError(f"a Parquet column of type {kind} cannot be read as text") from None
