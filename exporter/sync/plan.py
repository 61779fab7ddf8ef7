"""How one run keeps its list in step with its segment (the export's settings and the
run's own flags), and the preview a dry run writes."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from exporter.spreadsheet_safe import safe_row
from exporter.sync.delta import Samples
from exporter.sync.snapshot import SnapshotStore

MODES = ("add", "mirror")


@dataclass(frozen=True)
class SyncPlan:
    store: SnapshotStore  # where the export's snapshot lives
    mode: str = "add"  # add: only add and update; mirror: also remove leavers
    full: bool = False  # resend every member, changed or not
    full_every: int = 0  # every Nth run is a full one (0: never by itself)
    allow_mass_removal: bool = False
    max_remove_fraction: float = 0.5
    preview: Path | None = None  # a dry run's samples file
    clear_emptied: bool = False  # clear in Klaviyo a mapped value this export set that is empty now


def write_preview(path: Path, samples: Samples, leavers: list[str], leaver_note: str) -> None:
    """A few rows of each kind a run would touch, in line order (leavers, who have no line in
    this segment, last): line numbers and emails only. ``leaver_note`` is what would happen
    to the leavers (removed, kept in add mode, held and why), on each of their rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = sorted([(line, "add", email) for line, email in samples.new]
                  + [(line, "update", email) for line, email in samples.changed])
    would, _, note = leaver_note.partition(": ")
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(("would", "line", "email", "note"))
        writer.writerows(safe_row((kind, line, email, "")) for line, kind, email in rows)
        writer.writerows(safe_row((would, "", email, note)) for email in leavers)
