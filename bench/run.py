"""Benchmark: a synthetic segment in Azurite exported to the simulator, limits on and off,
as one CSV, as a CDM folder of 8 headerless part files, and as Parquet.

Writes the results table of BENCHMARKS.md (between its ``bench`` markers, keeping the
reading notes around them): wall time, profiles/s, peak RSS of the export process, and
the ratio of the time to the last accepted job to Klaviyo's rate-limit floor. The exporter
runs as ``python -m exporter export`` in its own process, exactly as a user runs it; the
simulator runs in another process, so each has a core.

    .venv/bin/python -m bench.run [--rows 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Iterator

from devtools.azurite import Azurite, free_port, start_azurite, upload
from devtools.demo import wait_for
from devtools.sample import HEADER, MAPPING, cdm_export_folder, refreshed_lines, segment_lines
from exporter.klaviyo.limits import (
    BULK_IMPORT_RATE,
    LIST_MEMBERSHIP_RATE,
    MAX_FILTER_VALUES,
    MAX_MEMBERSHIP_IDS,
    MAX_PROFILES_PER_JOB,
    PROFILE_READ_RATE,
)
from exporter.klaviyo.ratelimit import rate_floor_seconds
from exporter.mapping.engine import ENGINES

ROOT = Path(__file__).resolve().parent.parent
LIST_ID = "Bench"


class PeakRss:
    """Samples the process's own high-water mark (``VmHWM``) until it exits.

    ``wait4``'s ``ru_maxrss`` is not used: a child spawned from a large parent can report
    the parent's size, which is not the exporter's memory.
    """

    def __init__(self, pid: int):
        self.kilobytes = 0
        self._path = Path(f"/proc/{pid}/status")
        self._running = True
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while self._running:
            try:
                for line in self._path.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self.kilobytes = max(self.kilobytes, int(line.split()[1]))
            except (OSError, ValueError):
                return
            time.sleep(0.02)

    def stop(self) -> None:
        self._running = False
        self._thread.join()


def floor_seconds(jobs: int) -> float:
    """When the last of ``jobs`` requests may be sent under the tier's windows, sent as early
    as allowed from t=0, plus one burst interval (0.1 s) for that request's own slot."""
    return rate_floor_seconds(jobs, BULK_IMPORT_RATE) + 1 / BULK_IMPORT_RATE[0][0]


CDM_PARTS = 8
LOCAL_CSV = "CSV, local file"
PARQUET_ROW_GROUP = 100_000


async def upload_segments(azurite: Azurite, rows: int) -> tuple[dict[str, str], int]:
    """The same rows three ways: one CSV, a CDM folder of headerless parts, a Parquet file."""
    import pyarrow.csv
    import pyarrow.parquet

    folder = Path(tempfile.mkdtemp(prefix="bench-"))
    path = folder / "segment.csv"
    with path.open("w") as out:
        out.writelines(segment_lines(rows))
    size = path.stat().st_size
    urls = {}
    with path.open("rb") as data:
        urls["CSV, 1 file"] = await upload(azurite, "segments", "bench/segment.csv", data)
    for name, data in cdm_export_folder([("2026/11/25/0600", 0, rows)], parts=CDM_PARTS).items():
        url = await upload(azurite, "segments", f"bench-cdm/{name}", data)
    urls[f"CDM folder, {CDM_PARTS} headerless parts"] = url.rpartition("/model.json")[0] + "/"
    table = pyarrow.csv.read_csv(path, convert_options=pyarrow.csv.ConvertOptions(
        column_types={name: pyarrow.string() for name in HEADER.strip().split(",")}))
    pyarrow.parquet.write_table(table, folder / "segment.parquet", row_group_size=PARQUET_ROW_GROUP)
    with (folder / "segment.parquet").open("rb") as data:
        urls["Parquet, 1 file"] = await upload(azurite, "segments", "bench/segment.parquet", data)
    (folder / "segment.parquet").unlink()
    urls[LOCAL_CSV] = str(path)  # the dry runs read it from disk
    return urls, size


