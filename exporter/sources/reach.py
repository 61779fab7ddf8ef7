"""What blob names a run may read: inside the segments container, under its export's path.

A source arrives from an HTTP body, an exports document, a blob event or a queue message,
and all of them are untrusted. The name is checked as a name (no way to climb out of the
container or to smuggle a separator past a decoder), then against the export's own bound
path or prefix, so no request can read another container (the host's key store, say) or
another export's file. The SDK quotes the name when it builds the URL, so a name that
passes here addresses exactly that blob.
"""

from __future__ import annotations

import re
import unicodedata

from exporter.errors import ExportError

MAX_BLOB_NAME = 1024  # Azure's limit on a blob name
_ENCODED_SEPARATOR = re.compile(r"%(?:2e|2f|5c)", re.IGNORECASE)


class OutOfReach(ExportError):
    """A source names a blob the export may not read; ``str()`` says which rule it broke."""


def checked_blob_name(name: object, *, prefix_allowed: bool = False) -> str:
    """``name`` if it is a plain relative blob name (or, with ``prefix_allowed``, a prefix
    ending in ``/``); otherwise ``OutOfReach`` naming the rule."""
    if not isinstance(name, str) or not name:
        raise OutOfReach("the source must be a non-empty blob path inside the segments container")
    if len(name) > MAX_BLOB_NAME:
        raise OutOfReach(f"the source is longer than {MAX_BLOB_NAME} characters")
    if "://" in name or name.startswith("/"):
        raise OutOfReach("the source must be a path inside the segments container, not a URL or an absolute path")
    if "\\" in name:
        raise OutOfReach("the source may not contain backslashes")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        raise OutOfReach("the source may not contain control or invisible formatting characters")
    if _ENCODED_SEPARATOR.search(name):
        raise OutOfReach("the source may not contain percent-encoded dots, slashes or backslashes (%2e, %2f, %5c)")
    segments = name.split("/")
    if prefix_allowed and name.endswith("/"):
        segments.pop()
    if any(segment in ("", ".", "..") for segment in segments):
        raise OutOfReach("the source may not contain empty, '.' or '..' path segments")
    return name


def within(bound: str, name: str) -> bool:
    """Is ``name`` the export's bound blob, or below its bound prefix (a path ending in ``/``)?"""
    return name.startswith(bound) and name != bound if bound.endswith("/") else name == bound


def reachable(export_name: str, bound: str, name: object) -> str:
    """``name``, checked as a blob name and against the export's bound path or prefix."""
    checked = checked_blob_name(name)
    if not within(bound, checked):
        where = f"under {bound!r}" if bound.endswith("/") else f"{bound!r}"
        raise OutOfReach(f"export {export_name!r} may only read {where}; the source is outside it")
    return checked
