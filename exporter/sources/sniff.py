"""What a file is, from its first bytes: a byte-order mark that names its text encoding, or
the signature of a file that is not text at all.

People export segments from Excel and other tools, and sometimes pick the wrong file: a
PNG, a workbook, a PDF. Without this, any of them would be read as one long CSV row and
fail with "column 'email' not found", which sends a person looking in the wrong place.
"""

from __future__ import annotations

from exporter.errors import SourceError

# Longest first: UTF-32 LE's mark starts with UTF-16 LE's.
BYTE_ORDER_MARKS = ((b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"),
                    (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))
SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"GIF87a", "a GIF image"), (b"GIF89a", "a GIF image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (an Excel .xlsx workbook is one: save it as \"CSV UTF-8\" instead)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Office document (an Excel .xls workbook: save it as \"CSV UTF-8\")"),
    (b"\x7fELF", "an executable (ELF)"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"SQLite format 3\x00", "an SQLite database"),
)
TEXT_ENCODINGS_A_MARK_OVERRIDES = ("utf-8", "utf-8-sig")  # the default: a mark says better


def encoding_from_mark(head: bytes, encoding: str) -> str:
    """The encoding a byte-order mark names (Excel's "Unicode text" is UTF-16 with one),
    unless the caller named another encoding than the default."""
    if encoding.lower().replace("_", "-") not in TEXT_ENCODINGS_A_MARK_OVERRIDES:
        return encoding
    for mark, name in BYTE_ORDER_MARKS:
        if head.startswith(mark):
            return name
    return encoding


def refuse_binary(head: bytes, encoding: str) -> None:
    """``SourceError`` naming what the file is, if its first bytes say it is not text."""
    for signature, what in SIGNATURES:
        if head.startswith(signature):
            raise SourceError(f"the file is {what}, not a segment file (CSV, JSON Lines or Parquet)")
    wide = encoding.lower().replace("_", "-").startswith(("utf-16", "utf-32"))
    if not wide and b"\x00" in head[:65536]:
        raise SourceError("the file holds NUL bytes, so it is binary, not text: a segment file is CSV, JSON Lines or "
                          "Parquet (for UTF-16 text without a byte-order mark, set --encoding utf-16)")
