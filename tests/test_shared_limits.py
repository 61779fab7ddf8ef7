"""Klaviyo's limits shared by every run on one account: the schedule's rule on its own, then
two real command-line processes on one account, sharing a schedule file (one machine) or a
schedule blob in Azurite (the app's mechanism), against the simulator with Klaviyo's limits,
which answers 429 to any request past them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from exporter.klaviyo import shared_limits
from exporter.klaviyo.shared_limits import FileSchedule, SharedRateLimiter, schedule_name
from tests.conftest import API_KEY, LIST_ID

SECOND_LIST = "Lst002"


class MemorySchedule:
    description = "memory"

    def __init__(self) -> None:
        self.raw: bytes | None = None

    async def update(self, change):  # type: ignore[no-untyped-def]
        self.raw, result = change(self.raw)
        return result


def reserve_all(limiters: list[SharedRateLimiter], rounds: int) -> list[tuple[int, float]]:
    """Each limiter asks for a slot in turn, ``rounds`` times, all at the same instant."""
    slots = []
    for _ in range(rounds):
        for number, limiter in enumerate(limiters):
            schedule = limiter._schedule
            schedule.raw, (at, _) = limiter._reserve(schedule.raw)  # type: ignore[attr-defined]
            slots.append((number, at))
    return slots


def within(slots: list[float], limits: tuple[tuple[int, float], ...]) -> bool:
    return all(sum(1 for t in slots if start <= t < start + window) <= limit
               for limit, window in limits for start in slots)


def test_holders_of_one_schedule_together_keep_every_window_and_take_turns() -> None:
    limits = ((3, 1.0), (5, 10.0))
    shared = MemorySchedule()
    now = [1000.0]
    limiters = [SharedRateLimiter(shared, limits, margin=0.0, clock=lambda: now[0]) for _ in range(2)]
    slots = reserve_all(limiters, 4)
    assert within([at for _, at in slots], limits)
    assert [number for number, _ in sorted(slots, key=lambda s: s[1])] == [0, 1, 0, 1, 0, 1, 0, 1]  # in turn
    apart = [SharedRateLimiter(MemorySchedule(), limits, margin=0.0, clock=lambda: now[0]) for _ in range(2)]
    assert not within([at for _, at in reserve_all(apart, 4)], limits)  # one schedule each: over the limit


@pytest.mark.parametrize("raw", [b"not json", b"[]", b'{"times": "x"}', b'{"times": [1e30], "margin": 0}',
                                 orjson.dumps({"times": [0.0] * 5000}), b'{"times": [1], "margin": 99}'])
def test_a_damaged_or_hostile_schedule_neither_blocks_nor_widens_past_the_cap(raw: bytes) -> None:
    shared = MemorySchedule()
    shared.raw = raw
    limiter = SharedRateLimiter(shared, ((10, 1.0),), clock=lambda: 1000.0)
    shared.raw, (at, _) = limiter._reserve(shared.raw)
    assert at == 1000.0 and limiter.margin <= 0.3


async def test_a_file_schedule_serializes_processes_on_one_machine(tmp_path: Path) -> None:
    path = tmp_path / schedule_name("account-X", "import")
    limiters = [SharedRateLimiter(FileSchedule(path), ((4, 1.0),), margin=0.0) for _ in range(3)]
    loop = asyncio.get_running_loop()
    started = loop.time()
    stamps = await asyncio.gather(*(limiter.acquire() for limiter in limiters for _ in range(3)))
    assert within(sorted(stamps), ((4, 1.0),)) and loop.time() - started >= 1.0  # 9 slots at 4/s need 2 windows
    assert len(set(stamps)) == 9 and set(orjson.loads(path.read_bytes())["times"]) <= set(stamps)


def segment(path: Path, prefix: str, rows: int) -> Path:
    path.write_text("email\n" + "".join(f"{prefix}{n}@example.com\n" for n in range(rows)))
    return path


async def two_processes(tmp_path: Path, sim, states: tuple[str, str], env: dict[str, str]) -> list[subprocess.CompletedProcess]:
    """Two exports of 80,000 profiles (8 jobs each) started at once on one account."""
    sim.simulator.account.add_list(SECOND_LIST)
    runs = []
    for number, (list_id, state) in enumerate(zip((LIST_ID, SECOND_LIST), states, strict=True)):
        source = segment(tmp_path / f"s{number}.csv", f"p{number}-", 80_000)
        runs.append(asyncio.to_thread(subprocess.run, [
            sys.executable, "-m", "exporter", "export", "--source", str(source), "--list-id", list_id,
            "--email-column", "email", "--klaviyo-url", sim.url, "--state", state,
            "--report", str(tmp_path / f"r{number}.json")], capture_output=True, text=True, cwd=tmp_path,
            env={**os.environ, "KLAVIYO_API_KEY": API_KEY, **env}, timeout=180))
    return list(await asyncio.gather(*runs))


async def test_two_command_lines_in_one_folder_share_the_accounts_limits(tmp_path: Path, simulator) -> None:
    results = await two_processes(tmp_path, simulator, (".exporter-state/a", ".exporter-state/b"), {})
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert simulator.simulator.stats.jobs_received == 16 and simulator.simulator.stats.throttled == 0
    assert (tmp_path / ".exporter-state" / schedule_name("account-SimAcc", "import")).exists()


async def test_two_processes_share_the_accounts_limits_through_a_blob_in_azurite(tmp_path: Path, simulator,
                                                                                  azurite, upload) -> None:
    folder = (await upload("keep", b"")).rsplit("/", 1)[0]
    results = await two_processes(tmp_path, simulator, (f"{folder}/a/", f"{folder}/b/"),
                                  {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string})
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert simulator.simulator.stats.jobs_received == 16 and simulator.simulator.stats.throttled == 0
    assert not (tmp_path / ".exporter-state").exists()  # the schedule is in the container, beside the states


def test_a_request_that_left_late_is_moved_in_the_schedule_with_the_next_reservation() -> None:
    shared, now = MemorySchedule(), [1000.0]
    limiter = SharedRateLimiter(shared, ((2, 1.0),), margin=0.0, clock=lambda: now[0])
    shared.raw, (first, _) = limiter._reserve(shared.raw)
    now[0] = 1000.25  # our event loop sent it a quarter of a second late
    limiter._moved[first] = now[0]  # what ``sent`` notes (and writes at once, from the event loop)
    shared.raw, _ = limiter._write_moved(shared.raw)
    assert orjson.loads(shared.raw)["times"] == [1000.25]
    shared.raw, (second, _) = limiter._reserve(shared.raw)
    shared.raw, (third, _) = limiter._reserve(shared.raw)
    assert third == 1001.25  # a window after the real send


def test_a_slot_is_reserved_only_when_it_is_due() -> None:
    shared, now = MemorySchedule(), [1000.0]
    limiter = SharedRateLimiter(shared, ((1, 1.0),), margin=0.0, clock=lambda: now[0])
    shared.raw, (first, reserved) = limiter._reserve(shared.raw, 0.02)
    assert (first, reserved) == (1000.0, True)
    written, (second, reserved) = limiter._reserve(shared.raw, 0.02)
    assert (written, second, reserved) == (None, 1001.0, False)  # a second away: nothing reserved yet
    now[0] = 1000.99
    shared.raw, (second, reserved) = limiter._reserve(shared.raw, 0.02)
    assert (second, reserved) == (1001.0, True)


async def test_two_app_instances_share_the_accounts_limits_through_the_reports_container(app, simulator,
                                                                                        monkeypatch) -> None:
    """Two runtimes over one storage account (two instances of the app), each carrying one
    run of 8 jobs at the same time: together they keep the account's 10 jobs a second. Here
    both, and the simulator that times the arrivals, share one event loop, whose stalls shift
    arrival times far more than a network does: the windows get a wider margin."""
    monkeypatch.setattr(shared_limits, "MARGIN", 0.2)
    from azure.storage.queue import TextBase64DecodePolicy
    from azure.storage.queue.aio import QueueClient

    from exporter.runs.runtime import AppRuntime
    from tests.app_harness import config

    document = config()
    document["exports"][1].update(source="lapsed/", list_id=SECOND_LIST)
    await app.set_config(document)
    for folder, prefix in (("vip", "a"), ("lapsed", "b")):
        rows = "email,first_name,tier\n" + "".join(f"{prefix}{n}@example.com,N,gold\n" for n in range(80_000))
        await app.put(app.segments, f"{folder}/members.csv", rows.encode())
    first, second = app.runtime, AppRuntime(app.env)
    starts = [await first.service().start("vip"), await first.service().start("lapsed")]
    assert all(start.started for start in starts)
    async with QueueClient.from_connection_string(app.azurite.connection_string, app.queue_name,
                                                  message_decode_policy=TextBase64DecodePolicy()) as queue:
        messages = [m async for m in queue.receive_messages(max_messages=2, visibility_timeout=300)]
    assert len(messages) == 2
    await asyncio.gather(first.service().process(messages[0].content), second.service().process(messages[1].content))
    await second.aclose()
    stats = simulator.simulator.stats
    assert stats.jobs_received == 16 and stats.throttled == 0
    states = [await first.service().status(s.export, s.run_id) for s in starts]
    assert [state["status"] for state in states] == ["succeeded", "succeeded"]
    schedule = first.service().store.container.get_blob_client(schedule_name("account-SimAcc", "import"))
    assert await schedule.exists()
