"""A run's sync stages around the pipeline: before reading, load the snapshot and decide
whether this run is a delta or a full one; after Klaviyo has finished, remove leavers
(mirror mode, behind the guard), then advance the snapshot to what the list now holds. A
dry run only counts and writes its preview; a failed run (or a leg that hands over) does
neither, so the snapshot never runs ahead of what Klaviyo imported.
"""

from __future__ import annotations

from pathlib import Path

from exporter.klaviyo.client import KlaviyoClient
from exporter.mapping import FieldMapping
from exporter.report import RunReport, utc_now
from exporter.sync.delta import SAMPLE_SIZE, Delta, header_for
from exporter.sync.keys import mapping_digest
from exporter.sync.mirror import Removal, guard, leaver_emails, remove_leavers
from exporter.sync.plan import SyncPlan, write_preview
from exporter.sync.snapshot import Snapshot, SnapshotWriter, copy_emails, load_snapshot


def mapping_document(mapping: FieldMapping) -> dict[str, object]:
    return {"email": mapping.email_column, "fields": mapping.fields, "phone_region": mapping.phone_region,
            "invalid_fields": mapping.invalid_fields}


class SyncRun:
    def __init__(self, sync: SyncPlan | None, list_id: str, mapping: FieldMapping, workdir: Path, dry_run: bool):
        self.sync, self.list_id, self.workdir, self.dry_run = sync, list_id, workdir, dry_run
        self.digest = mapping_digest(mapping_document(mapping))
        self.snapshot: Snapshot | None = None
        self.full = True
        self.reason = "no snapshot yet"

    async def open(self) -> Delta:
        """The run's delta against the export's snapshot (a plain de-duplicator without one)."""
        sync = self.sync
        if sync is None:
            return Delta(None, True, None)
        snapshot = await load_snapshot(sync.store)
        if snapshot is not None and snapshot.header.list_id != self.list_id:
            self.reason = f"the snapshot is of list {snapshot.header.list_id!r}; this run starts one for this list"
            snapshot = None
        elif snapshot is not None:
            header = snapshot.header
            if sync.full:
                self.reason = "a full run was asked for"
            elif header.mapping != self.digest:
                self.reason = "the mapping changed since the snapshot"
            elif sync.full_every and header.runs_since_full + 1 >= sync.full_every:
                self.reason = f"every {sync.full_every} runs one is full"
            else:
                self.full, self.reason = False, ""
        self.snapshot = snapshot
        return Delta(snapshot, self.full, None if self.dry_run else self.workdir)

    async def finish(self, delta: Delta, klaviyo: KlaviyoClient | None, report: RunReport, refused: set[int]) -> None:
        sync, snapshot = self.sync, self.snapshot
        if sync is None:
            return
        leavers = delta.leavers() if snapshot is not None else []
        stopped = None
        removal = Removal()
        emails = None
        if snapshot is not None and (leavers or klaviyo is not None):
            emails = await copy_emails(sync.store, snapshot, self.workdir / "old-emails.txt")
        if sync.mode == "mirror" and snapshot is not None:
            stopped = guard(len(leavers), len(snapshot.keys), report.counts.rows_read, sync.allow_mass_removal,
                            sync.max_remove_fraction)
            if stopped is None and leavers and klaviyo is not None and emails is not None:
                found = leaver_emails(emails, leavers)
                removal = await remove_leavers(klaviyo, self.list_id, found)
                removal.failed += len(leavers) - len(found)  # a member whose email the snapshot lost: kept
        report.counts.removed, report.counts.remove_failed = removal.removed, removal.failed
        report.sync = {"mode": sync.mode, "snapshot": sync.store.description, "full": self.full,
                       "full_reason": self.reason or None, "new": delta.new, "changed": delta.changed,
                       "unchanged": report.counts.unchanged, "leavers": len(leavers),
                       "would_remove": len(leavers) if sync.mode == "mirror" and stopped is None else 0,
                       "guard": stopped, "preview": None}
        if stopped is not None:
            report.hints.append(stopped)
        if klaviyo is None:
            if sync.preview is not None:
                sample = []
                if emails is not None and leavers:
                    sample = list(leaver_emails(emails, leavers[:SAMPLE_SIZE]).values())
                write_preview(sync.preview, delta.samples, sample)
                report.sync["preview"] = str(sync.preview)
            return
        writer = SnapshotWriter(self.workdir)
        delta.write(writer, emails, refused, removal.removed_positions)
        header = header_for(self.list_id, self.digest, snapshot.header if snapshot else None, self.full,
                            report.run_id, utc_now(), delta.keying.name)
        path = writer.finish(header)
        await sync.store.replace(path)
        report.sync["members"] = header.members


def settle_status(report: RunReport) -> None:
    """A guarded or partly failed removal makes the run partial, never succeeded."""
    if report.status == "succeeded" and report.sync and (report.sync.get("guard") or report.counts.remove_failed):
        report.status = "partial"
