"""Masks personal data and keys in log records, whatever logs them.

Our own code puts no row value in a message (an error names a line and a column, never
what the row holds), because no pattern can tell a bare name in free text ("Jane Doe")
from any other words. This is the second line of defence, for what libraries
and exceptions carry: email addresses, phone numbers (international, and local ones
written with separators), values given for name-like keys, Klaviyo keys, and the text of
exceptions and tracebacks that pass through logging.

``install_everywhere`` redacts each record as it is made, so every handler sees the
masked record, including handlers added later by a host (the Functions worker's own).
"""

from __future__ import annotations

import logging
import re
from typing import Any

_EMAIL = re.compile(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_KEY = re.compile(r"\bpk_[A-Za-z0-9_]+")
# A run of digits and phone punctuation not glued to a word, a path or a port.
_PHONE_CANDIDATE = re.compile(r"(?<![\w.:/=-])\+?\(?\d[\d ().-]{5,}\d(?![\w.:/-])")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_NAME_VALUE = re.compile(
    r"""(?i)(["']?\b(?:first|last|full|given|family|middle|sur)?_?name\b["']?\s*[:=]\s*)("[^"]*"|'[^']*'|[^\s,;&}()\[\]"']+)""")


def _phone(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = sum(c.isdigit() for c in text)
    looks_like_phone = 7 <= digits <= 15 and (text.startswith("+") or any(c in " ().-" for c in text))
    if not looks_like_phone or _DATE.fullmatch(text.strip()):
        return text
    return "<phone>"


def redact(text: str) -> str:
    text = _EMAIL.sub("<email>", text)
    text = _KEY.sub("pk_<redacted>", text)
    text = _NAME_VALUE.sub(lambda m: m.group(1) + "<name>", text)
    return _PHONE_CANDIDATE.sub(_phone, text)


def redact_record(record: logging.LogRecord) -> None:
    """Mask the message, the exception text and the stack of one record, in place."""
    message = record.getMessage()
    cleaned = redact(message)
    if cleaned != message:
        record.msg, record.args = cleaned, None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
        record.exc_info = None  # the formatter would print the raw traceback again from it
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def install_everywhere() -> None:
    """Redact every record at creation (idempotent)."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "redacting", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        redact_record(record)
        return record

    factory.redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