@dataclass
class Simulator:
    url: str
    pid: int

    def cpu_seconds(self) -> float:
        """User + system CPU the simulator process has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def simulator(limits: bool, *extra: str) -> Iterator[Simulator]:
    """The simulator in its own process (its own core)."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "exporter", "simulate-klaviyo", "--port", str(port),
                                "--list", LIST_ID, "--rate-limits", "klaviyo" if limits else "off", *extra],
                               stderr=subprocess.DEVNULL, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{url}/_sim/stats")
        yield Simulator(url, process.pid)
    finally:
        process.terminate()
        process.wait(10)


def simulator_stats(url: str) -> tuple[dict[str, Any], int]:
    stats = json.loads(urllib.request.urlopen(f"{url}/_sim/stats").read())
    return stats, json.loads(urllib.request.urlopen(f"{url}/_sim/lists/{LIST_ID}").read())["count"]


@dataclass
class Measured:
    report: dict[str, Any]
    exit: int
    started: float
    wall: float
    peak_mb: float
    cpu_s: float  # the export process's own user + system CPU


def export_process(azurite: Azurite | None, klaviyo: str | None, source: str, state: str, limits: bool,
                   *extra: str) -> Measured:
    """``python -m exporter export`` exactly as a user runs it, timed, its CPU counted and its
    memory sampled; ``klaviyo=None`` is a dry run without a key (nothing is asked of Klaviyo)."""
    command = [sys.executable, "-m", "exporter", "export", "--source", source, "--list-id", LIST_ID,
               "--email-column", "email", "--rejects", os.devnull, "--state", state, *extra]
    for pair in MAPPING:
        command += ["--map", pair]
    env = dict(os.environ)
    env.pop("KLAVIYO_API_KEY", None)
    if klaviyo is None:
        command.append("--dry-run")
    else:
        command += ["--klaviyo-url", klaviyo]
        env["KLAVIYO_API_KEY"] = "pk_bench_local_key"
    if not limits:
        command.append("--no-rate-limit")
    if azurite is not None:
        env["AZURE_STORAGE_CONNECTION_STRING"] = azurite.connection_string
    started = time.time()
    # A folder of its own: runs from one folder share Klaviyo's limits (.exporter-state/_limits), and each
    # case here has a fresh simulator, a fresh account
    export = subprocess.Popen(command, env=env, cwd=tempfile.mkdtemp(prefix="bench-cwd-"), stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL)
    peak = PeakRss(export.pid)
    assert export.stdout is not None
    output = export.stdout.read()
    _, code, usage = os.wait4(export.pid, 0)
    wall = time.time() - started
    export.returncode = os.waitstatus_to_exitcode(code)
    peak.stop()
    return Measured(json.loads(output), export.returncode, started, wall, peak.kilobytes / 1024,
                    usage.ru_utime + usage.ru_stime)


def run_case(azurite: Azurite, source: str, url: str, rows: int, engine: str, limits: str) -> dict[str, object]:
    """One full run: ``limits`` is "dry run" (no Klaviyo at all), "off" or "klaviyo"."""
    state = tempfile.mkdtemp(prefix="bench-state-")
    result: dict[str, object] = {"source": source, "engine": engine, "limits": limits}
    if limits == "dry run":
        run = export_process(None, None, url, state, True, "--engine", engine)
        result.update(members=None, jobs=None, throttled=None, accepted_s=None, ratio=None, simulator_us=None)
    else:
        with simulator(limits == "klaviyo") as sim:
            cpu = sim.cpu_seconds()
            run = export_process(azurite, sim.url, url, state, limits == "klaviyo", "--engine", engine)
            stats, members = simulator_stats(sim.url)
            simulator_us = (sim.cpu_seconds() - cpu) * 1e6 / max(rows, 1)
        accepted = stats["last_job_received_at"] - run.started
        result.update(members=members, jobs=len(run.report["jobs"]), throttled=stats["throttled"],
                      accepted_s=accepted, simulator_us=simulator_us,
                      ratio=accepted / floor_seconds(math.ceil(rows / MAX_PROFILES_PER_JOB)))
    result.update(status=run.report["status"], exit=run.exit, sent=run.report["counts"]["sent"], wall_s=run.wall,
                  cpu_us=run.cpu_s * 1e6 / max(rows, 1), profiles_per_s=rows / run.wall, peak_rss_mb=run.peak_mb,
                  floor_s=floor_seconds(math.ceil(rows / MAX_PROFILES_PER_JOB)))
    return result


