"""Rows held back while the run cannot yet tell whether their email was seen before
(``mapping.first_seen``): their profiles as mapped, with what else goes with them (the
row's consent and whether its record was damaged, the fields it set), spilled to a file in
the order held, and read back, once resolved, for the few to send after all."""

from __future__ import annotations

import tempfile
from array import array
from pathlib import Path
from typing import Iterator, Sequence

import orjson

from exporter.klaviyo.limits import MAX_PROFILES_PER_JOB
from exporter.mapping.chunks import MappedChunk
from exporter.mapping.consent import Consent


class HeldRows:
    def __init__(self, folder: Path):
        self._file = tempfile.TemporaryFile(dir=folder)  # noqa: SIM115 (closed with the run)
        self.count = 0

    def add(self, chunk: MappedChunk, positions: Sequence[int], fingerprints: dict[int, int],
            damaged: set[int]) -> list[int]:
        """Keep these profiles of ``chunk`` (``damaged``: the lines of its damaged records);
        returns the number each is held under."""
        first = self.count
        self._file.writelines(orjson.dumps(_record(chunk, i, fingerprints, damaged)) + b"\n" for i in positions)
        self.count += len(positions)
        return list(range(first, self.count))

    def read(self, wanted: array) -> Iterator[tuple[MappedChunk, dict[int, int], set[int]]]:
        """The held profiles numbered in ``wanted`` (ascending), as chunks the batcher takes,
        each with its rows' fingerprints by line and the lines of its damaged records."""
        self._file.seek(0)
        targets = iter(wanted)
        target = next(targets, None)
        records: list[dict] = []
        for number, raw in enumerate(self._file):
            if target is None:
                break
            if number == target:
                records.append(orjson.loads(raw))
                target = next(targets, None)
                if len(records) == MAX_PROFILES_PER_JOB:
                    yield _chunk(records)
                    records = []
        if records:
            yield _chunk(records)

    def close(self) -> None:
        self._file.close()


def _record(chunk: MappedChunk, i: int, fingerprints: dict[int, int], damaged: set[int]) -> dict:
    line = chunk.lines[i]
    record = {"l": line, "k": chunk.keys[i], "e": chunk.emails[i], "b": bytes(chunk.body(i)).decode("utf-8"),
              "f": fingerprints.get(line, 0)}
    consent = chunk.consents.get(i)
    if consent is not None:
        record["c"] = [consent.email, consent.phone, consent.at]
    if chunk.fields_set:
        record["t"] = chunk.fields_set[i]
    if line in damaged:
        record["d"] = 1
    return record


def _chunk(records: list[dict]) -> tuple[MappedChunk, dict[int, int], set[int]]:
    bodies = [record["b"].encode("utf-8") for record in records]
    ends, at = array("I"), -1
    for body in bodies:
        at += len(body) + 1
        ends.append(at)
    consents = {i: Consent(r["l"], *r["c"]) for i, r in enumerate(records) if "c" in r}
    fields_set = array("Q", [r["t"] for r in records]) if "t" in records[0] else array("Q")
    chunk = MappedChunk(0, array("I", [r["l"] for r in records]), array("q", [r["k"] for r in records]),
                        [r["e"] for r in records], b",".join(bodies), ends, [], [], consents, fields_set)
    return chunk, {r["l"]: r["f"] for r in records}, {r["l"] for r in records if "d" in r}
