"""A run's sync stages around the pipeline: before reading, load the snapshot and decide
whether this run is a delta or a full one; after Klaviyo has finished, remove leavers
(mirror mode, behind the guard), then advance the snapshot to what the list now holds. A
dry run only counts and writes its preview; a failed run (or a leg that hands over) does
neither, so the snapshot never runs ahead of what Klaviyo imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from exporter.errors import ExportError
from exporter.klaviyo.client import KlaviyoClient
from exporter.ledger import JobLedger
from exporter.mapping import FieldMapping
from exporter.report import RunReport, utc_now
from exporter.sources.integrity import ReadIntegrity
from exporter.sync.clearing import clear_emptied
from exporter.sync.delta import SAMPLE_SIZE, Delta, header_for
from exporter.sync.keys import mapping_digest
from exporter.sync.mirror import Removal, checked_leaver_emails, damage_hold, guard, remove_leavers
from exporter.sync.plan import SyncPlan, write_preview
from exporter.sync.snapshot import Snapshot, SnapshotWriter, copy_emails, load_snapshot


def mapping_document(mapping: FieldMapping) -> dict[str, object]:
    document: dict[str, object] = {"email": mapping.email_column, "fields": mapping.fields,
                                   "phone_region": mapping.phone_region, "invalid_fields": mapping.invalid_fields}
    if mapping.types:  # absent without types: earlier snapshots keep their digest
        document["types"] = mapping.types
    if mapping.identity != ("email",):  # absent for email: earlier snapshots keep their digest
        document["identity"] = list(mapping.identity)
    if mapping.consent is not None:  # absent otherwise: snapshots of mappings without consent keep their digest
        document["consent"] = {c: [cols.column, cols.consented_at] for c, cols in mapping.consent.channels.items()}
    return document


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
            return Delta(None, True, None, self.workdir)
        snapshot = await load_snapshot(sync.store, self.workdir)
        if snapshot is not None and snapshot.header.list_id != self.list_id:
            self.reason = f"the snapshot is of list {snapshot.header.list_id!r}; this run starts one for this list"
            snapshot.close()
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
        return Delta(snapshot, self.full, None if self.dry_run else self.workdir, self.workdir)

    async def finish(self, delta: Delta, klaviyo: KlaviyoClient | None, report: RunReport, refused: set[int],
                     integrity: ReadIntegrity, ledger: JobLedger, deadline: float | None = None,
                     progress: Callable[[Removal], None] | None = None) -> bool:
        """Remove leavers (mirror mode) and advance the snapshot. True: the leg's time ran out
        while removing; the run hands over, and its next leg goes on from the ledger."""
        sync, snapshot = self.sync, self.snapshot
        if sync is None:
            return False
        leavers = delta.leavers() if snapshot is not None else []
        mirror = sync.mode == "mirror" and snapshot is not None
        held = damage_hold(integrity, len(leavers)) if mirror else None
        stopped = None
        if mirror and held is None:
            assert snapshot is not None
            stopped = guard(len(leavers), snapshot.members, report.counts.rows_read, sync.allow_mass_removal,
                            sync.max_remove_fraction)
        removal = Removal(leavers=len(leavers))
        emails = None
        if snapshot is not None and (leavers or klaviyo is not None):
            emails = await copy_emails(sync.store, snapshot, self.workdir / "old-emails.txt")
        removing = mirror and held is None and stopped is None and bool(leavers)
        if removing and klaviyo is not None and emails is not None:
            assert snapshot is not None
            found = checked_leaver_emails(emails, leavers, snapshot, delta.keying)
            earlier = ledger.removal()

            async def record(removal: Removal) -> None:
                ledger.record_removal(removal.to_document())
                await ledger.save()

            try:
                resumed = Removal.from_document(earlier) if earlier else None
            except ValueError:
                raise ExportError("the run's checkpoint holds a damaged removal record; nobody more was removed; "
                                  "start a new run") from None
            removal = await remove_leavers(klaviyo, self.list_id, found, deadline, progress, resumed, record)
            if removal.handed_over:
                return True
        elif mirror and not removing:
            removal.pending = len(leavers)  # held or guarded: all still in the snapshot
        counts = report.counts
        counts.removed, counts.remove_failed, counts.remove_pending = removal.removed, removal.failed, removal.pending
        report.sync = {"mode": sync.mode, "snapshot": sync.store.description, "full": self.full,
                       "full_reason": self.reason or None, "new": delta.new, "changed": delta.changed,
                       "unchanged": counts.unchanged, "leavers": len(leavers),
                       "would_remove": len(leavers) if removing else 0,
                       "not_on_list": removal.not_on_list, "removal_seconds": round(removal.seconds, 2),
                       "guard": stopped, "damage": held, "warnings_rechecked": delta.rechecked,
                       "warnings_tracked": delta.warned is not None,
                       "read_whole": integrity.whole, "preview": None}
        for hint in (held, stopped):
            if hint:
                report.hints.append(hint)
        if removal.failed:
            report.hints.append(f"{removal.failed:,} leaver(s) could not be looked up or removed (Klaviyo's answer "
                                "failed or was incomplete); they stay in the snapshot and the next run tries again")
        if klaviyo is None:
            if sync.preview is not None:
                sample = []
                if emails is not None and leavers:
                    assert snapshot is not None
                    sample = list(checked_leaver_emails(emails, leavers[:SAMPLE_SIZE], snapshot, delta.keying).values())
                write_preview(sync.preview, delta.samples, sample, leaver_note(sync.mode, held or stopped))
                report.sync["preview"] = str(sync.preview)
            return False
        if sync.clear_emptied and snapshot is not None and emails is not None and delta.tracked \
                and snapshot.header.fields_tracked and snapshot.header.mapping == self.digest:
            held_why = None
            if integrity.whole:
                clearing = await clear_emptied(klaviyo, self.list_id, delta.emptied(emails, refused), delta.tracked,
                                               deadline)
                report.sync["cleared_fields"] = clearing.fields if clearing.confirmed else 0
                report.sync["clearing_confirmed"] = clearing.confirmed
                if not clearing.confirmed:
                    held_why = (f"clearing not confirmed: Klaviyo did not finish the clearing job(s) cleanly for "
                                f"{clearing.fields:,} field(s); the next run clears them again")
            else:  # a shifted or cut record looks emptied: clear nothing; the next run looks again
                report.sync["cleared_fields"] = 0
                held_why = (f"clearing held: the segment was not read whole and undamaged ({integrity.why()}); "
                            "no emptied value was cleared")
            if held_why is not None:
                for at in delta.changed_fields:
                    snapshot.fps[at] = 0  # resent, and its emptied fields cleared, by the next clean run
                delta.changed_fields.clear()  # the snapshot keeps the fields it knew were set
                report.hints.append(held_why)
        writer = SnapshotWriter(self.workdir)
        delta.write(writer, emails, refused, removal.gone)
        header = header_for(self.list_id, self.digest, snapshot.header if snapshot else None, self.full,
                            report.run_id, utc_now(), delta.keying.name, bool(delta.tracked))
        path = writer.finish(header, delta.warned_members(refused, removal.gone))
        await sync.store.replace(path)
        report.sync["members"] = header.members
        return False


def leaver_note(mode: str, held: str | None) -> str:
    """What the preview says on each leaver's row."""
    if mode != "mirror":
        return "keep: add mode never removes anyone"
    if held:
        return "remove, but held: " + held.split(";")[0]
    return "remove"


def settle_status(report: RunReport) -> None:
    """Removals held (damage, guard) or left pending, and clearings Klaviyo did not confirm, make
    the run partial, never succeeded."""
    if report.status == "succeeded" and report.sync and (report.sync.get("guard") or report.sync.get("damage")
                                                         or report.counts.remove_pending
                                                         or report.sync.get("clearing_confirmed") is False):
        report.status = "partial"
