"""Stable 64-bit email keys, row fingerprints (and the mapping's digest).

Keys and fingerprints outlive the process (they are stored in the snapshot), so they come
from a fixed, specified hash, never from Python's ``hash``, which is salted per process.
Which hash is named in the snapshot (``Keying.name``): new snapshots use xxHash (XXH3 for
keys, XXH32 for fingerprints), fifteen times cheaper per row than BLAKE2b, which the
snapshots of earlier versions hold and which keeps being used for them, so a delta or
mirror run never compares keys of two different hashes. A row's fingerprint
(``Delta.skip_unchanged``) hashes its raw mapped values; with the mapping's digest in the
snapshot, the same values mean the same profile.
"""

from __future__ import annotations

import hashlib
from array import array
from dataclasses import dataclass
from typing import Any, Callable

import orjson
import xxhash

KeyFunction = Callable[[list[bytes]], array]


@dataclass(frozen=True)
class Keying:
    """How the keys and fingerprints a snapshot holds are made. ``email_keys``: a signed
    64-bit key of each lower-cased UTF-8 email (never 0, which marks an empty slot; 0 for an
    empty email: none). ``fingerprints``: 32 bits of a row's raw values joined by ``\\x1f``
    (never 0: 0 in a snapshot means "resend")."""

    name: str
    email_keys: KeyFunction
    fingerprints: KeyFunction


def _blake2b_email_keys(emails_lower: list[bytes]) -> array:
    blake2b, from_bytes = hashlib.blake2b, int.from_bytes  # inlined: this runs once per row
    return array("q", [from_bytes(blake2b(email, digest_size=8).digest(), "little", signed=True) or 1 if email else 0
                       for email in emails_lower])


def _blake2b_fingerprints(texts: list[bytes]) -> array:
    blake2b, from_bytes = hashlib.blake2b, int.from_bytes
    return array("I", [from_bytes(blake2b(text, digest_size=4).digest(), "little") or 1 for text in texts])


def _xxh3_email_keys(emails_lower: list[bytes]) -> array:
    keys = array("q")
    keys.frombytes(array("Q", map(xxhash.xxh3_64_intdigest, emails_lower)).tobytes())  # the same 64 bits, signed
    if 0 in keys or b"" in emails_lower:  # rare: mended one by one
        for i, email in enumerate(emails_lower):
            keys[i] = (keys[i] or 1) if email else 0
    return keys


def _xxh32_fingerprints(texts: list[bytes]) -> array:
    fps = array("I", map(xxhash.xxh32_intdigest, texts))
    if 0 in fps:
        for i, fp in enumerate(fps):
            fps[i] = fp or 1
    return fps


BLAKE2B = Keying("blake2b", _blake2b_email_keys, _blake2b_fingerprints)
XXH3 = Keying("xxh3", _xxh3_email_keys, _xxh32_fingerprints)
KEYINGS = {keying.name: keying for keying in (BLAKE2B, XXH3)}
NEW_SNAPSHOTS = XXH3


def run_keys(emails_lower: list[bytes]) -> array:
    """Keys for de-duplication within this process only (0 for an empty email): Python's own
    salted hash, where no key is kept or compared with a snapshot (a dry run with none yet).
    Two addresses share one as rarely as with a snapshot's keys."""
    return array("q", [hash(email) or 1 if email else 0 for email in emails_lower])


def mapping_digest(document: dict[str, Any]) -> str:
    """What decides a profile's attributes, in one short digest: a different one makes a full run."""
    return hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]
