"""What travels on the runs queue (a run's next leg) and what a start answers."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import orjson

from exporter.config import EXPORT_NAME
from exporter.runs.store import is_run_id


@dataclass(frozen=True)
class RunMessage:
    run_id: str
    export: str
    source: str
    dry_run: bool = False
    leg: int = 0
    waits: int = 0
    full: bool = False  # resend every member
    allow_mass_removal: bool = False  # mirror mode: past the guard

    def encode(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def decode(cls, text: str) -> RunMessage:
        """A message from the queue, checked field by field (``ValueError`` if anything is off):
        whoever can write to the queue must not be able to address another run's files."""
        data = orjson.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not an object")
        message = cls(**{k: data[k] for k in ("run_id", "export", "source", "dry_run", "leg", "waits", "full",
                                              "allow_mass_removal") if k in data})
        if not (is_run_id(message.run_id) and isinstance(message.export, str) and EXPORT_NAME.fullmatch(message.export)
                and isinstance(message.source, str) and isinstance(message.dry_run, bool)
                and isinstance(message.full, bool) and isinstance(message.allow_mass_removal, bool)
                and _count(message.leg) and _count(message.waits)):
            raise ValueError("a field is missing or of the wrong shape")
        return message


@dataclass(frozen=True)
class StartResult:
    started: bool
    run_id: str  # the new run's id, or the id of the run that holds the export
    export: str


def _count(value: object) -> bool:
    return type(value) is int and 0 <= value < 1_000_000