def refresh_case(azurite: Azurite, url: str, rows: int) -> list[dict[str, object]]:
    """Mirror mode with Klaviyo's limits: a full run, then the segment refreshed with 1% of
    rows changed, 1% added and 1% removed, into the same list with the same snapshot."""
    every = 100
    refreshed = "".join(refreshed_lines(rows, changed=range(0, rows, every), removed=range(every // 2, rows, every),
                                        added=rows // every)).encode()
    refreshed_url = asyncio.run(upload(azurite, "segments", "bench/refreshed.csv", refreshed))
    state = tempfile.mkdtemp(prefix="bench-state-")
    results = []
    with simulator(True) as sim:
        for name, source in (("full", url), ("refresh: 1% changed, 1% added, 1% removed", refreshed_url)):
            run = export_process(azurite, sim.url, source, state, True, "--mode", "mirror")
            stats, members = simulator_stats(sim.url)
            counts = run.report["counts"]
            sync = run.report.get("sync") or {}
            results.append({"run": name, "status": run.report["status"], "exit": run.exit, "sent": counts["sent"],
                            "unchanged": counts["unchanged"], "removed": counts["removed"], "members": members,
                            "leavers": sync.get("leavers", 0), "removal_s": sync.get("removal_seconds", 0.0),
                            "removal_floor_s": removal_floor(sync.get("leavers", 0)),
                            "throttled": stats["throttled"], "wall_s": run.wall, "peak_rss_mb": run.peak_mb,
                            "snapshot_mb": Path(state, "snapshot.bin").stat().st_size / 1e6})
    return results


def removal_floor(leavers: int) -> float:
    """The earliest Klaviyo's limits let mirror mode look up and remove this many leavers: a
    lookup per 100 (75/s, 750/min), then a removal per 1,000 (10/s, 150/min), one after the
    other as the phase makes them."""
    lookups, removals = math.ceil(leavers / MAX_FILTER_VALUES), math.ceil(leavers / MAX_MEMBERSHIP_IDS)
    return rate_floor_seconds(lookups, PROFILE_READ_RATE) + rate_floor_seconds(removals, LIST_MEMBERSHIP_RATE)


START, END = "<!-- bench:start -->", "<!-- bench:end -->"
REFRESH_START, REFRESH_END = "<!-- bench-refresh:start -->", "<!-- bench-refresh:end -->"


def replace_section(path: Path, start: str, end: str, text: str) -> None:
    """Put ``text`` between the markers in ``path``, keeping everything around them."""
    old = path.read_text() if path.exists() else "# Benchmarks\n\n"
    if start in old and end in old:
        before, rest = old.split(start, 1)
        path.write_text(before + start + "\n" + text + "\n" + end + rest.split(end, 1)[1])
    else:
        path.write_text(old.rstrip("\n") + "\n\n" + start + "\n" + text + "\n" + end + "\n")


def write_markdown(rows: int, size: int, results: list[dict[str, object]], path: Path) -> None:
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `python -m bench.run --rows {rows}` on this machine "
        f"({os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}).",
        f"Segment: {rows:,} synthetic rows ({size / 1e6:.0f} MB CSV, 6 columns, 5 mapped fields) in Azurite; "
        "exporter and simulator in separate processes, sharing the machine with Azurite.",
        "",
        "- *wall*: export process start (Python start-up included) to exit, after Klaviyo finished every job;",
        "- *accepted*: export process start to the simulator's receipt of the last job;",
        "- *floor*: the earliest the last of ceil(N/10,000) jobs may be sent under Klaviyo's 10/s burst and "
        "150/min steady limits, plus that request's 0.1 s slot; *ratio* = accepted / floor (target <= 1.2);",
        "- *peak RSS*: the export process's own high-water mark (`VmHWM`, sampled every 20 ms; target < 150 MB);",
        "- *exporter CPU*: the export process's own user + system CPU (`wait4`), per row, start-up included;",
        "- *simulator CPU*: the simulator process's user + system CPU during the run, per profile (target <= 4 µs);",
        "- *engine*: `--engine row` maps row by row; `--engine columnar` (the default) maps each block of plain CSV "
        "lines, and each Parquet batch of string columns without nulls, with Arrow kernels, and any other "
        "block row by row;",
        "- *dry run*: `--dry-run` from the local file, no API key (nothing asked of Klaviyo); targets >= 250,000 "
        "profiles/s dry, >= 200,000 with limits off.",
        "",
        "| source | engine | Klaviyo | status | sent | list members | jobs | 429s | exporter CPU (µs/row) "
        "| wall (s) | accepted (s) | profiles/s (wall) | peak RSS (MB) | floor (s) | ratio | simulator CPU (µs/profile) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def shown(value: object, form: str) -> str:
        return "–" if value is None else format(value, form)

    for r in results:
        lines.append(
            f"| {r['source']} | {r['engine']} | {r['limits']} | {r['status']} | {r['sent']:,} "
            f"| {shown(r['members'], ',')} | {shown(r['jobs'], '')} | {shown(r['throttled'], '')} "
            f"| {r['cpu_us']:.2f} | {r['wall_s']:.2f} | {shown(r['accepted_s'], '.2f')} | {r['profiles_per_s']:,.0f} "
            f"| {r['peak_rss_mb']:.0f} | {r['floor_s']:.1f} | {shown(r['ratio'], '.2f')} "
            f"| {shown(r['simulator_us'], '.1f')} |"
        )
    replace_section(path, START, END, "\n".join(lines))


def write_refresh_markdown(rows: int, refresh: list[dict[str, object]], path: Path) -> None:
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `python -m bench.run --rows {rows}` (or `--refresh-only`).",
        f"Delta refresh and mirror mode, {rows:,} rows, Klaviyo's rate limits on, one simulator and one snapshot "
        "for both runs (the refresh reads a second blob with 1% of rows renamed, 1% new, 1% gone). *removal phase*: "
        "the time mirror mode spent looking leavers up among the list's members and removing them (the report's "
        "`sync.removal_seconds`); *removal floor*: the earliest Klaviyo's profile-read and list-membership limits "
        "allow for as many lookups (100 leavers each) and removals (1,000 each), one after the other.",
        "",
        "| run | status | sent | unchanged | leavers | removed | list members | 429s | wall (s) | removal phase (s) "
        "| removal floor (s) | peak RSS (MB) | snapshot (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in refresh:
        lines.append(
            f"| {r['run']} | {r['status']} | {r['sent']:,} | {r['unchanged']:,} | {r['leavers']:,} | {r['removed']:,} "
            f"| {r['members']:,} | {r['throttled']} | {r['wall_s']:.2f} | {r['removal_s']:.2f} "
            f"| {r['removal_floor_s']:.1f} | {r['peak_rss_mb']:.0f} | {r['snapshot_mb']:.1f} |")
    replace_section(path, REFRESH_START, REFRESH_END, "\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--refresh-only", action="store_true", help="only the delta refresh and mirror table")
    args = parser.parse_args()
    azurite = start_azurite()
    try:
        if args.refresh_only:
            data = "".join(segment_lines(args.rows)).encode()
            refresh = refresh_case(azurite, asyncio.run(upload(azurite, "segments", "bench/segment.csv", data)),
                                   args.rows)
            write_refresh_markdown(args.rows, refresh, args.output)
            print(args.output.read_text())
            return 0 if all(r["exit"] == 0 for r in refresh) else 1
        urls, size = asyncio.run(upload_segments(azurite, args.rows))
        csv = "CSV, 1 file"
        cases = [(LOCAL_CSV, engine, "dry run") for engine in ENGINES[::-1]]
        cases += [(csv, engine, limits) for limits in ("off", "klaviyo") for engine in ENGINES[::-1]]
        cases += [(source, "columnar", "klaviyo") for source in urls if source not in (csv, LOCAL_CSV)]
        results = [run_case(azurite, source, urls[source], args.rows, engine, limits)
                   for source, engine, limits in cases]
        refresh = refresh_case(azurite, urls["CSV, 1 file"], args.rows)
    finally:
        azurite.stop()
    write_markdown(args.rows, size, results, args.output)
    write_refresh_markdown(args.rows, refresh, args.output)
    print(args.output.read_text())
    return 0 if all(r["exit"] == 0 for r in results + refresh) else 1


if __name__ == "__main__":
    sys.exit(main())
