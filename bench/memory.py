"""Memory at scale: synthetic segments (local files) of 1M, 10M or 50M rows exported in
mirror mode to the simulator without rate limits, then refreshed with 1% of rows changed,
added and removed (a delta run); or dry runs alone. Writes peak RSS, wall time and snapshot
size into BENCHMARKS.md's ``memory`` and ``memory-dry`` sections.

    .venv/bin/python -m bench.memory [--rows 1000000,10000000,50000000]
    .venv/bin/python -m bench.memory --dry-runs 1000000,10000000,50000000
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench.run import ROOT, export_process, replace_section, simulator
from devtools.sample import refreshed_lines, segment_lines

START, END = "<!-- memory:start -->", "<!-- memory:end -->"
DRY_START, DRY_END = "<!-- memory-dry:start -->", "<!-- memory-dry:end -->"


def dry_runs(sizes: list[int], output: Path) -> None:
    """Peak RSS of a dry run (the CLI, a local CSV of unique synthetic profiles, no key) at each size."""
    started = datetime.now(UTC)
    results = []
    for rows in sizes:
        folder = Path(tempfile.mkdtemp(prefix="bench-memory-dry-"))
        source = folder / "segment.csv"
        with source.open("w") as out:
            out.writelines(segment_lines(rows))
        run = export_process(None, None, str(source), str(folder / "state"), True)
        counts = run.report["counts"]
        results.append(f"| {rows:,} | {run.report['status']} | {counts['rows_read']:,} | {counts['sent']:,} "
                       f"| {counts['duplicates']:,} | {run.wall:.1f} | {rows / run.wall:,.0f} | {run.peak_mb:.0f} |")
        source.unlink()
        print(results[-1], flush=True)
    text = "\n".join([
        f"Measured {started:%Y-%m-%d %H:%M} UTC. Dry runs (`python -m bench.memory --dry-runs N,...`): the CLI on a "
        "local CSV of unique synthetic profiles, no key. Past 2,000,000 emails de-duplication spills: a Bloom filter "
        "(10 bits an email) in memory, the (email key, line) pairs on disk, rows the filter may have seen held back "
        "and resolved exactly at the end.",
        "",
        "| rows | status | rows read | would send | duplicates | wall (s) | profiles/s | peak RSS (MB) |",
        "|---|---|---|---|---|---|---|---|",
        *results,
        "",
        "Targets: <= 150 MB at 1M, <= 200 MB at 10M, <= 256 MB at 50M.",
    ])
    replace_section(output, DRY_START, DRY_END, text)


def delta_runs(sizes: list[int], output: Path) -> None:
    """At each size: a full mirror run to the simulator, then the refreshed segment's delta run
    against the snapshot it left."""
    started = datetime.now(UTC)
    results = []
    for rows in sizes:
        every = 100
        folder = Path(tempfile.mkdtemp(prefix="bench-memory-"))
        full, refreshed = folder / "full.csv", folder / "refreshed.csv"
        with full.open("w") as out:
            out.writelines(segment_lines(rows))
        with refreshed.open("w") as out:
            out.writelines(refreshed_lines(rows, changed=range(0, rows, every), removed=range(every // 2, rows, every),
                                           added=rows // every))
        state = str(folder / "state")
        # The simulator counts what it imports without keeping it: it could not hold 50M profiles
        # here, and what it keeps does not change the exporter's memory.
        with simulator(False, "--forget-profiles") as sim:
            for name, source in (("full", full), ("delta: 1% changed, 1% added, 1% gone", refreshed)):
                run = export_process(None, sim.url, str(source), state, False, "--mode", "mirror")
                counts, sync = run.report["counts"], run.report["sync"]
                snapshot_mb = (folder / "state" / "snapshot.bin").stat().st_size / 1e6
                results.append(f"| {rows:,} | {name} | {run.report['status']} | {counts['rows_read']:,} "
                               f"| {counts['sent']:,} | {counts['unchanged']:,} | {sync['leavers']:,} "
                               f"| {run.wall:.1f} | {run.peak_mb:.0f} | {snapshot_mb:.0f} |")
                print(results[-1], flush=True)
        for file in (full, refreshed):
            file.unlink()
        shutil.rmtree(folder, ignore_errors=True)
    text = "\n".join([
        f"Measured {started:%Y-%m-%d %H:%M} UTC. Delta runs (`python -m bench.memory --rows N,...`): at each size, "
        "a local CSV exported in mirror mode to "
        "the simulator with rate limits off, then the same segment refreshed (1% renamed, 1% new, 1% gone) and "
        "run against the snapshot the first run left. The simulator counts the profiles without keeping them "
        "(`--forget-profiles`: it could not hold 50M), so the leavers' lookups find none on the list and none is "
        "removed; the removal phase's own cost is in the refresh table above.",
        "",
        "| rows | run | status | rows read | sent | unchanged | leavers | wall (s) | peak RSS (MB) | snapshot (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *results,
        "",
        "Targets: <= 250 MB for a 10M-row delta run; 1M-row runs <= 150 MB.",
    ])
    replace_section(output, START, END, text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1000000,10000000",
                        help="comma-separated row counts: the delta-run table, at these sizes")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--dry-runs", help="comma-separated row counts: only the dry-run table, at these sizes")
    args = parser.parse_args()
    if args.dry_runs:
        dry_runs([int(n) for n in args.dry_runs.split(",")], args.output)
    else:
        delta_runs([int(n) for n in args.rows.split(",")], args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
