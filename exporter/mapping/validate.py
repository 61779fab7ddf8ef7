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


def normalize_phone(value: str, region: str | None = None) -> str | None:
    """The number in E.164, or None if it is not a phone number.

    Numbers already international (``+`` or ``00``, then 8-15 digits, common punctuation
    ignored) take a fast path: most segment exports hold them, and this runs per row. Any
    other form (``(020) 7946 0000``, ``555-0100``) is parsed by ``phonenumbers`` (Google's
    libphonenumber) in the export's default ``region`` and must be a valid number there.
    """
    phone = _PHONE_PUNCTUATION.sub("", value)
    if phone.startswith("00"):
        phone = "+" + phone[2:]
    if _E164.fullmatch(phone):
        return phone
    if region is None:
        return None
    import phonenumbers  # only for local formats: its metadata loads on first use

    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def is_phone_region(region: str) -> bool:
    """A region ``phonenumbers`` knows (ISO 3166 alpha-2, e.g. ``GB``, ``US``)."""
    import phonenumbers

    return region in phonenumbers.SUPPORTED_REGIONS
