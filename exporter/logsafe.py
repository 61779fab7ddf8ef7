"""A logging filter that masks email addresses and Klaviyo keys, whatever logs them.

Our own code never logs either; this is the second line of defence for messages from
libraries (an HTTP client's debug output, an exception's text).
"""

from __future__ import annotations

import logging
import re

_EMAIL = re.compile(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_KEY = re.compile(r"\bpk_[A-Za-z0-9_]+")
_PHONE = re.compile(r"\+[1-9][0-9]{7,14}\b")


def redact(text: str) -> str:
    return _PHONE.sub("<phone>", _KEY.sub("pk_<redacted>", _EMAIL.sub("<email>", text)))


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def install(handler: logging.Handler) -> None:
    handler.addFilter(RedactingFilter())
