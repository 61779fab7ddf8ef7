"""Benchmark: a subscribe run. A synthetic segment of N rows, half of them consenting to email
marketing (with a time in the past), exported with its consent columns into the simulator
with Klaviyo's limits on; recorded against the floors of the three tiers the run uses (bulk
imports, profile reads for the consent lookups, subscription jobs), with the export process's
peak RSS. Writes its table into BENCHMARKS.md between its ``bench-consent`` markers.

    .venv/bin/python -m bench.consent [--rows 1000000]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench.run import ROOT, export_process, replace_section, simulator, simulator_stats
from devtools.sample import segment_lines
from exporter.klaviyo.limits import (
    BULK_IMPORT_RATE,
    MAX_FILTER_VALUES,
    MAX_PROFILES_PER_JOB,
    MAX_SUBSCRIPTION_PROFILES,
    PROFILE_READ_RATE,
    SUBSCRIPTION_RATE,
)
from exporter.klaviyo.ratelimit import rate_floor_seconds

START, END = "<!-- bench-consent:start -->", "<!-- bench-consent:end -->"


def write_segment(path: Path, rows: int) -> int:
    """The sample segment with two consent columns: every other row consents."""
    consenting = 0
    with path.open("w") as out:
        for i, line in enumerate(segment_lines(rows)):
            if i == 0:
                out.write(line.rstrip("\n") + ",email_opt_in,email_at\n")
                continue
            yes = i % 2 == 0
            consenting += yes
            out.write(line.rstrip("\n") + (",yes,2026-01-15T09:00:00Z\n" if yes else ",,\n"))
    return consenting


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-consent-"))
    source = folder / "consent.csv"
    consenting = write_segment(source, args.rows)
    with simulator(True) as sim:
        run = export_process(None, sim.url, str(source), str(folder / "state"), True,
                             "--consent", "email=email_opt_in,email_at")
        stats, members = simulator_stats(sim.url)
    counts = run.report["counts"]
    floors = {"imports": rate_floor_seconds(math.ceil(args.rows / MAX_PROFILES_PER_JOB), BULK_IMPORT_RATE),
              "lookups": rate_floor_seconds(math.ceil(consenting / MAX_FILTER_VALUES), PROFILE_READ_RATE),
              "subscriptions": rate_floor_seconds(math.ceil(consenting / MAX_SUBSCRIPTION_PROFILES),
                                                  SUBSCRIPTION_RATE)}
    floor = max(floors.values())  # the tiers are separate: the slowest one sets the floor
    text = "\n".join([
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `python -m bench.consent --rows {args.rows}`.",
        f"A subscribe run: {args.rows:,} rows, {consenting:,} consenting to email marketing, exported from a local CSV "
        "with `--consent` into the simulator with Klaviyo's limits on. Each tier's floor is the earliest its limits "
        "allow its requests (bulk imports of 10,000; consent lookups of 100 emails at 75/s and 750/min; "
        "subscription jobs of 1,000 at 75/s and 750/min); the run's floor is the slowest tier's.",
        "",
        "| status | sent | subscribed | conflicts | list members | 429s | wall (s) | floor: imports / lookups / "
        "subscriptions (s) | wall / floor | peak RSS (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {run.report['status']} | {counts['sent']:,} | {counts['subscribed']:,} | {counts['consent_conflicts']:,} "
        f"| {members:,} | {stats['throttled']} | {run.wall:.1f} | {floors['imports']:.1f} / {floors['lookups']:.1f} / "
        f"{floors['subscriptions']:.1f} | {run.wall / floor:.2f} | {run.peak_mb:.0f} |",
    ])
    replace_section(args.output, START, END, text)
    print(text)
    return 0 if run.exit == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
