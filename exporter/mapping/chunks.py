"""A block of rows, mapped and serialized: what the batcher packs into jobs.

Profiles are serialized here, one block at a time, comma-separated in one ``bytes`` with
their end offsets: the batcher then knows each profile's exact size (so the 5 MB job and
100 KB profile limits are checked on the bytes Klaviyo would receive), and a job's
payload is a join of slices (a whole run of profiles at once), with no second
serialization and no per-profile objects kept alive. Each profile also carries its line and a 64-bit hash of its lower-cased
email for de-duplication.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

import orjson

from exporter.klaviyo.limits import KLAVIYO_PROFILE_BYTES, MAX_PROFILE_BYTES
from exporter.mapping.consent import Consent
from exporter.mapping.mapper import ProfileMapper
from exporter.rejects import Reject
from exporter.sources.rows import RowBlock
from exporter.sync.keys import KeyFunction, run_keys


@dataclass(slots=True)
class MappedChunk:
    rows: int  # rows this chunk accounts for: profiles + rejects
    lines: array  # array('I'): source line of each profile
    keys: array  # array('q'): stable 64-bit key of each profile's lower-cased email
    emails: list[str]  # each profile's lower-cased email (for the snapshot of what the list holds)
    bodies: bytes  # the profiles' JSON, comma-separated: a run of profiles is one slice of a job's body
    ends: array  # array('I'): where each profile's JSON ends in ``bodies`` (the next starts one byte later)
    rejects: list[Reject]
    warnings: list[Reject]  # fields left out of profiles that were kept
    consents: dict[int, Consent] = field(default_factory=dict)  # position -> the row's consent to subscribe
    fields_set: array = field(default_factory=lambda: array("Q"))  # per profile, when fields are tracked

    def __len__(self) -> int:
        return len(self.lines)

    def start(self, index: int) -> int:
        return self.ends[index - 1] + 1 if index else 0

    def body(self, index: int) -> memoryview:
        return memoryview(self.bodies)[self.start(index):self.ends[index]]


def map_chunk(mapper: ProfileMapper, block: RowBlock, email_keys: KeyFunction = run_keys) -> MappedChunk:
    """Map and serialize one block, its emails keyed by ``email_keys`` (``Delta.email_keys``
    in a run; keys for this process only by default)."""
    profiles, rejects, warnings = mapper.map_block(block)
    parts: list[bytes] = []
    lines, ends = array("I"), array("I")
    emails: list[str] = []
    consents: dict[int, Consent] = {}
    fields_set = array("Q")
    total = 0
    for profile in profiles:
        body = orjson.dumps({"type": "profile", "attributes": profile.attributes})
        if len(body) > MAX_PROFILE_BYTES:
            rejects.append(oversized(profile.line, len(body)))
            continue
        total += len(body) + (1 if parts else 0)  # the comma before it
        parts.append(body)
        ends.append(total)
        if profile.consent is not None:
            consents[len(lines)] = profile.consent
        lines.append(profile.line)
        emails.append(profile.email_key)
        if mapper.tracked:
            fields_set.append(profile.fields_set)
    keys = email_keys([email.encode() for email in emails])
    return MappedChunk(len(block.rows) + len(block.rejects), lines, keys, emails, b",".join(parts), ends, rejects,
                       warnings, consents, fields_set)


def oversized(line: int, size: int) -> Reject:
    return Reject(line, "", f"profile is {size:,} bytes; Klaviyo allows {KLAVIYO_PROFILE_BYTES:,} "
                            f"(this exporter sends at most {MAX_PROFILE_BYTES:,})")
