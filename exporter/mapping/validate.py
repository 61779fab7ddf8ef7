"""Normalizers for the two identifiers Klaviyo checks strictly: email and phone.

Checking here, before a job is built, matters because Klaviyo validates a bulk job
all-or-nothing: one bad address would cost a whole 10,000-profile request.
"""

from __future__ import annotations

import re

MAX_EMAIL_CHARS = 254
MAX_LOCAL_PART_CHARS = 64

# RFC 5321 dot-atom local part; hostname labels; an alphabetic (or punycode) TLD.
_EMAIL = re.compile(
    r"(?!\.)(?!.*\.\.)[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}(?<!\.)"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+(?:[A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59})"
)
_PHONE_PUNCTUATION = re.compile(r"[\s().\-/]")
_E164 = re.compile(r"\+[1-9][0-9]{7,14}")


def normalize_email(value: str) -> str | None:
    """The trimmed address if it is one Klaviyo will accept, else None."""
    email = value.strip()
    if len(email) > MAX_EMAIL_CHARS or _EMAIL.fullmatch(email) is None:
        return None
    return email


def normalize_phone(value: str) -> str | None:
    """The number in E.164 (``+`` and 8-15 digits), accepting common punctuation and ``00``."""
    phone = _PHONE_PUNCTUATION.sub("", value)
    if phone.startswith("00"):
        phone = "+" + phone[2:]
    return phone if _E164.fullmatch(phone) else None
