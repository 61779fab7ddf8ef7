"""Stable 64-bit email keys (and the mapping's digest).

Keys outlive the process (they are stored in the snapshot), so they come from BLAKE2b,
never from Python's ``hash``, which is salted per process. A row's fingerprint
(``Delta.skip_unchanged``) hashes its raw mapped values; with the mapping's digest in the
snapshot, the same values mean the same profile.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

_blake2b = hashlib.blake2b
_from_bytes = int.from_bytes


def email_key(email_lower: str) -> int:
    """A signed 64-bit key of a lower-cased email (never 0: 0 marks an empty slot)."""
    return _from_bytes(_blake2b(email_lower.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little",
                       signed=True) or 1


def mapping_digest(document: dict[str, Any]) -> str:
    """What decides a profile's attributes, in one short digest: a different one makes a full run."""
    return hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]
