"""Benchmark: several exports at once on one Klaviyo account, against the simulator with
Klaviyo's limits, which answers 429 to any request past the account's windows.

Two cases, each 4 exports of 250,000 profiles into 4 lists of one account:

- four command lines started at once from one folder (they share ``.exporter-state/``);
- the function app as two instances (two processes) sharing Azurite: the four runs are
  queued, and each instance carries two of them at a time, as the Functions host would.

Writes the ``bench-concurrency`` section of BENCHMARKS.md: 429s in total, accepted jobs, the
combined wall against the account's floor (target: 0 × 429, wall <= 1.25 × floor + 2 s).

    .venv/bin/python -m bench.concurrency [--rows 250000] [--exports 4]
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
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from azure.core.exceptions import ResourceExistsError

from bench.run import ROOT, floor_seconds, replace_section
from devtools.azurite import free_port, start_azurite, upload
from devtools.demo import wait_for
from devtools.sample import segment_lines
from exporter.klaviyo.limits import MAX_PROFILES_PER_JOB

START, END = "<!-- bench-concurrency:start -->", "<!-- bench-concurrency:end -->"
KEY = "pk_bench_local_key"


def lists(exports: int) -> list[str]:
    return [f"Bench{number}" for number in range(1, exports + 1)]


def start_simulator(exports: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "exporter", "simulate-klaviyo", "--port", str(port)]
    for list_id in lists(exports):
        command += ["--list", list_id]
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    wait_for(f"{url}/_sim/stats")
    return process, url


def stats(url: str) -> dict:
    return json.loads(urllib.request.urlopen(f"{url}/_sim/stats").read())


def segments(folder: Path, exports: int, rows: int) -> list[Path]:
    paths = []
    for number in range(exports):
        path = folder / f"segment{number}.csv"
        with path.open("w") as out:
            out.writelines(segment_lines(rows, start=number * rows))  # each export its own people
        paths.append(path)
    return paths


def cli_case(rows: int, exports: int) -> dict[str, object]:
    simulator, url = start_simulator(exports)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-concurrency-") as folder:
            paths = segments(Path(folder), exports, rows)
            env = {**os.environ, "KLAVIYO_API_KEY": KEY}
            started = time.time()
            processes = [subprocess.Popen([sys.executable, "-m", "exporter", "export", "--source", str(path),
                                           "--list-id", list_id, "--email-column", "email", "--klaviyo-url", url,
                                           "--rejects", os.devnull], cwd=folder, env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
                         for path, list_id in zip(paths, lists(exports), strict=True)]
            reports = [json.loads(process.communicate()[0]) for process in processes]
            wall = time.time() - started
        return result("command lines, one folder", exports, rows, reports, stats(url), started, wall)
    finally:
        simulator.terminate()
        simulator.wait(10)


def app_case(rows: int, exports: int, instances: int = 2) -> dict[str, object]:
    simulator, url = start_simulator(exports)
    azurite = start_azurite()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-concurrency-") as folder:
            for number, path in enumerate(segments(Path(folder), exports, rows)):
                with path.open("rb") as data:
                    asyncio.run(upload(azurite, "segments", f"e{number}/segment.csv", data))
            document = {"connections": [{"name": "bench", "env": "KLAVIYO_API_KEY"}],
                        "exports": [{"name": f"e{number}", "connection": "bench", "source": f"e{number}/segment.csv",
                                     "list_id": list_id, "mapping": {"email": "email"}}
                                    for number, list_id in enumerate(lists(exports))]}
            config_url = asyncio.run(upload(azurite, "config", "exports.json", json.dumps(document).encode()))
            env = {**os.environ, "AzureWebJobsStorage": azurite.connection_string, "EXPORTS_CONFIG_URL": config_url,
                   "KLAVIYO_BASE_URL": url, "KLAVIYO_API_KEY": KEY, "EXPORTER_LOCAL_MODE": "true",
                   "KLAVIYO_POLL_SECONDS": "0.25"}
            workers = [subprocess.Popen([sys.executable, "-m", "bench.concurrency", "--instance", str(exports)],
                                        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
                       for _ in range(instances)]
            for worker in workers:  # instances that are up, as a running app's are
                assert worker.stdout is not None and worker.stdout.readline().strip() == b"ready"
            started = time.time()
            run_ids = asyncio.run(_start_runs(env, exports))
            reports = asyncio.run(_wait_for_reports(env, run_ids))
            wall = time.time() - started
            for worker in workers:
                worker.terminate()
                worker.wait(10)
        return result(f"the app, {instances} instances sharing Azurite", exports, rows, reports, stats(url), started, wall)
    finally:
        simulator.terminate()
        simulator.wait(10)
        azurite.stop()


async def _start_runs(env: dict[str, str], exports: int) -> dict[str, str]:
    from exporter.runs.runtime import AppRuntime

    runtime = AppRuntime(env)
    try:
        return {f"e{n}": (await runtime.service().start(f"e{n}")).run_id for n in range(exports)}
    finally:
        await runtime.aclose()


async def _wait_for_reports(env: dict[str, str], run_ids: dict[str, str]) -> list[dict]:
    from exporter.runs.runtime import AppRuntime

    runtime = AppRuntime(env)
    try:
        while True:
            states = [await runtime.service().status(name, run_id) for name, run_id in run_ids.items()]
            if all(state and state.get("report") for state in states):
                return [state["report"] for state in states if state]
            await asyncio.sleep(0.1)
    finally:
        await runtime.aclose()


async def instance(concurrency: int) -> None:
    """One app instance: the queue trigger's part, ``concurrency`` messages at a time."""
    from exporter.runs.runtime import AppRuntime

    runtime = AppRuntime()
    service = runtime.service()
    await service.config()
    with contextlib.suppress(ResourceExistsError):
        await service.queue.create_queue()
    print("ready", flush=True)

    async def carry(message) -> None:  # type: ignore[no-untyped-def]
        await service.process(message.content, message.dequeue_count or 1)
        await service.queue.delete_message(message)

    running: set[asyncio.Task[None]] = set()
    while True:
        if len(running) < concurrency:
            async for message in service.queue.receive_messages(max_messages=1, visibility_timeout=600):
                task = asyncio.create_task(carry(message))
                running.add(task)
                task.add_done_callback(running.discard)
        await asyncio.sleep(0.05)


