"""Memory at scale: a 10,000,000-row segment (synthetic, a local file) exported in mirror
mode to the simulator without rate limits, then refreshed with 1% of rows changed, added
and removed. Writes peak RSS, wall time and snapshot size into BENCHMARKS.md's
``memory`` section.

    .venv/bin/python -m bench.memory [--rows 10000000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from bench.run import ROOT, export_process, replace_section, simulator, simulator_stats
from devtools.sample import refreshed_lines, segment_lines

START, END = "<!-- memory:start -->", "<!-- memory:end -->"
DRY_START, DRY_END = "<!-- memory-dry:start -->", "<!-- memory-dry:end -->"


def dry_runs(sizes: list[int], output: Path) -> None:
    """Peak RSS of a dry run (the CLI, a local CSV of unique synthetic profiles, no key) at each size."""
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
        "Dry runs (`python -m bench.memory --dry-runs N,...`): the CLI on a local CSV of unique synthetic profiles, no "
        "key. Past 2,000,000 emails de-duplication spills: a Bloom filter (10 bits an email) in memory, the (email "
        "key, line) pairs on disk, rows the filter may have seen held back and resolved exactly at the end.",
        "",
        "| rows | status | rows read | would send | duplicates | wall (s) | profiles/s | peak RSS (MB) |",
        "|---|---|---|---|---|---|---|---|",
        *results,
    ])
    replace_section(output, DRY_START, DRY_END, text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--dry-runs", help="comma-separated row counts: only the dry-run table, at these sizes")
    args = parser.parse_args()
    if args.dry_runs:
        dry_runs([int(n) for n in args.dry_runs.split(",")], args.output)
        return 0
    rows, every = args.rows, 100
    folder = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    full, refreshed = folder / "full.csv", folder / "refreshed.csv"
    with full.open("w") as out:
        out.writelines(segment_lines(rows))
    with refreshed.open("w") as out:
        out.writelines(refreshed_lines(rows, changed=range(0, rows, every), removed=range(every // 2, rows, every),
                                       added=rows // every))
    state = str(folder / "state")
    results = []
    with simulator(False) as sim:
        for name, source in (("full", full), ("refresh: 1% changed, 1% added, 1% removed", refreshed)):
            run = export_process(None, sim.url, str(source), state, False, "--mode", "mirror")
            _, members = simulator_stats(sim.url)
            counts = run.report["counts"]
            results.append(f"| {name} | {run.report['status']} | {counts['rows_read']:,} | {counts['sent']:,} "
                           f"| {counts['unchanged']:,} | {counts['removed']:,} | {members:,} | {run.wall:.1f} "
                           f"| {run.peak_mb:.0f} | {(folder / 'state' / 'snapshot.bin').stat().st_size / 1e6:.0f} |")
    for file in (full, refreshed):
        file.unlink()
    text = "\n".join([
        f"Memory at {rows:,} rows (`python -m bench.memory --rows {rows}`): a local CSV in mirror mode to the "
        "simulator, rate limits off, then the same segment refreshed (1% renamed, 1% new, 1% gone):",
        "",
        "| run | status | rows read | sent | unchanged | removed | list members | wall (s) | peak RSS (MB) "
        "| snapshot (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *results,
    ])
    replace_section(args.output, START, END, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
