"""De-duplication past the in-memory limit: a Bloom filter holds back the rows whose email it
may have seen, and they are resolved exactly once every row is read. Here the limit and the
filter are shrunk so that a small segment spills, and the filter errs often: duplicates are
never sent, each names the kept row's line wherever it sits (first, last, across the parts of
a folder), and a row held by mistake is sent after all, exactly as the in-memory table does."""

from __future__ import annotations

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


@pytest.mark.parametrize("bits", [1, 10])  # a filter that errs on most new keys, and one that rarely does
async def test_spilled_de_duplication_gives_exactly_what_the_table_gives(tmp_path: Path, start_simulator,
                                                                         monkeypatch, bits: int) -> None:
    exact_sim = await start_simulator()
    exact, exact_rejects = await export(tmp_path, exact_sim, "exact")
    monkeypatch.setattr(first_seen, "EXACT_LIMIT", 20)  # past 20 emails, the filter takes over
    monkeypatch.setattr(seen_filter, "MIN_BITS", 64)
    monkeypatch.setattr(seen_filter, "BITS_PER_KEY", bits)
    held: list[int] = []
    original = HeldRows.add

    def counting(self, chunk, positions, fingerprints):  # type: ignore[no-untyped-def]
        held.extend(positions)
        return original(self, chunk, positions, fingerprints)
    monkeypatch.setattr(HeldRows, "add", counting)
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
    monkeypatch.setattr(first_seen, "EXACT_LIMIT", 5)
    monkeypatch.setattr(seen_filter, "MIN_BITS", 64)
    monkeypatch.setattr(seen_filter, "BITS_PER_KEY", 1)
    held: list[int] = []
    original = HeldRows.add
    monkeypatch.setattr(HeldRows, "add", lambda self, chunk, positions, fps: (
        held.extend(positions), original(self, chunk, positions, fps))[1])
    spilled, spilled_members, (spilled_snapshot, spilled_rejects) = await two_runs("spilled")
    assert len(held) > 1000  # repeats, and new emails the filter took for seen
    assert spilled["counts"] == exact["counts"] and exact["counts"]["duplicates"] == 1000
    assert exact["counts"]["removed"] == 3000 and exact["sync"]["new"] == spilled["sync"]["new"] == 4000
    assert spilled_members == exact_members and len(exact_members) == 7000
    assert spilled_rejects == exact_rejects
    assert spilled_snapshot.keys == exact_snapshot.keys and spilled_snapshot.fps == exact_snapshot.fps