def result(case: str, exports: int, rows: int, reports: list[dict], simulator: dict, started: float,
           wall: float) -> dict[str, object]:
    jobs = sum(len(r["jobs"]) for r in reports)
    floor = floor_seconds(exports * math.ceil(rows / MAX_PROFILES_PER_JOB))
    return {"case": case, "exports": exports, "rows": rows, "statuses": sorted({r["status"] for r in reports}),
            "sent": sum(r["counts"]["sent"] for r in reports), "jobs": jobs, "throttled": simulator["throttled"],
            "accepted_s": simulator["last_job_received_at"] - started, "wall_s": wall, "floor_s": floor,
            "target_s": 1.25 * floor + 2}


def write_markdown(results: list[dict[str, object]], path: Path) -> None:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"Measured {when} by `python -m bench.concurrency` on this machine ({os.cpu_count()} cores, Python "
             f"{platform.python_version()}). Each export has its own people and list; all lists are in one "
             "simulator account with Klaviyo's limits (10 jobs/s, 150/min for the account).",
             "",
             "- *wall*: from the first start to the last report (every job imported, final polls included);",
             "- *accepted*: from the first start to the simulator's receipt of the last job;",
             "- *floor*: the earliest the account's last job may be sent under its limits (all exports' jobs together);",
             "- *target*: 1.25 × floor + 2 s, with 0 × 429.",
             "",
             "| case | exports × rows | status | sent | jobs | 429s | accepted (s) | wall (s) | floor (s) | "
             "wall / floor | target (s) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['case']} | {r['exports']} × {r['rows']:,} | {', '.join(r['statuses'])} | {r['sent']:,} | "
                     f"{r['jobs']} | {r['throttled']} | {r['accepted_s']:.2f} | {r['wall_s']:.2f} | "
                     f"{r['floor_s']:.1f} | {r['wall_s'] / r['floor_s']:.2f} | {r['target_s']:.2f} |")
    replace_section(path, START, END, "\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=250_000)
    parser.add_argument("--exports", type=int, default=4)
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--instance", type=int, help=argparse.SUPPRESS)  # run as one app instance
    args = parser.parse_args()
    if args.instance:
        asyncio.run(instance(max(1, args.instance // 2)))
        return 0
    results = [cli_case(args.rows, args.exports), app_case(args.rows, args.exports)]
    for r in results:
        print(json.dumps(r))
    write_markdown(results, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
