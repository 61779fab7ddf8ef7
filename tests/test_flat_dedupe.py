"""De-duplication past the in-memory limit: a Bloom filter holds back the rows whose email it
may have seen, and they are resolved exactly once every row is read. Here the limit and the
filter are shrunk so that a small segment spills, and the filter errs often: duplicates are
never sent, each names the kept row's line wherever it sits (first, last, across the parts of
a folder), and a row held by mistake is sent after all, exactly as the in-memory table does."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path

import pytest

from exporter.mapping import FieldMapping, first_seen, seen_filter
from exporter.pipeline import ExportPlan, PipelineOptions, run_export
from exporter.rejects import RejectsFile
from exporter.sources.parts import resolve_folder
from exporter.sync.held import HeldRows
from tests.conftest import LIST_ID, client_for
from tests.test_cdm_folders import LocalFolder
from tests.test_sync import every_key

FAST = PipelineOptions(poll_interval=0.02)


def rows() -> list[str]:
    """300 emails; duplicates of the first row, of the last, and scattered, in any case."""
    emails = [f"person{n}@example.com" for n in range(300)]
    lines = list(emails)
    lines.insert(150, emails[0].upper())  # a duplicate of the first row, in the middle
    lines += [emails[299], emails[7], "PERSON7@example.com", emails[0]]  # of the last row, and repeats
    return lines


def write_parts(root: Path, lines: list[str]) -> Path:
    """The rows as a folder run of three part files (a duplicate may cross from one to another)."""
    run = root / "2026" / "run1"
    run.mkdir(parents=True)
    third = len(lines) // 3
    for number, part in enumerate((lines[:third], lines[third:2 * third], lines[2 * third:])):
        (run / f"part{number}.csv").write_text("email,first_name\n" + "".join(f"{e},N\n" for e in part))
    return root


async def export(tmp_path: Path, sim, name: str) -> tuple[dict, list[dict[str, str]]]:
    source = await resolve_folder(LocalFolder(write_parts(tmp_path / name, rows())))
    rejects = RejectsFile(tmp_path / f"{name}.csv", always=True)
    plan = ExportPlan("t", source, LIST_ID, FieldMapping("email", {"first_name": "first_name"}))
    async with client_for(sim) as client:
        report = await run_export(plan, client, rejects, options=FAST)
    with (tmp_path / f"{name}.csv").open() as file:
        return report.to_dict(), list(csv.DictReader(file))


def spill_past(limit: int, monkeypatch: pytest.MonkeyPatch, bits_per_key: int = 1) -> list[int]:
    """The exact table shrunk to ``limit`` emails and the filter to ``bits_per_key`` (1: it takes
    most new emails for seen); returns the lines of the rows held back, as they are held."""
    monkeypatch.setattr(first_seen, "EXACT_LIMIT", limit)
    monkeypatch.setattr(seen_filter, "MIN_BITS", 64)
    monkeypatch.setattr(seen_filter, "BITS_PER_KEY", bits_per_key)
    held: list[int] = []
    original = HeldRows.add

    def recording(self, chunk, positions, fingerprints, damaged):  # type: ignore[no-untyped-def]
        held.extend(chunk.lines[i] for i in positions)
        return original(self, chunk, positions, fingerprints, damaged)
    monkeypatch.setattr(HeldRows, "add", recording)
    return held


@pytest.mark.parametrize("bits", [1, 10])  # a filter that errs on most new keys, and one that rarely does
async def test_spilled_de_duplication_gives_exactly_what_the_table_gives(tmp_path: Path, start_simulator,
                                                                         monkeypatch, bits: int) -> None:
    exact_sim = await start_simulator()
    exact, exact_rejects = await export(tmp_path, exact_sim, "exact")
    held = spill_past(20, monkeypatch, bits)
    spilled_sim = await start_simulator()
    spilled, spilled_rejects = await export(tmp_path, spilled_sim, "spilled")
    assert len(held) > 5 if bits == 1 else len(held) >= 5  # held: the 5 duplicates, and new emails by mistake
    assert spilled["counts"] == exact["counts"] and exact["counts"]["duplicates"] == 5
    c = spilled["counts"]
    assert c["rows_read"] == c["sent"] + c["rejected"] + c["duplicates"] + c["unchanged"] == 305
    assert sorted(map(dict.items, spilled_rejects)) == sorted(map(dict.items, exact_rejects))
    reasons = {(r["file"], r["line"]): r["reason"] for r in spilled_rejects}
    first, last = "2026/run1/part0.csv", "2026/run1/part2.csv"
    assert reasons == {  # each names the kept row's line, in whichever part it was
        ("2026/run1/part1.csv", "51"): f"duplicate of line 2 of {first}",  # of the first row, a part later
        (last, "101"): f"duplicate of line 100 of {last}",  # of the last row
        (last, "102"): f"duplicate of line 9 of {first}",
        (last, "103"): f"duplicate of line 9 of {first}",  # the same email in another case
        (last, "104"): f"duplicate of line 2 of {first}"}
    assert sorted(spilled_sim.simulator.account.member_emails(LIST_ID)) == sorted(
        exact_sim.simulator.account.member_emails(LIST_ID))
    assert len(spilled_sim.simulator.account.member_emails(LIST_ID)) == 300  # each email once, none lost
    assert spilled_sim.simulator.stats.profiles_received == 300  # no duplicate was ever sent


async def test_a_mirror_refresh_that_spills_writes_the_same_snapshot_as_one_that_does_not(
        tmp_path: Path, start_simulator, monkeypatch) -> None:
    """A delta run against a snapshot, with new emails (some repeated) past the shrunk limit:
    counts, rejects, the list and the next snapshot are those of the exact table."""
    from exporter.sync.plan import SyncPlan
    from exporter.sync.snapshot import LocalSnapshotStore, load_snapshot

    name = "N" * 40  # rows long enough for the second file to be read in several blocks
    first = "email,first_name\n" + "".join(f"member{n}@example.com,{name}\n" for n in range(6000))
    second = "email,first_name\n" + "".join(f"member{n}@example.com,{'X' if n % 10 == 0 else name}\n"
                                            for n in range(0, 6000, 2))
    second += "".join(f"new{n % 4000}@example.com,{name}\n" for n in range(5000))  # 4,000 new, 1,000 twice
    (tmp_path / "first.csv").write_text(first)
    (tmp_path / "second.csv").write_text(second)

    async def two_runs(name: str) -> tuple[dict, list[str], object]:
        sim = await start_simulator()
        state = tmp_path / name
        for source in ("first.csv", "second.csv"):
            plan = ExportPlan("t", str(tmp_path / source), LIST_ID, FieldMapping("email", {"first_name": "first_name"}),
                              sync=SyncPlan(LocalSnapshotStore(state), "mirror"))
            async with client_for(sim) as client:
                report = await run_export(plan, client, RejectsFile(tmp_path / f"{name}-{source}.rejects"), options=FAST)
        snapshot = await load_snapshot(LocalSnapshotStore(state))
        rejects = (tmp_path / f"{name}-second.csv.rejects").read_text()
        return report.to_dict(), sorted(sim.simulator.account.member_emails(LIST_ID)), (snapshot, rejects)

    exact, exact_members, (exact_snapshot, exact_rejects) = await two_runs("exact")
    held = spill_past(5, monkeypatch)
    spilled, spilled_members, (spilled_snapshot, spilled_rejects) = await two_runs("spilled")
    assert len(held) > 1000  # repeats, and new emails the filter took for seen
    assert spilled["counts"] == exact["counts"] and exact["counts"]["duplicates"] == 1000
    assert exact["counts"]["removed"] == 3000 and exact["sync"]["new"] == spilled["sync"]["new"] == 4000
    assert spilled_members == exact_members and len(exact_members) == 7000
    assert spilled_rejects == exact_rejects
    assert every_key(spilled_snapshot) == every_key(exact_snapshot) and spilled_snapshot.fps == exact_snapshot.fps


async def test_rows_repeating_snapshot_members_name_the_kept_line_once_every_row_is_read(
        tmp_path: Path, start_simulator, monkeypatch) -> None:
    """In a delta run a member's first line goes to disk, not memory: a row repeating a member
    (unchanged or changed, in another case, first or last in the file) is never sent, and is
    listed with the line of the member's first row, read back from the pairs on disk in
    several passes."""
    from exporter.sync import seen_members
    from exporter.sync.plan import SyncPlan
    from exporter.sync.snapshot import LocalSnapshotStore, load_snapshot

    monkeypatch.setattr(seen_members, "PAIRS_BUFFERED", 7)  # pairs written out every few rows
    monkeypatch.setattr(seen_members, "RESOLVED_AT_ONCE", 3)  # and read back a few at a time
    emails = [f"member{n}@example.com" for n in range(400)]
    (tmp_path / "first.csv").write_text("email,first_name\n" + "".join(f"{e},A\n" for e in emails))
    rows = [f"{e},{'B' if n % 50 == 0 else 'A'}" for n, e in enumerate(emails[:300])]  # 6 changed, 100 leave
    rows.insert(120, f"{emails[0].upper()},A")  # repeats the first row (line 2), unchanged by then
    rows.insert(200, f"{emails[50]},C")  # repeats a changed member (line 52), with other values
    rows.append(f"{emails[299]},A")  # repeats the last member's row (line 303, with the two above)
    rows.append("fresh@example.com,A")
    rows.append("FRESH@example.com,A")  # a new email repeated: the table's duplicate, as before
    (tmp_path / "second.csv").write_text("email,first_name\n" + "\n".join(rows) + "\n")
    sim = await start_simulator()
    state = tmp_path / "state"
    for name in ("first.csv", "second.csv"):
        plan = ExportPlan("t", str(tmp_path / name), LIST_ID, FieldMapping("email", {"first_name": "first_name"}),
                          sync=SyncPlan(LocalSnapshotStore(state), "mirror"))
        async with client_for(sim) as client:
            report = await run_export(plan, client, RejectsFile(tmp_path / f"{name}.rejects"), options=FAST)
    with (tmp_path / "second.csv.rejects").open() as file:
        reasons = {row["line"]: row["reason"] for row in csv.DictReader(file)}
    assert reasons == {"122": "duplicate of line 2", "202": "duplicate of line 52",
                       "304": "duplicate of line 303", "306": "duplicate of line 305"}
    counts = report.counts
    assert (counts.duplicates, counts.sent, counts.unchanged, counts.removed) == (4, 7, 294, 100)
    assert report.status == "succeeded" and counts.unsent == 0
    assert sorted(sim.simulator.account.member_emails(LIST_ID)) == sorted(emails[:300] + ["fresh@example.com"])
    assert sim.simulator.stats.profiles_received == 400 + 7  # no repeat was ever sent
    snapshot = await load_snapshot(LocalSnapshotStore(state))
    assert snapshot is not None and snapshot.members == 301


@pytest.mark.parametrize("damaged", [False, True])
async def test_consent_and_clearing_exports_spill_too_and_end_as_the_exact_table_does(
        tmp_path: Path, start_simulator, monkeypatch, damaged: bool) -> None:
    """Rows held back carry their consent, their damaged-record mark and the fields they set:
    a subscribing, clearing mirror export past the shrunk limit subscribes, clears, sends,
    lists and records exactly what the exact table does; a held duplicate's consent and a
    held damaged record's consent subscribe nobody (and the damage holds all clearing)."""
    from exporter.mapping.consent import ConsentColumns, ConsentMapping
    from exporter.sync.plan import SyncPlan
    from exporter.sync.snapshot import LocalSnapshotStore, copy_emails, load_snapshot

    pad = "P" * 2000  # an unmapped column: the file is read in several blocks, past the first the filter's
    first = "email,city,email_opt_in,email_at,pad\n" + "".join(f"member{n}@example.com,Paris,,,\n" for n in range(60))
    second = ["email,city,email_opt_in,email_at,pad"]
    second += [f"member{n}@example.com,{'' if n < 20 else 'Paris'},,,{pad}" for n in range(60)]  # 20 cities emptied
    second += [f"new{n}@example.com,Rome,{'yes' if n % 3 == 0 else ''},2026-01-01T00:00:00Z,{pad}" for n in range(200)]
    second += [f"NEW{n}@example.com,Rome,yes,2026-02-01T00:00:00Z,{pad}" for n in range(1, 200, 5)]  # consenting repeats
    if damaged:
        second += [f'stray@example.com,"Oslo,yes,2026-01-01T00:00:00Z,{pad}',  # a stray quote: one damaged record
                   f'b@example.com,x"y,yes,2026-01-01T00:00:00Z,{pad}']
    second.append(f"last@example.com,Rome,yes,2026-01-01T00:00:00Z,{pad}")
    (tmp_path / "first.csv").write_text(first)
    (tmp_path / "second.csv").write_text("\n".join(second) + "\n")
    mapping = FieldMapping("email", {"location.city": "city"},
                           consent=ConsentMapping({"email": ConsentColumns("email_opt_in", "email_at")}))

    async def two_runs(name: str) -> tuple[dict, dict[str, object], tuple[list[int], object, bytes]]:
        sim = await start_simulator(rate_limits=False)
        state = tmp_path / name
        for source in ("first.csv", "second.csv"):
            plan = ExportPlan("t", str(tmp_path / source), LIST_ID, mapping,
                              sync=SyncPlan(LocalSnapshotStore(state), "mirror", clear_emptied=True))
            async with client_for(sim) as client:
                report = await run_export(plan, client, RejectsFile(tmp_path / f"{name}-{source}.rejects"),
                                          options=FAST)
        account = sim.simulator.account
        await jobs_done(account)
        seen = {email: (account.attributes(pid).get("location"), account.consent(pid).resource()["email"]["marketing"]
                        ["consent"])
                for email in account.member_emails(LIST_ID) for pid in account.profile_ids_by_email([email])}
        snapshot = await load_snapshot(LocalSnapshotStore(state))
        assert snapshot is not None
        emails = await copy_emails(LocalSnapshotStore(state), snapshot, tmp_path / f"{name}-emails.txt")
        rejects = (tmp_path / f"{name}-second.csv.rejects").read_bytes()
        return report.to_dict(), seen, (every_key(snapshot), snapshot.fps, emails.read_bytes() + rejects)

    exact, exact_seen, exact_state = await two_runs("exact")
    held_lines = spill_past(5, monkeypatch)
    spilled, spilled_seen, spilled_state = await two_runs("spilled")
    consenting_held = [line for line in held_lines if line < 262 and (line - 62) % 3 == 0]  # new{n}: line 62 + n
    assert len(held_lines) > 100 and len(consenting_held) > 10 and (302 in held_lines) == damaged  # 302: the stray
    assert spilled["counts"] == exact["counts"] and spilled["sync"] == {**exact["sync"], "snapshot": spilled["sync"]
                                                                         ["snapshot"]}
    assert exact["counts"]["subscribed"] == 67 + 1 and exact["counts"]["duplicates"] == 40
    assert exact["sync"]["cleared_fields"] == (0 if damaged else 20)
    assert spilled_seen == exact_seen and len(exact_seen) == 60 + 200 + 1 + damaged
    assert exact_seen["new1@example.com"][1] != "SUBSCRIBED" and exact_seen["last@example.com"][1] == "SUBSCRIBED"
    if damaged:
        assert exact_seen["stray@example.com"][1] != "SUBSCRIBED"
    assert spilled_state == exact_state


async def jobs_done(account) -> None:  # type: ignore[no-untyped-def]
    """The run hands its clearing job to Klaviyo and ends without waiting for it: wait until
    the simulator has applied every job before reading profiles."""
    for _ in range(1_000):
        if all(job.status == "complete" for job in list(account.jobs.values())):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the simulator's jobs did not finish")
