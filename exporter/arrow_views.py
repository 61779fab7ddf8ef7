"""Python ``array``s (and a ``bytearray``) seen as Arrow arrays over the same memory: Arrow's
kernels then sort, search and match millions of keys, lines and flags without a copy or a
Python int per value."""

from __future__ import annotations

from array import array
from typing import Any

_TYPES = {"q": "int64", "I": "uint32", "B": "uint8"}


def arrow_view(values: array | bytearray) -> Any:
    """``values`` (typecode q, I or B; a bytearray as B) as an Arrow array sharing its memory,
    valid while ``values`` is neither resized nor freed."""
    import pyarrow as pa

    typecode = values.typecode if isinstance(values, array) else "B"
    return pa.Array.from_buffers(getattr(pa, _TYPES[typecode])(), len(values), [None, pa.py_buffer(values)])
