"""Stable 64-bit email keys (and the mapping's digest).

Keys outlive the process (they are stored in the snapshot), so they come from BLAKE2b,
never from Python's ``hash``, which is salted per process. A row's fingerprint
(``Delta.skip_unchanged``) hashes its raw mapped values; with the mapping's digest in the
snapshot, the same values mean the same profile.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable

import orjson

_blake2b = hashlib.blake2b
_from_bytes = int.from_bytes


def email_key(email_lower: str) -> int:
    """A signed 64-bit key of a lower-cased email (never 0: 0 marks an empty slot)."""
    return _key(email_lower.encode("utf-8", "surrogatepass"))


def _key(email: bytes) -> int:
    return _from_bytes(_blake2b(email, digest_size=8).digest(), "little", signed=True) or 1


def email_keys(emails_lower: Iterable[bytes]) -> list[int]:
    """``email_key`` of each UTF-8 email, in one pass (0 for an empty one: no email)."""
    blake2b, from_bytes = _blake2b, _from_bytes  # inlined: this runs once per row
    return [from_bytes(blake2b(email, digest_size=8).digest(), "little", signed=True) or 1 if email else 0
            for email in emails_lower]


def run_keys(emails_lower: Iterable[bytes]) -> list[int]:
    """Keys for de-duplication within this process only (0 for an empty email): Python's own
    salted hash, over ten times cheaper than BLAKE2b, where no key is kept or compared with a
    snapshot (a dry run with none yet). Two addresses share one as rarely as with ``email_keys``."""
    return [hash(email) or 1 if email else 0 for email in emails_lower]


def fingerprints(texts: Iterable[bytes]) -> list[int]:
    """A row's fingerprint: the first 32 bits of BLAKE2b over its raw values joined by
    ``\x1f`` (never 0: 0 in a snapshot means "resend")."""
    blake2b, from_bytes = _blake2b, _from_bytes
    return [from_bytes(blake2b(text, digest_size=4).digest(), "little") or 1 for text in texts]


def mapping_digest(document: dict[str, Any]) -> str:
    """What decides a profile's attributes, in one short digest: a different one makes a full run."""
    return hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]
